// cuda_blocked_ell.cu: the Pixelfly mask as a cuSPARSE Blocked-ELL matrix and its SpMM, the
// third column of `pfbench kernels` (forward only). See cuda_bench.h for the interface.
//
// Mapping. ELL blocks are square, g = gcd(ob, ib), so every super-block (ob x ib) is exactly
// (ob/g) x (ib/g) ELL blocks and every ELL block row (g rows of one super-row p) holds the
// (nf+1) * (ib/g) blocks of p's nf+1 super-columns: ellCols = (nf+1) * ib, no padding. Row o
// of ellValue is then the concatenation of row o - p*ob of p's stored blocks, taken in
// increasing super-column order (the slots of a row are in no particular column order: the
// flat butterfly's are p, p xor 1, p xor 2, p xor 4 ..., a random mask's any; pattern.h).
//
// cuSPARSE constraints (cuSPARSE docs, cusparseCreateBlockedEll and cusparseSpMM, "(2)
// Blocked-ELLPACK format", as transcribed into tinrab/singe singe-cusparse/src/spmm.rs; the
// layout from NVIDIA/CUDALibrarySamples cuSPARSE/spmm_blockedell/spmm_blockedell_example.cpp;
// tensor cores only, from NVIDIA/CUDALibrarySamples issue #125):
//   - ellValue: rows x ellCols values, row-major; ellColInd: (rows/g) x (ellCols/g) block
//     column indices in [0, cols/g), row-major; every block row has the same block count
//     (-1 marks an empty block, but issue #80 of the samples reports it read as column 0:
//     this mapping never needs one).
//   - Data types (A/B, C, compute; opB N or T): fp16 (C fp16 or fp32; compute fp16 or fp32)
//     from sm_70; int8 -> int32 from sm_75; bf16 (C bf16 or fp32, compute fp32), fp32 and
//     fp64 (uniform) from sm_80. So the activation dtypes here (fp32, bf16 with fp32
//     compute) need compute capability >= 8.0. It runs on tensor cores only (no FMA path).
//   - Algorithms: CUSPARSE_SPMM_ALG_DEFAULT or CUSPARSE_SPMM_BLOCKED_ELL_ALG1.
//   - Only opA = NON_TRANSPOSE; opB != CONJUGATE_TRANSPOSE; 32-bit indices only; host
//     pointer mode (alpha, beta on the host).
//   - Performance: power-of-two block sizes, and large ones (>= 64), are fastest; our g is
//     whatever the layer shape gives (48 for 768x3072 at bs=16), reported in the header.
// B and C may be row- or column-major; here both are column-major (x^T: [in, N], ld = in;
// y^T: [out, N], ld = out), which are the row-major activation buffers themselves.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_bench.h"
#include "cuda_ops.h"

struct pf_bell {
    cusparseHandle_t handle;
    cusparseSpMatDescr_t A;
    cusparseDnMatDescr_t B, C;
    void *col_ind, *values, *buffer;  // device memory owned by this struct
};

static const float bell_alpha = 1.0f, bell_beta = 0.0f;

static int gcd_int(int a, int b) {
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static float host_value(const void *base, pf_dtype dt, size_t i) {
    return dt == PF_BF16 ? pf_f32_from_bf16(((const uint16_t *)base)[i])
                         : ((const float *)base)[i];
}

static cusparseStatus_t spmm(pf_bell *b) {
    return cusparseSpMM(b->handle, CUSPARSE_OPERATION_NON_TRANSPOSE,
                        CUSPARSE_OPERATION_NON_TRANSPOSE, &bell_alpha, b->A, b->B, &bell_beta,
                        b->C, CUDA_R_32F, CUSPARSE_SPMM_BLOCKED_ELL_ALG1, b->buffer);
}

// Four rows of y (act dtype, [N, out]) against the host sum over the pattern's blocks of the
// same (bf16-rounded) inputs. Tolerance 4e-3 of sum |x s|: covers bf16 rounding of the output
// (2^-9) and fp32 inputs multiplied in TF32 (Blocked-ELL runs on tensor cores only), and stays
// far below the O(|y|) error of a misplaced block.
static bool check_rows(const pf_pattern *p, pf_tensor x, pf_tensor y, const void *S_host,
                       char *why, size_t why_len) {
    int64_t N = x.shape[0];
    int in = p->in, out = p->out, es = pf_dtype_size(x.dtype);
    pf_dtype dt = x.dtype;
    char *xr = (char *)pf_malloc((size_t)in * es), *yr = (char *)pf_malloc((size_t)out * es);
    int64_t rows[4] = {0, N / 3, 2 * N / 3, N - 1};
    bool ok = true;
    for (int t = 0; t < 4 && ok; t++) {
        int64_t n = rows[t];
        CUDA_CHECK(cudaMemcpy(xr, (char *)x.data + (size_t)n * in * es, (size_t)in * es,
                              cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(yr, (char *)y.data + (size_t)n * out * es, (size_t)out * es,
                              cudaMemcpyDeviceToHost));
        for (int o = 0; o < out && ok; o++) {
            int row = o / p->ob, i = o % p->ob;
            double want = 0, mag = 0;
            for (int k = 0; k <= p->nf; k++) {
                int q = pf_pattern_col(p, row, k);
                size_t blk = ((size_t)row * (p->nf + 1) + k) * p->ob * p->ib + (size_t)i * p->ib;
                for (int c = 0; c < p->ib; c++) {
                    double v = (double)host_value(xr, dt, (size_t)q * p->ib + c) *
                               host_value(S_host, dt, blk + c);
                    want += v;
                    mag += v < 0 ? -v : v;
                }
            }
            double got = host_value(yr, dt, o), err = got - want;
            if ((err < 0 ? -err : err) > 4e-3 * mag + 1e-6) {
                snprintf(why, why_len,
                         "Blocked-ELL result differs from the host reference at token %lld, "
                         "output %d (got %g, want %g): a layout bug in cuda_blocked_ell.cu",
                         (long long)n, o, got, want);
                ok = false;
            }
        }
    }
    free(xr);
    free(yr);
    return ok;
}

pf_bell *pf_cuda_bell_create(const pf_pattern *p, pf_tensor S, pf_tensor x, pf_tensor y,
                             char *why, size_t why_len) {
    pf_dtype dt = x.dtype;
    PF_ASSERT(S.dtype == dt && y.dtype == dt && S.device == PF_DEV_CUDA &&
              x.device == PF_DEV_CUDA && y.device == PF_DEV_CUDA);
    PF_ASSERT(pf_numel(S) == pf_pattern_sparse_numel(p) && x.ndim == 2 && y.ndim == 2 &&
              x.shape[1] == p->in && y.shape[1] == p->out && x.shape[0] == y.shape[0]);
    if (dt != PF_F32 && dt != PF_BF16) {
        snprintf(why, why_len, "activation dtype is neither fp32 nor bf16");
        return NULL;
    }
    int dev = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major < 8) {
        snprintf(why, why_len,
                 "Blocked-ELL SpMM in %s needs compute capability >= 8.0, this GPU is %d.%d",
                 dt == PF_BF16 ? "bf16" : "fp32", major, minor);
        return NULL;
    }
    int g = gcd_int(p->ob, p->ib), nb = p->nf + 1;
    int64_t ell_cols = (int64_t)nb * p->ib, block_rows = p->out / g;
    int64_t n_ind = block_rows * (ell_cols / g), N = x.shape[0];
    if (n_ind > INT32_MAX || (int64_t)p->out * ell_cols > INT32_MAX || N > INT32_MAX) {
        snprintf(why, why_len, "needs more than 32-bit indices (cuSPARSE's Blocked-ELL limit)");
        return NULL;
    }

    // Host conversion: compact blocks -> ellValue rows and ellColInd, slots by column.
    size_t es = (size_t)pf_dtype_size(dt), nnz = (size_t)pf_pattern_sparse_numel(p);
    char *S_host = (char *)pf_malloc(nnz * es), *val = (char *)pf_malloc(nnz * es);
    int32_t *ind = (int32_t *)pf_malloc(sizeof(int32_t) * (size_t)n_ind);
    CUDA_CHECK(cudaMemcpy(S_host, S.data, nnz * es, cudaMemcpyDeviceToHost));
    int slot[PF_PATTERN_MAX_BLOCKS];  // slots of one super-row sorted by super-column
    PF_ASSERT(nb <= PF_PATTERN_MAX_BLOCKS);
    for (int row = 0; row < p->bs; row++) {
        for (int k = 0; k < nb; k++) slot[k] = k;
        for (int a = 1; a < nb; a++)  // insertion sort by super-column
            for (int b = a; b > 0 && pf_pattern_col(p, row, slot[b]) <
                                         pf_pattern_col(p, row, slot[b - 1]); b--) {
                int t = slot[b];
                slot[b] = slot[b - 1];
                slot[b - 1] = t;
            }
        for (int i = 0; i < p->ob; i++) {
            size_t o = (size_t)row * p->ob + i;
            for (int e = 0; e < nb; e++) {
                size_t src = (((size_t)row * nb + slot[e]) * p->ob + i) * p->ib;
                memcpy(val + (o * ell_cols + (size_t)e * p->ib) * es, S_host + src * es,
                       (size_t)p->ib * es);
            }
        }
        for (int br = row * p->ob / g; br < (row + 1) * p->ob / g; br++)
            for (int e = 0; e < nb; e++)
                for (int j = 0; j < p->ib / g; j++)
                    ind[(size_t)br * (ell_cols / g) + (size_t)e * (p->ib / g) + j] =
                        pf_pattern_col(p, row, slot[e]) * (p->ib / g) + j;
    }

    pf_bell *b = (pf_bell *)pf_malloc(sizeof *b);
    memset(b, 0, sizeof *b);
    CUDA_CHECK(cudaMalloc(&b->col_ind, sizeof(int32_t) * (size_t)n_ind));
    CUDA_CHECK(cudaMalloc(&b->values, nnz * es));
    CUDA_CHECK(cudaMemcpy(b->col_ind, ind, sizeof(int32_t) * (size_t)n_ind,
                          cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(b->values, val, nnz * es, cudaMemcpyHostToDevice));
    free(ind);
    free(val);

    cudaDataType type = dt == PF_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    CUSPARSE_CHECK(cusparseCreate(&b->handle));
    CUSPARSE_CHECK(cusparseSetStream(b->handle, pf_cuda_ctx()->stream));
    CUSPARSE_CHECK(cusparseCreateBlockedEll(&b->A, p->out, p->in, g, ell_cols, b->col_ind,
                                            b->values, CUSPARSE_INDEX_32I,
                                            CUSPARSE_INDEX_BASE_ZERO, type));
    CUSPARSE_CHECK(cusparseCreateDnMat(&b->B, p->in, N, p->in, x.data, type, CUSPARSE_ORDER_COL));
    CUSPARSE_CHECK(
        cusparseCreateDnMat(&b->C, p->out, N, p->out, y.data, type, CUSPARSE_ORDER_COL));

    // NOT_SUPPORTED from the first two calls is an answer (reported as n/a), not an error.
    size_t bytes = 0;
    cusparseStatus_t st = cusparseSpMM_bufferSize(
        b->handle, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
        &bell_alpha, b->A, b->B, &bell_beta, b->C, CUDA_R_32F, CUSPARSE_SPMM_BLOCKED_ELL_ALG1,
        &bytes);
    if (st == CUSPARSE_STATUS_SUCCESS) {
        CUDA_CHECK(cudaMalloc(&b->buffer, bytes ? bytes : 1));
        st = spmm(b);
    }
    if (st == CUSPARSE_STATUS_NOT_SUPPORTED) {
        snprintf(why, why_len, "cusparseSpMM: %s (block %d, %s)", cusparseGetErrorString(st),
                 g, dt == PF_BF16 ? "bf16" : "fp32");
        free(S_host);
        pf_cuda_bell_free(b);
        return NULL;
    }
    CUSPARSE_CHECK(st);  // any other failure of cusparseSpMM_bufferSize or cusparseSpMM
    bool ok = check_rows(p, x, y, S_host, why, why_len);
    free(S_host);
    if (!ok) {
        pf_cuda_bell_free(b);
        return NULL;
    }
    return b;
}

void pf_cuda_bell_run(pf_bell *b) { CUSPARSE_CHECK(spmm(b)); }

void pf_cuda_bell_free(pf_bell *b) {
    if (!b) return;
    if (b->C) CUSPARSE_CHECK(cusparseDestroyDnMat(b->C));
    if (b->B) CUSPARSE_CHECK(cusparseDestroyDnMat(b->B));
    if (b->A) CUSPARSE_CHECK(cusparseDestroySpMat(b->A));
    if (b->handle) CUSPARSE_CHECK(cusparseDestroy(b->handle));
    if (b->buffer) CUDA_CHECK(cudaFree(b->buffer));
    if (b->values) CUDA_CHECK(cudaFree(b->values));
    if (b->col_ind) CUDA_CHECK(cudaFree(b->col_ind));
    free(b);
}
