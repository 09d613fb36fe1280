// pfdata: converts corpora and image collections into pixelfly's HDF5 shards.
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "pfdata.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfdata text --vocab DIR --out OUT.h5 FILE...\n"
            "       pfdata images --format imagenet|cifar|idx --out OUT.h5 INPUT...\n"
            "       pfdata --help | --version\n"
            "Run 'pfdata text --help' or 'pfdata images --help' for the options of each.\n");
}

int main(int argc, char **argv) {
    // No HDF5 clean-up at exit: the files pfdata writes are closed (or removed) explicitly,
    // and after a close that failed (a full disk) HDF5 1.10's exit handler crashes on the
    // half-closed file, after our message has been printed.
    H5dont_atexit();
    if (argc < 2) {
        usage(stderr);
        return PF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return PF_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("pfdata %s\n", PF_VERSION);
        return PF_EXIT_OK;
    }
    if (!strcmp(cmd, "text")) return pfdata_text_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "images")) return pfdata_images_main(argc - 1, argv + 1);
    fprintf(stderr, "pfdata: unknown command '%s'\n", cmd);
    usage(stderr);
    return PF_EXIT_USAGE;
}
