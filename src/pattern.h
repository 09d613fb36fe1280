// pattern.h: the flat block butterfly pattern of a Pixelfly layer (docs/ARCHITECTURE.md).
//
//   y = x S^T + (x V^T) U^T + b        x: [N, in], y: [N, out]
//
// S lives on a bs x bs grid of super-blocks, each (out/bs) x (in/bs). Super-row p keeps
// the nf+1 super-columns q with p xor q in {0, 1, 2, ..., 2^(nf-1)}; in slot order:
//   slot 0 = p (diagonal), slot k = p xor 2^(k-1) for k = 1..nf.
// Compact storage S: [bs][nf+1][ob][ib] with ob = out/bs, ib = in/bs, each block row-major
// [ob, ib] exactly as the dense submatrix W[p*ob:(p+1)*ob, q*ib:(q+1)*ib].
// The mask is symmetric, so q in S(p) <=> p in S(q): backward dX = dY S walks the same
// index and reads each block transposed. U: [out, r], V: [r, in]; r = 0 disables them.
#ifndef PF_PATTERN_H
#define PF_PATTERN_H

#include <stdbool.h>
#include <stdint.h>

#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int out, in;    // layer shape: y has `out` features, x has `in`
    int bs, nf;     // butterfly size (super-blocks per side), number of butterfly factors
    int rank;       // low-rank term r (0: none)
    bool bias;
    int ob, ib;     // super-block shape: out/bs x in/bs
} pf_pattern;

// Validate and fill *p. On bad parameters returns -1 with pf_error() naming the parameter,
// its value and values that would work.
int pf_pattern_init(pf_pattern *p, int out, int in, int bs, int nf, int rank, bool bias);

// Super-column of super-row `row` at slot `k` (0 <= k <= nf).
static inline int pf_pattern_col(const pf_pattern *p, int row, int k) {
    (void)p;  // the rule does not depend on the layer; kept for a uniform call shape
    return k == 0 ? row : row ^ (1 << (k - 1));
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
