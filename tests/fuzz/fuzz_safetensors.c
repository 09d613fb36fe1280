// fuzz_safetensors: the safetensors reader (src/safetensors.h) that `pftrain export`'s files
// and python/pixelfly_torch.py's loads go through, on the input as a whole file in memory
// (pf_st_parse: the same checks as pf_st_open). Properties of an accepted file: every entry
// has 0..PF_ST_MAX_DIMS non-negative dims, its byte range is numel x the dtype size, the
// ranges sorted by offset tile the data section exactly (the header may list them in any
// order), names are unique and pf_st_find finds each; and the tensors written again with
// pixelfly's writer (same names, dtypes, shapes, values) load back to the very same entries
// and bits.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz.h"
#include "safetensors.h"

// The same value, NaN payloads aside (bf16 -> fp32 -> bf16 keeps every other bit).
static bool same_value(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return !memcmp(&a, &b, sizeof a);
}

static int by_begin_then_end(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

// The entries' [begin, end) ranges, sorted, cover [0, data_len) with no gap and no overlap.
static void check_tiling(const pf_st_file *f, size_t data_len) {
    int n = pf_st_count(f);
    int64_t *r = malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        r[2 * i] = pf_st_at(f, i)->begin;
        r[2 * i + 1] = pf_st_at(f, i)->end;
    }
    qsort(r, (size_t)n, 2 * sizeof(int64_t), by_begin_then_end);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(r[2 * i] == at);
        at = r[2 * i + 1];
    }
    FUZZ_CHECK(at == (int64_t)data_len);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pf_st_file *f = pf_st_parse(data, size, "fuzz input");
    (void)pf_errmsg();
    if (!f) return 0;
    int n = pf_st_count(f);
    float **values = calloc((size_t)n + 1, sizeof *values);
    pf_st_writer *w = pf_st_writer_new();
    for (int i = 0; i < n; i++) {
        const pf_st_info *t = pf_st_at(f, i);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= PF_ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) FUZZ_CHECK(t->shape[d] >= 0);
        int64_t numel = pf_st_numel(t);
        FUZZ_CHECK(t->end - t->begin == numel * (int64_t)pf_st_dtype_size(t->dtype));
        FUZZ_CHECK(t->begin >= 0 && t->end <= (int64_t)size);
        FUZZ_CHECK(pf_st_find(f, t->name) == i);
        values[i] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        pf_st_read_f32(f, i, values[i]);
        pf_st_add(w, t->name, t->dtype, t->ndim, t->shape, values[i], false);
    }
    check_tiling(f, size - 8 - (size_t)pf_st_header_len(f));
    const char *path = fuzz_path("again.safetensors");
    FUZZ_CHECK(pf_st_write(w, path) == 0);
    pf_st_writer_free(w);
    pf_st_file *g = pf_st_open(path);
    if (!g) fprintf(stderr, "fuzz: written file does not load: %s\n", pf_errmsg());
    FUZZ_CHECK(g != NULL);
    FUZZ_CHECK(pf_st_count(g) == n);
    for (int i = 0; i < n; i++) {
        const pf_st_info *a = pf_st_at(f, i), *b = pf_st_at(g, i);
        FUZZ_CHECK(!strcmp(a->name, b->name) && a->dtype == b->dtype && a->ndim == b->ndim);
        FUZZ_CHECK(!memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim));
        int64_t numel = pf_st_numel(b);
        float *v = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        pf_st_read_f32(g, i, v);
        for (int64_t j = 0; j < numel; j++) FUZZ_CHECK(same_value(values[i][j], v[j]));
        free(v);
        free(values[i]);
    }
    free(values);
    pf_st_close(g);
    pf_st_close(f);
    return 0;
}
