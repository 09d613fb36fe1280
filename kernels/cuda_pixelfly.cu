// cuda_pixelfly.cu: the Pixelfly layer y = x S^T + (x V^T) U^T + b (pattern.h) as batched
// cuBLAS GEMMs, one batch per slot k over the bs super-rows (cpu_pixelfly.c does the same
// GEMMs one at a time). Super-row p, slot k, super-column q = col(p, k):
//   forward  y[:, p-block] += x[:, q-block] S[p][k]^T        (ldx = in, ldy = out)
//   dX       dx[:, q-block] += dy[:, p'-block] S[p'][k], p' = col(q, k)   (symmetric mask)
//   dS       dS[p][k] += dy[:, p-block]^T x[:, q-block]
// Within one batch the output blocks are distinct, so no two GEMMs write the same memory;
// the slots of one output run one after another in slot order (deterministic).
#include "cuda_ops.h"

// Which block a pointer of entry (p, k) addresses: the super-row p's, the super-column
// q = col(p, k)'s, or the compact S block [p][k] or [q][k].
typedef enum { PTR_ROW, PTR_COL, PTR_S_ROW, PTR_S_COL } ptr_index;

// Pointer = base + step * index (for the S kinds the index is the block number p*(nf+1)+k,
// and step the block size ob*ib).
typedef struct {
    const float *base;
    int64_t step;
    ptr_index index;
} ptr_rule;

__device__ static const float *rule_ptr(ptr_rule r, int p, int k, int nf) {
    int q = k == 0 ? p : p ^ (1 << (k - 1));  // pf_pattern_col
    int64_t i = r.index == PTR_ROW     ? p
                : r.index == PTR_COL   ? q
                : r.index == PTR_S_ROW ? (int64_t)p * (nf + 1) + k
                                       : (int64_t)q * (nf + 1) + k;
    return r.base + r.step * i;
}

// Pointer arrays of the bs * (nf+1) GEMMs, entry e = k * bs + p (slot-major, so slot k's
// batch is the bs entries from k * bs). ptrs: [3][bs * (nf+1)] for A, B, C.
__global__ static void pointers_kernel(const float **ptrs, ptr_rule a, ptr_rule b, ptr_rule c,
                                       int bs, int nf) {
    int n = bs * (nf + 1);
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        int k = e / bs, p = e % bs;
        ptrs[e] = rule_ptr(a, p, k, nf);
        ptrs[n + e] = rule_ptr(b, p, k, nf);
        ptrs[2 * n + e] = rule_ptr(c, p, k, nf);
    }
}

// The three device pointer arrays of one pixelfly GEMM family (in the context's scratch).
typedef struct {
    const float **a, **b;
    float **c;
} gemm_ptrs;

static gemm_ptrs make_pointers(const pf_pattern *p, ptr_rule a, ptr_rule b, ptr_rule c) {
    int n = p->bs * (p->nf + 1);
    const float **ptrs = (const float **)cuda_scratch(sizeof(float *) * 3 * n);
    pointers_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(ptrs, a, b, c,
                                                                                 p->bs, p->nf);
    CUDA_CHECK_LAUNCH();
    return gemm_ptrs{ptrs, ptrs + n, (float **)(ptrs + 2 * n)};
}

static void check_weights(const pf_pattern *p, pf_pixelfly_w w, bool need_s) {
    if (need_s)
        CUDA_F32(w.S);
    else
        CUDA_F32_OPT(w.S);
    CUDA_F32_OPT(w.U);
    CUDA_F32_OPT(w.V);
    CUDA_F32_OPT(w.b);
    PF_ASSERT(!pf_present(w.S) || pf_numel(w.S) == pf_pattern_sparse_numel(p));
    PF_ASSERT(!pf_present(w.U) || pf_numel(w.U) == (int64_t)p->out * p->rank);
    PF_ASSERT(!pf_present(w.V) || pf_numel(w.V) == (int64_t)p->rank * p->in);
    PF_ASSERT(!pf_present(w.b) || pf_numel(w.b) == p->out);
}

// xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
void cuda_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                       pf_pixelfly_w w) {
    CUDA_F32(y);
    CUDA_F32(x);
    check_weights(p, w, true);
    int64_t N = cuda_rows(x), in = p->in, out = p->out, r = p->rank, ob = p->ob, ib = p->ib;
    PF_ASSERT(cuda_cols(x) == in && cuda_rows(y) == N && cuda_cols(y) == out);
    PF_ASSERT(pf_present(w.b) == p->bias);
    if (r) {
        CUDA_F32(xv);
        CUDA_F32(w.U);
        CUDA_F32(w.V);
        PF_ASSERT(cuda_rows(xv) == N && cuda_cols(xv) == r);
    }
    if (!N) return;
    float *Y = cuda_f(y);
    const float *X = cuda_f(x);
    gemm_ptrs g = make_pointers(p, ptr_rule{X, ib, PTR_COL},
                                ptr_rule{cuda_f(w.S), ob * ib, PTR_S_ROW},
                                ptr_rule{Y, ob, PTR_ROW});
    // Slot 0 (the diagonal) covers every column block of y once: it overwrites (beta = 0).
    for (int k = 0; k <= p->nf; k++) {
        int o = k * p->bs;
        cuda_sgemm_batched(false, true, N, ob, ib, 1.0f, g.a + o, in, g.b + o, ib,
                           k == 0 ? 0.0f : 1.0f, g.c + o, out, p->bs);
    }
    if (r) {
        cuda_sgemm(false, true, N, r, in, 1.0f, X, in, cuda_f(w.V), in, 0.0f, cuda_f(xv), r);
        cuda_sgemm(false, true, N, out, r, 1.0f, cuda_f(xv), r, cuda_f(w.U), r, 1.0f, Y, out);
    }
    if (pf_present(w.b)) cuda_add_bias(Y, cuda_f(w.b), N, out);
}

// dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
// dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
void cuda_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                       pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w) {
    CUDA_F32_OPT(dx);
    CUDA_F32(dy);
    CUDA_F32(x);
    check_weights(p, w, true);
    check_weights(p, dw, false);
    int64_t N = cuda_rows(x), in = p->in, out = p->out, r = p->rank, ob = p->ob, ib = p->ib;
    PF_ASSERT(cuda_cols(x) == in && cuda_rows(dy) == N && cuda_cols(dy) == out);
    PF_ASSERT(!pf_present(dx) || (cuda_rows(dx) == N && cuda_cols(dx) == in));
    bool need_dxv = r && (pf_present(dx) || pf_present(dw.V));
    if (r) {
        CUDA_F32(w.U);
        CUDA_F32(w.V);
    }
    if (r && pf_present(dw.U)) {
        CUDA_F32(xv);
        PF_ASSERT(cuda_rows(xv) == N && cuda_cols(xv) == r);
    }
    if (need_dxv) {
        CUDA_F32(dxv);
        PF_ASSERT(cuda_rows(dxv) == N && cuda_cols(dxv) == r);
    }
    if (!N) return;
    const float *X = cuda_f(x), *DY = cuda_f(dy);
    if (need_dxv)
        cuda_sgemm(false, false, N, r, out, 1.0f, DY, out, cuda_f(w.U), r, 0.0f, cuda_f(dxv), r);
    if (pf_present(dx)) {
        // Entry (q, k): super-row p' = col(q, k) feeds super-column q through S[p'][k].
        gemm_ptrs g = make_pointers(p, ptr_rule{DY, ob, PTR_COL},
                                    ptr_rule{cuda_f(w.S), ob * ib, PTR_S_COL},
                                    ptr_rule{cuda_f(dx), ib, PTR_ROW});
        for (int k = 0; k <= p->nf; k++) {
            int o = k * p->bs;
            cuda_sgemm_batched(false, false, N, ib, ob, 1.0f, g.a + o, out, g.b + o, ib, 1.0f,
                               g.c + o, in, p->bs);
        }
        if (r)
            cuda_sgemm(false, false, N, in, r, 1.0f, cuda_f(dxv), r, cuda_f(w.V), in, 1.0f,
                       cuda_f(dx), in);
    }
    if (pf_present(dw.S)) {
        // Every (p, k) writes its own dS block: one batch over all of them.
        gemm_ptrs g = make_pointers(p, ptr_rule{DY, ob, PTR_ROW}, ptr_rule{X, ib, PTR_COL},
                                    ptr_rule{cuda_f(dw.S), ob * ib, PTR_S_ROW});
        cuda_sgemm_batched(true, false, ob, ib, N, 1.0f, g.a, out, g.b, in, 1.0f, g.c, ib,
                           p->bs * (p->nf + 1));
    }
    if (r && pf_present(dw.U))
        cuda_sgemm(true, false, out, r, N, 1.0f, DY, out, cuda_f(xv), r, 1.0f, cuda_f(dw.U), r);
    if (r && pf_present(dw.V))
        cuda_sgemm(true, false, r, in, N, 1.0f, cuda_f(dxv), r, X, in, 1.0f, cuda_f(dw.V), in);
    if (pf_present(dw.b)) cuda_colsum_add(cuda_f(dw.b), DY, N, out, out);
}
