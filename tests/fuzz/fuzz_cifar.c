// fuzz_cifar: the CIFAR converter (`pfdata images --format cifar`), pf_convert_cifar, on one
// temporary batch file. Input: one byte whose low bit selects --cifar100, then the file.
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
    if (size < 1) return 0;
    bool cifar100 = data[0] & 1;
    fuzz_clean_tmpdir();
    char *in[1] = {strdup(fuzz_write_file("data_batch_1.bin", data + 1, size - 1))};
    char *out = strdup(fuzz_path("out.h5"));
    pf_convert_opts o = {.out = out, .cifar100 = cifar100};
    pf_convert_result r = {0};
    int rc = pf_convert_cifar(&o, 1, in, &r);
    (void)pf_errmsg();
    FUZZ_CHECK((rc == 0) == (access(out, F_OK) == 0));
    if (rc == 0)
        FUZZ_CHECK(r.images == (int64_t)((size - 1) / (cifar100 ? 3074 : 3073)) && r.H == 32 &&
                   r.W == 32 && r.C == 3);
    free(in[0]);
    free(out);
    fuzz_check_hdf5_closed();
    return 0;
}
