// pixelfly_mlp.c: the Pixelfly MLP y = fc2(gelu(fc1(x))) whose backward recomputes the hidden
// activations instead of keeping them (backend.h: pixelfly_mlp_fwd/bwd), as a composition of a
// backend's own Pixelfly and GELU ops. Both backends run it today (their op functions check
// dtypes, then call it with their table); f and g live only in the caller's scratch during a
// call. The backward runs exactly the ops of the unfused MLP's backward (pixelfly_bwd of fc2,
// gelu_bwd, pixelfly_bwd of fc1) on the recomputed f and g, so its results are bit-identical
// to the unfused MLP's; it costs one more fc1 forward (with its x V1^T) and GELU per call. A
// fused kernel (docs/ARCHITECTURE.md) would replace the composition behind the same op.
#include "pixelfly_mlp.h"

// Rows x cols of the scratch (its dtype) from element offset `off`; absent when empty (a
// rank-0 xv).
static pf_tensor part(pf_tensor scratch, int64_t off, int64_t rows, int64_t cols) {
    if (!rows || !cols) return pf_none();
    void *p = (char *)scratch.data + (size_t)off * pf_dtype_size(scratch.dtype);
    return pf_tensor_2d(p, scratch.dtype, scratch.device, rows, cols);
}

static pf_tensor opt(pf_tensor t, int64_t r) { return r ? t : pf_none(); }

static void zero_part(const pf_backend *be, pf_tensor t) {
    be->zero(t.data, (size_t)pf_numel(t) * pf_dtype_size(t.dtype));
}

// f = fc1(x) into scratch.f (x V1^T into xv1), g = gelu(f) into scratch.g.
static void hidden(const pf_backend *be, const pf_mlp_shape *d, const pf_pattern *p1,
                   pf_tensor x, pf_pixelfly_w w1, pf_tensor xv1, pf_tensor scratch) {
    pf_tensor f = part(scratch, d->f, d->N, d->H);
    be->pixelfly_fwd(p1, f, xv1, x, w1);
    be->gelu_fwd(part(scratch, d->g, d->N, d->H), f);
}

void pf_pixelfly_mlp_fwd_by_ops(const pf_backend *be, const pf_pattern *p1, const pf_pattern *p2,
                                pf_tensor y, pf_tensor xv1, pf_tensor gv2, pf_tensor x,
                                pf_pixelfly_w w1, pf_pixelfly_w w2, pf_tensor scratch) {
    pf_mlp_shape d = pf_shape_pixelfly_mlp(p1, p2, y, xv1, gv2, x, pf_none(), scratch);
    if (!d.N) return;
    hidden(be, &d, p1, x, w1, opt(xv1, d.r1), scratch);
    be->pixelfly_fwd(p2, y, opt(gv2, d.r2), part(scratch, d.g, d.N, d.H), w2);
}

void pf_pixelfly_mlp_bwd_by_ops(const pf_backend *be, const pf_pattern *p1, const pf_pattern *p2,
                                pf_tensor dx, pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy,
                                pf_tensor x, pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1,
                                pf_pixelfly_w w2, pf_tensor scratch) {
    pf_mlp_shape d = pf_shape_pixelfly_mlp(p1, p2, dy, xv1, gv2, x, dx, scratch);
    // Without dx and fc1 gradients, only fc2's gradients are wanted: no dg, df.
    bool need_df = pf_present(dx) || pf_present(dw1.S) || pf_present(dw1.U) ||
                   pf_present(dw1.V) || pf_present(dw1.b);
    if (!d.N) return;
    pf_tensor f = part(scratch, d.f, d.N, d.H), g = part(scratch, d.g, d.N, d.H);
    pf_tensor dg = part(scratch, d.dg, d.N, d.H), df = g;  // g is dead once fc2's backward ran
    // fc1's x V1^T is recomputed into the xv part (bit-identical to the saved xv1, which the
    // dU1 gradient below reads): the xv part is free until the first pixelfly_bwd uses it for
    // fc2's dxv.
    hidden(be, &d, p1, x, w1, part(scratch, d.xv, d.N, d.r1), scratch);
    if (need_df) zero_part(be, dg);
    be->pixelfly_bwd(p2, need_df ? dg : pf_none(), dw2, part(scratch, d.xv, d.N, d.r2), dy, g,
                     opt(gv2, d.r2), w2);
    if (!need_df) return;
    zero_part(be, df);
    be->gelu_bwd(df, dg, f);
    be->pixelfly_bwd(p1, dx, dw1, part(scratch, d.xv, d.N, d.r1), df, x, opt(xv1, d.r1), w1);
}
