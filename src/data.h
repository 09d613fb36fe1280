// data.h: one batch source over either kind of shard, so the training loop does not care
// whether it feeds GPT-2 token windows or images.
//
// With data.workers > 0 the batches are built by that many loader threads, up to
// data.prefetch batches ahead of the step (a bounded ring of batch buffers), in the same
// sequence as data.workers = 0, where pf_data_next builds each batch itself: the batches are
// bit-identical whatever the thread count (data.c says why). The cursor is always that of the
// step, not of the threads: a checkpoint stores the next batch the step takes.
#ifndef PF_DATA_H
#define PF_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "data_order.h"
#include "models/model.h"

typedef struct pf_data pf_data;

// Opens `path` (a shard, or a list or glob of shards: shards.h) for the model of `c` with
// micro-batch B; `train` turns on shuffling and
// augmentation. Without `train` (evaluation) images are normalised with the mean and std of
// the training shard c->train_path (the evaluated shard's own when it is empty). NULL with
// pf_error naming the file and what does not match the config (vocabulary size, image size,
// channels, classes).
pf_data *pf_data_open(const pf_config *c, const char *path, int B, int rank, int world,
                      bool train);
void pf_data_close(pf_data *d);
// Host bytes pf_data_open(c, ..., B, ...) allocates whatever the shard: the batch buffers (one
// per slot of the ring: data.prefetch + 1 with loader threads, else 1) and the loader's
// per-image staging. What depends on the shard comes on top: the shuffled order
// (4 bytes per window or image) and an image shard's pixels when they fit the loader's cache
// (image_loader.h, at most 1 GiB).
double pf_data_plan_bytes(const pf_config *c, int B);
// Points *batch at the next micro-batch, in host buffers that stay valid until the next call
// (or reset, set_cursor, close); -1 with pf_error on a read failure.
int pf_data_next(pf_data *d, pf_batch *batch);
void pf_data_reset(pf_data *d);
pf_data_cursor pf_data_get_cursor(const pf_data *d);
// -1 with pf_error when the cursor is out of range for this shard, batch size and rank count.
int pf_data_set_cursor(pf_data *d, pf_data_cursor cur);
int64_t pf_data_batches_per_epoch(const pf_data *d);
// The items the order runs over: token windows or images, over all shards.
int64_t pf_data_num_items(const pf_data *d);

#endif
