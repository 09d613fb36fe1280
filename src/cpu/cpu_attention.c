// cpu_attention.c: multi-head attention without the T x T matrix (flash-attention's
// contract): forward saves only each row's log-sum-exp, backward recomputes the
// probabilities from q, k and it. Both passes are tiled: a tile of ATT_QB queries against a
// block of ATT_KB keys is a few small GEMMs (cpu_sgemm, single-threaded inside the parallel
// loop) on the strided q, k, v columns of one head, plus one vectorisable pass over the
// [ATT_QB x ATT_KB] scores. The forward keeps an online softmax over the key blocks (scratch
// per thread independent of T).
//
// qkv: [B, T, 3C] with q, k, v of head h at columns h*hd, C + h*hd, 2C + h*hd;
// out, dout: [B, T, C]; lse: [B, NH, T]; dqkv like qkv.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_ops.h"
#include "cpu_vexp.h"

#define ATT_QB 64   // queries per tile
#define ATT_KB 128  // keys per block

// Keys of block [k0, k0 + nk) visible to query t: all of them, or those <= t when causal.
static inline int64_t att_visible(int64_t t, int64_t k0, int64_t nk, bool causal) {
    if (!causal) return nk;
    int64_t v = t - k0 + 1;
    return v < 0 ? 0 : v > nk ? nk : v;
}

// p[j] = exp(s[j] * scale - mx) for j < vis; returns their sum.
CPU_VEC_CLONES static float att_row_exp(float *p, int64_t vis, float scale, float mx) {
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < vis; j++) {
        p[j] = cpu_expf(p[j] * scale - mx);
        sum += p[j];
    }
    return sum;
}

// p[j] = exp(s[j] * scale - lse) (P) and dp[j] = P (dP[j] - D) scale (dS) for j < vis.
CPU_VEC_CLONES static void att_row_ds(float *p, float *dp, int64_t vis, float scale, float lse,
                                      float D) {
#pragma omp simd
    for (int64_t j = 0; j < vis; j++) {
        p[j] = cpu_expf(p[j] * scale - lse);
        dp[j] = p[j] * (dp[j] - D) * scale;
    }
}

// Per (b, h) and query tile [t0, t0 + nq), over key blocks [k0, k0 + nk) of the visible keys:
//   S = Q K^T * scale  (masked: -inf);  m' = max(m, rowmax S);  P = exp(S - m');
//   l = l exp(m - m') + rowsum P;  O = O exp(m - m') + P V
// then out = O / l and lse = m + log l. Each work item (b, h, query tile) writes its own rows
// of out and lse, so the result does not depend on the thread schedule.
void cpu_attention_fwd(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head, bool causal) {
    CPU_F32(out);
    CPU_F32(lse);
    CPU_F32(qkv);
    pf_attention_shape d = pf_shape_attention(qkv, out, lse, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    const float *QKV = cpu_f(qkv);
    float *OUT = cpu_f(out), *LSE = cpu_f(lse);
    float scale = 1.0f / sqrtf((float)hd);
    int64_t nqt = (T + ATT_QB - 1) / ATT_QB;
#pragma omp parallel
    {
        float *s = pf_malloc(sizeof(float) * ATT_QB * ATT_KB);  // scores, then probabilities
        float *m = pf_malloc(sizeof(float) * ATT_QB), *l = pf_malloc(sizeof(float) * ATT_QB);
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < B * NH * nqt; item++) {
            int64_t bh = item / nqt, b = bh / NH, h = bh % NH;
            int64_t t0 = item % nqt * ATT_QB, nq = T - t0 < ATT_QB ? T - t0 : ATT_QB;
            const float *q = QKV + (b * T + t0) * 3 * C + h * hd;
            float *o = OUT + (b * T + t0) * C + h * hd;  // the accumulator O, [nq, hd] ld C
            for (int64_t i = 0; i < nq; i++) {
                m[i] = -INFINITY;
                l[i] = 0;
                memset(o + i * C, 0, sizeof(float) * (size_t)hd);
            }
            int64_t kend = causal ? t0 + nq : T;
            for (int64_t k0 = 0; k0 < kend; k0 += ATT_KB) {
                int64_t nk = kend - k0 < ATT_KB ? kend - k0 : ATT_KB;
                const float *k = QKV + (b * T + k0) * 3 * C + C + h * hd, *v = k + C;
                cpu_sgemm(false, true, nq, nk, hd, q, 3 * C, k, 3 * C, 0.0f, s, ATT_KB);
                for (int64_t i = 0; i < nq; i++) {
                    float *si = s + i * ATT_KB;
                    int64_t vis = att_visible(t0 + i, k0, nk, causal);
                    float mx = m[i];
                    for (int64_t j = 0; j < vis; j++) mx = fmaxf(mx, si[j] * scale);
                    float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - mx);
                    float sum = att_row_exp(si, vis, scale, mx);
                    for (int64_t j = vis; j < nk; j++) si[j] = 0;
                    if (vis) {
                        m[i] = mx;
                        l[i] = l[i] * alpha + sum;
                        if (alpha != 1.0f)
                            for (int64_t c = 0; c < hd; c++) o[i * C + c] *= alpha;
                    }
                }
                cpu_sgemm(false, false, nq, hd, nk, s, ATT_KB, v, 3 * C, 1.0f, o, C);
            }
            for (int64_t i = 0; i < nq; i++) {
                float inv = 1.0f / l[i];
                for (int64_t c = 0; c < hd; c++) o[i * C + c] *= inv;
                LSE[bh * T + t0 + i] = m[i] + logf(l[i]);
            }
        }
        free(l);
        free(m);
        free(s);
    }
}

// Per (b, h), with D[t] = dout_t . out_t, for every query tile i and visible key block j:
//   P = exp(Q_i K_j^T * scale - lse_i)  (masked: 0);  dV_j += P^T dO_i;  dP = dO_i V_j^T;
//   dS = P (dP - D_i) * scale;  dQ_i += dS K_j;  dK_j += dS^T Q_i
// One work item per (b, h): it alone writes that head's columns of dqkv, adding the query
// tiles in order, so the sums do not depend on the thread schedule.
void cpu_attention_bwd(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                       pf_tensor lse, int n_head, bool causal) {
    CPU_F32(dqkv);
    CPU_F32(dout);
    CPU_F32(qkv);
    CPU_F32(out);
    CPU_F32(lse);
    pf_attention_shape d = pf_shape_attention(qkv, out, lse, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    PF_ASSERT(pf_numel(dqkv) == pf_numel(qkv) && pf_numel(dout) == pf_numel(out));
    const float *QKV = cpu_f(qkv), *DOUT = cpu_f(dout), *OUT = cpu_f(out), *LSE = cpu_f(lse);
    float *DQKV = cpu_f(dqkv);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *p = pf_malloc(sizeof(float) * ATT_QB * ATT_KB);
        float *dp = pf_malloc(sizeof(float) * ATT_QB * ATT_KB);
        float *D = pf_malloc(sizeof(float) * (size_t)(T > 0 ? T : 1));
#pragma omp for schedule(dynamic)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            int64_t b = bh / NH, h = bh % NH;
            for (int64_t t = 0; t < T; t++) {
                const float *g = DOUT + (b * T + t) * C + h * hd, *y = OUT + (b * T + t) * C + h * hd;
                float s = 0;
                for (int64_t c = 0; c < hd; c++) s += g[c] * y[c];
                D[t] = s;
            }
            for (int64_t t0 = 0; t0 < T; t0 += ATT_QB) {
                int64_t nq = T - t0 < ATT_QB ? T - t0 : ATT_QB;
                int64_t qrow = (b * T + t0) * 3 * C + h * hd;
                const float *q = QKV + qrow, *dO = DOUT + (b * T + t0) * C + h * hd;
                const float *lse_i = LSE + bh * T + t0;
                float *dq = DQKV + qrow;
                int64_t kend = causal ? t0 + nq : T;
                for (int64_t k0 = 0; k0 < kend; k0 += ATT_KB) {
                    int64_t nk = kend - k0 < ATT_KB ? kend - k0 : ATT_KB;
                    int64_t krow = (b * T + k0) * 3 * C + h * hd;
                    const float *k = QKV + krow + C, *v = QKV + krow + 2 * C;
                    float *dk = DQKV + krow + C, *dv = DQKV + krow + 2 * C;
                    cpu_sgemm(false, true, nq, nk, hd, q, 3 * C, k, 3 * C, 0.0f, p, ATT_KB);
                    cpu_sgemm(false, true, nq, nk, hd, dO, C, v, 3 * C, 0.0f, dp, ATT_KB);
                    for (int64_t i = 0; i < nq; i++) {
                        float *pi = p + i * ATT_KB, *dpi = dp + i * ATT_KB;
                        int64_t vis = att_visible(t0 + i, k0, nk, causal);
                        float li = lse_i[i], Di = D[t0 + i];
                        att_row_ds(pi, dpi, vis, scale, li, Di);
                        for (int64_t j = vis; j < nk; j++) pi[j] = dpi[j] = 0;
                        // One visible key in all (T = 1, or the first query when causal):
                        // P = 1 exactly and dS = dP - D = 0 in exact arithmetic, since out
                        // = v; D (a dot) and dP (a GEMM) are summed in different orders,
                        // so set it, or q and k would get rounding noise as gradient.
                        if ((causal ? t0 + i + 1 : T) == 1) dpi[0] = 0;
                    }
                    cpu_sgemm(true, false, nk, hd, nq, p, ATT_KB, dO, C, 1.0f, dv, 3 * C);
                    cpu_sgemm(false, false, nq, hd, nk, dp, ATT_KB, k, 3 * C, 1.0f, dq, 3 * C);
                    cpu_sgemm(true, false, nk, hd, nq, dp, ATT_KB, q, 3 * C, 1.0f, dk, 3 * C);
                }
            }
        }
        free(D);
        free(dp);
        free(p);
    }
}
