// cpu_norm.c: layer normalisation over the last dim (llm.c's layernorm, fp32 with double
// row statistics).
#include <math.h>

#include "cpu_ops.h"

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
    for (int64_t n = 0; n < N; n++) {
        const float *xr = X + n * C;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += xr[c];
        double mu = s / C;
        for (int64_t c = 0; c < C; c++) ss += (xr[c] - mu) * (xr[c] - mu);
        float m = (float)mu, rs = (float)(1.0 / sqrt(ss / C + eps));
        for (int64_t c = 0; c < C; c++)
            Y[n * C + c] = (xr[c] - m) * rs * G[c] + (B ? B[c] : 0.0f);
        M[n] = m;
        R[n] = rs;
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
    const float *X = cpu_f(x), *DY = cpu_f(dy), *G = cpu_f(g), *M = cpu_f(mean),
                *R = cpu_f(rstd);
    if (pf_present(dx)) {
        float *DX = cpu_f(dx);
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = X + n * C, *dyr = DY + n * C;
            float m = M[n], rs = R[n];
            double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
            for (int64_t c = 0; c < C; c++) {
                float dxhat = dyr[c] * G[c];
                s1 += dxhat;
                s2 += dxhat * (xr[c] - m) * rs;
            }
            float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
            for (int64_t c = 0; c < C; c++) {
                float xhat = (xr[c] - m) * rs;
                DX[n * C + c] += rs * (dyr[c] * G[c] - m1 - xhat * m2);
            }
        }
    }
    if (pf_present(dg)) {
        float *DG = cpu_f(dg);
        // Blocks of CPU_COLBLOCK columns, each summed over n in order by one thread.
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < C; c0 += CPU_COLBLOCK) {
            int64_t nc = C - c0 < CPU_COLBLOCK ? C - c0 : CPU_COLBLOCK;
            double s[CPU_COLBLOCK] = {0};
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < nc; c++) {
                    int64_t i = n * C + c0 + c;
                    s[c] += DY[i] * ((X[i] - M[n]) * R[n]);
                }
            for (int64_t c = 0; c < nc; c++) DG[c0 + c] += (float)s[c];
        }
    }
    if (pf_present(db)) cpu_colsum_add(cpu_f(db), DY, N, C);
}
