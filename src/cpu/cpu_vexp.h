// cpu_vexp.h: an exp(x) in fp32 that the compiler vectorises, and the ISA clones of the loops
// that use it. glibc's expf is a scalar call per element; GCC turns it into its vector
// versions only under -ffast-math, which the project does not use (it would also reorder
// every reduction). Loops over cpu_expf under `#pragma omp simd` become AVX2 or AVX-512 code
// in the clone the CPU selects at load time (CPU_VEC_CLONES), scalar code elsewhere.
#ifndef PF_CPU_VEXP_H
#define PF_CPU_VEXP_H

#include <stdint.h>
#include <string.h>

// On x86-64 a function marked CPU_VEC_CLONES is compiled three times (AVX-512, AVX2 with FMA,
// baseline SSE2) and the dynamic loader picks one by CPUID. Results can differ between clones
// (vector reductions group their terms by the vector width), never between runs on one CPU.
// A build with PF_CPU_NO_AVX512 (`make CPU_AVX512=0`) stops at AVX2: an AVX2 machine's code
// paths, measured on an AVX-512 one (bench/cpu_vs_torch.sh, ISA=avx2).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(PF_CPU_NO_AVX512)
#define CPU_VEC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CPU_VEC_CLONES
#endif

// e^x = 2^n e^r for x = n ln2 + r (ln2 split in two for an exact n ln2), |r| <= ln2/2: e^r by
// Cephes' degree-6 minimax polynomial, 2^n from `bits` (the float whose exponent field is n).
static inline float cpu_exp_reduced(float x, float n, int32_t bits) {
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// exp(x) to within 2 ulp of expf for x in [-87.3, 88.3]; below, exp(-87.3) ~ 1.2e-38 (not 0:
// a softmax term there is 1e-38 of its largest one); above, exp(88.3) ~ 2.2e38. NaN gives NaN.
static inline float cpu_expf(float x) {
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;  // NaN compares false: passes through
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float nc = n >= -126.0f ? n : -126.0f;  // in range already, but NaN becomes a valid int
    return cpu_exp_reduced(x, n, ((int32_t)(nc > 127.0f ? 127.0f : nc) + 127) << 23);
}

// cpu_expf split in two, for loops that know their range. cpu_expf's clamps are nested
// selects that also pass NaN through; in a vector loop GCC if-converts them by evaluating the
// polynomial once per select path (measured: twice per vector in GELU, ~85 instructions per
// 16 floats against ~40 without). A caller that clamps with cpu_clamp_exp_arg (two one-sided
// selects: vector max and min) and then calls cpu_expf_in_range gets the same values as
// cpu_expf for every non-NaN argument; a NaN argument becomes exp(-87.3) here, so callers
// whose result must carry a NaN carry it through another factor (GELU: the factor v;
// cross-entropy: the row maximum).
static inline float cpu_clamp_exp_arg(float z) {
    z = z < -87.3f ? -87.3f : z;
    return z > 88.3f ? 88.3f : z;
}

// exp(z) for z in [-87.3, 88.3] (then n is in [-126, 127]).
static inline float cpu_expf_in_range(float z) {
    float n = __builtin_floorf(z * 1.44269504088896341f + 0.5f);
    return cpu_exp_reduced(z, n, ((int32_t)n + 127) << 23);
}

#endif
