// cpu_gemm.c: every GEMM of the CPU backend. OpenBLAS runs single-threaded; the parallelism
// is OpenMP's alone, by splitting the M rows of C across the threads. Two thread pools (the
// OpenMP one for elementwise ops and OpenBLAS's own pthreads spinning between calls) fought
// over the cores and made step times bimodal; one pool does not.
#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include "cpu_ops.h"

static pthread_once_t blas_single_once = PTHREAD_ONCE_INIT;

static void blas_single(void) { openblas_set_num_threads(1); }

void cpu_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    pthread_once(&blas_single_once, blas_single);
    if (M == 0 || N == 0) return;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    // Rows m0.. of op(A) start at row m0 of A, or at column m0 when A is transposed.
    int chunks = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (chunks > M) chunks = (int)M;
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
    for (int c = 0; c < chunks; c++) {
        int64_t m0 = M * c / chunks, m1 = M * (c + 1) / chunks;
        const float *a = A + (trans_a ? m0 : m0 * lda);
        cblas_sgemm(CblasRowMajor, ta, tb, (int)(m1 - m0), (int)N, (int)K, 1.0f, a, (int)lda, B,
                    (int)ldb, beta, C + m0 * ldc, (int)ldc);
    }
}
