// cuda_vision.cu: the token plumbing of ViT and MLP-Mixer: per-batch transpose (Mixer token
// mixing), mean pooling over patches, the class token + position embedding, and the
// selection of the class token for the classifier. x, y, dx, dy, cls, pos are act tensors
// (T: float or bf16, read as fp32, results rounded once on store); dcls, dpos fp32.
#include "cuda_ops.h"

#define TILE 32

// y[b] (+)= x[b]^T for x: [B, R, K], y: [B, K, R] of T, through a shared TILE x TILE fp32
// tile so that both the reads and the writes are coalesced (+1 column: no bank conflicts).
// Grid: (ceil(K/TILE), ceil(R/TILE), B), block (TILE, 8).
template <typename T>
__global__ static void transpose_kernel(T *y, const T *x, int64_t R, int64_t K, bool add) {
    __shared__ float tile[TILE][TILE + 1];
    int64_t b = blockIdx.z, k0 = (int64_t)blockIdx.x * TILE, r0 = (int64_t)blockIdx.y * TILE;
    const T *xb = x + b * R * K;
    T *yb = y + b * R * K;
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int64_t r = r0 + i, k = k0 + threadIdx.x;
        if (r < R && k < K) tile[i][threadIdx.x] = cuda_ld(xb[r * K + k]);
    }
    __syncthreads();
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int64_t k = k0 + i, r = r0 + threadIdx.x;
        if (r < R && k < K) {
            float v = tile[threadIdx.x][i];
            yb[k * R + r] = cuda_st<T>(add ? cuda_ld(yb[k * R + r]) + v : v);
        }
    }
}

// y (+)= x^T per batch, x: [B, R, K], y: [B, K, R], both of dtype dt.
static void transpose(void *y, const void *x, pf_dtype dt, int64_t B, int64_t R, int64_t K,
                      bool add) {
    if (!B || !R || !K) return;
    dim3 grid((unsigned)((K + TILE - 1) / TILE), (unsigned)((R + TILE - 1) / TILE), (unsigned)B);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        transpose_kernel<T><<<grid, dim3(TILE, 8), 0, pf_cuda_ctx()->stream>>>(
            (T *)y, (const T *)x, R, K, add);
        CUDA_CHECK_LAUNCH();
    });
}

// y[B,C,P] = x[B,P,C]^T per batch; x, y act dtype
void cuda_transpose_fwd(pf_tensor y, pf_tensor x) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    pf_shape_transpose(x, y);
    transpose(y.data, x.data, dt, x.shape[0], x.shape[1], x.shape[2], false);
}

// dx[B,P,C] += dy[B,C,P]^T; dx, dy act dtype
void cuda_transpose_bwd(pf_tensor dx, pf_tensor dy) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT(dx, dt);
    CUDA_ACT(dy, dt);
    pf_shape_transpose(dx, dy);
    transpose(dx.data, dy.data, dt, dy.shape[0], dy.shape[1], dy.shape[2], true);
}

// y[b, c] = mean_p x[b, p, c], x, y of T: thread (b, c) sums over p in order (double).
template <typename T>
__global__ static void meanpool_fwd_kernel(T *y, const T *x, int64_t B, int64_t P, int64_t C) {
    for (int64_t bc = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; bc < B * C;
         bc += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = bc / C, c = bc % C;
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += cuda_ld(x[(b * P + p) * C + c]);
        y[bc] = cuda_st<T>((float)(s / P));
    }
}

// dx[b, p, c] += dy[b, c] * inv, inv = 1/P; dx, dy of T
template <typename T>
__global__ static void meanpool_bwd_kernel(T *dx, const T *dy, int64_t B, int64_t P, int64_t C,
                                           float inv) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * P * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (P * C), c = e % C;
        dx[e] = cuda_st<T>(cuda_ld(dx[e]) + cuda_ld(dy[b * C + c]) * inv);
    }
}

// y[B,C] = mean_p x[B,P,C]; x, y act dtype
void cuda_meanpool_fwd(pf_tensor y, pf_tensor x) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    if (!B || !C) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        meanpool_fwd_kernel<T><<<cuda_blocks(B * C), CUDA_THREADS, 0, pf_cuda_ctx()->stream>>>(
            (T *)y.data, (const T *)x.data, B, P, C);
        CUDA_CHECK_LAUNCH();
    });
}

// dx[b,p] += dy[b] / P; dx, dy act dtype
void cuda_meanpool_bwd(pf_tensor dx, pf_tensor dy) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT(dx, dt);
    CUDA_ACT(dy, dt);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], P = dx.shape[1], C = dx.shape[2];
    if (!B || !P || !C) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        meanpool_bwd_kernel<T><<<cuda_blocks(B * P * C), CUDA_THREADS, 0,
                                 pf_cuda_ctx()->stream>>>((T *)dx.data, (const T *)dy.data, B,
                                                          P, C, 1.0f / (float)P);
        CUDA_CHECK_LAUNCH();
    });
}

// y[b, t, c] = (t == 0 ? cls[c] : x[b, t-1, c]) + pos[t, c]  (pos may be NULL), t < P+1;
// y, x, cls, pos of T
template <typename T>
__global__ static void cls_token_fwd_kernel(T *y, const T *x, const T *cls, const T *pos,
                                            int64_t B, int64_t P, int64_t C) {
    int64_t NT = P + 1;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * NT * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (NT * C), t = e / C % NT, c = e % C;
        float v = t == 0 ? cuda_ld(cls[c]) : cuda_ld(x[(b * P + t - 1) * C + c]);
        y[e] = cuda_st<T>(pos ? v + cuda_ld(pos[t * C + c]) : v);
    }
}

// y[B,P+1,C]: y[b,0] = cls[C] + pos[0], y[b,1+p] = x[b,p] + pos[1+p]  (pos optional);
// y, x, cls, pos act dtype
void cuda_cls_token_fwd(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    CUDA_ACT(cls, dt);
    CUDA_ACT_OPT(pos, dt);
    pf_shape_cls_token(y, x, cls, pos);
    int64_t B = x.shape[0], P = x.shape[1], C = x.shape[2];
    if (!B || !C) return;
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        cls_token_fwd_kernel<T><<<cuda_blocks(B * (P + 1) * C), CUDA_THREADS, 0,
                                  pf_cuda_ctx()->stream>>>(
            (T *)y.data, (const T *)x.data, (const T *)cls.data, (const T *)pos.data, B, P, C);
        CUDA_CHECK_LAUNCH();
    });
}

// dx[b,p] += dy[b,1+p];  dcls += sum_b dy[b,0];  dpos[t] += sum_b dy[b,t]
// (both sums are column sums of dy seen as [B, T*C]). dx, dy act dtype; dcls, dpos fp32.
void cuda_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT_OPT(dx, dt);
    CUDA_F32_OPT(dcls);
    CUDA_F32_OPT(dpos);
    CUDA_ACT(dy, dt);
    pf_shape_cls_token_bwd(dx, dcls, dpos, dy);
    int64_t B = dy.shape[0], T = dy.shape[1], C = dy.shape[2];
    const char *dy1 = (const char *)dy.data + (size_t)C * pf_dtype_size(dt);  // dy[0, 1]
    if (pf_present(dx)) cuda_copy_rows(dx.data, (T - 1) * C, dy1, T * C, dt, B, (T - 1) * C, true);
    if (pf_present(dcls)) cuda_colsum_add(cuda_f(dcls), dy.data, dt, B, C, T * C);
    if (pf_present(dpos)) cuda_colsum_add(cuda_f(dpos), dy.data, dt, B, T * C, T * C);
}

// ViT classifier input: y[B,C] = x[B,0,C] (the class token); x, y act dtype
void cuda_cls_select_fwd(pf_tensor y, pf_tensor x) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    pf_shape_pool(y, x);
    int64_t B = x.shape[0], T = x.shape[1], C = x.shape[2];
    cuda_copy_rows(y.data, C, x.data, T * C, dt, B, C, false);
}

// dx[b,0] += dy[b]; dx, dy act dtype
void cuda_cls_select_bwd(pf_tensor dx, pf_tensor dy) {
    pf_dtype dt = dy.dtype;
    CUDA_ACT(dx, dt);
    CUDA_ACT(dy, dt);
    pf_shape_pool(dy, dx);
    int64_t B = dx.shape[0], T = dx.shape[1], C = dx.shape[2];
    cuda_copy_rows(dx.data, T * C, dy.data, C, dt, B, C, true);
}
