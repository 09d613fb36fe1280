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

// dwte[uid[u], c] += dy[pos, c] for the positions pos = order[start[u]] .. order[start[u+1]-1]
// of token id uid[u], in increasing position order. dwte fp32, dy of T [BT, C].
// Grid (U, ceil(C / blockDim.x)): one block per (distinct id, column chunk), so the work
// spreads over every id in the batch instead of C/64 blocks each walking all BT tokens; the
// running sum starts from dwte and adds the id's rows in position order, the CPU backend's
// order, so fp32 results are bit-identical to it.
template <typename T>
__global__ static void embedding_bwd_kernel(float *dwte, const T *dy, const int32_t *order,
                                            const int32_t *start, const int32_t *uid, int64_t C) {
    int64_t c = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int u = blockIdx.x;
    float *w = dwte + (int64_t)uid[u] * C + c;
    float acc = *w;
    for (int32_t k = start[u]; k < start[u + 1]; k++) acc += cuda_ld(dy[(int64_t)order[k] * C + c]);
    *w = acc;
}

// The id groups of the batch: ids [BT] (device) are copied to the host and counting-sorted
// (stable) into one int32 upload: order [BT] (positions grouped by id, increasing within an
// id), start [U + 1], uid [U] for the U distinct in-vocabulary ids; returns U. Ids outside
// [0, vocab) are left out (forward made their rows NaN). Costs a device-host round trip of
// 4 BT bytes each way, synchronising the stream once per step: the loader knows the ids on
// the host, so an op contract that passes them could drop the download.
static int embedding_group_ids(const int32_t *ids_dev, int64_t BT, int64_t vocab,
                               int32_t **groups_dev) {
    PF_ASSERT(BT <= INT32_MAX && vocab <= INT32_MAX);
    int32_t *ids = (int32_t *)pf_malloc(sizeof(int32_t) * (size_t)BT);
    CUDA_CHECK(cudaMemcpy(ids, ids_dev, sizeof(int32_t) * (size_t)BT, cudaMemcpyDeviceToHost));
    int32_t *count = (int32_t *)pf_calloc((size_t)vocab + 1, sizeof(int32_t));
    int64_t U = 0, n = 0;
    for (int64_t i = 0; i < BT; i++)
        if (ids[i] >= 0 && ids[i] < vocab && count[ids[i]]++ == 0) U++;
    // host layout: order [BT] | start [U + 1] | uid [U]
    int32_t *h = (int32_t *)pf_malloc(sizeof(int32_t) * (size_t)(BT + 2 * U + 1));
    int32_t *order = h, *start = h + BT, *uid = h + BT + U + 1;
    int64_t u = 0;
    for (int64_t id = 0; id < vocab; id++) {  // count[id] becomes the id's next output slot
        if (!count[id]) continue;
        start[u] = (int32_t)n;
        uid[u++] = (int32_t)id;
        int32_t c = count[id];
        count[id] = (int32_t)n;
        n += c;
    }
    start[U] = (int32_t)n;
    for (int64_t i = 0; i < BT; i++)
        if (ids[i] >= 0 && ids[i] < vocab) order[count[ids[i]]++] = (int32_t)i;
    size_t bytes = sizeof(int32_t) * (size_t)(BT + 2 * U + 1);
    *groups_dev = (int32_t *)cuda_scratch(bytes);
    CUDA_CHECK(cudaMemcpy(*groups_dev, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    free(count);
    free(ids);
    return (int)U;
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
        int32_t *g = NULL;
        int U = embedding_group_ids((const int32_t *)ids.data, BT, d.vocab, &g);
        int threads = 128;
        dim3 grid((unsigned)U, (unsigned)((C + threads - 1) / threads));
        if (U) cuda_dispatch(dt, [&](auto tag) {
            using E = decltype(tag);
            embedding_bwd_kernel<E><<<grid, threads, 0, pf_cuda_ctx()->stream>>>(
                cuda_f(dwte), (const E *)dy.data, g, g + BT, g + BT + U + 1, C);
            CUDA_CHECK_LAUNCH();
        });
    }
    if (pf_present(dwpe)) {
        // dwpe[t, c] for t < T is a column sum of dy seen as [B, T*C].
        cuda_colsum_add(cuda_f(dwpe), dy.data, dt, BT / T, T * C, T * C);
    }
}
