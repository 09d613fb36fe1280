// cuda_norm.cu: layer normalisation over the last dim, one block per row, row statistics
// in double (as cpu_norm.c), reduced in a fixed tree. x, y, dy, dx, g, b are act tensors
// (T: float or bf16, read as fp32, results rounded once on store); mean, rstd, dg, db fp32.
#include "cuda_ops.h"

// Over row n of x[N,C]: mean, rstd = 1/sqrt(var + eps); y = (x - mean) * rstd * g + b
// (b may be NULL); mean[n], rstd[n] saved (fp32). Grid: N blocks.
template <typename T>
__global__ static void layernorm_fwd_kernel(T *y, float *mean, float *rstd, const T *x,
                                            const T *g, const T *b, int64_t C, float eps) {
    const T *xr = x + blockIdx.x * C;
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += cuda_ld(xr[c]);
    double mu = block_reduce<cuda_sum_op>(s, 0.0) / C;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        double d = cuda_ld(xr[c]) - mu;
        ss += d * d;
    }
    ss = block_reduce<cuda_sum_op>(ss, 0.0);
    float m = (float)mu, rs = (float)(1.0 / sqrt(ss / C + eps));
    T *yr = y + blockIdx.x * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        yr[c] = cuda_st<T>((cuda_ld(xr[c]) - m) * rs * cuda_ld(g[c]) +
                           (b ? cuda_ld(b[c]) : 0.0f));
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}

// dx[n] += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g;
// dx, dy, x, g of T, mean, rstd fp32. Grid: N blocks.
template <typename T>
__global__ static void layernorm_bwd_kernel(T *dx, const T *dy, const T *x, const T *g,
                                            const float *mean, const float *rstd, int64_t C) {
    int64_t off = blockIdx.x * C;
    const T *xr = x + off, *dyr = dy + off;
    float m = mean[blockIdx.x], rs = rstd[blockIdx.x];
    double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float dxhat = cuda_ld(dyr[c]) * cuda_ld(g[c]);
        s1 += dxhat;
        s2 += dxhat * (cuda_ld(xr[c]) - m) * rs;
    }
    float m1 = (float)(block_reduce<cuda_sum_op>(s1, 0.0) / C);
    float m2 = (float)(block_reduce<cuda_sum_op>(s2, 0.0) / C);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (cuda_ld(xr[c]) - m) * rs;
        float d = rs * (cuda_ld(dyr[c]) * cuda_ld(g[c]) - m1 - xhat * m2);
        dx[off + c] = cuda_st<T>(cuda_ld(dx[off + c]) + d);
    }
}

// Threads per row block: enough for C, a multiple of 32, at most 1024.
static int row_threads(int64_t C) {
    int64_t t = (C + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

// y[N,C] = (x - mean) * rstd * g + b: x, y, g, b act dtype; mean[N], rstd[N] fp32.
void cuda_layernorm_fwd(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x, pf_tensor g,
                        pf_tensor b, float eps) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_F32(mean);
    CUDA_F32(rstd);
    CUDA_ACT(x, dt);
    CUDA_ACT(g, dt);
    CUDA_ACT_OPT(b, dt);
    pf_layernorm_shape d = pf_shape_layernorm(y, mean, rstd, x, g, b, pf_none(), pf_none());
    int64_t N = d.N, C = d.C;
    if (!N) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        layernorm_fwd_kernel<T><<<(unsigned)N, row_threads(C), 0, pf_cuda_ctx()->stream>>>(
            (T *)y.data, cuda_f(mean), cuda_f(rstd), (const T *)x.data, (const T *)g.data,
            (const T *)b.data, C, eps);
        CUDA_CHECK_LAUNCH();
    });
}

// dx += (see kernel);  dg += sum_n dy * xhat;  db += sum_n dy
// dx, dy, x, g act dtype; dg, db, mean, rstd fp32.
void cuda_layernorm_bwd(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy, pf_tensor x,
                        pf_tensor g, pf_tensor mean, pf_tensor rstd) {
    pf_dtype dt = x.dtype;
    CUDA_ACT_OPT(dx, dt);
    CUDA_F32_OPT(dg);
    CUDA_F32_OPT(db);
    CUDA_ACT(dy, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT(g, dt);
    CUDA_F32(mean);
    CUDA_F32(rstd);
    pf_layernorm_shape d = pf_shape_layernorm(dy, mean, rstd, x, g, db, dx, dg);
    int64_t N = d.N, C = d.C;
    if (!N) return;
    if (pf_present(dx)) {
        cuda_dispatch(dt, [&](auto tag) {
            using T = decltype(tag);
            layernorm_bwd_kernel<T><<<(unsigned)N, row_threads(C), 0, pf_cuda_ctx()->stream>>>(
                (T *)dx.data, (const T *)dy.data, (const T *)x.data, (const T *)g.data,
                cuda_f(mean), cuda_f(rstd), C);
            CUDA_CHECK_LAUNCH();
        });
    }
    if (pf_present(dg))
        cuda_colsum_xhat_add(cuda_f(dg), dy.data, x.data, dt, cuda_f(mean), cuda_f(rstd), N, C);
    if (pf_present(db)) cuda_colsum_add(cuda_f(db), dy.data, dt, N, C, C);
}
