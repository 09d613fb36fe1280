// budget.h: pixelfly.budget -> one Pixelfly pattern per `auto` layer (docs/ARCHITECTURE.md,
// "Budget allocation").
//
// For a layer [out, in] and budget b in (0, 1) the weight may keep P = b * out * in
// parameters (so b of its multiply-adds per token; the bias is not counted):
//   1. bs: the candidates are the powers of two >= 4 (bs 2 keeps 2 of 2) dividing out and in whose super-blocks
//      out/bs x in/bs are at least PF_BUDGET_MIN_BLOCK on each side (hardware-aligned tiles).
//   2. the low-rank term gets a quarter of P: r = floor(P / 4 / (out + in)), rounded down to
//      a multiple of 8 (tensor-core aligned);
//   3. the sparse part gets the rest, density d = (P - r (out + in)) / (out * in): the
//      smallest candidate bs with 2 / bs <= d (the largest blocks that can hold it), and
//      nf = min(floor(d * bs) - 1, log2 bs). When no candidate fits with r, r = 0 and 3 again;
//   4. what nf's rounding left goes to the rank: r = floor((P - sparse) / (out + in)) rounded
//      down to a multiple of 8.
// The result never exceeds P. No pattern fits when the smallest sparse part, 2/bs_max of the
// dense weight, is above P (or no candidate bs exists): the layer is refused.
#ifndef PF_BUDGET_H
#define PF_BUDGET_H

#include "config.h"

#define PF_BUDGET_MIN_BLOCK 8

// Fills *spec (kind pixelfly) for a layer [out, in] at `budget`. -1 with pf_error naming
// `layer`, the smallest budget that would fit (or that none does) and how to keep it dense.
int pf_budget_pattern(const char *layer, int out, int in, double budget, pf_layer_spec *spec);

#endif
