// cuda_embedding.cu: token + position embedding lookup and its scatter-add backward.
// wte, wpe, y, dy are act tensors (fp32 or bf16, read as fp32); dwte, dwpe fp32.
//
// An id outside the vocabulary (the CPU backend stops with an error) cannot stop a kernel
// cleanly: forward writes NaN for that token and backward skips it, so the loss shows it.
#include "cuda_ops.h"

// y[i, c] = wte[ids[i], c] + wpe[i % seq, c] (wpe may be NULL), i < BT; y, wte, wpe of T (the
// sum in fp32, rounded once). Grid-stride over BT*C.
template <typename T>
__global__ static void embedding_fwd_kernel(T *y, const int32_t *ids, const T *wte, const T *wpe,
                                            int64_t BT, int64_t seq, int64_t C, int64_t vocab) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < BT * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / C, c = e % C;
        int32_t id = ids[i];
        float v = id >= 0 && id < vocab ? cuda_ld(wte[(int64_t)id * C + c]) : NAN;
        y[e] = cuda_st<T>(wpe ? v + cuda_ld(wpe[(i % seq) * C + c]) : v);
    }
}

// dwte[ids[i], c] += dy[i, c]; dwte fp32, dy of T. Repeated ids make this a reduction, so the
// threads split the channels, not the tokens: thread c visits every token in order
// (deterministic, no atomics; coalesced across c).
template <typename T>
__global__ static void embedding_bwd_kernel(float *dwte, const T *dy, const int32_t *ids,
                                            int64_t BT, int64_t C, int64_t vocab) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int64_t i = 0; i < BT; i++) {
        int32_t id = ids[i];
        if (id >= 0 && id < vocab) dwte[(int64_t)id * C + c] += cuda_ld(dy[i * C + c]);
    }
}

// y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32; y, wte, wpe act dtype.
void cuda_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    pf_dtype dt = wte.dtype;
    CUDA_ACT(y, dt);
    CUDA_I32(ids);
    CUDA_ACT(wte, dt);
    CUDA_ACT_OPT(wpe, dt);
    pf_embedding_shape d = pf_shape_embedding(y, ids, wte, wpe);
    int64_t BT = d.BT, T = d.T, C = d.C, vocab = d.vocab;
    if (!BT || !C) return;
    cuda_dispatch(dt, [&](auto tag) {
        using E = decltype(tag);  // the element type (T is the sequence length here)
        embedding_fwd_kernel<E><<<cuda_blocks(BT * C), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
            (E *)y.data, (const int32_t *)ids.data, (const E *)wte.data, (const E *)wpe.data, BT,
            T, C, vocab);
        CUDA_CHECK_LAUNCH();
    });
}

// dwte[ids[b,t]] += dy[b,t];  dwpe[t] += sum_b dy[b,t];  dy act dtype, dwte, dwpe fp32
void cuda_embedding_bwd(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT(dy, dt);
    CUDA_I32(ids);
    CUDA_F32_OPT(dwte);
    CUDA_F32_OPT(dwpe);
    pf_embedding_shape d = pf_shape_embedding(dy, ids, dwte, dwpe);
    int64_t BT = d.BT, T = d.T, C = d.C;
    if (!BT || !C) return;
    if (pf_present(dwte)) {
        int threads = 64;
        cuda_dispatch(dt, [&](auto tag) {
            using E = decltype(tag);
            embedding_bwd_kernel<E><<<(unsigned)((C + threads - 1) / threads), threads, 0,
                                      pf_cuda_ctx()->stream>>>(
                cuda_f(dwte), (const E *)dy.data, (const int32_t *)ids.data, BT, C, d.vocab);
            CUDA_CHECK_LAUNCH();
        });
    }
    if (pf_present(dwpe)) {
        // dwpe[t, c] for t < T is a column sum of dy seen as [B, T*C].
        cuda_colsum_add(cuda_f(dwpe), dy.data, dt, BT / T, T * C, T * C);
    }
}
