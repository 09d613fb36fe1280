// cpu_mlp.c: the Pixelfly MLP op (backend.h: pixelfly_mlp_fwd/bwd) on the CPU: the composition
// of src/pixelfly_mlp.c over the CPU backend's own ops, in fp32.
#include "cpu_ops.h"
#include "pixelfly_mlp.h"

void cpu_pixelfly_mlp_fwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y, pf_tensor xv1,
                          pf_tensor gv2, pf_tensor x, pf_pixelfly_w w1, pf_pixelfly_w w2,
                          pf_tensor scratch) {
    CPU_F32(y);
    CPU_F32(x);
    CPU_F32_OPT(xv1);
    CPU_F32_OPT(gv2);
    CPU_F32_OPT(scratch);
    pf_pixelfly_mlp_fwd_by_ops(&pf_backend_cpu, p1, p2, y, xv1, gv2, x, w1, w2, scratch);
}

void cpu_pixelfly_mlp_bwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                          pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy, pf_tensor x,
                          pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1, pf_pixelfly_w w2,
                          pf_tensor scratch) {
    CPU_F32_OPT(dx);
    CPU_F32(dy);
    CPU_F32(x);
    CPU_F32_OPT(xv1);
    CPU_F32_OPT(gv2);
    CPU_F32_OPT(scratch);
    pf_pixelfly_mlp_bwd_by_ops(&pf_backend_cpu, p1, p2, dx, dw1, dw2, dy, x, xv1, gv2, w1, w2,
                               scratch);
}
