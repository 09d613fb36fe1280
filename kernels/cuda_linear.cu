// cuda_linear.cu: the row-major cuBLAS GEMM wrappers every op uses, and the dense linear
// layer y = x w^T + b on top of them.
#include "cuda_ops.h"

static cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands and
// the M/N sizes, keep the transpose flags and the leading dimensions.
void cuda_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
    if (!M || !N) return;
    CUBLAS_CHECK(cublasSgemm(pf_cuda_ctx()->cublas, op(tb), op(ta), N, M, K, &alpha, B, ldb, A,
                             lda, &beta, C, ldc));
}

static cudaDataType_t cuda_type(pf_dtype dt) {
    PF_ASSERT(dt == PF_F32 || dt == PF_BF16);
    return dt == PF_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

void cuda_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda,
               const void *B, int ldb, pf_dtype ab_dtype, float beta, void *C, int ldc,
               pf_dtype c_dtype) {
    if (!M || !N) return;
    CUBLAS_CHECK(cublasGemmEx(pf_cuda_ctx()->cublas, op(tb), op(ta), N, M, K, &alpha, B,
                              cuda_type(ab_dtype), ldb, A, cuda_type(ab_dtype), lda, &beta, C,
                              cuda_type(c_dtype), ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void cuda_sgemm_strided(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                        int lda, int64_t sa, const float *B, int ldb, int64_t sb, float beta,
                        float *C, int ldc, int64_t sc, int batch) {
    if (!M || !N || !batch) return;
    CUBLAS_CHECK(cublasSgemmStridedBatched(pf_cuda_ctx()->cublas, op(tb), op(ta), N, M, K,
                                           &alpha, B, ldb, sb, A, lda, sa, &beta, C, ldc, sc,
                                           batch));
}

void cuda_sgemm_batched(bool ta, bool tb, int M, int N, int K, float alpha,
                        const float *const *A, int lda, const float *const *B, int ldb,
                        float beta, float *const *C, int ldc, int batch) {
    if (!M || !N || !batch) return;
    CUBLAS_CHECK(cublasSgemmBatched(pf_cuda_ctx()->cublas, op(tb), op(ta), N, M, K, &alpha, B,
                                    ldb, A, lda, &beta, C, ldc, batch));
}

// y[N,out] = x[N,in] w[out,in]^T + b[out]
void cuda_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b) {
    CUDA_F32(y);
    CUDA_F32(x);
    CUDA_F32(w);
    CUDA_F32_OPT(b);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cuda_rows(x), in = cuda_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cuda_rows(y) == N && cuda_cols(y) == out);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == out);
    if (!N || !out) return;
    if (in)
        cuda_sgemm(false, true, N, out, in, 1.0f, cuda_f(x), in, cuda_f(w), in, 0.0f,
                   cuda_f(y), out);
    else
        CUDA_CHECK(cudaMemsetAsync(y.data, 0, sizeof(float) * N * out, pf_cuda_ctx()->stream));
    if (pf_present(b)) cuda_add_bias(cuda_f(y), cuda_f(b), N, out);
}

// dx[N,in] += dy w;  dw[out,in] += dy^T x;  db[out] += sum_n dy[n]
void cuda_linear_bwd(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                     pf_tensor w) {
    CUDA_F32_OPT(dx);
    CUDA_F32_OPT(dw);
    CUDA_F32_OPT(db);
    CUDA_F32(dy);
    CUDA_F32(x);
    CUDA_F32(w);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cuda_rows(x), in = cuda_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cuda_rows(dy) == N && cuda_cols(dy) == out);
    PF_ASSERT(!pf_present(dx) || (cuda_rows(dx) == N && cuda_cols(dx) == in));
    PF_ASSERT(!pf_present(dw) || pf_numel(dw) == out * in);
    PF_ASSERT(!pf_present(db) || pf_numel(db) == out);
    if (!N || !out || !in) return;
    if (pf_present(dx))
        cuda_sgemm(false, false, N, in, out, 1.0f, cuda_f(dy), out, cuda_f(w), in, 1.0f,
                   cuda_f(dx), in);
    if (pf_present(dw))
        cuda_sgemm(true, false, out, in, N, 1.0f, cuda_f(dy), out, cuda_f(x), in, 1.0f,
                   cuda_f(dw), in);
    if (pf_present(db)) cuda_colsum_add(cuda_f(db), cuda_f(dy), N, out, out);
}
