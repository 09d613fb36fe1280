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

#ifdef __cplusplus
}
#endif

#endif
