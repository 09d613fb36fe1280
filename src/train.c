// train.c: the training loop. Reads top to bottom: set-up, then one step (micro-batches:
// next batch, forward, backward with bucketed all-reduce started as gradients become final;
// clip; AdamW), then logging, evaluation and checkpoints. Only rank 0 prints and writes.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "data.h"
#include "models/model.h"
#include "signals.h"

typedef struct {
    const pf_config *cfg;
    const pf_train_opts *opts;
    pf_comm *comm;
    const pf_backend *be;
    pf_model *model;
    pf_arena *arena;
    pf_data *train, *val;
    int rank, world;
    bool lead;          // rank 0: prints, writes metrics
    bool tty;
    FILE *metrics;
    int64_t step;       // optimizer steps done
    int64_t start_step; // the step this process started from (0, or the resumed one)
    // all-reduce buckets over the gradient arena: bucket i covers [i*elems, (i+1)*elems)
    int64_t bucket_elems, n_buckets, next_bucket;  // buckets are launched from the last down
    pf_comm_request *reqs;
    float *scalar;      // one float on the backend, for averaging the loss over ranks
    double t_start;
    double flops_per_sample;  // training FLOPs of one sample (nonzero work only)
    double peak_tflops;       // per-device peak for MFU; 0: unknown, no MFU reported
} trainer;

const pf_backend *pf_select_backend(int choice) {
    if (choice == PF_BACKEND_CUDA) {
#ifdef PF_CUDA
        if (!pf_cuda_available()) {
            pf_error("run.backend = cuda, but no CUDA device is visible; set run.backend = cpu");
            return NULL;
        }
        return &pf_backend_cuda;
#else
        pf_error("run.backend = cuda, but this pftrain was built without CUDA; rebuild with "
                 "`make CUDA=1` on a machine with nvcc, or set run.backend = cpu");
        return NULL;
#endif
    }
    // auto stays on the CPU until the CUDA backend has passed `make test-gpu` on a GPU
    // (issue #6): an unverified backend is something a user opts into, never a default.
    return &pf_backend_cpu;
}

// ---- learning rate -----------------------------------------------------------------------

// Linear warmup to lr over warmup_steps, then decay to min_lr_frac * lr at the last step.
static float lr_at(const pf_config *c, int64_t step) {
    if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    double span = (double)(c->steps - c->warmup_steps);
    double progress = span > 1 ? (double)(step - c->warmup_steps) / (span - 1) : 1.0;
    double lo = c->lr * c->min_lr_frac;
    switch (c->schedule) {
    case PF_SCHED_COSINE: return (float)(lo + 0.5 * (c->lr - lo) * (1 + cos(M_PI * progress)));
    case PF_SCHED_LINEAR: return (float)(c->lr - (c->lr - lo) * progress);
    case PF_SCHED_CONSTANT: return c->lr;
    }
    return c->lr;
}

// ---- gradient all-reduce in buckets -------------------------------------------------------

// Launches every not-yet-launched bucket lying entirely at offsets >= from.
static void on_grads_ready(void *ctx, int64_t from) {
    trainer *t = ctx;
    while (t->next_bucket >= 0 && t->next_bucket * t->bucket_elems >= from) {
        int64_t i = t->next_bucket--;
        int64_t lo = i * t->bucket_elems;
        int64_t n = t->arena->layout->numel - lo;
        if (n > t->bucket_elems) n = t->bucket_elems;
        pf_comm_allreduce_average_async(t->comm, t->arena->grads + lo, (size_t)n, &t->reqs[i]);
    }
    // MPI advances non-blocking collectives only inside MPI calls: nudge the ones in flight.
    for (int64_t i = t->n_buckets - 1; i > t->next_bucket; i--) pf_comm_test(&t->reqs[i]);
}

static void wait_all_buckets(trainer *t) {
    for (int64_t i = 0; i < t->n_buckets; i++) pf_comm_wait(&t->reqs[i]);
}

static float average_over_ranks(trainer *t, float v) {
    if (t->world == 1) return v;
    pf_comm_request req = {0};
    t->be->upload(t->scalar, &v, sizeof v);
    pf_comm_allreduce_average_async(t->comm, t->scalar, 1, &req);
    pf_comm_wait(&req);
    t->be->download(&v, t->scalar, sizeof v);
    return v;
}

// ---- one optimizer step --------------------------------------------------------------------

typedef struct {
    float loss, lr, grad_norm;
    double seconds;
} step_result;

static int train_step(trainer *t, step_result *r) {
    const pf_config *c = t->cfg;
    const pf_backend *be = t->be;
    const pf_layout *lay = t->arena->layout;
    double t0 = pf_now();
    be->zero(t->arena->grads, sizeof(float) * lay->numel);
    float loss = 0;
    for (int micro = 0; micro < c->grad_accum; micro++) {
        pf_batch batch;
        if (pf_data_next(t->train, &batch) < 0) return -1;
        loss += pf_model_forward(t->model, &batch, NULL) / c->grad_accum;
        bool last = micro == c->grad_accum - 1 && t->world > 1;
        if (last) t->next_bucket = t->n_buckets - 1;
        pf_model_backward(t->model, 1.0f / c->grad_accum, last ? on_grads_ready : NULL, t);
    }
    if (t->world > 1) wait_all_buckets(t);
    float clip = 1.0f;
    double norm = pf_grad_norm(be, t->arena->grads, lay->numel, c->grad_clip, &clip);
    r->lr = lr_at(c, t->step);
    pf_model_adamw_step(t->model, r->lr, (int)(t->step + 1), clip);
    be->synchronize();
    r->loss = average_over_ranks(t, loss);
    r->grad_norm = (float)norm;
    r->seconds = pf_now() - t0;
    t->step++;
    return 0;
}

// ---- evaluation ----------------------------------------------------------------------------

typedef struct {
    double loss, ppl, top1, top5;
    int64_t count;
} eval_result;

// Rank 0 evaluates on the whole validation shard (or eval_batches of it); the other ranks do
// not take part, so evaluation needs no collective.
static int evaluate(trainer *t, eval_result *out) {
    pf_eval_stats st = {0};
    int64_t n = pf_data_batches_per_epoch(t->val);
    if (t->cfg->eval_batches > 0 && t->cfg->eval_batches < n) n = t->cfg->eval_batches;
    pf_data_reset(t->val);
    for (int64_t i = 0; i < n; i++) {
        pf_batch batch;
        if (pf_data_next(t->val, &batch) < 0) return -1;
        pf_model_forward(t->model, &batch, &st);
    }
    out->count = st.count;
    out->loss = st.count ? st.loss_sum / st.count : 0;
    out->ppl = exp(out->loss);
    out->top1 = st.count ? (double)st.correct1 / st.count : 0;
    out->top5 = st.count ? (double)st.correct5 / st.count : 0;
    return 0;
}

// ---- output --------------------------------------------------------------------------------

static void format_duration(double s, char *buf, size_t len) {
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(buf, len, "%ldh%02ldm", v / 3600, v / 60 % 60);
    else if (v >= 60) snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
    else snprintf(buf, len, "%lds", v);
}

static bool is_text(const trainer *t) { return t->cfg->model == PF_MODEL_GPT2; }

static double samples_per_step(const trainer *t) {
    return (double)t->cfg->batch_size * t->cfg->grad_accum * t->world;
}

// Model FLOP/s of one device over `seconds` of `samples` (all ranks'), in TFLOP/s; and the
// model FLOP utilisation against the device peak, as a JSON value (null when unknown).
static double device_tflops(const trainer *t, double samples, double seconds) {
    return t->flops_per_sample * samples / t->world / seconds / 1e12;
}
static void format_mfu(const trainer *t, double tflops, char *buf, size_t len) {
    if (t->peak_tflops > 0) snprintf(buf, len, "%.4f", tflops / t->peak_tflops);
    else snprintf(buf, len, "null");
}

static void log_step(trainer *t, const step_result *r) {
    const pf_config *c = t->cfg;
    double rows = samples_per_step(t) * pf_model_rows_per_sample(t->model);
    double rate = rows / r->seconds;
    double bytes = t->world > 1 ? 4.0 * t->arena->layout->numel : 0;
    double tflops = device_tflops(t, samples_per_step(t), r->seconds);
    char mfu[32];
    format_mfu(t, tflops, mfu, sizeof mfu);
    pf_device_info dev;
    t->be->device_info(&dev);
    fprintf(t->metrics,
            "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, "
            "\"%s\": %.1f, \"step_ms\": %.3f, \"elapsed_s\": %.3f, \"allreduce_bytes\": %.0f, "
            "\"model_tflops\": %.4g, \"mfu\": %s, \"mem_mb\": %.1f}\n",
            (long long)t->step, r->loss, r->lr, r->grad_norm,
            is_text(t) ? "tokens_per_s" : "images_per_s", rate, 1e3 * r->seconds,
            pf_now() - t->t_start, bytes, tflops, mfu, dev.mem_used / 1e6);
    fflush(t->metrics);
    if (t->opts->quiet) return;
    if (!t->tty && t->step % c->log_every != 0 && t->step != c->steps) return;
    char eta[32];
    double elapsed = pf_now() - t->t_start;
    format_duration(elapsed / t->step * (c->steps - t->step), eta, sizeof eta);
    char util[32] = "";
    if (t->peak_tflops > 0) snprintf(util, sizeof util, " | MFU %.1f%%", 100 * tflops / t->peak_tflops);
    printf("%sstep %lld/%lld | loss %.4f | lr %.2e | norm %.2f | %.0f %s/s%s | ETA %s%s",
           t->tty ? "\r\033[K" : "", (long long)t->step, (long long)c->steps, r->loss, r->lr,
           r->grad_norm, rate, is_text(t) ? "tok" : "img", util, eta, t->tty ? "" : "\n");
    fflush(stdout);
}

static void log_eval(trainer *t, const eval_result *e) {
    if (is_text(t))
        fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n",
                (long long)t->step, e->loss, e->ppl);
    else
        fprintf(t->metrics,
                "{\"step\": %lld, \"val_loss\": %.6f, \"val_top1\": %.6f, \"val_top5\": %.6f}\n",
                (long long)t->step, e->loss, e->top1, e->top5);
    fflush(t->metrics);
    if (t->opts->quiet) return;
    if (t->tty) printf("\n");
    if (is_text(t))
        printf("eval step %lld: val_loss %.4f | val_ppl %.2f\n", (long long)t->step, e->loss,
               e->ppl);
    else
        printf("eval step %lld: val_loss %.4f | top-1 %.2f%% | top-5 %.2f%%\n",
               (long long)t->step, e->loss, 100 * e->top1, 100 * e->top5);
    fflush(stdout);
}

static int mkdir_p(const char *path) {
    char buf[PF_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char save = *p;
            *p = 0;
            if (mkdir(buf, 0777) < 0 && errno != EEXIST) {
                pf_error("cannot create directory '%s': %s", buf, strerror(errno));
                return -1;
            }
            *p = save;
            if (!save) return 0;
        }
    }
}

// ---- checkpoints ---------------------------------------------------------------------------

static void checkpoint_dir(const trainer *t, char *buf, size_t len) {
    snprintf(buf, len, "%s/checkpoints", t->cfg->out_dir);
}

// Every rank reads the same batch index of the shared permutation, so rank 0's cursor is
// every rank's cursor; it is stored once per rank all the same, as the format expects. All
// randomness after initialisation (data order, augmentation, mixing) is a function of
// (seed, epoch, batch, rank), so each rank's RNG record is just its key: (seed, rank).
static int save_checkpoint(trainer *t) {
    const pf_layout *lay = t->arena->layout;
    size_t bytes = sizeof(float) * lay->numel;
    int failed = 0;
    char dir[PF_PATH_MAX + 16];
    checkpoint_dir(t, dir, sizeof dir);
    if (t->lead) {
        float *host = pf_malloc(3 * bytes);
        t->be->download(host, t->arena->params, bytes);
        t->be->download(host + lay->numel, t->arena->m, bytes);
        t->be->download(host + 2 * lay->numel, t->arena->v, bytes);
        pf_data_cursor cur = pf_data_get_cursor(t->train);
        int64_t *cursors = pf_malloc(sizeof(int64_t) * 2 * t->world);
        uint64_t *rng = pf_malloc(sizeof(uint64_t) * 2 * t->world);
        for (int r = 0; r < t->world; r++) {
            cursors[2 * r] = cur.epoch, cursors[2 * r + 1] = cur.batch;
            rng[2 * r] = t->cfg->seed, rng[2 * r + 1] = (uint64_t)r;
        }
        char *text = pf_config_to_string(t->cfg);
        pf_checkpoint_state st = {.step = t->step, .world = t->world, .rng_words = 2,
                                  .rng = rng, .cursors = cursors, .config_text = text};
        failed = pf_checkpoint_save(dir, lay, host, host + lay->numel, host + 2 * lay->numel,
                                    &st) < 0;
        if (failed) fprintf(stderr, "pftrain: checkpoint at step %lld failed: %s\n",
                            (long long)t->step, pf_errmsg());
        free(text);
        free(rng);
        free(cursors);
        free(host);
    }
    // `latest` moves only when every rank agrees the save went through.
    if (pf_comm_agree_max_int(t->comm, failed)) return -1;
    if (t->lead && pf_checkpoint_commit(dir, t->step, t->cfg->keep_checkpoints) < 0) {
        fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        failed = 1;
    }
    return pf_comm_agree_max_int(t->comm, failed) ? -1 : 0;
}

// Rank 0 picks and loads the checkpoint, then broadcasts the state. Returns 0 (resumed or
// fresh start), -1 on error (message printed on rank 0).
static int resume(trainer *t) {
    const pf_layout *lay = t->arena->layout;
    size_t bytes = sizeof(float) * lay->numel;
    char path[PF_PATH_MAX + 64] = "";
    int status = 0;  // 1: loaded, 0: fresh start, -1: error
    int64_t header[3] = {0};  // step, epoch, batch
    if (t->lead) {
        if (!strcmp(t->opts->resume, "auto")) {
            char dir[PF_PATH_MAX + 16], msg[4096] = "";
            checkpoint_dir(t, dir, sizeof dir);
            status = pf_checkpoint_find_resume(dir, lay, path, sizeof path, msg, sizeof msg);
            if (msg[0]) fprintf(stderr, "pftrain: resume: %s", msg);
            if (status == 0) printf("pftrain: no checkpoint in %s: starting fresh\n", dir);
        } else {
            snprintf(path, sizeof path, "%s", t->opts->resume);
            status = 1;
        }
        if (status < 0) fprintf(stderr, "pftrain: %s\n", pf_errmsg());
        if (status == 1) {
            float *host = pf_malloc(3 * bytes);
            pf_checkpoint_state st = {0};
            if (pf_checkpoint_load(path, lay, host, host + lay->numel, host + 2 * lay->numel,
                                   &st) < 0) {
                fprintf(stderr, "pftrain: cannot resume: %s\n", pf_errmsg());
                status = -1;
            } else {
                t->be->upload(t->arena->params, host, bytes);
                t->be->upload(t->arena->m, host + lay->numel, bytes);
                t->be->upload(t->arena->v, host + 2 * lay->numel, bytes);
                header[0] = st.step, header[1] = st.cursors[0], header[2] = st.cursors[1];
                printf("pftrain: resumed from %s at step %lld\n", path, (long long)st.step);
                pf_checkpoint_state_free(&st);
            }
            free(host);
        }
    }
    if (pf_comm_agree_max_int(t->comm, status < 0)) return -1;  // an error on any rank
    pf_comm_broadcast_host(t->comm, header, sizeof header, 0);
    status = pf_comm_agree_max_int(t->comm, status);
    if (status != 1) return 0;
    // Only rank 0 read the file: every rank takes its parameters and optimizer moments.
    pf_comm_broadcast(t->comm, t->arena->params, bytes, 0);
    pf_comm_broadcast(t->comm, t->arena->m, bytes, 0);
    pf_comm_broadcast(t->comm, t->arena->v, bytes, 0);
    t->step = header[0];
    int bad = pf_data_set_cursor(t->train, (pf_data_cursor){.epoch = header[1], .batch = header[2]});
    if (bad && (t->lead || t->world == 1))
        fprintf(stderr, "pftrain: cannot resume the data position (was the checkpoint written "
                        "with another batch size or rank count?): %s\n", pf_errmsg());
    return pf_comm_agree_max_int(t->comm, bad != 0) ? -1 : 0;
}

// ---- set-up and the loop ---------------------------------------------------------------------

static int open_outputs(trainer *t) {
    if (!t->lead) return 0;
    char path[PF_PATH_MAX + 32];
    if (mkdir_p(t->cfg->out_dir) < 0) return -1;
    snprintf(path, sizeof path, "%s/config.ini", t->cfg->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        pf_error("cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    pf_config_write(t->cfg, f);
    if (fclose(f) != 0) {
        pf_error("cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg->out_dir);
    t->metrics = fopen(path, t->step > 0 ? "a" : "w");
    if (!t->metrics) {
        pf_error("cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void write_summary(trainer *t, const eval_result *e, double train_seconds,
                          float last_loss) {
    char path[PF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", t->cfg->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "pftrain: cannot write '%s': %s\n", path, strerror(errno));
        return;
    }
    int64_t params = pf_layout_param_count(t->arena->layout);
    pf_device_info dev;
    t->be->device_info(&dev);
    // Over the whole run, evaluation and checkpoints included: a lower bound on the step rate.
    double tflops = device_tflops(t, (double)(t->step - t->start_step) * samples_per_step(t),
                                  train_seconds);
    char mfu[32];
    format_mfu(t, tflops, mfu, sizeof mfu);
    fprintf(f,
            "{\"model\": \"%s\", \"steps\": %lld, \"world\": %d, \"backend\": \"%s\", "
            "\"device\": \"%s\", \"mem_peak_mb\": %.1f, "
            "\"params\": %lld, \"train_flops_per_sample\": %.6g, "
            "\"dense_train_flops_per_sample\": %.6g, \"train_seconds\": %.3f, "
            "\"model_tflops\": %.4g, \"mfu\": %s, "
            "\"final_loss\": %.6f, \"val_loss\": %.6f, ",
            is_text(t) ? "gpt2" : (t->cfg->model == PF_MODEL_VIT ? "vit" : "mixer"),
            (long long)t->step, t->world, t->be->name, dev.name, dev.mem_peak / 1e6,
            (long long)params, t->flops_per_sample, pf_model_train_flops(t->model, true),
            train_seconds, tflops, mfu, last_loss, e->loss);
    if (is_text(t)) fprintf(f, "\"val_ppl\": %.4f}\n", e->ppl);
    else fprintf(f, "\"val_top1\": %.6f, \"val_top5\": %.6f}\n", e->top1, e->top5);
    fclose(f);
}

static int setup(trainer *t) {
    const pf_config *c = t->cfg;
    t->rank = pf_comm_rank(t->comm);
    t->world = pf_comm_world(t->comm);
    t->lead = t->rank == 0;
    t->tty = isatty(STDOUT_FILENO) && !t->opts->quiet;
    if (!(t->be = pf_select_backend(c->backend))) return -1;
    if (pf_comm_device(t->comm) != t->be->device) {
        pf_error("backend %s needs the %s communicator; this run has %s", t->be->name,
                 t->be->device == PF_DEV_CUDA ? "nccl" : "mpi", pf_comm_name(t->comm));
        return -1;
    }
    for (int op = 0; op < PF_OP_COUNT; op++)
        if (!t->be->supports((pf_op)op)) {
            pf_error("backend %s does not support op %s yet; use run.backend = cpu",
                     t->be->name, pf_op_name((pf_op)op));
            return -1;
        }
    if (t->be->device == PF_DEV_CUDA && t->lead)
        fprintf(stderr, "pftrain: warning: the CUDA backend has not passed `make test-gpu` on a "
                        "GPU yet; check its results against run.backend = cpu\n");
    if (!(t->model = pf_model_create(c, t->be, c->batch_size))) return -1;
    t->arena = pf_model_arena(t->model);
    t->flops_per_sample = pf_model_train_flops(t->model, false);
    pf_device_info dev;
    t->be->device_info(&dev);
    t->peak_tflops = c->peak_tflops > 0 ? c->peak_tflops : dev.peak_tflops;
    pf_model_init_params(t->model, c->seed);
    // Identical seeds give identical parameters already; the broadcast makes it a guarantee.
    pf_comm_broadcast(t->comm, t->arena->params, sizeof(float) * t->arena->layout->numel, 0);
    if (!(t->train = pf_data_open(c, c->train_path, c->batch_size, t->rank, t->world, true)))
        return -1;
    if (t->lead && c->val_path[0] &&
        !(t->val = pf_data_open(c, c->val_path, c->batch_size, 0, 1, false)))
        return -1;
    int64_t elems = c->bucket_bytes / (int64_t)sizeof(float);
    t->bucket_elems = (elems / PF_PARAM_ALIGN + 1) * PF_PARAM_ALIGN;
    t->n_buckets = (t->arena->layout->numel + t->bucket_elems - 1) / t->bucket_elems;
    t->reqs = pf_calloc(t->n_buckets, sizeof *t->reqs);
    t->scalar = t->be->alloc(sizeof(float));
    return 0;
}

static void teardown(trainer *t) {
    if (t->metrics) fclose(t->metrics);
    if (t->scalar) t->be->free(t->scalar);
    free(t->reqs);
    pf_data_close(t->train);
    pf_data_close(t->val);
    pf_model_free(t->model);
}

// Runs the setup on every rank and agrees on the outcome, so that a config error on one
// rank ends all of them cleanly.
static int agree(trainer *t, int rc) {
    if (rc < 0 && (t->lead || t->world == 1)) fprintf(stderr, "pftrain: %s\n", pf_errmsg());
    return pf_comm_agree_max_int(t->comm, rc < 0) ? -1 : 0;
}

int pf_train(const pf_config *cfg, const pf_train_opts *opts, pf_comm *comm) {
    trainer t = {.cfg = cfg, .opts = opts, .comm = comm};
    int exit_code = PF_EXIT_FAILURE;
    if (agree(&t, setup(&t)) < 0) goto done;
    if (opts->resume && resume(&t) < 0) goto done;
    t.start_step = t.step;
    if (agree(&t, open_outputs(&t)) < 0) goto done;
    pf_signals_install();
    if (t.lead && !opts->quiet) {
        pf_device_info dev;
        t.be->device_info(&dev);
        printf("pftrain: %s on %s (%s, %.1f GB), %d rank%s, global batch %.0f, %lld "
               "parameters\n",
               is_text(&t) ? "gpt2" : (cfg->model == PF_MODEL_VIT ? "vit" : "mixer"),
               t.be->name, dev.name, dev.mem_total / 1e9, t.world, t.world > 1 ? "s" : "",
               samples_per_step(&t), (long long)pf_layout_param_count(t.arena->layout));
        fflush(stdout);
    }
    t.t_start = pf_now();
    step_result r = {0};
    eval_result e = {0};
    while (t.step < cfg->steps) {
        if (train_step(&t, &r) < 0) {
            fprintf(stderr, "pftrain: rank %d: %s\n", t.rank, pf_errmsg());
            pf_comm_abort(comm, PF_EXIT_FAILURE, "data error at step %lld", (long long)t.step);
        }
        if (!isfinite(r.loss))
            pf_comm_abort(comm, PF_EXIT_FAILURE,
                          "loss is %f at step %lld: training diverged; lower train.lr or "
                          "raise train.warmup_steps",
                          r.loss, (long long)t.step);
        if (t.lead) log_step(&t, &r);
        bool eval_now = t.val && ((cfg->eval_every > 0 && t.step % cfg->eval_every == 0) ||
                                  t.step == cfg->steps);
        if (eval_now) {
            if (evaluate(&t, &e) < 0)
                pf_comm_abort(comm, PF_EXIT_FAILURE, "evaluation: %s", pf_errmsg());
            log_eval(&t, &e);
        }
        int stop = pf_comm_agree_max_int(comm, pf_signals_pending() != 0);
        bool periodic = cfg->checkpoint_every > 0 && t.step % cfg->checkpoint_every == 0;
        if (stop || periodic || t.step == cfg->steps) {
            if (save_checkpoint(&t) < 0) goto done;
            if (stop) {
                if (t.lead)
                    printf("%spftrain: signal received: saved step %lld, exiting with %d for "
                           "requeue\n",
                           t.tty ? "\n" : "", (long long)t.step, PF_EXIT_REQUEUE);
                exit_code = PF_EXIT_REQUEUE;
                goto done;
            }
        }
    }
    if (t.lead) {
        double secs = pf_now() - t.t_start;
        if (t.tty) printf("\n");
        write_summary(&t, &e, secs, r.loss);
        printf("pftrain: done: %lld steps in %.1f s, final loss %.4f", (long long)t.step, secs,
               r.loss);
        if (t.val && is_text(&t)) printf(", val_loss %.4f, val_ppl %.2f", e.loss, e.ppl);
        else if (t.val) printf(", val top-1 %.2f%%", 100 * e.top1);
        printf("\n");
    }
    exit_code = PF_EXIT_OK;
done:
    teardown(&t);
    return exit_code;
}
