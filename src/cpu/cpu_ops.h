// cpu_ops.h: the CPU backend's op functions (one .c file per op family) and the checks and
// helpers they share. Only cpu_backend.c, which builds the pf_backend table, includes this.
//
// Every op treats a tensor of any rank as a matrix [rows, cols] with cols = the last dim,
// so activations may be passed as [B, T, C] or [N, C] alike.
// Determinism: loops are `omp parallel for schedule(static)` over independent outputs;
// every reduction runs in a fixed order inside one iteration, never across threads.
#ifndef PF_CPU_OPS_H
#define PF_CPU_OPS_H

#include "backend.h"
#include "op_shapes.h"
#include "common.h"

// A present fp32 tensor on the host. Macros, so a failure names the op's file:line.
#define CPU_F32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_F32 && (t).device == PF_DEV_CPU)
#define CPU_I32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_I32 && (t).device == PF_DEV_CPU)
// Absent, or a present fp32 host tensor.
#define CPU_F32_OPT(t) \
    PF_ASSERT(!pf_present(t) || ((t).dtype == PF_F32 && (t).device == PF_DEV_CPU))

static inline int64_t cpu_cols(pf_tensor t) { return t.ndim ? t.shape[t.ndim - 1] : 1; }
static inline int64_t cpu_rows(pf_tensor t) {
    int64_t c = cpu_cols(t);
    return c ? pf_numel(t) / c : 0;
}
static inline float *cpu_f(pf_tensor t) { return (float *)t.data; }

// Column loops that reduce over rows work on blocks of this many columns: rows are read
// contiguously and each column is still summed over n in order by a single thread.
#define CPU_COLBLOCK 64

// Column sums, accumulated: out[c] += sum_n x[n, c] for x: [N, C]. Each column is summed
// over n in order by one thread, so the result does not depend on the thread count.
void cpu_colsum_add(float *out, const float *x, int64_t N, int64_t C);

// C[M,N] = op(A)[M,K] op(B)[K,N] + beta C, row-major with cblas's leading dimensions. The
// M rows are split across the OpenMP threads (one chunk each, a single-threaded OpenBLAS
// call); called inside a parallel region it is one call. Same thread count, same bits.
void cpu_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// cpu_memory.c
void *cpu_alloc(size_t bytes);
void cpu_free(void *p);
void cpu_zero(void *p, size_t bytes);
void cpu_copy(void *dst, const void *src, size_t bytes);
void cpu_synchronize(void);
bool cpu_supports(pf_op op);
void cpu_device_info(pf_device_info *info);

// cpu_linear.c
void cpu_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b);
void cpu_linear_bwd(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                    pf_tensor w);

// cpu_pixelfly.c
void cpu_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                      pf_pixelfly_w w);
void cpu_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                      pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w);

// cpu_mlp.c
void cpu_pixelfly_mlp_fwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y, pf_tensor xv1,
                          pf_tensor gv2, pf_tensor x, pf_pixelfly_w w1, pf_pixelfly_w w2,
                          pf_tensor scratch);
void cpu_pixelfly_mlp_bwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                          pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy, pf_tensor x,
                          pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1, pf_pixelfly_w w2,
                          pf_tensor scratch);

// cpu_norm.c
void cpu_layernorm_fwd(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x, pf_tensor g,
                       pf_tensor b, float eps);
void cpu_layernorm_bwd(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy, pf_tensor x,
                       pf_tensor g, pf_tensor mean, pf_tensor rstd);

// cpu_elementwise.c
void cpu_gelu_fwd(pf_tensor y, pf_tensor x);
void cpu_gelu_bwd(pf_tensor dx, pf_tensor dy, pf_tensor x);
void cpu_add(pf_tensor y, pf_tensor a, pf_tensor b);
void cpu_accumulate(pf_tensor dst, pf_tensor src);
void cpu_convert(pf_tensor dst, pf_tensor src);

// cpu_attention.c
void cpu_attention_fwd(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head, bool causal);
void cpu_attention_bwd(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                       pf_tensor lse, int n_head, bool causal);

// cpu_loss.c
void cpu_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                  int ignore_index, float smoothing);
void cpu_xent_bwd(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                  int ignore_index, float smoothing, float scale);

// cpu_embedding.c
void cpu_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe);
void cpu_embedding_bwd(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids);

// cpu_vision.c
void cpu_transpose_fwd(pf_tensor y, pf_tensor x);
void cpu_transpose_bwd(pf_tensor dx, pf_tensor dy);
void cpu_meanpool_fwd(pf_tensor y, pf_tensor x);
void cpu_meanpool_bwd(pf_tensor dx, pf_tensor dy);
void cpu_cls_token_fwd(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos);
void cpu_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy);
void cpu_cls_select_fwd(pf_tensor y, pf_tensor x);
void cpu_cls_select_bwd(pf_tensor dx, pf_tensor dy);

// cpu_optim.c
void cpu_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v, const pf_adamw_args *a);

// cpu_reduce.c (also cpu_colsum_add)
double cpu_sumsq(pf_tensor x);
void cpu_scale(pf_tensor x, float s);

#endif
