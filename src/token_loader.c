// token_loader.c: token windows of one or more shards in the order data_order.h gives them.
#include "token_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "shards.h"
#include "text_shard.h"

struct pf_token_loader {
    pf_text_shard **shards;  // [n_shards]
    int n_shards;
    int64_t *first;  // [n_shards + 1] the split's first window in each shard (prefix sums)
    int64_t tokens;  // over all shards
    int B, T;
    pf_data_order order;  // over the windows of the split
    char *what;           // "token shard(s) 'SPEC'", for messages
};

static void close_shards(pf_token_loader *l) {
    for (int s = 0; s < l->n_shards; s++) pf_text_shard_close(l->shards[s]);
    free(l->shards);
    free(l->first);
}

// Opens every shard of the list and checks they agree on the vocabulary and end-of-text id.
static int open_shards(pf_token_loader *l, const pf_shard_list *list, int T) {
    l->shards = pf_calloc((size_t)list->n, sizeof *l->shards);
    l->first = pf_calloc((size_t)list->n + 1, sizeof *l->first);
    for (int s = 0; s < list->n; s++) {
        if (!(l->shards[s] = pf_text_shard_open(list->paths[s]))) return -1;
        l->n_shards = s + 1;
        pf_text_shard *a = l->shards[0], *b = l->shards[s];
        if (pf_text_shard_vocab_size(a) != pf_text_shard_vocab_size(b) ||
            pf_text_shard_eot(a) != pf_text_shard_eot(b)) {
            pf_error("'%s' has vocab_size %d and eot_token %d but '%s' has %d and %d: the shards "
                     "of one split must come from the same tokenizer",
                     list->paths[s], pf_text_shard_vocab_size(b), pf_text_shard_eot(b),
                     list->paths[0], pf_text_shard_vocab_size(a), pf_text_shard_eot(a));
            return -1;
        }
        int64_t n = pf_text_shard_num_tokens(b);
        l->tokens += n;
        l->first[s + 1] = l->first[s] + (n > 0 ? (n - 1) / T : 0);
    }
    return 0;
}

pf_token_loader *pf_token_loader_open(const char *spec, int B, int T, int rank, int world,
                                      uint64_t seed, bool shuffle, bool pad_last) {
    PF_ASSERT(B > 0 && T > 0 && world > 0 && rank >= 0 && rank < world);
    pf_shard_list list;
    if (pf_shard_list_expand(spec, "token shards", &list) < 0) return NULL;
    pf_token_loader *l = pf_calloc(1, sizeof *l);
    *l = (pf_token_loader){.B = B, .T = T};
    int rc = pf_shard_reserve_files(list.n, spec);
    if (rc == 0) rc = open_shards(l, &list, T);
    int64_t windows = rc == 0 ? l->first[l->n_shards] : 0;
    if (rc == 0 && windows < (int64_t)world * B) {
        // Each shard gives (tokens - 1) / T windows; one shard of n tokens needs n >= need.
        int64_t need = (int64_t)world * B * T + 1;
        pf_error("'%s' has %lld tokens in %d shard(s), %lld windows of %d, too few for one batch "
                 "per rank: B=%d x T=%d x %d rank(s) needs at least %lld tokens (use a smaller "
                 "batch or sequence length, or more text)",
                 spec, (long long)l->tokens, l->n_shards, (long long)windows, T, B, T, world,
                 (long long)need);
        rc = -1;
    }
    if (rc == 0 && windows > UINT32_MAX) {
        pf_error("'%s': %lld windows of %d tokens exceed the loader's 2^32 limit; raise T or "
                 "train on part of the shards", spec, (long long)windows, T);
        rc = -1;
    }
    pf_shard_list_free(&list);
    if (rc < 0) {
        close_shards(l);
        free(l);
        return NULL;
    }
    pf_data_order_init(&l->order, windows, B, rank, world, seed, shuffle, pad_last);
    size_t len = strlen(spec) + 32;
    l->what = pf_malloc(len);
    snprintf(l->what, len, "token shard(s) '%s'", spec);
    return l;
}

void pf_token_loader_close(pf_token_loader *l) {
    if (!l) return;
    close_shards(l);
    pf_data_order_free(&l->order);
    free(l->what);
    free(l);
}

pf_data_rows pf_token_loader_plan(pf_token_loader *l) { return pf_data_order_next(&l->order); }

int pf_token_loader_fill(const pf_token_loader *l, const pf_data_rows *rows, int32_t *inputs,
                         int32_t *targets) {
    const int T = l->T;
    int32_t *window = pf_malloc(((size_t)T + 1) * sizeof *window);
    int rc = 0;
    for (int j = 0; rc == 0 && j < l->B; j++) {
        int32_t *in = inputs + (size_t)j * T, *tg = targets + (size_t)j * T;
        if (j >= rows->real) {  // past the last window (pad_last only): padding
            for (int i = 0; i < T; i++) in[i] = 0, tg[i] = -1;
            continue;
        }
        int s = pf_shard_of(l->first, l->n_shards, rows->items[j]);
        rc = pf_text_shard_read(l->shards[s], (rows->items[j] - l->first[s]) * T, T + 1, window);
        memcpy(in, window, (size_t)T * sizeof *in);
        memcpy(tg, window + 1, (size_t)T * sizeof *tg);
    }
    free(window);
    return rc;
}

int pf_token_loader_next(pf_token_loader *l, int32_t *inputs, int32_t *targets) {
    pf_data_rows rows = pf_token_loader_plan(l);
    return pf_token_loader_fill(l, &rows, inputs, targets);
}

void pf_token_loader_reset(pf_token_loader *l) { pf_data_order_reset(&l->order); }

pf_data_cursor pf_token_loader_get_cursor(const pf_token_loader *l) {
    return pf_data_order_get_cursor(&l->order);
}

int pf_token_loader_set_cursor(pf_token_loader *l, pf_data_cursor c) {
    return pf_data_order_set_cursor(&l->order, c, l->what);
}

int pf_token_loader_vocab_size(const pf_token_loader *l) {
    return pf_text_shard_vocab_size(l->shards[0]);
}
int pf_token_loader_eot(const pf_token_loader *l) { return pf_text_shard_eot(l->shards[0]); }
int64_t pf_token_loader_batches_per_epoch(const pf_token_loader *l) {
    return l->order.batches_per_epoch;
}
int64_t pf_token_loader_num_tokens(const pf_token_loader *l) { return l->tokens; }
int64_t pf_token_loader_num_windows(const pf_token_loader *l) { return l->order.items; }
