// op_shapes.h: the shape contracts of the ops in backend.h, checked once here and called by
// every backend's entry point (which checks dtype and device itself), so that CPU and CUDA
// cannot drift apart on what an op accepts. Violations are internal errors (PF_ASSERT).
#ifndef PF_OP_SHAPES_H
#define PF_OP_SHAPES_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Any tensor seen as a matrix [rows, last dim].
static inline int64_t pf_cols(pf_tensor t) { return t.ndim ? t.shape[t.ndim - 1] : 1; }
static inline int64_t pf_rows(pf_tensor t) {
    int64_t c = pf_cols(t);
    return c ? pf_numel(t) / c : 0;
}

typedef struct {
    int64_t N, in, out;
} pf_linear_shape;

// x [N,in], w [out,in], y (or dy) [N,out], b (or db) absent or [out]; the backward's dx absent
// or [N,in] and dw absent or out*in elements (the forward passes pf_none() for both).
pf_linear_shape pf_shape_linear(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b, pf_tensor dx,
                                pf_tensor dw);

typedef struct {
    int64_t N, in, out, r;
    bool need_dxv;  // backward: rank > 0 and dx or dw.V present (dxv is then computed)
} pf_pixelfly_shape;

// Forward of the Pixelfly layer of pattern p: x [N, p->in], y [N, p->out]; w.S present, w.b
// present exactly when p->bias, w.U, w.V, w.b of the pattern's sizes (below); with a rank > 0,
// w.U, w.V present and xv [N, rank].
pf_pixelfly_shape pf_shape_pixelfly(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                                    pf_pixelfly_w w);
// Backward: x [N, p->in], dy [N, p->out], dx absent or [N, p->in]; w as in forward except the
// bias; each part of dw absent or of its size: S sparse_numel, U out*rank, V rank*in, b out.
// With a rank > 0: w.U, w.V present, xv [N, rank] when dw.U is present, dxv [N, rank] when
// need_dxv.
pf_pixelfly_shape pf_shape_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw,
                                        pf_tensor dxv, pf_tensor dy, pf_tensor x, pf_tensor xv,
                                        pf_pixelfly_w w);

typedef struct {
    int64_t N, C;
} pf_layernorm_shape;

// x [N,C]; y (or dy) N*C elements with last dim C; mean, rstd N elements; g [C]; b (or db)
// absent or [C]; the backward's dx absent or like y and dg absent or [C] (the forward passes
// pf_none() for both).
pf_layernorm_shape pf_shape_layernorm(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x,
                                      pf_tensor g, pf_tensor b, pf_tensor dx, pf_tensor dg);

typedef struct {
    int64_t BT, T, C, vocab;  // vocab: wte's rows, 0 when wte is absent
} pf_embedding_shape;

// ids [B,T]; y (or dy) B*T rows of C; wte (or dwte) absent or [vocab, C]; wpe (or dwpe) absent
// or [>= T, C]. The forward's backend requires wte. Token ids are not read (the data may be on
// the device): the CPU backend checks them against vocab itself.
pf_embedding_shape pf_shape_embedding(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe);

typedef struct {
    int64_t B, T, C, NH, hd;
} pf_attention_shape;

// qkv [B,T,3C], out [B,T,C] (or dout), lse [B,NH,T], C divisible by n_head.
pf_attention_shape pf_shape_attention(pf_tensor qkv, pf_tensor out, pf_tensor lse, int n_head);
// logits [N,Vp] with 0 < V <= Vp, targets [N], smoothing in [0, 1]; returns {N, Vp}.
void pf_shape_xent(pf_tensor logits, pf_tensor targets, int V, float smoothing, int64_t *N,
                   int64_t *Vp);
// y [B,C,P] and x [B,P,C] (either direction: the backward passes dx, dy).
void pf_shape_transpose(pf_tensor bpc, pf_tensor bcp);
// pooled [B,C] (or dy of cls_select), tokens [B,T,C] with T > 0.
void pf_shape_pool(pf_tensor pooled, pf_tensor tokens);
// y [B,P+1,C], x [B,P,C], cls [C], pos [(P+1)*C] optional.
void pf_shape_cls_token(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos);
// dy [B,T,C]; dx [B,T-1,C], dcls [C], dpos [T*C], each optional.
void pf_shape_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy);
// p, g, m, v of one size, step >= 1; returns the size.
int64_t pf_shape_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v,
                       const pf_adamw_args *a);


// Pixelfly MLP (pixelfly_mlp_fwd/bwd): dimensions and the layout of its scratch, whose parts
// start at multiples of 64 elements (128-byte aligned in bf16 when the buffer is):
//   f [N, H] (fc1's output), g [N, H] (gelu(f); df in backward), dg [N, H], xv [N, max(r1, r2)]
// (fc1's recomputed x V1^T, then dgv2 and dxv1 of the two pixelfly backwards).
typedef struct {
    int64_t N, in, H, out, r1, r2;
    int64_t f, g, dg, xv;  // element offsets into scratch
    int64_t numel;         // the scratch it needs, in elements
} pf_mlp_shape;

// The scratch of pixelfly_mlp_fwd/bwd over N rows, in elements of the act dtype.
int64_t pf_pixelfly_mlp_scratch_numel(const pf_pattern *p1, const pf_pattern *p2, int64_t N);
// p1->out == p2->in; x [N, p1->in]; y (or dy) [N, p2->out]; xv1 [N, r1] and gv2 [N, r2] present
// when the rank is > 0; dx absent or [N, p1->in]; scratch with at least numel elements.
pf_mlp_shape pf_shape_pixelfly_mlp(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                                   pf_tensor xv1, pf_tensor gv2, pf_tensor x, pf_tensor dx,
                                   pf_tensor scratch);

#ifdef __cplusplus
}
#endif

#endif
