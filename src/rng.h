// rng.h: xoroshiro128+ seeded by splitmix64. The whole state is two 64-bit words, so a
// checkpoint stores it and a resumed run draws exactly the numbers it would have drawn.
#ifndef PF_RNG_H
#define PF_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[2];
} pf_rng;

void pf_rng_seed(pf_rng *r, uint64_t seed);
uint64_t pf_rng_u64(pf_rng *r);
uint32_t pf_rng_below(pf_rng *r, uint32_t n);  // uniform in [0, n)
float pf_rng_uniform(pf_rng *r);               // uniform in [0, 1)
float pf_rng_normal(pf_rng *r);                // standard normal (Box-Muller)
void pf_rng_shuffle_u32(pf_rng *r, uint32_t *a, uint32_t n);
// Gamma(alpha, 1), alpha > 0 (Marsaglia-Tsang; alpha < 1 via the Gamma(alpha+1) boost).
double pf_rng_gamma(pf_rng *r, double alpha);
// Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b); a, b > 0. Computed from the logs of
// the Gamma draws so that small shapes (mixup's 0.2) cannot underflow to 0 / 0.
double pf_rng_beta(pf_rng *r, double a, double b);

#endif
