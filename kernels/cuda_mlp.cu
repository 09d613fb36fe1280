// cuda_mlp.cu: the Pixelfly MLP y = fc2(gelu(fc1(x))) whose backward recomputes the hidden
// activations f, g [N, H] instead of keeping them (backend.h: pixelfly_mlp_fwd/bwd).
//
// Today this is the composition of src/pixelfly_mlp.c over the CUDA ops (pixelfly fwd/bwd,
// gelu fwd/bwd, so any mask of pattern.h) on the caller's scratch, in the act dtype (fp32 or
// bf16; in bf16 f, g, dg and df are rounded to bf16 between the ops, exactly as in the
// unfused MLP). It saves the activation memory:
// 2 x N x H per block, for one more fc1 forward and GELU per backward; it does not save the
// memory traffic of writing and reading f and g.
//
// The fused kernel is a later step: with a flat butterfly of nf factors the sparse part of
// each layer is block-diagonal in groups of 2^nf super-blocks (a random mask has no such
// groups and would keep this composition), so fc1 -> GELU -> fc2 splits into bs / 2^nf
// independent narrow MLPs whose hidden tile [token tile x H / (bs / 2^nf)] can stay in shared
// memory / registers; the low-rank terms carry the mixing across groups (xv1 = x V1^T is a
// small GEMM before it, gv2 = g V2^T a cross-group reduction finished after it, which is why
// the contract saves both). That kernel will keep this contract and its scratch layout.
#include "cuda_ops.h"
#include "pixelfly_mlp.h"

// x, y, xv1, gv2, scratch and the weights act dtype (fp32 or bf16, one per call).
void cuda_pixelfly_mlp_fwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                           pf_tensor xv1, pf_tensor gv2, pf_tensor x, pf_pixelfly_w w1,
                           pf_pixelfly_w w2, pf_tensor scratch) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT_OPT(xv1, dt);
    CUDA_ACT_OPT(gv2, dt);
    CUDA_ACT_OPT(scratch, dt);
    pf_pixelfly_mlp_fwd_by_ops(&pf_backend_cuda, p1, p2, y, xv1, gv2, x, w1, w2, scratch);
}

// dx, dy, x, xv1, gv2, scratch and the weights act dtype; dw1, dw2 fp32 (weight gradients).
void cuda_pixelfly_mlp_bwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                           pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy, pf_tensor x,
                           pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1, pf_pixelfly_w w2,
                           pf_tensor scratch) {
    pf_dtype dt = x.dtype;
    CUDA_ACT_OPT(dx, dt);
    CUDA_ACT(dy, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT_OPT(xv1, dt);
    CUDA_ACT_OPT(gv2, dt);
    CUDA_ACT_OPT(scratch, dt);
    pf_pixelfly_mlp_bwd_by_ops(&pf_backend_cuda, p1, p2, dx, dw1, dw2, dy, x, xv1, gv2, w1, w2,
                               scratch);
}
