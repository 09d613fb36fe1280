// cuda_elementwise.cu: GELU, additions, bias broadcast and strided row copies; one element
// per thread in grid-stride loops.
#include "cuda_ops.h"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

#define GRID_STRIDE(i, n)                                                                  \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)gridDim.x * blockDim.x)

// y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), x, y: [n]
__global__ static void gelu_fwd_kernel(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

// dx[i] += gelu'(x[i]) dy[i]
__global__ static void gelu_bwd_kernel(float *dx, const float *dy, const float *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float sech2 = 1.0f - t * t;
        float grad = 0.5f * (1.0f + t) +
                     0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += grad * dy[i];
    }
}

// y[i] = a[i] + b[i]; y may alias a or b (each element is read before it is written)
__global__ static void add_kernel(float *y, const float *a, const float *b, int64_t n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

// y[n, c] += b[c], y: [N, C] as N*C elements
__global__ static void add_bias_kernel(float *y, const float *b, int64_t NC, int64_t C) {
    GRID_STRIDE(i, NC) y[i] += b[i % C];
}

// y[r*ldy + j] (+)= x[r*ldx + j] for r < R, j < L
__global__ static void copy_rows_kernel(float *y, int64_t ldy, const float *x, int64_t ldx,
                                        int64_t R, int64_t L, bool add) {
    GRID_STRIDE(i, R * L) {
        int64_t r = i / L, j = i % L;
        float v = x[r * ldx + j];
        y[r * ldy + j] = add ? y[r * ldy + j] + v : v;
    }
}

static cudaStream_t stream(void) { return pf_cuda_ctx()->stream; }

void cuda_gelu_fwd(pf_tensor y, pf_tensor x) {
    CUDA_F32(y);
    CUDA_F32(x);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(y) == n);
    if (!n) return;
    gelu_fwd_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(cuda_f(y), cuda_f(x), n);
    CUDA_CHECK_LAUNCH();
}

void cuda_gelu_bwd(pf_tensor dx, pf_tensor dy, pf_tensor x) {
    CUDA_F32(dx);
    CUDA_F32(dy);
    CUDA_F32(x);
    int64_t n = pf_numel(x);
    PF_ASSERT(pf_numel(dx) == n && pf_numel(dy) == n);
    if (!n) return;
    gelu_bwd_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(cuda_f(dx), cuda_f(dy),
                                                                   cuda_f(x), n);
    CUDA_CHECK_LAUNCH();
}

void cuda_add(pf_tensor y, pf_tensor a, pf_tensor b) {
    CUDA_F32(y);
    CUDA_F32(a);
    CUDA_F32(b);
    int64_t n = pf_numel(y);
    PF_ASSERT(pf_numel(a) == n && pf_numel(b) == n);
    if (!n) return;
    add_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, stream()>>>(cuda_f(y), cuda_f(a), cuda_f(b),
                                                              n);
    CUDA_CHECK_LAUNCH();
}

// dst += src
void cuda_accumulate(pf_tensor dst, pf_tensor src) { cuda_add(dst, dst, src); }

void cuda_add_bias(float *y, const float *b, int64_t N, int64_t C) {
    if (!N || !C) return;
    add_bias_kernel<<<cuda_blocks(N * C), CUDA_THREADS, 0, stream()>>>(y, b, N * C, C);
    CUDA_CHECK_LAUNCH();
}

void cuda_copy_rows(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t R, int64_t L,
                    bool add) {
    if (!R || !L) return;
    copy_rows_kernel<<<cuda_blocks(R * L), CUDA_THREADS, 0, stream()>>>(y, ldy, x, ldx, R, L,
                                                                       add);
    CUDA_CHECK_LAUNCH();
}
