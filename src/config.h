// config.h: the training configuration, read from an .ini file (libinih) plus
// `--set section.key=value` overrides. Every key is declared once in the schema table in
// config.c (name, type, default, help); unknown sections and keys, bad values and missing
// files are errors naming file:line and key, with a suggestion for near misses.
#ifndef PF_CONFIG_H
#define PF_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PF_PATH_MAX 1024
// The longest line of a config file, newline excluded: libinih (INI_MAX_LINE = 200, with room
// for "\r\n\0") splits longer ones, so the reader refuses them and no value is accepted whose
// `key = value` line would be longer (docs/FORMATS.md).
#define PF_CONFIG_LINE_MAX 197

// One linear layer type's kind (docs/ARCHITECTURE.md, "Layer kinds"). Zero is dense, so
// `(pf_layer_spec){0}` is a dense layer.
typedef enum {
    PF_LAYER_DENSE,        // y = x W^T + b
    PF_LAYER_AUTO,         // pixelfly.budget's Pixelfly pattern (src/budget.h), else dense
    PF_LAYER_PIXELFLY,     // flat block butterfly bs, nf + low-rank rank
    PF_LAYER_BLOCKSPARSE,  // random mask: bs, blocks per super-row, seed + low-rank rank
    PF_LAYER_BUTTERFLY,    // product of log2(bs) block butterfly factors
    PF_LAYER_LOWRANK,      // y = (x V^T) U^T + b, rank
} pf_layer_kind;

typedef struct {
    pf_layer_kind kind;
    int bs, nf, rank, blocks;
    int64_t seed;  // blocksparse: mixed with the layer's name (each layer its own mask)
} pf_layer_spec;

// The kinds that run through the block-sparse (pixelfly) op with one mask.
static inline bool pf_layer_kind_masked(pf_layer_kind k) {
    return k == PF_LAYER_PIXELFLY || k == PF_LAYER_BLOCKSPARSE;
}

typedef enum { PF_MODEL_GPT2, PF_MODEL_VIT, PF_MODEL_MIXER } pf_model_kind;
typedef enum { PF_SCHED_COSINE, PF_SCHED_LINEAR, PF_SCHED_CONSTANT } pf_schedule;
typedef enum { PF_BACKEND_AUTO, PF_BACKEND_CPU, PF_BACKEND_CUDA } pf_backend_choice;

typedef struct {
    // [model]
    pf_model_kind model;
    int n_layer, n_embd, n_head;
    int seq_len, vocab_size;           // gpt2
    float mlp_ratio;                   // MLP hidden = n_embd * mlp_ratio
    int image_size, patch_size, channels, num_classes;  // vit, mixer
    int token_mlp_dim, channel_mlp_dim;                  // mixer
    float init_std;                    // std of the dense linear layers (0.02 as GPT-2)
    // [pixelfly]: per layer type
    pf_layer_spec attn_qkv, attn_proj, mlp_fc1, mlp_fc2, token_fc1, token_fc2;
    // pixelfly.budget: the fraction of each `auto` layer's dense parameters (and FLOPs) its
    // Pixelfly pattern keeps, chosen by src/budget.h; 0: auto layers are dense.
    float budget;
    // pixelfly.recompute_mlp (formerly fuse_mlp, still accepted): run each MLP whose two layers
    // are Pixelfly through the pixelfly_mlp op, which recomputes the hidden activations in
    // backward instead of keeping them (needs mlp_fc1 and mlp_fc2 Pixelfly; the Mixer's token
    // MLP is recomputed too when token_fc1 and token_fc2 are).
    bool recompute_mlp;
    // [data]
    // A shard path, or a comma-separated list of paths and globs (src/shards.h).
    char train_path[PF_PATH_MAX], val_path[PF_PATH_MAX];
    // Background loading (src/data.h): threads, and batches they build ahead of the step.
    int data_workers, data_prefetch;
    // [train]
    int batch_size, grad_accum;
    int64_t steps;
    float lr, min_lr_frac, weight_decay, beta1, beta2, eps, grad_clip, label_smoothing;
    float dropout;  // probability on the embedding output and every residual branch
    int warmup_steps;
    pf_schedule schedule;
    uint64_t seed;
    int eval_every, eval_batches;
    float augment_scale_min;  // random-resized-crop minimum area (vision); 1 = no crop
    bool hflip;
    // Vision: per-batch mixup / cutmix, lam ~ Beta(alpha, alpha); 0 = off. With both > 0 each
    // batch uses one of the two with probability 1/2 (timm's switch_prob 0.5).
    float mixup_alpha, cutmix_alpha;
    // [run]
    char out_dir[PF_PATH_MAX];
    int log_every;
    pf_backend_choice backend;
    int checkpoint_every, keep_checkpoints;
    int64_t bucket_bytes;  // all-reduce bucket size
    float peak_tflops;     // per-device peak for model FLOP utilisation; 0: known GPUs only
} pf_config;

void pf_config_defaults(pf_config *c);
// Parses `path` over the defaults. -1 with pf_error("FILE:LINE: ...") on any problem.
int pf_config_load(pf_config *c, const char *path);
// The same from text (a checkpoint's /config); `origin` names it in messages.
int pf_config_load_string(pf_config *c, const char *text, const char *origin);
// Applies one "section.key=value" override; -1 with pf_error naming it.
int pf_config_set(pf_config *c, const char *assignment);
// Cross-key checks (n_embd % n_head, image_size % patch_size ...); -1 with pf_error.
int pf_config_validate(const pf_config *c);
// Writes the complete resolved configuration as .ini text (loads back to the same config).
void pf_config_write(const pf_config *c, FILE *f);
char *pf_config_to_string(const pf_config *c);  // malloc'd
// Every key with its default and meaning (`pftrain keys`).
void pf_config_print_keys(FILE *f);
// "dense" or "bs=16 nf=2 rank=32" (any order; rank defaults to 0); -1 with pf_error.
int pf_layer_spec_parse(pf_layer_spec *s, const char *text);
void pf_layer_spec_format(const pf_layer_spec *s, char *buf, size_t len);
// "dense", "auto", "pixelfly", "blocksparse", "butterfly", "lowrank": the spec's kind word.
const char *pf_layer_kind_name(pf_layer_kind k);
// The kind a layer spec resolves to under c's budget: auto is Pixelfly with a budget, dense
// without.
pf_layer_kind pf_config_layer_kind(const pf_config *c, const pf_layer_spec *s);
static inline bool pf_config_layer_masked(const pf_config *c, const pf_layer_spec *s) {
    return pf_layer_kind_masked(pf_config_layer_kind(c, s));
}

static inline int pf_config_mlp_hidden(const pf_config *c) {
    return (int)(c->n_embd * c->mlp_ratio + 0.5f);
}

#endif
