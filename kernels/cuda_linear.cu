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
    pf_linear_shape d = pf_shape_linear(y, x, w, b, pf_none(), pf_none());
    int64_t N = d.N, in = d.in, out = d.out;
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
    pf_linear_shape d = pf_shape_linear(dy, x, w, db, dx, dw);
    int64_t N = d.N, in = d.in, out = d.out;
    if (!N || !out || !in) return;
    if (pf_present(dx))
        cuda_gemm(false, false, N, in, out, 1.0f, dy.data, out, w.data, in, dt, 1.0f, dx.data,
                  in, dt);
    if (pf_present(dw))
        cuda_gemm(true, false, out, in, N, 1.0f, dy.data, out, x.data, in, dt, 1.0f, dw.data,
                  in, PF_F32);
    if (pf_present(db)) cuda_colsum_add(cuda_f(db), dy.data, dt, N, out, out);
}
