// layers.h: the linear layer that model code uses everywhere, of any kind (docs/ARCHITECTURE.md,
// "Layer kinds"), with one forward and one backward entry point whatever the kind:
//   dense        y = x W^T + b                                   W: [out, in]
//   pixelfly     y = x S^T + (x V^T) U^T + b, S on the flat block butterfly mask (pattern.h)
//   blocksparse  the same op on a random mask of the same density, drawn from a seed
//   lowrank      y = (x V^T) U^T + b                             U: [out, r], V: [r, in]
//   butterfly    y = F_{L-1} ... F_1 F_0 x + b, L = log2(bs) butterfly factors, each a
//                block-sparse matrix with 2 super-blocks per super-row (pattern.h, stride 2^k).
//                The square factors sit on the narrower side m = min(out, in); the one
//                rectangular factor changes the width: the last one when out >= in, the first
//                when in > out. The L-1 intermediate activations [N, m] are kept for backward.
// Every kind but dense runs on the backends' existing ops: masked kinds are one pixelfly op,
// lowrank two linear ops, butterfly L pixelfly ops.
#ifndef PF_LAYERS_H
#define PF_LAYERS_H

#include <stdio.h>

#include "arena.h"
#include "backend.h"
#include "config.h"
#include "pattern.h"

#define PF_LINEAR_MAX_MASKS 8  // butterfly: bs <= 256

typedef struct {
    char name[48];        // e.g. "h.3.mlp.fc1"
    int in, out;
    pf_layer_kind kind;   // never auto: resolved by pf_linear_declare
    bool budgeted;        // the spec was auto and pixelfly.budget chose the pattern
    int nmask;            // masks in pat: 1 (pixelfly, blocksparse), L (butterfly), else 0
    pf_pattern pat[PF_LINEAR_MAX_MASKS];
    int rank;             // pixelfly, blocksparse, lowrank: the low-rank r
    int64_t seed;         // blocksparse: the spec's seed (the mask's is mixed with the layer)
    int w, b;             // param indices: dense w [out, in]; bias b [out] (-1: none)
    int U, V;             // low-rank U [out, r], V [r, in] (-1: none)
    int S[PF_LINEAR_MAX_MASKS];  // mask j's blocks [bs, nf+1, ob, ib]
} pf_linear;

// Declares the layer's parameters in the layout. spec is resolved first: auto becomes the
// budget's pattern (src/budget.h) or dense. -1 with pf_error naming the layer when the spec
// does not fit its shape. `seed_salt` (the layer's index) makes each blocksparse layer's mask
// its own.
int pf_linear_declare(pf_linear *l, pf_layout *lay, const char *name, int in, int out,
                      bool bias, pf_layer_spec spec, double budget, uint64_t seed_salt);
// Draws the weights into host_params (a host copy of the whole arena): dense N(0, std^2),
// every other kind with the same output variance (pf_pattern_init_weights); biases zero.
void pf_linear_init(const pf_linear *l, const pf_layout *lay, float *host_params, float std,
                    pf_rng *rng);
// Per row of x: the activations forward saves for backward (xv), and the scratch backward
// needs (dxv). Low-rank kinds r and r; butterfly (L-1) m and 2 m; dense 0.
int pf_linear_saved_width(const pf_linear *l);
int pf_linear_scratch_width(const pf_linear *l);

// y[N,out] = layer(x[N,in]); xv [N, saved width] is kept for backward (absent when 0).
void pf_linear_forward(const pf_linear *l, const pf_arena *a, pf_tensor y, pf_tensor xv,
                       pf_tensor x);
// Adds the parameter gradients into a->grads and dy's contribution into dx (if present).
// dxv: scratch of [N, scratch width].
void pf_linear_backward(const pf_linear *l, const pf_arena *a, pf_tensor dx, pf_tensor dy,
                        pf_tensor x, pf_tensor xv, pf_tensor dxv);

// A masked layer's weights as ops take them: the compute copy (a->weights), or with grads
// its fp32 gradients (a->grads). For ops that span two layers (pixelfly_mlp).
pf_pixelfly_w pf_linear_pixelfly_w(const pf_linear *l, const pf_arena *a, bool grads);

// The dense [out, in] matrix the layer computes (bias excluded), from host parameters.
void pf_linear_dense_weight(const pf_linear *l, const pf_layout *lay, const float *host, float *W);

// The layer's pattern in words: "bs=16 nf=2 rank=32", "bs=16 blocks=3 seed=.. rank=32",
// "bs=16, 4 factors", "rank=96"; "-" for dense.
void pf_linear_describe(const pf_linear *l, char *buf, size_t len);
int64_t pf_linear_params(const pf_linear *l);  // stored parameters (with bias)
int64_t pf_linear_macs(const pf_linear *l);    // multiply-adds per row of x, forward
// The `pftrain summary` table: header, then one row per layer.
void pf_linear_summary_header(FILE *f);
void pf_linear_summary_row(const pf_linear *l, int64_t rows_per_sample, FILE *f);

#endif
