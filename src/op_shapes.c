#include "op_shapes.h"

#include "common.h"

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
