#include "pattern.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

// "use one of 2,4,8" for the powers of two >= 2 that divide both n1 and n2 (n2 = 0: only n1).
static void powers_dividing(int n1, int n2, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "use one of ");
    bool any = false;
    for (int64_t b = 2; b <= n1 && used + 16 < len; b *= 2) {  // 64-bit: 2^31 must not wrap
        if (n1 % b || (n2 && n2 % b)) continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", any ? "," : "", (long long)b);
        any = true;
    }
    if (!any)
        snprintf(buf, len, "no power of two >= 2 divides both sides (%d, %d): keep this layer "
                 "dense or change its width", n1, n2);
}

// The layer shape, bs and rank, shared by every mask kind: -1 with pf_error when invalid.
static int check_shape(int out, int in, int bs, int rank) {
    char ok[256];
    if (out <= 0 || in <= 0) {
        pf_error("layer shape out=%d in=%d: both must be positive", out, in);
        return -1;
    }
    if (bs < 2 || (bs & (bs - 1))) {
        powers_dividing(out, in, ok, sizeof ok);
        pf_error("bs=%d is not a power of two >= 2; for out=%d in=%d %s", bs, out,
                 in, ok);
        return -1;
    }
    if (out % bs) {
        powers_dividing(out, in, ok, sizeof ok);
        pf_error("bs=%d does not divide out=%d; %s", bs, out, ok);
        return -1;
    }
    if (in % bs) {
        powers_dividing(out, in, ok, sizeof ok);
        pf_error("bs=%d does not divide in=%d; %s", bs, in, ok);
        return -1;
    }
    int maxrank = out < in ? out : in;
    if (rank < 0 || rank > maxrank) {
        pf_error("rank=%d is out of range for out=%d in=%d; use 0 (no low-rank term) to %d",
                 rank, out, in, maxrank);
        return -1;
    }
    return 0;
}

static int log2_of(int bs) {
    int k = 0;
    while ((1 << k) < bs) k++;
    return k;
}

static void fill(pf_pattern *p, int out, int in, int bs, int nf, int rank, bool bias,
                 pf_mask_kind mask) {
    *p = (pf_pattern){.out = out, .in = in, .bs = bs, .nf = nf, .rank = rank, .bias = bias,
                      .ob = out / bs, .ib = in / bs, .mask = mask};
}

// src from col; -1 (pf_error) when a slot is not a permutation of the super-columns.
static int fill_src(pf_pattern *p) {
    int S = p->nf + 1;
    for (int i = 0; i < p->bs * S; i++) p->src[i] = UINT16_MAX;
    for (int r = 0; r < p->bs; r++)
        for (int k = 0; k < S; k++) {
            int c = p->col[r * S + k];
            if (c >= p->bs || p->src[c * S + k] != UINT16_MAX) {
                pf_error("mask slot %d is not a permutation: super-column %d appears twice "
                         "or is out of range (bs=%d)", k, c, p->bs);
                return -1;
            }
            p->src[c * S + k] = (uint16_t)r;
        }
    for (int r = 0; r < p->bs; r++)  // one slot per (row, column) pair
        for (int k = 0; k < S; k++)
            for (int j = 0; j < k; j++)
                if (p->col[r * S + k] == p->col[r * S + j]) {
                    pf_error("mask row %d holds super-column %d twice (slots %d and %d)", r,
                             p->col[r * S + k], j, k);
                    return -1;
                }
    return 0;
}

static int check_blocks(int bs, int slots) {
    if ((int64_t)bs * slots > PF_PATTERN_MAX_BLOCKS) {
        pf_error("bs=%d with %d blocks per super-row stores %lld super-blocks, more than the %d "
                 "a mask holds: use a smaller bs", bs, slots, (long long)bs * slots,
                 PF_PATTERN_MAX_BLOCKS);
        return -1;
    }
    return 0;
}

int pf_pattern_init(pf_pattern *p, int out, int in, int bs, int nf, int rank, bool bias) {
    memset(p, 0, sizeof *p);
    if (check_shape(out, in, bs, rank) < 0) return -1;
    if (nf < 1 || nf > log2_of(bs)) {
        pf_error("nf=%d is out of range for bs=%d; use 1..%d (log2 bs)", nf, bs, log2_of(bs));
        return -1;
    }
    if (check_blocks(bs, nf + 1) < 0) return -1;
    fill(p, out, in, bs, nf, rank, bias, PF_MASK_FLAT_BUTTERFLY);
    for (int r = 0; r < bs; r++)
        for (int k = 0; k <= nf; k++)
            p->col[r * (nf + 1) + k] = (uint16_t)(k == 0 ? r : r ^ (1 << (k - 1)));
    return fill_src(p);
}

int pf_pattern_init_factor(pf_pattern *p, int out, int in, int bs, int stride, bool bias) {
    memset(p, 0, sizeof *p);
    if (check_shape(out, in, bs, 0) < 0) return -1;
    if (stride < 1 || stride >= bs || (stride & (stride - 1))) {
        pf_error("butterfly factor stride=%d: use a power of two below bs=%d", stride, bs);
        return -1;
    }
    if (check_blocks(bs, 2) < 0) return -1;
    fill(p, out, in, bs, 1, 0, bias, PF_MASK_BUTTERFLY_FACTOR);
    p->stride = stride;
    for (int r = 0; r < bs; r++) {
        p->col[2 * r] = (uint16_t)r;
        p->col[2 * r + 1] = (uint16_t)(r ^ stride);
    }
    return fill_src(p);
}

// 1 when super-row r holds column c in a slot other than `skip`.
static bool row_has(const pf_pattern *p, int r, int c, int skip) {
    for (int k = 0; k <= p->nf; k++)
        if (k != skip && p->col[r * (p->nf + 1) + k] == c) return true;
    return false;
}

int pf_pattern_init_random(pf_pattern *p, int out, int in, int bs, int blocks, int rank,
                           bool bias, uint64_t seed) {
    memset(p, 0, sizeof *p);
    if (check_shape(out, in, bs, rank) < 0) return -1;
    if (blocks < 1 || blocks > bs) {
        pf_error("blocks=%d is out of range for bs=%d; use 1..%d (a flat butterfly with nf "
                 "keeps nf+1)", blocks, bs, bs);
        return -1;
    }
    if (check_blocks(bs, blocks) < 0) return -1;
    fill(p, out, in, bs, blocks - 1, rank, bias, PF_MASK_RANDOM);
    p->seed = seed;
    pf_rng rng;
    pf_rng_seed(&rng, seed);
    // A circulant (row r keeps columns r + shift_k) under random row and column relabellings:
    // every slot a permutation, no column twice in a row. The switches then move it away from
    // that family: swapping the slot-k columns of two rows keeps slot k a permutation.
    uint32_t rows[PF_PATTERN_MAX_BLOCKS], cols[PF_PATTERN_MAX_BLOCKS], shift[PF_PATTERN_MAX_BLOCKS];
    for (int i = 0; i < bs; i++) rows[i] = cols[i] = shift[i] = (uint32_t)i;
    pf_rng_shuffle_u32(&rng, rows, (uint32_t)bs);
    pf_rng_shuffle_u32(&rng, cols, (uint32_t)bs);
    pf_rng_shuffle_u32(&rng, shift, (uint32_t)bs);
    for (int r = 0; r < bs; r++)
        for (int k = 0; k < blocks; k++)
            p->col[r * blocks + k] = (uint16_t)cols[(rows[r] + shift[k]) % (uint32_t)bs];
    for (int64_t it = 0; it < 20 * (int64_t)bs * blocks; it++) {
        int k = (int)pf_rng_below(&rng, (uint32_t)blocks);
        int r1 = (int)pf_rng_below(&rng, (uint32_t)bs), r2 = (int)pf_rng_below(&rng, (uint32_t)bs);
        int c1 = p->col[r1 * blocks + k], c2 = p->col[r2 * blocks + k];
        if (r1 == r2 || row_has(p, r1, c2, k) || row_has(p, r2, c1, k)) continue;
        p->col[r1 * blocks + k] = (uint16_t)c2;
        p->col[r2 * blocks + k] = (uint16_t)c1;
    }
    return fill_src(p);
}

int pf_pattern_set_table(pf_pattern *p, const int32_t *col) {
    for (int i = 0; i < p->bs * (p->nf + 1); i++) {
        if (col[i] < 0 || col[i] >= p->bs) {
            pf_error("mask entry %d = %d is out of range for bs=%d", i, col[i], p->bs);
            return -1;
        }
        p->col[i] = (uint16_t)col[i];
    }
    return fill_src(p);
}

int pf_pattern_slot(const pf_pattern *p, int row, int col) {
    for (int k = 0; k <= p->nf; k++)
        if (pf_pattern_col(p, row, k) == col) return k;
    return -1;
}

int64_t pf_pattern_sparse_numel(const pf_pattern *p) {
    return (int64_t)p->bs * (p->nf + 1) * p->ob * p->ib;
}

int64_t pf_pattern_numel(const pf_pattern *p) {
    return pf_pattern_sparse_numel(p) + (int64_t)p->rank * ((int64_t)p->out + p->in) +
           (p->bias ? p->out : 0);
}

double pf_pattern_density(const pf_pattern *p) { return (double)(p->nf + 1) / p->bs; }

int64_t pf_pattern_macs_per_token(const pf_pattern *p) {
    return pf_pattern_sparse_numel(p) + (int64_t)p->rank * (p->out + p->in);
}

void pf_pattern_to_dense(const pf_pattern *p, const float *S, float *W) {
    memset(W, 0, sizeof(float) * (size_t)p->out * p->in);
    for (int r = 0; r < p->bs; r++)
        for (int k = 0; k <= p->nf; k++) {
            int c = pf_pattern_col(p, r, k);
            const float *blk = S + ((size_t)r * (p->nf + 1) + k) * p->ob * p->ib;
            for (int i = 0; i < p->ob; i++)
                memcpy(W + (size_t)(r * p->ob + i) * p->in + (size_t)c * p->ib,
                       blk + (size_t)i * p->ib, sizeof(float) * p->ib);
        }
}

void pf_pattern_init_weights(const pf_pattern *p, float dense_std, pf_rng *rng, float *S,
                             float *U, float *V, float *b) {
    // Dense: Var(y_i) = in * dense_std^2 * Var(x). Sparse fan-in is fs = density * in,
    // low-rank path y = U (V x) has Var = r * su^2 * in * sv^2 * Var(x).
    double target = (double)p->in * dense_std * dense_std;
    double fs = (double)(p->nf + 1) * p->ib;
    double share = fs / (fs + p->rank);
    double ss = sqrt(target * share / fs);
    int64_t ns = pf_pattern_sparse_numel(p);
    for (int64_t i = 0; i < ns; i++) S[i] = (float)ss * pf_rng_normal(rng);
    if (p->rank > 0) {
        double sv = sqrt(1.0 / p->in);  // x V^T has unit-scale entries
        double su = sqrt(target * (1.0 - share) / p->rank);
        for (int64_t i = 0; i < (int64_t)p->rank * p->in; i++) V[i] = (float)sv * pf_rng_normal(rng);
        for (int64_t i = 0; i < (int64_t)p->out * p->rank; i++) U[i] = (float)su * pf_rng_normal(rng);
    }
    if (p->bias) memset(b, 0, sizeof(float) * p->out);
}

void pf_pattern_draw(const pf_pattern *p, char *buf) {
    char *o = buf;
    for (int r = 0; r < p->bs; r++) {
        for (int c = 0; c < p->bs; c++) *o++ = pf_pattern_slot(p, r, c) >= 0 ? '#' : '.';
        *o++ = '\n';
    }
    *o = 0;
}
