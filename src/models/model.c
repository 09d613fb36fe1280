// model.c: model creation and dispatch, activation buffers, and the shared modules
// (layernorm, MLP, transformer block, classification loss).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model_impl.h"
#include "op_shapes.h"

static const pf_model_vtable *vtable_for(pf_model_kind k) {
    switch (k) {
    case PF_MODEL_GPT2: return &pf_gpt2_vtable;
    case PF_MODEL_VIT: return &pf_vit_vtable;
    case PF_MODEL_MIXER: return &pf_mixer_vtable;
    }
    return NULL;
}

// a + b for byte counts, saturating instead of overflowing (a plan may be absurdly large).
static int64_t add_bytes(int64_t a, int64_t b) { return b > INT64_MAX - a ? INT64_MAX : a + b; }

static void *act_alloc(pf_model *m, size_t bytes) {
    if (m->plan_only) {  // count only: the plan is checked before anything is allocated
        m->act_bytes = add_bytes(m->act_bytes, (int64_t)(bytes ? bytes : 4));
        return NULL;
    }
    if (m->n_acts == m->cap_acts) {
        m->cap_acts = m->cap_acts ? 2 * m->cap_acts : 64;
        m->acts = pf_realloc(m->acts, sizeof(void *) * m->cap_acts);
    }
    bytes = bytes ? bytes : 4;
    void *p = m->be->alloc(bytes);
    m->be->zero(p, bytes);
    m->acts[m->n_acts++] = p;
    m->act_bytes += (int64_t)bytes;
    return p;
}

void *pf_host_buf(pf_model *m, int64_t n, size_t size) {
    m->host_bytes = add_bytes(m->host_bytes, (n > 0 ? n : 0) * (int64_t)size);
    return m->plan_only ? NULL : pf_calloc((size_t)n, size);
}

size_t pf_act_bytes(const pf_model *m, int64_t n) {
    return (size_t)pf_dtype_size(m->be->act_dtype) * (size_t)(n > 0 ? n : 0);
}
void *pf_act(pf_model *m, int64_t n) { return act_alloc(m, pf_act_bytes(m, n)); }
float *pf_act_f32(pf_model *m, int64_t n) { return act_alloc(m, sizeof(float) * (size_t)n); }
int32_t *pf_act_i32(pf_model *m, int64_t n) { return act_alloc(m, sizeof(int32_t) * (size_t)n); }
void *pf_act_at(const pf_model *m, void *base, int64_t i) {
    return (char *)base + pf_act_bytes(m, i);
}

pf_tensor pf_act2(const pf_model *m, void *d, int64_t a, int64_t b) {
    return pf_tensor_2d(d, m->be->act_dtype, m->be->device, a, b);
}

pf_tensor pf_act3(const pf_model *m, void *d, int64_t a, int64_t b, int64_t c) {
    return pf_tensor_3d(d, m->be->act_dtype, m->be->device, a, b, c);
}

// The fp32 staging buffer, grown to n floats (bf16 activations only).
static float *staging(pf_model *m, int64_t n) {
    if (n > m->staging_n) {
        if (m->staging) m->be->free(m->staging);
        m->staging = m->be->alloc(sizeof(float) * (size_t)n);
        m->staging_n = n;
    }
    return m->staging;
}

void pf_act_download(pf_model *m, float *host, const void *src, int64_t n) {
    const pf_backend *be = m->be;
    if (be->act_dtype == PF_F32) {
        be->download(host, src, sizeof(float) * (size_t)n);
        return;
    }
    float *f = staging(m, n);
    be->convert(pf_tensor_1d(f, PF_F32, be->device, n),
                pf_tensor_1d((void *)src, be->act_dtype, be->device, n));
    be->download(host, f, sizeof(float) * (size_t)n);
}

int pf_model_input(pf_model *m, size_t bytes) {
    PF_ASSERT(m->n_inputs < PF_MAX_INPUTS);
    pf_input *in = &m->inputs[m->n_inputs];
    in->bytes = bytes;
    m->host_bytes = add_bytes(m->host_bytes, PF_INPUT_SETS * (int64_t)bytes);
    for (int s = 0; s < PF_INPUT_SETS; s++) {
        in->dev[s] = act_alloc(m, bytes);
        in->host[s] = m->plan_only ? NULL : m->be->host_alloc(bytes);
    }
    return m->n_inputs++;
}

void pf_model_input_upload(pf_model *m, int idx, int set) {
    const pf_input *in = &m->inputs[idx];
    m->be->inputs_upload(in->dev[set], in->host[set], in->bytes);
}

pf_tensor pf_param(const pf_model *m, int idx) { return pf_arena_weight(&m->arena, idx); }
pf_tensor pf_grad(const pf_model *m, int idx) { return pf_arena_view(&m->arena, m->arena.grads, idx); }

int pf_model_linear(pf_model *m, pf_linear *l, const char *name, int in, int out, bool bias,
                    pf_layer_spec spec, int64_t rows_per_sample) {
    if (pf_linear_declare(l, &m->layout, name, in, out, bias, spec, m->cfg.budget,
                          (uint64_t)m->n_linears) < 0)
        return -1;
    PF_ASSERT(m->n_linears < PF_MAX_LINEARS);
    int64_t scratch = rows_per_sample * m->B * pf_linear_scratch_width(l);
    if (scratch > m->linear_scratch_n) m->linear_scratch_n = scratch;
    m->linear_rows[m->n_linears] = rows_per_sample;
    m->linears[m->n_linears++] = l;
    return 0;
}

int pf_model_param(pf_model *m, const char *name, int ndim, const int64_t *shape, bool no_decay) {
    return pf_layout_add(&m->layout, name, ndim, shape, no_decay);
}

void pf_fill_normal(pf_model *m, float *host, int idx, float std, pf_rng *rng) {
    const pf_param_info *p = &m->layout.params[idx];
    for (int64_t i = 0; i < pf_param_numel(p); i++) host[p->offset + i] = std * pf_rng_normal(rng);
}

void pf_fill_const(pf_model *m, float *host, int idx, float v) {
    const pf_param_info *p = &m->layout.params[idx];
    for (int64_t i = 0; i < pf_param_numel(p); i++) host[p->offset + i] = v;
}

// ---- layernorm -------------------------------------------------------------------------

void pf_ln_declare(pf_model *m, pf_ln *ln, const char *name, int C, int64_t N) {
    char pname[PF_PARAM_NAME_MAX];
    snprintf(pname, sizeof pname, "%s.g", name);
    ln->g = pf_model_param(m, pname, 1, (int64_t[]){C}, true);
    snprintf(pname, sizeof pname, "%s.b", name);
    ln->b = pf_model_param(m, pname, 1, (int64_t[]){C}, true);
    ln->mean = pf_act_f32(m, N);
    ln->rstd = pf_act_f32(m, N);
}

void pf_ln_init(pf_model *m, const pf_ln *ln, float *host) {
    pf_fill_const(m, host, ln->g, 1.0f);
    pf_fill_const(m, host, ln->b, 0.0f);
}

static pf_tensor stat_view(pf_model *m, float *d, pf_tensor x) {
    return pf_tensor_1d(d, PF_F32, m->be->device, pf_numel(x) / x.shape[x.ndim - 1]);
}

void pf_ln_forward(pf_model *m, const pf_ln *ln, pf_tensor y, pf_tensor x) {
    m->be->layernorm_fwd(y, stat_view(m, ln->mean, x), stat_view(m, ln->rstd, x), x,
                         pf_param(m, ln->g), pf_param(m, ln->b), 1e-5f);
}

void pf_ln_backward(pf_model *m, const pf_ln *ln, pf_tensor dx, pf_tensor dy, pf_tensor x) {
    m->be->layernorm_bwd(dx, pf_grad(m, ln->g), pf_grad(m, ln->b), dy, x, pf_param(m, ln->g),
                         stat_view(m, ln->mean, x), stat_view(m, ln->rstd, x));
}

// ---- MLP -------------------------------------------------------------------------------

// The unfused backward's df and dg in m->mlp_scratch: df at 0, dg at this offset (elements,
// a multiple of 64 so that a bf16 dg stays 128-byte aligned).
static int64_t unfused_dg_offset(int64_t NH) { return (NH + 63) / 64 * 64; }

static pf_tensor mlp_scratch(pf_model *m) {
    return pf_tensor_1d(m->mlp_scratch, m->be->act_dtype, m->be->device, m->mlp_scratch_n);
}

int pf_mlp_declare(pf_model *m, pf_mlp *mlp, const char *name, int64_t N, int in, int hidden,
                   int out, pf_layer_spec s1, pf_layer_spec s2) {
    char lname[48];
    mlp->N = N;
    snprintf(lname, sizeof lname, "%s.fc1", name);
    if (pf_model_linear(m, &mlp->fc1, lname, in, hidden, true, s1, N / m->B) < 0) return -1;
    snprintf(lname, sizeof lname, "%s.fc2", name);
    if (pf_model_linear(m, &mlp->fc2, lname, hidden, out, true, s2, N / m->B) < 0) return -1;
    mlp->fused = m->cfg.recompute_mlp && pf_layer_kind_masked(mlp->fc1.kind) &&
                 pf_layer_kind_masked(mlp->fc2.kind);
    m->n_mlps++;
    int64_t scratch;
    if (mlp->fused) {
        // f, g are recomputed in backward; forward and backward keep them in the scratch.
        scratch = pf_pixelfly_mlp_scratch_numel(&mlp->fc1.pat[0], &mlp->fc2.pat[0], N);
        m->n_fused_mlps++;
    } else {
        mlp->f = pf_act(m, N * hidden);
        mlp->g = pf_act(m, N * hidden);
        scratch = unfused_dg_offset(N * hidden) + N * hidden;  // df, dg
    }
    if (scratch > m->mlp_scratch_n) m->mlp_scratch_n = scratch;
    mlp->f_xv = pf_act(m, N * pf_linear_saved_width(&mlp->fc1));
    mlp->g_xv = pf_act(m, N * pf_linear_saved_width(&mlp->fc2));
    return 0;
}

void pf_mlp_init(pf_model *m, const pf_mlp *mlp, float *host, float std, float out_std,
                 pf_rng *rng) {
    pf_linear_init(&mlp->fc1, &m->layout, host, std, rng);
    pf_linear_init(&mlp->fc2, &m->layout, host, out_std, rng);
}

// A layer's saved activations [N, saved width] and its backward scratch [N, scratch width].
static pf_tensor xv_view(pf_model *m, void *d, int64_t N, const pf_linear *l) {
    int w = pf_linear_saved_width(l);
    return w ? pf_act2(m, d, N, w) : pf_none();
}
static pf_tensor dxv_view(pf_model *m, void *d, int64_t N, const pf_linear *l) {
    int w = pf_linear_scratch_width(l);
    return w ? pf_act2(m, d, N, w) : pf_none();
}

void pf_mlp_forward(pf_model *m, pf_mlp *mlp, pf_tensor y, pf_tensor x) {
    int64_t N = mlp->N, H = mlp->fc1.out;
    if (mlp->fused) {
        m->be->pixelfly_mlp_fwd(&mlp->fc1.pat[0], &mlp->fc2.pat[0], y,
                                xv_view(m, mlp->f_xv, N, &mlp->fc1),
                                xv_view(m, mlp->g_xv, N, &mlp->fc2), x,
                                pf_linear_pixelfly_w(&mlp->fc1, &m->arena, false),
                                pf_linear_pixelfly_w(&mlp->fc2, &m->arena, false), mlp_scratch(m));
        return;
    }
    pf_tensor f = pf_act2(m, mlp->f, N, H), g = pf_act2(m, mlp->g, N, H);
    pf_linear_forward(&mlp->fc1, &m->arena, f, xv_view(m, mlp->f_xv, N, &mlp->fc1), x);
    m->be->gelu_fwd(g, f);
    pf_linear_forward(&mlp->fc2, &m->arena, y, xv_view(m, mlp->g_xv, N, &mlp->fc2), g);
}

void pf_mlp_backward(pf_model *m, pf_mlp *mlp, pf_tensor dx, pf_tensor dy, pf_tensor x,
                     void *dxv) {
    int64_t N = mlp->N, H = mlp->fc1.out;
    const pf_arena *a = &m->arena;
    if (mlp->fused) {
        m->be->pixelfly_mlp_bwd(&mlp->fc1.pat[0], &mlp->fc2.pat[0], dx,
                                pf_linear_pixelfly_w(&mlp->fc1, a, true),
                                pf_linear_pixelfly_w(&mlp->fc2, a, true), dy, x,
                                xv_view(m, mlp->f_xv, N, &mlp->fc1),
                                xv_view(m, mlp->g_xv, N, &mlp->fc2),
                                pf_linear_pixelfly_w(&mlp->fc1, a, false),
                                pf_linear_pixelfly_w(&mlp->fc2, a, false), mlp_scratch(m));
        return;
    }
    void *df = m->mlp_scratch, *dg = pf_act_at(m, m->mlp_scratch, unfused_dg_offset(N * H));
    pf_tensor tdg = pf_act2(m, dg, N, H), tdf = pf_act2(m, df, N, H);
    m->be->zero(dg, pf_act_bytes(m, N * H));
    pf_linear_backward(&mlp->fc2, &m->arena, tdg, dy, pf_act2(m, mlp->g, N, H),
                       xv_view(m, mlp->g_xv, N, &mlp->fc2), dxv_view(m, dxv, N, &mlp->fc2));
    m->be->zero(df, pf_act_bytes(m, N * H));
    m->be->gelu_bwd(tdf, tdg, pf_act2(m, mlp->f, N, H));
    pf_linear_backward(&mlp->fc1, &m->arena, dx, tdf, x, xv_view(m, mlp->f_xv, N, &mlp->fc1),
                       dxv_view(m, dxv, N, &mlp->fc1));
}

// ---- transformer block -------------------------------------------------------------------

int pf_block_declare(pf_model *m, pf_block *blk, int layer, int B, int T, int C, int NH,
                     int hidden, bool causal) {
    const pf_config *c = &m->cfg;
    int64_t N = (int64_t)B * T;
    char name[48];
    *blk = (pf_block){.B = B, .T = T, .C = C, .NH = NH, .layer = layer, .causal = causal};
    const int *dims = m->be->attention_head_dims;
    bool head_dim_ok = !dims;
    char list[64] = "";
    for (int i = 0; dims && dims[i]; i++) {
        head_dim_ok |= dims[i] == C / NH;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", dims[i]);
    }
    if (!head_dim_ok) {
        pf_error("model.n_embd / model.n_head = %d / %d = %d: the %s backend's attention runs "
                 "head dims %s only; choose model.n_head to give one of them",
                 C, NH, C / NH, m->be->name, list);
        return -1;
    }
    snprintf(name, sizeof name, "h.%d.ln1", layer);
    pf_ln_declare(m, &blk->ln1, name, C, N);
    snprintf(name, sizeof name, "h.%d.attn.qkv", layer);
    if (pf_model_linear(m, &blk->qkv, name, C, 3 * C, true, c->attn_qkv, T) < 0) return -1;
    snprintf(name, sizeof name, "h.%d.attn.proj", layer);
    if (pf_model_linear(m, &blk->proj, name, C, C, true, c->attn_proj, T) < 0) return -1;
    snprintf(name, sizeof name, "h.%d.ln2", layer);
    pf_ln_declare(m, &blk->ln2, name, C, N);
    snprintf(name, sizeof name, "h.%d.mlp", layer);
    if (pf_mlp_declare(m, &blk->mlp, name, N, C, hidden, C, c->mlp_fc1, c->mlp_fc2) < 0)
        return -1;
    blk->h1 = pf_act(m, N * C);
    blk->qkv_out = pf_act(m, N * 3 * C);
    blk->qkv_xv = pf_act(m, N * pf_linear_saved_width(&blk->qkv));
    blk->lse = pf_act_f32(m, (int64_t)B * NH * T);  // attention saves no T x T matrix
    blk->a = pf_act(m, N * C);
    blk->a_xv = pf_act(m, N * pf_linear_saved_width(&blk->proj));
    blk->x2 = pf_act(m, N * C);
    blk->h2 = pf_act(m, N * C);
    blk->y = pf_act(m, N * C);
    pf_dropout_site(m, N * C);
    // q k^T and P v: 2 * T * T * C multiply-adds per sequence forward (causal halves the work
    // the kernels do; we count the full square). Backward also recomputes q k^T.
    m->other_macs_per_sample += 2.0 * T * T * C;
    return 0;
}

void pf_block_init(pf_model *m, const pf_block *blk, float *host, pf_rng *rng) {
    const pf_config *c = &m->cfg;
    // GPT-2: residual projections scaled by 1/sqrt(2 n_layer) so the stream's variance does
    // not grow with depth.
    float out_std = c->init_std / sqrtf(2.0f * c->n_layer);
    pf_ln_init(m, &blk->ln1, host);
    pf_ln_init(m, &blk->ln2, host);
    pf_linear_init(&blk->qkv, &m->layout, host, c->init_std, rng);
    pf_linear_init(&blk->proj, &m->layout, host, out_std, rng);
    pf_mlp_init(m, &blk->mlp, host, c->init_std, out_std, rng);
}

void pf_block_forward(pf_model *m, pf_block *blk, void *x) {
    const pf_backend *be = m->be;
    int64_t N = (int64_t)blk->B * blk->T, C = blk->C;
    blk->x = x;
    pf_tensor tx = pf_act2(m, x, N, C), th1 = pf_act2(m, blk->h1, N, C);
    pf_ln_forward(m, &blk->ln1, th1, tx);
    pf_linear_forward(&blk->qkv, &m->arena, pf_act2(m, blk->qkv_out, N, 3 * C),
                      xv_view(m, blk->qkv_xv, N, &blk->qkv), th1);
    be->attention_fwd(pf_act3(m, blk->a, blk->B, blk->T, C),
                      pf_tensor_3d(blk->lse, PF_F32, be->device, blk->B, blk->NH, blk->T),
                      pf_act3(m, blk->qkv_out, blk->B, blk->T, 3 * C), blk->NH, blk->causal);
    pf_tensor tx2 = pf_act2(m, blk->x2, N, C), th2 = pf_act2(m, blk->h2, N, C);
    pf_linear_forward(&blk->proj, &m->arena, tx2, xv_view(m, blk->a_xv, N, &blk->proj),
                      pf_act2(m, blk->a, N, C));
    pf_dropout_forward(m, 1 + 2 * blk->layer, tx2);
    be->add(tx2, tx2, tx);
    pf_ln_forward(m, &blk->ln2, th2, tx2);
    pf_tensor ty = pf_act2(m, blk->y, N, C);
    pf_mlp_forward(m, &blk->mlp, ty, th2);
    pf_dropout_forward(m, 2 + 2 * blk->layer, ty);
    be->add(ty, ty, tx2);
}

void pf_block_backward(pf_model *m, pf_block *blk, void *dres, const pf_block_scratch *s) {
    const pf_backend *be = m->be;
    int64_t N = (int64_t)blk->B * blk->T, C = blk->C;
    size_t act_bytes = pf_act_bytes(m, N * C);
    pf_tensor tdres = pf_act2(m, dres, N, C), tdh = pf_act2(m, s->dh, N, C);
    // MLP branch: y = x2 + dropout(mlp(ln2(x2)))
    be->zero(s->dh, act_bytes);
    pf_mlp_backward(m, &blk->mlp, tdh, pf_dropout_backward(m, 2 + 2 * blk->layer, tdres),
                    pf_act2(m, blk->h2, N, C), s->dxv);
    pf_ln_backward(m, &blk->ln2, tdres, tdh, pf_act2(m, blk->x2, N, C));
    // attention branch: x2 = x + dropout(proj(attn(qkv(ln1(x)))))
    be->zero(s->da, act_bytes);
    pf_linear_backward(&blk->proj, &m->arena, pf_act2(m, s->da, N, C),
                       pf_dropout_backward(m, 1 + 2 * blk->layer, tdres),
                       pf_act2(m, blk->a, N, C), xv_view(m, blk->a_xv, N, &blk->proj),
                       dxv_view(m, s->dxv, N, &blk->proj));
    be->zero(s->dqkv, 3 * act_bytes);
    be->attention_bwd(pf_act3(m, s->dqkv, blk->B, blk->T, 3 * C),
                      pf_act3(m, s->da, blk->B, blk->T, C),
                      pf_act3(m, blk->qkv_out, blk->B, blk->T, 3 * C),
                      pf_act3(m, blk->a, blk->B, blk->T, C),
                      pf_tensor_3d(blk->lse, PF_F32, be->device, blk->B, blk->NH, blk->T),
                      blk->NH, blk->causal);
    be->zero(s->dh, act_bytes);
    pf_linear_backward(&blk->qkv, &m->arena, tdh, pf_act2(m, s->dqkv, N, 3 * C),
                       pf_act2(m, blk->h1, N, C), xv_view(m, blk->qkv_xv, N, &blk->qkv),
                       dxv_view(m, s->dxv, N, &blk->qkv));
    pf_ln_backward(m, &blk->ln1, tdres, tdh, pf_act2(m, blk->x, N, C));
}

int64_t pf_block_first_offset(const pf_model *m, const pf_block *blk) {
    return m->layout.params[blk->ln1.g].offset;
}

void pf_block_scratch_alloc(pf_model *m, pf_block_scratch *s, int B, int T, int C) {
    int64_t N = (int64_t)B * T;
    s->dh = pf_act(m, N * C);
    s->da = pf_act(m, N * C);
    s->dqkv = pf_act(m, N * 3 * C);  // attention backward needs no [B, NH, T, T] scratch
    s->dxv = pf_act(m, m->linear_scratch_n);  // declared after every linear layer
}

// ---- public API ----------------------------------------------------------------------------

static pf_model *model_build(const pf_config *c, const pf_backend *be, int B, bool plan_only) {
    pf_model *m = pf_calloc(1, sizeof *m);
    m->cfg = *c;
    m->be = be;
    m->B = B;
    m->plan_only = plan_only;
    m->staged = m->active = -1;
    m->vt = vtable_for(c->model);
    pf_layout_init(&m->layout);
    if (m->vt->declare(m) < 0) {
        pf_model_free(m);
        return NULL;
    }
    // One scratch for every MLP of the model, sized by pf_mlp_declare for the largest; one
    // for every dropout site's backward, sized by pf_dropout_site.
    if (m->mlp_scratch_n) m->mlp_scratch = pf_act(m, m->mlp_scratch_n);
    if (m->drop_scratch_n) m->drop_scratch = pf_act(m, m->drop_scratch_n);
    if (!plan_only) pf_arena_alloc(&m->arena, &m->layout, be);
    return m;
}

pf_model *pf_model_create(const pf_config *c, const pf_backend *be, int B) {
    return model_build(c, be, B, false);
}

pf_model *pf_model_describe(const pf_config *c, const pf_backend *be, int B) {
    return model_build(c, be, B, true);
}

int pf_model_plan(const pf_config *c, const pf_backend *be, int B, pf_model_memory *out) {
    pf_model *m = model_build(c, be, B, true);
    if (!m) return -1;
    double n = (double)m->layout.numel;
    *out = (pf_model_memory){
        .B = B,
        .numel = m->layout.numel,
        .params = 4 * n,
        .grads = 4 * n,
        .optim = 8 * n,
        // the compute copy of the weights, where it is a buffer of its own (pf_arena_alloc)
        .weights = be->act_dtype != PF_F32 ? (double)pf_dtype_size(be->act_dtype) * n : 0,
        .activations = (double)m->act_bytes,
        .host = (double)m->host_bytes,
    };
    pf_model_free(m);
    return 0;
}

void pf_model_free(pf_model *m) {
    if (!m) return;
    if (m->impl && m->vt->free) m->vt->free(m);
    for (int i = 0; i < m->n_inputs; i++)
        for (int s = 0; s < PF_INPUT_SETS; s++)
            if (m->inputs[i].host[s]) m->be->host_free(m->inputs[i].host[s]);
    for (int i = 0; i < m->n_acts; i++) m->be->free(m->acts[i]);
    free(m->acts);
    if (m->staging) m->be->free(m->staging);
    pf_arena_free(&m->arena);
    pf_layout_free(&m->layout);
    free(m->impl);
    free(m);
}

void pf_model_init_params(pf_model *m, uint64_t seed) {
    size_t bytes = sizeof(float) * (size_t)m->layout.numel;
    float *host = pf_calloc(1, bytes);
    pf_rng rng;
    pf_rng_seed(&rng, seed);
    m->vt->init(m, host, &rng);
    m->be->upload(m->arena.params, host, bytes);
    free(host);
}

// Two sets: one is read by the ops (active) or waits for them (staged), the other is free.
_Static_assert(PF_INPUT_SETS == 2, "pf_model_stage alternates two input sets");
static int other_set(int set) { return set < 0 ? 0 : (set + 1) % PF_INPUT_SETS; }

static void stage_into(pf_model *m, int set, const pf_batch *batch) {
    m->be->inputs_begin(set);
    m->vt->stage(m, set, batch);
    m->be->inputs_end(set);
}

void pf_model_stage(pf_model *m, const pf_batch *batch) {
    PF_ASSERT(m->staged < 0);  // one staged micro-batch at a time: forward it first
    int set = other_set(m->active);
    stage_into(m, set, batch);
    m->staged = set;
}

float pf_model_forward(pf_model *m, const pf_batch *batch, pf_eval_stats *stats) {
    int set;
    if (batch) {
        // Staged now into the set that holds no staged micro-batch: a batch staged for the
        // next training step survives an evaluation in between.
        set = m->staged >= 0 ? other_set(m->staged) : other_set(m->active);
        stage_into(m, set, batch);
    } else {
        PF_ASSERT(m->staged >= 0);  // pf_model_forward(m, NULL, ...) needs pf_model_stage first
        set = m->staged;
        m->staged = -1;
    }
    m->be->inputs_use(set);
    m->active = set;
    m->drop_on = m->drop_armed && m->cfg.dropout > 0;
    m->drop_key = m->drop_armed_key;
    m->drop_first = m->drop_armed_first;
    m->drop_armed = false;
    pf_arena_sync_weights(&m->arena);
    return m->vt->forward(m, set, stats);
}

void pf_model_arm_dropout(pf_model *m, uint64_t micro, int64_t first_sample) {
    PF_ASSERT(first_sample >= 0);
    m->drop_armed = true;
    m->drop_armed_key = m->cfg.seed ^ (micro + 1) * 0xD1B54A32D192ED03ull;
    m->drop_armed_first = first_sample;
}

// ---- dropout ---------------------------------------------------------------------------------

void pf_dropout_site(pf_model *m, int64_t n) {
    if (m->cfg.dropout > 0 && n > m->drop_scratch_n) m->drop_scratch_n = n;
}

// The mask key of `site` in the armed micro-batch: the first output of pf_rng seeded from the
// micro-batch's key XOR (site + 1) * 0x9E3779B97F4A7C15 (docs/MODELS.md, "Dropout").
static uint64_t site_key(const pf_model *m, int site) {
    pf_rng r;
    pf_rng_seed(&r, m->drop_key ^ ((uint64_t)site + 1) * 0x9E3779B97F4A7C15ull);
    return pf_rng_u64(&r);
}

// A site's element numbering: sample b's elements after those of every sample before it in
// the global micro-batch (all ranks), so that the mask does not depend on the rank count.
static uint64_t site_first(const pf_model *m, pf_tensor t) {
    return (uint64_t)m->drop_first * (uint64_t)(pf_numel(t) / m->B);
}

void pf_dropout_forward(pf_model *m, int site, pf_tensor t) {
    if (!m->drop_on) return;
    PF_ASSERT(pf_numel(t) % m->B == 0 && pf_numel(t) <= m->drop_scratch_n);
    m->be->dropout(t, t, m->cfg.dropout, site_key(m, site), site_first(m, t));
}

// Dropout is its own adjoint: the gradient of the site's input is dropout(dy), the same mask.
pf_tensor pf_dropout_backward(pf_model *m, int site, pf_tensor dy) {
    if (!m->drop_on) return dy;
    PF_ASSERT(pf_numel(dy) <= m->drop_scratch_n);
    pf_tensor d = dy;
    d.data = m->drop_scratch;
    m->be->dropout(d, dy, m->cfg.dropout, site_key(m, site), site_first(m, dy));
    return d;
}

void pf_model_backward(pf_model *m, float scale, pf_grads_ready_fn ready, void *ctx) {
    m->vt->backward(m, scale, ready, ctx);
}

pf_arena *pf_model_arena(pf_model *m) { return &m->arena; }
const pf_layout *pf_model_layout(const pf_model *m) { return &m->layout; }
int64_t pf_model_rows_per_sample(const pf_model *m) { return m->rows_per_sample; }
int64_t pf_model_activation_bytes(const pf_model *m) { return m->act_bytes; }

void pf_model_adamw_step(pf_model *m, float lr, int step, float grad_scale) {
    const pf_config *c = &m->cfg;
    pf_arena *a = &m->arena;
    for (int i = 0; i < m->layout.count; i++) {
        pf_adamw_args args = {.lr = lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                              .weight_decay = m->layout.params[i].no_decay ? 0.0f
                                                                           : c->weight_decay,
                              .step = step, .grad_scale = grad_scale};
        m->be->adamw(pf_arena_view(a, a->params, i), pf_arena_view(a, a->grads, i),
                     pf_arena_view(a, a->m, i), pf_arena_view(a, a->v, i), &args);
    }
}

double pf_model_train_flops(const pf_model *m, bool dense_twin) {
    double macs = m->other_macs_per_sample;
    for (int i = 0; i < m->n_linears; i++) {
        const pf_linear *l = m->linears[i];
        double per_row = dense_twin ? (double)l->in * l->out : (double)pf_linear_macs(l);
        macs += per_row * (double)m->linear_rows[i];
    }
    return 6.0 * macs;  // forward 2 FLOPs per MAC, backward twice the forward
}

const pf_linear *pf_model_linear_at(const pf_model *m, int i) {
    return i >= 0 && i < m->n_linears ? m->linears[i] : NULL;
}

static bool has_random_mask(const pf_linear *l) {
    return l->kind == PF_LAYER_BLOCKSPARSE;
}

void pf_model_masks(const pf_model *m, pf_checkpoint_state *st) {
    st->n_masks = 0;
    st->masks = pf_calloc((size_t)m->n_linears + 1, sizeof *st->masks);
    for (int i = 0; i < m->n_linears; i++) {
        const pf_linear *l = m->linears[i];
        if (!has_random_mask(l)) continue;
        const pf_pattern *p = &l->pat[0];
        pf_checkpoint_mask *mk = &st->masks[st->n_masks++];
        snprintf(mk->name, sizeof mk->name, "%s", m->layout.params[l->S[0]].name);
        mk->rows = p->bs;
        mk->cols = p->nf + 1;
        mk->col = pf_malloc(sizeof(int32_t) * (size_t)mk->rows * mk->cols);
        for (int j = 0; j < mk->rows * mk->cols; j++) mk->col[j] = p->col[j];
    }
}

int pf_model_adopt_masks(pf_model *m, const pf_checkpoint_state *st, const char *path) {
    for (int i = 0; i < m->n_linears; i++) {
        pf_linear *l = m->linears[i];
        if (!has_random_mask(l)) continue;
        const char *name = m->layout.params[l->S[0]].name;
        const pf_checkpoint_mask *mk = NULL;
        for (int j = 0; j < st->n_masks && !mk; j++)
            if (!strcmp(st->masks[j].name, name)) mk = &st->masks[j];
        pf_pattern *p = &l->pat[0];
        if (!mk || mk->rows != p->bs || mk->cols != p->nf + 1) {
            pf_error("checkpoint '%s' has %s mask /masks/%s for blocksparse layer %s (bs=%d, %d "
                     "blocks per super-row)", path, mk ? "a mismatched" : "no", name, l->name,
                     p->bs, p->nf + 1);
            return -1;
        }
        if (pf_pattern_set_table(p, mk->col) < 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pf_errmsg());
            pf_error("checkpoint '%s': mask /masks/%s: %s", path, name, msg);
            return -1;
        }
    }
    return 0;
}

void pf_model_summary(const pf_model *m, FILE *f) {
    const pf_config *c = &m->cfg;
    fprintf(f, "model %s: %d layers, width %d, %d heads, micro-batch %d\n", m->vt->name,
            c->n_layer, c->n_embd, c->n_head, m->B);
    pf_linear_summary_header(f);
    int64_t linear_params = 0, dense_linear_params = 0, budget_kept = 0, budget_dense = 0;
    int n_budgeted = 0;
    for (int i = 0; i < m->n_linears; i++) {
        const pf_linear *l = m->linears[i];
        pf_linear_summary_row(l, m->linear_rows[i], f);
        linear_params += pf_linear_params(l);
        dense_linear_params += (int64_t)l->out * l->in + (l->b >= 0 ? l->out : 0);
        if (l->budgeted) {
            n_budgeted++;
            budget_kept += pf_linear_macs(l);
            budget_dense += (int64_t)l->out * l->in;
        }
    }
    if (n_budgeted)
        fprintf(f, "budget %.4g: the %d layers it chose keep %lld of %lld dense weights and "
                   "multiply-adds (%.4f; biases not counted)\n",
                c->budget, n_budgeted, (long long)budget_kept, (long long)budget_dense,
                (double)budget_kept / (double)budget_dense);
    int64_t total = pf_layout_param_count(&m->layout);
    int64_t dense_total = total - linear_params + dense_linear_params;
    double flops = pf_model_train_flops(m, false), dense_flops = pf_model_train_flops(m, true);
    double rows = (double)m->rows_per_sample;
    fprintf(f, "parameters: %lld (dense twin %lld, %.1f%%); linear layers %lld of dense %lld "
               "(%.1f%%)\n",
            (long long)total, (long long)dense_total, 100.0 * total / dense_total,
            (long long)linear_params, (long long)dense_linear_params,
            100.0 * linear_params / dense_linear_params);
    fprintf(f, "training FLOPs per %s: %.4g (dense twin %.4g, %.2fx fewer)\n",
            rows > 1 ? "token" : "image", flops / rows, dense_flops / rows, dense_flops / flops);
    fprintf(f, "arena: %lld floats (%.1f MB) x 4 buffers (params, grads, AdamW m, v)\n",
            (long long)m->layout.numel, 4.0 * m->layout.numel / 1e6);
    // Memory: `pftrain summary` prints the run's plan (memplan.h) after this table.
    if (m->n_fused_mlps)
        fprintf(f, "  %d of %d MLPs recompute their hidden activations in backward rather "
                   "than keep them (pixelfly.recompute_mlp)\n",
                m->n_fused_mlps, m->n_mlps);
}
