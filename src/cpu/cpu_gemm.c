// cpu_gemm.c: every GEMM of the CPU backend. OpenBLAS runs single-threaded; the parallelism
// is OpenMP's alone, by splitting C across the threads. Two thread pools (the OpenMP one for
// elementwise ops and OpenBLAS's own pthreads spinning between calls) fought over the cores
// and made step times bimodal; one pool does not.
//
// How C is split: each thread's single-threaded call packs its own slice of one operand and
// the whole of the other, so the split runs along the larger of M and N and the operand
// packed by every thread is the smaller one. Splitting the rows of a weight gradient
// dW[out, in] with out < in (a Mixer token-mixing layer's dW [16, 64] over 16,384 rows)
// made each thread pack all of x; splitting its columns packs dy twice instead, a quarter
// of the bytes there (measured 1.24-1.28x on that GEMM, 1.02-1.08x on dW [128, 512] over
// 2048 rows; M-split shapes unchanged). Column slices are whole multiples of 16 (the packed
// panel width of the AVX2 and AVX-512 kernels) but the last. A GEMM under CPU_GEMM_SERIAL
// multiply-adds is one call: waking a sleeping thread (OMP_WAIT_POLICY=passive) costs more.
#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include "cpu_ops.h"

#define CPU_GEMM_SERIAL (1 << 18)  // M N K below this: one call, no parallel region
#define CPU_GEMM_NPANEL 16         // column slices are multiples of this

static pthread_once_t blas_single_once = PTHREAD_ONCE_INIT;

static void blas_single(void) { openblas_set_num_threads(1); }

// C[m, n] = bias[n] (0 without bias) over rows m0..m1-1 and columns n0..n1-1.
static void init_bias(float *C, int64_t ldc, const float *bias, int64_t m0, int64_t m1,
                      int64_t n0, int64_t n1) {
    for (int64_t m = m0; m < m1; m++) {
        float *cr = C + m * ldc;
        if (bias) {
#pragma omp simd
            for (int64_t n = n0; n < n1; n++) cr[n] = bias[n];
        } else {
#pragma omp simd
            for (int64_t n = n0; n < n1; n++) cr[n] = 0.0f;
        }
    }
}

// cpu_sgemm, and cpu_sgemm_bias when init (C set to the bias before beta = 1).
static void sgemm_split(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc, bool init, const float *bias) {
    pthread_once(&blas_single_once, blas_single);
    if (M == 0 || N == 0) return;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    bool split_n = N > M;
    // Units to share out: rows of C, or panels of CPU_GEMM_NPANEL columns.
    int64_t units = split_n ? (N + CPU_GEMM_NPANEL - 1) / CPU_GEMM_NPANEL : M;
    int chunks = omp_in_parallel() || M * N * K < CPU_GEMM_SERIAL ? 1 : omp_get_max_threads();
    if (chunks > units) chunks = (int)units;
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
    for (int c = 0; c < chunks; c++) {
        int64_t u0 = units * c / chunks, u1 = units * (c + 1) / chunks;
        if (split_n) {
            // Columns n0.. of op(B) start at column n0 of B, or at row n0 when B is transposed.
            int64_t n0 = u0 * CPU_GEMM_NPANEL;
            int64_t n1 = u1 * CPU_GEMM_NPANEL < N ? u1 * CPU_GEMM_NPANEL : N;
            if (init) init_bias(C, ldc, bias, 0, M, n0, n1);
            if (init && K == 0) continue;  // C = bias; without init, K = 0 scales C by beta
            const float *b = B + (trans_b ? n0 * ldb : n0);
            cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)(n1 - n0), (int)K, 1.0f, A, (int)lda,
                        b, (int)ldb, beta, C + n0, (int)ldc);
        } else {
            if (init) init_bias(C, ldc, bias, u0, u1, 0, N);
            if (init && K == 0) continue;
            // Rows m0.. of op(A) start at row m0 of A, or at column m0 when A is transposed.
            const float *a = A + (trans_a ? u0 : u0 * lda);
            cblas_sgemm(CblasRowMajor, ta, tb, (int)(u1 - u0), (int)N, (int)K, 1.0f, a, (int)lda,
                        B, (int)ldb, beta, C + u0 * ldc, (int)ldc);
        }
    }
}

void cpu_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    sgemm_split(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, false, NULL);
}

void cpu_sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                    int64_t lda, const float *B, int64_t ldb, const float *bias, float *C,
                    int64_t ldc) {
    sgemm_split(trans_a, trans_b, M, N, K, A, lda, B, ldb, 1.0f, C, ldc, true, bias);
}
