// cpu_attention.c: multi-head attention without the T x T matrix (flash-attention's
// contract): forward saves only each row's log-sum-exp, backward recomputes the row's
// probabilities from q, k and it. One (batch, head) pair per iteration: its q, k, v columns
// (and those of dqkv) belong to it alone, so the loops need no reductions across threads.
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "cpu_ops.h"

// Per (b, h) and query t, over the visible keys t2 < nk (nk = t+1 when causal, else T):
//   s[t2] = q_t . k_t2 / sqrt(hd);  lse[b,h,t] = log sum_t2 exp(s[t2]);
//   out[b,t,h*hd:] = sum_t2 exp(s[t2] - lse) v_t2
void cpu_attention_fwd(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head, bool causal) {
    CPU_F32(out);
    CPU_F32(lse);
    CPU_F32(qkv);
    pf_attention_shape d = pf_shape_attention(qkv, out, lse, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    const float *QKV = cpu_f(qkv);
    float *OUT = cpu_f(out), *LSE = cpu_f(lse);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *p = pf_malloc(sizeof(float) * (size_t)(T > 0 ? T : 1));  // one row's scores
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            int64_t b = bh / NH, h = bh % NH;
            for (int64_t t = 0; t < T; t++) {
                const float *q = QKV + (b * T + t) * 3 * C + h * hd;
                int64_t nk = causal ? t + 1 : T;  // keys 0..nk-1 are visible
                float mx = -INFINITY;
                for (int64_t t2 = 0; t2 < nk; t2++) {
                    const float *k = QKV + (b * T + t2) * 3 * C + C + h * hd;
                    float s = 0;
                    for (int64_t i = 0; i < hd; i++) s += q[i] * k[i];
                    p[t2] = s * scale;
                    if (p[t2] > mx) mx = p[t2];
                }
                double sum = 0;
                for (int64_t t2 = 0; t2 < nk; t2++) {
                    p[t2] = expf(p[t2] - mx);
                    sum += p[t2];
                }
                LSE[bh * T + t] = mx + (float)log(sum);
                float inv = (float)(1.0 / sum);
                float *o = OUT + (b * T + t) * C + h * hd;
                for (int64_t i = 0; i < hd; i++) o[i] = 0;
                for (int64_t t2 = 0; t2 < nk; t2++) {
                    const float *v = QKV + (b * T + t2) * 3 * C + 2 * C + h * hd;
                    float a = p[t2] * inv;
                    for (int64_t i = 0; i < hd; i++) o[i] += a * v[i];
                }
            }
        }
        free(p);
    }
}

// Per (b, h) and query t, recomputing P[t2] = exp(s[t2] - lse[t]) over the visible keys:
//   D = dout_t . out_t;  dP[t2] = dout_t . v_t2;  dS[t2] = P (dP - D)   (d of s)
//   dv_t2 += P dout_t;  dq_t += dS k_t2 / sqrt(hd);  dk_t2 += dS q_t / sqrt(hd)
// D and dP are summed in the same order and type, so where P is exactly 1 (one visible key)
// dS is exactly 0, as the loss is then independent of q and k.
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
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        for (int64_t t = 0; t < T; t++) {
            int64_t row = (b * T + t) * 3 * C + h * hd;  // q_t's offset in qkv
            const float *q = QKV + row, *dout_t = DOUT + (b * T + t) * C + h * hd;
            const float *out_t = OUT + (b * T + t) * C + h * hd;
            float *dq = DQKV + row;
            float D = 0;
            for (int64_t i = 0; i < hd; i++) D += dout_t[i] * out_t[i];
            float l = LSE[bh * T + t];
            int64_t nk = causal ? t + 1 : T;
            for (int64_t t2 = 0; t2 < nk; t2++) {
                int64_t col = (b * T + t2) * 3 * C + h * hd;  // k_t2 at col + C, v_t2 at + 2C
                const float *k = QKV + col + C, *v = QKV + col + 2 * C;
                float *dk = DQKV + col + C, *dv = DQKV + col + 2 * C;
                float s = 0, dp = 0;
                for (int64_t i = 0; i < hd; i++) {
                    s += q[i] * k[i];
                    dp += dout_t[i] * v[i];
                }
                float p = expf(s * scale - l);
                float g = p * (dp - D) * scale;
                for (int64_t i = 0; i < hd; i++) {
                    dv[i] += p * dout_t[i];
                    dq[i] += g * k[i];
                    dk[i] += g * q[i];
                }
            }
        }
    }
}
