// data.c: the batch source behind pf_data: a token loader for GPT-2, an image loader for the
// vision models, and the ring of batch slots that loader threads fill ahead of the step.
//
// Batch k (counted from the last reset or cursor move) lives in slot k % n_slots. A loader
// thread takes the next k whose slot is free, plans it under the lock (the loader's order
// advances in k order, so batch k holds exactly what the synchronous loader's k-th call would
// have read), then fills it outside the lock; the step takes batches in k order, each staying
// valid until its next call. Every pixel of a batch is a function of (seed, epoch, position)
// and the mixing of (seed, epoch, batch, rank), so the batches are bit-identical whatever the
// thread count, and to data.workers = 0, where the step fills slot 0 itself.
#include "data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "image_loader.h"
#include "image_shard.h"
#include "token_loader.h"

typedef enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_FAILED, SLOT_TAKEN } slot_state;

typedef struct {
    slot_state state;
    pf_data_rows rows;             // rows.items points at items
    uint32_t *items;               // [B] the planned items, copied out of the epoch's order
    int32_t *inputs, *targets;     // GPT-2: [B*T] each
    float *pixels;                 // vision: [B, S, S, C]
    int32_t *labels, *labels_b;    // vision: [B]; labels_b only with mixing
    float lam;
    char err[1024];                // the failure of a SLOT_FAILED fill
} slot;

struct pf_data {
    pf_token_loader *tokens;
    pf_image_loader *images;
    int B, T, S, C, rank;
    // Mixup / cutmix of training batches; off when both alphas are 0.
    float mixup_alpha, cutmix_alpha;
    uint64_t seed;

    slot *slots;
    int n_slots, n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t changed;  // any slot's state, `paused` or `stop`
    int64_t planned, taken;  // batches planned and taken since the last restart
    int held;                // the slot the step holds, or -1
    bool paused, stop;
    int busy;                     // threads between planning and finishing a fill
    pf_data_cursor cursor;        // of the next batch the step takes
};

// ---- filling one slot ------------------------------------------------------------------------

static void slot_alloc(pf_data *d, slot *s) {
    s->items = pf_malloc(sizeof *s->items * (size_t)d->B);
    if (d->tokens) {
        s->inputs = pf_malloc(sizeof(int32_t) * (size_t)d->B * d->T);
        s->targets = pf_malloc(sizeof(int32_t) * (size_t)d->B * d->T);
    } else {
        s->pixels = pf_malloc(sizeof(float) * (size_t)d->B * d->S * d->S * d->C);
        s->labels = pf_malloc(sizeof(int32_t) * (size_t)d->B);
        if (d->mixup_alpha > 0 || d->cutmix_alpha > 0)
            s->labels_b = pf_malloc(sizeof(int32_t) * (size_t)d->B);
    }
}

static void slot_free(slot *s) {
    free(s->items);
    free(s->inputs);
    free(s->targets);
    free(s->pixels);
    free(s->labels);
    free(s->labels_b);
}

// Plans the next batch into s (under the lock when threads run).
static void plan(pf_data *d, slot *s) {
    pf_data_rows r = d->tokens ? pf_token_loader_plan(d->tokens) : pf_image_loader_plan(d->images);
    memcpy(s->items, r.items, sizeof *s->items * (size_t)r.real);
    r.items = s->items;
    s->rows = r;
}

// Reads and augments the planned batch of s; -1 with the message in s->err.
static int fill(pf_data *d, slot *s, bool parallel) {
    int rc = d->tokens ? pf_token_loader_fill(d->tokens, &s->rows, s->inputs, s->targets)
                       : pf_image_loader_fill(d->images, &s->rows, parallel, s->pixels,
                                              s->labels);
    if (rc < 0) {
        snprintf(s->err, sizeof s->err, "%s", pf_errmsg());
        return -1;
    }
    s->lam = 1.0f;
    if (s->labels_b) {
        uint64_t seed = d->seed * 0x94D049BB133111EBull ^
                        (uint64_t)s->rows.epoch * 0xD6E8FEB86659FD93ull ^
                        (uint64_t)s->rows.batch * 0xA0761D6478BD642Full ^
                        (uint64_t)d->rank * 0xE7037ED1A0B428DBull;
        s->lam = pf_image_mix_batch(s->pixels, s->labels, s->labels_b, d->B, d->S, d->C,
                                    d->mixup_alpha, d->cutmix_alpha, seed);
    }
    return 0;
}

// ---- loader threads --------------------------------------------------------------------------

static void *loader_thread(void *arg) {
    pf_data *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        slot *s = &d->slots[d->planned % d->n_slots];
        while (!d->stop && (d->paused || s->state != SLOT_FREE)) {
            pthread_cond_wait(&d->changed, &d->mu);
            s = &d->slots[d->planned % d->n_slots];
        }
        if (d->stop) break;
        plan(d, s);
        d->planned++;
        s->state = SLOT_FILLING;
        d->busy++;
        pthread_mutex_unlock(&d->mu);
        int rc = fill(d, s, false);
        pthread_mutex_lock(&d->mu);
        s->state = rc < 0 ? SLOT_FAILED : SLOT_READY;
        d->busy--;
        pthread_cond_broadcast(&d->changed);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

// Stops planning and waits for the fills under way, after which the caller may move the
// loader's order (restart_threads then drops what was planned ahead).
static void pause_threads(pf_data *d) {
    pthread_mutex_lock(&d->mu);
    d->paused = true;
    while (d->busy > 0) pthread_cond_wait(&d->changed, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

// Restarts after the loader's order was moved to the step's cursor `cur`: the batches planned
// ahead of it are dropped.
static void restart_threads(pf_data *d, pf_data_cursor cur) {
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->n_slots; i++) d->slots[i].state = SLOT_FREE;
    d->planned = d->taken = 0;
    d->held = -1;
    d->cursor = cur;
    d->paused = false;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->mu);
}

static pf_data_cursor loader_cursor(const pf_data *d) {
    return d->tokens ? pf_token_loader_get_cursor(d->tokens)
                     : pf_image_loader_get_cursor(d->images);
}

// ---- open and close --------------------------------------------------------------------------

static pf_token_loader *open_tokens(const pf_config *c, const char *path, int B, int rank,
                                    int world, bool train) {
    // Evaluation sees every window; padding rows carry targets -1 (ignored by the loss).
    pf_token_loader *l =
        pf_token_loader_open(path, B, c->seq_len, rank, world, c->seed, train, !train);
    if (!l) return NULL;
    int vocab = pf_token_loader_vocab_size(l);
    if (vocab > c->vocab_size) {
        pf_error("%s: the shard's vocabulary has %d tokens but model.vocab_size = %d; set "
                 "model.vocab_size = %d",
                 path, vocab, c->vocab_size, vocab);
        pf_token_loader_close(l);
        return NULL;
    }
    return l;
}

// Evaluation normalises with the training split's statistics, as the model saw its inputs in
// training (its own would shift every input by the difference): the pooled mean and std of
// data.train, read into mean/std [C]. 0, 1 when there is no training split to take them
// from (the evaluated split's own are used then), -1 with pf_error.
static int training_stats(const pf_config *c, float *mean, float *std) {
    if (!c->train_path[0]) return 1;
    int C;
    if (pf_image_split_stats(c->train_path, &C, mean, std) < 0) return -1;
    if (C != c->channels) {
        pf_error("%s: the training shards have %d channels but model.channels = %d",
                 c->train_path, C, c->channels);
        return -1;
    }
    return 0;
}

static pf_image_loader *open_images(const pf_config *c, const char *path, int B, int rank,
                                    int world, bool train) {
    pf_image_loader_opts o = pf_image_loader_defaults(B, c->seed);
    float mean[PF_IMAGE_MAX_C], std[PF_IMAGE_MAX_C];
    if (!train) {
        int rc = training_stats(c, mean, std);
        if (rc < 0) return NULL;
        if (rc == 0) o.mean = mean, o.std = std;
    }
    o.shuffle = train;
    o.train = train;
    o.out_size = c->image_size;
    o.random_resized_crop = train && c->augment_scale_min < 1.0f;
    o.scale_min = c->augment_scale_min;
    o.hflip = train && c->hflip;
    o.pad_last = !train;  // evaluation sees every image; padded slots carry label -1
    pf_image_loader *l = pf_image_loader_open(path, &o, rank, world);
    if (!l) return NULL;
    const char *bad = NULL;
    int have = 0, want = 0;
    if (pf_image_loader_channels(l) != c->channels)
        bad = "channels", have = pf_image_loader_channels(l), want = c->channels;
    else if (pf_image_loader_num_classes(l) != c->num_classes)
        bad = "num_classes", have = pf_image_loader_num_classes(l), want = c->num_classes;
    if (bad) {
        pf_error("%s: the shard has %s = %d but model.%s = %d; set model.%s = %d", path, bad,
                 have, bad, want, bad, have);
        pf_image_loader_close(l);
        return NULL;
    }
    return l;
}

pf_data *pf_data_open(const pf_config *c, const char *path, int B, int rank, int world,
                      bool train) {
    pf_data *d = pf_calloc(1, sizeof *d);
    *d = (pf_data){.B = B, .T = c->seq_len, .S = c->image_size, .C = c->channels, .rank = rank,
                   .seed = c->seed, .held = -1};
    if (c->model == PF_MODEL_GPT2)
        d->tokens = open_tokens(c, path, B, rank, world, train);
    else
        d->images = open_images(c, path, B, rank, world, train);
    if (!d->tokens && !d->images) {
        free(d);
        return NULL;
    }
    if (d->images && train) d->mixup_alpha = c->mixup_alpha, d->cutmix_alpha = c->cutmix_alpha;
    d->n_threads = c->data_workers;
    d->n_slots = d->n_threads > 0 ? c->data_prefetch + 1 : 1;  // + the one the step holds
    d->slots = pf_calloc((size_t)d->n_slots, sizeof *d->slots);
    for (int i = 0; i < d->n_slots; i++) slot_alloc(d, &d->slots[i]);
    d->cursor = loader_cursor(d);
    if (d->n_threads > 0) {
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->changed, NULL);
        // Threads start paused: a resume moves the cursor before the first batch.
        d->paused = true;
        d->threads = pf_calloc((size_t)d->n_threads, sizeof *d->threads);
        for (int i = 0; i < d->n_threads; i++)
            if (pthread_create(&d->threads[i], NULL, loader_thread, d))
                PF_FATAL("cannot start loader thread %d of data.workers = %d", i, d->n_threads);
    }
    return d;
}

double pf_data_plan_bytes(const pf_config *c, int B) {
    int slots = c->data_workers > 0 ? c->data_prefetch + 1 : 1;
    if (c->model == PF_MODEL_GPT2)  // per slot inputs and targets [B, T], items [B]; a window
        return slots * (8.0 * B * c->seq_len + 4.0 * B) + 4.0 * (c->seq_len + 1);
    double px = (double)c->image_size * c->image_size * c->channels;
    // per slot pixels [B, S, S, C] fp32, labels (and the mixing partners'), items; the
    // stored images being resampled, at most one per thread (counted at the output size)
    return slots * (4.0 * B * px + 12.0 * B) + (double)(c->data_workers + 1) * px;
}

void pf_data_close(pf_data *d) {
    if (!d) return;
    if (d->n_threads > 0) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_broadcast(&d->changed);
        pthread_mutex_unlock(&d->mu);
        for (int i = 0; i < d->n_threads; i++) pthread_join(d->threads[i], NULL);
        free(d->threads);
        pthread_cond_destroy(&d->changed);
        pthread_mutex_destroy(&d->mu);
    }
    for (int i = 0; i < d->n_slots; i++) slot_free(&d->slots[i]);
    free(d->slots);
    if (d->tokens) pf_token_loader_close(d->tokens);
    if (d->images) pf_image_loader_close(d->images);
    free(d);
}

// ---- the step's side -------------------------------------------------------------------------

static void expose(const slot *s, pf_batch *batch) {
    memset(batch, 0, sizeof *batch);
    batch->tokens = s->inputs;
    batch->targets = s->targets;
    batch->images = s->pixels;
    batch->labels = s->labels;
    batch->labels_b = s->labels_b;
    batch->lam = s->lam;
}

int pf_data_next(pf_data *d, pf_batch *batch) {
    if (d->n_threads == 0) {
        slot *s = &d->slots[0];
        plan(d, s);
        if (fill(d, s, true) < 0) {
            pf_error("%s", s->err);
            return -1;
        }
        d->cursor = (pf_data_cursor){s->rows.epoch, s->rows.batch + 1};
        expose(s, batch);
        return 0;
    }
    pthread_mutex_lock(&d->mu);
    d->paused = false;  // the threads start paused, until the first batch is asked for
    if (d->held >= 0) d->slots[d->held].state = SLOT_FREE;
    slot *s = &d->slots[d->taken % d->n_slots];
    d->held = (int)(d->taken % d->n_slots);
    pthread_cond_broadcast(&d->changed);
    while (s->state != SLOT_READY && s->state != SLOT_FAILED)
        pthread_cond_wait(&d->changed, &d->mu);
    int rc = 0;
    if (s->state == SLOT_FAILED) {
        // The step stops here; the slot stays failed so that no later batch hides the error.
        pf_error("%s", s->err);
        d->held = -1;
        rc = -1;
    } else {
        s->state = SLOT_TAKEN;
        d->taken++;
        d->cursor = (pf_data_cursor){s->rows.epoch, s->rows.batch + 1};
        expose(s, batch);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void pf_data_reset(pf_data *d) {
    if (d->n_threads > 0) pause_threads(d);
    if (d->tokens) pf_token_loader_reset(d->tokens);
    else pf_image_loader_reset(d->images);
    d->cursor = loader_cursor(d);
    if (d->n_threads > 0) restart_threads(d, d->cursor);
}

// Only the step's thread moves the cursor (next, reset, set_cursor), so it reads it unlocked.
pf_data_cursor pf_data_get_cursor(const pf_data *d) { return d->cursor; }

static int loader_set_cursor(pf_data *d, pf_data_cursor cur) {
    return d->tokens ? pf_token_loader_set_cursor(d->tokens, cur)
                     : pf_image_loader_set_cursor(d->images, cur);
}

int pf_data_set_cursor(pf_data *d, pf_data_cursor cur) {
    if (d->n_threads > 0) pause_threads(d);
    int rc = loader_set_cursor(d, cur);
    if (rc == 0) {
        d->cursor = cur;
    } else if (d->n_threads > 0) {
        // The threads had planned ahead of the step: back to where the step stands.
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pf_errmsg());
        PF_ASSERT(loader_set_cursor(d, d->cursor) == 0);
        pf_error("%s", msg);
    }
    if (d->n_threads > 0) restart_threads(d, d->cursor);
    return rc;
}

int64_t pf_data_batches_per_epoch(const pf_data *d) {
    return d->tokens ? pf_token_loader_batches_per_epoch(d->tokens)
                     : pf_image_loader_batches_per_epoch(d->images);
}

int64_t pf_data_num_items(const pf_data *d) {
    return d->tokens ? pf_token_loader_num_windows(d->tokens)
                     : pf_image_loader_num_images(d->images);
}
