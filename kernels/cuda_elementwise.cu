// cuda_elementwise.cu: GELU, additions, dropout, bias broadcast and strided row copies; one element
// per thread in grid-stride loops. Every kernel is a template on the act dtype T (float or
// bf16): elements are read as fp32 (cuda_ld), computed in fp32 and rounded once on store
// (cuda_st).
#include "cuda_ops.h"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

#define GRID_STRIDE(i, n)                                                                  \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)gridDim.x * blockDim.x)

// y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), x, y: [n] of T
template <typename T>
__global__ static void gelu_fwd_kernel(T *y, const T *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = cuda_ld(x[i]);
        y[i] = cuda_st<T>(0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v))));
    }
}

// dx[i] += gelu'(x[i]) dy[i], dx, dy, x: [n] of T
template <typename T>
__global__ static void gelu_bwd_kernel(T *dx, const T *dy, const T *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = cuda_ld(x[i]);
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float sech2 = 1.0f - t * t;
        float grad = 0.5f * (1.0f + t) +
                     0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = cuda_st<T>(cuda_ld(dx[i]) + grad * cuda_ld(dy[i]));
    }
}

// y[i] = a[i] + b[i] of T; y may alias a or b (each element is read before it is written)
template <typename T>
__global__ static void add_kernel(T *y, const T *a, const T *b, int64_t n) {
    GRID_STRIDE(i, n) y[i] = cuda_st<T>(cuda_ld(a[i]) + cuda_ld(b[i]));
}

// y[i] = kept(i) ? x[i] * scale : 0 with kept(i) = pf_dropout_bits(key, first + i) >= thr,
// x, y: [n] of T (y may alias x: each element is read before it is written)
template <typename T>
__global__ static void dropout_kernel(T *y, const T *x, int64_t n, float scale, uint32_t thr,
                                      uint64_t key, uint64_t first) {
    GRID_STRIDE(i, n) {
        bool kept = pf_dropout_bits(key, first + (uint64_t)i) >= thr;
        y[i] = cuda_st<T>(kept ? cuda_ld(x[i]) * scale : 0.0f);
    }
}

// y[n, c] += b[c], y: [N, C] as N*C elements of T, b: [C] of T
template <typename T>
__global__ static void add_bias_kernel(T *y, const T *b, int64_t NC, int64_t C) {
    GRID_STRIDE(i, NC) y[i] = cuda_st<T>(cuda_ld(y[i]) + cuda_ld(b[i % C]));
}

// y[r*ldy + j] (+)= x[r*ldx + j] for r < R, j < L, x and y of T (a plain copy is exact)
template <typename T>
__global__ static void copy_rows_kernel(T *y, int64_t ldy, const T *x, int64_t ldx, int64_t R,
                                        int64_t L, bool add) {
    GRID_STRIDE(i, R * L) {
        int64_t r = i / L, j = i % L;
        T v = x[r * ldx + j];
        y[r * ldy + j] = add ? cuda_st<T>(cuda_ld(y[r * ldy + j]) + cuda_ld(v)) : v;
    }
}

static cudaStream_t stream(void) { return pf_cuda_ctx()->stream; }

// y = gelu(x); x, y act dtype
void cuda_gelu_fwd(pf_tensor y, pf_tensor x) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(y) == n);
    if (!n) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        gelu_fwd_kernel<T><<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>((T *)y.data,
                                                                          (const T *)x.data, n);
        CUDA_CHECK_LAUNCH();
    });
}

// dx += gelu'(x) dy; dx, dy, x act dtype
void cuda_gelu_bwd(pf_tensor dx, pf_tensor dy, pf_tensor x) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(dx, dt);
    CUDA_ACT(dy, dt);
    CUDA_ACT(x, dt);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(dx) == n && pf_numel(dy) == n);
    if (!n) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        gelu_bwd_kernel<T><<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(
            (T *)dx.data, (const T *)dy.data, (const T *)x.data, n);
        CUDA_CHECK_LAUNCH();
    });
}

// y = a + b; y, a, b act dtype (y may alias a or b)
void cuda_add(pf_tensor y, pf_tensor a, pf_tensor b) {
    pf_dtype dt = y.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(a, dt);
    CUDA_ACT(b, dt);
    int64_t n = pf_numel(y);
    PF_ASSERT(pf_numel(a) == n && pf_numel(b) == n);
    if (!n) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        add_kernel<T><<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(
            (T *)y.data, (const T *)a.data, (const T *)b.data, n);
        CUDA_CHECK_LAUNCH();
    });
}

// y = kept ? x / (1 - p) : 0; x, y act dtype (y may alias x); also the backward, dx = dropout(dy)
void cuda_dropout(pf_tensor y, pf_tensor x, float p, uint64_t key, uint64_t first) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(y) == n && p >= 0.0f && p < 1.0f);
    if (!n) return;
    float scale = 1.0f / (1.0f - p);
    uint32_t thr = pf_dropout_threshold(p);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        dropout_kernel<T><<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(
            (T *)y.data, (const T *)x.data, n, scale, thr, key, first);
        CUDA_CHECK_LAUNCH();
    });
}

// dst += src; dst, src act dtype
void cuda_accumulate(pf_tensor dst, pf_tensor src) { cuda_add(dst, dst, src); }

void cuda_add_bias(void *y, const void *b, pf_dtype dt, int64_t N, int64_t C) {
    if (!N || !C) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        add_bias_kernel<T><<<cuda_blocks(N * C), CUDA_THREADS, 0, stream()>>>(
            (T *)y, (const T *)b, N * C, C);
        CUDA_CHECK_LAUNCH();
    });
}

void cuda_copy_rows(void *y, int64_t ldy, const void *x, int64_t ldx, pf_dtype dt, int64_t R,
                    int64_t L, bool add) {
    if (!R || !L) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        copy_rows_kernel<T><<<cuda_blocks(R * L), CUDA_THREADS, 0, stream()>>>(
            (T *)y, ldy, (const T *)x, ldx, R, L, add);
        CUDA_CHECK_LAUNCH();
    });
}
