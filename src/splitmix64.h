// splitmix64.h: splitmix64 (Steele, Lea and Flood), on the host and on the device. Output n
// (1, 2, ...) from state s is pf_splitmix64_mix(s + n * PF_SPLITMIX64_GAMMA), all mod 2^64.
// pf_rng seeds its two words from outputs 1 and 2 (rng.c); the dropout mask's bits are an
// output chosen by the element's number (pf_dropout_bits, backend.h).
#ifndef PF_SPLITMIX64_H
#define PF_SPLITMIX64_H

#include <stdint.h>

#if defined(__CUDACC__)
#define PF_HOST_DEVICE __host__ __device__
#else
#define PF_HOST_DEVICE
#endif

#define PF_SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull

// The finaliser: a bijection of the 64-bit words with good avalanche.
static inline PF_HOST_DEVICE uint64_t pf_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
