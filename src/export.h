// export.h: a checkpoint as DIR/model.safetensors + DIR/config.json for other frameworks
// (`pftrain export`; docs/FORMATS.md, "Export").
//
//   native     every parameter as the checkpoint stores it (Pixelfly S [bs, nf+1, ob, ib],
//              U, V, b), named as in the layout; config.json describes the model and each
//              layer's pattern; python/pixelfly_torch.py builds and loads it.
//              Dense and pixelfly layers only: a model with other layer kinds (blocksparse,
//              butterfly, lowrank) is refused; export it densified.
//   densified  each linear layer, of any kind, as the dense weight W it computes (pixelfly:
//              S scattered into its blocks + U V; butterfly: the product of its factors), under
//              the names of the standard implementations: Hugging Face transformers'
//              GPT2LMHeadModel, timm's VisionTransformer and MlpMixer.
#ifndef PF_EXPORT_H
#define PF_EXPORT_H

#include <stdbool.h>

#include "config.h"
#include "models/model.h"
#include "safetensors.h"

typedef struct {
    bool densify;
    pf_st_dtype dtype;  // of every tensor written
    bool force;         // replace DIR/model.safetensors and DIR/config.json if present
} pf_export_opts;

// Reads checkpoint `ckpt` and writes DIR/model.safetensors and DIR/config.json (DIR made if
// missing), each atomically. Returns PF_EXIT_OK; PF_EXIT_USAGE with pf_error() when a target
// file exists and !force, DIR cannot be used, or a native export meets a layer kind the
// native format lacks (pf_export_native_check; nothing is read or written then);
// PF_EXIT_FAILURE with pf_error() when the checkpoint cannot be read or a file cannot be
// written (nothing is left half-written).
int pf_export(const char *ckpt, const char *dir, const pf_export_opts *o);

// The tensors and metadata of an export of model m's parameters `host` (layout->numel floats
// of pf_model_layout(m); m is the model of cfg, built by pf_model_describe or pf_model_create,
// with a checkpoint's blocksparse masks adopted) into w, and the config.json text (malloc'd)
// into *config_json. Densified, every linear layer is the dense matrix it computes
// (pf_linear_dense_weight), whatever its kind. step: the checkpoint's step, recorded in the
// metadata. -1 with pf_error() when the native format cannot hold one of m's layers
// (pf_export_native_check), or m lacks a tensor the export names.
int pf_export_build(const pf_config *cfg, const pf_model *m, const float *host, int64_t step,
                    const pf_export_opts *o, pf_st_writer *w, char **config_json);

// The native format holds dense and pixelfly layers only (python/pixelfly_torch.py rebuilds
// their modules): 0 when every linear layer of m is one, else -1 with pf_error() naming the
// first other layer and its kind, and --densify.
int pf_export_native_check(const pf_model *m);

#endif
