// cpu_reduce.c: reductions whose result must not depend on the thread count.
#include <stdlib.h>

#include "cpu_ops.h"

// sumsq works on fixed chunks of this many elements, each summed in double by one thread;
// the chunk partials are then added in index order.
#define SUMSQ_CHUNK 65536

void cpu_colsum_add(float *out, const float *x, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += CPU_COLBLOCK) {
        int64_t nc = C - c0 < CPU_COLBLOCK ? C - c0 : CPU_COLBLOCK;
        double s[CPU_COLBLOCK] = {0};
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < nc; c++) s[c] += x[n * C + c0 + c];
        for (int64_t c = 0; c < nc; c++) out[c0 + c] += (float)s[c];
    }
}

double cpu_sumsq(pf_tensor x) {
    CPU_F32(x);
    int64_t n = pf_numel(x), nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    const float *X = cpu_f(x);
    double *part = pf_malloc(sizeof(double) * (size_t)(nchunk ? nchunk : 1));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nchunk; i++) {
        int64_t end = (i + 1) * SUMSQ_CHUNK < n ? (i + 1) * SUMSQ_CHUNK : n;
        double s = 0;
        for (int64_t j = i * SUMSQ_CHUNK; j < end; j++) s += (double)X[j] * X[j];
        part[i] = s;
    }
    double total = 0;
    for (int64_t i = 0; i < nchunk; i++) total += part[i];
    free(part);
    return total;
}

void cpu_scale(pf_tensor x, float s) {
    CPU_F32(x);
    int64_t n = pf_numel(x);
    float *X = cpu_f(x);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) X[i] *= s;
}
