// cuda_optim.cu: AdamW on one flat parameter tensor, elementwise in fp32 (the formula of
// cpu_optim.c, operation for operation).
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
