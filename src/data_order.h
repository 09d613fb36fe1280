// data_order.h: which item (token window, image) each (epoch, batch, rank, row) reads, for
// both loaders; the algorithm, precisely, is in docs/FORMATS.md ("Data order").
//
// N items, B rows per rank, `world` ranks, a global batch of G = world*B items. Epoch e visits
// the items in the order perm_e: the identity without shuffling, else a Fisher-Yates shuffle
// drawn from a pf_rng seeded with seed ^ ((e + 1) * 0xD1B54A32D192ED03), a function of
// (seed, epoch) only, so every rank computes the same order and a resumed run recomputes it.
// Batch k of an epoch is the global positions [k*G, (k+1)*G); rank r reads its slice
// [(k*world + r)*B, (k*world + r + 1)*B). So the union over ranks of batch k is exactly the
// 1-rank batch k of size G: `world` ranks with B rows read the data of 1 rank with world*B.
// Batches per epoch: N / G; the remainder of the order is dropped, unless pad_last keeps it
// (evaluation): then ceil(N / G), and the positions past N are padding rows (the loader fills
// them with rows the metrics ignore), so an epoch yields every item exactly once.
// The cursor (epoch, batch) names the next batch; the whole data position of a run, and the
// same number on every rank.
#ifndef PF_DATA_ORDER_H
#define PF_DATA_ORDER_H

#include <stdbool.h>
#include <stdint.h>

// Where a batch source stands, for checkpoints: the next batch to read is `batch` of `epoch`.
typedef struct {
    int64_t epoch, batch;
} pf_data_cursor;

typedef struct {
    int64_t items;  // N
    int B, rank, world;
    uint64_t seed;
    bool shuffle, pad_last;
    int64_t batches_per_epoch;
    pf_data_cursor cur;  // the next batch
    uint32_t *perm;      // [items] the order of epoch perm_epoch (4 bytes per item)
    int64_t perm_epoch;  // -1 before the first order is drawn
} pf_data_order;

// The rows of one batch, as pf_data_order_next hands them out.
typedef struct {
    int64_t epoch, batch;   // which batch of which epoch this is
    int64_t first;          // the epoch position of row 0: (batch*world + rank)*B
    int real;               // rows [0, real) read items[row]; rows [real, B) are padding
    const uint32_t *items;  // [real], into the epoch's order; valid until the next call
} pf_data_rows;

// Needs B > 0, 0 <= rank < world, world*B <= items <= UINT32_MAX (each loader checks its
// shard against these first, with a message in its own terms).
void pf_data_order_init(pf_data_order *o, int64_t items, int B, int rank, int world,
                        uint64_t seed, bool shuffle, bool pad_last);
void pf_data_order_free(pf_data_order *o);

// The rows of the batch at the cursor, then advances it; after an epoch's last batch the
// next call starts the following epoch.
pf_data_rows pf_data_order_next(pf_data_order *o);

void pf_data_order_reset(pf_data_order *o);  // back to epoch 0, batch 0 (evaluation)
pf_data_cursor pf_data_order_get_cursor(const pf_data_order *o);
// Resuming: -1 + pf_error when c is out of range (negative, or batch > batches_per_epoch: a
// cursor saved with another batch size or rank count). `what` names the shard in the message.
int pf_data_order_set_cursor(pf_data_order *o, pf_data_cursor c, const char *what);

#endif
