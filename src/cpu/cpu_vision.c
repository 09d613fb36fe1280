// cpu_vision.c: the token plumbing of ViT and MLP-Mixer: per-batch transpose (Mixer token
// mixing), mean pooling over patches, the class token + position embedding, and the
// selection of the class token for the classifier.
#include "cpu_ops.h"

// y[b] (+)= x[b]^T for x: [B, R, K], y: [B, K, R]; shared by transpose fwd (overwrite) and
// bwd (accumulate). Each output row is written by one iteration.
static void transpose(float *y, const float *x, int64_t B, int64_t R, int64_t K, bool add) {
#pragma omp parallel for schedule(static)
    for (int64_t bk = 0; bk < B * K; bk++) {
        int64_t b = bk / K, k = bk % K;
        float *yr = y + bk * R;
        const float *xb = x + b * R * K + k;
        for (int64_t r = 0; r < R; r++) yr[r] = (add ? yr[r] : 0.0f) + xb[r * K];
    }
}

// y[B,C,P] = x[B,P,C]^T per batch
void cpu_transpose_fwd(pf_tensor y, pf_tensor x) {
    CPU_F32(y);
    CPU_F32(x);
    pf_shape_transpose(x, y);
    transpose(cpu_f(y), cpu_f(x), x.shape[0], x.shape[1], x.shape[2], false);
}

// dx[B,P,C] += dy[B,C,P]^T
void cpu_transpose_bwd(pf_tensor dx, pf_tensor dy) {
    CPU_F32(dx);
    CPU_F32(dy);
    pf_shape_transpose(dx, dy);
    transpose(cpu_f(dx), cpu_f(dy), dy.shape[0], dy.shape[1], dy.shape[2], true);
}

// y[B,C] = mean_p x[B,P,C]
void cpu_meanpool_fwd(pf_tensor y, pf_tensor x) {
    CPU_F32(y);
    CPU_F32(x);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    const float *X = cpu_f(x);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t bc = 0; bc < B * C; bc++) {
        int64_t b = bc / C, c = bc % C;
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += X[(b * P + p) * C + c];
        Y[bc] = (float)(s / P);
    }
}

// dx[b,p] += dy[b] / P
void cpu_meanpool_bwd(pf_tensor dx, pf_tensor dy) {
    CPU_F32(dx);
    CPU_F32(dy);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], P = dx.shape[1], C = dx.shape[2];
    const float *DY = cpu_f(dy);
    float *DX = cpu_f(dx);
    float inv = 1.0f / (float)P;
#pragma omp parallel for schedule(static)
    for (int64_t bp = 0; bp < B * P; bp++) {
        int64_t b = bp / P;
        for (int64_t c = 0; c < C; c++) DX[bp * C + c] += DY[b * C + c] * inv;
    }
}

// y[B,P+1,C]: y[b,0] = cls[C] + pos[0], y[b,1+p] = x[b,p] + pos[1+p]  (pos optional)
void cpu_cls_token_fwd(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos) {
    CPU_F32(y);
    CPU_F32(x);
    CPU_F32(cls);
    CPU_F32_OPT(pos);
    pf_shape_cls_token(y, x, cls, pos);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    const float *X = cpu_f(x), *CLS = cpu_f(cls), *POS = cpu_f(pos);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t bt = 0; bt < B * (P + 1); bt++) {
        int64_t b = bt / (P + 1), t = bt % (P + 1);
        const float *src = t == 0 ? CLS : X + (b * P + t - 1) * C;
        for (int64_t c = 0; c < C; c++) Y[bt * C + c] = src[c] + (POS ? POS[t * C + c] : 0.0f);
    }
}

// dx[b,p] += dy[b,1+p];  dcls += sum_b dy[b,0];  dpos[t] += sum_b dy[b,t]
void cpu_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy) {
    CPU_F32_OPT(dx);
    CPU_F32_OPT(dcls);
    CPU_F32_OPT(dpos);
    CPU_F32(dy);
    pf_shape_cls_token_bwd(dx, dcls, dpos, dy);
    int64_t B = dy.shape[0], T = dy.shape[1], C = dy.shape[2];
    const float *DY = cpu_f(dy);
    float *DX = cpu_f(dx), *DCLS = cpu_f(dcls), *DPOS = cpu_f(dpos);
    // One (t, c) element per iteration, summed over b in order.
#pragma omp parallel for schedule(static)
    for (int64_t tc = 0; tc < T * C; tc++) {
        int64_t t = tc / C;
        float s = 0;
        for (int64_t b = 0; b < B; b++) {
            float g = DY[b * T * C + tc];
            s += g;
            if (t > 0 && DX) DX[(b * (T - 1) + t - 1) * C + tc % C] += g;
        }
        if (DPOS) DPOS[tc] += s;
        if (t == 0 && DCLS) DCLS[tc] += s;
    }
}

// ViT classifier input: y[B,C] = x[B,0,C] (the class token)
void cpu_cls_select_fwd(pf_tensor y, pf_tensor x) {
    CPU_F32(y);
    CPU_F32(x);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], T = x.shape[1], C = x.shape[2];
    const float *X = cpu_f(x);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) Y[b * C + c] = X[b * T * C + c];
}

// dx[b,0] += dy[b]
void cpu_cls_select_bwd(pf_tensor dx, pf_tensor dy) {
    CPU_F32(dx);
    CPU_F32(dy);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], T = dx.shape[1], C = dx.shape[2];
    const float *DY = cpu_f(dy);
    float *DX = cpu_f(dx);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) DX[b * T * C + c] += DY[b * C + c];
}
