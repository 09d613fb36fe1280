// cuda_loss.cu: softmax cross-entropy over the V real classes of padded logits [N, Vp],
// with label smoothing and an ignore index; one block per row. Each thread keeps an online
// softmax (running max m, sum of expf(l - m) in fp32) over its strided share of the row, so
// the forward reads the logits once and the backward twice; the block combines the thread
// pairs in double. expf after the max subtraction has arguments <= 0 and loses nothing that
// a double exp would keep at fp32/bf16 logits (cpu_loss.c sums in double). logits and dlogits are act tensors
// (fp32 or bf16, read as fp32); losses fp32.
//
// A target outside [0, V) that is not ignore_index (the CPU backend stops with an error)
// cannot stop a kernel cleanly: its row gets loss NaN and no gradient, so the run's loss
// check reports it.
#include "cuda_ops.h"

#define XENT_THREADS 256

// Per thread: m = max of its logits l[c], c = threadIdx.x + k blockDim.x < V; s = sum of
// expf(l[c] - m); sum = sum of l[c] (only when want_sum). One pass over the row.
struct xent_row {
    float m, s, sum;
};

template <typename T>
__device__ static xent_row xent_thread_stats(const T *l, int V, bool want_sum) {
    xent_row r = {-INFINITY, 0.0f, 0.0f};
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float v = cuda_ld(l[c]);
        if (want_sum) r.sum += v;
        if (v > r.m) {  // rescale the running sum to the new maximum (expf(-inf) = 0 first time)
            r.s = r.s * expf(r.m - v) + 1.0f;
            r.m = v;
        } else {
            r.s += expf(v - r.m);
        }
    }
    return r;
}

// log sum_{c<V} exp(l[c]) of the row whose per-thread stats are r, the same value in every
// thread of the block: M = max of the m, then sum of s expf(m - M) in double.
__device__ static double xent_block_lse(xent_row r) {
    float M = block_reduce<cuda_max_op>(r.m, -INFINITY);
    double s = r.m == -INFINITY ? 0.0 : (double)r.s * expf(r.m - M);  // threads with no column
    return M + log(block_reduce<cuda_sum_op>(s, 0.0));
}

// losses[n] (fp32) = (1-eps) (lse - l[t]) + eps (lse - mean_{c<V} l[c]); 0 for ignored rows.
// logits of T. Grid: N blocks.
template <typename T>
__global__ static void xent_fwd_kernel(float *losses, const T *logits, const int32_t *targets,
                                       int64_t Vp, int V, int ignore_index, float smoothing) {
    int t = targets[blockIdx.x];
    if (t == ignore_index || t < 0 || t >= V) {  // uniform over the block
        if (threadIdx.x == 0) losses[blockIdx.x] = t == ignore_index ? 0.0f : NAN;
        return;
    }
    const T *l = logits + blockIdx.x * Vp;
    xent_row r = xent_thread_stats(l, V, true);
    double lse = xent_block_lse(r);
    double mean = block_reduce<cuda_sum_op>((double)r.sum, 0.0) / V;
    if (threadIdx.x == 0)
        losses[blockIdx.x] =
            (float)((1.0 - smoothing) * (lse - cuda_ld(l[t])) + smoothing * (lse - mean));
}

// dlogits[n, c] += scale * (p[c] - q[c]) for c < V, q = (1-eps) onehot(t) + eps/V.
// logits, dlogits of T (the sum rounded once on store). Grid: N blocks.
template <typename T>
__global__ static void xent_bwd_kernel(T *dlogits, const T *logits, const int32_t *targets,
                                       int64_t Vp, int V, int ignore_index, float smoothing,
                                       float scale) {
    int t = targets[blockIdx.x];
    if (t == ignore_index || t < 0 || t >= V) return;
    const T *l = logits + blockIdx.x * Vp;
    T *dl = dlogits + blockIdx.x * Vp;
    float lse = (float)xent_block_lse(xent_thread_stats(l, V, false));
    float q0 = smoothing / V, q1 = q0 + (1.0f - smoothing);
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float d = scale * (expf(cuda_ld(l[c]) - lse) - (c == t ? q1 : q0));
        dl[c] = cuda_st<T>(cuda_ld(dl[c]) + d);
    }
}

typedef struct {
    int64_t N, Vp;
} xent_dims;

static xent_dims check_dims(pf_tensor logits, pf_tensor targets, int V, float smoothing) {
    pf_dtype dt = logits.dtype;
    CUDA_ACT(logits, dt);
    CUDA_I32(targets);
    xent_dims d;
    pf_shape_xent(logits, targets, V, smoothing, &d.N, &d.Vp);
    return d;
}

// losses[N] fp32; logits[N,Vp] act dtype
void cuda_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                   int ignore_index, float smoothing) {
    CUDA_F32(losses);
    xent_dims d = check_dims(logits, targets, V, smoothing);
    PF_ASSERT(pf_numel(losses) == d.N);
    if (!d.N) return;
    cuda_dispatch(logits.dtype, [&](auto tag) {
        using T = decltype(tag);
        xent_fwd_kernel<T><<<(unsigned)d.N, XENT_THREADS, 0, pf_cuda_ctx()->stream>>>(
            cuda_f(losses), (const T *)logits.data, (const int32_t *)targets.data, d.Vp, V,
            ignore_index, smoothing);
        CUDA_CHECK_LAUNCH();
    });
}

// dlogits[N,Vp], logits[N,Vp] act dtype (the same)
void cuda_xent_bwd(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                   int ignore_index, float smoothing, float scale) {
    xent_dims d = check_dims(logits, targets, V, smoothing);
    CUDA_ACT(dlogits, logits.dtype);
    PF_ASSERT(cuda_rows(dlogits) == d.N && cuda_cols(dlogits) == d.Vp);
    if (!d.N) return;
    cuda_dispatch(logits.dtype, [&](auto tag) {
        using T = decltype(tag);
        xent_bwd_kernel<T><<<(unsigned)d.N, XENT_THREADS, 0, pf_cuda_ctx()->stream>>>(
            (T *)dlogits.data, (const T *)logits.data, (const int32_t *)targets.data, d.Vp, V,
            ignore_index, smoothing, scale);
        CUDA_CHECK_LAUNCH();
    });
}
