// export.h: a checkpoint as DIR/model.safetensors + DIR/config.json for other frameworks
// (`pftrain export`; docs/FORMATS.md, "Export").
//
//   native     every parameter as the checkpoint stores it (Pixelfly S [bs, nf+1, ob, ib],
//              U, V, b), named as in the layout; config.json describes the model and each
//              layer's pattern; python/pixelfly_torch.py builds and loads it.
//   densified  each Pixelfly layer as its dense weight W = S (scattered into its blocks) + U V,
//              under the names of the standard implementations: Hugging Face transformers'
//              GPT2LMHeadModel, timm's VisionTransformer and MlpMixer.
#ifndef PF_EXPORT_H
#define PF_EXPORT_H

#include <stdbool.h>

#include "arena.h"
#include "config.h"
#include "pattern.h"
#include "safetensors.h"

typedef struct {
    bool densify;
    pf_st_dtype dtype;  // of every tensor written
    bool force;         // replace DIR/model.safetensors and DIR/config.json if present
} pf_export_opts;

// Reads checkpoint `ckpt` and writes DIR/model.safetensors and DIR/config.json (DIR made if
// missing), each atomically. Returns PF_EXIT_OK; PF_EXIT_USAGE with pf_error() when a target
// file exists and !force, or DIR cannot be used; PF_EXIT_FAILURE with pf_error() when the
// checkpoint cannot be read or a file cannot be written (nothing is left half-written).
int pf_export(const char *ckpt, const char *dir, const pf_export_opts *o);

// The tensors and metadata of an export of the parameters `host` (layout->numel floats, the
// layout of the model of `cfg`) into w, and the config.json text (malloc'd) into *config_json.
// step: the checkpoint's step, recorded in the metadata. -1 with pf_error() when the layout
// lacks a parameter the model of cfg has.
int pf_export_build(const pf_config *cfg, const pf_layout *layout, const float *host,
                    int64_t step, const pf_export_opts *o, pf_st_writer *w, char **config_json);

// The dense weight of a Pixelfly layer: W [out, in] = scatter(S) + U V (U [out, r], V [r, in];
// both NULL when r = 0), the low-rank product summed in double.
void pf_export_dense_weight(const pf_pattern *p, const float *S, const float *U, const float *V,
                            float *W);

// The pattern of the Pixelfly layer `prefix` (e.g. "h.0.attn.qkv") of a layout, from the
// shapes of prefix.S and prefix.U; -1 when the layer is dense or absent.
int pf_export_layer_pattern(const pf_layout *layout, const char *prefix, pf_pattern *p);

#endif
