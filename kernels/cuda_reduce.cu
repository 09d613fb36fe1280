// cuda_reduce.cu: reductions with a fixed order (column sums, the sum of squares for
// gradient clipping) and the in-place scale.
#include "cuda_ops.h"

// sumsq works on fixed chunks of this many elements (as cpu_reduce.c), one block each,
// then one block adds the chunk partials.
#define SUMSQ_CHUNK 65536
#define COLSUM_LANES 16   // rows processed side by side per column
#define COLSUM_ROWS 512   // rows per partial sum: a fixed split, so results do not depend on the GPU

// part[p, c] (or out[c] += when there is one part) = sum of v(n, c) over the rows n of part p,
// [p * COLSUM_ROWS, min(N, (p + 1) * COLSUM_ROWS)), with v = x[n*ld + c] or, with mean/rstd
// given, v = x[n*ld + c] * (xn[n*ld + c] - mean[n]) * rstd[n] (layernorm dgamma).
// x, xn: T (fp32 or bf16, read as fp32); out, mean, rstd fp32; part and the sums in double.
// Grid (ceil(C / 32), P), block (32, COLSUM_LANES): lane y sums rows y, y + LANES, ... of its
// part in order (coalesced across the 32 columns), then thread y == 0 adds the LANES partials
// in order. Splitting the rows keeps C/32 * P blocks busy (C = 768: 24 blocks without it).
template <typename T>
__global__ static void colsum_part_kernel(double *part, float *out, const T *x, const T *xn,
                                          const float *mean, const float *rstd, int64_t N,
                                          int64_t C, int64_t ld) {
    __shared__ double lanes[COLSUM_LANES][32];
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t n0 = (int64_t)blockIdx.y * COLSUM_ROWS, n1 = n0 + COLSUM_ROWS < N ? n0 + COLSUM_ROWS : N;
    double s = 0;
    if (c < C)
        for (int64_t n = n0 + threadIdx.y; n < n1; n += COLSUM_LANES) {
            float v = cuda_ld(x[n * ld + c]);
            if (xn) v *= (cuda_ld(xn[n * ld + c]) - mean[n]) * rstd[n];
            s += v;
        }
    lanes[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0;
        for (int i = 0; i < COLSUM_LANES; i++) t += lanes[i][threadIdx.x];
        if (part)
            part[blockIdx.y * C + c] = t;
        else
            out[c] += (float)t;
    }
}

// out[c] += sum_{p < P} part[p, c], in order of p. Grid-stride over C.
__global__ static void colsum_finish_kernel(float *out, const double *part, int64_t P, int64_t C) {
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < C;
         c += (int64_t)gridDim.x * blockDim.x) {
        double t = 0;
        for (int64_t p = 0; p < P; p++) t += part[p * C + c];
        out[c] += (float)t;
    }
}

static void colsum_launch(float *out, const void *x, const void *xn, pf_dtype dt,
                          const float *mean, const float *rstd, int64_t N, int64_t C,
                          int64_t ld) {
    if (!C) return;
    int64_t P = N > 0 ? (N + COLSUM_ROWS - 1) / COLSUM_ROWS : 1;
    PF_ASSERT(P <= 65535);  // grid.y; N <= 33.5M rows
    double *part = P > 1 ? (double *)cuda_scratch(sizeof(double) * (size_t)(P * C)) : NULL;
    cudaStream_t st = pf_cuda_ctx()->stream;
    dim3 block(32, COLSUM_LANES), grid((unsigned)((C + 31) / 32), (unsigned)P);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        colsum_part_kernel<T><<<grid, block, 0, st>>>(part, out, (const T *)x, (const T *)xn,
                                                     mean, rstd, N, C, ld);
        CUDA_CHECK_LAUNCH();
    });
    if (part) {
        colsum_finish_kernel<<<cuda_blocks(C), CUDA_THREADS, 0, st>>>(out, part, P, C);
        CUDA_CHECK_LAUNCH();
    }
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
