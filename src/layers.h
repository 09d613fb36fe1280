// layers.h: the linear layer that model code uses everywhere: dense or Pixelfly, chosen by
// configuration, with one forward and one backward entry point either way.
#ifndef PF_LAYERS_H
#define PF_LAYERS_H

#include <stdio.h>

#include "arena.h"
#include "backend.h"
#include "config.h"
#include "pattern.h"

typedef struct {
    char name[48];       // e.g. "h.3.mlp.fc1"
    int in, out;
    bool pixelfly;
    pf_pattern pat;      // pixelfly only
    int w, b;            // param indices: dense w [out, in]; bias b [out] (-1: none)
    int S, U, V;         // pixelfly: S [bs, nf+1, ob, ib], U [out, r], V [r, in] (-1: none)
} pf_linear;

// Declares the layer's parameters in the layout. -1 with pf_error naming the layer when the
// Pixelfly parameters do not fit its shape.
int pf_linear_declare(pf_linear *l, pf_layout *lay, const char *name, int in, int out,
                      bool bias, pf_layer_spec spec);
// Draws the weights into host_params (a host copy of the whole arena): dense N(0, std^2),
// Pixelfly with the same output variance (pf_pattern_init_weights); biases zero.
void pf_linear_init(const pf_linear *l, const pf_layout *lay, float *host_params, float std,
                    pf_rng *rng);
int pf_linear_rank(const pf_linear *l);  // low-rank r (0 for dense): the xv scratch width

// y[N,out] = layer(x[N,in]); xv[N,r] is saved for backward (absent when r = 0).
void pf_linear_forward(const pf_linear *l, const pf_arena *a, pf_tensor y, pf_tensor xv,
                       pf_tensor x);
// Adds the parameter gradients into a->grads and dy's contribution into dx (if present).
// dxv: scratch of at least [N, r].
void pf_linear_backward(const pf_linear *l, const pf_arena *a, pf_tensor dx, pf_tensor dy,
                        pf_tensor x, pf_tensor xv, pf_tensor dxv);

// A Pixelfly layer's weights as ops take them: the compute copy (a->weights), or with grads
// its fp32 gradients (a->grads). For ops that span two layers (pixelfly_mlp).
pf_pixelfly_w pf_linear_pixelfly_w(const pf_linear *l, const pf_arena *a, bool grads);

int64_t pf_linear_params(const pf_linear *l);  // stored parameters (with bias)
int64_t pf_linear_macs(const pf_linear *l);    // multiply-adds per row of x, forward
// One row of the `pftrain summary` table.
void pf_linear_summary_row(const pf_linear *l, int64_t rows_per_sample, FILE *f);

#endif
