// model_impl.h: what the model files share: the model struct, activation buffers, and the
// modules every model is built from (layernorm, MLP, attention block).
#ifndef PF_MODEL_IMPL_H
#define PF_MODEL_IMPL_H

#include "layers.h"
#include "model.h"

// Every model's linear layers: 4 per block at model.n_layer's bound (1024), stem and head.
#define PF_MAX_LINEARS (4 * 1024 + 2)

typedef struct pf_model_vtable pf_model_vtable;

// Input staging (pf_model_stage): every input array of a model kind (GPT-2's token ids and
// targets; vision's patches and labels) exists once per input set (PF_INPUT_SETS, backend.h),
// on the host in the backend's host_alloc memory and on the device. While the ops compute a
// micro-batch from one set, the next one is written into the other set's host buffers and
// uploaded.
#define PF_MAX_INPUTS 4
typedef struct {
    size_t bytes;
    void *host[PF_INPUT_SETS], *dev[PF_INPUT_SETS];
} pf_input;

struct pf_model {
    pf_config cfg;
    const pf_backend *be;
    const pf_model_vtable *vt;
    int B;
    pf_layout layout;
    pf_arena arena;
    pf_linear *linears[PF_MAX_LINEARS];  // every linear layer: summary, FLOPs, masks
    int64_t linear_rows[PF_MAX_LINEARS];       // rows each one sees per sample
    int n_linears;
    int64_t linear_scratch_n;  // the largest linear backward scratch (rows x scratch width)
    int64_t rows_per_sample;                   // tokens per sequence (GPT-2) or 1 (images)
    double other_macs_per_sample;  // q k^T, att v, LM head, forward (past 2^63 at the bounds)
    void **acts;                               // activation buffers, freed with the model
    int n_acts, cap_acts;
    int64_t act_bytes;                         // their total size (at micro-batch B)
    int64_t host_bytes;                        // host buffers of the model (pf_host_buf)
    bool plan_only;                            // pf_model_plan: count sizes, allocate nothing
    void *mlp_scratch;                         // one scratch for every pf_mlp (see there),
    int64_t mlp_scratch_n;                     // activations, sized for the largest
    int n_mlps, n_fused_mlps;
    float *staging;                            // fp32 device buffer for downloads of
    int64_t staging_n;                         // bf16 activations (pf_act_download)
    pf_input inputs[PF_MAX_INPUTS];            // declared with pf_model_input
    int n_inputs;
    int staged;                                // the set holding a staged micro-batch, or -1
    // Dropout (train.dropout; pf_dropout_forward): armed by pf_model_arm_dropout for the
    // next forward, on for that forward and its backward. key: the micro-batch's mask key,
    // first: its first sample across ranks. One scratch for every site's backward, sized by
    // pf_dropout_site for the largest.
    bool drop_armed, drop_on;
    uint64_t drop_key, drop_armed_key;
    int64_t drop_first, drop_armed_first;
    void *drop_scratch;
    int64_t drop_scratch_n;
    int active;                                // the set the last forward read, or -1
    void *impl;                                // the model kind's own state
};

struct pf_model_vtable {
    const char *name;
    int (*declare)(pf_model *m);         // parameters and activations; -1 with pf_error
    void (*init)(pf_model *m, float *host_params, pf_rng *rng);
    // Writes the micro-batch's inputs into input set `set`'s host buffers, uploads them
    // (pf_model_input_upload) and keeps per set what the host needs of them later (counts,
    // labels, the mixing weight).
    void (*stage)(pf_model *m, int set, const pf_batch *batch);
    // The forward pass over the micro-batch staged in `set`.
    float (*forward)(pf_model *m, int set, pf_eval_stats *stats);
    void (*backward)(pf_model *m, float scale, pf_grads_ready_fn ready, void *ctx);
    void (*free)(pf_model *m);           // optional: releases what impl holds beyond itself
};

extern const pf_model_vtable pf_gpt2_vtable, pf_vit_vtable, pf_mixer_vtable;

// Zeroed buffers on the backend, freed with the model: n activations in the backend's
// activation dtype (fp32 on the CPU, bf16 on CUDA), or n fp32 values (statistics, losses),
// or n int32 (token ids, labels).
void *pf_act(pf_model *m, int64_t n);
float *pf_act_f32(pf_model *m, int64_t n);
// n zeroed host elements of `size` bytes, counted in the memory plan; the model frees them
// itself. NULL (nothing allocated) when the model is only being planned.
void *pf_host_buf(pf_model *m, int64_t n, size_t size);
int32_t *pf_act_i32(pf_model *m, int64_t n);
size_t pf_act_bytes(const pf_model *m, int64_t n);  // of n activations
void *pf_act_at(const pf_model *m, void *base, int64_t i);  // &base[i] of an activation buffer
// Device-tagged views of an activation buffer, in the activation dtype.
pf_tensor pf_act2(const pf_model *m, void *d, int64_t a, int64_t b);
pf_tensor pf_act3(const pf_model *m, void *d, int64_t a, int64_t b, int64_t c);
// n activations from an activation buffer to the host (fp32), converted on the device.
void pf_act_download(pf_model *m, float *host, const void *src, int64_t n);
// Declares an input array of `bytes` (pf_input); returns its index in m->inputs.
int pf_model_input(pf_model *m, size_t bytes);
// Uploads input `idx` of set `set` from its host buffer (inside the kind's stage).
void pf_model_input_upload(pf_model *m, int idx, int set);
pf_tensor pf_param(const pf_model *m, int idx);  // the weights ops compute with
pf_tensor pf_grad(const pf_model *m, int idx);   // fp32
int pf_model_linear(pf_model *m, pf_linear *l, const char *name, int in, int out, bool bias,
                    pf_layer_spec spec, int64_t rows_per_sample);
int pf_model_param(pf_model *m, const char *name, int ndim, const int64_t *shape, bool no_decay);
void pf_fill_normal(pf_model *m, float *host, int idx, float std, pf_rng *rng);
void pf_fill_const(pf_model *m, float *host, int idx, float v);

// Dropout (train.dropout = p) at `site` of a model (0 the embedding output, 1 + 2l and 2 + 2l
// the two residual branches of block l), on branch outputs of n = B x (per-sample elements)
// activations: pf_dropout_site declares a site's size (for the backward scratch) at declare
// time; pf_dropout_forward drops in place when the forward is armed, and
// pf_dropout_backward returns the gradient of the site's input: dy itself when dropout is
// off, else mask(dy) / (1 - p) in the shared scratch.
void pf_dropout_site(pf_model *m, int64_t n);
void pf_dropout_forward(pf_model *m, int site, pf_tensor t);
pf_tensor pf_dropout_backward(pf_model *m, int site, pf_tensor dy);

// LayerNorm over the last dim, with saved statistics for N rows.
typedef struct {
    int g, b;
    float *mean, *rstd;
} pf_ln;
void pf_ln_declare(pf_model *m, pf_ln *ln, const char *name, int C, int64_t N);
void pf_ln_init(pf_model *m, const pf_ln *ln, float *host);
void pf_ln_forward(pf_model *m, const pf_ln *ln, pf_tensor y, pf_tensor x);
void pf_ln_backward(pf_model *m, const pf_ln *ln, pf_tensor dx, pf_tensor dy, pf_tensor x);

// y = fc2(gelu(fc1(x))) over N rows: x [N, in] -> hidden [N, H] -> y [N, out].
// Unfused, the forward keeps f = fc1(x) and g = gelu(f) [N, H] for backward, whose dg, df
// use the model's shared m->mlp_scratch. Recomputed (pixelfly.recompute_mlp with both layers
// Pixelfly), forward and backward are the pixelfly_mlp op: f and g live only in m->mlp_scratch and the
// backward recomputes them, so the MLP keeps only f_xv, g_xv ([N, r]: the op's xv1, gv2).
typedef struct {
    pf_linear fc1, fc2;
    int64_t N;
    bool fused;
    void *f, *f_xv, *g, *g_xv;  // fc1 output, its xv, gelu output, fc2's xv (f, g: unfused)
} pf_mlp;
int pf_mlp_declare(pf_model *m, pf_mlp *mlp, const char *name, int64_t N, int in, int hidden,
                   int out, pf_layer_spec s1, pf_layer_spec s2);
void pf_mlp_init(pf_model *m, const pf_mlp *mlp, float *host, float std, float out_std,
                 pf_rng *rng);
void pf_mlp_forward(pf_model *m, pf_mlp *mlp, pf_tensor y, pf_tensor x);
// dxv: scratch [N, max rank] (unfused; the fused op has its own in m->mlp_scratch)
void pf_mlp_backward(pf_model *m, pf_mlp *mlp, pf_tensor dx, pf_tensor dy, pf_tensor x,
                     void *dxv);

// Pre-LN transformer block over [B, T, C]: x2 = x + proj(attn(qkv(ln1 x))),
// y = x2 + mlp(ln2 x2). Shared by GPT-2 (causal) and ViT.
typedef struct {
    pf_ln ln1, ln2;
    pf_linear qkv, proj;
    pf_mlp mlp;
    int B, T, C, NH;
    int layer;  // its dropout sites are 1 + 2 layer (attention) and 2 + 2 layer (MLP)
    bool causal;
    void *x;  // input (the previous block's output; not owned)
    void *h1, *qkv_out, *qkv_xv, *a, *a_xv, *x2, *h2, *y;
    float *lse;  // [B, NH, T]
} pf_block;

// Backward scratch shared by all blocks of a model (sized for the largest); the MLP's own
// scratch is m->mlp_scratch.
typedef struct {
    void *dh, *dqkv, *da, *dxv;
} pf_block_scratch;

int pf_block_declare(pf_model *m, pf_block *blk, int layer, int B, int T, int C, int NH,
                     int hidden, bool causal);
void pf_block_init(pf_model *m, const pf_block *blk, float *host, pf_rng *rng);
void pf_block_forward(pf_model *m, pf_block *blk, void *x);
// dres: [B*T, C] gradient of the block output on entry, of its input on return.
void pf_block_backward(pf_model *m, pf_block *blk, void *dres, const pf_block_scratch *s);
// Arena offset of the block's first parameter (its parameters are declared contiguously).
int64_t pf_block_first_offset(const pf_model *m, const pf_block *blk);
// After every linear layer is declared: dxv is sized by m->linear_scratch_n.
void pf_block_scratch_alloc(pf_model *m, pf_block_scratch *s, int B, int T, int C);

#endif
