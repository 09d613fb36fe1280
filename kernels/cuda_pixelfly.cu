// cuda_pixelfly.cu: the block-sparse layer y = x S^T + (x V^T) U^T + b (pattern.h: the
// Pixelfly flat butterfly, a butterfly factor or a random mask) on tensor cores. Super-row p,
// slot k, super-column q = col(p, k); S: [bs, nf+1, ob, ib].
//
//   forward  y[:, p-block]  = sum_k x[:, q-block] S[p][k]^T + xv U[p-block]^T + b   (1 kernel)
//   dX       dx[:, q-block] += sum_k dy[:, p'-block] S[p'][k] + dxv V[:, q-block],
//            p' = src(q, k): the super-row holding q at slot k (each slot is a
//            permutation, pattern.h)                                                   (1 kernel)
//   dS       dS[p][k] += dy[:, p-block]^T x[:, q-block], stored blocks only  (split-K + reduce)
//   xv = x V^T, dxv = dy U, dU += dy^T xv, dV += dxv^T x: cuBLAS (cuda_gemm); db: cuda_colsum_add
//
// Dtypes (cuda_ops.h): x, y, dy, dx, xv, dxv and the weights S, U, V, b are act tensors of one
// dtype T (fp32 or bf16); dS, dU, dV, db are fp32 and accumulated into. Every operand is
// rounded to bf16 as it is staged into shared memory, products run on tensor cores with fp32
// accumulators, results are rounded to T once, in the epilogue (dx: T(dx + acc)). So fp32 I/O
// computes with bf16 inputs too: held to the bf16 tolerance against the CPU.
//
// One GEMM skeleton serves the three kernels. A CTA owns a BM x BN output tile and walks K in
// steps of BK = 32; step t stages an A tile and a B tile whose global addresses and bounds
// come from kernels/pixelfly_tiles.h (the index arithmetic, replayed and checked on the CPU by
// tests/test_pixelfly_tiles.c; the mask's col / src tables are read from device copies, see
// mask_tables). Forward and dX: M = tokens (the wide dimension), N = the
// columns of one output super-block, K = the nf+1 gathered K-runs (ib or ob each, a step never
// spans two runs), then the low-rank K-run of r in the same accumulator; the CTAs that run
// side by side share their token tile, so its input rows are read from DRAM about once.
// dS: M = ob, N = ib, K = tokens, split into chunks whose partial sums go to scratch and are
// added in split order by a second kernel (no float atomics: bit-identical reruns).
//
// Tensor cores through nvcuda::wmma (bf16 16x16x16 fragments loaded from shared memory with
// row_major / col_major layouts, fp32 accumulators), not hand-written mma.sync PTX: wmma's
// fragment layouts are opaque and cannot be gotten wrong, which matters for code that was
// written without a GPU to run it. The cost: wmma on sm_90 issues the Ampere mma.sync path
// (no wgmma / TMA), so the tensor-core ceiling is well below the H100's dense bf16 peak (an
// estimate, not measured: about 60%), and fragments are reloaded from shared memory for every
// 16-wide K slice.
//
// Tile shapes (pft_pick_tile on the output block width): L 128x128 (8 warps, 256 threads),
// M 128x64 and S 64x64 (4 warps); dS always S. Static shared memory: L 40 KB (forward) / 37 KB
// (dX), M 30 / 29 KB, S 20 / 19 / 18 KB (dS). ptxas (CUDA 13, sm_90a): 119-218 registers per
// thread, no spills; so L runs one CTA (8 warps) per SM and M two. Forcing two L CTAs per SM
// with __launch_bounds__(256, 2) made ptxas spill (50-170 bytes), so it is left to measurement.
//
// Pipeline: two shared-memory stages with register prefetch. While the warps multiply stage
// t&1, every thread holds its share of step t+1's tiles in registers (16-byte vector loads
// when the rows are 16-byte aligned, else element loads with bounds checks), converts them to
// bf16 and stores them into the other stage after its MMAs; one __syncthreads per step.
// (cp.async would skip the registers for bf16 inputs; not used, so that the fp32 and bf16
// paths stay one code path.) What limits speed: the isolated layer is memory-bound at
// GPT-2 / 1024<->4096 sizes (bench/NOTES.md), so the bytes moved matter most: the forward reads
// x once more for xv = x V^T when r > 0, the backward reads dy in dxv = dy U, dU, db and twice
// in the kernels (dX, dS), and dS writes splits x |dS| partial sums (splits is ~4 at 16k
// tokens). Fusing those passes (dU/dV as extra dS blocks, db from the staged dy tiles) is the
// next step past this version.
#include <mma.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>

#include "cuda_ops.h"
#include "pixelfly_tiles.h"

using namespace nvcuda;

// ---- tile shapes ---------------------------------------------------------------------------
// A CTA computes BM x BN with (BM/WM) x (BN/WN) warps, each warp a WM x WN sub-tile of
// (WM/16) x (WN/16) wmma fragments. BK = 32: two 16-wide K slices per stage.
template <int BM_, int BN_, int WM_, int WN_>
struct PfTile {
    static constexpr int BM = BM_, BN = BN_, BK = 32, WM = WM_, WN = WN_;
    static constexpr int WARPS_N = BN / WN, WARPS = (BM / WM) * WARPS_N, THREADS = 32 * WARPS;
    static constexpr int FM = WM / 16, FN = WN / 16;
    static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0 && WN % 16 == 0, "tile shape");
};
using TileL = PfTile<128, 128, 64, 32>;  // 8 warps (PFT_TILE_L)
using TileM = PfTile<128, 64, 64, 32>;   // 4 warps (PFT_TILE_M)
using TileS = PfTile<64, 64, 32, 32>;    // 4 warps (PFT_TILE_S, and every dS)

// f(Tile{}) for the tile shape `which` (pft_pick_tile).
template <class F>
static void with_tile(int which, F &&f) {
    if (which == PFT_TILE_L)
        f(TileL{});
    else if (which == PFT_TILE_M)
        f(TileM{});
    else
        f(TileS{});
}

// ---- shared memory -------------------------------------------------------------------------
// Two stages of (A tile, B tile) in bf16, each tile stored in its global orientation
// (pixelfly_tiles.h): A K-contiguous [BM][BK] (wmma row_major) or M-contiguous [BK][BM]
// (col_major); B K-contiguous [BN][BK] (col_major) or N-contiguous [BK][BN] (row_major).
// Rows are padded by 8 bf16 (16 bytes): wmma wants ldm a multiple of 8, and the padding
// staggers the rows across banks. Every fragment pointer is 32-byte aligned: its row index is
// a multiple of 16 and its column index a multiple of 16, and every tile size is a multiple of
// 128 elements. After the main loop the same bytes serve as the epilogue's scratch.
constexpr int PF_PAD = 8;

template <class Cfg, bool AK, bool BKC>
struct PfSmem {
    static constexpr int A_R = AK ? Cfg::BM : Cfg::BK, A_C = AK ? Cfg::BK : Cfg::BM;
    static constexpr int B_R = BKC ? Cfg::BN : Cfg::BK, B_C = BKC ? Cfg::BK : Cfg::BN;
    static constexpr int A_LD = A_C + PF_PAD, B_LD = B_C + PF_PAD;
    static constexpr int A_ELEMS = A_R * A_LD, STAGE = A_ELEMS + B_R * B_LD;  // bf16 elements
    static constexpr int BYTES = 2 * STAGE * 2;
    static_assert(A_ELEMS % 128 == 0 && STAGE % 128 == 0, "32-byte aligned fragments");
    static_assert(BYTES >= Cfg::WARPS * 16 * 16 * 4, "epilogue scratch: one fragment per warp");
    static_assert(BYTES <= 48 * 1024, "static shared memory");
    using LayA = typename std::conditional<AK, wmma::row_major, wmma::col_major>::type;
    using LayB = typename std::conditional<BKC, wmma::col_major, wmma::row_major>::type;

    __device__ static bf16 *a(unsigned char *s, int stage) {
        return reinterpret_cast<bf16 *>(s) + stage * STAGE;
    }
    __device__ static bf16 *b(unsigned char *s, int stage) {
        return reinterpret_cast<bf16 *>(s) + stage * STAGE + A_ELEMS;
    }
    // The 16x16 fragment whose top-left GEMM element is A(m0, k0), B(k0, n0).
    __device__ static const bf16 *a_frag(const bf16 *A, int m0, int k0) {
        return AK ? A + m0 * A_LD + k0 : A + k0 * A_LD + m0;
    }
    __device__ static const bf16 *b_frag(const bf16 *B, int k0, int n0) {
        return BKC ? B + n0 * B_LD + k0 : B + k0 * B_LD + n0;
    }
};

// ---- staging: global (T) -> registers -> shared (bf16) -----------------------------------
template <typename T>
struct alignas(16) PfPack {  // 16 bytes of T: one global load
    T v[16 / sizeof(T)];
};
template <int VEC>
struct alignas(2 * VEC) PfBfPack {  // the same elements in bf16: one shared store
    bf16 v[VEC];
};

__device__ __forceinline__ bf16 pf_to_bf16(float v) { return __float2bfloat16_rn(v); }
__device__ __forceinline__ bf16 pf_to_bf16(bf16 v) { return v; }

// An R x C tile (C contiguous in global and shared memory, shared row stride LD) staged by NT
// threads. Chunk id = threadIdx.x + j*NT (j < PER) covers row id / (C/VEC), columns
// (id % (C/VEC))*VEC .. +VEC: consecutive threads read consecutive 16 bytes of a row.
// Stored element (r, c) is real iff r < s.rows and c < s.cols (pft_src), else zero.
template <typename T, int R, int C, int LD, int NT>
struct PfLoader {
    static constexpr int VEC = 16 / sizeof(T), CPR = C / VEC, PER = R * CPR / NT;
    static_assert(C % VEC == 0 && (R * CPR) % NT == 0 && LD % 8 == 0, "loader shape");
    PfPack<T> reg[PER];

    // vec: the caller checked that base + s.off and s.ld keep every chunk 16-byte aligned.
    __device__ __forceinline__ void load(const T *base, pft_src s, bool vec) {
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int id = threadIdx.x + j * NT, r = id / CPR, c = (id % CPR) * VEC;
            const T *g = base + s.off + (int64_t)r * s.ld + c;  // dereferenced only if real
            if (vec && r < s.rows && c + VEC <= s.cols) {
                reg[j] = *reinterpret_cast<const PfPack<T> *>(g);
            } else {
#pragma unroll
                for (int e = 0; e < VEC; e++)
                    reg[j].v[e] = r < s.rows && c + e < s.cols ? g[e] : cuda_st<T>(0.0f);
            }
        }
    }

    __device__ __forceinline__ void store(bf16 *sm) const {
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int id = threadIdx.x + j * NT, r = id / CPR, c = (id % CPR) * VEC;
            PfBfPack<VEC> o;
#pragma unroll
            for (int e = 0; e < VEC; e++) o.v[e] = pf_to_bf16(reg[j].v[e]);
            *reinterpret_cast<PfBfPack<VEC> *>(sm + r * LD + c) = o;
        }
    }
};

// ---- the GEMM skeleton ---------------------------------------------------------------------
template <class Cfg>
struct PfAcc {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> f[Cfg::FM][Cfg::FN];
};

// One K-step: the A and B tiles (base pointer, descriptor, 16-byte loads allowed) and the
// number of real K indices (<= BK; the rest of the stage is zero padding).
template <typename T>
struct PfStep {
    const T *a, *b;
    pft_src sa, sb;
    bool vec_a, vec_b;
    int klen;
};

// The warp's sub-tile origin inside the CTA tile.
template <class Cfg>
__device__ __forceinline__ int pf_warp_m0() {
    return (int)(threadIdx.x / 32) / Cfg::WARPS_N * Cfg::WM;
}
template <class Cfg>
__device__ __forceinline__ int pf_warp_n0() {
    return (int)(threadIdx.x / 32) % Cfg::WARPS_N * Cfg::WN;
}

// acc += A B over one staged K-step; 16-wide slices past klen hold only zeros and are
// skipped (klen is the same for the whole CTA, so the branch is uniform).
template <class Cfg, class Sm>
__device__ __forceinline__ void pf_mma_stage(PfAcc<Cfg> &acc, const bf16 *As, const bf16 *Bs,
                                             int klen) {
    int m0 = pf_warp_m0<Cfg>(), n0 = pf_warp_n0<Cfg>();
#pragma unroll
    for (int k0 = 0; k0 < Cfg::BK; k0 += 16) {
        if (k0 < klen) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, typename Sm::LayA> a[Cfg::FM];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, typename Sm::LayB> b[Cfg::FN];
#pragma unroll
            for (int i = 0; i < Cfg::FM; i++)
                wmma::load_matrix_sync(a[i], Sm::a_frag(As, m0 + 16 * i, k0), Sm::A_LD);
#pragma unroll
            for (int j = 0; j < Cfg::FN; j++)
                wmma::load_matrix_sync(b[j], Sm::b_frag(Bs, k0, n0 + 16 * j), Sm::B_LD);
#pragma unroll
            for (int i = 0; i < Cfg::FM; i++)
#pragma unroll
                for (int j = 0; j < Cfg::FN; j++)
                    wmma::mma_sync(acc.f[i][j], a[i], b[j], acc.f[i][j]);
        }
    }
}

// acc = sum over steps t < nsteps of A_t B_t, step(t) describing step t's tiles. Double
// buffered: stage t&1 is multiplied while step t+1 is in registers; it is stored into the
// other stage after the MMAs, and the one __syncthreads per step orders both hazards (the
// other stage's last readers were step t-1's MMAs, before the previous barrier; stage t&1's
// writers finished before it). Ends with a barrier, so the caller may reuse the shared memory.
template <typename T, class Cfg, class Sm, class StepFn>
__device__ __forceinline__ void pf_mainloop(PfAcc<Cfg> &acc, unsigned char *smem, int nsteps,
                                            StepFn step) {
#pragma unroll
    for (int i = 0; i < Cfg::FM; i++)
#pragma unroll
        for (int j = 0; j < Cfg::FN; j++) wmma::fill_fragment(acc.f[i][j], 0.0f);
    if (nsteps <= 0) return;
    PfLoader<T, Sm::A_R, Sm::A_C, Sm::A_LD, Cfg::THREADS> la;
    PfLoader<T, Sm::B_R, Sm::B_C, Sm::B_LD, Cfg::THREADS> lb;
    PfStep<T> s = step(0);
    la.load(s.a, s.sa, s.vec_a);
    lb.load(s.b, s.sb, s.vec_b);
    la.store(Sm::a(smem, 0));
    lb.store(Sm::b(smem, 0));
    __syncthreads();
    for (int t = 0; t < nsteps; t++) {
        int cur = t & 1, klen = s.klen;
        bool more = t + 1 < nsteps;
        if (more) {
            s = step(t + 1);
            la.load(s.a, s.sa, s.vec_a);
            lb.load(s.b, s.sb, s.vec_b);
        }
        pf_mma_stage<Cfg, Sm>(acc, Sm::a(smem, cur), Sm::b(smem, cur), klen);
        if (more) {
            la.store(Sm::a(smem, cur ^ 1));
            lb.store(Sm::b(smem, cur ^ 1));
        }
        __syncthreads();
    }
}

// Calls f(i, j, v) for every element (i, j) of the CTA's BM x BN tile (v = its fp32 sum), one
// fragment at a time through the warp's own 1 KB of shared memory (after pf_mainloop's last
// barrier nobody reads the stages any more). Lanes 0-15 and 16-31 take two rows of 16
// consecutive columns per pass, so a row-major output is written in 32/64-byte runs.
template <class Cfg, class F>
__device__ __forceinline__ void pf_epilogue(PfAcc<Cfg> &acc, unsigned char *smem, F f) {
    int lane = threadIdx.x % 32, m0 = pf_warp_m0<Cfg>(), n0 = pf_warp_n0<Cfg>();
    float *ws = reinterpret_cast<float *>(smem) + (threadIdx.x / 32) * 256;
#pragma unroll
    for (int i = 0; i < Cfg::FM; i++)
#pragma unroll
        for (int j = 0; j < Cfg::FN; j++) {
            wmma::store_matrix_sync(ws, acc.f[i][j], 16, wmma::mem_row_major);
            __syncwarp();
#pragma unroll
            for (int e0 = 0; e0 < 256; e0 += 32) {
                int e = e0 + lane;
                f(m0 + 16 * i + e / 16, n0 + 16 * j + e % 16, ws[e]);
            }
            __syncwarp();
        }
}

// Bits of the kernels' `vec` argument: 16-byte loads are allowed for the sparse A / B tiles
// and the low-rank A / B tiles.
enum { VEC_SA = 1, VEC_SB = 2, VEC_LA = 4, VEC_LB = 8 };

// 16-byte loads are safe for a tensor when its base is 16-byte aligned and every tile offset
// and row stride is a multiple of 16 bytes: `unit` is the element count that all of them are
// multiples of (ib, ob or r: see each launcher).
template <typename T>
static unsigned vec_bit(const void *base, int64_t unit, unsigned bit) {
    int64_t v = 16 / (int64_t)sizeof(T);
    return base && (uintptr_t)base % 16 == 0 && unit % v == 0 ? bit : 0;
}

// ---- forward and dX ------------------------------------------------------------------------
// The two token-major products share one kernel: a CTA owns an [M tile x column tile] block
// of one super-row (forward) or super-column (dX) and loops over the nf+1 gathered K-runs,
// then the low-rank K-run, in one accumulator.
//   forward (RowPass::FWD), y overwritten:
//     y[n, p*ob + o] = sum_{k<=nf} sum_{i<ib} x[n, q*ib + i] S[p][k][o][i]     (q = col(p, k))
//                    + sum_{j<r} xv[n, j] U[p*ob + o, j] + b[p*ob + o]
//     x [N, in], S [bs, nf+1, ob, ib], xv [N, r], U [out, r], b [out] (NULL: none), y [N, out]
//   dX (RowPass::DX), dx accumulated:
//     dx[n, q*ib + i] += sum_{k<=nf} sum_{o<ob} dy[n, p'*ob + o] S[p'][k][o][i]  (p' = src(q, k))
//                      + sum_{j<r} dxv[n, j] V[j, q*ib + i]
//     dy [N, out], S [bs, nf+1, ob, ib], dxv [N, r], V [r, in], dx [N, in]
// all T. Operands: a = x | dy, b = S, la = xv | dxv, lb = U | V.
enum class RowPass { FWD, DX };

template <typename T>
struct RowArgs {
    pft_dims d;
    T *out;                          // y | dx
    const T *a, *b, *la, *lb, *bias;  // bias: forward only
    unsigned vec;
};

template <RowPass P>
struct RowOps {  // the pass's index arithmetic (pixelfly_tiles.h)
    static constexpr bool FWD = P == RowPass::FWD;
    static constexpr int AK = FWD ? PFT_FWD_AK : PFT_DX_AK, BK = FWD ? PFT_FWD_BK : PFT_DX_BK;
    __device__ static int width(const pft_dims &d) { return FWD ? d.ob : d.ib; }  // out block
    __device__ static int run(const pft_dims &d) { return FWD ? d.ib : d.ob; }    // K-run
    __device__ static pft_src a(const pft_dims &d, const pft_cta &c, const pft_kstep &s) {
        return FWD ? pft_fwd_a(d, c, s) : pft_dx_a(d, c, s);
    }
    __device__ static pft_src b(const pft_dims &d, const pft_cta &c, const pft_kstep &s) {
        return FWD ? pft_fwd_b(d, c, s) : pft_dx_b(d, c, s);
    }
    __device__ static pft_src out(const pft_dims &d, const pft_cta &c) {
        return FWD ? pft_fwd_out(d, c) : pft_dx_out(d, c);
    }
};

template <typename T, class Cfg, RowPass P>
__global__ static void __launch_bounds__(Cfg::THREADS) pixelfly_row_kernel(RowArgs<T> args) {
    using Ops = RowOps<P>;
    using Sm = PfSmem<Cfg, Ops::AK, Ops::BK>;
    __shared__ __align__(128) unsigned char smem[Sm::BYTES];
    const pft_dims d = args.d;
    const pft_cta c = pft_rowtile(blockIdx.x, blockIdx.y, Ops::width(d), Cfg::BM, Cfg::BN);
    PfAcc<Cfg> acc;
    pf_mainloop<T, Cfg, Sm>(acc, smem, pft_ksteps(d.nf + 1, Ops::run(d), d.r, Cfg::BK), [&](int t) {
        pft_kstep s = pft_kstep_at(t, d.nf + 1, Ops::run(d), d.r, Cfg::BK);
        bool sparse = s.run <= d.nf;
        PfStep<T> st;
        st.a = sparse ? args.a : args.la;
        st.b = sparse ? args.b : args.lb;
        st.sa = Ops::a(d, c, s);
        st.sb = Ops::b(d, c, s);
        st.vec_a = args.vec & (sparse ? VEC_SA : VEC_LA);
        st.vec_b = args.vec & (sparse ? VEC_SB : VEC_LB);
        st.klen = s.klen;
        return st;
    });
    const pft_src o = Ops::out(d, c);
    const T *bias = Ops::FWD && args.bias ? args.bias + pft_fwd_bias(d, c) : nullptr;
    pf_epilogue<Cfg>(acc, smem, [&](int i, int j, float v) {
        if (i < o.rows && j < o.cols) {
            T *q = args.out + o.off + (int64_t)i * o.ld + j;
            if constexpr (Ops::FWD) {
                if (bias) v += cuda_ld(bias[j]);
            } else {
                v += cuda_ld(*q);
            }
            *q = cuda_st<T>(v);
        }
    });
}

template <typename T, RowPass P>
static void row_launch(const RowArgs<T> &args) {
    const pft_dims &d = args.d;
    int width = P == RowPass::FWD ? d.ob : d.ib;
    with_tile(pft_pick_tile(width), [&](auto tile) {
        using Cfg = decltype(tile);
        dim3 grid(pft_grid_x(d.bs, width, Cfg::BN), pft_grid_y(d.N, Cfg::BM));
        PF_ASSERT(grid.y <= 65535);
        pixelfly_row_kernel<T, Cfg, P><<<grid, Cfg::THREADS, 0, pf_cuda_ctx()->stream>>>(args);
        CUDA_CHECK_LAUNCH();
    });
}

// ---- dS ------------------------------------------------------------------------------------
// out[blk][o][i] (+)= sum_{n in split} dy[n, p*ob + o] x[n, q*ib + i]
//   blk = p*(nf+1) + k, q = col(p, k); dy [N, out], x [N, in] (T); out fp32 [bs, nf+1, ob, ib]:
//   with add, dS itself (one split); else split by.y's partial sums at out + by * stride.
// CTA (bx, by): block blk, rows o0.., columns c0.., tokens of split by (pft_ds_tile).
template <typename T>
struct DsArgs {
    pft_dims d;
    float *out;
    int64_t stride;
    const T *dy, *x;
    int chunk;
    bool add;
    unsigned vec;
};

template <typename T, class Cfg>
__global__ static void __launch_bounds__(Cfg::THREADS) pixelfly_ds_kernel(DsArgs<T> args) {
    using Sm = PfSmem<Cfg, PFT_DS_AK, PFT_DS_BK>;
    __shared__ __align__(128) unsigned char smem[Sm::BYTES];
    const pft_dims d = args.d;
    const pft_ds_cta c = pft_ds_tile(d, blockIdx.x, blockIdx.y, Cfg::BM, Cfg::BN, args.chunk);
    PfAcc<Cfg> acc;
    pf_mainloop<T, Cfg, Sm>(acc, smem, pft_ds_ksteps(c, Cfg::BK), [&](int t) {
        pft_kstep s = pft_ds_kstep(c, t, Cfg::BK);
        PfStep<T> st;
        st.a = args.dy;
        st.b = args.x;
        st.sa = pft_ds_a(d, c, s);
        st.sb = pft_ds_b(d, c, s);
        st.vec_a = args.vec & VEC_SA;
        st.vec_b = args.vec & VEC_SB;
        st.klen = s.klen;
        return st;
    });
    const pft_src o = pft_ds_out(d, c);
    float *out = args.out + (int64_t)blockIdx.y * args.stride;
    pf_epilogue<Cfg>(acc, smem, [&](int i, int j, float v) {
        if (i < o.rows && j < o.cols) {
            float *p = out + o.off + (int64_t)i * o.ld + j;
            *p = args.add ? *p + v : v;
        }
    });
}

// dS[e] += sum_{s < splits} part[s * n + e], added in split order; dS, part fp32, e < n.
__global__ static void pixelfly_ds_reduce_kernel(float *dS, const float *part, int64_t n,
                                                 int splits) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int i = 0; i < splits; i++) s += part[(int64_t)i * n + e];
        dS[e] += s;
    }
}

// Token splits: about 4 CTAs per SM in all (TileS: 128 threads, 18 KB of shared memory),
// chunks of at least PF_DS_MIN_CHUNK tokens.
#define PF_DS_MIN_CHUNK 256

static int sm_count(void) {
    static int n = 0;
    if (!n) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
    return n;
}

template <typename T>
static void ds_launch(const pft_dims &d, float *dS, const T *dy, const T *x) {
    using Cfg = TileS;
    int tiles = pft_ds_grid_x(d, Cfg::BM, Cfg::BN);
    int chunk = pft_ds_chunk(d.N, pft_cdiv(4 * sm_count(), tiles), PF_DS_MIN_CHUNK, Cfg::BK);
    int splits = pft_ds_splits(d.N, chunk);
    int64_t n = (int64_t)d.bs * (d.nf + 1) * d.ob * d.ib;
    DsArgs<T> args = {};
    args.d = d;
    args.dy = dy;
    args.x = x;
    args.chunk = chunk;
    args.add = splits == 1;
    args.stride = n;
    args.out = splits == 1 ? dS : (float *)cuda_scratch(sizeof(float) * (size_t)(splits * n));
    // dy tiles start at p*ob + o0 (o0 a multiple of 64) in rows of out = bs*ob; x tiles at
    // q*ib + c0 in rows of in = bs*ib.
    args.vec = vec_bit<T>(dy, d.ob, VEC_SA) | vec_bit<T>(x, d.ib, VEC_SB);
    cudaStream_t st = pf_cuda_ctx()->stream;
    PF_ASSERT(splits >= 1 && splits <= 65535);
    pixelfly_ds_kernel<T, Cfg><<<dim3(tiles, splits), Cfg::THREADS, 0, st>>>(args);
    CUDA_CHECK_LAUNCH();
    if (splits > 1) {
        pixelfly_ds_reduce_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, st>>>(dS, args.out, n,
                                                                           splits);
        CUDA_CHECK_LAUNCH();
    }
}

// ---- entry points --------------------------------------------------------------------------

// Weights passed to the op are act tensors of dtype dt; gradients are fp32 (dt = PF_F32).
// Their sizes are checked by pf_shape_pixelfly(_bwd).
static void check_weights(pf_pixelfly_w w, pf_dtype dt, bool need_s) {
    if (need_s)
        CUDA_ACT(w.S, dt);
    else
        CUDA_ACT_OPT(w.S, dt);
    CUDA_ACT_OPT(w.U, dt);
    CUDA_ACT_OPT(w.V, dt);
    CUDA_ACT_OPT(w.b, dt);
}

// ---- the mask's tables on the device ------------------------------------------------------
// The kernels look up col and src (pattern.h, [bs][nf+1] uint16 each) once per K-step (a
// cached read: every CTA reads the same few entries), from device copies: one per distinct
// mask, uploaded on its first use, kept for the process lifetime, found again by content.
// The alternatives:
//  - kernel parameters: both tables of a full mask are 8 KB, over the 4 KB parameter limit
//    before CUDA 12.1, and a parameter indexed at run time is copied into every thread's local
//    memory unless it is declared __grid_constant__; every launch would carry the 8 KB.
//  - an upload per call: cudaMemcpy from pageable host memory waits for the stream to drain,
//    once per op; an async copy would need a pinned buffer alive until the kernels ran.
// Keyed by (bs, nf, col) (src follows from col). A model has up to one mask per sparse layer
// (GPT-2 medium with random masks: about 100), so the table grows as needed; a hit hashes
// and compares the bs*(nf+1) entries and allocates nothing. Not thread-safe, like
// cuda_scratch: the ops are issued from one host thread.
// The cache lives in the runtime context: pf_cuda_ctx()->masks, open addressing with linear
// probing over masks_cap slots (a power of two, at most half of them used).
struct pf_cuda_mask {
    uint64_t hash;   // mask_hash of the key
    int bs, nf;
    uint16_t *host;  // col then src, 2 * bs*(nf+1) entries (col is the key)
    uint16_t *dev;   // the same on the device; NULL: an empty slot
};

// FNV-1a over bs, nf and the n = bs*(nf+1) entries of col.
static uint64_t mask_hash(const pf_pattern *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = (h ^ (uint64_t)p->bs) * 0x100000001b3ull;
    h = (h ^ (uint64_t)p->nf) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p->col[i]) * 0x100000001b3ull;
    return h;
}

// p's entry, or the empty slot where it goes (masks_cap > masks_used, so one exists).
static pf_cuda_mask *mask_find(const pf_pattern *p, uint64_t h, size_t n) {
    pf_cuda_context *ctx = pf_cuda_ctx();
    for (size_t i = h & (ctx->masks_cap - 1);; i = (i + 1) & (ctx->masks_cap - 1)) {
        pf_cuda_mask *e = &ctx->masks[i];
        if (!e->dev || (e->hash == h && e->bs == p->bs && e->nf == p->nf &&
                        !memcmp(e->host, p->col, sizeof(uint16_t) * n)))
            return e;
    }
}

// Doubles the table (64 slots at first) and reinserts the entries.
static void mask_grow(void) {
    pf_cuda_context *ctx = pf_cuda_ctx();
    size_t cap = ctx->masks_cap ? 2 * ctx->masks_cap : 64;
    pf_cuda_mask *slots = (pf_cuda_mask *)pf_calloc(cap, sizeof *slots);
    for (size_t i = 0; i < ctx->masks_cap; i++) {
        if (!ctx->masks[i].dev) continue;
        size_t j = ctx->masks[i].hash & (cap - 1);
        while (slots[j].dev) j = (j + 1) & (cap - 1);
        slots[j] = ctx->masks[i];
    }
    free(ctx->masks);
    ctx->masks = slots;
    ctx->masks_cap = cap;
}

// Device copy of p's tables: col [bs][nf+1] at the result, src [bs][nf+1] right after it.
static const uint16_t *mask_tables(const pf_pattern *p) {
    size_t n = (size_t)p->bs * (p->nf + 1);
    PF_ASSERT(p->bs >= 1 && p->nf >= 0 && n <= PF_PATTERN_MAX_BLOCKS);
    uint64_t h = mask_hash(p, n);
    pf_cuda_context *ctx = pf_cuda_ctx();
    pf_cuda_mask *e = ctx->masks_cap ? mask_find(p, h, n) : nullptr;
    if (e && e->dev) return e->dev;
    if (2 * (ctx->masks_used + 1) > ctx->masks_cap) {
        mask_grow();
        e = mask_find(p, h, n);
    }
    size_t bytes = sizeof(uint16_t) * 2 * n;
    e->host = (uint16_t *)pf_malloc(bytes);
    memcpy(e->host, p->col, bytes / 2);
    memcpy(e->host + n, p->src, bytes / 2);
    // The one synchronising upload of this mask; later calls find it in the table.
    void *dev = nullptr;
    CUDA_CHECK(cudaMalloc(&dev, bytes));
    CUDA_CHECK(cudaMemcpy(dev, e->host, bytes, cudaMemcpyHostToDevice));
    e->dev = (uint16_t *)dev;
    e->hash = h;
    e->bs = p->bs;
    e->nf = p->nf;
    ctx->masks_used++;
    cuda_note_memory();
    return e->dev;
}

static pft_dims dims_of(const pf_pattern *p, int64_t N) {
    PF_ASSERT(N >= 0 && N <= INT32_MAX);
    pft_dims d = {};
    d.N = (int)N;
    d.out = p->out;
    d.in = p->in;
    d.bs = p->bs;
    d.nf = p->nf;
    d.r = p->rank;
    d.ob = p->ob;
    d.ib = p->ib;
    d.col = mask_tables(p);
    d.src = d.col + (size_t)p->bs * (p->nf + 1);
    return d;
}

// xv[N,r] = x V^T (saved for backward);  y[N,out] = x S^T + xv U^T + b
void cuda_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                       pf_pixelfly_w w) {
    pf_dtype dt = x.dtype;
    CUDA_ACT(y, dt);
    CUDA_ACT(x, dt);
    check_weights(w, dt, true);
    if (p->rank) {
        CUDA_ACT(xv, dt);
        CUDA_ACT(w.U, dt);
        CUDA_ACT(w.V, dt);
    }
    pf_pixelfly_shape s = pf_shape_pixelfly(p, y, xv, x, w);
    int64_t N = s.N, r = s.r;
    if (!N) return;
    pft_dims d = dims_of(p, N);
    if (r)
        cuda_gemm(false, true, d.N, d.r, d.in, 1.0f, x.data, d.in, w.V.data, d.in, dt, 0.0f,
                  xv.data, d.r, dt);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        RowArgs<T> a = {};
        a.d = d;
        a.out = (T *)y.data;
        a.a = (const T *)x.data;
        a.b = (const T *)w.S.data;
        a.la = r ? (const T *)xv.data : nullptr;
        a.lb = r ? (const T *)w.U.data : nullptr;
        a.bias = (const T *)w.b.data;
        // x tiles start at q*ib + kofs in rows of in = bs*ib; S tiles at multiples of ib
        // plus kofs; xv and U tiles at multiples of r plus kofs (kofs a multiple of 32).
        a.vec = vec_bit<T>(a.a, d.ib, VEC_SA) | vec_bit<T>(a.b, d.ib, VEC_SB) |
                vec_bit<T>(a.la, d.r, VEC_LA) | vec_bit<T>(a.lb, d.r, VEC_LB);
        row_launch<T, RowPass::FWD>(a);
    });
}

// dxv[N,r] = dy U (scratch, overwritten);  dx[N,in] += dy S + dxv V;
// dS += (dy^T x) on the stored blocks only;  dU += dy^T xv;  dV += dxv^T x;  db += sum dy
void cuda_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                       pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w) {
    pf_dtype dt = x.dtype;
    CUDA_ACT_OPT(dx, dt);
    CUDA_ACT(dy, dt);
    CUDA_ACT(x, dt);
    check_weights(w, dt, true);
    check_weights(dw, PF_F32, false);
    pf_pixelfly_shape s = pf_shape_pixelfly_bwd(p, dx, dw, dxv, dy, x, xv, w);
    int64_t N = s.N, out = s.out, r = s.r;
    bool need_dxv = s.need_dxv;
    if (r) {
        CUDA_ACT(w.U, dt);
        CUDA_ACT(w.V, dt);
    }
    if (r && pf_present(dw.U)) CUDA_ACT(xv, dt);
    if (need_dxv) CUDA_ACT(dxv, dt);
    if (!N) return;
    pft_dims d = dims_of(p, N);
    if (need_dxv)
        cuda_gemm(false, false, d.N, d.r, d.out, 1.0f, dy.data, d.out, w.U.data, d.r, dt, 0.0f,
                  dxv.data, d.r, dt);
    cuda_dispatch(dt, [&](auto tag) {
        using T = decltype(tag);
        if (pf_present(dx)) {
            RowArgs<T> a = {};
            a.d = d;
            a.out = (T *)dx.data;
            a.a = (const T *)dy.data;
            a.b = (const T *)w.S.data;
            a.la = r ? (const T *)dxv.data : nullptr;
            a.lb = r ? (const T *)w.V.data : nullptr;
            // dy tiles start at p'*ob + kofs in rows of out = bs*ob; S tiles at multiples of
            // ib plus c0; dxv tiles at multiples of r plus kofs; V tiles at kofs*in + q*ib + c0.
            a.vec = vec_bit<T>(a.a, d.ob, VEC_SA) | vec_bit<T>(a.b, d.ib, VEC_SB) |
                    vec_bit<T>(a.la, d.r, VEC_LA) | vec_bit<T>(a.lb, d.ib, VEC_LB);
            row_launch<T, RowPass::DX>(a);
        }
        if (pf_present(dw.S)) ds_launch<T>(d, cuda_f(dw.S), (const T *)dy.data, (const T *)x.data);
    });
    if (r && pf_present(dw.U))
        cuda_gemm(true, false, d.out, d.r, d.N, 1.0f, dy.data, d.out, xv.data, d.r, dt, 1.0f,
                  dw.U.data, d.r, PF_F32);
    if (r && pf_present(dw.V))
        cuda_gemm(true, false, d.r, d.in, d.N, 1.0f, dxv.data, d.r, x.data, d.in, dt, 1.0f,
                  dw.V.data, d.in, PF_F32);
    if (pf_present(dw.b)) cuda_colsum_add(cuda_f(dw.b), dy.data, dt, N, out, out);
}
