// backend.h: the op interface. Model code is written once against this table; the CPU
// backend (src/cpu/, fp32, OpenMP + OpenBLAS, the reference) and the CUDA backend
// (kernels/) each provide one `static const pf_backend`.
//
// The ops are listed once, in PF_OPS below, one section per op family: each op's signature
// is a function typedef (pf_op_NAME_fn) written here and nowhere else, and the list generates
// the pf_op enum and names, the op fields of pf_backend, each backend's declarations
// (cpu_ops.h, cuda_ops.h: `pf_op_NAME_fn cpu_NAME;`) and each backend's table. A backend that
// lacks an op does not link; a CPU definition whose signature differs from its typedef does
// not compile (a CUDA one, C++, is an overload: it does not link).
//
// Conventions, the same for every op:
//   - Tensors live on the backend's device; shapes are checked with PF_ASSERT, by the op's
//     contract in op_shapes.h where it has one (named in its section).
//   - Forward ops overwrite their outputs.
//   - Backward ops ADD into every gradient they produce (dx, dw, db ...): parameter
//     gradients accumulate over micro-batches, and an activation that feeds two consumers
//     (the residual stream) receives both contributions. The caller zeroes gradients.
//   - An absent tensor (pf_none(), data == NULL) skips that output or input (no bias, no
//     dx for the first layer).
//   - Deterministic: the same inputs and thread count give bit-identical outputs.
//   - `supports(op, act)` says whether the backend runs the op in a model whose activations
//     are of dtype `act`; callers check it up front and report "not supported", never fall
//     back silently to another backend.
#ifndef PF_BACKEND_H
#define PF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pattern.h"
#include "splitmix64.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

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

// ==== The ops ====================================================================================
// One section per family: its implementation files, its shape contract (src/op_shapes.c), the
// typedef of each op with its math, and the family's part of the list. X(ID, name) is one op:
// enum PF_OP_ID, table field `name`, signature pf_op_name_fn, functions cpu_name / cuda_name.

// ---- linear: src/cpu/cpu_linear.c, kernels/cuda_linear.cu; shapes: pf_shape_linear --------------
// y[N,out] = x[N,in] w[out,in]^T + b[out]
typedef void pf_op_linear_fwd_fn(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b);
// dx[N,in] += dy w;  dw[out,in] += dy^T x;  db[out] += sum_n dy[n]
typedef void pf_op_linear_bwd_fn(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy,
                                 pf_tensor x, pf_tensor w);
#define PF_OPS_LINEAR(X) X(LINEAR_FWD, linear_fwd) X(LINEAR_BWD, linear_bwd)

// ---- pixelfly: src/cpu/cpu_pixelfly.c, kernels/cuda_pixelfly.cu;
//      shapes: pf_shape_pixelfly, pf_shape_pixelfly_bwd -------------------------------------------
// xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
typedef void pf_op_pixelfly_fwd_fn(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                                   pf_pixelfly_w w);
// dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
// dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
typedef void pf_op_pixelfly_bwd_fn(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw,
                                   pf_tensor dxv, pf_tensor dy, pf_tensor x, pf_tensor xv,
                                   pf_pixelfly_w w);
#define PF_OPS_PIXELFLY(X) X(PIXELFLY_FWD, pixelfly_fwd) X(PIXELFLY_BWD, pixelfly_bwd)

// ---- pixelfly_mlp: src/cpu/cpu_mlp.c, kernels/cuda_mlp.cu (both: the composition in
//      src/pixelfly_mlp.c); shapes: pf_shape_pixelfly_mlp -----------------------------------------
// Pixelfly MLP y = fc2(gelu(fc1(x))), both layers Pixelfly (p1: in -> H, p2: H -> out,
// p1->out == p2->in == H), whose hidden activations f, g [N, H] are never kept:
//   xv1[N,r1] = x V1^T;  f = x S1^T + xv1 U1^T + b1;  g = gelu(f)
//   gv2[N,r2] = g V2^T;  y[N,out] = g S2^T + gv2 U2^T + b2
// xv1 and gv2 are saved for backward (present iff r1, r2 > 0); f and g live in scratch.
// scratch: a 1-D act tensor of at least pf_pixelfly_mlp_scratch_numel(p1, p2, N) elements
// (op_shapes.h), owned by the caller, contents undefined before and after either call
// (nothing passes from forward to backward through it), so one buffer serves every MLP.
typedef void pf_op_pixelfly_mlp_fwd_fn(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                                       pf_tensor xv1, pf_tensor gv2, pf_tensor x,
                                       pf_pixelfly_w w1, pf_pixelfly_w w2, pf_tensor scratch);
// Recomputes f and g from x (one more fc1 forward and GELU), then, with
//   dgv2 = dy U2;  dg = dy S2 + dgv2 V2;  df = gelu'(f) dg;  dxv1 = df U1:
//   dx += df S1 + dxv1 V1;
//   dw2: dS2 += dy^T g (stored blocks);  dU2 += dy^T gv2;  dV2 += dgv2^T g;  db2 += sum dy
//   dw1: dS1 += df^T x (stored blocks);  dU1 += df^T xv1;  dV1 += dxv1^T x;  db1 += sum df
// exactly pixelfly_bwd of fc2, gelu_bwd, pixelfly_bwd of fc1. Absent dx / gradients skip.
typedef void pf_op_pixelfly_mlp_bwd_fn(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                                       pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy,
                                       pf_tensor x, pf_tensor xv1, pf_tensor gv2,
                                       pf_pixelfly_w w1, pf_pixelfly_w w2, pf_tensor scratch);
#define PF_OPS_PIXELFLY_MLP(X) \
    X(PIXELFLY_MLP_FWD, pixelfly_mlp_fwd) X(PIXELFLY_MLP_BWD, pixelfly_mlp_bwd)

// ---- layernorm: src/cpu/cpu_norm.c, kernels/cuda_norm.cu; shapes: pf_shape_layernorm ------------
// Over the last dim C of x[N,C]: y = (x - mean) * rstd * g + b; mean[N], rstd[N] saved.
typedef void pf_op_layernorm_fwd_fn(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x,
                                    pf_tensor g, pf_tensor b, float eps);
typedef void pf_op_layernorm_bwd_fn(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy,
                                    pf_tensor x, pf_tensor g, pf_tensor mean, pf_tensor rstd);
#define PF_OPS_LAYERNORM(X) X(LAYERNORM_FWD, layernorm_fwd) X(LAYERNORM_BWD, layernorm_bwd)

// ---- elementwise: src/cpu/cpu_elementwise.c, kernels/cuda_elementwise.cu;
//      shapes: every tensor of one numel (checked in place, no op_shapes.c function) --------------
// GELU, tanh form: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
typedef void pf_op_gelu_fwd_fn(pf_tensor y, pf_tensor x);
typedef void pf_op_gelu_bwd_fn(pf_tensor dx, pf_tensor dy, pf_tensor x);  // dx += gelu'(x) dy
typedef void pf_op_add_fn(pf_tensor y, pf_tensor a, pf_tensor b);  // y = a + b (may alias a, b)
typedef void pf_op_accumulate_fn(pf_tensor dst, pf_tensor src);    // dst += src
// Dropout with a mask that is a pure function of (key, element number), so no mask is stored
// and every backend draws the same one: element i of x (counted from 0) is kept iff
// pf_dropout_bits(key, first + i) >= pf_dropout_threshold(p), 0 <= p < 1, and then scaled:
//   y[i] = kept ? x[i] / (1 - p) : 0         (y may alias x)
// `first` places the tensor in a larger numbering (the micro-batch's first sample across
// ranks), so that a sample's mask does not depend on how a batch is split over ranks.
// Dropout is its own adjoint: with the same p, key and first, dropout(dx, dy) is the input
// gradient, which it overwrites (the one op whose backward is the forward op itself).
typedef void pf_op_dropout_fn(pf_tensor y, pf_tensor x, float p, uint64_t key, uint64_t first);
#define PF_OPS_ELEMENTWISE(X)                                                             \
    X(GELU_FWD, gelu_fwd) X(GELU_BWD, gelu_bwd) X(ADD, add) X(ACCUMULATE, accumulate)     \
    X(DROPOUT, dropout)

// The dropout mask's random bits: the high 32 bits of splitmix64's output number i + 1 from
// state `key` (splitmix64.h), the same integer arithmetic on the host and on the device.
static inline PF_HOST_DEVICE uint32_t pf_dropout_bits(uint64_t key, uint64_t i) {
    return (uint32_t)(pf_splitmix64_mix(key + (i + 1) * PF_SPLITMIX64_GAMMA) >> 32);
}
// Elements whose bits are below this are dropped: floor(p * 2^32), so P(drop) = p to 2^-32.
static inline PF_HOST_DEVICE uint32_t pf_dropout_threshold(float p) {
    return (uint32_t)((double)p * 4294967296.0);
}

// ---- attention: src/cpu/cpu_attention.c, kernels/cuda_attention.cu;
//      shapes: pf_shape_attention; head dims: pf_backend.attention_head_dims ----------------------
// Multi-head attention, flash-style: the [B,NH,T,T] probabilities are never stored.
// qkv: [B,T,3C] laid out as [q | k | v], each C = n_head * hd; out, dout: [B,T,C], heads
// concatenated (qkv, out, dout, dqkv: act tensors, one dtype per call); lse: [B,NH,T] fp32.
// Per (b, h), with s[t,t2] = q_t . k_t2 / sqrt(hd) over the visible keys (causal: t2 <= t):
//   lse[t] = log sum_t2 exp(s[t,t2])   (saved for backward)
//   P[t,t2] = exp(s[t,t2] - lse[t]);   out[t] = sum_t2 P[t,t2] v_t2
typedef void pf_op_attention_fwd_fn(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head,
                                    bool causal);
// Recomputes P from q, k and lse; with D[t] = dout_t . out_t:
//   dP = dout v^T;  dS = P * (dP - D) / sqrt(hd)
//   dq += dS k;  dk += dS^T q;  dv += P^T dout   (into the matching columns of dqkv)
typedef void pf_op_attention_bwd_fn(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                                    pf_tensor lse, int n_head, bool causal);
#define PF_OPS_ATTENTION(X) X(ATTENTION_FWD, attention_fwd) X(ATTENTION_BWD, attention_bwd)

// ---- loss: src/cpu/cpu_loss.c, kernels/cuda_loss.cu; shapes: pf_shape_xent ----------------------
// Softmax cross-entropy. logits[N,Vp], only the first V columns are real classes (the
// rest is vocabulary padding, excluded from the softmax). targets[N] int32.
// losses[N] = (1-eps) * -log p[target] + eps * mean_{c<V} -log p[c]  (eps: label smoothing);
// rows whose target == ignore_index get loss 0.
typedef void pf_op_xent_fwd_fn(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                               int ignore_index, float smoothing);
// dlogits[N,Vp] += scale * (p - q), q the smoothed one-hot; nothing in padding columns
// or ignored rows.
typedef void pf_op_xent_bwd_fn(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                               int ignore_index, float smoothing, float scale);
#define PF_OPS_LOSS(X) X(XENT_FWD, xent_fwd) X(XENT_BWD, xent_bwd)

// ---- embedding: src/cpu/cpu_embedding.c, kernels/cuda_embedding.cu;
//      shapes: pf_shape_embedding -----------------------------------------------------------------
// y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32.
typedef void pf_op_embedding_fwd_fn(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe);
// dwte[ids[b,t]] += dy[b,t];  dwpe[t] += sum_b dy[b,t]
typedef void pf_op_embedding_bwd_fn(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids);
#define PF_OPS_EMBEDDING(X) X(EMBEDDING_FWD, embedding_fwd) X(EMBEDDING_BWD, embedding_bwd)

// ---- vision: src/cpu/cpu_vision.c, kernels/cuda_vision.cu; shapes: pf_shape_transpose,
//      pf_shape_pool (meanpool, cls_select), pf_shape_cls_token, pf_shape_cls_token_bwd -----------
// y[B,C,P] = x[B,P,C]^T per batch (Mixer token mixing); bwd: dx[B,P,C] += dy^T
typedef void pf_op_transpose_fwd_fn(pf_tensor y, pf_tensor x);
typedef void pf_op_transpose_bwd_fn(pf_tensor dx, pf_tensor dy);
// y[B,C] = mean_p x[B,P,C];  bwd: dx[b,p] += dy[b] / P
typedef void pf_op_meanpool_fwd_fn(pf_tensor y, pf_tensor x);
typedef void pf_op_meanpool_bwd_fn(pf_tensor dx, pf_tensor dy);
// ViT token assembly: y[B,P+1,C] with y[b,0] = cls[C] + pos[0], y[b,1+p] = x[b,p] + pos[1+p]
typedef void pf_op_cls_token_fwd_fn(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos);
// dx[b,p] += dy[b,1+p];  dcls += sum_b dy[b,0];  dpos[t] += sum_b dy[b,t]
typedef void pf_op_cls_token_bwd_fn(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy);
// ViT classifier input: y[B,C] = x[B,0,C] (the class token);  bwd: dx[b,0] += dy[b]
typedef void pf_op_cls_select_fwd_fn(pf_tensor y, pf_tensor x);
typedef void pf_op_cls_select_bwd_fn(pf_tensor dx, pf_tensor dy);
#define PF_OPS_VISION(X)                                                                  \
    X(TRANSPOSE_FWD, transpose_fwd) X(TRANSPOSE_BWD, transpose_bwd)                       \
    X(MEANPOOL_FWD, meanpool_fwd) X(MEANPOOL_BWD, meanpool_bwd)                           \
    X(CLS_TOKEN_FWD, cls_token_fwd) X(CLS_TOKEN_BWD, cls_token_bwd)                       \
    X(CLS_SELECT_FWD, cls_select_fwd) X(CLS_SELECT_BWD, cls_select_bwd)

// ---- optimizer: src/cpu/cpu_optim.c, kernels/cuda_optim.cu; shapes: pf_shape_adamw --------------
// AdamW (decoupled weight decay, bias-corrected moments) on one parameter tensor:
//   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p)
typedef void pf_op_adamw_fn(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v,
                            const pf_adamw_args *a);
#define PF_OPS_OPTIMIZER(X) X(ADAMW, adamw)

// ---- reduce: src/cpu/cpu_reduce.c, kernels/cuda_reduce.cu; shapes: any fp32 tensor --------------
typedef double pf_op_sumsq_fn(pf_tensor x);  // sum of squares, accumulated in double
typedef void pf_op_scale_fn(pf_tensor x, float s);  // x *= s
#define PF_OPS_REDUCE(X) X(SUMSQ, sumsq) X(SCALE, scale)

// ---- convert: src/cpu/cpu_elementwise.c, kernels/cuda_optim.cu; shapes: one numel ---------------
// dst = src elementwise with a dtype conversion between fp32 and bf16, either direction
// (or a copy for equal dtypes); same numel, shapes may differ; bf16 rounds to nearest even.
// Refreshes the bf16 compute copy of the weights after each optimizer step and converts
// uploaded inputs. The CPU backend computes in fp32 and accepts fp32 -> fp32 only.
typedef void pf_op_convert_fn(pf_tensor dst, pf_tensor src);
#define PF_OPS_CONVERT(X) X(CONVERT, convert)

// The one list of ops, in table order.
#define PF_OPS(X)                                                                         \
    PF_OPS_LINEAR(X) PF_OPS_PIXELFLY(X) PF_OPS_PIXELFLY_MLP(X) PF_OPS_LAYERNORM(X)        \
    PF_OPS_ELEMENTWISE(X) PF_OPS_ATTENTION(X) PF_OPS_LOSS(X) PF_OPS_EMBEDDING(X)          \
    PF_OPS_VISION(X) PF_OPS_OPTIMIZER(X) PF_OPS_REDUCE(X) PF_OPS_CONVERT(X)

typedef enum {
#define PF_OP_ENUM_(ID, name) PF_OP_##ID,
    PF_OPS(PF_OP_ENUM_)
#undef PF_OP_ENUM_
    PF_OP_COUNT
} pf_op;

const char *pf_op_name(pf_op op);  // the table field's name ("linear_fwd"); "unknown" else

// ==== The backend ================================================================================
// Sets of input buffers a model alternates (inputs_begin ... inputs_use below): one holds the
// micro-batch being computed, the other the next one on its way to the device.
#define PF_INPUT_SETS 2

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

    // Input staging: a micro-batch's inputs go up while the previous one computes
    // (src/models/model.c keeps PF_INPUT_SETS sets of input buffers and alternates them).
    // host_alloc'd memory is what inputs_upload reads asynchronously: page-locked on CUDA
    // (cudaMallocHost; a copy from pageable memory would not overlap), ordinary memory on
    // the CPU. Never NULL (failure is fatal with the size).
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    // Staging set `set` (0 <= set < PF_INPUT_SETS):
    //   inputs_begin(set)  returns once the host may rewrite the set's host buffers (its last
    //                      uploads have read them), and orders the uploads that follow after
    //                      every op issued so far that may still read the set's device
    //                      buffers;
    //   inputs_upload(...) host_src (host_alloc'd) -> dst (device), on the backend's copy
    //                      stream: it overlaps the ops issued before (CUDA), or is done at
    //                      the call (CPU);
    //   inputs_end(set)    closes the set's uploads;
    //   inputs_use(set)    every op issued after it runs after the set's uploads, and the
    //                      set becomes the one ops read (what inputs_begin orders against).
    void (*inputs_begin)(int set);
    void (*inputs_upload)(void *dst, const void *host_src, size_t bytes);
    void (*inputs_end)(int set);
    void (*inputs_use)(int set);

    // Whether the backend runs `op` in a model whose activations are of dtype `act` (the ops
    // on fp32 tensors only, adamw, sumsq and scale, answer for such a model too): the CPU
    // backend fp32, the CUDA backend fp32 and bf16. The trainer asks for every op at start.
    bool (*supports)(pf_op op, pf_dtype act);
    void (*device_info)(pf_device_info *info);

    // The ops, one field per entry of PF_OPS: `pf_op_linear_fwd_fn *linear_fwd;` ...
#define PF_OP_FIELD_(ID, name) pf_op_##name##_fn *name;
    PF_OPS(PF_OP_FIELD_)
#undef PF_OP_FIELD_
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
