// image_shard.h: the HDF5 image shard, written by `pfdata images`, read by the image loader.
//
// Layout of one shard file (one split: train and val are separate files):
//   /images       uint8 [N, H, W, C]  row-major HWC pixels, C = 1 (gray) or 3 (RGB);
//                                     chunked by image: [k, H, W, C] with k images per chunk,
//                                     k = max(1, 64 KiB / image bytes) (1 for ImageNet sizes,
//                                     83 for 28x28), extendible along N, no compression
//   /labels       int32 [N]           class index in [0, num_classes)
//   /class_names  vlen UTF-8 string [num_classes]
//   attributes on the root group:
//     num_classes  int32 scalar
//     mean         float32 [C]  per-channel mean of x/255 over the whole shard
//     std          float32 [C]  per-channel standard deviation of x/255 (population)
//     source       vlen UTF-8 string: the converter and its inputs, e.g. "idx: a.gz b.gz"
//     and whatever extra attributes the converter adds (numbered shards: their identity,
//     shard_set.h), int64 scalars or strings
//
// The writer appends images in batches (bounded memory whatever N is) and accumulates the
// channel sums exactly in 64-bit integers; mean/std are derived at the end in double.
// It writes to OUT.tmp.PID, fsyncs, and renames onto OUT only on success: after any error
// the temporary is removed and a pre-existing OUT is left untouched; pfdata's SIGINT/SIGTERM
// handler removes it too (the writer names it there: interrupt.h).
#ifndef PF_IMAGE_SHARD_H
#define PF_IMAGE_SHARD_H

#include <stdint.h>

#define PF_IMAGE_MAX_C 4
// The largest image side the converters take (IDX and CIFAR headers, JPEG output sizes):
// the same bound as model.image_size.
#define PF_IMAGE_MAX_SIDE 16384
// The most classes a shard may have (model.num_classes has the same bound).
#define PF_IMAGE_MAX_CLASSES 1048576

// ---- writer ----------------------------------------------------------------------------

typedef struct pf_shard_writer pf_shard_writer;

// Creates the temporary file next to out_path. NULL and pf_error() on failure.
pf_shard_writer *pf_shard_writer_open(const char *out_path, int H, int W, int C);
// Appends one image (img: [H, W, C]); buffered, flushed in batches. -1 on I/O failure.
int pf_shard_writer_add(pf_shard_writer *w, const uint8_t *img, int32_t label);
int64_t pf_shard_writer_count(const pf_shard_writer *w);
// Extra root attributes, written by finish after the standard ones: an int64 scalar or a
// string. At most PF_SHARD_EXTRA_ATTRS per writer, names shorter than 32 bytes and new
// (asserted: the names are the caller's constants).
#define PF_SHARD_EXTRA_ATTRS 12
void pf_shard_writer_attr_int(pf_shard_writer *w, const char *name, int64_t value);
void pf_shard_writer_attr_str(pf_shard_writer *w, const char *name, const char *value);
// Checks the label range, writes attributes and class names, closes, fsyncs, renames.
// Frees w in every case (on failure the temporary is removed). class_names: [num_classes].
int pf_shard_writer_finish(pf_shard_writer *w, int num_classes, char *const *class_names,
                           const char *source);
// Discards everything written so far (closes and removes the temporary) and frees w.
void pf_shard_writer_abort(pf_shard_writer *w);

// ---- reader ----------------------------------------------------------------------------

typedef struct {
    int64_t file, images, labels;  // hid_t handles (int64_t in HDF5 >= 1.10)
    int64_t n;                     // number of images
    int H, W, C, num_classes;
    float mean[PF_IMAGE_MAX_C], std[PF_IMAGE_MAX_C];
    char **class_names;  // [num_classes]
    char *source;
    char *path;  // for error messages
} pf_image_shard;

// Opens and validates a shard (shapes, attributes, class-name count). -1 and pf_error().
int pf_image_shard_open(pf_image_shard *s, const char *path);
// Reads images [first, first+count) into images [count, H, W, C] and labels [count]
// (either may be NULL). -1 and pf_error() on failure.
int pf_image_shard_read(pf_image_shard *s, int64_t first, int64_t count, uint8_t *images,
                        int32_t *labels);
// An integer scalar root attribute as int64: 0, or -1 when it is absent or not an integer
// scalar (no pf_error: for a caller asking whether a shard carries it).
int pf_image_shard_attr_int(const pf_image_shard *s, const char *name, int64_t *value);
// A string root attribute, malloc'd; NULL when absent or not a string.
char *pf_image_shard_attr_str(const pf_image_shard *s, const char *name);
void pf_image_shard_close(pf_image_shard *s);

#endif
