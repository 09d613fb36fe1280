// cpu_reduce.c: reductions whose result must not depend on the thread count.
#include <stdlib.h>

#include "cpu_colsum.h"
#include "cpu_ops.h"

// sumsq works on fixed chunks of this many elements, each summed in double by one thread;
// the chunk partials are then added in index order.
#define SUMSQ_CHUNK 65536

void cpu_colsum_add(float *out, const float *x, int64_t N, int64_t C) {
    if (N <= 0 || C <= 0) return;
    int64_t rows = cpu_row_chunk(N), nchunk = (N + rows - 1) / rows;
    double *part = pf_malloc(sizeof(double) * (size_t)(nchunk * C));
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nchunk; k++)
            cpu_colsum_rows(part + k * C, x, k * rows, (k + 1) * rows < N ? (k + 1) * rows : N,
                            C);
        cpu_colsum_finish(out, part, nchunk, C);  // after the loop's barrier
    }
    free(part);
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
