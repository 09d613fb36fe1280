// arena.h: all parameters of a model in one contiguous buffer, addressed by a named table.
//
// The layout (names, shapes, offsets) is built once by the model; then four buffers of the
// same layout are allocated on the backend: params, grads, and the AdamW moments m and v.
// All-reduce, optimizer and checkpoint each walk one flat buffer. Only the stored Pixelfly
// blocks exist, so every one of these shrinks with density.
#ifndef PF_ARENA_H
#define PF_ARENA_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

struct pf_backend;

#define PF_PARAM_NAME_MAX 64
// Offsets are rounded up to this many elements (256 bytes of fp32) so that every
// parameter starts aligned for vector loads on any backend; the gaps stay zero.
#define PF_PARAM_ALIGN 64

typedef struct {
    char name[PF_PARAM_NAME_MAX];  // e.g. "h.3.mlp.fc1.S"
    int64_t offset;                // in elements from the start of the arena
    int ndim;
    int64_t shape[PF_MAX_DIMS];
    // Vectors (biases, norm gains and biases, ViT's class token) are not decayed.
    bool no_decay;
} pf_param_info;

typedef struct {
    pf_param_info *params;
    int count, cap;
    int64_t numel;  // total elements including alignment gaps
} pf_layout;

void pf_layout_init(pf_layout *l);
void pf_layout_free(pf_layout *l);
// Appends a parameter and returns its index. Names must be unique (asserted).
int pf_layout_add(pf_layout *l, const char *name, int ndim, const int64_t *shape, bool no_decay);
int pf_layout_find(const pf_layout *l, const char *name);  // index or -1
int64_t pf_param_numel(const pf_param_info *p);
int64_t pf_layout_param_count(const pf_layout *l);  // sum of parameter sizes, no gaps

typedef struct {
    const pf_layout *layout;
    const struct pf_backend *be;
    float *params, *grads, *m, *v;  // each layout->numel floats, on the backend's device
    // The weights that forward and backward ops read, in the backend's activation dtype:
    // the params buffer itself when that is fp32 (the CPU), else a bf16 copy of it that
    // pf_arena_sync_weights refreshes. Master weights, gradients and moments stay fp32.
    void *weights;
} pf_arena;

void pf_arena_alloc(pf_arena *a, const pf_layout *l, const struct pf_backend *be);
void pf_arena_free(pf_arena *a);
// Parameter idx of one fp32 buffer (params, grads, m or v), or the absent tensor for idx -1.
pf_tensor pf_arena_view(const pf_arena *a, const float *base, int idx);
// Parameter idx of the weights ops compute with (activation dtype), or absent for idx -1.
pf_tensor pf_arena_weight(const pf_arena *a, int idx);
// Rounds the fp32 params into the compute copy (nothing to do when they are one buffer).
// Costs one pass over the arena (6 bytes per parameter in bf16); the model runs it before
// every forward pass, so no writer of params (init, AdamW, resume, broadcast) can leave the
// copy stale.
void pf_arena_sync_weights(const pf_arena *a);

#endif
