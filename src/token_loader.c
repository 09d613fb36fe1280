// token_loader.c: seeded window permutations over a token shard, sliced by rank.
#include "token_loader.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"
#include "text_shard.h"

struct pf_token_loader {
    pf_text_shard *shard;
    int B, T, rank, world;
    uint64_t seed;
    bool shuffle;
    int64_t windows, batches_per_epoch;
    uint32_t *perm;       // [windows] the window order of epoch perm_epoch
    int64_t perm_epoch;   // -1 before the first permutation
    pf_loader_cursor cur;
    int32_t *window;      // [T + 1] one window, as read
};

pf_token_loader *pf_token_loader_open(const char *path, int B, int T, int rank, int world,
                                      uint64_t seed, bool shuffle, bool pad_last) {
    PF_ASSERT(B > 0 && T > 0 && world > 0 && rank >= 0 && rank < world);
    pf_text_shard *s = pf_text_shard_open(path);
    if (!s) return NULL;
    int64_t n = pf_text_shard_num_tokens(s), need = (int64_t)world * B * T + 1;
    if (n < need) {
        pf_error("'%s' has %lld tokens, too few for one batch per rank: B=%d x T=%d x %d "
                 "rank(s) needs at least %lld tokens (use a smaller batch or sequence length, or "
                 "more text)",
                 path, (long long)n, B, T, world, (long long)need);
        pf_text_shard_close(s);
        return NULL;
    }
    int64_t windows = (n - 1) / T;
    if (windows > UINT32_MAX) {
        pf_error("'%s': %lld windows of %d tokens exceed the loader's 2^32 limit; split the "
                 "shard or raise T", path, (long long)windows, T);
        pf_text_shard_close(s);
        return NULL;
    }
    int64_t global = (int64_t)world * B;
    pf_token_loader *l = pf_calloc(1, sizeof *l);
    *l = (pf_token_loader){.shard = s, .B = B, .T = T, .rank = rank, .world = world,
                           .seed = seed, .shuffle = shuffle, .windows = windows,
                           .batches_per_epoch = pad_last ? (windows + global - 1) / global
                                                         : windows / global,
                           .perm_epoch = -1};
    l->perm = pf_malloc((size_t)windows * sizeof *l->perm);
    l->window = pf_malloc(((size_t)T + 1) * sizeof *l->window);
    return l;
}

void pf_token_loader_close(pf_token_loader *l) {
    if (!l) return;
    pf_text_shard_close(l->shard);
    free(l->perm);
    free(l->window);
    free(l);
}

// The window order of an epoch, a function of (seed, epoch) only: every rank computes the
// same permutation and a resumed run recomputes it from the cursor.
static void make_perm(pf_token_loader *l, int64_t epoch) {
    if (l->perm_epoch == epoch) return;
    for (int64_t i = 0; i < l->windows; i++) l->perm[i] = (uint32_t)i;
    if (l->shuffle) {
        pf_rng r;
        pf_rng_seed(&r, l->seed ^ ((uint64_t)epoch + 1) * 0xD1B54A32D192ED03ull);
        pf_rng_shuffle_u32(&r, l->perm, (uint32_t)l->windows);
    }
    l->perm_epoch = epoch;
}

int pf_token_loader_next(pf_token_loader *l, int32_t *inputs, int32_t *targets) {
    if (l->cur.batch >= l->batches_per_epoch) {
        l->cur.epoch++;
        l->cur.batch = 0;
    }
    make_perm(l, l->cur.epoch);
    const int T = l->T;
    const int64_t first = (l->cur.batch * l->world + l->rank) * l->B;
    for (int j = 0; j < l->B; j++) {
        int32_t *in = inputs + (size_t)j * T, *tg = targets + (size_t)j * T;
        if (first + j >= l->windows) {  // past the last window (pad_last only): padding
            for (int i = 0; i < T; i++) in[i] = 0, tg[i] = -1;
            continue;
        }
        int64_t w = l->perm[first + j];
        if (pf_text_shard_read(l->shard, w * T, T + 1, l->window)) return -1;
        memcpy(in, l->window, (size_t)T * sizeof *in);
        memcpy(tg, l->window + 1, (size_t)T * sizeof *tg);
    }
    l->cur.batch++;
    return 0;
}

void pf_token_loader_reset(pf_token_loader *l) { l->cur = (pf_loader_cursor){0, 0}; }

pf_loader_cursor pf_token_loader_get_cursor(const pf_token_loader *l) { return l->cur; }

int pf_token_loader_set_cursor(pf_token_loader *l, pf_loader_cursor c) {
    if (c.epoch < 0 || c.batch < 0 || c.batch > l->batches_per_epoch) {
        pf_error("data cursor (epoch %lld, batch %lld) is outside the %lld batches per epoch "
                 "of this token shard (saved with another batch or world size?)",
                 (long long)c.epoch, (long long)c.batch, (long long)l->batches_per_epoch);
        return -1;
    }
    l->cur = c;
    return 0;
}

int pf_token_loader_vocab_size(const pf_token_loader *l) {
    return pf_text_shard_vocab_size(l->shard);
}
int pf_token_loader_eot(const pf_token_loader *l) { return pf_text_shard_eot(l->shard); }
int64_t pf_token_loader_batches_per_epoch(const pf_token_loader *l) {
    return l->batches_per_epoch;
}
int64_t pf_token_loader_num_tokens(const pf_token_loader *l) {
    return pf_text_shard_num_tokens(l->shard);
}
