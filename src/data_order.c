// data_order.c: the epoch order, rank slices, padding and cursor shared by both loaders.
#include "data_order.h"

#include <stdlib.h>

#include "common.h"
#include "rng.h"

// The key of epoch e's shuffle (docs/FORMATS.md, "Data order").
#define PF_EPOCH_MIX 0xD1B54A32D192ED03ull

void pf_data_order_init(pf_data_order *o, int64_t items, int B, int rank, int world,
                        uint64_t seed, bool shuffle, bool pad_last) {
    PF_ASSERT(B > 0 && world > 0 && rank >= 0 && rank < world);
    int64_t global = (int64_t)world * B;
    PF_ASSERT(items >= global && items <= UINT32_MAX);
    *o = (pf_data_order){.items = items, .B = B, .rank = rank, .world = world, .seed = seed,
                         .shuffle = shuffle, .pad_last = pad_last,
                         .batches_per_epoch = pad_last ? (items + global - 1) / global
                                                       : items / global,
                         .perm_epoch = -1};
    o->perm = pf_malloc((size_t)items * sizeof *o->perm);
}

void pf_data_order_free(pf_data_order *o) {
    free(o->perm);
    o->perm = NULL;
}

// The order of an epoch, a function of (seed, epoch) only.
static void draw_order(pf_data_order *o, int64_t epoch) {
    if (o->perm_epoch == epoch) return;
    uint32_t n = (uint32_t)o->items;
    for (uint32_t i = 0; i < n; i++) o->perm[i] = i;
    if (o->shuffle) {
        pf_rng r;
        pf_rng_seed(&r, o->seed ^ ((uint64_t)epoch + 1) * PF_EPOCH_MIX);
        pf_rng_shuffle_u32(&r, o->perm, n);
    }
    o->perm_epoch = epoch;
}

pf_data_rows pf_data_order_next(pf_data_order *o) {
    if (o->cur.batch >= o->batches_per_epoch) o->cur.epoch++, o->cur.batch = 0;
    draw_order(o, o->cur.epoch);
    int64_t first = (o->cur.batch * o->world + o->rank) * (int64_t)o->B;
    // Rows past the last item exist only with pad_last, in the epoch's last batch.
    int64_t left = o->items - first;
    pf_data_rows rows = {.epoch = o->cur.epoch, .batch = o->cur.batch, .first = first,
                         .real = left <= 0 ? 0 : left < o->B ? (int)left : o->B,
                         .items = o->perm + (left > 0 ? first : 0)};
    o->cur.batch++;
    return rows;
}

void pf_data_order_reset(pf_data_order *o) { o->cur = (pf_data_cursor){0, 0}; }

pf_data_cursor pf_data_order_get_cursor(const pf_data_order *o) { return o->cur; }

int pf_data_order_set_cursor(pf_data_order *o, pf_data_cursor c, const char *what) {
    if (c.epoch < 0 || c.batch < 0 || c.batch > o->batches_per_epoch) {
        pf_error("data cursor (epoch %lld, batch %lld) is outside the %lld batches per epoch "
                 "of %s (%lld items in global batches of %d rank(s) x %d)",
                 (long long)c.epoch, (long long)c.batch, (long long)o->batches_per_epoch, what,
                 (long long)o->items, o->world, o->B);
        return -1;
    }
    o->cur = c;
    return 0;
}
