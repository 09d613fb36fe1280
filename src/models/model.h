// model.h: the models (GPT-2, ViT, MLP-Mixer), written once against the op interface.
#ifndef PF_MODEL_H
#define PF_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "backend.h"
#include "checkpoint.h"
#include "config.h"
#include "layers.h"

typedef struct pf_model pf_model;

// One micro-batch on the host. GPT-2: tokens and targets [B, T] (target -1: ignored).
// Vision: images [B, H, W, C] normalised, labels [B]; a mixed (mixup/cutmix) training batch
// also has labels_b [B] and lam, and its loss is lam * CE(labels) + (1 - lam) * CE(labels_b).
// labels_b NULL: not mixed (lam unused).
typedef struct {
    const int32_t *tokens, *targets;
    const float *images;
    const int32_t *labels, *labels_b;
    float lam;
} pf_batch;

// Sums over evaluated rows (tokens for GPT-2, images for vision).
typedef struct {
    double loss_sum;
    int64_t count, correct1, correct5;
} pf_eval_stats;

// Builds the model for micro-batch B on backend be. NULL with pf_error() when the config
// does not describe a valid model (e.g. a Pixelfly pattern that does not fit a layer).
pf_model *pf_model_create(const pf_config *c, const pf_backend *be, int B);

// What pf_model_create(c, be, B) would allocate, in bytes, computed without allocating it
// (the same declarations run with every buffer only counted). On be's device: the fp32
// parameters, gradients and AdamW moments (m and v), the compute copy of the weights (bf16
// backends; 0 when the parameters are it) and the activations (saved activations and
// backward scratch at micro-batch B); on the host: the model's host buffers (losses,
// targets, image patches). -1 with pf_error() as pf_model_create.
typedef struct {
    int B;
    int64_t numel;  // parameter arena elements
    double params, grads, optim, weights, activations;  // device
    double host;
} pf_model_memory;
int pf_model_plan(const pf_config *c, const pf_backend *be, int B, pf_model_memory *out);
// The model of c with its layers and parameter layout but no buffers at all: for
// pf_model_summary, pf_model_train_flops and the layout; never init, forward or backward it.
pf_model *pf_model_describe(const pf_config *c, const pf_backend *be, int B);
void pf_model_free(pf_model *m);

// Draws all parameters from `seed` on the host and uploads them.
void pf_model_init_params(pf_model *m, uint64_t seed);

// Forward pass on one micro-batch; returns the mean loss over its rows and adds to *stats
// (may be NULL). Activations are kept for pf_model_backward. batch NULL: the micro-batch
// pf_model_stage staged.
float pf_model_forward(pf_model *m, const pf_batch *batch, pf_eval_stats *stats);
// Dropout (train.dropout > 0) in the next pf_model_forward and its backward only; a forward
// not armed (an evaluation) drops nothing. The masks are drawn from train.seed, the run's
// micro-batch number `micro` (counted from 0 across steps) and the global sample number of
// the micro-batch's first row, `first_sample` (rank r of micro-batch size B: r * B), so that
// they depend on neither the rank count nor the backend (docs/MODELS.md, "Dropout").
void pf_model_arm_dropout(pf_model *m, uint64_t micro, int64_t first_sample);
// Copies the micro-batch's inputs out of *batch (which may change once this returns) and
// starts their upload, so that it overlaps the ops issued before (on CUDA: host memory
// page-locked, copies on a stream of their own; on the CPU a plain copy). The next
// pf_model_forward(m, NULL, ...) computes it; a forward with a batch in between (an
// evaluation) leaves it staged. One staged micro-batch at a time.
void pf_model_stage(pf_model *m, const pf_batch *batch);
// Called during backward whenever the gradients of every parameter at arena offset >= `from`
// are final (ends with from = 0), so their all-reduce can start while backward goes on.
typedef void (*pf_grads_ready_fn)(void *ctx, int64_t from);
// Adds d(scale * mean loss)/d(params) into the gradient arena; `ready` may be NULL.
void pf_model_backward(pf_model *m, float scale, pf_grads_ready_fn ready, void *ctx);

// One AdamW step over every parameter (train.beta1/beta2/eps/weight_decay of the model's
// config; no weight decay on no_decay tensors) at learning rate lr, with the gradients
// multiplied by grad_scale first (clipping, averaging); step is 1-based.
void pf_model_adamw_step(pf_model *m, float lr, int step, float grad_scale);

pf_arena *pf_model_arena(pf_model *m);
const pf_layout *pf_model_layout(const pf_model *m);
int64_t pf_model_rows_per_sample(const pf_model *m);  // tokens per sequence, or 1 per image
// Bytes of the model's activation buffers (saved activations and backward scratch) at its
// micro-batch: what `pftrain summary` prints per sample.
int64_t pf_model_activation_bytes(const pf_model *m);
// Training FLOPs per sample (6 x multiply-adds of the linear layers plus attention), of this
// model and of its all-dense twin.
double pf_model_train_flops(const pf_model *m, bool dense_twin);
// Per-layer table, totals, FLOPs.
void pf_model_summary(const pf_model *m, FILE *f);
// The model's linear layers in declaration order: layer i, NULL when i >= their number.
const pf_linear *pf_model_linear_at(const pf_model *m, int i);

// The random masks of the model's blocksparse layers, as a checkpoint stores them: sets
// st->n_masks and st->masks (the caller frees st->masks[i].col and st->masks, or the whole
// state with pf_checkpoint_state_free).
void pf_model_masks(const pf_model *m, pf_checkpoint_state *st);
// Makes every blocksparse layer use the mask `st` holds for it (loaded from `path`). -1 with
// pf_error naming the file and the layer when one is missing or does not fit the layer.
int pf_model_adopt_masks(pf_model *m, const pf_checkpoint_state *st, const char *path);

// GPT-2 only: the V real logits of row `row` (b * T + t) of the last forward, to the host.
void pf_gpt2_logits_row(pf_model *m, int64_t row, float *host);

#endif
