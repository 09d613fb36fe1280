// cpu_loss.c: softmax cross-entropy over the V real classes of padded logits [N, Vp],
// with label smoothing and an ignore index. Row statistics in double, max subtracted.
// The row passes are vector loops (cpu_vexp.h): over GPT-2's 50,257 classes they were the
// largest share of a small model's CPU step as scalar expf calls.
#include <math.h>
#include <stdlib.h>

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

// Row maximum over c < V, and sum_c l[c] in double when sum (one read of the row from
// memory; the passes after it find the row in cache). NaN when the row holds a NaN (a NaN
// never wins the select, so it is tested apart) or the maximum is infinite: the callers
// then give the row a NaN loss and gradient, as exp(NaN) and exp(inf - inf) did before the
// exponent was clamped.
CPU_VEC_CLONES static float row_max(const float *l, int V, double *sum) {
    float m = -INFINITY;
    int nan = 0;
    double t = 0;
    if (sum) {
#pragma omp simd reduction(max : m) reduction(| : nan) reduction(+ : t)
        for (int c = 0; c < V; c++) {
            m = l[c] > m ? l[c] : m;
            nan |= l[c] != l[c];
            t += l[c];
        }
        *sum = t;
    } else {
#pragma omp simd reduction(max : m) reduction(| : nan)
        for (int c = 0; c < V; c++) {
            m = l[c] > m ? l[c] : m;
            nan |= l[c] != l[c];
        }
    }
    return nan || isinf(m) ? NAN : m;
}

// sum_{c<V} exp(l[c] - m) for the row maximum m, single-precision exponentials summed in
// double; each exponential also stored in e[c] when e. The argument is <= 0, clamped below
// at -87.3 (cpu_vexp_range.h), where exp is 1e-38 of the row's largest term.
CPU_VEC_CLONES static double row_expsum(float *e, const float *l, int V, float m) {
    double s = 0;
    if (e) {
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < V; c++) {
            float x = cpu_expf_in_range(cpu_clamp_exp_arg(l[c] - m));
            e[c] = x;
            s += x;
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < V; c++) s += cpu_expf_in_range(cpu_clamp_exp_arg(l[c] - m));
    }
    return s;
}

// dl[c] += scale * (e[c] * inv - q0) for c < V, e[c] = exp(l[c] - m) and inv = 1 / sum_c e[c].
CPU_VEC_CLONES static void row_softmax_add(float *dl, const float *e, int V, float inv,
                                           float scale, float q0) {
#pragma omp simd
    for (int c = 0; c < V; c++) dl[c] += scale * (e[c] * inv - q0);
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
        double sum = 0;
        float m = row_max(l, V, smoothing != 0 ? &sum : NULL);
        double lse = m + log(row_expsum(NULL, l, V, m)), mean = sum / V;
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
    // One exponential per logit: each thread keeps its row's exp(l - max) in e (V floats,
    // in cache between the two passes) instead of evaluating them again after the sum.
#pragma omp parallel
    {
        float *e = pf_malloc(sizeof(float) * (size_t)(V > 0 ? V : 1));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < d.N; n++) {
            int t = row_target(TG, n, V, ignore_index);
            if (t == ignore_index) continue;
            const float *l = L + n * d.Vp;
            float *dl = DL + n * d.Vp;
            float m = row_max(l, V, NULL);
            double sum = row_expsum(e, l, V, m);
            float inv = m == m ? (float)(1.0 / sum) : NAN;  // a NaN row: a NaN gradient
            float q0 = smoothing / V;
            row_softmax_add(dl, e, V, inv, scale, q0);
            dl[t] -= scale * (1.0f - smoothing);
        }
        free(e);
    }
}
