// vision.c: ViT and MLP-Mixer classifiers over patches.
//
// Both start from images [B, H, W, C] (normalised, on the host), cut into P = (H/p)(W/p)
// patches of p*p*C values each [B, P, p*p*C] (row-major patches, then (py, px, c) inside a
// patch), and embed them with a linear map (the "stem") to [B, P, D].
//   ViT:   [cls; patches] + pos -> [B, P+1, D] -> pre-LN transformer blocks (no causal mask)
//          -> lnf -> class token [B, D] -> head [B, K]
//   Mixer: blocks of token mixing (transpose to [B, D, P], MLP over P: P -> Dt -> P, back)
//          and channel mixing (MLP over D: D -> Dc -> D), each pre-LN with a residual
//          -> lnf -> mean over patches [B, D] -> head [B, K]
// train.dropout drops on x0 (the embedded patches, with the class token and positions for ViT)
// and on every residual branch before its addition (docs/MODELS.md, "Dropout").
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model_impl.h"

typedef struct {
    pf_ln ln1, ln2;
    pf_mlp token, channel;
    void *x, *h1, *h1t, *tt, *tok, *x2, *h2, *y;  // x: input, not owned
    int layer;  // dropout sites 1 + 2 layer (token mixing) and 2 + 2 layer (channel)
} mixer_block;

typedef struct {
    bool vit;
    int P, patch_dim, D, K, T;   // T: tokens through the blocks (P+1 for ViT, P for Mixer)
    pf_linear stem, head;
    int cls, pos;                // ViT
    pf_block *blocks;            // ViT
    mixer_block *mblocks;        // Mixer
    pf_ln lnf;
    pf_block_scratch scratch;
    void *dtok_t, *dtok;         // Mixer backward: [B*D, P] and [B, P, D]
    // Model inputs (pf_model_input): patches fp32 [B, P, patch_dim], labels int32 [B] and
    // the mixing partners' labels_b [B]; per input set, whether it has labels_b and its lam.
    int in_patches, in_labels, in_labels_b;
    bool set_mixed[PF_INPUT_SETS];
    float set_lam[PF_INPUT_SETS];
    void *patches_act;           // bf16 activations: the patches converted; fp32: NULL
    void *patches;               // what the last forward's stem read: patches_act or the set's
    void *xp, *x0, *hf, *pooled, *logits;
    float *losses;               // [B]
    void *dres, *dhf, *dpooled, *dlogits, *dxp;
    float *host_logits, *host_losses;
    float smoothing;             // of the last forward (0 in evaluation)
    bool mixed;                  // the last forward was a mixed training batch
    float lam;                   // its weight of labels (1 when not mixed)
} vision;

// images [B, H, W, C] -> patches [B, P, p*p*C]
static void patchify(const float *img, int B, int H, int W, int C, int p, float *out) {
    int gw = W / p, P = (H / p) * gw, dim = p * p * C;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < P; k++) {
            int py = k / gw, px = k % gw;
            float *dst = out + ((size_t)b * P + k) * dim;
            for (int y = 0; y < p; y++)
                memcpy(dst + (size_t)y * p * C,
                       img + (((size_t)b * H + py * p + y) * W + px * p) * C,
                       sizeof(float) * p * C);
        }
}

static int mixer_block_declare(pf_model *m, vision *v, mixer_block *mb, int l) {
    const pf_config *c = &m->cfg;
    int B = m->B;
    int64_t N = (int64_t)B * v->P;
    char name[48];
    mb->layer = l;
    snprintf(name, sizeof name, "h.%d.ln1", l);
    pf_ln_declare(m, &mb->ln1, name, v->D, N);
    snprintf(name, sizeof name, "h.%d.token", l);
    if (pf_mlp_declare(m, &mb->token, name, (int64_t)B * v->D, v->P, c->token_mlp_dim, v->P,
                       c->token_fc1, c->token_fc2) < 0)
        return -1;
    snprintf(name, sizeof name, "h.%d.ln2", l);
    pf_ln_declare(m, &mb->ln2, name, v->D, N);
    snprintf(name, sizeof name, "h.%d.mlp", l);
    if (pf_mlp_declare(m, &mb->channel, name, N, v->D, c->channel_mlp_dim, v->D, c->mlp_fc1,
                       c->mlp_fc2) < 0)
        return -1;
    mb->h1 = pf_act(m, N * v->D);
    mb->h1t = pf_act(m, N * v->D);
    mb->tt = pf_act(m, N * v->D);
    mb->tok = pf_act(m, N * v->D);
    mb->x2 = pf_act(m, N * v->D);
    mb->h2 = pf_act(m, N * v->D);
    mb->y = pf_act(m, N * v->D);
    return 0;
}

static int vision_declare(pf_model *m, bool vit) {
    const pf_config *c = &m->cfg;
    vision *v = m->impl = pf_calloc(1, sizeof *v);
    int B = m->B, p = c->patch_size, g = c->image_size / p;
    v->vit = vit;
    v->P = g * g;
    v->patch_dim = p * p * c->channels;
    v->D = c->n_embd;
    v->K = c->num_classes;
    v->T = vit ? v->P + 1 : v->P;
    m->rows_per_sample = 1;
    int64_t NP = (int64_t)B * v->P, NT = (int64_t)B * v->T;
    pf_layer_spec dense = {0};
    if (pf_model_linear(m, &v->stem, "stem", v->patch_dim, v->D, true, dense, v->P) < 0) return -1;
    if (vit) {
        // Decay on every matrix (the position embedding too), none on vectors: the class
        // token, like biases and layernorm parameters (docs/MODELS.md, "Weight decay").
        v->cls = pf_model_param(m, "cls", 1, (int64_t[]){v->D}, true);
        v->pos = pf_model_param(m, "pos", 2, (int64_t[]){v->T, v->D}, false);
        v->blocks = pf_calloc(c->n_layer, sizeof *v->blocks);
        int H = pf_config_mlp_hidden(c);
        for (int l = 0; l < c->n_layer; l++)
            if (pf_block_declare(m, &v->blocks[l], l, B, v->T, v->D, c->n_head, H, false) < 0)
                return -1;
        pf_block_scratch_alloc(m, &v->scratch, B, v->T, v->D);
    } else {
        v->mblocks = pf_calloc(c->n_layer, sizeof *v->mblocks);
        for (int l = 0; l < c->n_layer; l++)
            if (mixer_block_declare(m, v, &v->mblocks[l], l) < 0) return -1;
        // dxv for the largest linear backward scratch; the MLPs' df, dg are m->mlp_scratch
        v->scratch.dh = pf_act(m, NP * v->D);
        v->scratch.dxv = pf_act(m, m->linear_scratch_n);
        v->dtok_t = pf_act(m, NP * v->D);
        v->dtok = pf_act(m, NP * v->D);
    }
    pf_ln_declare(m, &v->lnf, "lnf", v->D, NT);
    if (pf_model_linear(m, &v->head, "head", v->D, v->K, true, dense, 1) < 0) return -1;
    v->in_patches = pf_model_input(m, sizeof(float) * (size_t)(NP * v->patch_dim));
    v->in_labels = pf_model_input(m, sizeof(int32_t) * (size_t)B);
    v->in_labels_b = pf_model_input(m, sizeof(int32_t) * (size_t)B);
    v->patches_act = m->be->act_dtype == PF_F32 ? NULL : pf_act(m, NP * v->patch_dim);
    v->xp = pf_act(m, NP * v->D);
    v->x0 = vit ? pf_act(m, NT * v->D) : v->xp;
    pf_dropout_site(m, NT * v->D);  // x0 and every block's branches
    v->hf = pf_act(m, NT * v->D);
    v->pooled = pf_act(m, (int64_t)B * v->D);
    v->logits = pf_act(m, (int64_t)B * v->K);
    v->losses = pf_act_f32(m, B);
    v->dres = pf_act(m, NT * v->D);
    v->dhf = pf_act(m, NT * v->D);
    v->dpooled = pf_act(m, (int64_t)B * v->D);
    v->dlogits = pf_act(m, (int64_t)B * v->K);
    v->dxp = pf_act(m, NP * v->D);
    v->host_logits = pf_host_buf(m, (int64_t)B * v->K, sizeof(float));
    v->host_losses = pf_host_buf(m, B, sizeof(float));
    return 0;
}

static int vit_declare(pf_model *m) { return vision_declare(m, true); }
static int mixer_declare(pf_model *m) { return vision_declare(m, false); }

static void vision_free(pf_model *m) {
    vision *v = m->impl;
    free(v->blocks);
    free(v->mblocks);
    free(v->host_logits);
    free(v->host_losses);
}

static void vision_init(pf_model *m, float *host, pf_rng *rng) {
    const pf_config *c = &m->cfg;
    vision *v = m->impl;
    // stem: unit-variance patch values -> init_std-scaled embeddings regardless of patch size
    pf_linear_init(&v->stem, &m->layout, host, 1.0f / sqrtf((float)v->patch_dim), rng);
    if (v->vit) {
        pf_fill_normal(m, host, v->cls, c->init_std, rng);
        pf_fill_normal(m, host, v->pos, c->init_std, rng);
        for (int l = 0; l < c->n_layer; l++) pf_block_init(m, &v->blocks[l], host, rng);
    } else {
        float out_std = c->init_std / sqrtf(2.0f * c->n_layer);
        for (int l = 0; l < c->n_layer; l++) {
            mixer_block *mb = &v->mblocks[l];
            pf_ln_init(m, &mb->ln1, host);
            pf_ln_init(m, &mb->ln2, host);
            pf_mlp_init(m, &mb->token, host, c->init_std, out_std, rng);
            pf_mlp_init(m, &mb->channel, host, c->init_std, out_std, rng);
        }
    }
    pf_ln_init(m, &v->lnf, host);
    pf_linear_init(&v->head, &m->layout, host, c->init_std, rng);
}

static void mixer_block_forward(pf_model *m, vision *v, mixer_block *mb, void *x) {
    const pf_backend *be = m->be;
    int B = m->B, P = v->P, D = v->D;
    int64_t N = (int64_t)B * P;
    mb->x = x;
    pf_tensor tx = pf_act2(m, x, N, D), th1 = pf_act2(m, mb->h1, N, D);
    pf_ln_forward(m, &mb->ln1, th1, tx);
    be->transpose_fwd(pf_act3(m, mb->h1t, B, D, P), pf_act3(m, mb->h1, B, P, D));
    pf_mlp_forward(m, &mb->token, pf_act2(m, mb->tt, (int64_t)B * D, P),
                   pf_act2(m, mb->h1t, (int64_t)B * D, P));
    pf_tensor tok = pf_act3(m, mb->tok, B, P, D);
    be->transpose_fwd(tok, pf_act3(m, mb->tt, B, D, P));
    pf_dropout_forward(m, 1 + 2 * mb->layer, tok);
    pf_tensor tx2 = pf_act2(m, mb->x2, N, D), th2 = pf_act2(m, mb->h2, N, D);
    be->add(tx2, tx, pf_act2(m, mb->tok, N, D));
    pf_ln_forward(m, &mb->ln2, th2, tx2);
    pf_tensor ty = pf_act2(m, mb->y, N, D);
    pf_mlp_forward(m, &mb->channel, ty, th2);
    pf_dropout_forward(m, 2 + 2 * mb->layer, ty);
    be->add(ty, ty, tx2);
}

static void mixer_block_backward(pf_model *m, vision *v, mixer_block *mb, void *dres) {
    const pf_backend *be = m->be;
    const pf_block_scratch *s = &v->scratch;
    int B = m->B, P = v->P, D = v->D;
    int64_t N = (int64_t)B * P;
    size_t bytes = pf_act_bytes(m, N * D);
    pf_tensor tdres = pf_act2(m, dres, N, D), tdh = pf_act2(m, s->dh, N, D);
    be->zero(s->dh, bytes);
    pf_mlp_backward(m, &mb->channel, tdh, pf_dropout_backward(m, 2 + 2 * mb->layer, tdres),
                    pf_act2(m, mb->h2, N, D), s->dxv);
    pf_ln_backward(m, &mb->ln2, tdres, tdh, pf_act2(m, mb->x2, N, D));
    // token mixing: tok = dropout(transpose(tokmlp(transpose(ln1(x)))))
    be->zero(v->dtok_t, bytes);
    be->transpose_bwd(pf_act3(m, v->dtok_t, B, D, P),
                      pf_dropout_backward(m, 1 + 2 * mb->layer, pf_act3(m, dres, B, P, D)));
    be->zero(v->dtok, bytes);
    pf_mlp_backward(m, &mb->token, pf_act2(m, v->dtok, (int64_t)B * D, P),
                    pf_act2(m, v->dtok_t, (int64_t)B * D, P),
                    pf_act2(m, mb->h1t, (int64_t)B * D, P), s->dxv);
    be->zero(s->dh, bytes);
    be->transpose_bwd(pf_act3(m, s->dh, B, P, D), pf_act3(m, v->dtok, B, D, P));
    pf_ln_backward(m, &mb->ln1, tdres, tdh, pf_act2(m, mb->x, N, D));
}

static void *blocks_output(pf_model *m) {
    vision *v = m->impl;
    int L = m->cfg.n_layer;
    return v->vit ? v->blocks[L - 1].y : v->mblocks[L - 1].y;
}

// Sum over the batch of the (smoothed) cross-entropy of the last logits against labels [B].
static double xent_sum(pf_model *m, vision *v, pf_tensor labels) {
    const pf_backend *be = m->be;
    int B = m->B;
    be->xent_fwd(pf_tensor_1d(v->losses, PF_F32, be->device, B),
                 pf_act2(m, v->logits, B, v->K), labels, v->K, -1, v->smoothing);
    be->download(v->host_losses, v->losses, sizeof(float) * B);
    double sum = 0;
    for (int b = 0; b < B; b++) sum += v->host_losses[b];
    return sum;
}

// Labels [B] (input in_labels or in_labels_b) of input set `set` on the device.
static pf_tensor input_labels(const pf_model *m, int idx, int set) {
    return pf_tensor_1d(m->inputs[idx].dev[set], PF_I32, m->be->device, m->B);
}

static void vision_stage(pf_model *m, int set, const pf_batch *batch) {
    const pf_config *c = &m->cfg;
    vision *v = m->impl;
    size_t label_bytes = sizeof(int32_t) * (size_t)m->B;
    patchify(batch->images, m->B, c->image_size, c->image_size, c->channels, c->patch_size,
             m->inputs[v->in_patches].host[set]);
    memcpy(m->inputs[v->in_labels].host[set], batch->labels, label_bytes);
    pf_model_input_upload(m, v->in_patches, set);
    pf_model_input_upload(m, v->in_labels, set);
    v->set_mixed[set] = batch->labels_b != NULL;
    v->set_lam[set] = batch->labels_b ? batch->lam : 1.0f;
    if (batch->labels_b) {
        memcpy(m->inputs[v->in_labels_b].host[set], batch->labels_b, label_bytes);
        pf_model_input_upload(m, v->in_labels_b, set);
    }
}

static float vision_forward(pf_model *m, int set, pf_eval_stats *stats) {
    const pf_config *c = &m->cfg;
    const pf_backend *be = m->be;
    vision *v = m->impl;
    int B = m->B, D = v->D, K = v->K;
    int64_t NP = (int64_t)B * v->P, NT = (int64_t)B * v->T;
    const int32_t *host_labels = m->inputs[v->in_labels].host[set];
    v->patches = m->inputs[v->in_patches].dev[set];
    if (v->patches_act) {
        be->convert(pf_act2(m, v->patches_act, NP, v->patch_dim),
                    pf_tensor_2d(v->patches, PF_F32, be->device, NP, v->patch_dim));
        v->patches = v->patches_act;
    }
    pf_linear_forward(&v->stem, &m->arena, pf_act2(m, v->xp, NP, D), pf_none(),
                      pf_act2(m, v->patches, NP, v->patch_dim));
    void *x = v->x0;
    if (v->vit)
        be->cls_token_fwd(pf_act3(m, v->x0, B, v->T, D), pf_act3(m, v->xp, B, v->P, D),
                          pf_param(m, v->cls), pf_param(m, v->pos));
    pf_dropout_forward(m, 0, pf_act3(m, v->x0, B, v->T, D));
    if (v->vit) {
        for (int l = 0; l < c->n_layer; l++) {
            pf_block_forward(m, &v->blocks[l], x);
            x = v->blocks[l].y;
        }
    } else {
        for (int l = 0; l < c->n_layer; l++) {
            mixer_block_forward(m, v, &v->mblocks[l], x);
            x = v->mblocks[l].y;
        }
    }
    pf_ln_forward(m, &v->lnf, pf_act2(m, v->hf, NT, D), pf_act2(m, x, NT, D));
    pf_tensor hf3 = pf_act3(m, v->hf, B, v->T, D), pooled = pf_act2(m, v->pooled, B, D);
    if (v->vit) be->cls_select_fwd(pooled, hf3);
    else be->meanpool_fwd(pooled, hf3);
    pf_tensor logits = pf_act2(m, v->logits, B, K);
    pf_linear_forward(&v->head, &m->arena, logits, pf_none(), pooled);
    v->smoothing = stats ? 0.0f : c->label_smoothing;
    // Evaluation ignores mixing: its loss and accuracy are against labels alone.
    v->mixed = !stats && v->set_mixed[set];
    v->lam = v->mixed ? v->set_lam[set] : 1.0f;
    double sum = v->lam * xent_sum(m, v, input_labels(m, v->in_labels, set));
    if (v->mixed) sum += (1.0 - v->lam) * xent_sum(m, v, input_labels(m, v->in_labels_b, set));
    // Label -1 marks the padding of an evaluation batch: loss 0 (ignored), not counted.
    int valid = 0;
    for (int b = 0; b < B; b++) valid += host_labels[b] >= 0;
    if (stats) {
        pf_act_download(m, v->host_logits, v->logits, (int64_t)B * K);
        for (int b = 0; b < B; b++) {
            const float *row = v->host_logits + (size_t)b * K;
            int label = host_labels[b], above = 0;
            if (label < 0) continue;
            for (int k = 0; k < K; k++) above += row[k] > row[label];
            stats->correct1 += above == 0;
            stats->correct5 += above < 5;
        }
        stats->loss_sum += sum;
        stats->count += valid;
    }
    return valid ? (float)(sum / valid) : 0.0f;
}

static void vision_backward(pf_model *m, float scale, pf_grads_ready_fn ready, void *ctx) {
    const pf_config *c = &m->cfg;
    const pf_backend *be = m->be;
    vision *v = m->impl;
    int B = m->B, D = v->D, K = v->K;
    int64_t NP = (int64_t)B * v->P, NT = (int64_t)B * v->T;
    pf_tensor logits = pf_act2(m, v->logits, B, K), dlogits = pf_act2(m, v->dlogits, B, K);
    be->zero(v->dlogits, pf_act_bytes(m, (int64_t)B * K));
    be->xent_bwd(dlogits, logits, input_labels(m, v->in_labels, m->active), K, -1, v->smoothing,
                 scale * v->lam / (float)B);
    if (v->mixed)
        be->xent_bwd(dlogits, logits, input_labels(m, v->in_labels_b, m->active), K, -1,
                     v->smoothing, scale * (1.0f - v->lam) / (float)B);
    be->zero(v->dpooled, pf_act_bytes(m, (int64_t)B * D));
    pf_tensor dpooled = pf_act2(m, v->dpooled, B, D);
    pf_linear_backward(&v->head, &m->arena, dpooled, dlogits, pf_act2(m, v->pooled, B, D),
                       pf_none(), pf_none());
    be->zero(v->dhf, pf_act_bytes(m, NT * D));
    pf_tensor dhf3 = pf_act3(m, v->dhf, B, v->T, D);
    if (v->vit) be->cls_select_bwd(dhf3, dpooled);
    else be->meanpool_bwd(dhf3, dpooled);
    be->zero(v->dres, pf_act_bytes(m, NT * D));
    pf_ln_backward(m, &v->lnf, pf_act2(m, v->dres, NT, D), pf_act2(m, v->dhf, NT, D),
                   pf_act2(m, blocks_output(m), NT, D));
    for (int l = c->n_layer - 1; l >= 0; l--) {
        if (v->vit) {
            pf_block_backward(m, &v->blocks[l], v->dres, &v->scratch);
            if (ready) ready(ctx, pf_block_first_offset(m, &v->blocks[l]));
        } else {
            mixer_block_backward(m, v, &v->mblocks[l], v->dres);
            if (ready) ready(ctx, m->layout.params[v->mblocks[l].ln1.g].offset);
        }
    }
    // the gradient of x0 (ViT: [B, T, D]; Mixer: xp, [B, P, D]) before its dropout
    pf_tensor dx0 = pf_dropout_backward(m, 0, pf_act3(m, v->dres, B, v->T, D));
    pf_tensor dxp = dx0;
    if (v->vit) {
        be->zero(v->dxp, pf_act_bytes(m, NP * D));
        dxp = pf_act3(m, v->dxp, B, v->P, D);
        be->cls_token_bwd(dxp, pf_grad(m, v->cls), pf_grad(m, v->pos), dx0);
    }
    pf_linear_backward(&v->stem, &m->arena, pf_none(), pf_act2(m, dxp.data, NP, D),
                       pf_act2(m, v->patches, NP, v->patch_dim), pf_none(), pf_none());
    if (ready) ready(ctx, 0);
}

const pf_model_vtable pf_vit_vtable = {
    .name = "vit",
    .declare = vit_declare,
    .init = vision_init,
    .stage = vision_stage,
    .forward = vision_forward,
    .backward = vision_backward,
    .free = vision_free,
};

const pf_model_vtable pf_mixer_vtable = {
    .name = "mixer",
    .declare = mixer_declare,
    .init = vision_init,
    .stage = vision_stage,
    .forward = vision_forward,
    .backward = vision_backward,
    .free = vision_free,
};
