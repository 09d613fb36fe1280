// cuda_attention.cu: flash attention (Dao et al.), forward and a deterministic backward.
// The [B,NH,T,T] probabilities never reach global memory: the forward keeps a running
// (online) softmax per query row over key tiles and saves only each row's log-sum-exp;
// the backward recomputes P from q, k and lse. No float atomics: dK, dV are summed by the
// CTA that owns a key tile (looping over query tiles), dQ by the CTA that owns a query tile
// (looping over key tiles), each element in one fixed order.
//
// Layout (backend.h): qkv [B,T,3C] = [q | k | v], head h at columns h*HD of each part (row
// stride 3C); out, dout [B,T,C] (row stride C); lse [B,NH,T] fp32; dqkv like qkv (added into).
//
// Matrix products run on tensor cores through nvcuda::wmma: 16x16x16 bf16 fragments with
// fp32 accumulators, loaded from and stored to shared memory only. Tiles of q, k, v, dout are
// staged in shared memory as bf16 whatever the act dtype (fp32 inputs are rounded there);
// scores, softmax statistics and every sum are fp32.
//
// Tiles: a CTA has ATT_WARPS = 4 warps (128 threads) and owns 64 rows (query rows in the
// forward and dQ kernels, key rows in the dK/dV kernel); warp w owns rows 16w..16w+15 of
// every per-row buffer (scores, probabilities, the output accumulator), so those buffers need
// only __syncwarp(); the shared k/v (or q/dout) tiles that all warps read are guarded by
// __syncthreads(). Rows past T are staged as zeros and masked; nothing past T is written.
// Head dims: 16, 32, 64, 96, 128 (templates; the backend table publishes the list, so a model
// with another one is refused when it is built).
#include <mma.h>

#include <type_traits>

#include "cuda_ops.h"

namespace wmma = nvcuda::wmma;

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_BQ 64  // query rows per tile (16 per warp where warps split queries)
#define ATT_BK 64  // key rows per tile (16 per warp where warps split keys)
// Row strides (in elements) of the shared-memory tiles, padded against bank conflicts.
// wmma needs ldm % 8 == 0 for bf16 and % 4 == 0 for fp32, and 32-byte aligned fragment
// pointers: every fragment starts at a row that is a multiple of 16 and a column that is a
// multiple of 16, so 16 * ld * sizeof(elem) and 16 * sizeof(elem) are multiples of 32.
#define ATT_LDS (ATT_BK + 4)  // fp32 score tiles [64][64] (ATT_BQ == ATT_BK)
#define ATT_LDP (ATT_BK + 8)  // bf16 probability tiles [64][64]
static_assert(ATT_BQ == 16 * ATT_WARPS && ATT_BK == 16 * ATT_WARPS, "16 rows per warp");
static_assert(ATT_BQ == ATT_BK, "score tiles are square: ATT_LDS, ATT_LDP serve both kernels");

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt;  // B^T
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

// Bytes of an array of n elements of `size` bytes, rounded up to 128 so that the next array
// carved from dynamic shared memory stays aligned.
__host__ __device__ constexpr size_t att_bytes(size_t n, size_t size) {
    return (n * size + 127) / 128 * 128;
}

// Shared memory of each kernel, for head dim HD (host: launch size; device: carving).
template <int HD> struct att_smem {
    static constexpr int LDH = HD + 8;  // bf16 [64][HD] tiles of q, k, v, dout
    static constexpr size_t tile_h = att_bytes((size_t)64 * LDH, sizeof(bf16));
    static constexpr size_t tile_s = att_bytes((size_t)64 * ATT_LDS, sizeof(float));
    static constexpr size_t tile_p = att_bytes((size_t)64 * ATT_LDP, sizeof(bf16));
    static constexpr size_t tile_o = att_bytes((size_t)64 * (HD + 4), sizeof(float));
    static constexpr size_t row = att_bytes(64, sizeof(float));
    // forward: Q, K, V | S | P | O
    static constexpr size_t fwd = 3 * tile_h + tile_s + tile_p + tile_o;
    // dK/dV: K, V, Q, dO | S^T, dP^T | P^T, dS^T | lse, D
    static constexpr size_t dkv = 4 * tile_h + 2 * tile_s + 2 * tile_p + 2 * row;
    // dQ: Q, dO, K, V | S, dP | dS | lse, D
    static constexpr size_t dq = 4 * tile_h + 2 * tile_s + tile_p + 2 * row;
};
// The largest (HD = 128): fwd 112640, dkv 123392, dq 114176 bytes, within the 163 KB
// (sm_80) and 227 KB (sm_90) a block may opt into.
static_assert(att_smem<128>::dkv <= 160 * 1024, "attention smem exceeds sm_80's opt-in limit");

// Carves consecutive arrays out of the dynamic shared memory.
struct att_carver {
    unsigned char *p;
    template <typename E> __device__ E *take(size_t bytes) {
        E *r = (E *)p;
        p += bytes;
        return r;
    }
};

// dst[r][c] = bf16(src[r * ld + c]) for r < 64, c < HD (dst row stride HD + 8); rows
// r >= nrows (past T) are zeros. src: row 0 of the tile at the head's first column.
// All threads of the CTA take part; the caller syncs before reading dst.
template <int HD, typename act_t>
__device__ static void att_load_tile(bf16 *dst, const act_t *src, int64_t ld, int64_t nrows) {
    for (int i = threadIdx.x; i < 64 * HD; i += ATT_THREADS) {
        int r = i / HD, c = i % HD;
        float v = r < nrows ? cuda_ld(src[r * ld + c]) : 0.0f;
        dst[r * (HD + 8) + c] = cuda_st<bf16>(v);
    }
}

// dst[m][n] = sum_k A[m][k] B[k][n] over one 16-row strip of a tile: for each 16-column
// block n of the N columns, acc = sum over K/16 steps of mma. A is row-major at a (row
// stride lda); B is row-major at b (ldb) or, when BT, B^T row-major (so B col-major) at b.
// The result is stored row-major at dst (row stride ldd, fp32). One warp.
template <int N, int K, bool BT>
__device__ static void att_strip_mma(float *dst, int ldd, const bf16 *a, int lda, const bf16 *b,
                                     int ldb) {
#pragma unroll
    for (int n = 0; n < N / 16; n++) {
        frag_acc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int k = 0; k < K / 16; k++) {
            frag_a fa;
            wmma::load_matrix_sync(fa, a + k * 16, lda);
            if constexpr (BT) {
                frag_bt fb;  // B[k][n] = b[n * ldb + k]
                wmma::load_matrix_sync(fb, b + (n * 16) * ldb + k * 16, ldb);
                wmma::mma_sync(acc, fa, fb, acc);
            } else {
                frag_b fb;  // B[k][n] = b[k * ldb + n]
                wmma::load_matrix_sync(fb, b + (k * 16) * ldb + n * 16, ldb);
                wmma::mma_sync(acc, fa, fb, acc);
            }
        }
        wmma::store_matrix_sync(dst + n * 16, acc, ldd, wmma::mem_row_major);
    }
}

// acc[n] += A B over a 16-row strip, kept in registers: A [16][K] row-major at a (lda),
// B [K][16*NF] row-major at b (ldb); acc[n] holds output columns 16n..16n+15. One warp.
template <int NF, int K>
__device__ static void att_strip_mma_acc(frag_acc (&acc)[NF], const bf16 *a, int lda,
                                         const bf16 *b, int ldb) {
#pragma unroll
    for (int k = 0; k < K / 16; k++) {
        frag_a fa;
        wmma::load_matrix_sync(fa, a + k * 16, lda);
#pragma unroll
        for (int n = 0; n < NF; n++) {
            frag_b fb;
            wmma::load_matrix_sync(fb, b + (k * 16) * ldb + n * 16, ldb);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
}

// dst[(row0 + r) * ld + 16n + c] += s * acc[n][r][c] for rows row0 + r < T (act dtype), via
// the warp's fp32 staging area stage [16][ldst]. One warp; each element has one writer.
template <int NF, typename act_t>
__device__ static void att_add_strip(act_t *dst, int64_t ld, int64_t row0, int64_t T,
                                     frag_acc (&acc)[NF], float s, float *stage, int ldst) {
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < NF; n++) {
        wmma::store_matrix_sync(stage, acc[n], ldst, wmma::mem_row_major);
        __syncwarp();
        for (int i = lane; i < 256; i += 32) {
            int r = i / 16, c = i % 16;
            if (row0 + r < T) {
                act_t *d = dst + (row0 + r) * ld + n * 16 + c;
                *d = cuda_st<act_t>(cuda_ld(*d) + s * stage[r * ldst + c]);
            }
        }
        __syncwarp();  // stage is read before the next fragment overwrites it
    }
}

// ---- forward ---------------------------------------------------------------------------------
// Grid (ceil(T/64), NH, B): one CTA per (b, h, tile of 64 query rows q0..q0+63).
// For each key tile kv0 (causal: only tiles with kv0 <= q0 + 63), per query row r:
//   S[r][c] = scale * q_r . k_c            (tensor cores, Q [64,HD] x K^T [HD,64])
//   m' = max(m, max_c S);  alpha = exp(m - m');  P[r][c] = exp(S - m')   (masked keys: 0)
//   l = alpha l + sum_c P;  O[r] = alpha O[r] + sum_c P[r][c] v_c   (P bf16 x V, tensor cores)
// then out[r] = O[r] / l, lse[r] = m + log l. m, l of the warp's 16 rows live in registers
// (every lane holds all 16: the warp reductions broadcast them); O in shared memory, fp32.
template <int HD, typename act_t>
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_fwd_kernel(act_t *out, float *lse, const act_t *qkv, int64_t T, int NH,
                         bool causal, float scale) {
    typedef att_smem<HD> L;
    constexpr int LDH = L::LDH, LDO = HD + 4;
    extern __shared__ __align__(128) unsigned char att_smem_raw[];
    att_carver sm{att_smem_raw};
    bf16 *Qs = sm.take<bf16>(L::tile_h), *Ks = sm.take<bf16>(L::tile_h);
    bf16 *Vs = sm.take<bf16>(L::tile_h);
    float *Ss = sm.take<float>(L::tile_s);
    bf16 *Ps = sm.take<bf16>(L::tile_p);
    float *Os = sm.take<float>(L::tile_o);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
    const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * ATT_BQ;
    const int64_t C = (int64_t)NH * HD, ld = 3 * C;
    const act_t *q_g = qkv + b * T * ld + h * HD, *k_g = q_g + C, *v_g = q_g + 2 * C;

    att_load_tile<HD>(Qs, q_g + q0 * ld, ld, T - q0);
    for (int i = threadIdx.x; i < ATT_BQ * LDO; i += ATT_THREADS) Os[i] = 0.0f;
    float m[16], l[16];  // running max and sum of the warp's rows r0..r0+15
#pragma unroll
    for (int r = 0; r < 16; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int64_t kv_end = causal ? min(T, q0 + ATT_BQ) : T;  // later keys: masked for all rows
    for (int64_t kv0 = 0; kv0 < kv_end; kv0 += ATT_BK) {
        __syncthreads();  // every warp is done with the previous K, V (and Q, O are written)
        att_load_tile<HD>(Ks, k_g + kv0 * ld, ld, T - kv0);
        att_load_tile<HD>(Vs, v_g + kv0 * ld, ld, T - kv0);
        __syncthreads();
        // S strip [16, 64] = Q strip [16, HD] K^T
        att_strip_mma<ATT_BK, HD, true>(Ss + r0 * ATT_LDS, ATT_LDS, Qs + r0 * LDH, LDH, Ks, LDH);
        __syncwarp();
        // online softmax, row by row; lane takes columns lane and lane + 32
#pragma unroll
        for (int r = 0; r < 16; r++) {
            const int64_t tq = q0 + r0 + r;
            float s[ATT_BK / 32], mt = -INFINITY;
#pragma unroll
            for (int j = 0; j < ATT_BK / 32; j++) {
                int c = lane + 32 * j;
                int64_t tk = kv0 + c;
                bool visible = tk < T && (!causal || tk <= tq);
                s[j] = visible ? Ss[(r0 + r) * ATT_LDS + c] * scale : -INFINITY;
                mt = fmaxf(mt, s[j]);
            }
            mt = warp_reduce<cuda_max_op>(mt);
            float m_new = fmaxf(m[r], mt);
            float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: P = 0
            float alpha = expf(m[r] - m_use), psum = 0.0f;
#pragma unroll
            for (int j = 0; j < ATT_BK / 32; j++) {
                float p = expf(s[j] - m_use);  // exp(-inf) = 0 for masked keys
                Ps[(r0 + r) * ATT_LDP + lane + 32 * j] = cuda_st<bf16>(p);
                psum += p;
            }
            psum = warp_reduce<cuda_sum_op>(psum);
            m[r] = m_new;
            l[r] = alpha * l[r] + psum;
            for (int c = lane; c < HD; c += 32) Os[(r0 + r) * LDO + c] *= alpha;
        }
        __syncwarp();  // P and the rescaled O strip are written before the fragments read them
        // O strip [16, HD] += P strip [16, 64] V [64, HD]
#pragma unroll
        for (int n = 0; n < HD / 16; n++) {
            frag_acc acc;
            wmma::load_matrix_sync(acc, Os + r0 * LDO + n * 16, LDO, wmma::mem_row_major);
#pragma unroll
            for (int k = 0; k < ATT_BK / 16; k++) {
                frag_a fa;
                frag_b fb;
                wmma::load_matrix_sync(fa, Ps + r0 * ATT_LDP + k * 16, ATT_LDP);
                wmma::load_matrix_sync(fb, Vs + (k * 16) * LDH + n * 16, LDH);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(Os + r0 * LDO + n * 16, acc, LDO, wmma::mem_row_major);
        }
    }
    __syncwarp();  // the O strip's fragments are stored before the lanes read them
    act_t *out_g = out + b * T * C + h * HD;
#pragma unroll
    for (int r = 0; r < 16; r++) {
        const int64_t tq = q0 + r0 + r;
        if (tq >= T) continue;  // the same for the whole warp
        float inv = 1.0f / l[r];
        for (int c = lane; c < HD; c += 32)
            out_g[tq * C + c] = cuda_st<act_t>(Os[(r0 + r) * LDO + c] * inv);
        if (lane == 0) lse[(b * NH + h) * T + tq] = m[r] + logf(l[r]);
    }
}

// ---- backward ----------------------------------------------------------------------------------
// D[b,h,t] = dout[b,t,h*hd:(h+1)*hd] . out[b,t,h*hd:(h+1)*hd], fp32. One thread per (b,t,h),
// i = (b*T + t)*NH + h, whose hd values start at i*hd in both [B,T,C] tensors.
template <typename act_t>
__global__ static void attention_d_kernel(float *D, const act_t *dout, const act_t *out,
                                          int64_t B, int64_t T, int NH, int hd) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < B * T * NH;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t bt = i / NH, h = i % NH, b = bt / T, t = bt % T;
        const act_t *dy = dout + i * hd, *y = out + i * hd;
        float s = 0.0f;
        for (int c = 0; c < hd; c++) s += cuda_ld(dy[c]) * cuda_ld(y[c]);
        D[(b * NH + h) * T + t] = s;
    }
}

// Per (b, h), for the visible pairs (query i, key j), P_ij = exp(scale q_i.k_j - lse_i):
//   dP_ij = dout_i . v_j;  dS_ij = P_ij (dP_ij - D_i)
//   dv_j += sum_i P_ij dout_i;  dk_j += scale sum_i dS_ij q_i;  dq_i += scale sum_j dS_ij k_j

// dK, dV. Grid (ceil(T/64), NH, B): one CTA per (b, h, tile of 64 key rows kv0..kv0+63),
// warp w owning key rows 16w..16w+15. Loop over query tiles q0 (causal: from the tile holding
// query kv0, as earlier queries see none of these keys):
//   S^T [64 keys, 64 queries] = K Q^T;  dP^T = V dout^T          (tensor cores, to smem fp32)
//   P^T, dS^T elementwise (masked: 0), rounded to bf16
//   dV strip [16, HD] += P^T strip dout;  dK strip += dS^T strip Q   (register accumulators)
// then dv, dk (times scale) are added into dqkv.
template <int HD, typename act_t>
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_bwd_dkv_kernel(act_t *dqkv, const act_t *dout, const act_t *qkv, const float *lse,
                             const float *D, int64_t T, int NH, bool causal, float scale) {
    typedef att_smem<HD> L;
    constexpr int LDH = L::LDH;
    extern __shared__ __align__(128) unsigned char att_smem_raw[];
    att_carver sm{att_smem_raw};
    bf16 *Ks = sm.take<bf16>(L::tile_h), *Vs = sm.take<bf16>(L::tile_h);
    bf16 *Qs = sm.take<bf16>(L::tile_h), *dOs = sm.take<bf16>(L::tile_h);
    float *St = sm.take<float>(L::tile_s), *dPt = sm.take<float>(L::tile_s);
    bf16 *Pt = sm.take<bf16>(L::tile_p), *dSt = sm.take<bf16>(L::tile_p);
    float *lse_s = sm.take<float>(L::row), *D_s = sm.take<float>(L::row);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
    const int64_t b = blockIdx.z, h = blockIdx.y, kv0 = (int64_t)blockIdx.x * ATT_BK;
    const int64_t C = (int64_t)NH * HD, ld = 3 * C;
    const act_t *q_g = qkv + b * T * ld + h * HD, *k_g = q_g + C, *v_g = q_g + 2 * C;
    const act_t *dout_g = dout + b * T * C + h * HD;
    const float *lse_g = lse + (b * NH + h) * T, *D_g = D + (b * NH + h) * T;

    att_load_tile<HD>(Ks, k_g + kv0 * ld, ld, T - kv0);
    att_load_tile<HD>(Vs, v_g + kv0 * ld, ld, T - kv0);
    frag_acc dk[HD / 16], dv[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }
    for (int64_t q0 = causal ? kv0 / ATT_BQ * ATT_BQ : 0; q0 < T; q0 += ATT_BQ) {
        __syncthreads();  // every warp is done with the previous Q, dout, lse, D
        att_load_tile<HD>(Qs, q_g + q0 * ld, ld, T - q0);
        att_load_tile<HD>(dOs, dout_g + q0 * C, C, T - q0);
        for (int i = threadIdx.x; i < ATT_BQ; i += ATT_THREADS) {
            lse_s[i] = q0 + i < T ? lse_g[q0 + i] : 0.0f;
            D_s[i] = q0 + i < T ? D_g[q0 + i] : 0.0f;
        }
        __syncthreads();  // (also: K, V of the first iteration are loaded)
        // S^T strip [16 keys, 64 queries] = K strip Q^T;  dP^T strip = V strip dout^T
        att_strip_mma<ATT_BQ, HD, true>(St + r0 * ATT_LDS, ATT_LDS, Ks + r0 * LDH, LDH, Qs, LDH);
        att_strip_mma<ATT_BQ, HD, true>(dPt + r0 * ATT_LDS, ATT_LDS, Vs + r0 * LDH, LDH, dOs,
                                        LDH);
        __syncwarp();
        for (int i = lane; i < 16 * ATT_BQ; i += 32) {
            int r = r0 + i / ATT_BQ, c = i % ATT_BQ;  // key row r, query column c
            int64_t tk = kv0 + r, tq = q0 + c;
            bool visible = tk < T && tq < T && (!causal || tk <= tq);
            float p = visible ? expf(St[r * ATT_LDS + c] * scale - lse_s[c]) : 0.0f;
            Pt[r * ATT_LDP + c] = cuda_st<bf16>(p);
            dSt[r * ATT_LDP + c] = cuda_st<bf16>(p * (dPt[r * ATT_LDS + c] - D_s[c]));
        }
        __syncwarp();
        // dV strip += P^T strip [16, 64] dout [64, HD];  dK strip += dS^T strip Q [64, HD]
        att_strip_mma_acc<HD / 16, ATT_BQ>(dv, Pt + r0 * ATT_LDP, ATT_LDP, dOs, LDH);
        att_strip_mma_acc<HD / 16, ATT_BQ>(dk, dSt + r0 * ATT_LDP, ATT_LDP, Qs, LDH);
    }
    // The warp's own rows of St are free now: its staging area.
    act_t *dk_g = dqkv + b * T * ld + C + h * HD, *dv_g = dk_g + C;
    att_add_strip<HD / 16>(dv_g, ld, kv0 + r0, T, dv, 1.0f, St + r0 * ATT_LDS, ATT_LDS);
    att_add_strip<HD / 16>(dk_g, ld, kv0 + r0, T, dk, scale, St + r0 * ATT_LDS, ATT_LDS);
}

// dQ. Grid (ceil(T/64), NH, B): one CTA per (b, h, tile of 64 query rows q0..q0+63), warp w
// owning query rows 16w..16w+15. Loop over key tiles kv0 (causal: kv0 <= q0 + 63):
//   S [64 queries, 64 keys] = Q K^T;  dP = dout V^T                 (tensor cores, to smem fp32)
//   dS elementwise (masked: 0), rounded to bf16
//   dQ strip [16, HD] += dS strip K [64, HD]                         (register accumulators)
// then dq (times scale) is added into dqkv.
template <int HD, typename act_t>
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_bwd_dq_kernel(act_t *dqkv, const act_t *dout, const act_t *qkv, const float *lse,
                            const float *D, int64_t T, int NH, bool causal, float scale) {
    typedef att_smem<HD> L;
    constexpr int LDH = L::LDH;
    extern __shared__ __align__(128) unsigned char att_smem_raw[];
    att_carver sm{att_smem_raw};
    bf16 *Qs = sm.take<bf16>(L::tile_h), *dOs = sm.take<bf16>(L::tile_h);
    bf16 *Ks = sm.take<bf16>(L::tile_h), *Vs = sm.take<bf16>(L::tile_h);
    float *Ss = sm.take<float>(L::tile_s), *dPs = sm.take<float>(L::tile_s);
    bf16 *dSs = sm.take<bf16>(L::tile_p);
    float *lse_s = sm.take<float>(L::row), *D_s = sm.take<float>(L::row);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
    const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * ATT_BQ;
    const int64_t C = (int64_t)NH * HD, ld = 3 * C;
    const act_t *q_g = qkv + b * T * ld + h * HD, *k_g = q_g + C, *v_g = q_g + 2 * C;
    const act_t *dout_g = dout + b * T * C + h * HD;
    const float *lse_g = lse + (b * NH + h) * T, *D_g = D + (b * NH + h) * T;

    att_load_tile<HD>(Qs, q_g + q0 * ld, ld, T - q0);
    att_load_tile<HD>(dOs, dout_g + q0 * C, C, T - q0);
    for (int i = threadIdx.x; i < ATT_BQ; i += ATT_THREADS) {
        lse_s[i] = q0 + i < T ? lse_g[q0 + i] : 0.0f;
        D_s[i] = q0 + i < T ? D_g[q0 + i] : 0.0f;
    }
    frag_acc dq[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(dq[n], 0.0f);
    const int64_t kv_end = causal ? min(T, q0 + ATT_BQ) : T;
    for (int64_t kv0 = 0; kv0 < kv_end; kv0 += ATT_BK) {
        __syncthreads();  // every warp is done with the previous K, V (and Q, dout are loaded)
        att_load_tile<HD>(Ks, k_g + kv0 * ld, ld, T - kv0);
        att_load_tile<HD>(Vs, v_g + kv0 * ld, ld, T - kv0);
        __syncthreads();
        // S strip [16 queries, 64 keys] = Q strip K^T;  dP strip = dout strip V^T
        att_strip_mma<ATT_BK, HD, true>(Ss + r0 * ATT_LDS, ATT_LDS, Qs + r0 * LDH, LDH, Ks, LDH);
        att_strip_mma<ATT_BK, HD, true>(dPs + r0 * ATT_LDS, ATT_LDS, dOs + r0 * LDH, LDH, Vs,
                                        LDH);
        __syncwarp();
        for (int i = lane; i < 16 * ATT_BK; i += 32) {
            int r = r0 + i / ATT_BK, c = i % ATT_BK;  // query row r, key column c
            int64_t tq = q0 + r, tk = kv0 + c;
            bool visible = tq < T && tk < T && (!causal || tk <= tq);
            float p = visible ? expf(Ss[r * ATT_LDS + c] * scale - lse_s[r]) : 0.0f;
            dSs[r * ATT_LDP + c] = cuda_st<bf16>(p * (dPs[r * ATT_LDS + c] - D_s[r]));
        }
        __syncwarp();
        // dQ strip += dS strip [16, 64] K [64, HD]
        att_strip_mma_acc<HD / 16, ATT_BK>(dq, dSs + r0 * ATT_LDP, ATT_LDP, Ks, LDH);
    }
    act_t *dq_g = dqkv + b * T * ld + h * HD;
    att_add_strip<HD / 16>(dq_g, ld, q0 + r0, T, dq, scale, Ss + r0 * ATT_LDS, ATT_LDS);
}

// ---- launchers ---------------------------------------------------------------------------------

static cudaStream_t stream(void) { return pf_cuda_ctx()->stream; }

// The head dims att_dispatch_hd instantiates (the backend table publishes them, so a model
// with another one is refused when it is built).
extern "C" const int cuda_attention_head_dims[] = {16, 32, 64, 96, 128, 0};

// Calls f(std::integral_constant<int, hd>{}) for a supported head dim; refuses any other.
template <typename F>
static void att_dispatch_hd(int64_t hd, F &&f) {
    switch (hd) {
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 96: f(std::integral_constant<int, 96>{}); break;  // ViT-S/16 (768 / 8 heads)
    case 128: f(std::integral_constant<int, 128>{}); break;
    default:
        PF_FATAL("attention: head dim %lld (n_embd / n_head) is not supported by the CUDA "
                 "kernels; supported head dims: 16, 32, 64, 96, 128",
                 (long long)hd);
    }
}

// Grid of one CTA per (b, h, tile of 64 rows); opts the kernel into `smem` bytes.
template <typename K>
static dim3 att_grid(K kernel, size_t smem, const pf_attention_shape &d) {
    PF_ASSERT(d.NH <= 65535 && d.B <= 65535);  // gridDim.y, gridDim.z limits
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    return dim3((unsigned)((d.T + 63) / 64), (unsigned)d.NH, (unsigned)d.B);
}

template <int HD, typename act_t>
static void launch_attention_fwd(act_t *out, float *lse, const act_t *qkv,
                                 const pf_attention_shape &d, bool causal) {
    auto kernel = attention_fwd_kernel<HD, act_t>;
    size_t smem = att_smem<HD>::fwd;
    dim3 grid = att_grid(kernel, smem, d);
    kernel<<<grid, ATT_THREADS, smem, stream()>>>(out, lse, qkv, d.T, (int)d.NH, causal,
                                                  1.0f / sqrtf((float)HD));
    CUDA_CHECK_LAUNCH();
}

template <typename act_t>
static void launch_attention_d(float *D, const act_t *dout, const act_t *out,
                               const pf_attention_shape &d) {
    attention_d_kernel<act_t><<<cuda_blocks(d.B * d.T * d.NH), CUDA_THREADS, 0, stream()>>>(
        D, dout, out, d.B, d.T, (int)d.NH, (int)d.hd);
    CUDA_CHECK_LAUNCH();
}

template <int HD, typename act_t>
static void launch_attention_bwd_dkv(act_t *dqkv, const act_t *dout, const act_t *qkv,
                                     const float *lse, const float *D,
                                     const pf_attention_shape &d, bool causal) {
    auto kernel = attention_bwd_dkv_kernel<HD, act_t>;
    size_t smem = att_smem<HD>::dkv;
    dim3 grid = att_grid(kernel, smem, d);
    kernel<<<grid, ATT_THREADS, smem, stream()>>>(dqkv, dout, qkv, lse, D, d.T, (int)d.NH,
                                                  causal, 1.0f / sqrtf((float)HD));
    CUDA_CHECK_LAUNCH();
}

template <int HD, typename act_t>
static void launch_attention_bwd_dq(act_t *dqkv, const act_t *dout, const act_t *qkv,
                                    const float *lse, const float *D,
                                    const pf_attention_shape &d, bool causal) {
    auto kernel = attention_bwd_dq_kernel<HD, act_t>;
    size_t smem = att_smem<HD>::dq;
    dim3 grid = att_grid(kernel, smem, d);
    kernel<<<grid, ATT_THREADS, smem, stream()>>>(dqkv, dout, qkv, lse, D, d.T, (int)d.NH,
                                                  causal, 1.0f / sqrtf((float)HD));
    CUDA_CHECK_LAUNCH();
}

// ---- entry points ------------------------------------------------------------------------------

// out[B,T,C] = softmax(q k^T / sqrt(hd)) v per head;  lse[B,NH,T] (fp32) saved.
void cuda_attention_fwd(pf_tensor out, pf_tensor lse, pf_tensor qkv, int n_head, bool causal) {
    pf_dtype dt = qkv.dtype;
    CUDA_ACT(qkv, dt);
    CUDA_ACT(out, dt);
    CUDA_F32(lse);
    pf_attention_shape d = pf_shape_attention(qkv, out, lse, n_head);
    att_dispatch_hd(d.hd, [&](auto hdc) {
        constexpr int HD = decltype(hdc)::value;
        if (!d.B || !d.T) return;
        cuda_dispatch(dt, [&](auto tag) {
            using act_t = decltype(tag);
            launch_attention_fwd<HD, act_t>((act_t *)out.data, cuda_f(lse),
                                            (const act_t *)qkv.data, d, causal);
        });
    });
}

// dqkv += the gradient of out through attention (see the kernels), recomputing P from
// q, k and lse; D = rowsum(dout * out) goes to scratch first.
void cuda_attention_bwd(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                        pf_tensor lse, int n_head, bool causal) {
    pf_dtype dt = qkv.dtype;
    CUDA_ACT(dqkv, dt);
    CUDA_ACT(dout, dt);
    CUDA_ACT(qkv, dt);
    CUDA_ACT(out, dt);
    CUDA_F32(lse);
    pf_attention_shape d = pf_shape_attention(qkv, out, lse, n_head);
    PF_ASSERT(pf_numel(dqkv) == pf_numel(qkv) && pf_numel(dout) == pf_numel(out));
    att_dispatch_hd(d.hd, [&](auto hdc) {
        constexpr int HD = decltype(hdc)::value;
        if (!d.B || !d.T) return;
        float *D = (float *)cuda_scratch(sizeof(float) * (size_t)(d.B * d.NH * d.T));
        cuda_dispatch(dt, [&](auto tag) {
            using act_t = decltype(tag);
            const act_t *dy = (const act_t *)dout.data, *x = (const act_t *)qkv.data;
            act_t *dx = (act_t *)dqkv.data;
            launch_attention_d<act_t>(D, dy, (const act_t *)out.data, d);
            launch_attention_bwd_dkv<HD, act_t>(dx, dy, x, cuda_f(lse), D, d, causal);
            launch_attention_bwd_dq<HD, act_t>(dx, dy, x, cuda_f(lse), D, d, causal);
        });
    });
}
