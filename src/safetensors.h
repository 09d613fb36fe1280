// safetensors.h: the safetensors file format (huggingface/safetensors), writer and reader.
//
//   8 bytes        N, the header length, unsigned little-endian
//   N bytes        UTF-8 JSON: {"NAME": {"dtype": "F32"|"BF16", "shape": [d0, ...],
//                  "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "value"}},
//                  padded with spaces so that the data starts at a multiple of 8 bytes
//   the data       every tensor row-major, little-endian, at [8 + N + begin, 8 + N + end);
//                  the ranges, sorted, tile the data from 0 to its end with no gap and no
//                  overlap; the header may list them in any order (this writer: in order)
//
// The writer converts fp32 host arrays to the file's dtype (BF16: round to nearest even) and
// writes atomically (PATH.tmp.PID, fsync, rename). The reader loads a whole file and checks
// every entry against the file before a caller sees it. pixelfly's model export is export.h.
#ifndef PF_SAFETENSORS_H
#define PF_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PF_ST_MAX_DIMS 8
// The reader refuses a header longer than this (the reference implementation's limit).
#define PF_ST_HEADER_MAX (100 << 20)

typedef enum { PF_ST_F32, PF_ST_BF16 } pf_st_dtype;

const char *pf_st_dtype_name(pf_st_dtype d);  // "F32", "BF16"
size_t pf_st_dtype_size(pf_st_dtype d);

typedef struct {
    char *name;
    pf_st_dtype dtype;
    int ndim;
    int64_t shape[PF_ST_MAX_DIMS];
    int64_t begin, end;  // byte offsets into the data section
} pf_st_info;

// ---- writer ----
typedef struct pf_st_writer pf_st_writer;
pf_st_writer *pf_st_writer_new(void);
void pf_st_writer_free(pf_st_writer *w);
// Appends tensor `name` of `shape` from fp32 host data, stored as `dtype`. With own, the writer
// takes `data` (pf_malloc'd) and frees it; else `data` must live until pf_st_write returns.
// Names must be unique (asserted).
void pf_st_add(pf_st_writer *w, const char *name, pf_st_dtype dtype, int ndim,
               const int64_t *shape, const float *data, bool own);
void pf_st_set_meta(pf_st_writer *w, const char *key, const char *value);
// Writes the file atomically. -1 with pf_error() naming `path`; then nothing is left behind.
int pf_st_write(const pf_st_writer *w, const char *path);

// Writes the file `path` atomically: PATH.tmp.PID, filled by fill(fp, ctx) (0, or -1 on a
// failed write), fsync'd and renamed onto path. -1 with pf_error() naming the file; then no
// temporary is left and an existing `path` is untouched. (pf_st_write and export's config.json)
int pf_write_atomic(const char *path, int (*fill)(FILE *fp, void *ctx), void *ctx);

// ---- reader ----
typedef struct pf_st_file pf_st_file;
// Loads and checks `path`: header length within the file, JSON an object (then only
// whitespace) of entries with a known dtype, a shape and data_offsets that match the shape
// and, sorted, tile the data exactly. NULL with pf_error() naming the file and the entry
// otherwise.
pf_st_file *pf_st_open(const char *path);
pf_st_file *pf_st_parse(const uint8_t *bytes, size_t len, const char *origin);  // from memory
void pf_st_close(pf_st_file *f);
int pf_st_count(const pf_st_file *f);
const pf_st_info *pf_st_at(const pf_st_file *f, int i);  // in header order
int pf_st_find(const pf_st_file *f, const char *name);   // index or -1
int64_t pf_st_numel(const pf_st_info *t);
// The values of tensor i, converted to fp32, into out[numel].
void pf_st_read_f32(const pf_st_file *f, int i, float *out);
const char *pf_st_meta(const pf_st_file *f, const char *key);  // NULL when absent
uint64_t pf_st_header_len(const pf_st_file *f);                  // N

// fp32 -> bf16, round to nearest even (NaN stays NaN), and back.
uint16_t pf_st_f32_to_bf16(float x);
float pf_st_bf16_to_f32(uint16_t h);

#endif
