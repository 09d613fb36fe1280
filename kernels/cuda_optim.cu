// cuda_optim.cu: AdamW on one flat parameter tensor, elementwise in fp32 (the formula of
// cpu_optim.c, operation for operation); master weights, gradients and moments are fp32.
// Also the fp32 <-> bf16 conversion that refreshes the bf16 compute copy of the weights.
#include "cuda_ops.h"

//   g' = gs * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * (m / c1 / (sqrt(v / c2) + eps) + wd * p),  c1 = 1-b1^t, c2 = 1-b2^t
__global__ static void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                                    float lr, float b1, float b2, float eps, float wd,
                                    float gs, float c1, float c2) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float gi = gs * g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi / c1 / (sqrtf(vi / c2) + eps) + wd * p[i]);
    }
}

void cuda_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v, const pf_adamw_args *a) {
    CUDA_F32(p);
    CUDA_F32(g);
    CUDA_F32(m);
    CUDA_F32(v);
    int64_t n = pf_shape_adamw(p, g, m, v, a);
    if (!n) return;
    // Bias corrections on the host in double, rounded to float, as the CPU backend does.
    float c1 = (float)(1.0 - pow(a->beta1, a->step)), c2 = (float)(1.0 - pow(a->beta2, a->step));
    adamw_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(p), cuda_f(g), cuda_f(m), cuda_f(v), n, a->lr, a->beta1, a->beta2, a->eps,
        a->weight_decay, a->grad_scale, c1, c2);
    CUDA_CHECK_LAUNCH();
}

// dst[i] = src[i] converted from S to D (fp32 <-> bf16, or a copy for equal types): read as
// fp32, stored with round to nearest even (NaN stays NaN). Grid-stride over n.
template <typename D, typename S>
__global__ static void convert_kernel(D *dst, const S *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = cuda_st<D>(cuda_ld(src[i]));
}

// dst = src elementwise, each fp32 or bf16 (either direction), same numel: refreshes the bf16
// compute copy of the weights after each optimizer step and converts uploaded inputs.
void cuda_convert(pf_tensor dst, pf_tensor src) {
    pf_dtype dd = dst.dtype, sd = src.dtype;
    CUDA_ACT(dst, dd);
    CUDA_ACT(src, sd);
    int64_t n = pf_numel(src);
    PF_ASSERT(pf_numel(dst) == n);
    if (!n) return;
    cuda_dispatch(dd, [&](auto dtag) {
        using D = decltype(dtag);
        cuda_dispatch(sd, [&](auto stag) {
            using S = decltype(stag);
            convert_kernel<D, S><<<cuda_blocks(n), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
                (D *)dst.data, (const S *)src.data, n);
            CUDA_CHECK_LAUNCH();
        });
    });
}
