// cuda_reduce.cu: reductions with a fixed order (column sums, the sum of squares for
// gradient clipping) and the in-place scale.
#include "cuda_ops.h"

// sumsq works on fixed chunks of this many elements (as cpu_reduce.c), one block each,
// then one block adds the chunk partials.
#define SUMSQ_CHUNK 65536
#define COLSUM_LANES 16  // rows processed side by side per column

// out[c] += sum_n v(n, c) over rows n < N, v = x[n*ld + c], or, with mean/rstd given,
// v = x[n*ld + c] * (xn[n*ld + c] - mean[n]) * rstd[n] (layernorm dgamma). x, xn: T (fp32 or
// bf16, read as fp32); out, mean, rstd fp32; the sums in double.
// Block (32, COLSUM_LANES) owns 32 columns: lane y sums rows y, y + LANES, ... in order
// (coalesced across the 32 columns), then thread y == 0 adds the LANES partials in order.
template <typename T>
__global__ static void colsum_kernel(float *out, const T *x, const T *xn, const float *mean,
                                     const float *rstd, int64_t N, int64_t C, int64_t ld) {
    __shared__ double part[COLSUM_LANES][32];
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    double s = 0;
    if (c < C)
        for (int64_t n = threadIdx.y; n < N; n += COLSUM_LANES) {
            float v = cuda_ld(x[n * ld + c]);
            if (xn) v *= (cuda_ld(xn[n * ld + c]) - mean[n]) * rstd[n];
            s += v;
        }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0;
        for (int i = 0; i < COLSUM_LANES; i++) t += part[i][threadIdx.x];
        out[c] += (float)t;
    }
}

static void colsum_launch(float *out, const void *x, const void *xn, pf_dtype dt,
                          const float *mean, const float *rstd, int64_t N, int64_t C,
                          int64_t ld) {
    if (!C) return;
    dim3 block(32, COLSUM_LANES);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        colsum_kernel<T><<<(unsigned)((C + 31) / 32), block, 0, pf_cuda_ctx()->stream>>>(
            out, (const T *)x, (const T *)xn, mean, rstd, N, C, ld);
        CUDA_CHECK_LAUNCH();
    });
}

void cuda_colsum_add(float *out, const void *x, pf_dtype dt, int64_t N, int64_t C, int64_t ld) {
    colsum_launch(out, x, NULL, dt, NULL, NULL, N, C, ld);
}

void cuda_colsum_xhat_add(float *out, const void *dy, const void *x, pf_dtype dt,
                          const float *mean, const float *rstd, int64_t N, int64_t C) {
    colsum_launch(out, dy, x, dt, mean, rstd, N, C, C);
}

// sumsq and scale run on gradient arenas and other fp32 state only: fp32 by the dtype rules
// (cuda_ops.h), so they take no dtype and CUDA_F32 rejects a bf16 tensor.

// part[i] = sum of x[j]^2 over chunk i (double); one block per chunk.
__global__ static void sumsq_chunks_kernel(double *part, const float *x, int64_t n) {
    int64_t start = (int64_t)blockIdx.x * SUMSQ_CHUNK;
    int64_t end = start + SUMSQ_CHUNK < n ? start + SUMSQ_CHUNK : n;
    double s = 0;
    for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) s += (double)x[j] * x[j];
    s = block_reduce<cuda_sum_op>(s, 0.0);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// *total = sum_i part[i], i < n; one block.
__global__ static void sum_kernel(double *total, const double *part, int64_t n) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = block_reduce<cuda_sum_op>(s, 0.0);
    if (threadIdx.x == 0) *total = s;
}

double cuda_sumsq(pf_tensor x) {
    CUDA_F32(x);  // fp32 only (gradients), never an act tensor
    int64_t n = pf_numel(x), nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    if (!n) return 0;
    double *part = (double *)cuda_scratch(sizeof(double) * (size_t)(nchunk + 1));
    cudaStream_t st = pf_cuda_ctx()->stream;
    sumsq_chunks_kernel<<<(unsigned)nchunk, CUDA_THREADS, 0, st>>>(part, cuda_f(x), n);
    CUDA_CHECK_LAUNCH();
    sum_kernel<<<1, 1024, 0, st>>>(part + nchunk, part, nchunk);
    CUDA_CHECK_LAUNCH();
    double total = 0;
    CUDA_CHECK(cudaMemcpy(&total, part + nchunk, sizeof(double), cudaMemcpyDeviceToHost));
    return total;
}

// x[i] *= s
__global__ static void scale_kernel(float *x, float s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void cuda_scale(pf_tensor x, float s) {
    CUDA_F32(x);  // fp32 only (gradients), never an act tensor
    int64_t n = pf_numel(x);
    if (!n) return;
    scale_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(cuda_f(x), s, n);
    CUDA_CHECK_LAUNCH();
}
