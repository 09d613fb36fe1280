// cuda_ops.h: the CUDA backend's op functions (one .cu file per op family), its runtime
// context, and the checks, GEMM wrappers and reductions they share. Only kernels/*.cu
// include this.
//
// Like the CPU backend, every op treats a tensor of any rank as a matrix [rows, cols] with
// cols = the last dim.
// Dtypes: activations (x, y, dy, dx, qkv, xv ...) and the compute copies of weights passed to
// forward/backward ops are fp32 or bf16, the same dtype within one call ("act" tensors);
// weight gradients (dw, dS, dU, dV, db, dg), saved statistics (mean, rstd, lse), losses,
// master weights and AdamW moments are always fp32; ids and targets int32. Every kernel
// accumulates in fp32 whatever its input dtype (bf16 x bf16 products on tensor cores).
// Ordering: every kernel and cuBLAS call goes to one stream (pf_cuda_ctx()->stream, the
// legacy default stream), so ops run in call order and scratch memory can be reused by the
// next op without extra synchronisation.
// Determinism: no float atomics; each output element is reduced by one thread or one
// block in a fixed order (cuBLAS is deterministic on a single stream).
#ifndef PF_CUDA_OPS_H
#define PF_CUDA_OPS_H

#include <math.h>

#include "backend.h"
#include "op_shapes.h"
#include "cuda_common.h"

// One mask's device tables (cuda_pixelfly.cu, mask_tables): a slot of the context's cache.
typedef struct pf_cuda_mask pf_cuda_mask;

// The backend's runtime state, created on first use (after the caller's cudaSetDevice).
typedef struct {
    cublasHandle_t cublas;
    cudaStream_t stream;  // 0: the legacy default stream
    void *scratch;        // device scratch owned by the context, see cuda_scratch()
    size_t scratch_bytes;
    size_t mem_peak;      // the most device memory seen in use (cuda_note_memory)
    pf_device_info device;  // name, total memory and peak FLOP/s, read once
    size_t smem_optin;      // the most dynamic shared memory a block may opt into (bytes)
    pf_cuda_mask *masks;    // device copies of the block masks' tables, by content
    size_t masks_cap, masks_used;
    // Input staging (backend.h, inputs_begin ...): uploads run on copy_stream (non-blocking:
    // the legacy stream does not wait for it implicitly); uploaded[s] is recorded on it after
    // set s's uploads, released[s] on `stream` once the ops issued so far are done reading s.
    cudaStream_t copy_stream;
    cudaEvent_t uploaded[PF_INPUT_SETS], released[PF_INPUT_SETS];
    int inputs_active;  // the set ops read (inputs_use), -1 before the first
} pf_cuda_context;

pf_cuda_context *pf_cuda_ctx(void);

// Samples the device's memory in use (total - free: this process's allocations, its CUDA
// context and any other process on the GPU) into the context's peak; returns it.
size_t cuda_note_memory(void);

// Device scratch of at least `bytes`, valid until the next call (any op may call it; the
// single stream orders the uses). Growing it synchronises the device.
void *cuda_scratch(size_t bytes);

// A present fp32 (int32) tensor on the device. Macros, so a failure names the op's file:line.
#define CUDA_F32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_F32 && (t).device == PF_DEV_CUDA)
#define CUDA_I32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_I32 && (t).device == PF_DEV_CUDA)
#define CUDA_F32_OPT(t) \
    PF_ASSERT(!pf_present(t) || ((t).dtype == PF_F32 && (t).device == PF_DEV_CUDA))
// A present activation tensor of dtype dt (fp32 or bf16), or an optional one.
#define CUDA_ACT(t, dt)                                                                    \
    PF_ASSERT(pf_present(t) && (t).dtype == (dt) && ((dt) == PF_F32 || (dt) == PF_BF16) && \
              (t).device == PF_DEV_CUDA)
#define CUDA_ACT_OPT(t, dt) \
    PF_ASSERT(!pf_present(t) || ((t).dtype == (dt) && (t).device == PF_DEV_CUDA))

static inline int64_t cuda_cols(pf_tensor t) { return t.ndim ? t.shape[t.ndim - 1] : 1; }
static inline int64_t cuda_rows(pf_tensor t) {
    int64_t c = cuda_cols(t);
    return c ? pf_numel(t) / c : 0;
}
static inline float *cuda_f(pf_tensor t) { return (float *)t.data; }

#ifdef __CUDACC__
#include <cuda_bf16.h>
typedef __nv_bfloat16 bf16;

// Element access in fp32 whatever the storage type; stores round to nearest even.
__device__ __forceinline__ float cuda_ld(float v) { return v; }
__device__ __forceinline__ float cuda_ld(bf16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T cuda_st(float v);
template <> __device__ __forceinline__ float cuda_st<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 cuda_st<bf16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(T{}) with T the C++ type of an activation dtype (float or bf16), so one template
// serves both: cuda_dispatch(x.dtype, [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
static inline void cuda_dispatch(pf_dtype dt, F &&f) {
    if (dt == PF_BF16)
        f(bf16{});
    else {
        PF_ASSERT(dt == PF_F32);
        f(float{});
    }
}
#endif

// Blocks for an elementwise kernel over n elements (grid-stride loops cover the rest).
#define CUDA_THREADS 256
static inline int cuda_blocks(int64_t n) {
    int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    return (int)(b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);
}

// ---- GEMM (cuda_linear.cu) -----------------------------------------------------------------
// Row-major GEMM with cblas_sgemm(CblasRowMajor, ...) semantics:
//   C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C,  op = transpose when ta / tb,
// A and B of one dtype (fp32 or bf16), C fp32 or bf16, accumulated in fp32 (cublasGemmEx,
// CUBLAS_COMPUTE_32F: no TF32). A row-major matrix is the column-major transpose with the
// same leading dimension, so cuBLAS gets the operands swapped: C^T = op(B)^T op(A)^T.
// beta = 0 never reads C (it may hold NaN).
void cuda_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda,
               const void *B, int ldb, pf_dtype ab_dtype, float beta, void *C, int ldc,
               pf_dtype c_dtype);

// ---- shared kernels (cuda_reduce.cu, cuda_elementwise.cu) ------------------------------------
// `dt` is the dtype (fp32 or bf16) of the act arrays passed as void*; float* arrays are fp32.
// Sums accumulate in fp32 or wider whatever dt is.
// out[c] += sum_n x[n*ld + c] for n < N, c < C; each column summed over n in one fixed order.
// out fp32 (a gradient), x act dtype dt.
void cuda_colsum_add(float *out, const void *x, pf_dtype dt, int64_t N, int64_t C, int64_t ld);
// out[c] += sum_n dy[n,c] * (x[n,c] - mean[n]) * rstd[n]   (layernorm dgamma), dy, x: [N, C]
// act dtype dt; out, mean, rstd fp32.
void cuda_colsum_xhat_add(float *out, const void *dy, const void *x, pf_dtype dt,
                          const float *mean, const float *rstd, int64_t N, int64_t C);
// y[n, c] += b[c] for y: [N, C]; y and b act dtype dt.
void cuda_add_bias(void *y, const void *b, pf_dtype dt, int64_t N, int64_t C);
// y[r*ldy + j] (+)= x[r*ldx + j] for r < R, j < L: strided row copies (add = accumulate);
// y and x act dtype dt, strides in elements.
void cuda_copy_rows(void *y, int64_t ldy, const void *x, int64_t ldx, pf_dtype dt, int64_t R,
                    int64_t L, bool add);

// ---- block and warp reductions (device code) -------------------------------------------------
// Fixed trees (shuffle down, then lane 0 broadcasts), so the result is the same on every run
// and every thread of the warp or block gets the bit-identical value.
#ifdef __CUDACC__
struct cuda_sum_op {
    template <typename T>
    __device__ static T apply(T a, T b) { return a + b; }
};
struct cuda_max_op {
    template <typename T>
    __device__ static T apply(T a, T b) { return a > b ? a : b; }
};

template <typename Op, typename T>
__device__ inline T warp_reduce(T v) {
    for (int o = 16; o > 0; o >>= 1) v = Op::apply(v, __shfl_down_sync(0xffffffffu, v, o));
    return __shfl_sync(0xffffffffu, v, 0);
}

// blockDim.x must be a multiple of 32 (at most 1024); every thread must call it.
template <typename Op, typename T>
__device__ inline T block_reduce(T v, T identity) {
    __shared__ T part[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarp = blockDim.x / 32;
    v = warp_reduce<Op>(v);
    __syncthreads();  // a previous call may still be reading part[]
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_reduce<Op>(lane < nwarp ? part[lane] : identity);
}
#endif

// ---- ops -----------------------------------------------------------------------------------
// `pf_op_NAME_fn cuda_NAME;` for every entry of PF_OPS, each defined in the file its section of
// backend.h names (cuda_convert in cuda_optim.cu).
#define CUDA_OP_DECL_(ID, name) pf_op_##name##_fn cuda_##name;
PF_OPS(CUDA_OP_DECL_)
#undef CUDA_OP_DECL_

// cuda_attention.cu
// The head dims the kernels run on this device, 0-terminated (the backend table publishes
// them); cuda_attention_fit_device, called once when the context is created, keeps those
// whose kernels fit in `smem_optin` bytes of shared memory per block and prints why any other
// is missing. The three functions after it are its parts (tests/gpu/test_cuda_ops.c checks
// them for other limits): the largest kernel's bytes at head dim hd (0: no kernels), the
// head dims that fit a limit, and the refusal message for one that does not (false if it fits).
extern "C" int cuda_attention_head_dims[];
void cuda_attention_fit_device(size_t smem_optin, const char *card);
extern "C" size_t cuda_attention_smem_bytes(int hd, const char **kernel);
extern "C" int cuda_attention_fit_head_dims(int *dims, size_t limit);
extern "C" bool cuda_attention_smem_refusal(char *msg, size_t n, int hd, size_t limit,
                                            const char *card);

#endif
