// cpu_pixelfly.c: the Pixelfly layer y = x S^T + (x V^T) U^T + b (pattern.h) as one strided
// GEMM per stored super-block: super-row p, slot k, super-column q = col(p, k) is
//   y[:, p*ob:(p+1)*ob] += x[:, q*ib:(q+1)*ib] S[p][k]^T      (ldx = in, ldy = out)
// The super-blocks are small GEMMs (K = in/bs or out/bs), where OpenBLAS's own threading
// costs more than it saves; so the threads here split the independent outputs (super-rows of
// y and dS, super-columns of dx) and each GEMM runs single-threaded. Every output block is
// owned by one thread and sums its slots in slot order: the same bits for any thread count.
#include <cblas.h>
#include <string.h>

#include "cpu_ops.h"

// The [ob, ib] block of super-row `row`, slot k, in compact storage S: [bs, nf+1, ob, ib].
static float *block(const pf_pattern *p, float *S, int row, int k) {
    return S + ((size_t)row * (p->nf + 1) + k) * p->ob * p->ib;
}

// OpenBLAS single-threaded for the duration of the caller's parallel loop; returns the
// previous setting for blas_threads_restore.
static int blas_threads_single(void) {
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return n;
}

static void blas_threads_restore(int n) { openblas_set_num_threads(n); }

static void check_weights(const pf_pattern *p, pf_pixelfly_w w, bool need_s) {
    if (need_s)
        CPU_F32(w.S);
    else
        CPU_F32_OPT(w.S);
    CPU_F32_OPT(w.U);
    CPU_F32_OPT(w.V);
    CPU_F32_OPT(w.b);
    PF_ASSERT(!pf_present(w.S) || pf_numel(w.S) == pf_pattern_sparse_numel(p));
    PF_ASSERT(!pf_present(w.U) || pf_numel(w.U) == (int64_t)p->out * p->rank);
    PF_ASSERT(!pf_present(w.V) || pf_numel(w.V) == (int64_t)p->rank * p->in);
    PF_ASSERT(!pf_present(w.b) || pf_numel(w.b) == p->out);
}

// xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
void cpu_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                      pf_pixelfly_w w) {
    CPU_F32(y);
    CPU_F32(x);
    check_weights(p, w, true);
    int64_t N = cpu_rows(x), in = p->in, out = p->out, r = p->rank, ob = p->ob, ib = p->ib;
    PF_ASSERT(cpu_cols(x) == in && cpu_rows(y) == N && cpu_cols(y) == out);
    PF_ASSERT(pf_present(w.b) == p->bias);
    if (r) {
        CPU_F32(xv);
        CPU_F32(w.U);
        CPU_F32(w.V);
        PF_ASSERT(cpu_rows(xv) == N && cpu_cols(xv) == r);
    }
    float *Y = cpu_f(y);
    const float *X = cpu_f(x);
    float *S = cpu_f(w.S);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        if (pf_present(w.b))
            memcpy(Y + n * out, w.b.data, sizeof(float) * out);
        else
            memset(Y + n * out, 0, sizeof(float) * out);
    }
    if (!N) return;
    int blas = blas_threads_single();
#pragma omp parallel for schedule(static)
    for (int row = 0; row < p->bs; row++)
        for (int k = 0; k <= p->nf; k++) {
            int q = pf_pattern_col(p, row, k);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, ob, ib, 1.0f, X + q * ib, in,
                        block(p, S, row, k), ib, 1.0f, Y + row * ob, out);
        }
    blas_threads_restore(blas);
    if (r) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, in, 1.0f, X, in, cpu_f(w.V),
                    in, 0.0f, cpu_f(xv), r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, r, 1.0f, cpu_f(xv), r,
                    cpu_f(w.U), r, 1.0f, Y, out);
    }
}

// dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
// dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
void cpu_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                      pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w) {
    CPU_F32_OPT(dx);
    CPU_F32(dy);
    CPU_F32(x);
    check_weights(p, w, true);
    check_weights(p, dw, false);
    int64_t N = cpu_rows(x), in = p->in, out = p->out, r = p->rank, ob = p->ob, ib = p->ib;
    PF_ASSERT(cpu_cols(x) == in && cpu_rows(dy) == N && cpu_cols(dy) == out);
    PF_ASSERT(!pf_present(dx) || (cpu_rows(dx) == N && cpu_cols(dx) == in));
    bool need_dxv = r && (pf_present(dx) || pf_present(dw.V));
    if (r) {
        CPU_F32(w.U);
        CPU_F32(w.V);
    }
    if (r && pf_present(dw.U)) {
        CPU_F32(xv);
        PF_ASSERT(cpu_rows(xv) == N && cpu_cols(xv) == r);
    }
    if (need_dxv) {
        CPU_F32(dxv);
        PF_ASSERT(cpu_rows(dxv) == N && cpu_cols(dxv) == r);
    }
    if (!N) return;
    const float *X = cpu_f(x), *DY = cpu_f(dy);
    float *S = cpu_f(w.S);
    if (need_dxv)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, out, 1.0f, DY, out,
                    cpu_f(w.U), r, 0.0f, cpu_f(dxv), r);
    if (pf_present(dx)) {
        // Super-column q of dx gathers from super-rows p = col(q, k): the mask is symmetric
        // and (p, q) sits in slot k of row p too, since p xor q is the same bit.
        float *DX = cpu_f(dx);
        int blas = blas_threads_single();
#pragma omp parallel for schedule(static)
        for (int q = 0; q < p->bs; q++)
            for (int k = 0; k <= p->nf; k++) {
                int row = pf_pattern_col(p, q, k);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, ib, ob, 1.0f,
                            DY + row * ob, out, block(p, S, row, k), ib, 1.0f, DX + q * ib, in);
            }
        blas_threads_restore(blas);
        if (r)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, cpu_f(dxv),
                        r, cpu_f(w.V), in, 1.0f, DX, in);
    }
    if (pf_present(dw.S)) {
        int blas = blas_threads_single();
#pragma omp parallel for schedule(static)
        for (int row = 0; row < p->bs; row++)
            for (int k = 0; k <= p->nf; k++) {
                int q = pf_pattern_col(p, row, k);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ob, ib, N, 1.0f,
                            DY + row * ob, out, X + q * ib, in, 1.0f,
                            block(p, cpu_f(dw.S), row, k), ib);
            }
        blas_threads_restore(blas);
    }
    if (r && pf_present(dw.U))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, N, 1.0f, DY, out,
                    cpu_f(xv), r, 1.0f, cpu_f(dw.U), r);
    if (r && pf_present(dw.V))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, cpu_f(dxv), r, X,
                    in, 1.0f, cpu_f(dw.V), in);
    if (pf_present(dw.b)) cpu_colsum_add(cpu_f(dw.b), DY, N, out);
}
