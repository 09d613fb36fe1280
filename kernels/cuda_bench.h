// cuda_bench.h: CUDA-only pieces of pfbench with a C interface (kernels/cuda_blocked_ell.cu).
//
// cuSPARSE Blocked-ELL as a reference point for the Pixelfly forward pass: the sparse part of
// the layer only (no low-rank term, no bias), y^T[out, N] = A[out, in] x^T[in, N] with A the
// Pixelfly mask in Blocked-ELL form, in the activation dtype with fp32 compute.
#ifndef PF_CUDA_BENCH_H
#define PF_CUDA_BENCH_H

#include <stddef.h>

#include "pattern.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_bell pf_bell;

// Builds the Blocked-ELL matrix of pattern p from its compact blocks S [bs, nf+1, ob, ib]
// (device, act dtype) and the SpMM from x [N, in] to y [N, out] (device, the same dtype; the
// row-major buffers are read as column-major x^T and y^T, so nothing is transposed), runs it
// once and checks sampled rows of y against a host reference. Returns NULL with the reason
// in why[] when cuSPARSE does not support the case (data type, GPU, index range) or the check
// fails. Every other cuSPARSE error is fatal.
pf_bell *pf_cuda_bell_create(const pf_pattern *p, pf_tensor S, pf_tensor x, pf_tensor y,
                             char *why, size_t why_len);
// One SpMM on the backend's stream (asynchronous: synchronize before reading the clock).
void pf_cuda_bell_run(pf_bell *b);
void pf_cuda_bell_free(pf_bell *b);

#ifdef __cplusplus
}
#endif

#endif
