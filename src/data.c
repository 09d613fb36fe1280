// data.c: the batch source behind pf_data: a token loader for GPT-2, an image loader for the
// vision models, each with the host buffers a micro-batch lives in.
#include "data.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "image_loader.h"
#include "image_shard.h"
#include "token_loader.h"

struct pf_data {
    pf_token_loader *tokens;
    pf_image_loader *images;
    int32_t *inputs, *targets, *labels;  // host [B*T], [B*T], [B]
    float *pixels;                       // host [B, S, S, C]
    // Mixup / cutmix of training batches; labels_b [B] is NULL when off.
    int32_t *labels_b;
    float mixup_alpha, cutmix_alpha;
    uint64_t seed;
    int B, S, C, rank;
};

static pf_data *open_tokens(const pf_config *c, const char *path, int B, int rank, int world,
                            bool train) {
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
    pf_data *d = pf_calloc(1, sizeof *d);
    d->tokens = l;
    d->inputs = pf_malloc(sizeof(int32_t) * B * c->seq_len);
    d->targets = pf_malloc(sizeof(int32_t) * B * c->seq_len);
    return d;
}

// Evaluation normalises with the training shard's statistics, as the model saw its inputs in
// training (its own would shift every input by the difference): the mean and std attributes
// of data.train, read into mean/std [C]. 0, 1 when there is no training shard to take them
// from (the evaluated shard's own are used then), -1 with pf_error.
static int training_stats(const pf_config *c, float *mean, float *std) {
    if (!c->train_path[0]) return 1;
    pf_image_shard s;
    if (pf_image_shard_open(&s, c->train_path) < 0) return -1;
    int rc = 0;
    if (s.C != c->channels) {
        pf_error("%s: the training shard has %d channels but model.channels = %d", s.path, s.C,
                 c->channels);
        rc = -1;
    }
    for (int k = 0; rc == 0 && k < s.C; k++) mean[k] = s.mean[k], std[k] = s.std[k];
    pf_image_shard_close(&s);
    return rc;
}

static pf_data *open_images(const pf_config *c, const char *path, int B, int rank, int world,
                            bool train) {
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
    pf_data *d = pf_calloc(1, sizeof *d);
    d->images = l;
    d->pixels = pf_malloc(sizeof(float) * B * c->image_size * c->image_size * c->channels);
    d->labels = pf_malloc(sizeof(int32_t) * B);
    if (train && (c->mixup_alpha > 0 || c->cutmix_alpha > 0)) {
        d->labels_b = pf_malloc(sizeof(int32_t) * B);
        d->mixup_alpha = c->mixup_alpha, d->cutmix_alpha = c->cutmix_alpha;
        d->seed = c->seed;
        d->B = B, d->S = c->image_size, d->C = c->channels, d->rank = rank;
    }
    return d;
}

pf_data *pf_data_open(const pf_config *c, const char *path, int B, int rank, int world,
                      bool train) {
    if (c->model == PF_MODEL_GPT2) return open_tokens(c, path, B, rank, world, train);
    return open_images(c, path, B, rank, world, train);
}

double pf_data_plan_bytes(const pf_config *c, int B) {
    if (c->model == PF_MODEL_GPT2)  // inputs and targets [B, T], the loader's window [T + 1]
        return 8.0 * B * c->seq_len + 4.0 * (c->seq_len + 1);
    double px = (double)c->image_size * c->image_size * c->channels;
    // pixels [B, S, S, C] fp32, labels (and the mixing partners'), the loader's uint8 staging
    return 4.0 * B * px + 8.0 * B + (double)B * px;
}

void pf_data_close(pf_data *d) {
    if (!d) return;
    if (d->tokens) pf_token_loader_close(d->tokens);
    if (d->images) pf_image_loader_close(d->images);
    free(d->inputs);
    free(d->targets);
    free(d->labels);
    free(d->labels_b);
    free(d->pixels);
    free(d);
}

int pf_data_next(pf_data *d, pf_batch *batch) {
    memset(batch, 0, sizeof *batch);
    if (d->tokens) {
        if (pf_token_loader_next(d->tokens, d->inputs, d->targets) < 0) return -1;
        batch->tokens = d->inputs;
        batch->targets = d->targets;
        return 0;
    }
    if (pf_image_loader_next(d->images, d->pixels, d->labels) < 0) return -1;
    batch->images = d->pixels;
    batch->labels = d->labels;
    if (d->labels_b) {
        // The batch just produced is cursor.batch - 1 of cursor.epoch (next rolls the epoch
        // over before producing), so a restored cursor replays the same mixing.
        pf_data_cursor cur = pf_image_loader_get_cursor(d->images);
        uint64_t seed = d->seed * 0x94D049BB133111EBull ^
                        (uint64_t)cur.epoch * 0xD6E8FEB86659FD93ull ^
                        (uint64_t)(cur.batch - 1) * 0xA0761D6478BD642Full ^
                        (uint64_t)d->rank * 0xE7037ED1A0B428DBull;
        batch->lam = pf_image_mix_batch(d->pixels, d->labels, d->labels_b, d->B, d->S, d->C,
                                        d->mixup_alpha, d->cutmix_alpha, seed);
        batch->labels_b = d->labels_b;
    }
    return 0;
}

void pf_data_reset(pf_data *d) {
    if (d->tokens) pf_token_loader_reset(d->tokens);
    else pf_image_loader_reset(d->images);
}

pf_data_cursor pf_data_get_cursor(const pf_data *d) {
    return d->tokens ? pf_token_loader_get_cursor(d->tokens)
                     : pf_image_loader_get_cursor(d->images);
}

int pf_data_set_cursor(pf_data *d, pf_data_cursor cur) {
    return d->tokens ? pf_token_loader_set_cursor(d->tokens, cur)
                     : pf_image_loader_set_cursor(d->images, cur);
}

int64_t pf_data_batches_per_epoch(const pf_data *d) {
    return d->tokens ? pf_token_loader_batches_per_epoch(d->tokens)
                     : pf_image_loader_batches_per_epoch(d->images);
}
