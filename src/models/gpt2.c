// gpt2.c: GPT-2 (pre-LN blocks, learned position embeddings, LM head tied to the token
// embedding, vocabulary padded to a multiple of 64 whose padding logits are masked out).
//
// Shapes, with N = B*T rows and Vp = V rounded up to 64:
//   tokens, targets [B, T] int32  ->  x0 [N, C] = dropout(wte[tokens] + wpe[t])
//   blocks: [N, C] -> [N, C]; lnf -> hf [N, C]; logits [N, Vp] = hf wte^T; losses [N]
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model_impl.h"

typedef struct {
    int V, Vp, T, C;
    int wte, wpe;
    pf_block *blocks;
    pf_ln lnf;
    pf_block_scratch scratch;
    int in_ids, in_targets;          // model inputs (pf_model_input): int32 [N] each
    void *x0, *hf, *logits;          // activations
    float *losses;                   // [N]
    void *dres, *dhf, *dlogits;      // backward buffers
    float *host_losses;              // [N]
    int64_t count;                   // non-ignored targets of the last forward
} gpt2;

static int gpt2_declare(pf_model *m) {
    const pf_config *c = &m->cfg;
    gpt2 *g = m->impl = pf_calloc(1, sizeof *g);
    int B = m->B, T = c->seq_len, C = c->n_embd, H = pf_config_mlp_hidden(c);
    int64_t N = (int64_t)B * T;
    g->V = c->vocab_size;
    g->Vp = (c->vocab_size + 63) / 64 * 64;
    g->T = T;
    g->C = C;
    m->rows_per_sample = T;
    // Weight decay on every matrix, both embeddings included; none on biases and layernorm
    // parameters (docs/MODELS.md, "Weight decay").
    g->wte = pf_model_param(m, "wte", 2, (int64_t[]){g->Vp, C}, false);
    g->wpe = pf_model_param(m, "wpe", 2, (int64_t[]){T, C}, false);
    g->blocks = pf_calloc(c->n_layer, sizeof *g->blocks);
    for (int l = 0; l < c->n_layer; l++)
        if (pf_block_declare(m, &g->blocks[l], l, B, T, C, c->n_head, H, true) < 0) return -1;
    pf_ln_declare(m, &g->lnf, "lnf", C, N);
    // The tied LM head: a dense linear over wte, counted in the FLOPs like any other.
    m->other_macs_per_sample += (double)T * g->Vp * C;
    pf_block_scratch_alloc(m, &g->scratch, B, T, C);
    g->in_ids = pf_model_input(m, sizeof(int32_t) * (size_t)N);
    g->in_targets = pf_model_input(m, sizeof(int32_t) * (size_t)N);
    g->x0 = pf_act(m, N * C);
    pf_dropout_site(m, N * C);
    g->hf = pf_act(m, N * C);
    g->logits = pf_act(m, N * g->Vp);
    g->dlogits = pf_act(m, N * g->Vp);
    g->losses = pf_act_f32(m, N);
    g->dres = pf_act(m, N * C);
    g->dhf = pf_act(m, N * C);
    g->host_losses = pf_host_buf(m, N, sizeof(float));
    return 0;
}

static void gpt2_free(pf_model *m) {
    gpt2 *g = m->impl;
    free(g->blocks);
    free(g->host_losses);
}

static void gpt2_init(pf_model *m, float *host, pf_rng *rng) {
    gpt2 *g = m->impl;
    pf_fill_normal(m, host, g->wte, m->cfg.init_std, rng);
    // padding rows stay zero: no logit mass, no gradient, no decay drift
    memset(host + m->layout.params[g->wte].offset + (int64_t)g->V * g->C, 0,
           sizeof(float) * (size_t)(g->Vp - g->V) * g->C);
    pf_fill_normal(m, host, g->wpe, m->cfg.init_std / 2, rng);
    for (int l = 0; l < m->cfg.n_layer; l++) pf_block_init(m, &g->blocks[l], host, rng);
    pf_ln_init(m, &g->lnf, host);
}

static void *last_output(pf_model *m) {
    gpt2 *g = m->impl;
    return m->cfg.n_layer ? g->blocks[m->cfg.n_layer - 1].y : g->x0;
}

static void gpt2_stage(pf_model *m, int set, const pf_batch *batch) {
    gpt2 *g = m->impl;
    size_t bytes = sizeof(int32_t) * (size_t)m->B * g->T;
    memcpy(m->inputs[g->in_ids].host[set], batch->tokens, bytes);
    memcpy(m->inputs[g->in_targets].host[set], batch->targets, bytes);
    pf_model_input_upload(m, g->in_ids, set);
    pf_model_input_upload(m, g->in_targets, set);
}

// Token ids or targets [B, T] of input set `set` on the device.
static pf_tensor input_tokens(const pf_model *m, int idx, int set) {
    const gpt2 *g = m->impl;
    return pf_tensor_2d(m->inputs[idx].dev[set], PF_I32, m->be->device, m->B, g->T);
}

static float gpt2_forward(pf_model *m, int set, pf_eval_stats *stats) {
    gpt2 *g = m->impl;
    const pf_backend *be = m->be;
    int B = m->B, T = g->T, C = g->C;
    int64_t N = (int64_t)B * T;
    const int32_t *host_targets = m->inputs[g->in_targets].host[set];
    pf_tensor x0 = pf_act3(m, g->x0, B, T, C);
    be->embedding_fwd(x0, input_tokens(m, g->in_ids, set), pf_param(m, g->wte),
                      pf_param(m, g->wpe));
    pf_dropout_forward(m, 0, x0);
    void *x = g->x0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        pf_block_forward(m, &g->blocks[l], x);
        x = g->blocks[l].y;
    }
    pf_ln_forward(m, &g->lnf, pf_act2(m, g->hf, N, C), pf_act2(m, x, N, C));
    pf_tensor logits = pf_act2(m, g->logits, N, g->Vp);
    be->linear_fwd(logits, pf_act2(m, g->hf, N, C), pf_param(m, g->wte), pf_none());
    be->xent_fwd(pf_tensor_1d(g->losses, PF_F32, be->device, N), logits,
                 input_tokens(m, g->in_targets, set), g->V, -1, 0.0f);
    be->download(g->host_losses, g->losses, sizeof(float) * N);
    double sum = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < N; i++)
        if (host_targets[i] >= 0) sum += g->host_losses[i], count++;
    g->count = count;
    if (stats) stats->loss_sum += sum, stats->count += count;
    return count ? (float)(sum / count) : 0.0f;
}

static void gpt2_backward(pf_model *m, float scale, pf_grads_ready_fn ready, void *ctx) {
    gpt2 *g = m->impl;
    const pf_backend *be = m->be;
    int B = m->B, T = g->T, C = g->C;
    int64_t N = (int64_t)B * T;
    if (g->count == 0) {  // every target ignored: no gradient, but the bucket protocol runs
        if (ready) ready(ctx, 0);
        return;
    }
    pf_tensor logits = pf_act2(m, g->logits, N, g->Vp), dlogits = pf_act2(m, g->dlogits, N, g->Vp);
    be->zero(g->dlogits, pf_act_bytes(m, N * g->Vp));
    be->xent_bwd(dlogits, logits, input_tokens(m, g->in_targets, m->active), g->V, -1, 0.0f,
                 scale / (float)g->count);
    be->zero(g->dhf, pf_act_bytes(m, N * C));
    be->linear_bwd(pf_act2(m, g->dhf, N, C), pf_grad(m, g->wte), pf_none(), dlogits,
                   pf_act2(m, g->hf, N, C), pf_param(m, g->wte));
    be->zero(g->dres, pf_act_bytes(m, N * C));
    pf_ln_backward(m, &g->lnf, pf_act2(m, g->dres, N, C), pf_act2(m, g->dhf, N, C),
                   pf_act2(m, last_output(m), N, C));
    // wte and wpe come first in the layout and are final only after the embedding backward;
    // each block's parameters (and lnf, after them) are final once the block is done.
    for (int l = m->cfg.n_layer - 1; l >= 0; l--) {
        pf_block_backward(m, &g->blocks[l], g->dres, &g->scratch);
        if (ready) ready(ctx, pf_block_first_offset(m, &g->blocks[l]));
    }
    be->embedding_bwd(pf_grad(m, g->wte), pf_grad(m, g->wpe),
                      pf_dropout_backward(m, 0, pf_act3(m, g->dres, B, T, C)),
                      input_tokens(m, g->in_ids, m->active));
    if (ready) ready(ctx, 0);
}

void pf_gpt2_logits_row(pf_model *m, int64_t row, float *host) {
    gpt2 *g = m->impl;
    PF_ASSERT(m->cfg.model == PF_MODEL_GPT2 && row >= 0 && row < (int64_t)m->B * g->T);
    pf_act_download(m, host, pf_act_at(m, g->logits, row * g->Vp), g->V);
}

const pf_model_vtable pf_gpt2_vtable = {
    .name = "gpt2",
    .declare = gpt2_declare,
    .init = gpt2_init,
    .stage = gpt2_stage,
    .forward = gpt2_forward,
    .backward = gpt2_backward,
    .free = gpt2_free,
};
