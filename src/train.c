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
#include "memplan.h"
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
    // The last checkpoint committed or resumed from (to name in a divergence message); "": none.
    char last_ckpt[PF_PATH_MAX + 64];
    // all-reduce buckets over the gradient arena: bucket i covers [i*elems, (i+1)*elems)
    int64_t bucket_elems, n_buckets, next_bucket;  // buckets are launched from the last down
    pf_comm_request *reqs;
    float *scalar;      // one float on the backend, for averaging the loss over ranks
    double t_start;
    double flops_per_sample;  // training FLOPs of one sample (nonzero work only)
    double peak_tflops;       // per-device peak for MFU; 0: unknown, no MFU reported
    bool config_error;        // set-up failed on the config (exit 2), not on data or I/O
    // The next micro-batch is staged (pf_model_stage) while the current one's backward runs,
    // across steps too: then the data cursor is already past it, and a checkpoint stores
    // staged_from, the cursor it was taken at. staged_step: the step (1-based) it is for.
    bool staged;
    pf_data_cursor staged_from;
    int64_t staged_step;
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

// Takes the next training micro-batch, for step `step` (1-based), and stages it in the model.
static int stage_next(trainer *t, int64_t step) {
    t->staged_from = pf_data_get_cursor(t->train);
    t->staged_step = step;
    pf_batch batch;
    if (pf_data_next(t->train, &batch) < 0) return -1;
    pf_model_stage(t->model, &batch);
    t->staged = true;
    return 0;
}

// The data cursor a checkpoint after this step stores: that of the next step's first batch.
static pf_data_cursor checkpoint_cursor(const trainer *t) {
    return t->staged ? t->staged_from : pf_data_get_cursor(t->train);
}

// One optimizer step. 0 when done; 1 when the loss or the gradient norm is not finite on some
// rank (every rank returns 1, nothing was updated, t->step is unchanged; r has the loss, norm
// and lr); -1 on a data error on this rank (pf_error(); t->staged_step is the step whose batch
// failed).
// Each micro-batch is computed from the one staged before, and the next one (of this step or
// of the next) is taken, prepared and uploaded once its backward is issued: on CUDA the host
// work and the copy overlap the backward on the device.
static int train_step(trainer *t, step_result *r) {
    const pf_config *c = t->cfg;
    const pf_backend *be = t->be;
    const pf_layout *lay = t->arena->layout;
    double t0 = pf_now();
    be->zero(t->arena->grads, sizeof(float) * lay->numel);
    float loss = 0;
    for (int micro = 0; micro < c->grad_accum; micro++) {
        if (!t->staged && stage_next(t, t->step + 1) < 0) return -1;
        t->staged = false;
        // the run's micro-batch number and this rank's first row of the global micro-batch
        pf_model_arm_dropout(t->model, (uint64_t)t->step * c->grad_accum + micro,
                             (int64_t)t->rank * c->batch_size);
        loss += pf_model_forward(t->model, NULL, NULL) / c->grad_accum;
        bool last = micro == c->grad_accum - 1;
        bool bucketed = last && t->world > 1;
        if (bucketed) t->next_bucket = t->n_buckets - 1;
        pf_model_backward(t->model, 1.0f / c->grad_accum, bucketed ? on_grads_ready : NULL, t);
        if (!last && stage_next(t, t->step + 1) < 0) return -1;
        if (last && t->step + 1 < c->steps && stage_next(t, t->step + 2) < 0) return -1;
    }
    if (t->world > 1) wait_all_buckets(t);
    float clip = 1.0f;
    double norm = pf_grad_norm(be, t->arena->grads, lay->numel, c->grad_clip, &clip);
    r->lr = lr_at(c, t->step);
    r->loss = average_over_ranks(t, loss);
    r->grad_norm = (float)norm;
    // Divergence is caught before the update, so the parameters (and any checkpoint) stay
    // those of the last good step. The loss is averaged over the ranks and the norm is that of
    // the all-reduced gradients, so every rank sees the same values; the agreement makes it
    // certain that all of them stop together.
    int diverged = !isfinite(r->loss) || !isfinite(norm);
    if (t->world > 1) diverged = pf_comm_agree_max_int(t->comm, diverged);
    if (diverged) return 1;
    pf_model_adamw_step(t->model, r->lr, (int)(t->step + 1), clip);
    be->synchronize();
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
        pf_data_cursor cur = checkpoint_cursor(t);
        int64_t *cursors = pf_malloc(sizeof(int64_t) * 2 * t->world);
        uint64_t *rng = pf_malloc(sizeof(uint64_t) * 2 * t->world);
        for (int r = 0; r < t->world; r++) {
            cursors[2 * r] = cur.epoch, cursors[2 * r + 1] = cur.batch;
            rng[2 * r] = t->cfg->seed, rng[2 * r + 1] = (uint64_t)r;
        }
        char *text = pf_config_to_string(t->cfg);
        pf_checkpoint_state st = {.step = t->step, .world = t->world, .rng_words = 2,
                                  .rng = rng, .cursors = cursors, .config_text = text,
                                  .data_items = pf_data_num_items(t->train)};
        pf_model_masks(t->model, &st);
        failed = pf_checkpoint_save(dir, lay, host, host + lay->numel, host + 2 * lay->numel,
                                    &st) < 0;
        for (int i = 0; i < st.n_masks; i++) free(st.masks[i].col);
        free(st.masks);
        if (failed) pf_report("checkpoint at step %lld failed: %s", (long long)t->step,
                              pf_errmsg());
        free(text);
        free(rng);
        free(cursors);
        free(host);
    }
    // `latest` moves only when every rank agrees the save went through.
    if (pf_comm_agree_max_int(t->comm, failed)) return -1;
    if (t->lead && pf_checkpoint_commit(dir, t->step, t->cfg->keep_checkpoints) < 0) {
        pf_report("%s", pf_errmsg());
        failed = 1;
    }
    if (pf_comm_agree_max_int(t->comm, failed)) return -1;
    pf_checkpoint_path(t->last_ckpt, sizeof t->last_ckpt, dir, t->step);
    return 0;
}

// ---- the resume policy -----------------------------------------------------------------------
//
// A run directory that holds checkpoints is never overwritten by a fresh start: `--resume
// auto` starts from step 0 only when it holds no checkpoint, and refuses (PF_EXIT_USAGE,
// naming every file and why) when none of them can be resumed from. A checkpoint is resumed
// only under the model it was written with (model_shape_key); every other key may change and
// the changes are reported. A new run (no --resume) into a directory that holds a run is
// refused unless --new-run, which moves the old run aside first (nothing is deleted).

// Keys that define the model's parameters or what they compute. Every other key (train.lr,
// train.steps, the schedule, evaluation, logging, data paths, run.*) may change on resume.
static bool model_shape_key(const char *section, const char *key) {
    if (!strcmp(section, "model")) return strcmp(key, "init_std") != 0;  // init only
    if (!strcmp(section, "pixelfly"))  // recompute_mlp (formerly fuse_mlp): same parameters
        return strcmp(key, "recompute_mlp") != 0 && strcmp(key, "fuse_mlp") != 0;
    return false;
}

typedef struct {
    char section[32];
    const char *key, *value;  // into the parsed text
} ini_entry;

// Splits the text pf_config_write makes ("[section]" lines, then "key = value" lines) in place
// into at most `cap` entries; returns their number.
static int parse_ini(char *text, ini_entry *e, int cap) {
    char section[32] = "";
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t len = strlen(line);
        if (line[0] == '[' && len > 2 && line[len - 1] == ']') {
            snprintf(section, sizeof section, "%.*s", (int)(len - 2), line + 1);
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq || n == cap) continue;
        *eq = 0;
        snprintf(e[n].section, sizeof e[n].section, "%s", section);
        e[n].key = line;
        e[n].value = eq + 3;
        n++;
    }
    return n;
}

// A value as a person would write it: floats through %g ("0.000500000024" -> "0.0005").
static const char *shown(const char *v, char *buf, size_t cap) {
    char *end;
    double x = strtod(v, &end);
    if (!*v) snprintf(buf, cap, "''");
    else if (*end == 0 && strpbrk(v, ".eE")) snprintf(buf, cap, "%g", x);
    else snprintf(buf, cap, "%s", v);
    return buf;
}

static void append(char *buf, size_t cap, const char *sep, const char *text) {
    size_t k = strlen(buf);
    if (cap > k) snprintf(buf + k, cap - k, "%s%s", k ? sep : "", text);
}

// pixelfly.budget > 0 among the entries (absent in checkpoints older than the key: 0).
static bool has_budget(const ini_entry *e, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].section, "pixelfly") && !strcmp(e[i].key, "budget"))
            return strtod(e[i].value, NULL) > 0;
    return false;
}

// An entry's value to compare: a layer spec `auto` without a budget is dense (the value
// written before `auto` existed), so such checkpoints and runs resume each other.
static const char *layer_value(const ini_entry *e, bool budget) {
    if (!budget && !strcmp(e->section, "pixelfly") && !strcmp(e->value, "auto")) return "dense";
    return e->value;
}

// Compares the configuration stored in a checkpoint (`old_text`) with this run's: each key
// whose value differs, as "section.key OLD -> NEW", goes to `refused` (model-shape keys,
// joined by ", ") or to `changed` (the others, one per line); either may be NULL. Keys that
// only one side has (another pixelfly version) are not compared. Returns the refused count.
static int config_diff(const char *old_text, const pf_config *cfg, char *refused, size_t rcap,
                       char *changed, size_t ccap) {
    enum { MAX_KEYS = 512 };
    char *old = pf_strdup(old_text), *now = pf_config_to_string(cfg);
    ini_entry *a = pf_malloc(2 * MAX_KEYS * sizeof *a), *b = a + MAX_KEYS;
    int na = parse_ini(old, a, MAX_KEYS), nb = parse_ini(now, b, MAX_KEYS), nref = 0;
    bool budget_a = has_budget(a, na), budget_b = has_budget(b, nb);
    for (int j = 0; j < nb; j++)
        for (int i = 0; i < na; i++) {
            if (strcmp(a[i].section, b[j].section) || strcmp(a[i].key, b[j].key)) continue;
            if (!strcmp(layer_value(&a[i], budget_a), layer_value(&b[j], budget_b))) break;
            char line[2 * PF_PATH_MAX + 256], v0[PF_PATH_MAX + 8], v1[PF_PATH_MAX + 8];
            snprintf(line, sizeof line, "%s.%s %s -> %s", b[j].section, b[j].key,
                     shown(a[i].value, v0, sizeof v0), shown(b[j].value, v1, sizeof v1));
            bool shape = model_shape_key(b[j].section, b[j].key);
            nref += shape;
            if (shape && refused) append(refused, rcap, ", ", line);
            if (!shape && changed) append(changed, ccap, "\n", line);
            break;
        }
    free(a);
    free(now);
    free(old);
    return nref;
}

// The global batch (ranks x train.batch_size) a checkpoint was written at: its data cursor
// counts global batches, so it carries over exactly to any rank count with the same global
// batch (data_order.h) and to no other. 0 when the stored config has no batch_size.
static int64_t stored_global_batch(const pf_checkpoint_state *st) {
    char *text = pf_strdup(st->config_text);
    ini_entry e[512];
    int n = parse_ini(text, e, 512);
    int64_t b = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].section, "train") && !strcmp(e[i].key, "batch_size"))
            b = strtoll(e[i].value, NULL, 10);
    free(text);
    return b * st->world;
}

// pf_checkpoint_find_resume's accept test (and --resume PATH's): the checkpoint's stored
// configuration has this run's values for every model-shape key.
static int resume_accepts(void *ctx, const char *path) {
    const trainer *t = ctx;
    char *text = NULL, refused[2048] = "";
    if (pf_checkpoint_read_config(path, &text) < 0) return -1;
    int n = config_diff(text, t->cfg, refused, sizeof refused, NULL, 0);
    free(text);
    if (n == 0) return 0;
    pf_error("checkpoint '%s' was written with another model: %s (model-shape keys cannot "
             "change on resume)", path, refused);
    return -1;
}

// Prints each line of `lines` with pf_report, after `lead`.
static void report_lines(const char *lead, const char *lines) {
    for (const char *p = lines; *p;) {
        size_t n = strcspn(p, "\n");
        pf_report("%s%.*s", lead, (int)n, p);
        p += n + (p[n] == '\n');
    }
}

// Whether run.out_dir holds a run: checkpoints, metrics.jsonl or summary.json. `what` lists
// those found ("checkpoints/, metrics.jsonl").
static bool holds_run(const pf_config *c, char *what, size_t cap) {
    char path[PF_PATH_MAX + 32];
    what[0] = 0;
    snprintf(path, sizeof path, "%s/checkpoints", c->out_dir);
    if (pf_checkpoint_any(path)) append(what, cap, ", ", "checkpoints/");
    static const char *const files[] = {"metrics.jsonl", "summary.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", c->out_dir, files[i]);
        if (access(path, F_OK) == 0) append(what, cap, ", ", files[i]);
    }
    return what[0] != 0;
}

// Before set-up, on rank 0: a new run (no --resume) into a directory that holds one is
// refused unless --new-run. Returns 0 or PF_EXIT_USAGE (message printed).
static int check_new_run(const trainer *t) {
    const pf_train_opts *o = t->opts;
    char what[256];
    if (o->new_run && o->resume) {
        pf_report("--new-run starts a new run and --resume continues one: give one of them");
        return PF_EXIT_USAGE;
    }
    if (o->resume || o->new_run || !holds_run(t->cfg, what, sizeof what)) return 0;
    pf_report("run.out_dir '%s' already holds a run (%s); a new run does not start over it. "
              "Continue it with --resume auto, start the new run in another run.out_dir, or "
              "pass --new-run to move the old run aside into %s/previous-N (nothing is "
              "deleted)", t->cfg->out_dir, what, t->cfg->out_dir);
    return PF_EXIT_USAGE;
}

// --new-run, on rank 0 once set-up has succeeded: moves the old run's checkpoints/,
// metrics.jsonl, summary.json, config.ini and ranks.tsv into run.out_dir/previous-N (the
// first N free).
static int move_run_aside(const trainer *t) {
    const char *out = t->cfg->out_dir;
    char what[256], aside[PF_PATH_MAX + 32], from[PF_PATH_MAX + 32], to[2 * PF_PATH_MAX + 64];
    if (!holds_run(t->cfg, what, sizeof what)) return 0;
    for (int n = 1;; n++) {
        snprintf(aside, sizeof aside, "%s/previous-%d", out, n);
        if (mkdir(aside, 0777) == 0) break;
        if (errno != EEXIST) {
            pf_error("--new-run: cannot create '%s': %s", aside, strerror(errno));
            return -1;
        }
    }
    static const char *const entries[] = {"checkpoints", "metrics.jsonl", "summary.json",
                                          "config.ini", "ranks.tsv"};
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        struct stat sb;
        snprintf(from, sizeof from, "%s/%s", out, entries[i]);
        snprintf(to, sizeof to, "%s/%s", aside, entries[i]);
        if (lstat(from, &sb) != 0) continue;
        if (rename(from, to) != 0) {
            pf_error("--new-run: cannot move '%s' to '%s': %s", from, to, strerror(errno));
            return -1;
        }
    }
    printf("pftrain: --new-run: moved the previous run (%s) aside to %s\n", what, aside);
    return 0;
}

// Rank 0 picks the checkpoint (--resume auto: pf_checkpoint_find_resume with resume_accepts as
// its test; --resume PATH: that file, tested the same way), loads it and broadcasts the state.
// Returns 0 (resumed, or a fresh start when the run directory holds no checkpoint) or an exit
// code every rank agrees on: PF_EXIT_USAGE when the checkpoints cannot be resumed under this
// config or none of them loads (the directory is left as it is), PF_EXIT_FAILURE when the
// checkpoint directory cannot be listed. Messages are printed on rank 0.
static int resume(trainer *t) {
    const pf_layout *lay = t->arena->layout;
    size_t bytes = sizeof(float) * lay->numel;
    char path[PF_PATH_MAX + 64] = "";
    int status = 0;  // 1: a checkpoint to load, 0: fresh start
    int code = 0;    // the exit code when resuming is refused
    int64_t header[3] = {0};  // step, epoch, batch
    if (t->lead) {
        char dir[PF_PATH_MAX + 16];
        checkpoint_dir(t, dir, sizeof dir);
        if (!strcmp(t->opts->resume, "auto")) {
            enum { MSG_MAX = 16384 };
            char *msg = pf_malloc(MSG_MAX);
            int found = pf_checkpoint_find_resume(dir, lay, resume_accepts, t, path, sizeof path,
                                                  msg, MSG_MAX);
            if (found == PF_RESUME_FOUND) {
                report_lines("resume: ", msg);  // the newer files skipped, and why
                status = 1;
            } else if (found == PF_RESUME_NONE) {
                printf("pftrain: no checkpoint in %s: starting fresh\n", dir);
            } else if (found == PF_RESUME_UNUSABLE) {
                pf_report("cannot resume: none of the checkpoints in %s can be resumed from:", dir);
                report_lines("  ", msg);
                pf_report("a run directory that holds checkpoints is never restarted from step 0 "
                          "(nothing was changed in it). Resume with the settings the checkpoints "
                          "were written with, name a file with --resume PATH, or start a new run "
                          "(without --resume) in another run.out_dir, or with --new-run, which "
                          "moves this run aside");
                code = PF_EXIT_USAGE;
            } else {
                pf_report("cannot resume: %s", pf_errmsg());
                code = PF_EXIT_FAILURE;
            }
            free(msg);
        } else if (resume_accepts(t, t->opts->resume) < 0) {
            pf_report("cannot resume: %s", pf_errmsg());
            code = PF_EXIT_USAGE;
        } else {
            snprintf(path, sizeof path, "%s", t->opts->resume);
            status = 1;
        }
        if (status == 1) {
            float *host = pf_malloc(3 * bytes);
            pf_checkpoint_state st = {0};
            static const char *const groups[3] = {"params", "opt/m", "opt/v"};
            bool loaded = pf_checkpoint_load(path, lay, host, host + lay->numel,
                                             host + 2 * lay->numel, &st) == 0;
            // A checkpoint saved after the model diverged (by a pixelfly before the divergence
            // check) would diverge again on every requeue: refused, by name.
            int g = 0;
            while (loaded && g < 3 &&
                   pf_checkpoint_check_finite(lay, host + g * lay->numel, groups[g]) == 0)
                g++;
            if (!loaded) {
                pf_report("cannot resume: %s", pf_errmsg());
                code = PF_EXIT_USAGE;
                status = 0;
            } else if (stored_global_batch(&st) &&
                       stored_global_batch(&st) != (int64_t)t->world * t->cfg->batch_size) {
                pf_report("cannot resume from '%s': it was written at a global batch of %lld "
                          "(%d rank%s x train.batch_size %lld) and this run's is %lld (%d x %d): "
                          "its data position carries over only at the same global batch. Choose "
                          "a rank count and train.batch_size whose product is %lld, or start a "
                          "new run", path, (long long)stored_global_batch(&st), st.world,
                          st.world == 1 ? "" : "s",
                          (long long)(stored_global_batch(&st) / st.world),
                          (long long)t->world * t->cfg->batch_size, t->world, t->cfg->batch_size,
                          (long long)stored_global_batch(&st));
                pf_checkpoint_state_free(&st);
                code = PF_EXIT_USAGE;
                status = 0;
            } else if (st.data_items && st.data_items != pf_data_num_items(t->train)) {
                pf_report("cannot resume from '%s': its data position counts %lld items of the "
                          "training split but data.train = '%s' now has %lld (shards added, "
                          "removed or rebuilt?), so the position names other data. Give "
                          "data.train the shards it was written with, or start a new run",
                          path, (long long)st.data_items, t->cfg->train_path,
                          (long long)pf_data_num_items(t->train));
                pf_checkpoint_state_free(&st);
                code = PF_EXIT_USAGE;
                status = 0;
            } else if (g < 3) {
                pf_report("cannot resume from '%s': %s: it was saved after the model diverged; "
                          "resume from an earlier checkpoint with --resume PATH",
                          path, pf_errmsg());
                pf_checkpoint_state_free(&st);
                code = PF_EXIT_USAGE;
                status = 0;
            } else if (pf_model_adopt_masks(t->model, &st, path) < 0) {
                pf_report("cannot resume: %s", pf_errmsg());
                pf_checkpoint_state_free(&st);
                code = PF_EXIT_USAGE;
                status = 0;
            } else {
                t->be->upload(t->arena->params, host, bytes);
                t->be->upload(t->arena->m, host + lay->numel, bytes);
                t->be->upload(t->arena->v, host + 2 * lay->numel, bytes);
                header[0] = st.step, header[1] = st.cursors[0], header[2] = st.cursors[1];
                printf("pftrain: resumed from %s at step %lld\n", path, (long long)st.step);
                char changed[4096] = "";
                config_diff(st.config_text, t->cfg, NULL, 0, changed, sizeof changed);
                for (const char *p = changed; *p;) {
                    size_t n = strcspn(p, "\n");
                    printf("pftrain: resume: %.*s\n", (int)n, p);
                    p += n + (p[n] == '\n');
                }
                snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
                pf_checkpoint_state_free(&st);
            }
            free(host);
        }
    }
    if ((code = pf_comm_agree_max_int(t->comm, code))) return code;  // refused on rank 0
    pf_comm_broadcast_host(t->comm, header, sizeof header, 0);
    status = pf_comm_agree_max_int(t->comm, status);
    if (status != 1) return 0;
    // Only rank 0 read the file: every rank takes its blocksparse masks (the same shapes on
    // every rank: they come from the config), its parameters and optimizer moments.
    pf_checkpoint_state masks = {0};
    pf_model_masks(t->model, &masks);
    for (int i = 0; i < masks.n_masks; i++)
        pf_comm_broadcast_host(t->comm, masks.masks[i].col,
                               sizeof(int32_t) * (size_t)masks.masks[i].rows * masks.masks[i].cols,
                               0);
    if (!t->lead && pf_model_adopt_masks(t->model, &masks, "rank 0's copy") < 0)
        PF_FATAL("%s", pf_errmsg());  // rank 0 checked the tables it sent
    pf_checkpoint_state_free(&masks);
    pf_comm_broadcast(t->comm, t->arena->params, bytes, 0);
    pf_comm_broadcast(t->comm, t->arena->m, bytes, 0);
    pf_comm_broadcast(t->comm, t->arena->v, bytes, 0);
    t->step = header[0];
    int bad = pf_data_set_cursor(t->train, (pf_data_cursor){.epoch = header[1], .batch = header[2]});
    if (bad)
        pf_report("cannot resume the data position (was the checkpoint written with another "
                  "batch size or rank count?): %s", pf_errmsg());
    return pf_comm_agree_max_int(t->comm, bad != 0) ? PF_EXIT_USAGE : 0;
}

// ---- set-up and the loop ---------------------------------------------------------------------

static int open_outputs(trainer *t) {
    if (!t->lead) return 0;
    char path[PF_PATH_MAX + 32];
    if (pf_mkdir_p(t->cfg->out_dir) < 0) return -1;
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
        pf_report("cannot write '%s': %s", path, strerror(errno));
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
        if (!t->be->supports((pf_op)op, t->be->act_dtype)) {
            pf_error("backend %s does not support op %s yet; use run.backend = cpu",
                     t->be->name, pf_op_name((pf_op)op));
            return -1;
        }
    if (t->be->device == PF_DEV_CUDA && t->lead)
        fprintf(stderr, "pftrain: warning: the CUDA backend has not passed `make test-gpu` on a "
                        "GPU yet; check its results against run.backend = cpu\n");
    // The memory plan before anything large is allocated: a model the config cannot build
    // (a [pixelfly] pattern that does not fit its layer) or one this machine cannot hold is a
    // configuration error, with the figures and the keys that change them.
    pf_mem_plan plan;
    t->config_error = true;
    if (pf_mem_plan_compute(c, t->be, &plan) < 0 ||
        pf_mem_plan_check(&plan, c, t->be, pf_comm_local_size(t->comm)) < 0)
        return -1;
    t->config_error = false;
    if (!(t->model = pf_model_create(c, t->be, c->batch_size))) return -1;
    t->arena = pf_model_arena(t->model);
    t->flops_per_sample = pf_model_train_flops(t->model, false);
    pf_device_info dev;
    t->be->device_info(&dev);
    t->peak_tflops = c->peak_tflops > 0 ? c->peak_tflops : dev.peak_tflops;
    pf_model_init_params(t->model, c->seed);  // pf_train broadcasts rank 0's after set-up
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

// Runs after each set-up stage on every rank and agrees on the outcome, so that an error on
// one rank ends all of them cleanly. Every rank that failed prints its own message with its
// rank and host (pf_report: "pftrain[rank 3@node2]: cannot open ..."), so the one rank whose
// data file is missing is the one named; rank 0 says why it stops when it did not fail itself.
static int agree(trainer *t, int rc) {
    if (rc < 0) pf_report("%s", pf_errmsg());
    int failed = pf_comm_agree_max_int(t->comm, rc < 0);
    if (failed && rc >= 0 && pf_comm_rank(t->comm) == 0)
        pf_report("stopping: set-up failed on another rank (see its message)");
    return failed ? -1 : 0;
}

// A resumed run whose checkpoint is already at train.steps has nothing to do: it ends with 0
// and leaves the run directory as it is (summary.json keeps the finished run's figures).
static void report_nothing_to_do(const trainer *t) {
    char path[PF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", t->cfg->out_dir);
    bool have = access(path, F_OK) == 0;
    printf("pftrain: nothing to do: the run is at step %lld and train.steps is %lld (raise "
           "train.steps to train further); %s\n",
           (long long)t->step, (long long)t->cfg->steps,
           have ? "summary.json is left as it was" : "it has no summary.json (it ended before "
                                                     "writing one), and none is written now");
}

// The step after t->step diverged (train_step returned 1): its update was not applied, so
// the parameters and every checkpoint are those of earlier steps. Says what to try. Rank 0.
static void report_divergence(const trainer *t, const step_result *r) {
    const pf_config *c = t->cfg;
    if (t->tty) printf("\n");
    pf_report("training diverged at step %lld: loss %g, gradient norm %g (train.lr %g at this "
              "step); its update was not applied and no checkpoint holds it",
              (long long)t->step + 1, r->loss, r->grad_norm, r->lr);
    pf_report("try a lower train.lr (now %g), gradient clipping train.grad_clip (now %g%s) or a "
              "longer train.warmup_steps (now %d)",
              c->lr, c->grad_clip, c->grad_clip > 0 ? "" : ": off", c->warmup_steps);
    if (t->last_ckpt[0])
        pf_report("then resume from the last checkpoint, %s, e.g. --resume %s --set "
                  "train.lr=%g",
                  t->last_ckpt, t->last_ckpt, c->lr / 10);
    else
        pf_report("no checkpoint was saved yet: start again with --new-run (or in another "
                  "run.out_dir), e.g. --new-run --set train.lr=%g",
                  c->lr / 10);
}

// Where every rank runs, gathered to rank 0: RUN/ranks.tsv ("rank host local_rank local_size"
// per line, after a header), which the batch script reads to name the ranks a lost node took
// with it, and unless quiet one line per node, "pftrain: node2: ranks 2-3 (local 0-1 of 2)"
// (a node's ranks are consecutive under the launchers' default block mapping; a node holding
// scattered ranks is listed rank by rank). Collective: every rank calls it.
typedef struct {
    char host[64];
    int32_t local_rank, local_size;
} rank_place;

static int report_placement(trainer *t) {
    rank_place mine = {.local_rank = pf_comm_local_rank(t->comm),
                       .local_size = pf_comm_local_size(t->comm)};
    snprintf(mine.host, sizeof mine.host, "%s", pf_runtime()->host);
    rank_place *all = t->lead ? pf_malloc(sizeof *all * (size_t)t->world) : NULL;
    pf_comm_gather_host(t->comm, &mine, sizeof mine, all, 0);
    if (!t->lead) return 0;
    char path[PF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/ranks.tsv", t->cfg->out_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "rank\thost\tlocal_rank\tlocal_size\n");
        for (int r = 0; r < t->world; r++)
            fprintf(f, "%d\t%s\t%d\t%d\n", r, all[r].host, all[r].local_rank, all[r].local_size);
    }
    int rc = 0;
    if (!f || fclose(f) != 0) {
        pf_error("cannot write '%s': %s", path, strerror(errno));
        rc = -1;
    }
    for (int r = 0; rc == 0 && t->world > 1 && !t->opts->quiet && r < t->world;) {
        int e = r;  // ranks r..e share a host and have consecutive local ranks
        while (e + 1 < t->world && !strcmp(all[e + 1].host, all[r].host) &&
               all[e + 1].local_rank == all[e].local_rank + 1)
            e++;
        if (e > r)
            printf("pftrain: %s: ranks %d-%d (local %d-%d of %d)\n", all[r].host, r, e,
                   all[r].local_rank, all[e].local_rank, all[r].local_size);
        else
            printf("pftrain: %s: rank %d (local %d of %d)\n", all[r].host, r, all[r].local_rank,
                   all[r].local_size);
        r = e + 1;
    }
    fflush(stdout);
    free(all);
    return rc;
}

int pf_train(const pf_config *cfg, const pf_train_opts *opts, pf_comm *comm) {
    trainer t = {.cfg = cfg, .opts = opts, .comm = comm};
    int exit_code = PF_EXIT_FAILURE;
    // A new run never starts over another one (check_new_run); refused before any set-up.
    int code = pf_comm_rank(comm) == 0 ? check_new_run(&t) : 0;
    if ((code = pf_comm_agree_max_int(comm, code))) {
        exit_code = code;
        goto done;
    }
    if (agree(&t, setup(&t)) < 0) {
        if (pf_comm_agree_max_int(comm, t.config_error)) exit_code = PF_EXIT_USAGE;
        goto done;
    }
    // Identical seeds give identical parameters already; the broadcast makes it a guarantee. It
    // comes after every rank's set-up has succeeded: a collective inside the set-up would hang
    // the ranks that reached it while a failed rank waits in the agreement.
    pf_comm_broadcast(comm, t.arena->params, sizeof(float) * t.arena->layout->numel, 0);
    if (opts->new_run && agree(&t, t.lead ? move_run_aside(&t) : 0) < 0) goto done;
    if (opts->resume && (code = resume(&t)) != 0) {
        exit_code = code;
        goto done;
    }
    t.start_step = t.step;
    if (opts->resume && t.step > 0 && t.step >= cfg->steps) {
        if (t.lead) report_nothing_to_do(&t);
        exit_code = PF_EXIT_OK;
        goto done;
    }
    if (agree(&t, open_outputs(&t)) < 0) goto done;
    if (agree(&t, report_placement(&t)) < 0) goto done;
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
        int rc = train_step(&t, &r);
        if (rc < 0) {
            pf_report("%s", pf_errmsg());
            pf_comm_abort(comm, PF_EXIT_FAILURE, "data error at step %lld",
                          (long long)t.staged_step);
        }
        if (rc > 0) {  // diverged: every rank stops here, exit code 1
            if (t.lead) report_divergence(&t, &r);
            goto done;
        }
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
