// fuzz_safetensors: the safetensors reader (src/safetensors.h) that `pftrain export`'s files
// and python/pixelfly_torch.py's loads go through, on the input as a whole file in memory
// (pf_st_parse: the same checks as pf_st_open). Properties of an accepted file: every entry
// has 0..PF_ST_MAX_DIMS non-negative dims, its byte range is numel x the dtype size and lies
// inside the data, the entries lie back to back in header order, names are unique and
// pf_st_find finds each; and the tensors written again with pixelfly's writer (same names,
// dtypes, shapes, values) load back to the very same entries and bits.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pf_st_file *f = pf_st_parse(data, size, "fuzz input");
    (void)pf_errmsg();
    if (!f) return 0;
    int n = pf_st_count(f);
    int64_t next = 0;  // where the next entry's data must begin
    float **values = calloc((size_t)n + 1, sizeof *values);
    pf_st_writer *w = pf_st_writer_new();
    for (int i = 0; i < n; i++) {
        const pf_st_info *t = pf_st_at(f, i);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= PF_ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) FUZZ_CHECK(t->shape[d] >= 0);
        int64_t numel = pf_st_numel(t);
        FUZZ_CHECK(t->begin == next && t->end - t->begin == numel * (int64_t)pf_st_dtype_size(t->dtype));
        FUZZ_CHECK(t->end <= (int64_t)size);
        next = t->end;
        FUZZ_CHECK(pf_st_find(f, t->name) == i);
        values[i] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        pf_st_read_f32(f, i, values[i]);
        pf_st_add(w, t->name, t->dtype, t->ndim, t->shape, values[i], false);
    }
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
