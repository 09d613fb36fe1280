// cuda_attention.cu: multi-head attention with the T x T attention matrix materialised
// (as cpu_attention.c): the products are cuBLAS strided-batched GEMMs over the heads of one
// batch element (q, k, v of head h are the hd columns at h*hd of their C-wide part of qkv,
// row stride 3C), the softmax and its backward are one warp per attention row.
#include "cuda_ops.h"

#define ROWS_PER_BLOCK 8  // one warp per attention row

// In place over att rows [rows, T] holding scaled scores: row i = (b*NH + h)*T + t becomes
// softmax over its visible keys t2 < nk (nk = t+1 when causal, else T), 0 beyond.
__global__ static void softmax_fwd_kernel(float *att, int64_t rows, int64_t T, bool causal) {
    int64_t i = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    if (i >= rows) return;  // the whole warp leaves together
    int lane = threadIdx.x % 32;
    float *a = att + i * T;
    int64_t nk = causal ? i % T + 1 : T;
    float mx = -INFINITY;
    for (int64_t t2 = lane; t2 < nk; t2 += 32) mx = fmaxf(mx, a[t2]);
    mx = warp_reduce<cuda_max_op>(mx);
    double sum = 0;
    for (int64_t t2 = lane; t2 < nk; t2 += 32) {
        float e = expf(a[t2] - mx);
        a[t2] = e;
        sum += e;
    }
    float inv = (float)(1.0 / warp_reduce<cuda_sum_op>(sum));
    for (int64_t t2 = lane; t2 < T; t2 += 32) a[t2] = t2 < nk ? a[t2] * inv : 0.0f;
}

// In place over datt rows: datt = att * (datt - sum_t2 att * datt) on visible keys, 0 beyond
// (the gradient of the pre-softmax scores).
__global__ static void softmax_bwd_kernel(float *datt, const float *att, int64_t rows,
                                          int64_t T, bool causal) {
    int64_t i = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    if (i >= rows) return;
    int lane = threadIdx.x % 32;
    float *da = datt + i * T;
    const float *a = att + i * T;
    int64_t nk = causal ? i % T + 1 : T;
    double dot = 0;
    for (int64_t t2 = lane; t2 < nk; t2 += 32) dot += (double)a[t2] * da[t2];
    float d = (float)warp_reduce<cuda_sum_op>(dot);
    for (int64_t t2 = lane; t2 < T; t2 += 32) da[t2] = t2 < nk ? a[t2] * (da[t2] - d) : 0.0f;
}

static unsigned row_blocks(int64_t rows) {
    return (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

// att[B,NH,T,T] = softmax(q k^T / sqrt(hd)) (causal: future keys masked, stored as 0);
// out[B,T,C] = att v, heads concatenated.
void cuda_attention_fwd(pf_tensor out, pf_tensor att, pf_tensor qkv, int n_head, bool causal) {
    CUDA_F32(out);
    CUDA_F32(att);
    CUDA_F32(qkv);
    pf_attention_shape d = pf_shape_attention(qkv, att, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    PF_ASSERT(cuda_rows(out) == B * T && cuda_cols(out) == C);
    if (!B || !T) return;
    const float *QKV = cuda_f(qkv);
    float *OUT = cuda_f(out), *ATT = cuda_f(att);
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t b = 0; b < B; b++) {
        const float *q = QKV + b * T * 3 * C, *k = q + C;
        // att[h] = scale * q_h k_h^T: [T, T] per head
        cuda_sgemm_strided(false, true, T, T, hd, scale, q, 3 * C, hd, k, 3 * C, hd, 0.0f,
                           ATT + b * NH * T * T, T, T * T, NH);
    }
    int64_t rows = B * NH * T;
    softmax_fwd_kernel<<<row_blocks(rows), ROWS_PER_BLOCK * 32, 0, pf_cuda_ctx()->stream>>>(
        ATT, rows, T, causal);
    CUDA_CHECK_LAUNCH();
    for (int64_t b = 0; b < B; b++) {
        const float *v = QKV + b * T * 3 * C + 2 * C;
        // out_h = att[h] v_h: [T, hd] at columns h*hd of out
        cuda_sgemm_strided(false, false, T, hd, T, 1.0f, ATT + b * NH * T * T, T, T * T, v,
                           3 * C, hd, 0.0f, OUT + b * T * C, C, hd, NH);
    }
}

// datt [B,NH,T,T] is scratch: first d(att), then overwritten with d(pre-softmax scores).
// dv += att^T dout;  dq += scale dpre k;  dk += scale dpre^T q
void cuda_attention_bwd(pf_tensor dqkv, pf_tensor datt, pf_tensor dout, pf_tensor qkv,
                        pf_tensor att, int n_head, bool causal) {
    CUDA_F32(dqkv);
    CUDA_F32(datt);
    CUDA_F32(dout);
    CUDA_F32(qkv);
    CUDA_F32(att);
    pf_attention_shape d = pf_shape_attention(qkv, att, n_head);
    int64_t B = d.B, T = d.T, C = d.C, NH = d.NH, hd = d.hd;
    PF_ASSERT(pf_numel(dqkv) == pf_numel(qkv) && pf_numel(datt) == pf_numel(att));
    PF_ASSERT(cuda_rows(dout) == B * T && cuda_cols(dout) == C);
    if (!B || !T) return;
    const float *QKV = cuda_f(qkv), *ATT = cuda_f(att), *DOUT = cuda_f(dout);
    float *DQKV = cuda_f(dqkv), *DATT = cuda_f(datt);
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t b = 0; b < B; b++) {
        int64_t o = b * T * 3 * C, oa = b * NH * T * T;
        const float *dout_b = DOUT + b * T * C;
        // datt[h] = dout_h v_h^T: [T, T]
        cuda_sgemm_strided(false, true, T, T, hd, 1.0f, dout_b, C, hd, QKV + o + 2 * C, 3 * C,
                           hd, 0.0f, DATT + oa, T, T * T, NH);
        // dv_h += att[h]^T dout_h: [T, hd]
        cuda_sgemm_strided(true, false, T, hd, T, 1.0f, ATT + oa, T, T * T, dout_b, C, hd,
                           1.0f, DQKV + o + 2 * C, 3 * C, hd, NH);
    }
    int64_t rows = B * NH * T;
    softmax_bwd_kernel<<<row_blocks(rows), ROWS_PER_BLOCK * 32, 0, pf_cuda_ctx()->stream>>>(
        DATT, ATT, rows, T, causal);
    CUDA_CHECK_LAUNCH();
    for (int64_t b = 0; b < B; b++) {
        int64_t o = b * T * 3 * C, oa = b * NH * T * T;
        // dq_h += scale dpre[h] k_h;  dk_h += scale dpre[h]^T q_h: [T, hd]
        cuda_sgemm_strided(false, false, T, hd, T, scale, DATT + oa, T, T * T, QKV + o + C,
                           3 * C, hd, 1.0f, DQKV + o, 3 * C, hd, NH);
        cuda_sgemm_strided(true, false, T, hd, T, scale, DATT + oa, T, T * T, QKV + o, 3 * C,
                           hd, 1.0f, DQKV + o + C, 3 * C, hd, NH);
    }
}
