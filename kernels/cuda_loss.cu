// cuda_loss.cu: softmax cross-entropy over the V real classes of padded logits [N, Vp],
// with label smoothing and an ignore index; one block per row, row statistics in double
// with the row maximum subtracted (as cpu_loss.c).
//
// A target outside [0, V) that is not ignore_index (the CPU backend stops with an error)
// cannot stop a kernel cleanly: its row gets loss NaN and no gradient, so the run's loss
// check reports it.
#include "cuda_ops.h"

#define XENT_THREADS 256

// log sum_{c<V} exp(l[c]) of one row, computed by the whole block (same value everywhere).
__device__ static double row_logsumexp(const float *l, int V) {
    float m = -INFINITY;
    for (int c = threadIdx.x; c < V; c += blockDim.x) m = fmaxf(m, l[c]);
    m = block_reduce<cuda_max_op>(m, -INFINITY);
    double s = 0;
    for (int c = threadIdx.x; c < V; c += blockDim.x) s += exp((double)l[c] - m);
    return m + log(block_reduce<cuda_sum_op>(s, 0.0));
}

// losses[n] = (1-eps) (lse - l[t]) + eps (lse - mean_{c<V} l[c]); 0 for ignored rows.
// Grid: N blocks.
__global__ static void xent_fwd_kernel(float *losses, const float *logits,
                                       const int32_t *targets, int64_t Vp, int V,
                                       int ignore_index, float smoothing) {
    int t = targets[blockIdx.x];
    if (t == ignore_index || t < 0 || t >= V) {  // uniform over the block
        if (threadIdx.x == 0) losses[blockIdx.x] = t == ignore_index ? 0.0f : NAN;
        return;
    }
    const float *l = logits + blockIdx.x * Vp;
    double lse = row_logsumexp(l, V), s = 0;
    for (int c = threadIdx.x; c < V; c += blockDim.x) s += l[c];
    double mean = block_reduce<cuda_sum_op>(s, 0.0) / V;
    if (threadIdx.x == 0)
        losses[blockIdx.x] =
            (float)((1.0 - smoothing) * (lse - l[t]) + smoothing * (lse - mean));
}

// dlogits[n, c] += scale * (p[c] - q[c]) for c < V, q = (1-eps) onehot(t) + eps/V.
// Grid: N blocks.
__global__ static void xent_bwd_kernel(float *dlogits, const float *logits,
                                       const int32_t *targets, int64_t Vp, int V,
                                       int ignore_index, float smoothing, float scale) {
    int t = targets[blockIdx.x];
    if (t == ignore_index || t < 0 || t >= V) return;
    const float *l = logits + blockIdx.x * Vp;
    float *dl = dlogits + blockIdx.x * Vp;
    double lse = row_logsumexp(l, V);
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        double q = (double)smoothing / V + (c == t ? 1.0 - smoothing : 0.0);
        dl[c] += (float)(scale * (exp(l[c] - lse) - q));
    }
}

typedef struct {
    int64_t N, Vp;
} xent_dims;

static xent_dims check_dims(pf_tensor logits, pf_tensor targets, int V, float smoothing) {
    CUDA_F32(logits);
    CUDA_I32(targets);
    xent_dims d;
    pf_shape_xent(logits, targets, V, smoothing, &d.N, &d.Vp);
    return d;
}

void cuda_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                   int ignore_index, float smoothing) {
    CUDA_F32(losses);
    xent_dims d = check_dims(logits, targets, V, smoothing);
    PF_ASSERT(pf_numel(losses) == d.N);
    if (!d.N) return;
    xent_fwd_kernel<<<(unsigned)d.N, XENT_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(losses), cuda_f(logits), (const int32_t *)targets.data, d.Vp, V, ignore_index,
        smoothing);
    CUDA_CHECK_LAUNCH();
}

void cuda_xent_bwd(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                   int ignore_index, float smoothing, float scale) {
    CUDA_F32(dlogits);
    xent_dims d = check_dims(logits, targets, V, smoothing);
    PF_ASSERT(cuda_rows(dlogits) == d.N && cuda_cols(dlogits) == d.Vp);
    if (!d.N) return;
    xent_bwd_kernel<<<(unsigned)d.N, XENT_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(dlogits), cuda_f(logits), (const int32_t *)targets.data, d.Vp, V, ignore_index,
        smoothing, scale);
    CUDA_CHECK_LAUNCH();
}
