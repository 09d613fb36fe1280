// pfbench: speed of Pixelfly against dense, side by side in one run, on one backend. This file
// is the command line and its manual; the commands are in src/bench/ (bench.h).
//
//   pfbench kernels [--tokens N,...] [--shapes INxOUT,...] [--bs B,...] [--nf F,...]
//                   [--rank R,...] [--repeat K] [--backend cpu|cuda]
//       for every layer shape (in x out), token count and pattern (bs, nf, rank), three
//       passes timed separately, the dense layer (linear_fwd, linear_bwd) against Pixelfly
//       (pixelfly_fwd, pixelfly_bwd), each op called with only that pass's outputs present:
//         fwd  forward
//         dX   input gradient only (dense: dx; Pixelfly: dx, through dxv with a rank)
//         dS   weight gradients only (dense: dW, db; Pixelfly: dS, dU and dV, db)
//       Each row: median times, FLOP/s of the nonzero work, speed-up, efficiency = dense time
//       x density / Pixelfly time, and the pass's roofline bound = max(nonzero FLOPs / the
//       dense rate of the same pass, shape and token count measured in this run, minimum
//       bytes (pass_bytes in src/bench/bench_layers.c) / the device-to-device copy bandwidth
//       measured at the start), with "% bound" = bound / Pixelfly time. The header gives the
//       copy bandwidth and the dense rates. On CUDA, a third time column: cuSPARSE
//       Blocked-ELL SpMM of the sparse part alone (forward only; "-" elsewhere, "n/a" with the reason below the table).
//       Activations are allocated in the backend's dtype, weight gradients in fp32.
//       Defaults: --nf 2,3 --rank 0,32 --repeat 5, and on cpu --tokens 2048 --bs 16
//       --shapes 768x3072,3072x768, on cuda --tokens 8192,16384 --bs 8,16,32
//       --shapes 768x3072,3072x768,1024x4096,4096x1024.
//   pfbench kinds [--tokens N,...] [--shapes INxOUT,...] [--bs B] [--nf F] [--rank R]
//                 [--repeat K] [--backend cpu|cuda]
//       the layer kinds (layers.h) at about one parameter budget, one table per layer shape
//       and token count, a row per kind: dense; pixelfly (bs, nf, rank); blocksparse, a random
//       mask of nf+1 blocks per super-row at the same bs and rank (seed 1); lowrank at the
//       rank, and butterfly at the bs (a power of two 2..256 dividing both sides), whose
//       weights are closest to the Pixelfly layer's. Each layer is declared with
//       pf_linear_declare on an arena of its own (with a bias) and timed through
//       pf_linear_forward and pf_linear_backward, the calls a model makes, all kinds of a table
//       in the same rounds (each round calls every kind's three once, so a shared machine's
//       slow moments fall on all of them alike); each column is the median over rounds of
//       its value in one round:
//         fwd    pf_linear_forward
//         dS     pf_linear_backward with dx absent: every parameter gradient, with what it
//                needs on the way (Pixelfly's and lowrank's dy U, butterfly's input gradients
//                of every factor but the first)
//         dX     pf_linear_backward with dx present (the whole backward) minus dS, per round:
//                noisy when dX is small (a negative difference is shown as 0)
//         total  fwd + the whole backward; speed-up = dense total / total (same round)
//       params = stored weights (bias excluded), kept = params / (out x in). The bound is the
//       sum, over the ops the layer calls (masked kinds one Pixelfly op, butterfly its L
//       factors, lowrank its two linear ops) and their fwd, dX and dS passes, of the pass's
//       roofline bound as `kernels` computes it, with the FLOP side at the dense layer's rate
//       in the same table (forward for fwd, whole backward for dX and dS) and dy U counted
//       once per backward; "% bound" = bound / total (dense: about 100%, by construction).
//       Defaults: --bs 16 --nf 2 --rank 32 --repeat 5 --shapes 768x3072,3072x768,1024x1024,
//       --tokens as kernels.
//   pfbench step CONFIG... [--steps K] [--set section.key=value]... [--backend cpu|cuda]
//       median time of a whole training step (forward, backward, AdamW) of each config's
//       model on synthetic data, and tokens/s or images/s, relative to the first config of
//       the same model family (list the dense twin first); the model FLOP/s (nonzero work),
//       MFU against a known GPU's bf16 peak, and the device memory in use.
//   pfbench data CONFIG [--batches K] [--steps K] [--workers N,...] [--set section.key=value]...
//                [--backend cpu|cuda]
//       the config's training data (data.train, with its augmentation and mixing): loader
//       throughput in items/s (images or tokens) and per thread, built in the step on 1 and on
//       all OpenMP threads and by each count of --workers loader threads (default 1,2,4 up to
//       the CPUs), each over --batches batches (default 20) taken back to back after the queue
//       filled; then the mean training step on a synthetic batch, on one real batch used
//       again and again (real inputs without loading), and on the real data as the config
//       loads it (data.workers, data.prefetch), and the ratios: 3 blocks of each in turn, a block --steps steps (default 10) back to back after 2 warm-up steps, every
//       loaded block from a freshly opened source. Means, not medians: a loader that falls
//       behind shows as a slower mean, which a median can hide.
//
// Activations are in the backend's dtype (fp32 on the CPU, bf16 on CUDA), weight gradients fp32.
// Medians over --repeat (--steps) timed runs after one (two) warm-up runs; the machine, the
// device and the thread count are printed so a figure can be quoted with them.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common.h"
#include "config.h"
#include "train.h"

// Comma-separated integers, each >= min, into out[max]; returns the count, -1 on a malformed
// list, a value below min or more than max values.
static int parse_ints(const char *s, int *out, int max, int min) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < min || v > 1 << 30 || n == max) return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfbench kernels [--tokens N,...] [--shapes INxOUT,...] [--bs B,...]\n"
            "                       [--nf F,...] [--rank R,...] [--repeat K]\n"
            "                       [--backend cpu|cuda]\n"
            "       pfbench kinds [--tokens N,...] [--shapes INxOUT,...] [--bs B] [--nf F]\n"
            "                     [--rank R] [--repeat K] [--backend cpu|cuda]\n"
            "       pfbench step CONFIG... [--steps K] [--set section.key=value]...\n"
            "                       [--backend cpu|cuda]\n"
            "       pfbench data CONFIG [--batches K] [--steps K] [--workers N,...]\n"
            "                       [--set section.key=value]... [--backend cpu|cuda]\n");
}

// INxOUT,... into o->shapes; false on a malformed list or more than 16 shapes.
static bool parse_shapes(const char *v, kernel_opts *o) {
    char buf[512], extra;
    snprintf(buf, sizeof buf, "%s", v);
    o->nshapes = 0;
    for (char *sv, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
        int *s = o->shapes[o->nshapes];
        if (o->nshapes == 16 || sscanf(t, "%dx%d%c", &s[0], &s[1], &extra) != 2 || s[0] < 1 ||
            s[1] < 1)
            return false;
        o->nshapes++;
    }
    return o->nshapes > 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PF_EXIT_USAGE : PF_EXIT_OK;
    }
    int backend = PF_BACKEND_CPU;
    // Tokens, shapes and patterns default by command and backend, below.
    kernel_opts ko = {.repeat = 5};
    char *configs[32], *sets[64];
    int nconfigs = 0, nsets = 0, steps = 0;  // 0: the command's default
    bool kernels = !strcmp(argv[1], "kernels"), kinds = !strcmp(argv[1], "kinds");
    bool data = !strcmp(argv[1], "data");
    int batches = 20, workers[8], nworkers = 0;
    bool layer = kernels || kinds;  // the commands that time single layers
    int npat = kinds ? 1 : MAX_LIST;  // kinds: one Pixelfly pattern
    const char *want_pos = kinds ? "an integer >= 1" : "up to 8 comma-separated integers >= 1";
    if (!layer && !data && strcmp(argv[1], "step")) {
        fprintf(stderr, "pfbench: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return PF_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char *want = "";  // what the value should be, for the message
        bool known = true, bad = !v;  // every option takes a value
        if (!strcmp(a, "--backend")) {
            want = "cpu or cuda";
            bad = bad || (strcmp(v, "cuda") && strcmp(v, "cpu"));
            if (!bad) backend = !strcmp(v, "cuda") ? PF_BACKEND_CUDA : PF_BACKEND_CPU;
        } else if (layer && !strcmp(a, "--tokens")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (ko.ntokens = parse_ints(v, ko.tokens, MAX_LIST, 1)) < 1;
        } else if (layer && !strcmp(a, "--repeat")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &ko.repeat, 1, 1) != 1;
        } else if (layer && !strcmp(a, "--bs")) {
            want = want_pos;
            bad = bad || (ko.nbs = parse_ints(v, ko.bs, npat, 1)) < 1;
        } else if (layer && !strcmp(a, "--nf")) {
            want = want_pos;
            bad = bad || (ko.nnf = parse_ints(v, ko.nf, npat, 1)) < 1;
        } else if (layer && !strcmp(a, "--rank")) {
            want = kinds ? "an integer >= 0" : "up to 8 comma-separated integers >= 0";
            bad = bad || (ko.nrank = parse_ints(v, ko.rank, npat, 0)) < 1;
        } else if (layer && !strcmp(a, "--shapes")) {
            want = "up to 16 comma-separated INxOUT, e.g. 768x3072,3072x768";
            bad = bad || !parse_shapes(v, &ko);
        } else if (data && !strcmp(a, "--batches")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &batches, 1, 1) != 1;
        } else if (data && !strcmp(a, "--workers")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (nworkers = parse_ints(v, workers, 8, 1)) < 1;
        } else if (!layer && !strcmp(a, "--steps")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &steps, 1, 1) != 1;
        } else if (!layer && !strcmp(a, "--set")) {
            want = "section.key=value, at most 64 of them";
            bad = bad || nsets == 64;
            if (!bad) sets[nsets++] = argv[i + 1];
        } else if (!layer && a[0] != '-') {
            if (nconfigs == 32) {
                fprintf(stderr, "pfbench step: at most 32 CONFIG files\n");
                return PF_EXIT_USAGE;
            }
            configs[nconfigs++] = argv[i];
            continue;
        } else {
            known = false;
        }
        if (!known)
            fprintf(stderr, "pfbench %s: unknown option '%s'\n", argv[1], a);
        else if (!v)
            fprintf(stderr, "pfbench %s: option '%s' needs a value (%s)\n", argv[1], a, want);
        else if (bad)
            fprintf(stderr, "pfbench %s: bad value '%s' for option '%s' (want %s)\n", argv[1], v,
                    a, want);
        if (!known || bad) {
            usage(stderr);
            return PF_EXIT_USAGE;
        }
        i++;
    }
    bool cuda = backend == PF_BACKEND_CUDA;
    if (!ko.ntokens) {
        int cpu_tokens[] = {2048}, cuda_tokens[] = {8192, 16384};
        ko.ntokens = cuda ? 2 : 1;
        memcpy(ko.tokens, cuda ? cuda_tokens : cpu_tokens, sizeof(int) * ko.ntokens);
    }
    if (!ko.nbs) {  // the CPU sweeps the paper's bs only: each row takes seconds there
        int cpu_bs[] = {16}, cuda_bs[] = {8, 16, 32};
        ko.nbs = cuda && !kinds ? 3 : 1;
        memcpy(ko.bs, cuda && !kinds ? cuda_bs : cpu_bs, sizeof(int) * ko.nbs);
    }
    if (!ko.nnf) {
        ko.nnf = kinds ? 1 : 2;
        memcpy(ko.nf, (int[]){2, 3}, sizeof(int) * ko.nnf);
    }
    if (!ko.nrank) {  // kinds: Pixelfly with its low-rank term, as the paper's layers
        ko.nrank = kinds ? 1 : 2;
        memcpy(ko.rank, kinds ? (int[]){32} : (int[]){0, 32}, sizeof(int) * ko.nrank);
    }
    if (!ko.nshapes && kinds) {  // both GPT-2 small MLP layers and a square one
        int shapes[3][2] = {{768, 3072}, {3072, 768}, {1024, 1024}};
        ko.nshapes = 3;
        memcpy(ko.shapes, shapes, sizeof shapes);
    }
    if (!ko.nshapes) {
        int shapes[4][2] = {{768, 3072}, {3072, 768}, {1024, 4096}, {4096, 1024}};
        ko.nshapes = cuda ? 4 : 2;
        memcpy(ko.shapes, shapes, sizeof(int) * 2 * ko.nshapes);
    }
    const pf_backend *be = pf_select_backend(backend);
    if (!be) {
        fprintf(stderr, "pfbench: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    if (kernels) return pfbench_kernels(be, &ko);
    if (kinds) return pfbench_kinds(be, &ko);
    if (data) {
        if (nconfigs != 1) {
            fprintf(stderr, "pfbench data: give one CONFIG (its data.train is measured)\n");
            return PF_EXIT_USAGE;
        }
        if (!nworkers)  // 1, 2, 4, ... up to the CPUs
            for (int w = 1; w <= omp_get_num_procs() && nworkers < 8; w *= 2) workers[nworkers++] = w;
        return pfbench_data(be, configs[0], sets, nsets, batches, steps ? steps : 10, workers,
                            nworkers);
    }
    if (nconfigs == 0) {
        fprintf(stderr, "pfbench step: give one or more CONFIG files (dense and Pixelfly "
                        "twins side by side, e.g. configs/gpt2-tiny-{dense,pixelfly}.ini)\n");
        return PF_EXIT_USAGE;
    }
    return pfbench_step(be, configs, nconfigs, sets, nsets, steps ? steps : 5);
}
