// cpu_norm.c: layer normalisation over the last dim (llm.c's layernorm, fp32 with double
// row statistics). The row loops are vector loops in ISA clones (cpu_vexp.h: CPU_VEC_CLONES);
// the backward reads x and dy once: one pass per row chunk gives dx and that chunk's dg and
// db partials, which are then added in chunk order (cpu_colsum.h), so every thread works
// whatever C is and the result does not depend on the thread count.
#include <math.h>
#include <stdlib.h>

#include "cpu_colsum.h"
#include "cpu_ops.h"
#include "cpu_vexp.h"

#define LN_ROWS 16  // rows per forward task

// Rows n0..n1-1 of y = (x - mean) * rstd * g + b; mean, rstd saved.
CPU_VEC_CLONES static void ln_fwd_rows(float *Y, float *M, float *R, const float *X,
                                       const float *G, const float *B, int64_t n0, int64_t n1,
                                       int64_t C, float eps) {
    for (int64_t n = n0; n < n1; n++) {
        const float *xr = X + n * C;
        float *yr = Y + n * C;
        double s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++) s += xr[c];
        double mu = s / C;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < C; c++) ss += (xr[c] - mu) * (xr[c] - mu);
        float m = (float)mu, rs = (float)(1.0 / sqrt(ss / C + eps));
        if (B) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * G[c] + B[c];
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * G[c] + 0.0f;
        }
        M[n] = m;
        R[n] = rs;
    }
}

// Over the last dim C of x[N,C]: y = (x - mean) * rstd * g + b; mean[N], rstd[N] saved.
void cpu_layernorm_fwd(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x, pf_tensor g,
                       pf_tensor b, float eps) {
    CPU_F32(y);
    CPU_F32(mean);
    CPU_F32(rstd);
    CPU_F32(x);
    CPU_F32(g);
    CPU_F32_OPT(b);
    pf_layernorm_shape d = pf_shape_layernorm(y, mean, rstd, x, g, b, pf_none(), pf_none());
    int64_t N = d.N, C = d.C;
    const float *X = cpu_f(x), *G = cpu_f(g), *B = cpu_f(b);
    float *Y = cpu_f(y), *M = cpu_f(mean), *R = cpu_f(rstd);
#pragma omp parallel for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += LN_ROWS)
        ln_fwd_rows(Y, M, R, X, G, B, n0, n0 + LN_ROWS < N ? n0 + LN_ROWS : N, C, eps);
}

// Rows n0..n1-1 of the backward: dx (when DX) += rstd * (dxhat - mean(dxhat) - xhat *
// mean(dxhat * xhat)) with dxhat = dy * g; pg[c] = sum_n dy * xhat and pb[c] = sum_n dy over
// these rows (when pg, pb), in double, rows in order.
CPU_VEC_CLONES static void ln_bwd_rows(float *DX, double *pg, double *pb, const float *X,
                                       const float *DY, const float *G, const float *M,
                                       const float *R, int64_t n0, int64_t n1, int64_t C) {
    if (pg) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) pg[c] = 0;
    }
    if (pb) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) pb[c] = 0;
    }
    for (int64_t n = n0; n < n1; n++) {
        const float *xr = X + n * C, *dyr = DY + n * C;
        float m = M[n], rs = R[n];
        if (DX) {
            float *dxr = DX + n * C;
            double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t c = 0; c < C; c++) {
                float dxhat = dyr[c] * G[c];
                s1 += dxhat;
                s2 += dxhat * (xr[c] - m) * rs;
            }
            float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                float xhat = (xr[c] - m) * rs;
                dxr[c] += rs * (dyr[c] * G[c] - m1 - xhat * m2);
            }
        }
        if (pg) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) pg[c] += dyr[c] * ((xr[c] - m) * rs);
        }
        if (pb) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) pb[c] += dyr[c];
        }
    }
}

// dx += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g;
// dg += sum_n dy * xhat;  db += sum_n dy
void cpu_layernorm_bwd(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy, pf_tensor x,
                       pf_tensor g, pf_tensor mean, pf_tensor rstd) {
    CPU_F32_OPT(dx);
    CPU_F32_OPT(dg);
    CPU_F32_OPT(db);
    CPU_F32(dy);
    CPU_F32(x);
    CPU_F32(g);
    CPU_F32(mean);
    CPU_F32(rstd);
    pf_layernorm_shape d = pf_shape_layernorm(dy, mean, rstd, x, g, db, dx, dg);
    int64_t N = d.N, C = d.C;
    if (!N || !C) return;
    const float *X = cpu_f(x), *DY = cpu_f(dy), *G = cpu_f(g), *M = cpu_f(mean),
                *R = cpu_f(rstd);
    float *DX = cpu_f(dx), *DG = cpu_f(dg), *DB = cpu_f(db);
    int64_t rows = cpu_row_chunk(N), nchunk = (N + rows - 1) / rows;
    // Partials: chunk k's dg at pg + k C, its db at pb + k C.
    double *pg = DG ? pf_malloc(sizeof(double) * (size_t)(nchunk * C)) : NULL;
    double *pb = DB ? pf_malloc(sizeof(double) * (size_t)(nchunk * C)) : NULL;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nchunk; k++)
            ln_bwd_rows(DX, pg ? pg + k * C : NULL, pb ? pb + k * C : NULL, X, DY, G, M, R,
                        k * rows, (k + 1) * rows < N ? (k + 1) * rows : N, C);
        // after the loop's barrier, in the same region
        if (pg) cpu_colsum_finish(DG, pg, nchunk, C);
        if (pb) cpu_colsum_finish(DB, pb, nchunk, C);
    }
    free(pg);
    free(pb);
}
