// shards.h: a split stored as several shard files, `data.train = data/imagenet-train-*.h5`.
//
// The spec is a comma-separated list (blanks around each element ignored); each element is a
// path or a glob(7) pattern. A pattern expands to its matches in byte-wise sorted order
// (glob's), the elements keep the order they are given in, and a pattern that matches nothing,
// an empty element or a file named twice is an error. The items of the split (token windows,
// images) are the items of its shards concatenated in that order: item i is item i - first[s]
// of the shard s with first[s] <= i < first[s + 1] (pf_shard_of). A single path is the
// one-shard case, so every earlier config means what it meant.
#ifndef PF_SHARDS_H
#define PF_SHARDS_H

#include <stdint.h>

// The most shards one split may have: each stays open for the whole run (one file descriptor
// per shard per rank), and the ImageNet train split at 1024 images per shard is 1252.
#define PF_MAX_SHARDS 65536

typedef struct {
    char **paths;  // [n]
    int n;
} pf_shard_list;

// Expands spec into *out. what names the setting for messages ("data.train"). -1 + pf_error.
int pf_shard_list_expand(const char *spec, const char *what, pf_shard_list *out);
void pf_shard_list_free(pf_shard_list *l);

// Makes sure this process may hold `n` more files open, raising the soft RLIMIT_NOFILE up to
// the hard one when needed. -1 + pf_error naming the limit and the fix.
int pf_shard_reserve_files(int n, const char *what);

// The shard holding item i, given first [n + 1] (first[0] = 0, first[n] = total items).
int pf_shard_of(const int64_t *first, int n, int64_t i);

#endif
