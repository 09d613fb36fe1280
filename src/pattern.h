// pattern.h: the block mask of a block-sparse layer: the flat block butterfly of a Pixelfly
// layer, a random mask of the same density, or one factor of a butterfly product
// (docs/ARCHITECTURE.md, "Layer kinds").
//
//   y = x S^T + (x V^T) U^T + b        x: [N, in], y: [N, out]
//
// S lives on a bs x bs grid of super-blocks, each (out/bs) x (in/bs). Super-row p keeps
// nf+1 super-columns, one per slot k, listed in the table col[p][k]:
//   flat butterfly (Pixelfly):  slot 0 = p (diagonal), slot k = p xor 2^(k-1), k = 1..nf
//   butterfly factor (stride s): slot 0 = p, slot 1 = p xor s                      (nf = 1)
//   random (blocksparse):        any columns drawn from a seed (pf_pattern_init_random)
// Every slot is a permutation of the super-columns (each column appears once per slot), so
// super-column q is fed by exactly nf+1 super-rows, src[q][k] = the p with col[p][k] = q:
// backward dX = dY S walks that list and reads each block transposed. For the flat and the
// factor masks src = col (each slot is an xor, its own inverse).
// Compact storage S: [bs][nf+1][ob][ib] with ob = out/bs, ib = in/bs, each block row-major
// [ob, ib] exactly as the dense submatrix W[p*ob:(p+1)*ob, q*ib:(q+1)*ib].
// U: [out, r], V: [r, in]; r = 0 disables them.
#ifndef PF_PATTERN_H
#define PF_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

// The most stored super-blocks bs*(nf+1) of one mask: bounds the tables below (8 KB).
#define PF_PATTERN_MAX_BLOCKS 2048

typedef enum { PF_MASK_FLAT_BUTTERFLY, PF_MASK_BUTTERFLY_FACTOR, PF_MASK_RANDOM } pf_mask_kind;

typedef struct {
    int out, in;    // layer shape: y has `out` features, x has `in`
    int bs, nf;     // super-blocks per side; slots per super-row minus one (the flat
                    // butterfly's number of factors)
    int rank;       // low-rank term r (0: none)
    bool bias;
    int ob, ib;     // super-block shape: out/bs x in/bs
    pf_mask_kind mask;
    int stride;     // butterfly factor: slot 1 = p xor stride
    uint64_t seed;  // random: the seed the mask was drawn from
    uint16_t col[PF_PATTERN_MAX_BLOCKS];  // [bs][nf+1]: super-column of row p at slot k
    uint16_t src[PF_PATTERN_MAX_BLOCKS];  // [bs][nf+1]: super-row feeding column q at slot k
} pf_pattern;

// Validate and fill *p with the flat block butterfly mask. On bad parameters returns -1 with
// pf_error() naming the parameter, its value and values that would work.
int pf_pattern_init(pf_pattern *p, int out, int in, int bs, int nf, int rank, bool bias);
// One butterfly factor: slots {p, p xor stride}, stride a power of two < bs, no low-rank.
int pf_pattern_init_factor(pf_pattern *p, int out, int in, int bs, int stride, bool bias);
// A random mask with `blocks` super-blocks in every super-row and every super-column (so the
// density of a flat butterfly with nf = blocks-1), drawn from `seed`: a random relabelling of
// a circulant, then 20 * bs * blocks random switches that keep each slot a permutation.
int pf_pattern_init_random(pf_pattern *p, int out, int in, int bs, int blocks, int rank,
                           bool bias, uint64_t seed);
// Check that a table read back (a checkpoint's) is a valid mask for *p's shape and fill
// p->col / p->src from it: -1 with pf_error when a slot is not a permutation.
int pf_pattern_set_table(pf_pattern *p, const int32_t *col);

// Super-column of super-row `row` at slot `k` (0 <= k <= nf).
static inline int pf_pattern_col(const pf_pattern *p, int row, int k) {
    return p->col[row * (p->nf + 1) + k];
}
// Super-row that feeds super-column `col` at slot `k`: pf_pattern_col(p, that, k) == col.
static inline int pf_pattern_src(const pf_pattern *p, int col, int k) {
    return p->src[col * (p->nf + 1) + k];
}

// Slot of super-column q in super-row p, or -1 when (p, q) is not in the mask.
int pf_pattern_slot(const pf_pattern *p, int row, int col);

// Element counts of the parameters.
int64_t pf_pattern_sparse_numel(const pf_pattern *p);  // bs * (nf+1) * ob * ib
int64_t pf_pattern_numel(const pf_pattern *p);         // sparse + low-rank + bias
double pf_pattern_density(const pf_pattern *p);        // (nf+1)/bs, of the sparse part

// Multiply-adds per token of the forward pass (sparse + low-rank), to compare with out*in.
int64_t pf_pattern_macs_per_token(const pf_pattern *p);

// Expand the compact blocks S into a dense [out, in] matrix (zeros outside the mask).
void pf_pattern_to_dense(const pf_pattern *p, const float *S, float *W);

// Initialise S, U, V (host memory) so that the layer's output variance matches that of the
// dense layer it replaces when that one is drawn with standard deviation `dense_std`:
// the sparse part carries the share density*in / (density*in + r) of that variance, the
// low-rank part the rest; the bias is zero.
void pf_pattern_init_weights(const pf_pattern *p, float dense_std, pf_rng *rng, float *S,
                             float *U, float *V, float *b);

// Write the super-block mask as bs lines of '#' and '.' into buf (bs*(bs+1)+1 bytes).
void pf_pattern_draw(const pf_pattern *p, char *buf);

#ifdef __cplusplus
}
#endif

#endif
