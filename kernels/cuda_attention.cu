// cuda_attention.cu: flash attention (Dao et al.), forward and a deterministic backward.
// The [B,NH,T,T] probabilities never reach global memory: the forward keeps a running
// (online) softmax per query row over key tiles and saves only each row's log-sum-exp;
// the backward recomputes P from q, k and lse. No float atomics: dK, dV are summed by the
// CTA that owns a key tile (looping over query tiles), dQ by the CTA that owns a query tile
// (looping over key tiles), each element in one fixed order.
//
// Layout (backend.h): qkv [B,T,3C] = [q | k | v], head h at columns h*HD of each part (row
// stride 3C); out, dout [B,T,C] (row stride C); lse [B,NH,T] fp32; dqkv like qkv (added into).
// HD, C and 3C are multiples of 8 elements, so every 8-element chunk of a head's row is
// 16-byte aligned when the tensor's base is: tiles then move in 16-byte loads and stores
// (`vec`, checked per call by the launchers); an unaligned base (a view at an odd offset)
// takes element accesses, same results.
//
// Matrix products run on tensor cores through nvcuda::wmma: 16x16x16 bf16 fragments with
// fp32 accumulators, loaded from and stored to shared memory only. Tiles of q, k, v, dout are
// staged in shared memory as bf16 whatever the act dtype (fp32 inputs are rounded there);
// scores, softmax statistics and every sum are fp32. The next tile's global loads are issued
// into registers before the current tile's math (att_tile_loader) and stored to shared
// memory after it, so their latency overlaps the tensor-core work.
//
// Tiles: a CTA owns 64 rows (query rows in the forward and dQ kernels, key rows in the dK/dV
// kernel). In the forward and dQ kernels, ATT_WARPS = 4 warps (128 threads): warp w owns rows
// 16w..16w+15 of every per-row buffer (scores, probabilities, the output accumulator), so
// those buffers need only __syncwarp(). The dK/dV kernel has ATT_DKV_WARPS = 8 warps: warp w
// computes one 16-row strip of S^T (w < 4) or dP^T (w >= 4) and accumulates the same strip of
// dV (w < 4) or dK (w >= 4), so each thread keeps HD/16 accumulator fragments, not 2 HD/16
// (at HD = 128 the two sets made ptxas spill). The shared k/v (or q/dout) tiles that all
// warps read are guarded by __syncthreads(). Rows past T are staged as zeros and masked;
// nothing past T is written.
// Head dims: 16, 32, 64, 96, 128 (templates). The backend table publishes those whose three
// kernels fit in the device's shared memory per block (cuda_attention_fit_device, run when
// the context is created), so a model with another one is refused when it is built.
#include <mma.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>

#include "cuda_ops.h"

namespace wmma = nvcuda::wmma;

#define ATT_WARPS 4  // forward and dQ kernels
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_DKV_WARPS 8  // dK/dV kernel: 4 on S^T then dV, 4 on dP^T then dK
#define ATT_DKV_THREADS (ATT_DKV_WARPS * 32)
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
// (sm_80) and 227 KB (sm_90) a block may opt into, but not the 99 KB (101376 bytes) of
// compute capability 8.6 / 8.9 (A10, A40, L4, RTX 30/40), where HD = 96's dK/dV kernel
// (107008) does not fit either: cuda_attention_fit_device publishes what the device runs.
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

// 8 consecutive elements of one row, as one 16-byte (bf16) or two 16-byte (fp32) accesses.
template <typename T> struct alignas(16) att_pack8 {
    T v[8];
};
struct alignas(16) att_f4 {  // 4 fp32 of a shared-memory row: one 16-byte access
    float v[4];
};
__device__ __forceinline__ static bf16 att_bf16(float v) { return cuda_st<bf16>(v); }
__device__ __forceinline__ static bf16 att_bf16(bf16 v) { return v; }

// g[0..7] as bf16. vec: g is 16-byte aligned (vector loads); else element loads.
template <typename act_t>
__device__ __forceinline__ static att_pack8<bf16> att_ld8(const act_t *g, bool vec) {
    att_pack8<bf16> o;
    if (vec) {
        att_pack8<act_t> x = *reinterpret_cast<const att_pack8<act_t> *>(g);
#pragma unroll
        for (int e = 0; e < 8; e++) o.v[e] = att_bf16(x.v[e]);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) o.v[e] = att_bf16(g[e]);
    }
    return o;
}

// g[e] = v[e] (add: g[e] += v[e]) for e < 8, rounded to act_t; vec as for att_ld8.
template <typename act_t>
__device__ __forceinline__ static void att_st8(act_t *g, const float (&v)[8], bool add,
                                               bool vec) {
    att_pack8<act_t> x;
    if (add && vec) {
        x = *reinterpret_cast<const att_pack8<act_t> *>(g);
    } else if (add) {
#pragma unroll
        for (int e = 0; e < 8; e++) x.v[e] = g[e];
    }
#pragma unroll
    for (int e = 0; e < 8; e++) x.v[e] = cuda_st<act_t>((add ? cuda_ld(x.v[e]) : 0.0f) + v[e]);
    if (vec) {
        *reinterpret_cast<att_pack8<act_t> *>(g) = x;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) g[e] = x.v[e];
    }
}

// A [64][HD] tile of global memory (row stride ld; rows r >= nrows, past T, read as zeros)
// staged into shared memory as bf16 [64][HD + 8], by all NT threads of the CTA in two steps:
// load() reads the thread's chunks (chunk i = 8 consecutive elements: row i / (HD/8), column
// (i % (HD/8)) * 8; thread t takes chunks t, t + NT, ...) into registers, store() writes them.
// So a caller issues the next tile's loads before the current tile's math; it syncs around
// store() (no warp may still read the old tile; none may read the new one before it is all
// stored).
template <int HD, int NT, typename act_t> struct att_tile_loader {
    static_assert(HD % 8 == 0, "8-element chunks");
    static constexpr int CPR = HD / 8, PER = (64 * CPR + NT - 1) / NT;
    att_pack8<bf16> reg[PER];

    __device__ __forceinline__ void load(const act_t *src, int64_t ld, int64_t nrows,
                                         bool vec) {
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int i = threadIdx.x + j * NT, r = i / CPR, c = i % CPR * 8;
            if (i < 64 * CPR && r < nrows) {
                reg[j] = att_ld8(src + r * ld + c, vec);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) reg[j].v[e] = cuda_st<bf16>(0.0f);
            }
        }
    }
    __device__ __forceinline__ void store(bf16 *dst) const {
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int i = threadIdx.x + j * NT, r = i / CPR, c = i % CPR * 8;
            if (i < 64 * CPR) *reinterpret_cast<att_pack8<bf16> *>(dst + r * (HD + 8) + c) = reg[j];
        }
    }
};

// dst[m][n] = sum_k A[m][k] B[k][n] over one 16-row strip of a tile: for each 16-column
// block n of the N columns, acc = sum over K/16 steps of mma. A is row-major at a (row
// stride lda); B is row-major at b (ldb) or, when BT, B^T row-major (so B col-major) at b.
// The result is stored row-major at dst (row stride ldd, fp32). One warp. UNROLL: how far
// the n loop is unrolled. The dK/dV kernel keeps it rolled (A's fragments are then reloaded
// per column block), so that ptxas does not hoist all N/16 * K/16 B fragments next to its
// accumulators and prefetch registers (unrolled, it spilled at HD = 128, fp32, sm_80); the
// forward and dQ kernels unroll it (rolled, the forward spilled at HD = 16 and 96).
template <int N, int K, bool BT, int UNROLL = N / 16>
__device__ static void att_strip_mma(float *dst, int ldd, const bf16 *a, int lda, const bf16 *b,
                                     int ldb) {
#pragma unroll UNROLL
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
// The k loop stays rolled: unrolled, ptxas hoisted all K/16 * NF B fragments next to the NF
// accumulators and spilled at HD = 128.
template <int NF, int K>
__device__ static void att_strip_mma_acc(frag_acc (&acc)[NF], const bf16 *a, int lda,
                                         const bf16 *b, int ldb) {
#pragma unroll 1
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
// the warp's fp32 staging area stage [16][ldst]; lane takes row lane / 2, columns
// (lane % 2) * 8 .. + 7 of each fragment. One warp; each element has one writer.
template <int NF, typename act_t>
__device__ static void att_add_strip(act_t *dst, int64_t ld, int64_t row0, int64_t T,
                                     frag_acc (&acc)[NF], float s, float *stage, int ldst,
                                     bool vec) {
    const int lane = threadIdx.x % 32, r = lane / 2, c = lane % 2 * 8;
#pragma unroll
    for (int n = 0; n < NF; n++) {
        wmma::store_matrix_sync(stage, acc[n], ldst, wmma::mem_row_major);
        __syncwarp();
        if (row0 + r < T) {
            float v[8];
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = s * stage[r * ldst + c + e];
            att_st8(dst + (row0 + r) * ld + n * 16 + c, v, true, vec);
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
// then out[r] = O[r] / l, lse[r] = m + log l. O lives in shared memory, fp32.
// Softmax statistics: two lanes per row, all 16 rows of the warp's strip at once. Lane owns
// strip row lane % 16 and its columns (lane / 16) * 32 .. + 31 of S, P and, for the rescale
// and the output, (lane / 16) * HD/2 .. + HD/2 - 1 of O; it keeps m, l of its row in
// registers. Per key tile that is 32 exps, one max and one sum over its 32 columns, and one
// shuffle each to combine the two halves (both lanes get the same bits: max and a + b are
// commutative). Each quarter-warp of a 16-byte access touches 8 rows at the same column, row
// strides 4 banks apart: no bank conflicts.
template <int HD, typename act_t>
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_fwd_kernel(act_t *out, float *lse, const act_t *qkv, int64_t T, int NH,
                         bool causal, float scale, bool vec) {
    typedef att_smem<HD> L;
    constexpr int LDH = L::LDH, LDO = HD + 4, HALF = ATT_BK / 2, OH = HD / 2;
    static_assert(ATT_BK == 64 && OH % 8 == 0, "a lane: 32 score columns, 8-element O chunks");
    extern __shared__ __align__(128) unsigned char att_smem_raw[];
    att_carver sm{att_smem_raw};
    bf16 *Qs = sm.take<bf16>(L::tile_h), *Ks = sm.take<bf16>(L::tile_h);
    bf16 *Vs = sm.take<bf16>(L::tile_h);
    float *Ss = sm.take<float>(L::tile_s);
    bf16 *Ps = sm.take<bf16>(L::tile_p);
    float *Os = sm.take<float>(L::tile_o);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
    const int sr = r0 + lane % 16, half = lane / 16;  // this lane's row of the tile, its half
    const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * ATT_BQ;
    const int64_t tq = q0 + sr;
    const int64_t C = (int64_t)NH * HD, ld = 3 * C;
    const act_t *q_g = qkv + b * T * ld + h * HD, *k_g = q_g + C, *v_g = q_g + 2 * C;

    att_tile_loader<HD, ATT_THREADS, act_t> kl, vl;
    kl.load(q_g + q0 * ld, ld, T - q0, vec);
    kl.store(Qs);
    kl.load(k_g, ld, T, vec);  // key tile 0
    vl.load(v_g, ld, T, vec);
    for (int i = threadIdx.x; i < ATT_BQ * LDO; i += ATT_THREADS) Os[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;  // running max and sum of row tq
    const int64_t kv_end = causal ? min(T, q0 + ATT_BQ) : T;  // later keys: masked for all rows
    for (int64_t kv0 = 0; kv0 < kv_end; kv0 += ATT_BK) {
        __syncthreads();  // every warp is done with the previous K, V (and Q, O are written)
        kl.store(Ks);
        vl.store(Vs);
        __syncthreads();
        if (kv0 + ATT_BK < kv_end) {  // the next tile's loads, in flight during this one's math
            kl.load(k_g + (kv0 + ATT_BK) * ld, ld, T - kv0 - ATT_BK, vec);
            vl.load(v_g + (kv0 + ATT_BK) * ld, ld, T - kv0 - ATT_BK, vec);
        }
        // S strip [16, 64] = Q strip [16, HD] K^T
        att_strip_mma<ATT_BK, HD, true>(Ss + r0 * ATT_LDS, ATT_LDS, Qs + r0 * LDH, LDH, Ks, LDH);
        __syncwarp();
        // online softmax of row tq over this lane's 32 columns c0 .. c0 + 31
        const int c0 = half * HALF;
        float s[HALF], mt = -INFINITY;
#pragma unroll
        for (int j = 0; j < HALF / 4; j++) {
            att_f4 x = *reinterpret_cast<const att_f4 *>(Ss + sr * ATT_LDS + c0 + 4 * j);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int64_t tk = kv0 + c0 + 4 * j + e;
                bool visible = tk < T && (!causal || tk <= tq);
                s[4 * j + e] = visible ? x.v[e] * scale : -INFINITY;
                mt = fmaxf(mt, s[4 * j + e]);
            }
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 16));
        const float m_new = fmaxf(m, mt);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: P = 0
        const float alpha = expf(m - m_use);
        float psum = 0.0f;
#pragma unroll
        for (int j = 0; j < HALF / 8; j++) {
            att_pack8<bf16> p8;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float p = expf(s[8 * j + e] - m_use);  // exp(-inf) = 0 for masked keys
                p8.v[e] = cuda_st<bf16>(p);
                psum += p;
            }
            *reinterpret_cast<att_pack8<bf16> *>(Ps + sr * ATT_LDP + c0 + 8 * j) = p8;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 16);
        m = m_new;
        l = alpha * l + psum;
        float *orow = Os + sr * LDO + half * OH;
#pragma unroll
        for (int c = 0; c < OH; c += 4) {
            att_f4 *o4 = reinterpret_cast<att_f4 *>(orow + c), x = *o4;
#pragma unroll
            for (int e = 0; e < 4; e++) x.v[e] *= alpha;
            *o4 = x;
        }
        __syncwarp();  // P and the rescaled O strip are written before the fragments read them
        // O strip [16, HD] += P strip [16, 64] V [64, HD] (n rolled, as in att_strip_mma)
#pragma unroll 1
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
    if (tq < T) {
        const float inv = 1.0f / l;
        const float *orow = Os + sr * LDO + half * OH;
        act_t *dst = out + (b * T + tq) * C + h * HD + half * OH;
#pragma unroll
        for (int c = 0; c < OH; c += 8) {
            float v[8];
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = orow[c + e] * inv;
            att_st8(dst + c, v, false, vec);
        }
        if (half == 0) lse[(b * NH + h) * T + tq] = m + logf(l);
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

// dK, dV. Grid (ceil(T/64), NH, B), ATT_DKV_WARPS = 8 warps: one CTA per (b, h, tile of 64
// key rows kv0..kv0+63). Loop over query tiles q0 (causal: from the tile holding query kv0, as
// earlier queries see none of these keys), in three phases between __syncthreads:
//   1. warp w < 4: S^T strip [16 keys, 64 queries] = K strip Q^T  (key rows 16w..16w+15);
//      warp w >= 4: dP^T strip = V strip dout^T  (key rows 16(w-4)..)  (tensor cores, fp32)
//   2. all threads: P^T, dS^T [64, 64] elementwise (masked: 0), rounded to bf16; thread t
//      takes key row t % 64, query columns (t / 64) * 16 .. + 15 (16-byte accesses, a
//      quarter-warp on 8 rows at one column: no bank conflicts)
//   3. warp w < 4: dV strip [16, HD] += P^T strip [16, 64] dout [64, HD];
//      warp w >= 4: dK strip += dS^T strip Q                   (register accumulators)
// then dv, dk (times scale) are added into dqkv.
template <int HD, typename act_t>
__global__ static void __launch_bounds__(ATT_DKV_THREADS)
    attention_bwd_dkv_kernel(act_t *dqkv, const act_t *dout, const act_t *qkv, const float *lse,
                             const float *D, int64_t T, int NH, bool causal, float scale,
                             bool vec) {
    typedef att_smem<HD> L;
    constexpr int LDH = L::LDH, NT = ATT_DKV_THREADS, CG = 16;  // CG: columns per thread
    static_assert(ATT_DKV_WARPS == 8 && 64 * (ATT_BQ / CG) == NT, "phase 2: 64 rows x 4 groups");
    extern __shared__ __align__(128) unsigned char att_smem_raw[];
    att_carver sm{att_smem_raw};
    bf16 *Ks = sm.take<bf16>(L::tile_h), *Vs = sm.take<bf16>(L::tile_h);
    bf16 *Qs = sm.take<bf16>(L::tile_h), *dOs = sm.take<bf16>(L::tile_h);
    float *St = sm.take<float>(L::tile_s), *dPt = sm.take<float>(L::tile_s);
    bf16 *Pt = sm.take<bf16>(L::tile_p), *dSt = sm.take<bf16>(L::tile_p);
    float *lse_s = sm.take<float>(L::row), *D_s = sm.take<float>(L::row);

    const int warp = threadIdx.x / 32, r0 = warp % 4 * 16;
    const bool grad_v = warp < 4;  // this warp: S^T then dV, or dP^T then dK
    const int64_t b = blockIdx.z, h = blockIdx.y, kv0 = (int64_t)blockIdx.x * ATT_BK;
    const int64_t C = (int64_t)NH * HD, ld = 3 * C;
    const act_t *q_g = qkv + b * T * ld + h * HD, *k_g = q_g + C, *v_g = q_g + 2 * C;
    const act_t *dout_g = dout + b * T * C + h * HD;
    const float *lse_g = lse + (b * NH + h) * T, *D_g = D + (b * NH + h) * T;
    // The two roles branch on grad_v (warp-uniform) around each call rather than select its
    // operand pointers: with selected pointers ptxas lost the shared-memory offsets and
    // spilled (dK/dV at HD = 128, CUDA 13).

    att_tile_loader<HD, NT, act_t> ql, dol;
    ql.load(k_g + kv0 * ld, ld, T - kv0, vec);
    dol.load(v_g + kv0 * ld, ld, T - kv0, vec);
    ql.store(Ks);
    dol.store(Vs);
    const int64_t q_begin = causal ? kv0 / ATT_BQ * ATT_BQ : 0;
    ql.load(q_g + q_begin * ld, ld, T - q_begin, vec);  // query tile q_begin
    dol.load(dout_g + q_begin * C, C, T - q_begin, vec);
    frag_acc acc[HD / 16];  // the warp's strip of dV or dK
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
    for (int64_t q0 = q_begin; q0 < T; q0 += ATT_BQ) {
        __syncthreads();  // every warp is done with the previous Q, dout, lse, D
        ql.store(Qs);
        dol.store(dOs);
        for (int i = threadIdx.x; i < ATT_BQ; i += NT) {
            lse_s[i] = q0 + i < T ? lse_g[q0 + i] : 0.0f;
            D_s[i] = q0 + i < T ? D_g[q0 + i] : 0.0f;
        }
        __syncthreads();  // (also: K, V are stored)
        if (q0 + ATT_BQ < T) {  // the next tile's loads, in flight during this one's math
            ql.load(q_g + (q0 + ATT_BQ) * ld, ld, T - q0 - ATT_BQ, vec);
            dol.load(dout_g + (q0 + ATT_BQ) * C, C, T - q0 - ATT_BQ, vec);
        }
        // 1. S^T strip [16 keys, 64 queries] = K strip Q^T, or dP^T strip = V strip dout^T
        if (grad_v)
            att_strip_mma<ATT_BQ, HD, true, 1>(St + r0 * ATT_LDS, ATT_LDS, Ks + r0 * LDH, LDH,
                                               Qs, LDH);
        else
            att_strip_mma<ATT_BQ, HD, true, 1>(dPt + r0 * ATT_LDS, ATT_LDS, Vs + r0 * LDH, LDH,
                                               dOs, LDH);
        __syncthreads();
        // 2. P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - D) over key row r, columns c0..+15
        {
            const int r = threadIdx.x % 64, c0 = threadIdx.x / 64 * CG;
            const int64_t tk = kv0 + r;
            att_pack8<bf16> p8[CG / 8], ds8[CG / 8];
#pragma unroll
            for (int j = 0; j < CG / 4; j++) {
                att_f4 s4 = *reinterpret_cast<const att_f4 *>(St + r * ATT_LDS + c0 + 4 * j);
                att_f4 d4 = *reinterpret_cast<const att_f4 *>(dPt + r * ATT_LDS + c0 + 4 * j);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int c = c0 + 4 * j + e;  // query column
                    const int64_t tq = q0 + c;
                    bool visible = tk < T && tq < T && (!causal || tk <= tq);
                    float p = visible ? expf(s4.v[e] * scale - lse_s[c]) : 0.0f;
                    p8[j / 2].v[j % 2 * 4 + e] = cuda_st<bf16>(p);
                    ds8[j / 2].v[j % 2 * 4 + e] = cuda_st<bf16>(p * (d4.v[e] - D_s[c]));
                }
            }
#pragma unroll
            for (int j = 0; j < CG / 8; j++) {
                *reinterpret_cast<att_pack8<bf16> *>(Pt + r * ATT_LDP + c0 + 8 * j) = p8[j];
                *reinterpret_cast<att_pack8<bf16> *>(dSt + r * ATT_LDP + c0 + 8 * j) = ds8[j];
            }
        }
        __syncthreads();
        // 3. dV strip += P^T strip [16, 64] dout [64, HD], or dK strip += dS^T strip Q [64, HD]
        if (grad_v)
            att_strip_mma_acc<HD / 16, ATT_BQ>(acc, Pt + r0 * ATT_LDP, ATT_LDP, dOs, LDH);
        else
            att_strip_mma_acc<HD / 16, ATT_BQ>(acc, dSt + r0 * ATT_LDP, ATT_LDP, Qs, LDH);
    }
    // The warp's own phase-1 rows are free now: its staging area.
    act_t *dk_g = dqkv + b * T * ld + C + h * HD, *dv_g = dk_g + C;
    att_add_strip<HD / 16>(grad_v ? dv_g : dk_g, ld, kv0 + r0, T, acc, grad_v ? 1.0f : scale,
                           (grad_v ? St : dPt) + r0 * ATT_LDS, ATT_LDS, vec);
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
                            const float *D, int64_t T, int NH, bool causal, float scale,
                            bool vec) {
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

    att_tile_loader<HD, ATT_THREADS, act_t> kl, vl;
    kl.load(q_g + q0 * ld, ld, T - q0, vec);
    vl.load(dout_g + q0 * C, C, T - q0, vec);
    kl.store(Qs);
    vl.store(dOs);
    kl.load(k_g, ld, T, vec);  // key tile 0
    vl.load(v_g, ld, T, vec);
    for (int i = threadIdx.x; i < ATT_BQ; i += ATT_THREADS) {
        lse_s[i] = q0 + i < T ? lse_g[q0 + i] : 0.0f;
        D_s[i] = q0 + i < T ? D_g[q0 + i] : 0.0f;
    }
    frag_acc dq[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(dq[n], 0.0f);
    const int64_t kv_end = causal ? min(T, q0 + ATT_BQ) : T;
    for (int64_t kv0 = 0; kv0 < kv_end; kv0 += ATT_BK) {
        __syncthreads();  // every warp is done with the previous K, V (and Q, dout are stored)
        kl.store(Ks);
        vl.store(Vs);
        __syncthreads();
        if (kv0 + ATT_BK < kv_end) {  // the next tile's loads, in flight during this one's math
            kl.load(k_g + (kv0 + ATT_BK) * ld, ld, T - kv0 - ATT_BK, vec);
            vl.load(v_g + (kv0 + ATT_BK) * ld, ld, T - kv0 - ATT_BK, vec);
        }
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
    att_add_strip<HD / 16>(dq_g, ld, q0 + r0, T, dq, scale, Ss + r0 * ATT_LDS, ATT_LDS, vec);
}

// ---- launchers ---------------------------------------------------------------------------------

static cudaStream_t stream(void) { return pf_cuda_ctx()->stream; }

// Calls f(std::integral_constant<int, hd>{}) and returns true for a head dim the kernels are
// instantiated for (those of att_all_head_dims); false for any other.
template <typename F>
static bool att_with_hd(int64_t hd, F &&f) {
    switch (hd) {
    case 16: f(std::integral_constant<int, 16>{}); return true;
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 96: f(std::integral_constant<int, 96>{}); return true;  // ViT-S/16 (768 / 8 heads)
    case 128: f(std::integral_constant<int, 128>{}); return true;
    default: return false;
    }
}
static const int att_all_head_dims[] = {16, 32, 64, 96, 128, 0};

// The head dims this device runs, 0-terminated: what the backend table publishes
// (attention_head_dims). All of att_all_head_dims until the context is created, then those
// that fit the device (cuda_attention_fit_device).
int cuda_attention_head_dims[] = {16, 32, 64, 96, 128, 0};  // extern "C": cuda_ops.h
static_assert(sizeof cuda_attention_head_dims == sizeof att_all_head_dims, "one list");

// Dynamic shared memory per block of head dim hd's largest kernel (its name to *kernel);
// 0 for a head dim without kernels.
extern "C" size_t cuda_attention_smem_bytes(int hd, const char **kernel) {
    size_t need = 0;
    const char *name = "";
    att_with_hd(hd, [&](auto hdc) {
        typedef att_smem<decltype(hdc)::value> L;
        need = L::fwd, name = "forward";
        if (L::dkv > need) need = L::dkv, name = "dK/dV";
        if (L::dq > need) need = L::dq, name = "dQ";
    });
    if (kernel) *kernel = name;
    return need;
}

// dims[] = the head dims whose kernels fit in `limit` bytes of shared memory per block,
// 0-terminated (room for 6); returns how many.
extern "C" int cuda_attention_fit_head_dims(int *dims, size_t limit) {
    int n = 0;
    for (const int *hd = att_all_head_dims; *hd; hd++)
        if (cuda_attention_smem_bytes(*hd, NULL) <= limit) dims[n++] = *hd;
    dims[n] = 0;
    return n;
}

// Why head dim hd does not run on `card`, whose blocks may opt into `limit` bytes of shared
// memory, written to msg (naming the bytes needed, the limit, the card and the head dims
// that do run); false, msg untouched, when it runs or has no kernels. The one wording of
// this refusal: the context's note and the launch-time check both print it.
extern "C" bool cuda_attention_smem_refusal(char *msg, size_t n, int hd, size_t limit,
                                            const char *card) {
    const char *kernel;
    size_t need = cuda_attention_smem_bytes(hd, &kernel);
    if (!need || need <= limit) return false;
    int dims[sizeof att_all_head_dims / sizeof *att_all_head_dims];
    char list[64] = "";
    for (int i = 0, k = cuda_attention_fit_head_dims(dims, limit); i < k; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "",
                 dims[i]);
    snprintf(msg, n,
             "attention head dim %d does not run on %s: its %s kernel needs %zu bytes of shared "
             "memory per block and the device allows %zu (cudaDevAttrMaxSharedMemoryPerBlockOptin); "
             "head dims that run here: %s",
             hd, card, kernel, need, limit, list[0] ? list : "none");
    return true;
}

// At context creation: publishes the head dims that fit `limit` bytes per block, and says on
// stderr why any other is missing (a model with it is then refused when it is built, with
// the list of those that run).
void cuda_attention_fit_device(size_t limit, const char *card) {
    cuda_attention_fit_head_dims(cuda_attention_head_dims, limit);
    char msg[512];
    for (const int *hd = att_all_head_dims; *hd; hd++)
        if (cuda_attention_smem_refusal(msg, sizeof msg, *hd, limit, card))
            fprintf(stderr, "pixelfly: cuda: %s\n", msg);
}

// Calls f(std::integral_constant<int, hd>{}) for a head dim this device runs; refuses any
// other (a model build refuses it first; this catches a direct call).
template <typename F>
static void att_dispatch_hd(int64_t hd, F &&f) {
    const int h = hd > 0 && hd <= 4096 ? (int)hd : 0;
    if (!cuda_attention_smem_bytes(h, NULL))
        PF_FATAL("attention: head dim %lld (n_embd / n_head) is not supported by the CUDA "
                 "kernels; supported head dims: 16, 32, 64, 96, 128",
                 (long long)hd);
    const pf_cuda_context *ctx = pf_cuda_ctx();
    char msg[512];
    if (cuda_attention_smem_refusal(msg, sizeof msg, h, ctx->smem_optin, ctx->device.name))
        PF_FATAL("%s", msg);
    att_with_hd(hd, f);
}

// 16-byte accesses to a tensor are safe when its base is 16-byte aligned (every chunk offset
// is a multiple of 8 elements, see the layout note at the top).
static bool att_aligned(const void *p) { return (uintptr_t)p % 16 == 0; }

// Grid of one CTA per (b, h, tile of 64 rows); opts the kernel into `smem` bytes (within the
// device's limit: att_dispatch_hd checked).
template <typename K>
static dim3 att_grid(K kernel, size_t smem, const pf_attention_shape &d) {
    PF_ASSERT(d.NH <= 65535 && d.B <= 65535);  // gridDim.y, gridDim.z limits
    PF_ASSERT(smem <= pf_cuda_ctx()->smem_optin);
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
    bool vec = att_aligned(out) && att_aligned(qkv);
    kernel<<<grid, ATT_THREADS, smem, stream()>>>(out, lse, qkv, d.T, (int)d.NH, causal,
                                                  1.0f / sqrtf((float)HD), vec);
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
                                     const pf_attention_shape &d, bool causal, bool vec) {
    auto kernel = attention_bwd_dkv_kernel<HD, act_t>;
    size_t smem = att_smem<HD>::dkv;
    dim3 grid = att_grid(kernel, smem, d);
    kernel<<<grid, ATT_DKV_THREADS, smem, stream()>>>(dqkv, dout, qkv, lse, D, d.T, (int)d.NH,
                                                      causal, 1.0f / sqrtf((float)HD), vec);
    CUDA_CHECK_LAUNCH();
}

template <int HD, typename act_t>
static void launch_attention_bwd_dq(act_t *dqkv, const act_t *dout, const act_t *qkv,
                                    const float *lse, const float *D,
                                    const pf_attention_shape &d, bool causal, bool vec) {
    auto kernel = attention_bwd_dq_kernel<HD, act_t>;
    size_t smem = att_smem<HD>::dq;
    dim3 grid = att_grid(kernel, smem, d);
    kernel<<<grid, ATT_THREADS, smem, stream()>>>(dqkv, dout, qkv, lse, D, d.T, (int)d.NH,
                                                  causal, 1.0f / sqrtf((float)HD), vec);
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
            bool vec = att_aligned(dx) && att_aligned(dy) && att_aligned(x);
            launch_attention_d<act_t>(D, dy, (const act_t *)out.data, d);
            launch_attention_bwd_dkv<HD, act_t>(dx, dy, x, cuda_f(lse), D, d, causal, vec);
            launch_attention_bwd_dq<HD, act_t>(dx, dy, x, cuda_f(lse), D, d, causal, vec);
        });
    });
}
