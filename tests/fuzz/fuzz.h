// fuzz.h: what the libFuzzer harnesses in tests/fuzz share (fuzz.c).
//
// Each harness feeds its input to one of pixelfly's parsers through the same entry point the
// tools use, on a file in a private scratch folder when that entry point takes a path. The
// parsers must return -1 with a message on any input; a crash, a sanitizer report, a leak,
// or a FUZZ_CHECK failure (a property the parser documents, e.g. "loads back to the same
// config") is a finding.
#ifndef PF_FUZZ_H
#define PF_FUZZ_H

#include <stddef.h>
#include <stdint.h>

// A property violated: prints what and where, then aborts (libFuzzer keeps the input).
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond);                                \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

// The harness's scratch folder: a new folder under $TMPDIR (else /dev/shm, else /tmp),
// created on first use and removed with its contents at exit.
const char *fuzz_tmpdir(void);
// Writes data to NAME inside the scratch folder (creating sub-folders of NAME) and returns
// its path (static storage, valid until the next call). Aborts on an I/O error.
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);
// Path of NAME inside the scratch folder (static storage, valid until the next call).
const char *fuzz_path(const char *name);
// Removes everything inside the scratch folder (the folder itself stays).
void fuzz_clean_tmpdir(void);

// Removes everything in the scratch folder, then writes data to "N-NAME" there, N a count of
// the calls: a name never used before. HDF5 knows an open file by its inode, so each input
// must be a new file, never one HDF5 may still hold from the input before.
const char *fuzz_write_fresh(const char *name, const uint8_t *data, size_t size);

// FUZZ_CHECK that no HDF5 identifier of a file, dataset, group, datatype or attribute is still
// open: every reader and writer must close what it opened, on success and on error.
void fuzz_check_hdf5_closed(void);

// Turns off HDF5's automatic error-stack printing, as the project's readers do around their
// calls, so that a corrupt file costs one quiet -1 rather than pages of stderr.
void fuzz_quiet_hdf5(void);

// The shared test data folder: $PIXELFLY_DATA, else ../shared/data next to the repository
// that holds this binary (build-fuzz/fuzz/NAME), else ../shared/data from the working
// folder. Exits with a message naming where it looked when none exists.
const char *fuzz_data_dir(void);

#endif
