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

int pf_pattern_init(pf_pattern *p, int out, int in, int bs, int nf, int rank, bool bias) {
    char ok[256];
    memset(p, 0, sizeof *p);
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
    int log2bs = 0;
    while ((1 << log2bs) < bs) log2bs++;
    if (nf < 1 || nf > log2bs) {
        pf_error("nf=%d is out of range for bs=%d; use 1..%d (log2 bs)", nf, bs, log2bs);
        return -1;
    }
    int maxrank = out < in ? out : in;
    if (rank < 0 || rank > maxrank) {
        pf_error("rank=%d is out of range for out=%d in=%d; use 0 (no low-rank term) to %d",
                 rank, out, in, maxrank);
        return -1;
    }
    *p = (pf_pattern){.out = out, .in = in, .bs = bs, .nf = nf, .rank = rank, .bias = bias,
                      .ob = out / bs, .ib = in / bs};
    return 0;
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
    return pf_pattern_sparse_numel(p) + (int64_t)p->rank * (p->out + p->in) +
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
