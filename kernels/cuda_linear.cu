// cuda_linear.cu: the row-major cuBLAS GEMM every op uses, and the dense linear layer
// y = x w^T + b on top of it.
#include "cuda_ops.h"

static cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

static cudaDataType_t cuda_type(pf_dtype dt) {
    PF_ASSERT(dt == PF_F32 || dt == PF_BF16);
    return dt == PF_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

void cuda_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda,
               const void *B, int ldb, pf_dtype ab_dtype, float beta, void *C, int ldc,
               pf_dtype c_dtype) {
    if (!M || !N) return;
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands
    // and the M/N sizes, keep the transpose flags and the leading dimensions.
    CUBLAS_CHECK(cublasGemmEx(pf_cuda_ctx()->cublas, op(tb), op(ta), N, M, K, &alpha, B,
                              cuda_type(ab_dtype), ldb, A, cuda_type(ab_dtype), lda, &beta, C,
                              cuda_type(c_dtype), ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// y[N,out] = x[N,in] w[out,in]^T + b[out]; x, w, b, y act dtype (GEMM accumulated in fp32;
// in bf16 y is rounded after the GEMM and again after the bias add).
void cuda_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT(w, dt);
    CUDA_ACT_OPT(b, dt);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cuda_rows(x), in = cuda_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cuda_rows(y) == N && cuda_cols(y) == out);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == out);
    if (!N || !out) return;
    if (in)
        cuda_gemm(false, true, N, out, in, 1.0f, x.data, in, w.data, in, dt, 0.0f, y.data, out,
                  dt);
    else
        CUDA_CHECK(cudaMemsetAsync(y.data, 0, (size_t)pf_dtype_size(dt) * N * out,
                                   pf_cuda_ctx()->stream));
    if (pf_present(b)) cuda_add_bias(y.data, b.data, dt, N, out);
}

// dx[N,in] += dy w;  dw[out,in] += dy^T x;  db[out] += sum_n dy[n]
// dx, dy, x, w act dtype; dw, db fp32 (weight gradients), accumulated in fp32.
void cuda_linear_bwd(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                     pf_tensor w) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT_OPT(dx, dt);
    CUDA_F32_OPT(dw);
    CUDA_F32_OPT(db);
    CUDA_ACT(dy, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT(w, dt);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cuda_rows(x), in = cuda_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cuda_rows(dy) == N && cuda_cols(dy) == out);
    PF_ASSERT(!pf_present(dx) || (cuda_rows(dx) == N && cuda_cols(dx) == in));
    PF_ASSERT(!pf_present(dw) || pf_numel(dw) == out * in);
    PF_ASSERT(!pf_present(db) || pf_numel(db) == out);
    if (!N || !out || !in) return;
    if (pf_present(dx))
        cuda_gemm(false, false, N, in, out, 1.0f, dy.data, out, w.data, in, dt, 1.0f, dx.data,
                  in, dt);
    if (pf_present(dw))
        cuda_gemm(true, false, out, in, N, 1.0f, dy.data, out, x.data, in, dt, 1.0f, dw.data,
                  in, PF_F32);
    if (pf_present(db)) cuda_colsum_add(cuda_f(db), dy.data, dt, N, out, out);
}
