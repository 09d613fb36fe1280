// cpu_elementwise.c: GELU, additions, dropout and the dtype conversion (fp32 only here), one
// element per iteration: vector loops (cpu_vexp.h) split over the threads in fixed spans.
#include <math.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_vexp.h"

#define ELEM_SPAN 4096  // elements per thread task: whole vectors, few tasks

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_C 0.044715f

// s = 0.5 (1 + tanh(u)) with u = sqrt(2/pi) (v + 0.044715 v^3), computed as the equal
// sigmoid(2u) = 1 / (1 + exp(-2u)): one exp instead of tanhf, which took a third of a
// Mixer training step. The exponent is clamped to [-87.3, 88.3] (cpu_vexp_range.h: half the
// vector instructions of cpu_expf's own clamps; a NaN v still gives NaN through the factor
// v); exp(88.3) ~ 2.2e38 gives s ~ 5e-39, the limit 0.
static inline float gelu_gate(float v) {
    float z = cpu_clamp_exp_arg(-2.0f * GELU_K * (v + GELU_C * v * v * v));
    return 1.0f / (1.0f + cpu_expf_in_range(z));
}

CPU_VEC_CLONES static void gelu_fwd_span(float *y, const float *x, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * gelu_gate(x[i]);
}

// d/dv [v s(v)] = s + v s' with s' = 2 s (1 - s) du/dv (since 1 - tanh^2 = 4 s (1 - s))
CPU_VEC_CLONES static void gelu_bwd_span(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], s = gelu_gate(v);
        float grad = s + 2.0f * v * s * (1.0f - s) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] += grad * dy[i];
    }
}

// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void cpu_gelu_fwd(pf_tensor y, pf_tensor x) {
    CPU_F32(y);
    CPU_F32(x);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(y) == n);
    const float *X = cpu_f(x);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += ELEM_SPAN)
        gelu_fwd_span(Y + i, X + i, n - i < ELEM_SPAN ? n - i : ELEM_SPAN);
}

// dx += gelu'(x) dy
void cpu_gelu_bwd(pf_tensor dx, pf_tensor dy, pf_tensor x) {
    CPU_F32(dx);
    CPU_F32(dy);
    CPU_F32(x);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(dx) == n && pf_numel(dy) == n);
    const float *X = cpu_f(x), *DY = cpu_f(dy);
    float *DX = cpu_f(dx);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += ELEM_SPAN)
        gelu_bwd_span(DX + i, DY + i, X + i, n - i < ELEM_SPAN ? n - i : ELEM_SPAN);
}

// y = a + b (y may alias a or b)
void cpu_add(pf_tensor y, pf_tensor a, pf_tensor b) {
    CPU_F32(y);
    CPU_F32(a);
    CPU_F32(b);
    int64_t n = pf_numel(y);
    PF_ASSERT(pf_numel(a) == n && pf_numel(b) == n);
    const float *A = cpu_f(a), *B = cpu_f(b);
    float *Y = cpu_f(y);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) Y[i] = A[i] + B[i];
}

// dst += src
void cpu_accumulate(pf_tensor dst, pf_tensor src) {
    CPU_F32(dst);
    CPU_F32(src);
    int64_t n = pf_numel(dst);
    PF_ASSERT(pf_numel(src) == n);
    const float *S = cpu_f(src);
    float *D = cpu_f(dst);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) D[i] += S[i];
}

// y = kept ? x / (1 - p) : 0 with the mask of backend.h's dropout. Spans as GELU's: the mask
// of element i depends on i alone.
CPU_VEC_CLONES static void dropout_span(float *y, const float *x, int64_t n, float scale,
                                        uint32_t thr, uint64_t key, uint64_t first) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] = pf_dropout_bits(key, first + (uint64_t)i) >= thr ? x[i] * scale : 0.0f;
}

// y = kept ? x / (1 - p) : 0 (y may alias x); also the backward, dx = dropout(dy)
void cpu_dropout(pf_tensor y, pf_tensor x, float p, uint64_t key, uint64_t first) {
    CPU_F32(y);
    CPU_F32(x);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(y) == n && p >= 0.0f && p < 1.0f);
    const float *X = cpu_f(x);
    float *Y = cpu_f(y);
    float scale = 1.0f / (1.0f - p);
    uint32_t thr = pf_dropout_threshold(p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += ELEM_SPAN)
        dropout_span(Y + i, X + i, n - i < ELEM_SPAN ? n - i : ELEM_SPAN, scale, thr, key,
                     first + (uint64_t)i);
}

// dst = src (same numel). The CPU backend computes in fp32, so this is a copy: a bf16 tensor
// here is a caller bug and fails the assertion. memmove: dst may alias src.
void cpu_convert(pf_tensor dst, pf_tensor src) {
    CPU_F32(dst);
    CPU_F32(src);
    int64_t n = pf_numel(src);
    PF_ASSERT(pf_numel(dst) == n);
    if (n) memmove(cpu_f(dst), cpu_f(src), sizeof(float) * (size_t)n);
}
