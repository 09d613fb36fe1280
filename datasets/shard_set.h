// shard_set.h: numbered image shards, `pfdata images --shard-images K --out STEM`:
// STEM-00000-of-01252.h5 ... STEM-01251-of-01252.h5 (5 digits, more from 100000 shards on,
// the same width for index and count so the names sort in shard order).
//
// Shard i of a plan of T items (the converter's inputs in its deterministic order) holds
// planned items [i*K, min((i+1)*K, T)), fewer images when corrupt ones were skipped. Each is
// an ordinary image shard (image_shard.h) written atomically, and records its identity in
// root attributes, so that a rerun keeps the shards that are complete and refuses a file of
// another conversion rather than overwrite it:
//   shard_index      int64   i
//   shard_count      int64   ceil(T / K)
//   shard_images     int64   K
//   first_item       int64   i*K, the plan index of its first planned item
//   planned_items    int64   items planned for it, min(K, T - i*K)
//   total_items      int64   T
//   skipped_corrupt  int64   planned items left out as corrupt (--on-corrupt skip)
//   plan_digest      string  16 hex digits: a 64-bit FNV-1a digest of what decides its
//                            pixels and labels (the converter says what it hashes)
#ifndef PF_SHARD_SET_H
#define PF_SHARD_SET_H

#include <stddef.h>
#include <stdint.h>

#include "image_shard.h"

typedef struct {
    char *stem;         // --out less a trailing ".h5"
    int64_t per_shard;  // K
    int64_t total;      // T
    int64_t count;      // ceil(T / K)
} pf_shard_set;

// per_shard >= 1, total >= 0.
void pf_shard_set_init(pf_shard_set *s, const char *out, int64_t per_shard, int64_t total);
void pf_shard_set_free(pf_shard_set *s);
// The file name of shard i, malloc'd.
char *pf_shard_set_path(const pf_shard_set *s, int64_t i);
// "STEM-*-of-01252.h5", for messages; malloc'd.
char *pf_shard_set_pattern(const pf_shard_set *s);
int64_t pf_shard_set_first(const pf_shard_set *s, int64_t i);
int64_t pf_shard_set_planned(const pf_shard_set *s, int64_t i);

// Queues shard i's identity attributes on w (written by pf_shard_writer_finish).
void pf_shard_set_label(const pf_shard_set *s, int64_t i, uint64_t digest, int64_t skipped,
                        pf_shard_writer *w);

// Whether shard i is there already: 0 when nothing has its name; 1 when a complete image
// shard of H x W x C images with this identity and digest is; -1 when anything else is
// (pf_error() names the file and what differs, and says to use another --out or remove it:
// a user's file is never overwritten).
int pf_shard_set_check(const pf_shard_set *s, int64_t i, uint64_t digest, int H, int W, int C);

// FNV-1a, 64 bits, for plan_digest: h = pf_digest(PF_DIGEST_INIT, bytes, n), then chained.
#define PF_DIGEST_INIT 14695981039346656037ull
uint64_t pf_digest(uint64_t h, const void *data, size_t n);
// An integer as 8 little-endian bytes, so a digest does not depend on the machine.
uint64_t pf_digest_int(uint64_t h, int64_t v);

#endif
