// image_convert.h: the converters behind `pfdata images` and what they share.
// Each converter streams its inputs into a pf_shard_writer (image_shard.h) and returns 0 with
// the shard renamed into place, or -1 after pf_error() with no output file left behind.
// With shard_images (imagenet) it writes numbered shards instead (shard_set.h), each renamed
// into place when complete: after -1 the complete ones stay, and a rerun keeps them.
#ifndef PF_IMAGE_CONVERT_H
#define PF_IMAGE_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "image_shard.h"

typedef struct {
    const char *out;          // --out OUT.h5 (with shard_images: the stem, ".h5" dropped)
    const char *class_names;  // --class-names FILE: one name per line, overrides the default
    const char *classes;      // --classes PRESET (idx: "fashion-mnist")
    bool cifar100;            // --cifar100: 2 label bytes (coarse, fine), fine labels used
    const char *labels;       // --labels FILE (imagenet, flat folder)
    const char *synsets;      // --synsets FILE (imagenet class names / label ids)
    int size;                 // --size S (imagenet output side)
    bool skip_corrupt;        // --on-corrupt skip
    int jobs;                 // --jobs N (imagenet): decoding threads; 0: OpenMP's default
    int64_t shard_images;     // --shard-images K (imagenet): numbered shards of K; 0: one file
    bool progress;            // draw a progress bar on stderr
    bool quiet;               // --quiet: no notes on stderr either
} pf_convert_opts;

typedef struct {
    int64_t images, skipped, warnings;  // written, corrupt and skipped, decoded with warnings
    int H, W, C, num_classes;
    int64_t shards_written, shards_kept;  // shard_images: written now, complete from before
    char *out;  // shard_images: the shards' names, "STEM-*-of-01252.h5" (malloc'd); else NULL
} pf_convert_result;

int pf_convert_idx(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r);
int pf_convert_cifar(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r);
int pf_convert_imagenet(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r);

// ---- shared by the converters (images_cmd.c) -------------------------------------------

// Names, one per non-empty line (trailing blanks and CR removed). -1 and pf_error().
int pf_read_name_list(const char *path, char ***names, int *n);
// "0", "1", ..., n-1.
char **pf_numbered_names(int n);
void pf_free_names(char **names, int n);
// "FORMAT: IN1 IN2 ..." for the source attribute; the caller frees it.
char *pf_source_string(const char *format, int n_in, char **in);

// Ends a conversion: the class names of --class-names when given (else names[num_classes]),
// then pf_shard_writer_finish. Fills r->images and r->num_classes. Frees w in every case.
int pf_convert_finish(pf_shard_writer *w, const pf_convert_opts *o, char *const *names,
                      int num_classes, const char *source, pf_convert_result *r);

// A one-line progress bar on stderr, redrawn at most 10 times a second; off when !on:
// "[####......] 1234/5000  24% 812 images/s ETA 4:37" (images done / to do, time left).
typedef struct {
    bool on;
    int64_t total;
    double t0, last;
} pf_progress;

void pf_progress_begin(pf_progress *p, bool on, int64_t total);
void pf_progress_step(pf_progress *p, int64_t done);
void pf_progress_end(pf_progress *p);  // erases the bar

#endif
