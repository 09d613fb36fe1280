// cpu_pixelfly.c: the block-sparse layer y = x S^T + (x V^T) U^T + b (pattern.h: the Pixelfly
// flat butterfly, a butterfly factor or a random mask) as one strided
// GEMM per stored super-block: super-row p, slot k, super-column q = col(p, k) is
//   y[:, p*ob:(p+1)*ob] += x[:, q*ib:(q+1)*ib] S[p][k]^T      (ldx = in, ldy = out)
// The super-blocks are small GEMMs (K = in/bs or out/bs), so the threads split the
// independent outputs (super-rows of y and dS, super-columns of dx) and each block GEMM is one
// single-threaded call. Every output block is owned by one thread and sums its slots in slot
// order: the same bits for any thread count.
#include <string.h>

#include "cpu_ops.h"

// The [ob, ib] block of super-row `row`, slot k, in compact storage S: [bs, nf+1, ob, ib].
static float *block(const pf_pattern *p, float *S, int row, int k) {
    return S + ((size_t)row * (p->nf + 1) + k) * p->ob * p->ib;
}

// The parts of w present are fp32 host tensors (S required when need_s); their sizes are
// checked by pf_shape_pixelfly(_bwd).
static void check_weights(pf_pixelfly_w w, bool need_s) {
    if (need_s)
        CPU_F32(w.S);
    else
        CPU_F32_OPT(w.S);
    CPU_F32_OPT(w.U);
    CPU_F32_OPT(w.V);
    CPU_F32_OPT(w.b);
}

// xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
void cpu_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                      pf_pixelfly_w w) {
    CPU_F32(y);
    CPU_F32(x);
    check_weights(w, true);
    if (p->rank) {
        CPU_F32(xv);
        CPU_F32(w.U);
        CPU_F32(w.V);
    }
    pf_pixelfly_shape d = pf_shape_pixelfly(p, y, xv, x, w);
    int64_t N = d.N, in = d.in, out = d.out, r = d.r, ob = p->ob, ib = p->ib;
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
#pragma omp parallel for schedule(static)
    for (int row = 0; row < p->bs; row++)
        for (int k = 0; k <= p->nf; k++) {
            int q = pf_pattern_col(p, row, k);
            cpu_sgemm(false, true, N, ob, ib, X + q * ib, in, block(p, S, row, k), ib, 1.0f,
                      Y + row * ob, out);
        }
    if (r) {
        cpu_sgemm(false, true, N, r, in, X, in, cpu_f(w.V), in, 0.0f, cpu_f(xv), r);
        cpu_sgemm(false, true, N, out, r, cpu_f(xv), r, cpu_f(w.U), r, 1.0f, Y, out);
    }
}

// dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
// dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
void cpu_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                      pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w) {
    CPU_F32_OPT(dx);
    CPU_F32(dy);
    CPU_F32(x);
    check_weights(w, true);
    check_weights(dw, false);
    pf_pixelfly_shape d = pf_shape_pixelfly_bwd(p, dx, dw, dxv, dy, x, xv, w);
    int64_t N = d.N, in = d.in, out = d.out, r = d.r, ob = p->ob, ib = p->ib;
    bool need_dxv = d.need_dxv;
    if (r) {
        CPU_F32(w.U);
        CPU_F32(w.V);
    }
    if (r && pf_present(dw.U)) CPU_F32(xv);
    if (need_dxv) CPU_F32(dxv);
    if (!N) return;
    const float *X = cpu_f(x), *DY = cpu_f(dy);
    float *S = cpu_f(w.S);
    if (need_dxv)
        cpu_sgemm(false, false, N, r, out, DY, out, cpu_f(w.U), r, 0.0f, cpu_f(dxv), r);
    if (pf_present(dx)) {
        // Super-column q of dx gathers from the super-rows p = src(q, k) that hold it at
        // slot k (every slot is a permutation: pattern.h).
        float *DX = cpu_f(dx);
    #pragma omp parallel for schedule(static)
        for (int q = 0; q < p->bs; q++)
            for (int k = 0; k <= p->nf; k++) {
                int row = pf_pattern_src(p, q, k);
                cpu_sgemm(false, false, N, ib, ob, DY + row * ob, out, block(p, S, row, k), ib,
                          1.0f, DX + q * ib, in);
            }
        if (r)
            cpu_sgemm(false, false, N, in, r, cpu_f(dxv), r, cpu_f(w.V), in, 1.0f, DX, in);
    }
    if (pf_present(dw.S)) {
    #pragma omp parallel for schedule(static)
        for (int row = 0; row < p->bs; row++)
            for (int k = 0; k <= p->nf; k++) {
                int q = pf_pattern_col(p, row, k);
                cpu_sgemm(true, false, ob, ib, N, DY + row * ob, out, X + q * ib, in, 1.0f,
                          block(p, cpu_f(dw.S), row, k), ib);
            }
        }
    if (r && pf_present(dw.U))
        cpu_sgemm(true, false, out, r, N, DY, out, cpu_f(xv), r, 1.0f, cpu_f(dw.U), r);
    if (r && pf_present(dw.V))
        cpu_sgemm(true, false, r, in, N, cpu_f(dxv), r, X, in, 1.0f, cpu_f(dw.V), in);
    if (pf_present(dw.b)) cpu_colsum_add(cpu_f(dw.b), DY, N, out);
}
