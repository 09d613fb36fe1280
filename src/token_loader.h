// token_loader.h: language-model batches from HDF5 token shards (datasets/text_shard.h).
//
// A shard of N tokens makes (N - 1) / T windows of T + 1 tokens at stride T, window w
// starting at token w*T (inputs are its first T tokens, targets its last T); windows never
// span two shards. The split's windows are those of its shards in list order (shards.h), and
// they are the items of a pf_data_order (data_order.h: the seeded order per epoch, rank slices, the
// padded last batch of evaluation and the cursor): batch k of rank r is windows
// perm[(k*world + r)*B + j], j < B. With pad_last a padding row has inputs 0 and every target
// -1, which the loss ignores.
// Windows are read one at a time (T + 1 tokens, one hyperslab each): shards of any size cost
// only the order (4 bytes per window) in memory.
#ifndef PF_TOKEN_LOADER_H
#define PF_TOKEN_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "data_order.h"

typedef struct pf_token_loader pf_token_loader;

// spec: one shard path, or a list or glob of them (shards.h). NULL + pf_error if a file is
// missing, not a token shard, lacks its attributes, disagrees with the first on vocab_size or
// eot_token, or the shards hold fewer than world*B windows (one batch per rank; the message
// says how many tokens it needs).
// shuffle: a seeded permutation per epoch (training); pad_last: keep the epoch's last partial
// global batch, padded (evaluation).
pf_token_loader *pf_token_loader_open(const char *spec, int B, int T, int rank, int world,
                                      uint64_t seed, bool shuffle, bool pad_last);
void pf_token_loader_close(pf_token_loader *l);

// Fills inputs [B*T] and targets [B*T] (targets[i] is the token after inputs[i]; a padding
// row has inputs 0 and targets -1) and advances, moving on to the next epoch after its last
// batch. -1 + pf_error on a read failure (truncated or corrupt file). The same as plan, then
// fill.
int pf_token_loader_next(pf_token_loader *l, int32_t *inputs, int32_t *targets);
// The two halves of next, for background loading (data.c): plan advances the order and says
// which windows the batch holds (rows.items valid until the next plan); fill reads them, and
// may run on several threads at once for different rows.
pf_data_rows pf_token_loader_plan(pf_token_loader *l);
int pf_token_loader_fill(const pf_token_loader *l, const pf_data_rows *rows, int32_t *inputs,
                         int32_t *targets);

void pf_token_loader_reset(pf_token_loader *l);  // back to epoch 0, batch 0 (validation)
pf_data_cursor pf_token_loader_get_cursor(const pf_token_loader *l);
// -1 + pf_error when c is out of range (negative, or batch > batches_per_epoch: a cursor
// saved with another batch size or world size).
int pf_token_loader_set_cursor(pf_token_loader *l, pf_data_cursor c);

int pf_token_loader_vocab_size(const pf_token_loader *l);
int pf_token_loader_eot(const pf_token_loader *l);
int64_t pf_token_loader_batches_per_epoch(const pf_token_loader *l);
int64_t pf_token_loader_num_tokens(const pf_token_loader *l);   // over all shards
int64_t pf_token_loader_num_windows(const pf_token_loader *l);  // the items of the order

#endif
