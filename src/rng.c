#include "rng.h"

#include <math.h>

#include "common.h"
#include "splitmix64.h"

static uint64_t splitmix64(uint64_t *x) { return pf_splitmix64_mix(*x += PF_SPLITMIX64_GAMMA); }

void pf_rng_seed(pf_rng *r, uint64_t seed) {
    r->s[0] = splitmix64(&seed);
    r->s[1] = splitmix64(&seed);
}

// xoroshiro128+ (Blackman & Vigna), 2^128-1 period; plenty for init and shuffling.
uint64_t pf_rng_u64(pf_rng *r) {
    uint64_t s0 = r->s[0], s1 = r->s[1];
    uint64_t out = s0 + s1;
    s1 ^= s0;
    r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    r->s[1] = (s1 << 37) | (s1 >> 27);
    return out;
}

uint32_t pf_rng_below(pf_rng *r, uint32_t n) {
    // Lemire's multiply-shift; the tiny bias (< n / 2^64) is irrelevant here.
    return (uint32_t)(((unsigned __int128)pf_rng_u64(r) * n) >> 64);
}

float pf_rng_uniform(pf_rng *r) { return (float)(pf_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float pf_rng_normal(pf_rng *r) {
    double u1 = ((double)(pf_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(pf_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void pf_rng_shuffle_u32(pf_rng *r, uint32_t *a, uint32_t n) {
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = pf_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

// Uniform in the open interval (0, 1), double precision: safe to take the log of.
static double uniform_open(pf_rng *r) {
    return ((double)(pf_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// log of a Gamma(alpha, 1) draw. Marsaglia & Tsang (2000) for alpha >= 1; for alpha < 1,
// G(alpha) = G(alpha + 1) * U^(1/alpha), whose log stays finite however small U^(1/alpha) is.
static double log_gamma_draw(pf_rng *r, double alpha) {
    PF_ASSERT(alpha > 0);
    double boost = 0;
    if (alpha < 1) {
        boost = log(uniform_open(r)) / alpha;
        alpha += 1;
    }
    double d = alpha - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = pf_rng_normal(r), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = uniform_open(r), x2 = x * x;
        if (u < 1 - 0.0331 * x2 * x2 || log(u) < 0.5 * x2 + d * (1 - v + log(v)))
            return log(d * v) + boost;
    }
}

double pf_rng_gamma(pf_rng *r, double alpha) { return exp(log_gamma_draw(r, alpha)); }

double pf_rng_beta(pf_rng *r, double a, double b) {
    double lx = log_gamma_draw(r, a), ly = log_gamma_draw(r, b);
    return 1.0 / (1.0 + exp(ly - lx));
}
