// pftrain: trains, inspects and samples Pixelfly models. See `pftrain --help`.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "comm.h"
#include "common.h"
#include "config.h"
#include "export.h"
#include "memplan.h"
#include "models/model.h"
#include "pattern.h"
#include "threads.h"
#include "tokenizer.h"
#include "train.h"

// `pattern` draws the mask up to this butterfly size (a bs x bs grid of characters).
#define PATTERN_DRAW_MAX 256
// `sample --tokens` at most (each token is one forward pass over the context).
#define SAMPLE_MAX_TOKENS 1000000

static void usage(FILE *f) {
    fprintf(f,
        "usage: pftrain CONFIG [--set section.key=value]... [--resume auto|PATH | --new-run]\n"
        "                      [--quiet]\n"
        "       pftrain summary CONFIG [--set section.key=value]...\n"
        "       pftrain pattern --out O --in I --bs B --nf F [--rank R]\n"
        "       pftrain sample CHECKPOINT --vocab DIR [--prompt TEXT] [--tokens N]\n"
        "                      [--temperature T] [--top-k K] [--seed S]\n"
        "                      (N in [0, 1000000], T >= 0 (0: greedy), K >= 0 (0: all))\n"
        "       pftrain export CHECKPOINT --out DIR [--densify] [--dtype fp32|bf16] [--force]\n"
        "                      (DIR/model.safetensors + DIR/config.json; --densify: dense\n"
        "                      weights named as transformers' GPT-2 / timm's ViT and Mixer)\n"
        "       pftrain plot RUN_DIR... [--out PLOT.png]\n"
        "       pftrain keys                 (every config key, its default and meaning)\n"
        "       pftrain --help | --version\n"
        "\n"
        "Training runs on every rank of `mpirun -np N pftrain CONFIG` (data parallel).\n"
        "Outputs go to run.out_dir: metrics.jsonl, config.ini, summary.json, checkpoints/.\n"
        "A run.out_dir that holds a run is continued with --resume auto; a new run there is\n"
        "refused unless --new-run, which moves the old run into run.out_dir/previous-N.\n"
        "Exit codes: 0 done, 1 runtime failure (divergence included), 2 bad usage or\n"
        "            configuration (also: a run.out_dir the run cannot start or resume in),\n"
        "            75 saved a checkpoint after SIGTERM/SIGUSR1: requeue and resume.\n");
}

// Parses CONFIG plus --set overrides from argv[i..]; the rest of the flags go back through
// *resume / *quiet when those are non-NULL. -1 after printing the error.
static int load_config(pf_config *c, int argc, char **argv, int i, const char **resume,
                       bool *quiet) {
    pf_config_defaults(c);
    if (i >= argc) {
        fprintf(stderr, "pftrain: missing CONFIG (an .ini file, see configs/)\n");
        return -1;
    }
    const char *path = argv[i];
    if (pf_config_load(c, path) < 0) {
        fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        return -1;
    }
    for (i++; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--set") && i + 1 < argc) {
            if (pf_config_set(c, argv[++i]) < 0) {
                fprintf(stderr, "pftrain: %s\n", pf_errmsg());
                return -1;
            }
        } else if (resume && !strcmp(a, "--resume") && i + 1 < argc) {
            *resume = argv[++i];
        } else if (quiet && !strcmp(a, "--quiet")) {
            *quiet = true;
        } else {
            fprintf(stderr, "pftrain: unexpected argument '%s' (see pftrain --help)\n", a);
            return -1;
        }
    }
    if (pf_config_validate(c) < 0) {
        fprintf(stderr, "pftrain: %s: %s\n", path, pf_errmsg());
        return -1;
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    pf_config cfg;
    pf_train_opts opts = {.config_path = argv[1]};
    // --new-run is the trainer's alone: taken out here, the rest goes to load_config.
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        bool value = i > 1 && (!strcmp(argv[i - 1], "--set") || !strcmp(argv[i - 1], "--resume"));
        if (!value && !strcmp(argv[i], "--new-run")) opts.new_run = true;
        else argv[kept++] = argv[i];
    }
    argc = kept;
    if (load_config(&cfg, argc, argv, 1, &opts.resume, &opts.quiet) < 0) return PF_EXIT_USAGE;
    const pf_backend *be = pf_select_backend(cfg.backend);
    if (!be) {
        fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    pf_comm *comm = NULL;
    pf_comm_kind kind = be->device == PF_DEV_CUDA ? PF_COMM_NCCL : PF_COMM_MPI;
    if (pf_comm_init(&argc, &argv, kind, &comm) < 0) {
        if (pf_comm_rank(comm) == 0) fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        pf_comm_finalize(comm);
        return PF_EXIT_USAGE;
    }
    // Without OMP_NUM_THREADS, the ranks on a node share its cores (threads.h).
    char note[256];
    pf_threads_pick(pf_comm_local_size(comm), note, sizeof note);
    if (note[0] && pf_comm_rank(comm) == 0) printf("pftrain: %s\n", note);
    int rc = pf_train(&cfg, &opts, comm);
    pf_comm_finalize(comm);
    return rc;
}

static int cmd_summary(int argc, char **argv) {
    pf_config cfg;
    if (load_config(&cfg, argc, argv, 2, NULL, NULL) < 0) return PF_EXIT_USAGE;
    // On the configured backend (one sample), so memory is counted in its activation dtype.
    const pf_backend *be = pf_select_backend(cfg.backend);
    if (!be) {
        fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    // Nothing is allocated: a config too large for this machine is summarized all the same.
    pf_mem_plan plan;
    if (pf_mem_plan_compute(&cfg, be, &plan) < 0) {
        fprintf(stderr, "pftrain: %s: %s\n", argv[2], pf_errmsg());
        return PF_EXIT_USAGE;
    }
    pf_model *m = pf_model_describe(&cfg, be, 1);
    if (!m) {
        fprintf(stderr, "pftrain: %s: %s\n", argv[2], pf_errmsg());
        return PF_EXIT_USAGE;
    }
    pf_model_summary(m, stdout);
    pf_mem_plan_print(&plan, &cfg, be, stdout);
    pf_device_info dev;
    be->device_info(&dev);
    double peak = cfg.peak_tflops > 0 ? cfg.peak_tflops : dev.peak_tflops;
    printf("device: %s, %.1f GB", dev.name, dev.mem_total / 1e9);
    if (peak > 0)
        printf("; at %.0f TFLOP/s peak a step of train.batch_size %d takes >= %.2f ms\n", peak,
               cfg.batch_size,
               1e3 * pf_model_train_flops(m, false) * cfg.batch_size / (peak * 1e12));
    else
        printf(" (no peak FLOP/s known: set run.peak_tflops for MFU)\n");
    pf_model_free(m);
    return PF_EXIT_OK;
}

// An integer flag in [lo, hi]; -1 after printing the flag, its value and the range.
static int int_flag(const char *name, const char *v, int *out, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "pftrain: %s '%s' is not an integer in [%ld, %ld]\n", name, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

// A finite number >= 0 for a float flag; -1 after printing the flag and the range.
static int nonneg_float_flag(const char *name, const char *v, float *out) {
    char *end;
    float x = strtof(v, &end);
    if (end == v || *end || !isfinite(x) || x < 0) {
        fprintf(stderr, "pftrain: %s '%s' must be a finite number >= 0\n", name, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int cmd_pattern(int argc, char **argv) {
    int out = -1, in = -1, bs = -1, nf = -1, rank = 0;
    struct { const char *flag; int *dst; } flags[] = {
        {"--out", &out}, {"--in", &in}, {"--bs", &bs}, {"--nf", &nf}, {"--rank", &rank}};
    for (int i = 2; i < argc; i++) {
        int k = 0;
        while (k < 5 && strcmp(argv[i], flags[k].flag)) k++;
        if (k == 5 || i + 1 >= argc) {
            fprintf(stderr, "pftrain pattern: unexpected argument '%s'\n", argv[i]);
            return PF_EXIT_USAGE;
        }
        if (int_flag(flags[k].flag, argv[++i], flags[k].dst, 0, INT_MAX) < 0)
            return PF_EXIT_USAGE;
    }
    for (int k = 0; k < 4; k++)
        if (*flags[k].dst < 0) {
            fprintf(stderr, "pftrain pattern: %s is required (usage: pftrain pattern --out O "
                            "--in I --bs B --nf F [--rank R])\n", flags[k].flag);
            return PF_EXIT_USAGE;
        }
    pf_pattern p;
    if (pf_pattern_init(&p, out, in, bs, nf, rank, false) < 0) {
        fprintf(stderr, "pftrain pattern: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    if (bs <= PATTERN_DRAW_MAX) {
        char *mask = pf_malloc((size_t)bs * (bs + 1) + 1);
        pf_pattern_draw(&p, mask);
        fputs(mask, stdout);
        free(mask);
    } else {
        printf("(the %d x %d super-block mask is not drawn above bs=%d)\n", bs, bs,
               PATTERN_DRAW_MAX);
    }
    int64_t params = pf_pattern_numel(&p), dense = (int64_t)out * in;
    printf("density %.4f (sparse part, %d of %d super-blocks per row, each %dx%d), params %lld "
           "(%.2f%% of dense %lld)\n",
           pf_pattern_density(&p), nf + 1, bs, p.ob, p.ib, (long long)params,
           100.0 * params / dense, (long long)dense);
    return PF_EXIT_OK;
}

// Samples from softmax(logits / temperature) restricted to the top_k largest (0: all).
static int sample_token(const float *logits, int V, float temperature, int top_k, pf_rng *rng) {
    if (temperature <= 0) temperature = 1e-6f;
    float thresh = -INFINITY;
    if (top_k > 0 && top_k < V) {
        // the k-th largest logit by partial selection over a copy
        float *tmp = pf_malloc(sizeof(float) * V);
        memcpy(tmp, logits, sizeof(float) * V);
        for (int k = 0; k < top_k; k++) {
            int best = k;
            for (int j = k + 1; j < V; j++) if (tmp[j] > tmp[best]) best = j;
            float s = tmp[k]; tmp[k] = tmp[best]; tmp[best] = s;
        }
        thresh = tmp[top_k - 1];
        free(tmp);
    }
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) if (logits[j] > mx) mx = logits[j];
    double sum = 0;
    for (int j = 0; j < V; j++)
        if (logits[j] >= thresh) sum += exp((logits[j] - mx) / temperature);
    double u = pf_rng_uniform(rng) * sum, acc = 0;
    int last = 0;
    for (int j = 0; j < V; j++) {
        if (logits[j] < thresh) continue;
        acc += exp((logits[j] - mx) / temperature);
        last = j;
        if (acc >= u) return j;
    }
    return last;
}

static int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *vocab = NULL, *prompt = "\n";
    int ntok = 200, top_k = 40, seed = 1;
    float temperature = 0.8f;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--vocab") && has) vocab = argv[++i];
        else if (!strcmp(a, "--prompt") && has) prompt = argv[++i];
        else if (!strcmp(a, "--tokens") && has) {
            if (int_flag(a, argv[++i], &ntok, 0, SAMPLE_MAX_TOKENS) < 0) return PF_EXIT_USAGE;
        } else if (!strcmp(a, "--top-k") && has) {  // 0: all tokens
            if (int_flag(a, argv[++i], &top_k, 0, INT_MAX) < 0) return PF_EXIT_USAGE;
        } else if (!strcmp(a, "--seed") && has) {
            if (int_flag(a, argv[++i], &seed, INT_MIN, INT_MAX) < 0) return PF_EXIT_USAGE;
        } else if (!strcmp(a, "--temperature") && has) {  // 0: the most likely token
            if (nonneg_float_flag(a, argv[++i], &temperature) < 0) return PF_EXIT_USAGE;
        } else if (!ckpt && a[0] != '-') {
            ckpt = a;
        } else {
            fprintf(stderr, "pftrain sample: unexpected argument '%s'\n", a);
            return PF_EXIT_USAGE;
        }
    }
    if (!ckpt || !vocab) {
        fprintf(stderr, "pftrain sample: give a CHECKPOINT (.h5 under RUN/checkpoints) and "
                        "--vocab DIR (encoder.json, vocab.bpe)\n");
        return PF_EXIT_USAGE;
    }
    // The checkpoint carries the resolved config; rebuild the model from it.
    pf_checkpoint_state st = {0};
    pf_config probe;
    pf_config_defaults(&probe);
    pf_tokenizer *tok = pf_tokenizer_load(vocab);
    if (!tok) {
        fprintf(stderr, "pftrain sample: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    int rc = PF_EXIT_FAILURE;
    pf_model *m = NULL;
    float *host = NULL, *logits = NULL;
    char *text = NULL;
    pf_ids ids = {0};
    if (pf_checkpoint_read_config(ckpt, &text) < 0 ||
        pf_config_load_string(&probe, text, ckpt) < 0) {
        fprintf(stderr, "pftrain sample: %s\n", pf_errmsg());
        goto out;
    }
    if (probe.model != PF_MODEL_GPT2) {
        fprintf(stderr, "pftrain sample: %s is not a GPT-2 checkpoint\n", ckpt);
        goto out;
    }
    if (pf_tokenizer_vocab_size(tok) > probe.vocab_size) {
        fprintf(stderr, "pftrain sample: --vocab %s has %d tokens but the model of %s only %d "
                        "(model.vocab_size); give the vocabulary it was trained with\n",
                vocab, pf_tokenizer_vocab_size(tok), ckpt, probe.vocab_size);
        rc = PF_EXIT_USAGE;
        goto out;
    }
    if (!(m = pf_model_create(&probe, &pf_backend_cpu, 1))) {
        fprintf(stderr, "pftrain sample: %s\n", pf_errmsg());
        goto out;
    }
    const pf_layout *lay = pf_model_layout(m);
    host = pf_calloc(lay->numel, sizeof(float));
    if (pf_checkpoint_load(ckpt, lay, host, NULL, NULL, &st) < 0 ||
        pf_model_adopt_masks(m, &st, ckpt) < 0) {
        fprintf(stderr, "pftrain sample: %s\n", pf_errmsg());
        goto out;
    }
    pf_backend_cpu.upload(pf_model_arena(m)->params, host, sizeof(float) * lay->numel);
    if (pf_tokenizer_encode(tok, prompt, strlen(prompt), &ids) < 0) {
        fprintf(stderr, "pftrain sample: prompt: %s\n", pf_errmsg());
        goto out;
    }
    // An empty prompt starts from end-of-text, as GPT-2's unconditional samples do.
    if (ids.n == 0) pf_ids_push(&ids, pf_tokenizer_eot(tok));
    int T = probe.seq_len, V = probe.vocab_size;
    int32_t *window = pf_calloc(T, sizeof(int32_t)), *targets = pf_malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++) targets[t] = -1;
    logits = pf_malloc(sizeof(float) * V);
    pf_rng rng;
    pf_rng_seed(&rng, (uint64_t)seed);
    fputs(prompt, stdout);
    for (int n = 0; n < ntok; n++) {
        // the last T tokens, left-aligned; causal attention ignores what follows them
        size_t len = ids.n < (size_t)T ? ids.n : (size_t)T;
        memcpy(window, ids.data + ids.n - len, sizeof(int32_t) * len);
        pf_batch b = {.tokens = window, .targets = targets};
        pf_model_forward(m, &b, NULL);
        pf_gpt2_logits_row(m, (int64_t)len - 1, logits);
        int next = sample_token(logits, V, temperature, top_k, &rng);
        if (next == pf_tokenizer_eot(tok)) break;
        pf_ids_push(&ids, next);
        size_t blen;
        const char *bytes = pf_tokenizer_token(tok, next, &blen);
        fwrite(bytes, 1, blen, stdout);
        fflush(stdout);
    }
    printf("\n");
    free(window);
    free(targets);
    rc = PF_EXIT_OK;
out:
    pf_checkpoint_state_free(&st);
    pf_ids_free(&ids);
    free(text);
    free(logits);
    free(host);
    pf_model_free(m);
    pf_tokenizer_free(tok);
    return rc;
}

static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    pf_export_opts o = {.dtype = PF_ST_F32};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--out") && has) out = argv[++i];
        else if (!strcmp(a, "--densify")) o.densify = true;
        else if (!strcmp(a, "--force")) o.force = true;
        else if (!strcmp(a, "--dtype") && has) {
            const char *d = argv[++i];
            if (!strcmp(d, "fp32")) o.dtype = PF_ST_F32;
            else if (!strcmp(d, "bf16")) o.dtype = PF_ST_BF16;
            else {
                fprintf(stderr, "pftrain export: --dtype must be fp32 or bf16 (got '%s')\n", d);
                return PF_EXIT_USAGE;
            }
        } else if (!ckpt && a[0] != '-') {
            ckpt = a;
        } else {
            fprintf(stderr, "pftrain export: unexpected argument '%s' (usage: pftrain export "
                            "CHECKPOINT --out DIR [--densify] [--dtype fp32|bf16] [--force])\n", a);
            return PF_EXIT_USAGE;
        }
    }
    if (!ckpt || !out || !*out) {
        fprintf(stderr, "pftrain export: give a CHECKPOINT (.h5 under RUN/checkpoints) and "
                        "--out DIR\n");
        return PF_EXIT_USAGE;
    }
    if (access(ckpt, R_OK) != 0) {
        fprintf(stderr, "pftrain export: cannot read checkpoint '%s': %s\n", ckpt,
                strerror(errno));
        return PF_EXIT_USAGE;
    }
    int rc = pf_export(ckpt, out, &o);
    if (rc != PF_EXIT_OK) fprintf(stderr, "pftrain export: %s\n", pf_errmsg());
    else printf("pftrain export: wrote %s/model.safetensors and %s/config.json (%s, %s)\n", out,
                out, o.densify ? "densified" : "native", o.dtype == PF_ST_BF16 ? "bf16" : "fp32");
    return rc;
}

int pf_plot_main(int argc, char **argv);  // src/plot.c

int main(int argc, char **argv) {
    pf_threads_passive_reexec(argv);  // before MPI_Init and before any OpenMP region
    pf_runtime_set_tool("pftrain");  // messages that end the process start "pftrain[rank R@host]"
    if (argc < 2) {
        usage(stderr);
        return PF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return PF_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("pftrain %s\n", PF_VERSION);
        return PF_EXIT_OK;
    }
    if (!strcmp(cmd, "summary")) return cmd_summary(argc, argv);
    if (!strcmp(cmd, "pattern")) return cmd_pattern(argc, argv);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(cmd, "export")) return cmd_export(argc, argv);
    if (!strcmp(cmd, "plot")) return pf_plot_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys")) {
        pf_config_print_keys(stdout);
        return PF_EXIT_OK;
    }
    if (cmd[0] == '-') {
        fprintf(stderr, "pftrain: unknown option '%s'\n", cmd);
        usage(stderr);
        return PF_EXIT_USAGE;
    }
    if (access(cmd, F_OK) != 0) {
        fprintf(stderr, "pftrain: '%s' is neither a command (summary, pattern, sample, export, "
                        "plot, keys) nor a config file\n", cmd);
        return PF_EXIT_USAGE;
    }
    return cmd_train(argc, argv);
}
