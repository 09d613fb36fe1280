// cpu_loss.c: softmax cross-entropy over the V real classes of padded logits [N, Vp],
// with label smoothing and an ignore index. Row statistics in double, max subtracted.
// The row passes are vector loops (cpu_vexp.h): over GPT-2's 50,257 classes they were the
// largest share of a small model's CPU step as scalar expf calls.
#include <math.h>

#include "cpu_ops.h"
#include "cpu_vexp.h"

typedef struct {
    int64_t N, Vp;
} xent_dims;

static xent_dims check_dims(pf_tensor logits, pf_tensor targets, int V, float smoothing) {
    CPU_F32(logits);
    CPU_I32(targets);
    xent_dims d;
    pf_shape_xent(logits, targets, V, smoothing, &d.N, &d.Vp);
    return d;
}

// Target of row n, asserted to be a real class unless ignored.
static int row_target(const int32_t *targets, int64_t n, int V, int ignore_index) {
    int t = targets[n];
    if (t != ignore_index && (t < 0 || t >= V))
        PF_FATAL("cross-entropy target %d at row %ld is outside [0, %d)", t, (long)n, V);
    return t;
}

// log sum_{c<V} exp(l[c]), with the row maximum subtracted before exp; single-precision
// exponentials, their sum in double. With the mean (*mean = sum_c l[c] / V) when asked.
CPU_VEC_CLONES static double row_logsumexp(const float *l, int V, double *mean) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int c = 0; c < V; c++) m = l[c] > m ? l[c] : m;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < V; c++) s += cpu_expf(l[c] - m);
    if (mean) {
        double t = 0;
#pragma omp simd reduction(+ : t)
        for (int c = 0; c < V; c++) t += l[c];
        *mean = t / V;
    }
    return m + log(s);
}

// dl[c] += scale * (exp(l[c] - lse) - q0) for c < V.
CPU_VEC_CLONES static void row_softmax_add(float *dl, const float *l, int V, float lse,
                                           float scale, float q0) {
#pragma omp simd
    for (int c = 0; c < V; c++) dl[c] += scale * (cpu_expf(l[c] - lse) - q0);
}

// losses[N] = (1-eps) * -log p[target] + eps * mean_{c<V} -log p[c]; ignored rows get 0.
void cpu_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                  int ignore_index, float smoothing) {
    CPU_F32(losses);
    xent_dims d = check_dims(logits, targets, V, smoothing);
    PF_ASSERT(pf_numel(losses) == d.N);
    const float *L = cpu_f(logits);
    const int32_t *TG = targets.data;
    float *LOSS = cpu_f(losses);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; n++) {
        int t = row_target(TG, n, V, ignore_index);
        if (t == ignore_index) {
            LOSS[n] = 0;
            continue;
        }
        const float *l = L + n * d.Vp;
        double mean, lse = row_logsumexp(l, V, &mean);
        LOSS[n] = (float)((1.0 - smoothing) * (lse - l[t]) + smoothing * (lse - mean));
    }
}

// dlogits[N,Vp] += scale * (p - q), q = (1-eps) onehot(target) + eps/V; nothing in padding
// columns or ignored rows.
void cpu_xent_bwd(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V,
                  int ignore_index, float smoothing, float scale) {
    CPU_F32(dlogits);
    xent_dims d = check_dims(logits, targets, V, smoothing);
    PF_ASSERT(cpu_rows(dlogits) == d.N && cpu_cols(dlogits) == d.Vp);
    const float *L = cpu_f(logits);
    const int32_t *TG = targets.data;
    float *DL = cpu_f(dlogits);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; n++) {
        int t = row_target(TG, n, V, ignore_index);
        if (t == ignore_index) continue;
        const float *l = L + n * d.Vp;
        float *dl = DL + n * d.Vp;
        float lse = (float)row_logsumexp(l, V, NULL), q0 = smoothing / V;
        row_softmax_add(dl, l, V, lse, scale, q0);
        dl[t] -= scale * (1.0f - smoothing);
    }
}
