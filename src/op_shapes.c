#include "op_shapes.h"

#include "common.h"

pf_linear_shape pf_shape_linear(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b, pf_tensor dx,
                                pf_tensor dw) {
    PF_ASSERT(w.ndim == 2);
    pf_linear_shape d = {pf_rows(x), pf_cols(x), w.shape[0]};
    PF_ASSERT(w.shape[1] == d.in && pf_rows(y) == d.N && pf_cols(y) == d.out);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == d.out);
    PF_ASSERT(!pf_present(dx) || (pf_rows(dx) == d.N && pf_cols(dx) == d.in));
    PF_ASSERT(!pf_present(dw) || pf_numel(dw) == d.out * d.in);
    return d;
}

// The parts of w (weights or their gradients) that are present have the pattern's sizes.
static void pixelfly_weights(const pf_pattern *p, pf_pixelfly_w w) {
    PF_ASSERT(!pf_present(w.S) || pf_numel(w.S) == pf_pattern_sparse_numel(p));
    PF_ASSERT(!pf_present(w.U) || pf_numel(w.U) == (int64_t)p->out * p->rank);
    PF_ASSERT(!pf_present(w.V) || pf_numel(w.V) == (int64_t)p->rank * p->in);
    PF_ASSERT(!pf_present(w.b) || pf_numel(w.b) == p->out);
}

// x [N, in], y (or dy) [N, out], w's sizes, S present and U, V present with a rank.
static pf_pixelfly_shape pixelfly_common(const pf_pattern *p, pf_tensor y, pf_tensor x,
                                         pf_pixelfly_w w) {
    pixelfly_weights(p, w);
    pf_pixelfly_shape d = {pf_rows(x), p->in, p->out, p->rank, false};
    PF_ASSERT(pf_cols(x) == d.in && pf_rows(y) == d.N && pf_cols(y) == d.out);
    PF_ASSERT(pf_present(w.S) && (!d.r || (pf_present(w.U) && pf_present(w.V))));
    return d;
}

static bool rows_of(pf_tensor t, int64_t N, int64_t C) {
    return pf_present(t) && pf_rows(t) == N && pf_cols(t) == C;
}

pf_pixelfly_shape pf_shape_pixelfly(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                                    pf_pixelfly_w w) {
    pf_pixelfly_shape d = pixelfly_common(p, y, x, w);
    PF_ASSERT(pf_present(w.b) == p->bias);
    PF_ASSERT(!d.r || rows_of(xv, d.N, d.r));
    return d;
}

pf_pixelfly_shape pf_shape_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw,
                                        pf_tensor dxv, pf_tensor dy, pf_tensor x, pf_tensor xv,
                                        pf_pixelfly_w w) {
    pf_pixelfly_shape d = pixelfly_common(p, dy, x, w);
    pixelfly_weights(p, dw);
    PF_ASSERT(!pf_present(dx) || (pf_rows(dx) == d.N && pf_cols(dx) == d.in));
    d.need_dxv = d.r && (pf_present(dx) || pf_present(dw.V));
    PF_ASSERT(!(d.r && pf_present(dw.U)) || rows_of(xv, d.N, d.r));
    PF_ASSERT(!d.need_dxv || rows_of(dxv, d.N, d.r));
    return d;
}

pf_layernorm_shape pf_shape_layernorm(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x,
                                      pf_tensor g, pf_tensor b, pf_tensor dx, pf_tensor dg) {
    pf_layernorm_shape d = {pf_rows(x), pf_cols(x)};
    PF_ASSERT(pf_numel(y) == d.N * d.C && pf_cols(y) == d.C);
    PF_ASSERT(!pf_present(dx) || (pf_numel(dx) == d.N * d.C && pf_cols(dx) == d.C));
    PF_ASSERT(pf_numel(mean) == d.N && pf_numel(rstd) == d.N && pf_numel(g) == d.C);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == d.C);
    PF_ASSERT(!pf_present(dg) || pf_numel(dg) == d.C);
    return d;
}

pf_embedding_shape pf_shape_embedding(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    PF_ASSERT(ids.ndim == 2);
    pf_embedding_shape d = {pf_numel(ids), ids.shape[1], pf_cols(y), 0};
    PF_ASSERT(pf_rows(y) == d.BT);
    if (pf_present(wte)) {
        PF_ASSERT(wte.ndim == 2 && wte.shape[1] == d.C);
        d.vocab = wte.shape[0];
    }
    PF_ASSERT(!pf_present(wpe) || (wpe.ndim == 2 && wpe.shape[0] >= d.T && wpe.shape[1] == d.C));
    return d;
}

pf_attention_shape pf_shape_attention(pf_tensor qkv, pf_tensor out, pf_tensor lse,
                                      int n_head) {
    PF_ASSERT(qkv.ndim == 3 && n_head > 0);
    pf_attention_shape d = {qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3, n_head, 0};
    PF_ASSERT(qkv.shape[2] == 3 * d.C && d.C % n_head == 0);
    d.hd = d.C / n_head;
    PF_ASSERT(pf_rows(out) == d.B * d.T && pf_cols(out) == d.C);
    PF_ASSERT(lse.ndim == 3 && lse.shape[0] == d.B && lse.shape[1] == d.NH &&
              lse.shape[2] == d.T);
    return d;
}

void pf_shape_xent(pf_tensor logits, pf_tensor targets, int V, float smoothing, int64_t *N,
                   int64_t *Vp) {
    *N = pf_rows(logits);
    *Vp = pf_cols(logits);
    PF_ASSERT(pf_numel(targets) == *N);
    PF_ASSERT(V > 0 && V <= *Vp && smoothing >= 0 && smoothing <= 1);
}

void pf_shape_transpose(pf_tensor a, pf_tensor b) {
    PF_ASSERT(a.ndim == 3 && b.ndim == 3 && a.shape[0] == b.shape[0] &&
              a.shape[1] == b.shape[2] && a.shape[2] == b.shape[1]);
}

void pf_shape_pool(pf_tensor pooled, pf_tensor tokens) {
    PF_ASSERT(tokens.ndim == 3 && tokens.shape[1] > 0 && pf_rows(pooled) == tokens.shape[0] &&
              pf_cols(pooled) == tokens.shape[2]);
}

void pf_shape_cls_token(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos) {
    PF_ASSERT(x.ndim == 3 && y.ndim == 3);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    PF_ASSERT(y.shape[0] == B && y.shape[1] == P + 1 && y.shape[2] == C && pf_numel(cls) == C);
    PF_ASSERT(!pf_present(pos) || pf_numel(pos) == (P + 1) * C);
}

void pf_shape_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy) {
    PF_ASSERT(dy.ndim == 3);
    int64_t B = dy.shape[0], T = dy.shape[1], C = dy.shape[2];
    PF_ASSERT(!pf_present(dx) || (dx.ndim == 3 && dx.shape[0] == B && dx.shape[1] == T - 1 &&
                                  dx.shape[2] == C));
    PF_ASSERT(!pf_present(dcls) || pf_numel(dcls) == C);
    PF_ASSERT(!pf_present(dpos) || pf_numel(dpos) == T * C);
}

int64_t pf_shape_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v,
                       const pf_adamw_args *a) {
    int64_t n = pf_numel(p);
    PF_ASSERT(pf_numel(g) == n && pf_numel(m) == n && pf_numel(v) == n && a->step >= 1);
    return n;
}

static int64_t round64(int64_t n) { return (n + 63) / 64 * 64; }

static pf_mlp_shape mlp_layout(const pf_pattern *p1, const pf_pattern *p2, int64_t N) {
    PF_ASSERT(p1->out == p2->in && N >= 0);
    pf_mlp_shape d = {N, p1->in, p1->out, p2->out, p1->rank, p2->rank, 0, 0, 0, 0, 0};
    int64_t fh = round64(N * d.H), r = d.r1 > d.r2 ? d.r1 : d.r2;
    d.g = fh;
    d.dg = 2 * fh;
    d.xv = 3 * fh;
    d.numel = 3 * fh + round64(N * r);
    return d;
}

int64_t pf_pixelfly_mlp_scratch_numel(const pf_pattern *p1, const pf_pattern *p2, int64_t N) {
    return mlp_layout(p1, p2, N).numel;
}

pf_mlp_shape pf_shape_pixelfly_mlp(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                                   pf_tensor xv1, pf_tensor gv2, pf_tensor x, pf_tensor dx,
                                   pf_tensor scratch) {
    int64_t N = pf_rows(x);
    pf_mlp_shape d = mlp_layout(p1, p2, N);
    PF_ASSERT(pf_cols(x) == d.in && pf_rows(y) == N && pf_cols(y) == d.out);
    PF_ASSERT(!d.r1 || (pf_present(xv1) && pf_rows(xv1) == N && pf_cols(xv1) == d.r1));
    PF_ASSERT(!d.r2 || (pf_present(gv2) && pf_rows(gv2) == N && pf_cols(gv2) == d.r2));
    PF_ASSERT(!pf_present(dx) || (pf_rows(dx) == N && pf_cols(dx) == d.in));
    PF_ASSERT(d.numel == 0 || (pf_present(scratch) && pf_numel(scratch) >= d.numel));
    return d;
}
