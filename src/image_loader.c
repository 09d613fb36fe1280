// image_loader.c: shard -> normalized, augmented batches. Policy in image_loader.h.
#include "image_loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "image_shard.h"
#include "memplan.h"
#include "rng.h"
#include "shards.h"

#define DEFAULT_MEMORY_LIMIT ((int64_t)1 << 30)
#define RRC_TRIES 10

struct pf_image_loader {
    pf_image_shard *shards;  // [n_shards], all open for the whole run
    int n_shards;
    int64_t *first;  // [n_shards + 1] the split's first image in each shard (prefix sums)
    int64_t n;       // images over all shards
    int H, W, C, num_classes;  // agreed by every shard
    pf_image_loader_opts o;
    int out;
    size_t img_bytes;  // H*W*C
    uint8_t *pixels;   // [n, H, W, C] the whole split, or NULL when read image by image
    int32_t *labels;   // [n]
    pf_data_order order;  // over the images of the split
    float mean[PF_IMAGE_MAX_C], std[PF_IMAGE_MAX_C];  // normalisation of x/255
    char *what;           // "image shard(s) 'SPEC'", for messages
};

// ---- resampling ------------------------------------------------------------------------

typedef struct {
    int lo, n;  // source taps [lo, lo+n)
} tap_range;

static int taps_max(float len, int out_n) {
    float scale = len / (float)out_n;
    return (int)ceilf(scale > 1 ? scale : 1) * 2 + 2;
}

// Triangle-filter taps along one axis: output i covers source [start + i*s, start + (i+1)*s),
// s = len/out_n, with a half-width of max(s, 1) source pixels. w: [out_n, maxn].
static void make_taps(float start, float len, int in_n, int out_n, int maxn, tap_range *r,
                      float *w) {
    float scale = len / (float)out_n, support = scale > 1 ? scale : 1;
    for (int i = 0; i < out_n; i++) {
        float center = start + ((float)i + 0.5f) * scale;
        int lo = (int)floorf(center - support + 0.5f), hi = (int)floorf(center + support + 0.5f);
        if (lo < 0) lo = 0;
        if (hi > in_n) hi = in_n;
        float *wi = w + (size_t)i * maxn, total = 0;
        int n = 0;
        for (int x = lo; x < hi && n < maxn; x++) {
            float t = fabsf(((float)x + 0.5f - center) / support);
            wi[n] = t < 1 ? 1 - t : 0;
            total += wi[n++];
        }
        if (total <= 0) {  // box entirely off the image: take the nearest pixel
            lo = (int)floorf(center);
            lo = lo < 0 ? 0 : lo >= in_n ? in_n - 1 : lo;
            n = 1, wi[0] = total = 1;
        }
        for (int t = 0; t < n; t++) wi[t] /= total;
        r[i].lo = lo, r[i].n = n;
    }
}

void pf_image_resample(const uint8_t *src, int sh, int sw, int C, float y0, float x0, float bh,
                       float bw, float *dst, int oh, int ow, bool flip) {
    PF_ASSERT(C >= 1 && C <= PF_IMAGE_MAX_C && oh > 0 && ow > 0 && bh > 0 && bw > 0);
    int mx = taps_max(bw, ow), my = taps_max(bh, oh);
    tap_range *rx = pf_malloc(sizeof *rx * (size_t)ow), *ry = pf_malloc(sizeof *ry * (size_t)oh);
    float *wx = pf_malloc(sizeof *wx * (size_t)ow * mx),
          *wy = pf_malloc(sizeof *wy * (size_t)oh * my);
    make_taps(x0, bw, sw, ow, mx, rx, wx);
    make_taps(y0, bh, sh, oh, my, ry, wy);
    int ylo = sh, yhi = 0;
    for (int i = 0; i < oh; i++) {
        if (ry[i].lo < ylo) ylo = ry[i].lo;
        if (ry[i].lo + ry[i].n > yhi) yhi = ry[i].lo + ry[i].n;
    }
    // Horizontal pass over the rows the vertical taps touch. tmp: [yhi-ylo, ow, C]
    float *tmp = pf_malloc(sizeof *tmp * (size_t)(yhi - ylo) * ow * C);
    for (int y = ylo; y < yhi; y++) {
        const uint8_t *row = src + (size_t)y * sw * C;
        float *t = tmp + (size_t)(y - ylo) * ow * C;
        for (int j = 0; j < ow; j++) {
            int jj = flip ? ow - 1 - j : j;
            const float *w = wx + (size_t)jj * mx;
            float acc[PF_IMAGE_MAX_C] = {0};
            for (int k = 0; k < rx[jj].n; k++)
                for (int c = 0; c < C; c++) acc[c] += w[k] * row[(size_t)(rx[jj].lo + k) * C + c];
            for (int c = 0; c < C; c++) t[(size_t)j * C + c] = acc[c];
        }
    }
    for (int i = 0; i < oh; i++) {
        const float *w = wy + (size_t)i * my;
        float *d = dst + (size_t)i * ow * C;
        for (int jc = 0; jc < ow * C; jc++) {
            float acc = 0;
            for (int k = 0; k < ry[i].n; k++)
                acc += w[k] * tmp[(size_t)(ry[i].lo + k - ylo) * ow * C + jc];
            d[jc] = acc;
        }
    }
    free(tmp);
    free(rx);
    free(ry);
    free(wx);
    free(wy);
}

// ---- options and open ------------------------------------------------------------------

pf_image_loader_opts pf_image_loader_defaults(int batch, uint64_t seed) {
    return (pf_image_loader_opts){.batch = batch,
                                  .seed = seed,
                                  .shuffle = true,
                                  .train = true,
                                  .random_resized_crop = true,
                                  .scale_min = 0.08f,
                                  .scale_max = 1.0f,
                                  .ratio_min = 3.0f / 4.0f,
                                  .ratio_max = 4.0f / 3.0f,
                                  .hflip = true};
}

// The loader's geometry comes from the shards (open_shards) before the options are checked.
static int check_opts(const pf_image_loader_opts *o, const pf_image_loader *l, const char *spec,
                      int rank, int world) {
    if (o->batch <= 0 || world <= 0 || rank < 0 || rank >= world) {
        pf_error("image loader: batch=%d rank=%d world=%d; need batch > 0 and 0 <= rank < world",
                 o->batch, rank, world);
        return -1;
    }
    if (o->out_size < 0 || (o->out_size == 0 && l->H != l->W)) {
        pf_error("image loader: '%s' stores %dx%d images; set out_size > 0 (square output side)",
                 spec, l->H, l->W);
        return -1;
    }
    if (o->train && o->random_resized_crop &&
        !(o->scale_min > 0 && o->scale_min <= o->scale_max && o->scale_max <= 1 &&
          o->ratio_min > 0 && o->ratio_min <= o->ratio_max)) {
        pf_error(
            "image loader: random resized crop scale [%g, %g] ratio [%g, %g]; need "
            "0 < scale_min <= scale_max <= 1 and 0 < ratio_min <= ratio_max",
            (double)o->scale_min, (double)o->scale_max, (double)o->ratio_min, (double)o->ratio_max);
        return -1;
    }
    if (o->center_crop < 0 || o->center_crop > 1) {
        pf_error("image loader: center_crop=%g must be in (0, 1], or 0 for automatic",
                 (double)o->center_crop);
        return -1;
    }
    if ((int64_t)o->batch * world > l->n) {
        pf_error(
            "image loader: '%s' has %lld images, fewer than one global batch "
            "(world %d x batch %d); lower the batch size",
            spec, (long long)l->n, world, o->batch);
        return -1;
    }
    if (l->n > UINT32_MAX) {
        pf_error("image loader: '%s' has %lld images; at most %u per split are supported", spec,
                 (long long)l->n, UINT32_MAX);
        return -1;
    }
    // The one buffer sized by the shard's image size times the batch (the config's image
    // size is in the memory plan, the shard's stored size may be larger).
    char source[800];
    double need = (double)l->H * l->W * l->C * o->batch;
    double avail = pf_host_mem_available(source, sizeof source);
    if (need > avail) {
        pf_error("image loader: a batch of %d images of %dx%dx%d from '%s' needs %.2f GB of host "
                 "memory but %.2f GB is available (%s); lower train.batch_size or convert the "
                 "shard at a smaller --size", o->batch, l->H, l->W, l->C, spec, need / 1e9,
                 avail / 1e9, source);
        return -1;
    }
    return 0;
}

// Two shards of one split must describe the same images and classes.
static int check_same_kind(const pf_image_shard *a, const pf_image_shard *b) {
    if (a->H != b->H || a->W != b->W || a->C != b->C || a->num_classes != b->num_classes) {
        pf_error("'%s' holds %dx%dx%d images of %d classes but '%s' holds %dx%dx%d of %d: the "
                 "shards of one split must be converted alike", b->path, b->H, b->W, b->C,
                 b->num_classes, a->path, a->H, a->W, a->C, a->num_classes);
        return -1;
    }
    for (int k = 0; k < a->num_classes; k++)
        if (strcmp(a->class_names[k], b->class_names[k])) {
            pf_error("class %d is '%s' in '%s' but '%s' in '%s': the shards of one split must "
                     "share one class list", k, b->class_names[k], b->path, a->class_names[k],
                     a->path);
            return -1;
        }
    return 0;
}

// The mean and std of x/255 over the union of the shards, from each shard's own (population
// statistics combine exactly: E[x^2] of each is std^2 + mean^2).
static void pooled_stats(const pf_image_shard *s, int n, float *mean, float *std) {
    double total = 0, m[PF_IMAGE_MAX_C] = {0}, m2[PF_IMAGE_MAX_C] = {0};
    for (int i = 0; i < n; i++) {
        total += (double)s[i].n;
        for (int c = 0; c < s[0].C; c++) {
            m[c] += (double)s[i].n * s[i].mean[c];
            m2[c] += (double)s[i].n * ((double)s[i].std[c] * s[i].std[c] +
                                       (double)s[i].mean[c] * s[i].mean[c]);
        }
    }
    for (int c = 0; c < s[0].C; c++) {
        double mu = total > 0 ? m[c] / total : 0, var = total > 0 ? m2[c] / total - mu * mu : 0;
        mean[c] = (float)mu;
        std[c] = (float)sqrt(var > 0 ? var : 0);
    }
}

static void close_shards(pf_image_shard *s, int n) {
    for (int i = 0; i < n; i++) pf_image_shard_close(&s[i]);
    free(s);
}

// Opens every shard of spec into *shards (n of them); -1 + pf_error (nothing left open).
static int open_shards(const char *spec, pf_image_shard **shards, int *n) {
    pf_shard_list list;
    if (pf_shard_list_expand(spec, "image shards", &list) < 0) return -1;
    pf_image_shard *s = pf_calloc((size_t)list.n, sizeof *s);
    int opened = 0, rc = pf_shard_reserve_files(list.n, spec);
    for (int i = 0; rc == 0 && i < list.n; i++) {
        rc = pf_image_shard_open(&s[i], list.paths[i]);
        if (rc == 0) opened++, rc = check_same_kind(&s[0], &s[i]);
    }
    pf_shard_list_free(&list);
    if (rc < 0) {
        close_shards(s, opened);
        return -1;
    }
    *shards = s, *n = opened;
    return 0;
}

int pf_image_split_stats(const char *spec, int *C, float *mean, float *std) {
    pf_image_shard *s;
    int n;
    if (open_shards(spec, &s, &n) < 0) return -1;
    *C = s[0].C;
    pooled_stats(s, n, mean, std);
    close_shards(s, n);
    return 0;
}

// Labels of every shard, and the pixels too when they fit the limit; -1 + pf_error.
static int read_split(pf_image_loader *l, int64_t limit) {
    l->labels = pf_malloc(sizeof *l->labels * (size_t)l->n);
    if ((int64_t)l->img_bytes * l->n <= limit) l->pixels = pf_malloc(l->img_bytes * (size_t)l->n);
    for (int i = 0; i < l->n_shards; i++) {
        pf_image_shard *s = &l->shards[i];
        uint8_t *px = l->pixels ? l->pixels + l->img_bytes * (size_t)l->first[i] : NULL;
        if (pf_image_shard_read(s, 0, s->n, px, l->labels + l->first[i]) < 0) return -1;
        for (int64_t k = 0; k < s->n; k++) {
            int32_t y = l->labels[l->first[i] + k];
            if (y < 0 || y >= l->num_classes) {
                pf_error("'%s': label %d of image %lld is outside [0, num_classes=%d)", s->path,
                         y, (long long)k, l->num_classes);
                return -1;
            }
        }
    }
    return 0;
}

pf_image_loader *pf_image_loader_open(const char *spec, const pf_image_loader_opts *o, int rank,
                                      int world) {
    pf_image_loader *l = pf_calloc(1, sizeof *l);
    if (open_shards(spec, &l->shards, &l->n_shards) < 0) {
        free(l);
        return NULL;
    }
    const pf_image_shard *s0 = &l->shards[0];
    l->H = s0->H, l->W = s0->W, l->C = s0->C, l->num_classes = s0->num_classes;
    l->first = pf_calloc((size_t)l->n_shards + 1, sizeof *l->first);
    for (int i = 0; i < l->n_shards; i++) l->first[i + 1] = l->first[i] + l->shards[i].n;
    l->n = l->first[l->n_shards];
    if (check_opts(o, l, spec, rank, world) < 0) {
        pf_image_loader_close(l);
        return NULL;
    }
    l->o = *o;
    l->out = o->out_size ? o->out_size : l->H;
    l->img_bytes = (size_t)l->H * l->W * l->C;
    pf_data_order_init(&l->order, l->n, o->batch, rank, world, o->seed, o->shuffle,
                       o->pad_last);
    float mean[PF_IMAGE_MAX_C], std[PF_IMAGE_MAX_C];
    pooled_stats(l->shards, l->n_shards, mean, std);
    for (int c = 0; c < l->C; c++) {
        l->mean[c] = o->mean ? o->mean[c] : mean[c];
        l->std[c] = o->std ? o->std[c] : std[c];
    }
    l->o.mean = l->o.std = NULL;  // the caller's arrays need not outlive the open
    size_t len = strlen(spec) + 32;
    l->what = pf_malloc(len);
    snprintf(l->what, len, "image shard(s) '%s'", spec);
    if (read_split(l, o->memory_limit > 0 ? o->memory_limit : DEFAULT_MEMORY_LIMIT) < 0) {
        pf_image_loader_close(l);
        return NULL;
    }
    return l;
}

void pf_image_loader_close(pf_image_loader *l) {
    if (!l) return;
    close_shards(l->shards, l->n_shards);
    free(l->first);
    free(l->pixels);
    free(l->labels);
    pf_data_order_free(&l->order);
    free(l->what);
    free(l);
}

// ---- batches ---------------------------------------------------------------------------

// Crop box (source pixels) of one image: y0, x0, h, w.
static void crop_box(const pf_image_loader *l, pf_rng *r, float box[4]) {
    const pf_image_loader_opts *o = &l->o;
    int H = l->H, W = l->W;
    if (o->train && o->random_resized_crop) {
        double area = (double)H * W, lr0 = log(o->ratio_min), lr1 = log(o->ratio_max);
        for (int t = 0; t < RRC_TRIES; t++) {
            double target =
                area * (o->scale_min + (o->scale_max - o->scale_min) * pf_rng_uniform(r));
            double ar = exp(lr0 + (lr1 - lr0) * pf_rng_uniform(r));
            int w = (int)lround(sqrt(target * ar)), h = (int)lround(sqrt(target / ar));
            if (w > 0 && w <= W && h > 0 && h <= H) {
                box[0] = (float)pf_rng_below(r, (uint32_t)(H - h + 1));
                box[1] = (float)pf_rng_below(r, (uint32_t)(W - w + 1));
                box[2] = (float)h, box[3] = (float)w;
                return;
            }
        }
        // torchvision's fallback: the whole image, clamped to the ratio range, centered.
        double in_ratio = (double)W / H;
        int w = W, h = H;
        if (in_ratio < o->ratio_min)
            h = (int)lround(w / o->ratio_min);
        else if (in_ratio > o->ratio_max)
            w = (int)lround(h * o->ratio_max);
        box[0] = (float)((H - h) / 2), box[1] = (float)((W - w) / 2);
        box[2] = (float)h, box[3] = (float)w;
        return;
    }
    int short_side = H < W ? H : W;
    float side = o->center_crop > 0 ? o->center_crop * (float)short_side
                                    : (float)(l->out < short_side ? l->out : short_side);
    // Integer offsets when the side is integral, so a crop at scale 1 copies pixels exactly.
    box[0] = floorf(((float)H - side) / 2), box[1] = floorf(((float)W - side) / 2);
    box[2] = box[3] = side;
}

// One image of the batch: pos is its position in the epoch's global order.
static void make_image(const pf_image_loader *l, const uint8_t *src, int64_t epoch, int64_t pos,
                       float *dst) {
    const int C = l->C;
    pf_rng r;
    pf_rng_seed(&r, l->o.seed * 0xD1B54A32D192ED03ull ^ (uint64_t)epoch * 0x9E3779B97F4A7C15ull ^
                        (uint64_t)pos * 0xBF58476D1CE4E5B9ull);
    float box[4];
    crop_box(l, &r, box);
    bool flip = l->o.train && l->o.hflip && (pf_rng_u64(&r) >> 63);
    pf_image_resample(src, l->H, l->W, C, box[0], box[1], box[2], box[3], dst, l->out, l->out,
                      flip);
    float scale[PF_IMAGE_MAX_C], shift[PF_IMAGE_MAX_C];
    for (int c = 0; c < C; c++) {
        float sd = l->std[c] < 1e-6f ? 1.0f : l->std[c];
        scale[c] = 1.0f / (255.0f * sd);
        shift[c] = l->mean[c] / sd;
    }
    size_t n = (size_t)l->out * l->out;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) dst[i * C + c] = dst[i * C + c] * scale[c] - shift[c];
}

pf_data_rows pf_image_loader_plan(pf_image_loader *l) { return pf_data_order_next(&l->order); }

int pf_image_loader_fill(const pf_image_loader *l, const pf_data_rows *rows, bool parallel,
                         float *images, int32_t *labels) {
    const int B = l->o.batch, real = rows->real;
    const uint32_t *idx = rows->items;
    size_t out_elems = (size_t)l->out * l->out * l->C;
    int failed = 0;
    char err[1024] = "";
    // Rows are independent: one image each, its augmentation seeded by its epoch position.
    // Uncached splits read each image on the thread that resamples it (HDF5 is built
    // thread-safe and serialises the reads).
#pragma omp parallel for schedule(dynamic) if (parallel)
    for (int j = 0; j < B; j++) {
        float *dst = images + (size_t)j * out_elems;
        if (j >= real) {
            memset(dst, 0, sizeof(float) * out_elems);
            labels[j] = -1;
            continue;
        }
        uint8_t *buf = NULL;
        const uint8_t *src = l->pixels ? l->pixels + (size_t)idx[j] * l->img_bytes : NULL;
        if (!src) {
            int s = pf_shard_of(l->first, l->n_shards, idx[j]);
            buf = pf_malloc(l->img_bytes);
            if (pf_image_shard_read(&l->shards[s], idx[j] - l->first[s], 1, buf, NULL) < 0) {
#pragma omp critical(pf_image_fill_error)
                if (!failed++) snprintf(err, sizeof err, "%s", pf_errmsg());
                free(buf);
                continue;
            }
            src = buf;
        }
        make_image(l, src, rows->epoch, rows->first + j, dst);
        labels[j] = l->labels[idx[j]];
        free(buf);
    }
    if (failed) pf_error("%s", err);  // on the calling thread, where the caller looks for it
    return failed ? -1 : 0;
}

int pf_image_loader_next(pf_image_loader *l, float *images, int32_t *labels) {
    pf_data_rows rows = pf_image_loader_plan(l);
    return pf_image_loader_fill(l, &rows, true, images, labels);
}

// ---- mixup / cutmix --------------------------------------------------------------------

static void mixup_pairs(float *images, int B, size_t n, float lam) {
    float keep = lam, take = 1 - lam;
    for (int b = 0; b < (B + 1) / 2; b++) {
        float *x = images + (size_t)b * n, *y = images + (size_t)(B - 1 - b) * n;
        for (size_t i = 0; i < n; i++) {
            float xi = x[i], yi = y[i];
            x[i] = keep * xi + take * yi;
            y[i] = keep * yi + take * xi;
        }
    }
}

// Swaps the box rows [y0, y1) x columns [x0, x1) between the pairs (b, B-1-b); returns the
// box area.
static int cutmix_pairs(float *images, int B, int S, int C, pf_rng *r, float lam) {
    int side = (int)lround(S * sqrt(1.0 - lam));
    int cy = (int)pf_rng_below(r, (uint32_t)S), cx = (int)pf_rng_below(r, (uint32_t)S);
    int y0 = cy - side / 2, x0 = cx - side / 2, y1 = y0 + side, x1 = x0 + side;
    y0 = y0 < 0 ? 0 : y0, x0 = x0 < 0 ? 0 : x0;
    y1 = y1 > S ? S : y1, x1 = x1 > S ? S : x1;
    size_t n = (size_t)S * S * C, row = (size_t)(x1 - x0) * C;
    for (int b = 0; b < B / 2; b++)
        for (int y = y0; y < y1; y++) {
            float *p = images + (size_t)b * n + ((size_t)y * S + x0) * C;
            float *q = images + (size_t)(B - 1 - b) * n + ((size_t)y * S + x0) * C;
            for (size_t i = 0; i < row; i++) {
                float t = p[i];
                p[i] = q[i], q[i] = t;
            }
        }
    return (y1 - y0) * (x1 - x0);
}

float pf_image_mix_batch(float *images, const int32_t *labels, int32_t *labels_b, int B, int S,
                         int C, float mixup_alpha, float cutmix_alpha, uint64_t seed) {
    PF_ASSERT(B >= 1 && S >= 1 && C >= 1 && mixup_alpha >= 0 && cutmix_alpha >= 0);
    for (int b = 0; b < B; b++) labels_b[b] = labels[B - 1 - b];
    if (mixup_alpha == 0 && cutmix_alpha == 0) return 1.0f;
    pf_rng r;
    pf_rng_seed(&r, seed);
    bool cutmix = cutmix_alpha > 0 && (mixup_alpha == 0 || (pf_rng_u64(&r) >> 63));
    float alpha = cutmix ? cutmix_alpha : mixup_alpha;
    float lam = (float)pf_rng_beta(&r, alpha, alpha);
    if (!cutmix) {
        mixup_pairs(images, B, (size_t)S * S * C, lam);
        return lam;
    }
    int area = cutmix_pairs(images, B, S, C, &r, lam);
    return 1.0f - (float)area / (float)(S * S);
}

// ---- cursor and accessors --------------------------------------------------------------

pf_data_cursor pf_image_loader_get_cursor(const pf_image_loader *l) {
    return pf_data_order_get_cursor(&l->order);
}

int pf_image_loader_set_cursor(pf_image_loader *l, pf_data_cursor c) {
    return pf_data_order_set_cursor(&l->order, c, l->what);
}

void pf_image_loader_reset(pf_image_loader *l) { pf_data_order_reset(&l->order); }

int64_t pf_image_loader_num_images(const pf_image_loader *l) { return l->n; }
int pf_image_loader_num_classes(const pf_image_loader *l) { return l->num_classes; }
int pf_image_loader_channels(const pf_image_loader *l) { return l->C; }
int pf_image_loader_height(const pf_image_loader *l) { return l->H; }
int pf_image_loader_width(const pf_image_loader *l) { return l->W; }
int pf_image_loader_out_size(const pf_image_loader *l) { return l->out; }
int64_t pf_image_loader_batches_per_epoch(const pf_image_loader *l) {
    return l->order.batches_per_epoch;
}

const char *pf_image_loader_class_name(const pf_image_loader *l, int i) {
    PF_ASSERT(i >= 0 && i < l->num_classes);
    return l->shards[0].class_names[i];
}
