// cpu_attention.c: multi-head attention with the T x T attention matrix materialised
// (llm.c's attention_forward/backward). One (batch, head) pair per iteration: its q, k, v
// columns and att rows belong to it alone, so the loops need no reductions across threads.
#include <math.h>

#include "cpu_ops.h"

// att[B,NH,T,T] = softmax(q k^T / sqrt(hd)) (causal: future keys masked, stored as 0);
// out[B,T,C] = att v, heads concatenated.
void cpu_attention_fwd(pf_tensor out, pf_tensor att, pf_tensor qkv, int n_head, bool causal) {
    CPU_F32(out);
    CPU_F32(att);
    CPU_F32(qkv);
    pf_attention_shape d = pf_shape_attention(qkv, att, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    PF_ASSERT(cpu_rows(out) == B * T && cpu_cols(out) == C);
    const float *QKV = cpu_f(qkv);
    float *OUT = cpu_f(out), *ATT = cpu_f(att);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        for (int64_t t = 0; t < T; t++) {
            const float *q = QKV + (b * T + t) * 3 * C + h * hd;
            float *a = ATT + (bh * T + t) * T;
            int64_t nk = causal ? t + 1 : T;  // keys 0..nk-1 are visible
            float mx = -INFINITY;
            for (int64_t t2 = 0; t2 < nk; t2++) {
                const float *k = QKV + (b * T + t2) * 3 * C + C + h * hd;
                float s = 0;
                for (int64_t i = 0; i < hd; i++) s += q[i] * k[i];
                a[t2] = s * scale;
                if (a[t2] > mx) mx = a[t2];
            }
            double sum = 0;
            for (int64_t t2 = 0; t2 < nk; t2++) {
                a[t2] = expf(a[t2] - mx);
                sum += a[t2];
            }
            float inv = (float)(1.0 / sum);
            for (int64_t t2 = 0; t2 < nk; t2++) a[t2] *= inv;
            for (int64_t t2 = nk; t2 < T; t2++) a[t2] = 0;
            float *o = OUT + (b * T + t) * C + h * hd;
            for (int64_t i = 0; i < hd; i++) o[i] = 0;
            for (int64_t t2 = 0; t2 < nk; t2++) {
                const float *v = QKV + (b * T + t2) * 3 * C + 2 * C + h * hd;
                for (int64_t i = 0; i < hd; i++) o[i] += a[t2] * v[i];
            }
        }
    }
}

// datt [B,NH,T,T] is scratch: first d(att), then overwritten with d(pre-softmax scores).
// dv[t2] += att[t,t2] dout[t];  dq[t] += scale dpre[t,t2] k[t2];  dk[t2] += scale dpre q[t]
void cpu_attention_bwd(pf_tensor dqkv, pf_tensor datt, pf_tensor dout, pf_tensor qkv,
                       pf_tensor att, int n_head, bool causal) {
    CPU_F32(dqkv);
    CPU_F32(datt);
    CPU_F32(dout);
    CPU_F32(qkv);
    CPU_F32(att);
    pf_attention_shape d = pf_shape_attention(qkv, att, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    PF_ASSERT(pf_numel(dqkv) == pf_numel(qkv) && pf_numel(datt) == pf_numel(att));
    PF_ASSERT(cpu_rows(dout) == B * T && cpu_cols(dout) == C);
    const float *QKV = cpu_f(qkv), *ATT = cpu_f(att), *DOUT = cpu_f(dout);
    float *DQKV = cpu_f(dqkv), *DATT = cpu_f(datt);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        for (int64_t t = 0; t < T; t++) {
            const float *a = ATT + (bh * T + t) * T;
            const float *dout_t = DOUT + (b * T + t) * C + h * hd;
            float *da = DATT + (bh * T + t) * T;
            int64_t nk = causal ? t + 1 : T;
            // d(att) = dout v^T, and dv += att^T dout
            double dot = 0;  // sum_t2 att * datt, for the softmax backward
            for (int64_t t2 = 0; t2 < nk; t2++) {
                const float *v = QKV + (b * T + t2) * 3 * C + 2 * C + h * hd;
                float *dv = DQKV + (b * T + t2) * 3 * C + 2 * C + h * hd;
                float s = 0;
                for (int64_t i = 0; i < hd; i++) {
                    s += dout_t[i] * v[i];
                    dv[i] += a[t2] * dout_t[i];
                }
                da[t2] = s;
                dot += (double)a[t2] * s;
            }
            // softmax backward: dpre = att * (datt - sum att * datt), in place
            for (int64_t t2 = 0; t2 < nk; t2++) da[t2] = a[t2] * (da[t2] - (float)dot);
            for (int64_t t2 = nk; t2 < T; t2++) da[t2] = 0;
            const float *q = QKV + (b * T + t) * 3 * C + h * hd;
            float *dq = DQKV + (b * T + t) * 3 * C + h * hd;
            for (int64_t t2 = 0; t2 < nk; t2++) {
                const float *k = QKV + (b * T + t2) * 3 * C + C + h * hd;
                float *dk = DQKV + (b * T + t2) * 3 * C + C + h * hd;
                float g = da[t2] * scale;
                for (int64_t i = 0; i < hd; i++) {
                    dq[i] += g * k[i];
                    dk[i] += g * q[i];
                }
            }
        }
    }
}
