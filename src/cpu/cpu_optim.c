// cpu_optim.c: AdamW on one flat parameter tensor (decoupled weight decay, bias-corrected
// moments), elementwise in fp32 like llm.c's adamw_kernel.
#include <math.h>

#include "cpu_ops.h"

//   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p)
void cpu_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v, const pf_adamw_args *a) {
    CPU_F32(p);
    CPU_F32(g);
    CPU_F32(m);
    CPU_F32(v);
    int64_t n = pf_shape_adamw(p, g, m, v, a);
    float b1 = a->beta1, b2 = a->beta2, lr = a->lr, eps = a->eps, wd = a->weight_decay;
    float gs = a->grad_scale;
    float c1 = (float)(1.0 - pow(b1, a->step)), c2 = (float)(1.0 - pow(b2, a->step));
    float *P = cpu_f(p), *G = cpu_f(g), *M = cpu_f(m), *V = cpu_f(v);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = gs * G[i];
        float mi = b1 * M[i] + (1.0f - b1) * gi;
        float vi = b2 * V[i] + (1.0f - b2) * gi * gi;
        M[i] = mi;
        V[i] = vi;
        P[i] -= lr * (mi / c1 / (sqrtf(vi / c2) + eps) + wd * P[i]);
    }
}
