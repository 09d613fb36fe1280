// fuzz_image_shard: the image shard reader (datasets/image_shard.h) and the image loader
// that training reads it through, on the input written to a temporary .h5 file.
// pf_image_shard_open, pf_image_shard_read of the first and last image, then
// pf_image_loader_open (train options, out 8x8, held in memory up to 1 MiB, else read per
// batch) and two batches. Properties: the shape, class count and names are consistent, and
// labels read by the loader lie in [0, num_classes). Shards of images larger than 1 MiB or of
// more than 2^20 images are only opened, not read (buffers of a forged size would only
// measure the allocator).
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz.h"
#include "image_loader.h"
#include "image_shard.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    return 0;
}

static void run(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_fresh("images.h5", data, size);
    pf_image_shard s;
    int rc = pf_image_shard_open(&s, path);
    (void)pf_errmsg();
    if (rc != 0) return;
    FUZZ_CHECK(s.n > 0 && s.C >= 1 && s.C <= PF_IMAGE_MAX_C && s.num_classes > 0);
    for (int i = 0; i < s.num_classes; i++) (void)strlen(s.class_names[i]);
    (void)strlen(s.source);
    int64_t img = (int64_t)s.H * s.W * s.C;
    bool positive = s.H > 0 && s.W > 0, small = positive && img <= (1 << 20);
    if (small) {
        uint8_t *px = malloc((size_t)img);
        int32_t label;
        (void)pf_image_shard_read(&s, 0, 1, px, &label);
        (void)pf_image_shard_read(&s, s.n - 1, 1, px, &label);
        free(px);
    }
    int64_t n = s.n;
    pf_image_shard_close(&s);
    // A shape the reader should have refused (H or W <= 0) still goes to the loader.
    if ((positive && !small) || n > (1 << 20)) return;

    const int B = 2, out = 8;
    pf_image_loader_opts o = pf_image_loader_defaults(B, 7);
    o.out_size = out;
    o.memory_limit = 1 << 20;
    o.pad_last = true;
    pf_image_loader *l = pf_image_loader_open(path, &o, 0, 1);
    (void)pf_errmsg();
    if (!l) return;
    int C = pf_image_loader_channels(l), nc = pf_image_loader_num_classes(l);
    float *x = malloc(sizeof *x * (size_t)(B * out * out * C));
    int32_t labels[B];
    for (int step = 0; step < 2; step++) {
        if (pf_image_loader_next(l, x, labels) != 0) break;
        for (int b = 0; b < B; b++) FUZZ_CHECK(labels[b] >= -1 && labels[b] < nc);
    }
    free(x);
    pf_image_loader_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run(data, size);
    fuzz_check_hdf5_closed();
    return 0;
}
