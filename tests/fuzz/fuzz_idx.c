// fuzz_idx: the IDX converter (`pfdata images --format idx`), pf_convert_idx, on a pair of
// temporary files. Input: 2 bytes little-endian, whose low 15 bits are the length L of the
// labels file and whose top bit selects `--classes fashion-mnist`; then L bytes of the labels
// file, then the images file (either may be gzip-compressed, as the converter accepts both).
// A success must report what the header announced; either way no temporary may be left.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fuzz.h"
#include "image_convert.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t L = (size_t)(data[0] | (data[1] & 0x7f) << 8);
    bool preset = data[1] & 0x80;
    data += 2, size -= 2;
    if (L > size) L = size;
    fuzz_clean_tmpdir();
    char *in[2];
    in[1] = strdup(fuzz_write_file("labels.idx", data, L));
    in[0] = strdup(fuzz_write_file("images.idx", data + L, size - L));
    char *out = strdup(fuzz_path("out.h5"));
    pf_convert_opts o = {.out = out, .classes = preset ? "fashion-mnist" : NULL};
    pf_convert_result r = {0};
    int rc = pf_convert_idx(&o, 2, in, &r);
    (void)pf_errmsg();
    FUZZ_CHECK((rc == 0) == (access(out, F_OK) == 0));
    if (rc == 0) FUZZ_CHECK(r.images > 0 && r.H > 0 && r.W > 0 && r.C == 1);
    free(in[0]);
    free(in[1]);
    free(out);
    fuzz_check_hdf5_closed();
    return 0;
}
