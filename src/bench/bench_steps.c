// bench_steps.c: `pfbench step` (whole training steps of configs side by side, on synthetic
// data) and `pfbench data` (loader throughput, and the step on loaded data).
// src/cli/pfbench.c documents both.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "memplan.h"
#include "models/model.h"
#include "train.h"

// ---- whole training steps ------------------------------------------------------------------

typedef struct {
    pf_model *model;
    const pf_config *cfg;
    pf_batch batch;  // the batch every step takes when data is NULL
    pf_data *data;   // loaded batches, or NULL
    bool staged;     // the model holds the next step's batch, staged
    int step;
} step_bench;

// Takes the next batch and stages it in the model.
static void stage_next(step_bench *s) {
    pf_batch b = s->batch;
    if (s->data && pf_data_next(s->data, &b) < 0) PF_FATAL("pfbench: %s", pf_errmsg());
    pf_model_stage(s->model, &b);
    s->staged = true;
}

// One training step as pftrain runs it: forward of the staged batch, backward, the next batch
// taken and staged while the backward runs (on CUDA it overlaps), clip, AdamW.
static void train_step_once(void *c) {
    step_bench *s = c;
    pf_arena *a = pf_model_arena(s->model);
    const pf_layout *lay = a->layout;
    const pf_backend *be = a->be;
    be->zero(a->grads, sizeof(float) * lay->numel);
    if (!s->staged) stage_next(s);
    s->staged = false;
    pf_model_arm_dropout(s->model, (uint64_t)s->step, 0);  // train.dropout, as pftrain's
    pf_model_forward(s->model, NULL, NULL);
    pf_model_backward(s->model, 1.0f, NULL, NULL);
    stage_next(s);
    float clip = 1.0f;
    pf_grad_norm(be, a->grads, lay->numel, s->cfg->grad_clip, &clip);
    s->step++;
    pf_model_adamw_step(s->model, s->cfg->lr, s->step, clip);
}

// The config at path with the --set overrides applied, and checked whole when `validate`
// (`step` runs synthetic data and needs no data.train); -1 after saying why.
static int load_config(pf_config *c, const char *path, char **sets, int nsets, bool validate) {
    pf_config_defaults(c);
    int rc = pf_config_load(c, path);
    for (int k = 0; rc == 0 && k < nsets; k++) rc = pf_config_set(c, sets[k]);
    if (rc == 0 && validate) rc = pf_config_validate(c);
    if (rc < 0) fprintf(stderr, "pfbench: %s: %s\n", path, pf_errmsg());
    return rc;
}

// Synthetic batch of the config's shape: random tokens, or random pixels and labels.
static void synthetic_batch(const pf_config *c, pf_batch *b, pf_rng *rng, void **owned) {
    int B = c->batch_size;
    memset(b, 0, sizeof *b);
    if (c->model == PF_MODEL_GPT2) {
        int n = B * c->seq_len;
        int32_t *tok = pf_malloc(sizeof(int32_t) * 2 * n);
        for (int i = 0; i < 2 * n; i++) tok[i] = (int32_t)pf_rng_below(rng, c->vocab_size);
        b->tokens = tok, b->targets = tok + n;
        owned[0] = tok;
        return;
    }
    int n = B * c->image_size * c->image_size * c->channels;
    float *img = pf_malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) img[i] = pf_rng_normal(rng);
    int32_t *lab = pf_malloc(sizeof(int32_t) * B);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)pf_rng_below(rng, c->num_classes);
    b->images = img, b->labels = lab;
    owned[0] = img, owned[1] = lab;
}

int pfbench_step(const pf_backend *be, char **configs, int nconfigs, char **sets, int nsets,
                 int steps) {
    bench_print_machine(be);
    pf_device_info dev;
    be->device_info(&dev);
    printf("median of %d training steps (forward, backward, clip, AdamW) after 1 warm-up, "
           "synthetic data;\nTFLOP/s counts the model's nonzero training FLOPs, MFU against "
           "%s; mem = device memory in use (resident set on a CPU) with the model loaded\n\n",
           steps, dev.peak_tflops > 0 ? "the card's dense bf16 peak" : "no known peak (CPU)");
    printf("%-34s %6s %12s %10s %14s %9s %8s %6s %8s\n", "config", "batch", "params", "step ms",
           "throughput", "vs first", "TFLOP/s", "MFU", "mem GB");
    double first[3] = {0};  // throughput of the first config of each model kind
    for (int i = 0; i < nconfigs; i++) {
        pf_config c;
        if (load_config(&c, configs[i], sets, nsets, false) < 0) return PF_EXIT_USAGE;
        step_bench s = {.cfg = &c};
        pf_mem_plan plan;  // refused before the model is allocated, as pftrain does
        if (pf_mem_plan_compute(&c, be, &plan) < 0 || pf_mem_plan_check(&plan, &c, be, 1) < 0) {
            fprintf(stderr, "pfbench: %s: %s\n", configs[i], pf_errmsg());
            return PF_EXIT_USAGE;
        }
        if (!(s.model = pf_model_create(&c, be, c.batch_size))) {
            fprintf(stderr, "pfbench: %s: %s\n", configs[i], pf_errmsg());
            return PF_EXIT_USAGE;
        }
        pf_model_init_params(s.model, c.seed);
        pf_rng rng;
        pf_rng_seed(&rng, 7);
        void *owned[2] = {0};
        synthetic_batch(&c, &s.batch, &rng, owned);
        double ms = bench_time_median_ms(be, train_step_once, &s, steps);
        double rate = c.batch_size * pf_model_rows_per_sample(s.model) / (ms / 1e3);
        if (first[c.model] == 0) first[c.model] = rate;
        char tput[32], mfu[16] = "-";
        snprintf(tput, sizeof tput, "%.0f %s/s", rate,
                 c.model == PF_MODEL_GPT2 ? "tok" : "img");
        double tflops = pf_model_train_flops(s.model, false) * c.batch_size / (ms / 1e3) / 1e12;
        if (dev.peak_tflops > 0) snprintf(mfu, sizeof mfu, "%.1f%%", 100 * tflops / dev.peak_tflops);
        be->device_info(&dev);
        printf("%-34s %6d %12lld %10.2f %14s %8.2fx %8.3f %6s %8.2f\n", configs[i], c.batch_size,
               (long long)pf_layout_param_count(pf_model_layout(s.model)), ms, tput,
               rate / first[c.model], tflops, mfu, dev.mem_used / 1e9);
        free(owned[0]);
        free(owned[1]);
        pf_model_free(s.model);
    }
    return PF_EXIT_OK;
}

// ---- data loading --------------------------------------------------------------------------

// Seconds per batch taken back to back from a source built with `workers` loader threads
// (0: in the step, on omp_threads OpenMP threads), after 1 + prefetch warm-up batches.
static double loader_seconds(pf_config c, int workers, int omp_threads, int batches) {
    c.data_workers = workers;
    if (workers > 0 && c.data_prefetch < 2) c.data_prefetch = 2;
    int saved = omp_get_max_threads();
    omp_set_num_threads(omp_threads);
    pf_data *d = pf_data_open(&c, c.train_path, c.batch_size, 0, 1, true);
    if (!d) {
        omp_set_num_threads(saved);
        return -1;
    }
    pf_batch b;
    double t0 = 0;
    int rc = 0;
    for (int k = 0; rc == 0 && k < batches + 1 + c.data_prefetch; k++) {
        if (k == 1 + c.data_prefetch) t0 = pf_now();
        rc = pf_data_next(d, &b);
    }
    double dt = (pf_now() - t0) / batches;
    pf_data_close(d);
    omp_set_num_threads(saved);
    return rc < 0 ? -1 : dt;
}

// Mean step time (ms) over `steps` steps after 2 warm-up steps, back to back, taking s's
// batches (s->data, or s->batch); the first step may compute a batch staged before.
static double mean_step_ms(const pf_backend *be, step_bench *s, int steps) {
    for (int k = 0; k < 2; k++) train_step_once(s);
    be->synchronize();
    double t0 = pf_now();
    for (int k = 0; k < steps; k++) train_step_once(s);
    be->synchronize();
    return 1e3 * (pf_now() - t0) / steps;
}

int pfbench_data(const pf_backend *be, const char *path, char **sets, int nsets, int batches,
                 int steps, const int *workers, int nworkers) {
    pf_config c;
    if (load_config(&c, path, sets, nsets, true) < 0) return PF_EXIT_USAGE;
    bench_print_machine(be);
    bool gpt2 = c.model == PF_MODEL_GPT2;
    const char *unit = gpt2 ? "tok" : "img";
    double per_batch = gpt2 ? (double)c.batch_size * c.seq_len : c.batch_size;
    printf("data.train = %s, batch %d, ", c.train_path, c.batch_size);
    if (gpt2)
        printf("windows of %d tokens\n", c.seq_len);
    else
        printf("%dx%d output, random resized crop %s (scale >= %g), flip %s, mixup %g, cutmix "
               "%g\n", c.image_size, c.image_size, c.augment_scale_min < 1 ? "on" : "off",
               (double)c.augment_scale_min, c.hflip ? "on" : "off", (double)c.mixup_alpha,
               (double)c.cutmix_alpha);
    printf("loader: %d batches taken back to back after the queue filled\n", batches);
    printf("%-28s %12s %16s %18s\n", "built by", "ms/batch", "throughput", "per thread");
    int cpus = omp_get_num_procs();
    typedef struct {
        int workers, omp;
    } loader_row;
    loader_row rows[2 + 8];
    int n = 0;
    rows[n++] = (loader_row){0, 1};
    if (cpus > 1) rows[n++] = (loader_row){0, cpus};
    for (int i = 0; i < nworkers; i++) rows[n++] = (loader_row){workers[i], 1};
    for (int i = 0; i < n; i++) {
        double sec = loader_seconds(c, rows[i].workers, rows[i].omp, batches);
        if (sec < 0) {
            fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
            return PF_EXIT_FAILURE;
        }
        int threads = rows[i].workers ? rows[i].workers : rows[i].omp;
        char who[64], tput[32], per[32];
        snprintf(who, sizeof who, rows[i].workers ? "%d loader thread%s" : "in the step, %d thread%s",
                 threads, threads == 1 ? "" : "s");
        snprintf(tput, sizeof tput, "%.0f %s/s", per_batch / sec, unit);
        snprintf(per, sizeof per, "%.0f %s/s", per_batch / sec / threads, unit);
        printf("%-28s %12.2f %16s %18s\n", who, 1e3 * sec, tput, per);
        fflush(stdout);
    }

    step_bench s = {.cfg = &c};
    pf_mem_plan plan;
    if (pf_mem_plan_compute(&c, be, &plan) < 0 || pf_mem_plan_check(&plan, &c, be, 1) < 0 ||
        !(s.model = pf_model_create(&c, be, c.batch_size))) {
        fprintf(stderr, "pfbench: %s: %s\n", path, pf_errmsg());
        return PF_EXIT_USAGE;
    }
    pf_model_init_params(s.model, c.seed);
    pf_rng rng;
    pf_rng_seed(&rng, 7);
    void *owned[2] = {0};
    pf_batch synthetic, reused;
    synthetic_batch(&c, &synthetic, &rng, owned);
    // The first loaded batch, used again and again: the step on real data without loading
    // (real and random inputs need not cost the same: GELU, softmax and the embedding
    // gradient take data-dependent time on a CPU).
    pf_config one = c;
    one.data_workers = 0;
    pf_data *first = pf_data_open(&one, c.train_path, c.batch_size, 0, 1, true);
    if (!first || pf_data_next(first, &reused) < 0) {
        fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
        return PF_EXIT_FAILURE;
    }
    // Blocks of `steps` steps of the three in turn, 3 of each, so that a shared machine's slow
    // moments fall on all. Each loaded block opens a fresh source: its threads start when the
    // first batch is asked for, so no block finds batches built in advance.
    double ms_syn = 0, ms_reused = 0, ms_real = 0;
    for (int round = 0; round < 3; round++) {
        s.batch = synthetic;
        ms_syn += mean_step_ms(be, &s, steps) / 3;
        s.batch = reused;
        ms_reused += mean_step_ms(be, &s, steps) / 3;
        if (!(s.data = pf_data_open(&c, c.train_path, c.batch_size, 0, 1, true))) {
            fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
            return PF_EXIT_FAILURE;
        }
        ms_real += mean_step_ms(be, &s, steps) / 3;
        pf_data_close(s.data);
        s.data = NULL;
    }
    printf("\ntraining step, mean over 3 blocks of %d steps (each after 2 warm-up steps), the "
           "three kinds of block in turn, %d OpenMP threads:\n", steps, omp_get_max_threads());
    const char *what[3] = {"synthetic batch", "one real batch, reused", "loaded batches"};
    double ms[3] = {ms_syn, ms_reused, ms_real};
    for (int k = 0; k < 3; k++)
        printf("  %-24s %10.2f ms  %10.0f %s/s\n", what[k], ms[k], per_batch / (ms[k] / 1e3),
               unit);
    printf("  loaded batches with data.workers = %d, data.prefetch = %d\n", c.data_workers,
           c.data_prefetch);
    printf("  loaded / synthetic step time: %.3f\n", ms_real / ms_syn);
    printf("  loaded / reused step time: %.3f (the cost of loading)\n", ms_real / ms_reused);
    pf_data_close(first);
    free(owned[0]);
    free(owned[1]);
    pf_model_free(s.model);
    return PF_EXIT_OK;
}
