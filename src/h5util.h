// h5util.h: the HDF5 plumbing every reader and writer of pixelfly's files shares (checkpoints,
// image and token shards): silencing HDF5's own error printing while a call runs, and the one
// line of its error stack that goes into pf_error() instead.
#ifndef PF_H5UTIL_H
#define PF_H5UTIL_H

#include <hdf5.h>

// HDF5 prints its whole error stack to stderr by default. Between pf_h5_quiet_begin and
// pf_h5_quiet_end it prints nothing: the caller reports one line through pf_error().
typedef struct {
    H5E_auto2_t fn;
    void *data;
} pf_h5_quiet;

pf_h5_quiet pf_h5_quiet_begin(void);
void pf_h5_quiet_end(pf_h5_quiet q);  // restores what pf_h5_quiet_begin found

enum { PF_H5_ERRTEXT_MAX = 256 };
// The most specific message on the HDF5 error stack (that of the function which detected the
// error) into buf, or "HDF5 error" when the stack is empty; returns buf.
const char *pf_h5_errtext(char buf[PF_H5_ERRTEXT_MAX]);

// File access properties for a file pixelfly writes: the HDF5 1.8 file format (superblock
// version 2, object header version 2), whose metadata carries checksums that HDF5 verifies on
// every read, so a flipped byte in a shard or checkpoint's metadata is an error rather than
// input for HDF5's parsers; every HDF5 >= 1.8 (and h5py) reads it. Close with H5Pclose; -1 on
// failure.
hid_t pf_h5_checksummed_fapl(void);

// Strings. pixelfly writes fixed-length UTF-8 strings, stored in the checksummed object header
// (attributes) or the dataset's own storage: a variable-length string's bytes live in HDF5's
// global heap, which the 1.8 format does not checksum and whose parser a damaged file crashes
// (found by fuzzing, tests/fuzz). Readers take both kinds: files written before hold
// variable-length strings. A fixed-length string longer than PF_H5_STRING_MAX is refused as
// damage (names and paths, never payloads).
enum { PF_H5_STRING_MAX = 1 << 20 };

// A scalar string attribute `name` on loc holding value. 0, or -1 (HDF5's error stack set).
int pf_h5_write_string_attr(hid_t loc, const char *name, const char *value);
// The string attribute `name` of loc, malloc'd; NULL when it is absent, not a string or
// unreadable.
char *pf_h5_read_string_attr(hid_t loc, const char *name);
// A 1-D dataset `name` of n strings (fixed length: the longest + 1). 0, or -1.
int pf_h5_write_strings(hid_t loc, const char *name, char *const *strings, int n);
// The n strings of 1-D string dataset d into out[0..n) (each malloc'd). 0, or -1 (nothing
// allocated).
int pf_h5_read_strings(hid_t d, int n, char **out);

#endif
