// cpu_colsum.h: the parts of cpu_colsum_add (cpu_reduce.c), for ops that fuse them into their
// own parallel region (layernorm's dg / db): column sums over rows that use every thread
// whatever the column count, with results that do not depend on the thread count.
//
// The rows are cut into fixed chunks (the chunk length depends on N only); each chunk's
// column sums are taken in double by one thread, rows in order, then the chunk partials are
// added per column in chunk order. (Giving each 64-column block to one thread instead left a
// bias of 16 or 64 outputs, Mixer token mixing, to a single thread over 16,384 rows.)
#ifndef PF_CPU_COLSUM_H
#define PF_CPU_COLSUM_H

#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "cpu_vexp.h"

#define CPU_ROWCHUNK_MIN 32    // rows per chunk at least (a chunk's partials are C doubles)
#define CPU_ROWCHUNK_MAX 128   // chunks at most, so the partials stay small

// Rows per chunk for N rows: a function of N alone.
static inline int64_t cpu_row_chunk(int64_t N) {
    int64_t r = (N + CPU_ROWCHUNK_MAX - 1) / CPU_ROWCHUNK_MAX;
    return r < CPU_ROWCHUNK_MIN ? CPU_ROWCHUNK_MIN : r;
}

// part[c] = sum over rows n0..n1-1 of x[n, c] (in row order, in double). Up to 64 columns,
// blocks of 16 keep their sums in registers over the rows: a vector loop per row of 16
// columns (Mixer token-mixing biases) cost more in loop overhead than it summed.
__attribute__((unused)) CPU_VEC_CLONES static void cpu_colsum_rows(double *part, const float *x,
                                                                   int64_t n0, int64_t n1,
                                                                   int64_t C) {
    int64_t c0 = 0;
    if (C <= 64)
        for (; c0 + 16 <= C; c0 += 16) {
            double acc[16] = {0};
            for (int64_t n = n0; n < n1; n++) {
                const float *xr = x + n * C + c0;
#pragma omp simd
                for (int j = 0; j < 16; j++) acc[j] += xr[j];
            }
            for (int j = 0; j < 16; j++) part[c0 + j] = acc[j];
        }
    // the other columns (all of them above 64) row by row
    for (int64_t c = c0; c < C; c++) part[c] = 0;
    for (int64_t n = n0; n < n1; n++) {
        const float *xr = x + n * C;
#pragma omp simd
        for (int64_t c = c0; c < C; c++) part[c] += xr[c];
    }
}

// out[c] += sum over chunks k (in order) of part[k * C + c]: an orphaned `omp for` over
// blocks of 64 columns, to be called by every thread of the caller's parallel region after
// the partials are complete (one region for both passes: one wake-up of the threads).
__attribute__((unused)) static void cpu_colsum_finish(float *out, const double *part,
                                                      int64_t nchunk, int64_t C) {
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += 64) {
        int64_t nc = C - c0 < 64 ? C - c0 : 64;
        double s[64] = {0};
        for (int64_t k = 0; k < nchunk; k++)
            for (int64_t c = 0; c < nc; c++) s[c] += part[k * C + c0 + c];
        for (int64_t c = 0; c < nc; c++) out[c0 + c] += (float)s[c];
    }
}

#endif
