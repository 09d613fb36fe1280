// image_loader.h: batches of normalized, augmented images from HDF5 image shards (layout in
// datasets/image_shard.h).
//
// A split is one shard or a list or glob of them (shards.h); its N images are those of its
// shards in list order, and every shard must hold images of the same H, W, C and the same
// class list. Order: the N images are the items of a pf_data_order (data_order.h): a seeded order per
// epoch (identity when shuffle is off), batch k of rank r holding perm[(k*world + r)*B + j],
// j < B, so the union over ranks of batch k is the single-rank batch k of size world*B; the
// tail of an epoch that does not fill a global batch is dropped (batches_per_epoch =
// N / (world*B)), unless pad_last keeps it.
//
// Augmentation is drawn from an RNG seeded by (seed, epoch, global position in the epoch),
// so an image gets the same crop and flip whatever the world size, and a restored cursor
// replays exactly the batches it would have produced.
//   train: random resized crop (area fraction in [scale_min, scale_max] of the image, aspect
//          ratio log-uniform in [ratio_min, ratio_max], 10 tries, then the center fallback of
//          torchvision) resized to out x out, then a horizontal flip with probability 1/2;
//          with random_resized_crop off, the eval geometry (plus the flip).
//   eval:  the central square of side center_crop x min(H, W) resized to out x out; with
//          center_crop = 0 that side is min(out, H, W), i.e. a pixel-exact center crop when
//          out <= min(H, W) (256 -> 224 as in the usual ImageNet eval) and the whole central
//          square enlarged otherwise.
// Output pixels: (x/255 - mean[c]) / std[c] with the split's mean and std (pooled exactly from
// the shards' mean and std attributes and image counts), or the ones the options give (evaluation passes the training shard's: pf_data_open); std < 1e-6, a
// constant channel, is taken as 1.
//
// Reading: when the split's pixels fit in memory_limit (default 1 GiB: Fashion-MNIST 47 MB,
// CIFAR 150 MB) each rank reads every /images once at open; bigger splits (ImageNet) are read
// image by image with HDF5 hyperslabs (chunks are one image there), each by the thread that
// resamples it. Labels are always held in memory (4 bytes per image), and every shard stays
// open (one file descriptor each).
// Mixup/cutmix (pf_image_mix_batch) act on a finished batch: the training data source applies
// them, the loader itself does not.
#ifndef PF_IMAGE_LOADER_H
#define PF_IMAGE_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "data_order.h"

typedef struct {
    int batch;  // B, images per rank per batch
    uint64_t seed;
    bool shuffle;
    bool train;    // augment (crop + flip) instead of the eval geometry
    int out_size;  // output side; 0 = stored size (needs H == W)
    bool random_resized_crop;
    float scale_min, scale_max;  // area fraction, e.g. 0.08..1 (0.35..1 for tiny images)
    float ratio_min, ratio_max;  // aspect ratio w/h, e.g. 3/4..4/3
    bool hflip;
    float center_crop;     // eval: fraction of the short side kept; 0 = auto (see above)
    int64_t memory_limit;  // bytes of pixels held in memory; 0 = 1 GiB; above it, read per batch
    bool pad_last;         // evaluation: keep the epoch's last partial global batch, its empty
                           // slots filled with zero images and label -1 (to be ignored)
    // Normalisation statistics [C] (of x/255) to use instead of the shard's own attributes, or
    // NULL for the shard's; copied at open.
    const float *mean, *std;
} pf_image_loader_opts;

typedef struct pf_image_loader pf_image_loader;

// Typical training options: shuffle, random resized crop 0.08..1, 3/4..4/3, flip.
pf_image_loader_opts pf_image_loader_defaults(int batch, uint64_t seed);

// spec: a shard, or a list or glob of shards (shards.h). NULL and pf_error() on a bad file,
// shards that disagree, or bad options (world*B larger than the split, ...).
pf_image_loader *pf_image_loader_open(const char *spec, const pf_image_loader_opts *o, int rank,
                                      int world);
void pf_image_loader_close(pf_image_loader *l);

// images: [B, out, out, C] normalized; labels: [B]. Rolls over to the next epoch after the
// last batch. -1 and pf_error() on a read failure. The same as plan, then fill (parallel).
int pf_image_loader_next(pf_image_loader *l, float *images, int32_t *labels);
// The two halves of next, for background loading (data.c): plan advances the order and says
// which images the batch holds (rows.items valid until the next plan); fill makes them, and
// may run on several threads at once for different rows; `parallel` spreads its rows over the
// OpenMP threads (off on a loader thread, whose parallelism is the other loader threads).
pf_data_rows pf_image_loader_plan(pf_image_loader *l);
int pf_image_loader_fill(const pf_image_loader *l, const pf_data_rows *rows, bool parallel,
                         float *images, int32_t *labels);

// The channel count and the pooled mean and std [C] of x/255 of a split (the normalisation a
// loader of it uses), read from the shards' attributes. -1 and pf_error().
int pf_image_split_stats(const char *spec, int *C, float *mean, float *std);

// The position of the next batch, what a checkpoint stores (data_order.h).
pf_data_cursor pf_image_loader_get_cursor(const pf_image_loader *l);
int pf_image_loader_set_cursor(pf_image_loader *l, pf_data_cursor c);  // -1 if out of range
void pf_image_loader_reset(pf_image_loader *l);                         // back to epoch 0, batch 0

int64_t pf_image_loader_num_images(const pf_image_loader *l);
int pf_image_loader_num_classes(const pf_image_loader *l);
int pf_image_loader_channels(const pf_image_loader *l);  // C
int pf_image_loader_height(const pf_image_loader *l);    // stored H
int pf_image_loader_width(const pf_image_loader *l);     // stored W
int pf_image_loader_out_size(const pf_image_loader *l);  // side of the output images
int64_t pf_image_loader_batches_per_epoch(const pf_image_loader *l);
const char *pf_image_loader_class_name(const pf_image_loader *l, int i);

// Mixup / cutmix of one batch in place, as timm with per-batch lambda and "flip" pairing:
// sample b is mixed with sample B-1-b. images: [B, S, S, C]; labels, labels_b: [B].
// Draws from an RNG seeded by `seed` (the caller folds in epoch, batch and rank, so a restored
// cursor replays the same mixing): with both alphas > 0, cutmix with probability 1/2, else
// mixup; then lam ~ Beta(alpha, alpha) of the chosen one.
//   mixup:  x[b] = lam * x[b] + (1 - lam) * x[B-1-b]
//   cutmix: a box of side round(S * sqrt(1 - lam)) at a uniform centre, clipped to the image,
//           is taken from x[B-1-b]; lam becomes 1 - box area / (S * S).
// labels_b[b] = labels[B-1-b]. Returns lam: the weight of labels (1 - lam that of labels_b);
// with both alphas 0 the images are untouched and lam is 1.
float pf_image_mix_batch(float *images, const int32_t *labels, int32_t *labels_b, int B, int S,
                         int C, float mixup_alpha, float cutmix_alpha, uint64_t seed);

// Resamples the box [y0, y0+bh) x [x0, x0+bw) (source pixel units) of src [sh, sw, C] into
// dst [oh, ow, C] (float, 0..255 scale) with a triangle filter widened by the shrink factor:
// bilinear when enlarging, antialiased (area-like) when shrinking; an integer box at scale 1
// is copied exactly. flip mirrors the output left-right. Shared with the JPEG converter.
void pf_image_resample(const uint8_t *src, int sh, int sw, int C, float y0, float x0, float bh,
                       float bw, float *dst, int oh, int ow, bool flip);

#endif
