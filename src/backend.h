// backend.h: the op interface. Model code is written once against this table; the CPU
// backend (src/cpu/, fp32, OpenMP + OpenBLAS, the reference) and the CUDA backend
// (kernels/) each provide one `static const pf_backend`.
//
// Conventions, the same for every op:
//   - Tensors live on the backend's device; shapes are checked with PF_ASSERT.
//   - Forward ops overwrite their outputs.
//   - Backward ops ADD into every gradient they produce (dx, dw, db ...): parameter
//     gradients accumulate over micro-batches, and an activation that feeds two consumers
//     (the residual stream) receives both contributions. The caller zeroes gradients.
//   - An absent tensor (pf_none(), data == NULL) skips that output or input (no bias, no
//     dx for the first layer).
//   - Deterministic: the same inputs and thread count give bit-identical outputs.
//   - `supports(op)` is false for an op the backend lacks; callers check it up front and
//     report "not supported", never fall back silently to another backend.
#ifndef PF_BACKEND_H
#define PF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "pattern.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PF_OP_LINEAR,
    PF_OP_PIXELFLY,
    PF_OP_LAYERNORM,
    PF_OP_GELU,
    PF_OP_ADD,
    PF_OP_ATTENTION,
    PF_OP_XENT,
    PF_OP_EMBEDDING,
    PF_OP_TRANSPOSE,
    PF_OP_MEANPOOL,
    PF_OP_CLS_TOKEN,
    PF_OP_ADAMW,
    PF_OP_REDUCE,  // sumsq, scale
    PF_OP_PIXELFLY_MLP,
    PF_OP_COUNT
} pf_op;

const char *pf_op_name(pf_op op);

// The parameters of one Pixelfly layer (or their gradients: same shapes).
//   S: [bs, nf+1, ob, ib]   U: [out, r]   V: [r, in]   b: [out]   (U, V, b may be absent)
typedef struct {
    pf_tensor S, U, V, b;
} pf_pixelfly_w;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int step;          // 1-based, for bias correction
    float grad_scale;  // gradients are multiplied by this first (clipping, averaging)
} pf_adamw_args;

// What the backend runs on, for logs, summaries and model FLOP utilisation.
typedef struct {
    char name[256];       // the GPU's name, or the CPU's model name
    double mem_total;     // bytes: the GPU's memory, or the host's physical memory
    double mem_used;      // bytes held now: backend allocations (GPU) or resident set (CPU)
    double mem_peak;      // the most held at once so far, same measure
    double peak_tflops;   // dense bf16 tensor-core peak of a known GPU; 0 when unknown
} pf_device_info;

typedef struct pf_backend {
    const char *name;
    pf_device device;
    pf_dtype act_dtype;  // dtype of activations this backend computes in
    // The head dims (n_embd / n_head) attention_fwd/bwd run, 0-terminated; NULL: any. A model
    // whose head dim is missing is refused when it is built, not at its first step.
    const int *attention_head_dims;

    // Memory on the backend's device. alloc never returns NULL (failure is fatal with the
    // size and the device's free memory).
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    // Device-to-device copy of non-overlapping buffers, in call order with the ops (the CUDA
    // one is asynchronous: synchronize() before timing it).
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*synchronize)(void);
    bool (*supports)(pf_op op);
    void (*device_info)(pf_device_info *info);

    // y[N,out] = x[N,in] w[out,in]^T + b[out]
    void (*linear_fwd)(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b);
    // dx[N,in] += dy w;  dw[out,in] += dy^T x;  db[out] += sum_n dy[n]
    void (*linear_bwd)(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                       pf_tensor w);

    // xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
    void (*pixelfly_fwd)(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                         pf_pixelfly_w w);
    // dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
    // dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
    void (*pixelfly_bwd)(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                         pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w);

    // Pixelfly MLP y = fc2(gelu(fc1(x))), both layers Pixelfly (p1: in -> H, p2: H -> out,
    // p1->out == p2->in == H), whose hidden activations f, g [N, H] are never kept:
    //   xv1[N,r1] = x V1^T;  f = x S1^T + xv1 U1^T + b1;  g = gelu(f)
    //   gv2[N,r2] = g V2^T;  y[N,out] = g S2^T + gv2 U2^T + b2
    // xv1 and gv2 are saved for backward (present iff r1, r2 > 0); f and g live in scratch.
    // scratch: a 1-D act tensor of at least pf_pixelfly_mlp_scratch_numel(p1, p2, N) elements
    // (op_shapes.h), owned by the caller, contents undefined before and after either call
    // (nothing passes from forward to backward through it), so one buffer serves every MLP.
    void (*pixelfly_mlp_fwd)(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                             pf_tensor xv1, pf_tensor gv2, pf_tensor x, pf_pixelfly_w w1,
                             pf_pixelfly_w w2, pf_tensor scratch);
    // Recomputes f and g from x (one more fc1 forward and GELU), then, with
    //   dgv2 = dy U2;  dg = dy S2 + dgv2 V2;  df = gelu'(f) dg;  dxv1 = df U1:
    //   dx += df S1 + dxv1 V1;
    //   dw2: dS2 += dy^T g (stored blocks);  dU2 += dy^T gv2;  dV2 += dgv2^T g;  db2 += sum dy
    //   dw1: dS1 += df^T x (stored blocks);  dU1 += df^T xv1;  dV1 += dxv1^T x;  db1 += sum df
    // exactly pixelfly_bwd of fc2, gelu_bwd, pixelfly_bwd of fc1. Absent dx / gradients skip.
    void (*pixelfly_mlp_bwd)(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                             pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy, pf_tensor x,
                             pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1, pf_pixelfly_w w2,
                             pf_tensor scratch);

    // Over the last dim C of x[N,C]: y = (x - mean) * rstd * g + b; mean[N], rstd[N] saved.
    void (*layernorm_fwd)(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x,
                          pf_tensor g, pf_tensor b, float eps);
    void (*layernorm_bwd)(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy, pf_tensor x,
                          pf_tensor g, pf_tensor mean, pf_tensor rstd);

    // GELU, tanh form: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    void (*gelu_fwd)(pf_tensor y, pf_tensor x);
    void (*gelu_bwd)(pf_tensor dx, pf_tensor dy, pf_tensor x);  // dx += gelu'(x) dy

    void (*add)(pf_tensor y, pf_tensor a, pf_tensor b);  // y = a + b (y may alias a or b)
    void (*accumulate)(pf_tensor dst, pf_tensor src);    // dst += src

    // Multi-head attention, flash-style: the [B,NH,T,T] probabilities are never stored.
    // qkv: [B,T,3C] laid out as [q | k | v], each C = n_head * hd; out, dout: [B,T,C], heads
    // concatenated (qkv, out, dout, dqkv: act tensors, one dtype per call); lse: [B,NH,T] fp32.
    // Per (b, h), with s[t,t2] = q_t . k_t2 / sqrt(hd) over the visible keys (causal: t2 <= t):
    //   lse[t] = log sum_t2 exp(s[t,t2])   (saved for backward)
    //   P[t,t2] = exp(s[t,t2] - lse[t]);   out[t] = sum_t2 P[t,t2] v_t2
    void (*attention_fwd)(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head, bool causal);
    // Recomputes P from q, k and lse; with D[t] = dout_t . out_t:
    //   dP = dout v^T;  dS = P * (dP - D) / sqrt(hd)
    //   dq += dS k;  dk += dS^T q;  dv += P^T dout   (into the matching columns of dqkv)
    void (*attention_bwd)(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                          pf_tensor lse, int n_head, bool causal);

    // Softmax cross-entropy. logits[N,Vp], only the first V columns are real classes (the
    // rest is vocabulary padding, excluded from the softmax). targets[N] int32.
    // losses[N] = (1-eps) * -log p[target] + eps * mean_{c<V} -log p[c]  (eps: label smoothing);
    // rows whose target == ignore_index get loss 0.
    void (*xent_fwd)(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                     int ignore_index, float smoothing);
    // dlogits[N,Vp] += scale * (p - q), q the smoothed one-hot; nothing in padding columns
    // or ignored rows.
    void (*xent_bwd)(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                     int ignore_index, float smoothing, float scale);

    // y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32.
    void (*embedding_fwd)(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe);
    // dwte[ids[b,t]] += dy[b,t];  dwpe[t] += sum_b dy[b,t]
    void (*embedding_bwd)(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids);

    // y[B,C,P] = x[B,P,C]^T per batch (Mixer token mixing); bwd: dx[B,P,C] += dy^T
    void (*transpose_fwd)(pf_tensor y, pf_tensor x);
    void (*transpose_bwd)(pf_tensor dx, pf_tensor dy);

    // y[B,C] = mean_p x[B,P,C];  bwd: dx[b,p] += dy[b] / P
    void (*meanpool_fwd)(pf_tensor y, pf_tensor x);
    void (*meanpool_bwd)(pf_tensor dx, pf_tensor dy);

    // ViT token assembly: y[B,P+1,C] with y[b,0] = cls[C] + pos[0], y[b,1+p] = x[b,p] + pos[1+p]
    void (*cls_token_fwd)(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos);
    // dx[b,p] += dy[b,1+p];  dcls += sum_b dy[b,0];  dpos[t] += sum_b dy[b,t]
    void (*cls_token_bwd)(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy);
    // ViT classifier input: y[B,C] = x[B,0,C] (the class token);  bwd: dx[b,0] += dy[b]
    void (*cls_select_fwd)(pf_tensor y, pf_tensor x);
    void (*cls_select_bwd)(pf_tensor dx, pf_tensor dy);

    // AdamW (decoupled weight decay, bias-corrected moments) on one parameter tensor:
    //   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
    //   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p)
    void (*adamw)(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v, const pf_adamw_args *a);

    double (*sumsq)(pf_tensor x);          // sum of squares, accumulated in double
    void (*scale)(pf_tensor x, float s);   // x *= s

    // dst = src elementwise with a dtype conversion between fp32 and bf16, either direction
    // (or a copy for equal dtypes); same numel, shapes may differ; bf16 rounds to nearest even.
    // Refreshes the bf16 compute copy of the weights after each optimizer step and converts
    // uploaded inputs. Always supported (no pf_op); the CPU backend computes in fp32 and
    // accepts fp32 -> fp32 only.
    void (*convert)(pf_tensor dst, pf_tensor src);
} pf_backend;

extern const pf_backend pf_backend_cpu;
#ifdef PF_CUDA
extern const pf_backend pf_backend_cuda;
bool pf_cuda_available(void);  // a CUDA device is visible
#endif

// Global gradient-norm clipping over a whole gradient arena: returns the L2 norm of the
// `n` floats at grads and the factor min(1, max_norm / norm) (1 when max_norm <= 0).
double pf_grad_norm(const pf_backend *be, float *grads, int64_t n, float max_norm,
                    float *clip_scale);

#ifdef __cplusplus
}
#endif

#endif
