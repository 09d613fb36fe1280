// jpeg_folder.c: a synthetic ImageNet-style train folder, ROOT/n00000000/img00000.JPEG ...
// (CLASSES class folders named like wnids, PER_CLASS JPEGs each), for `pfdata images
// --format imagenet`. tests/test_images.c includes this file (the Makefile links one object
// per test); built on its own it makes folders for timing the converter by hand:
//   cc -O2 -DJPEG_FOLDER_MAIN tests/gen/jpeg_folder.c $(pkg-config --cflags --libs libturbojpeg)
//      -o build/jpeg_folder   (one line)
//   build/jpeg_folder ROOT CLASSES PER_CLASS [MAX_SIDE [MIN_SIDE]]
// (ImageNet's photos: most sides between 300 and 500, e.g. MAX_SIDE 500 MIN_SIDE 300)
//
// Image k (numbered over the classes in order, which is also the converter's plan order) is
// gen_jpeg_kind(k): mostly RGB at 4:2:0 (as ImageNet's photos), every 7th grayscale, every
// 11th CMYK (YCCK as libjpeg writes it); its size is gen_jpeg_size(k): the first five are
// the edge cases 1x1, 17x301, 333x97, 301x17 and 2x3, then pseudo-random sides in
// [MIN_SIDE, MAX_SIDE] (MIN_SIDE default 8). Pixels are smooth ramps plus a little noise, a function of (k, x, y), so the
// same call writes the same bytes.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

enum { GEN_RGB, GEN_GRAY, GEN_CMYK };

static int gen_jpeg_kind(int k) { return k % 7 == 3 ? GEN_GRAY : k % 11 == 5 ? GEN_CMYK : GEN_RGB; }

static void gen_jpeg_size(int k, int min_side, int max_side, int *w, int *h) {
    static const int edge[5][2] = {{1, 1}, {17, 301}, {333, 97}, {301, 17}, {2, 3}};
    if (k < 5) {
        *w = edge[k][0], *h = edge[k][1];
        return;
    }
    uint32_t r = (uint32_t)k * 2654435761u;
    int span = max_side > min_side ? max_side - min_side + 1 : 1;
    *w = min_side + (int)(r % (uint32_t)span), *h = min_side + (int)((r >> 16) % (uint32_t)span);
}

// Image k's pixels [h, w, channels] of its kind (1 gray, 3 RGB, 4 CMYK).
static uint8_t *gen_jpeg_pixels(int k, int w, int h, int channels) {
    uint8_t *px = malloc((size_t)w * h * channels);
    for (int y = 0; px && y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                uint32_t noise = ((uint32_t)(x * 73 + y * 151 + c * 7 + k) * 2246822519u) >> 28;
                px[((size_t)y * w + x) * channels + c] =
                    (uint8_t)(k * 29 + c * 60 + x * 255 / w + y * 128 / h + noise);
            }
    return px;
}

// Writes image k to path; 0, or -1 with a message on stderr.
static int gen_jpeg_write(const char *path, int k, int min_side, int max_side) {
    int w, h, kind = gen_jpeg_kind(k);
    gen_jpeg_size(k, min_side, max_side, &w, &h);
    int pf = kind == GEN_GRAY ? TJPF_GRAY : kind == GEN_CMYK ? TJPF_CMYK : TJPF_RGB,
        samp = kind == GEN_GRAY ? TJSAMP_GRAY : kind == GEN_CMYK ? TJSAMP_444 : TJSAMP_420;
    uint8_t *px = gen_jpeg_pixels(k, w, h, tjPixelSize[pf]);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    int rc = px && tj && tjCompress2(tj, px, w, 0, h, pf, &jpeg, &size, samp, 90, 0) == 0 ? 0 : -1;
    FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
    if (rc == 0 && (!f || fwrite(jpeg, 1, size, f) != size)) rc = -1;
    if (f && fclose(f) != 0) rc = -1;
    if (rc < 0)
        fprintf(stderr, "jpeg_folder: cannot write '%s' (%dx%d): %s\n", path, w, h,
                tj ? tjGetErrorStr2(tj) : strerror(errno));
    tjFree(jpeg);
    if (tj) tjDestroy(tj);
    free(px);
    return rc;
}

// Writes classes x per_class JPEGs below root (created, as are the class folders) with sides
// in [min_side, max_side] (8 <= min_side <= max_side). 0, or -1 with a message on stderr.
static int gen_jpeg_folder(const char *root, int classes, int per_class, int min_side,
                           int max_side) {
    char path[4096];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "jpeg_folder: cannot create '%s': %s\n", root, strerror(errno));
        return -1;
    }
    for (int c = 0, k = 0; c < classes; c++) {
        snprintf(path, sizeof path, "%s/n%08d", root, c);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "jpeg_folder: cannot create '%s': %s\n", path, strerror(errno));
            return -1;
        }
        for (int i = 0; i < per_class; i++, k++) {
            snprintf(path, sizeof path, "%s/n%08d/img%05d.JPEG", root, c, i);
            if (gen_jpeg_write(path, k, min_side, max_side) < 0) return -1;
        }
    }
    return 0;
}

#ifdef JPEG_FOLDER_MAIN
int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: jpeg_folder ROOT CLASSES PER_CLASS [MAX_SIDE (default 500) "
                        "[MIN_SIDE (default 8)]]\n");
        return 2;
    }
    int classes = atoi(argv[2]), per_class = atoi(argv[3]), side = argc > 4 ? atoi(argv[4]) : 500,
        min_side = argc > 5 ? atoi(argv[5]) : 8;
    if (classes < 1 || classes > 100000 || per_class < 1 || per_class > 100000 || min_side < 8 ||
        side < min_side || side > 16384) {
        fprintf(stderr, "jpeg_folder: CLASSES and PER_CLASS in [1, 100000], 8 <= MIN_SIDE <= "
                        "MAX_SIDE <= 16384\n");
        return 2;
    }
    return gen_jpeg_folder(argv[1], classes, per_class, min_side, side) == 0 ? 0 : 1;
}
#endif
