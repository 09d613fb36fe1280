// pixelfly_mlp.h: pixelfly_mlp_fwd/bwd (backend.h) as a composition of a backend's Pixelfly
// and GELU ops on the caller's scratch; the backends' op functions check their dtypes and
// call these with their own table.
#ifndef PF_PIXELFLY_MLP_H
#define PF_PIXELFLY_MLP_H

#include "backend.h"
#include "op_shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

void pf_pixelfly_mlp_fwd_by_ops(const pf_backend *be, const pf_pattern *p1, const pf_pattern *p2,
                                pf_tensor y, pf_tensor xv1, pf_tensor gv2, pf_tensor x,
                                pf_pixelfly_w w1, pf_pixelfly_w w2, pf_tensor scratch);
void pf_pixelfly_mlp_bwd_by_ops(const pf_backend *be, const pf_pattern *p1, const pf_pattern *p2,
                                pf_tensor dx, pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy,
                                pf_tensor x, pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1,
                                pf_pixelfly_w w2, pf_tensor scratch);

#ifdef __cplusplus
}
#endif

#endif
