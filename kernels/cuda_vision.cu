// cuda_vision.cu: the token plumbing of ViT and MLP-Mixer: per-batch transpose (Mixer token
// mixing), mean pooling over patches, the class token + position embedding, and the
// selection of the class token for the classifier.
#include "cuda_ops.h"

#define TILE 32

// y[b] (+)= x[b]^T for x: [B, R, K], y: [B, K, R], through a shared TILE x TILE tile so
// that both the reads and the writes are coalesced (+1 column: no bank conflicts).
// Grid: (ceil(K/TILE), ceil(R/TILE), B), block (TILE, 8).
__global__ static void transpose_kernel(float *y, const float *x, int64_t R, int64_t K,
                                        bool add) {
    __shared__ float tile[TILE][TILE + 1];
    int64_t b = blockIdx.z, k0 = (int64_t)blockIdx.x * TILE, r0 = (int64_t)blockIdx.y * TILE;
    const float *xb = x + b * R * K;
    float *yb = y + b * R * K;
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int64_t r = r0 + i, k = k0 + threadIdx.x;
        if (r < R && k < K) tile[i][threadIdx.x] = xb[r * K + k];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int64_t k = k0 + i, r = r0 + threadIdx.x;
        if (r < R && k < K) {
            float v = tile[threadIdx.x][i];
            yb[k * R + r] = add ? yb[k * R + r] + v : v;
        }
    }
}

static void transpose(float *y, const float *x, int64_t B, int64_t R, int64_t K, bool add) {
    if (!B || !R || !K) return;
    dim3 grid((unsigned)((K + TILE - 1) / TILE), (unsigned)((R + TILE - 1) / TILE), (unsigned)B);
    transpose_kernel<<<grid, dim3(TILE, 8), 0, pf_cuda_ctx()->stream>>>(y, x, R, K, add);
    CUDA_CHECK_LAUNCH();
}

// y[B,C,P] = x[B,P,C]^T per batch
void cuda_transpose_fwd(pf_tensor y, pf_tensor x) {
    CUDA_F32(y);
    CUDA_F32(x);
    pf_shape_transpose(x, y);
    transpose(cuda_f(y), cuda_f(x), x.shape[0], x.shape[1], x.shape[2], false);
}

// dx[B,P,C] += dy[B,C,P]^T
void cuda_transpose_bwd(pf_tensor dx, pf_tensor dy) {
    CUDA_F32(dx);
    CUDA_F32(dy);
    pf_shape_transpose(dx, dy);
    transpose(cuda_f(dx), cuda_f(dy), dy.shape[0], dy.shape[1], dy.shape[2], true);
}

// y[b, c] = mean_p x[b, p, c]: thread (b, c) sums over p in order (double).
__global__ static void meanpool_fwd_kernel(float *y, const float *x, int64_t B, int64_t P,
                                           int64_t C) {
    for (int64_t bc = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; bc < B * C;
         bc += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = bc / C, c = bc % C;
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += x[(b * P + p) * C + c];
        y[bc] = (float)(s / P);
    }
}

// dx[b, p, c] += dy[b, c] * inv, inv = 1/P
__global__ static void meanpool_bwd_kernel(float *dx, const float *dy, int64_t B, int64_t P,
                                           int64_t C, float inv) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * P * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (P * C), c = e % C;
        dx[e] += dy[b * C + c] * inv;
    }
}

// y[B,C] = mean_p x[B,P,C]
void cuda_meanpool_fwd(pf_tensor y, pf_tensor x) {
    CUDA_F32(y);
    CUDA_F32(x);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    if (!B || !C) return;
    meanpool_fwd_kernel<<<cuda_blocks(B * C), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(y), cuda_f(x), B, P, C);
    CUDA_CHECK_LAUNCH();
}

// dx[b,p] += dy[b] / P
void cuda_meanpool_bwd(pf_tensor dx, pf_tensor dy) {
    CUDA_F32(dx);
    CUDA_F32(dy);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], P = dx.shape[1], C = dx.shape[2];
    if (!B || !P || !C) return;
    meanpool_bwd_kernel<<<cuda_blocks(B * P * C), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
        cuda_f(dx), cuda_f(dy), B, P, C, 1.0f / (float)P);
    CUDA_CHECK_LAUNCH();
}

// y[b, t, c] = (t == 0 ? cls[c] : x[b, t-1, c]) + pos[t, c]  (pos may be NULL), t < P+1
__global__ static void cls_token_fwd_kernel(float *y, const float *x, const float *cls,
                                            const float *pos, int64_t B, int64_t P,
                                            int64_t C) {
    int64_t T = P + 1;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * T * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (T * C), t = e / C % T, c = e % C;
        float v = t == 0 ? cls[c] : x[(b * P + t - 1) * C + c];
        y[e] = pos ? v + pos[t * C + c] : v;
    }
}

// y[B,P+1,C]: y[b,0] = cls[C] + pos[0], y[b,1+p] = x[b,p] + pos[1+p]  (pos optional)
void cuda_cls_token_fwd(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos) {
    CUDA_F32(y);
    CUDA_F32(x);
    CUDA_F32(cls);
    CUDA_F32_OPT(pos);
    pf_shape_cls_token(y, x, cls, pos);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    if (!B || !C) return;
    cls_token_fwd_kernel<<<cuda_blocks(B * (P + 1) * C), CUDA_THREADS, 0,
                           pf_cuda_ctx()->stream>>>(cuda_f(y), cuda_f(x), cuda_f(cls),
                                                    cuda_f(pos), B, P, C);
    CUDA_CHECK_LAUNCH();
}

// dx[b,p] += dy[b,1+p];  dcls += sum_b dy[b,0];  dpos[t] += sum_b dy[b,t]
// (both sums are column sums of dy seen as [B, T*C]).
void cuda_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy) {
    CUDA_F32_OPT(dx);
    CUDA_F32_OPT(dcls);
    CUDA_F32_OPT(dpos);
    CUDA_F32(dy);
    pf_shape_cls_token_bwd(dx, dcls, dpos, dy);
    int64_t B = dy.shape[0], T = dy.shape[1], C = dy.shape[2];
    const float *DY = cuda_f(dy);
    if (pf_present(dx))
        cuda_copy_rows(cuda_f(dx), (T - 1) * C, DY + C, T * C, B, (T - 1) * C, true);
    if (pf_present(dcls)) cuda_colsum_add(cuda_f(dcls), DY, B, C, T * C);
    if (pf_present(dpos)) cuda_colsum_add(cuda_f(dpos), DY, B, T * C, T * C);
}

// ViT classifier input: y[B,C] = x[B,0,C] (the class token)
void cuda_cls_select_fwd(pf_tensor y, pf_tensor x) {
    CUDA_F32(y);
    CUDA_F32(x);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], T = x.shape[1], C = x.shape[2];
    cuda_copy_rows(cuda_f(y), C, cuda_f(x), T * C, B, C, false);
}

// dx[b,0] += dy[b]
void cuda_cls_select_bwd(pf_tensor dx, pf_tensor dy) {
    CUDA_F32(dx);
    CUDA_F32(dy);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], T = dx.shape[1], C = dx.shape[2];
    cuda_copy_rows(cuda_f(dx), T * C, cuda_f(dy), C, B, C, true);
}
