// fuzz_jpeg: JPEG decoding in the ImageNet converter (`pfdata images --format imagenet`),
// pf_convert_imagenet, on a class folder holding the input as its one .jpg. Input: one byte
// that picks the output side (--size 1..64) and whether a corrupt file is skipped
// (--on-corrupt skip), then the JPEG file. A file libjpeg cannot decode must be refused (or
// skipped) with a message, never crash the converter.
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fuzz.h"
#include "image_convert.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    omp_set_num_threads(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int S = 1 + (data[0] & 63);
    bool skip = data[0] & 64;
    fuzz_clean_tmpdir();
    fuzz_write_file("root/n01440764/img.jpg", data + 1, size - 1);
    char *in[1] = {strdup(fuzz_path("root"))};
    char *out = strdup(fuzz_path("out.h5"));
    pf_convert_opts o = {.out = out, .size = S, .skip_corrupt = skip};
    pf_convert_result r = {0};
    int rc = pf_convert_imagenet(&o, 1, in, &r);
    (void)pf_errmsg();
    FUZZ_CHECK((rc == 0) == (access(out, F_OK) == 0));
    if (rc == 0) FUZZ_CHECK(r.images + r.skipped == 1 && r.H == S && r.W == S && r.C == 3);
    free(in[0]);
    free(out);
    fuzz_check_hdf5_closed();
    return 0;
}
