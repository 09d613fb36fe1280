// token_loader.c: token windows of a shard in the order data_order.h gives them.
#include "token_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "text_shard.h"

struct pf_token_loader {
    pf_text_shard *shard;
    int B, T;
    pf_data_order order;  // over the windows
    int32_t *window;      // [T + 1] one window, as read
    char *what;           // "token shard 'PATH'", for messages
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
    pf_token_loader *l = pf_calloc(1, sizeof *l);
    *l = (pf_token_loader){.shard = s, .B = B, .T = T};
    pf_data_order_init(&l->order, windows, B, rank, world, seed, shuffle, pad_last);
    l->window = pf_malloc(((size_t)T + 1) * sizeof *l->window);
    size_t len = strlen(path) + 32;
    l->what = pf_malloc(len);
    snprintf(l->what, len, "token shard '%s'", path);
    return l;
}

void pf_token_loader_close(pf_token_loader *l) {
    if (!l) return;
    pf_text_shard_close(l->shard);
    pf_data_order_free(&l->order);
    free(l->window);
    free(l->what);
    free(l);
}

int pf_token_loader_next(pf_token_loader *l, int32_t *inputs, int32_t *targets) {
    const int T = l->T;
    pf_data_rows rows = pf_data_order_next(&l->order);
    for (int j = 0; j < l->B; j++) {
        int32_t *in = inputs + (size_t)j * T, *tg = targets + (size_t)j * T;
        if (j >= rows.real) {  // past the last window (pad_last only): padding
            for (int i = 0; i < T; i++) in[i] = 0, tg[i] = -1;
            continue;
        }
        if (pf_text_shard_read(l->shard, (int64_t)rows.items[j] * T, T + 1, l->window))
            return -1;
        memcpy(in, l->window, (size_t)T * sizeof *in);
        memcpy(tg, l->window + 1, (size_t)T * sizeof *tg);
    }
    return 0;
}

void pf_token_loader_reset(pf_token_loader *l) { pf_data_order_reset(&l->order); }

pf_data_cursor pf_token_loader_get_cursor(const pf_token_loader *l) {
    return pf_data_order_get_cursor(&l->order);
}

int pf_token_loader_set_cursor(pf_token_loader *l, pf_data_cursor c) {
    return pf_data_order_set_cursor(&l->order, c, l->what);
}

int pf_token_loader_vocab_size(const pf_token_loader *l) {
    return pf_text_shard_vocab_size(l->shard);
}
int pf_token_loader_eot(const pf_token_loader *l) { return pf_text_shard_eot(l->shard); }
int64_t pf_token_loader_batches_per_epoch(const pf_token_loader *l) {
    return l->order.batches_per_epoch;
}
int64_t pf_token_loader_num_tokens(const pf_token_loader *l) {
    return pf_text_shard_num_tokens(l->shard);
}
