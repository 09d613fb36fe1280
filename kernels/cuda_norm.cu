// cuda_norm.cu: layer normalisation over the last dim, one block per row, row statistics
// in double (as cpu_norm.c), reduced in a fixed tree.
#include "cuda_ops.h"

// Over row n of x[N,C]: mean, rstd = 1/sqrt(var + eps); y = (x - mean) * rstd * g + b
// (b may be NULL); mean[n], rstd[n] saved. Grid: N blocks.
__global__ static void layernorm_fwd_kernel(float *y, float *mean, float *rstd, const float *x,
                                            const float *g, const float *b, int64_t C,
                                            float eps) {
    const float *xr = x + blockIdx.x * C;
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    double mu = block_reduce<cuda_sum_op>(s, 0.0) / C;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += (xr[c] - mu) * (xr[c] - mu);
    ss = block_reduce<cuda_sum_op>(ss, 0.0);
    float m = (float)mu, rs = (float)(1.0 / sqrt(ss / C + eps));
    float *yr = y + blockIdx.x * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        yr[c] = (xr[c] - m) * rs * g[c] + (b ? b[c] : 0.0f);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}

// dx[n] += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g.
// Grid: N blocks.
__global__ static void layernorm_bwd_kernel(float *dx, const float *dy, const float *x,
                                            const float *g, const float *mean,
                                            const float *rstd, int64_t C) {
    int64_t off = blockIdx.x * C;
    const float *xr = x + off, *dyr = dy + off;
    float m = mean[blockIdx.x], rs = rstd[blockIdx.x];
    double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float dxhat = dyr[c] * g[c];
        s1 += dxhat;
        s2 += dxhat * (xr[c] - m) * rs;
    }
    float m1 = (float)(block_reduce<cuda_sum_op>(s1, 0.0) / C);
    float m2 = (float)(block_reduce<cuda_sum_op>(s2, 0.0) / C);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (xr[c] - m) * rs;
        dx[off + c] += rs * (dyr[c] * g[c] - m1 - xhat * m2);
    }
}

// Threads per row block: enough for C, a multiple of 32, at most 1024.
static int row_threads(int64_t C) {
    int64_t t = (C + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

void cuda_layernorm_fwd(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x, pf_tensor g,
                        pf_tensor b, float eps) {
    CUDA_F32(y);
    CUDA_F32(mean);
    CUDA_F32(rstd);
    CUDA_F32(x);
    CUDA_F32(g);
    CUDA_F32_OPT(b);
    int64_t N = cuda_rows(x), C = cuda_cols(x);
    PF_ASSERT(pf_numel(y) == N * C && cuda_cols(y) == C);
    PF_ASSERT(pf_numel(mean) == N && pf_numel(rstd) == N && pf_numel(g) == C);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == C);
    if (!N) return;
    layernorm_fwd_kernel<<<(unsigned)N, row_threads(C), 0, pf_cuda_ctx()->stream>>>(
        cuda_f(y), cuda_f(mean), cuda_f(rstd), cuda_f(x), cuda_f(g), cuda_f(b), C, eps);
    CUDA_CHECK_LAUNCH();
}

// dx += (see kernel);  dg += sum_n dy * xhat;  db += sum_n dy
void cuda_layernorm_bwd(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy, pf_tensor x,
                        pf_tensor g, pf_tensor mean, pf_tensor rstd) {
    CUDA_F32_OPT(dx);
    CUDA_F32_OPT(dg);
    CUDA_F32_OPT(db);
    CUDA_F32(dy);
    CUDA_F32(x);
    CUDA_F32(g);
    CUDA_F32(mean);
    CUDA_F32(rstd);
    int64_t N = cuda_rows(x), C = cuda_cols(x);
    PF_ASSERT(pf_numel(dy) == N * C && cuda_cols(dy) == C);
    PF_ASSERT(!pf_present(dx) || (pf_numel(dx) == N * C && cuda_cols(dx) == C));
    PF_ASSERT(pf_numel(mean) == N && pf_numel(rstd) == N && pf_numel(g) == C);
    PF_ASSERT(!pf_present(dg) || pf_numel(dg) == C);
    PF_ASSERT(!pf_present(db) || pf_numel(db) == C);
    if (!N) return;
    if (pf_present(dx)) {
        layernorm_bwd_kernel<<<(unsigned)N, row_threads(C), 0, pf_cuda_ctx()->stream>>>(
            cuda_f(dx), cuda_f(dy), cuda_f(x), cuda_f(g), cuda_f(mean), cuda_f(rstd), C);
        CUDA_CHECK_LAUNCH();
    }
    if (pf_present(dg))
        cuda_colsum_xhat_add(cuda_f(dg), cuda_f(dy), cuda_f(x), cuda_f(mean), cuda_f(rstd), N,
                             C);
    if (pf_present(db)) cuda_colsum_add(cuda_f(db), cuda_f(dy), N, C, C);
}
