// cuda_embedding.cu: token + position embedding lookup and its scatter-add backward.
//
// An id outside the vocabulary (the CPU backend stops with an error) cannot stop a kernel
// cleanly: forward writes NaN for that token and backward skips it, so the loss shows it.
#include "cuda_ops.h"

// y[i, c] = wte[ids[i], c] + wpe[i % T, c] (wpe may be NULL), i < BT. Grid-stride over BT*C.
__global__ static void embedding_fwd_kernel(float *y, const int32_t *ids, const float *wte,
                                            const float *wpe, int64_t BT, int64_t T,
                                            int64_t C, int64_t vocab) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < BT * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / C, c = e % C;
        int32_t id = ids[i];
        float v = id >= 0 && id < vocab ? wte[(int64_t)id * C + c] : NAN;
        y[e] = wpe ? v + wpe[(i % T) * C + c] : v;
    }
}

// dwte[ids[i], c] += dy[i, c]. Repeated ids make this a reduction, so the threads split the
// channels, not the tokens: thread c visits every token in order (deterministic, no atomics;
// coalesced across c).
__global__ static void embedding_bwd_kernel(float *dwte, const float *dy, const int32_t *ids,
                                            int64_t BT, int64_t C, int64_t vocab) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int64_t i = 0; i < BT; i++) {
        int32_t id = ids[i];
        if (id >= 0 && id < vocab) dwte[(int64_t)id * C + c] += dy[i * C + c];
    }
}

// y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32.
void cuda_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    CUDA_F32(y);
    CUDA_I32(ids);
    CUDA_F32(wte);
    CUDA_F32_OPT(wpe);
    PF_ASSERT(ids.ndim == 2 && wte.ndim == 2);
    int64_t BT = pf_numel(ids), T = ids.shape[1], C = wte.shape[1], vocab = wte.shape[0];
    PF_ASSERT(cuda_rows(y) == BT && cuda_cols(y) == C);
    PF_ASSERT(!pf_present(wpe) || (wpe.ndim == 2 && wpe.shape[0] >= T && wpe.shape[1] == C));
    if (!BT || !C) return;
    embedding_fwd_kernel<<<cuda_blocks(BT * C), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(y), (const int32_t *)ids.data, cuda_f(wte), cuda_f(wpe), BT, T, C, vocab);
    CUDA_CHECK_LAUNCH();
}

// dwte[ids[b,t]] += dy[b,t];  dwpe[t] += sum_b dy[b,t]
void cuda_embedding_bwd(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids) {
    CUDA_F32(dy);
    CUDA_I32(ids);
    CUDA_F32_OPT(dwte);
    CUDA_F32_OPT(dwpe);
    PF_ASSERT(ids.ndim == 2);
    int64_t BT = pf_numel(ids), T = ids.shape[1], C = cuda_cols(dy);
    PF_ASSERT(cuda_rows(dy) == BT);
    if (!BT || !C) return;
    if (pf_present(dwte)) {
        PF_ASSERT(dwte.ndim == 2 && dwte.shape[1] == C);
        int threads = 64;
        embedding_bwd_kernel<<<(unsigned)((C + threads - 1) / threads), threads, 0,
                               pf_cuda_ctx()->stream>>>(cuda_f(dwte), cuda_f(dy),
                                                        (const int32_t *)ids.data, BT, C,
                                                        dwte.shape[0]);
        CUDA_CHECK_LAUNCH();
    }
    if (pf_present(dwpe)) {
        // dwpe[t, c] for t < T is a column sum of dy seen as [B, T*C].
        PF_ASSERT(dwpe.ndim == 2 && dwpe.shape[0] >= T && dwpe.shape[1] == C);
        cuda_colsum_add(cuda_f(dwpe), cuda_f(dy), BT / T, T * C, T * C);
    }
}
