// pixelfly_tiles.h: the index arithmetic of the Pixelfly tensor-core kernels
// (kernels/cuda_pixelfly.cu), kept apart from the CUDA code so that it compiles as C too and
// tests/test_pixelfly_tiles.c can replay every kernel's tiling on the CPU: which super-column
// feeds which super-row at slot k, which output tile a CTA owns, which global elements each
// K-step stages, and how dS splits the tokens. Nothing here touches the tensors; the mask's
// tables (pft_dims col / src) are read through the pointers the caller put in pft_dims.
//
// Every kernel computes one output tile C[BM x BN] (fp32 accumulators) as a sum over K-steps;
// K-step t stages an A tile (BM x BK, the M side) and a B tile (BK x BN, the N side). A tile is
// described by a pft_src in its *storage* orientation: stored element (r, c) of the tile lives
// at base[off + r*ld + c] and is real iff r < rows and c < cols, else it is staged as zero.
// Storage orientation per operand (the PFT_*_K constants; 1 = contiguous along K):
//   forward  A = x or xv   [tokens x K]  K-contiguous   B = S or U  [out cols x K] K-contiguous
//   dX       A = dy or dxv [tokens x K]  K-contiguous   B = S or V  [K x in cols]  N-contiguous
//   dS       A = dy        [K x out cols] M-contiguous  B = x       [K x in cols]  N-contiguous
// So a K-contiguous A tile is stored BM x BK, an M-contiguous one BK x BM; a K-contiguous B
// tile BN x BK, an N-contiguous one BK x BN.
//
// Sizes are ints (tokens, features, tile sizes); element offsets are int64.
#ifndef PF_PIXELFLY_TILES_H
#define PF_PIXELFLY_TILES_H

#include <stdint.h>

#if defined(__CUDACC__)
#define PFT_FN static __host__ __device__ __forceinline__
#else
#define PFT_FN static inline
#endif

enum {
    PFT_FWD_AK = 1, PFT_FWD_BK = 1,  // forward: A [tokens x K], B [out cols x K]
    PFT_DX_AK = 1, PFT_DX_BK = 0,    // dX:      A [tokens x K], B [K x in cols]
    PFT_DS_AK = 0, PFT_DS_BK = 0,    // dS:      A [K x out cols], B [K x in cols]
};

// The layer and batch: N tokens, out = bs*ob, in = bs*ib, nf+1 slots per super-row, low-rank
// r (0: none), and the mask's tables (pf_pattern col / src, both [bs][nf+1]): device pointers
// in the kernels (cuda_pixelfly.cu uploads them once per mask), host pointers in the test.
typedef struct {
    int N, out, in, bs, nf, r, ob, ib;
    const uint16_t *col, *src;
} pft_dims;

// A staged tile: stored element (r, c) at base[off + r*ld + c], real iff r < rows, c < cols.
typedef struct {
    int64_t off, ld;
    int rows, cols;
} pft_src;

// One K-step: K-run `run` (0..nf: sparse slot k; nf+1: the low-rank run; for dS the block),
// offset kofs inside the run (dS: the first token) and klen <= BK real K indices.
typedef struct {
    int run, kofs, klen;
} pft_kstep;

// The output tile of a forward or dX CTA: super-block `blk` (super-row p for the forward,
// super-column q for dX), column offset c0 inside it, token offset m0.
typedef struct {
    int blk, c0, m0;
} pft_cta;

// The output tile of a dS CTA: stored block blk = p*(nf+1) + k, rows o0.. (of ob), columns
// c0.. (of ib), summing tokens [n_begin, n_end).
typedef struct {
    int blk, o0, c0, n_begin, n_end;
} pft_ds_cta;

PFT_FN int pft_cdiv(int a, int b) { return (a + b - 1) / b; }
PFT_FN int pft_min(int a, int b) { return a < b ? a : b; }

// Super-column of super-row `row` at slot k: pf_pattern_col (pattern.h). Forward and dS.
PFT_FN int pft_col(pft_dims d, int row, int k) { return d.col[row * (d.nf + 1) + k]; }
// Super-row that holds super-column `col` at slot k: pf_pattern_src. Every slot is a
// permutation of the super-columns (pattern.h), so it exists and is unique; dX gathers
// through it. (Only for xor masks, the flat butterfly and a factor, is it col(col, k).)
PFT_FN int pft_src_row(pft_dims d, int col, int k) { return d.src[col * (d.nf + 1) + k]; }

// ---- forward and dX: the grid and the K-steps ----------------------------------------------
// Grid: x = blk * tiles + column tile (width = ob for the forward, ib for dX), y = token tile.
// The CTAs that run side by side share the token tile, so its input rows come from L2.
PFT_FN int pft_grid_x(int bs, int width, int bn) { return bs * pft_cdiv(width, bn); }
PFT_FN int pft_grid_y(int N, int bm) { return pft_cdiv(N, bm); }

PFT_FN pft_cta pft_rowtile(int bx, int by, int width, int bm, int bn) {
    int tiles = pft_cdiv(width, bn);
    pft_cta c;
    c.blk = bx / tiles;
    c.c0 = (bx % tiles) * bn;
    c.m0 = by * bm;
    return c;
}

// nruns sparse K-runs of runlen each (split into ceil(runlen/bk) steps; a step never spans
// two runs), then the low-rank run of lowlen (0: none).
PFT_FN int pft_ksteps(int nruns, int runlen, int lowlen, int bk) {
    return nruns * pft_cdiv(runlen, bk) + pft_cdiv(lowlen, bk);
}

PFT_FN pft_kstep pft_kstep_at(int t, int nruns, int runlen, int lowlen, int bk) {
    int per = pft_cdiv(runlen, bk);
    pft_kstep s;
    if (t < nruns * per) {
        s.run = t / per;
        s.kofs = (t % per) * bk;
        s.klen = pft_min(bk, runlen - s.kofs);
    } else {
        s.run = nruns;
        s.kofs = (t - nruns * per) * bk;
        s.klen = pft_min(bk, lowlen - s.kofs);
    }
    return s;
}

// ---- forward: y[n, p*ob+o] = sum_k sum_i x[n, q*ib+i] S[p][k][o][i] + sum_j xv[n,j] U[p*ob+o, j]
// K-step s of CTA c (p = c.blk): run k <= nf reads x[:, q-block] with q = col(p, k) and the
// block S[p][k] ([ob][ib], read as [o][i]: K-contiguous); run nf+1 reads xv [N, r] and U's
// rows p*ob.. ([out][r]: K-contiguous).
PFT_FN pft_src pft_fwd_a(pft_dims d, pft_cta c, pft_kstep s) {
    pft_src a;
    if (s.run <= d.nf) {
        int q = pft_col(d, c.blk, s.run);
        a.off = (int64_t)c.m0 * d.in + (int64_t)q * d.ib + s.kofs;
        a.ld = d.in;
    } else {
        a.off = (int64_t)c.m0 * d.r + s.kofs;
        a.ld = d.r;
    }
    a.rows = d.N - c.m0;
    a.cols = s.klen;
    return a;
}

PFT_FN pft_src pft_fwd_b(pft_dims d, pft_cta c, pft_kstep s) {
    pft_src b;
    if (s.run <= d.nf) {
        b.off = (((int64_t)c.blk * (d.nf + 1) + s.run) * d.ob + c.c0) * d.ib + s.kofs;
        b.ld = d.ib;
    } else {
        b.off = ((int64_t)c.blk * d.ob + c.c0) * d.r + s.kofs;
        b.ld = d.r;
    }
    b.rows = d.ob - c.c0;
    b.cols = s.klen;
    return b;
}

// Output tile in y [N, out]; the bias index of tile column j is pft_fwd_bias(d, c) + j.
PFT_FN pft_src pft_fwd_out(pft_dims d, pft_cta c) {
    pft_src o;
    o.off = (int64_t)c.m0 * d.out + (int64_t)c.blk * d.ob + c.c0;
    o.ld = d.out;
    o.rows = d.N - c.m0;
    o.cols = d.ob - c.c0;
    return o;
}
PFT_FN int64_t pft_fwd_bias(pft_dims d, pft_cta c) { return (int64_t)c.blk * d.ob + c.c0; }

// ---- dX: dx[n, q*ib+i] += sum_k sum_o dy[n, p'*ob+o] S[p'][k][o][i] + sum_j dxv[n,j] V[j, q*ib+i]
// with p' = src(q, k): the super-row whose slot k is q, so S[p'][k] is the block (p', q). Run
// k <= nf reads dy[:, p'-block] and S[p'][k] as stored ([o][i]: N-contiguous); run nf+1 reads
// dxv [N, r] and V's columns q*ib.. ([r][in]: N-contiguous).
PFT_FN pft_src pft_dx_a(pft_dims d, pft_cta c, pft_kstep s) {
    pft_src a;
    if (s.run <= d.nf) {
        int p2 = pft_src_row(d, c.blk, s.run);
        a.off = (int64_t)c.m0 * d.out + (int64_t)p2 * d.ob + s.kofs;
        a.ld = d.out;
    } else {
        a.off = (int64_t)c.m0 * d.r + s.kofs;
        a.ld = d.r;
    }
    a.rows = d.N - c.m0;
    a.cols = s.klen;
    return a;
}

PFT_FN pft_src pft_dx_b(pft_dims d, pft_cta c, pft_kstep s) {
    pft_src b;
    if (s.run <= d.nf) {
        int p2 = pft_src_row(d, c.blk, s.run);
        b.off = (((int64_t)p2 * (d.nf + 1) + s.run) * d.ob + s.kofs) * d.ib + c.c0;
        b.ld = d.ib;
    } else {
        b.off = (int64_t)s.kofs * d.in + (int64_t)c.blk * d.ib + c.c0;
        b.ld = d.in;
    }
    b.rows = s.klen;
    b.cols = d.ib - c.c0;
    return b;
}

// Output tile in dx [N, in].
PFT_FN pft_src pft_dx_out(pft_dims d, pft_cta c) {
    pft_src o;
    o.off = (int64_t)c.m0 * d.in + (int64_t)c.blk * d.ib + c.c0;
    o.ld = d.in;
    o.rows = d.N - c.m0;
    o.cols = d.ib - c.c0;
    return o;
}

// ---- dS: dS[p][k][o][i] += sum_n dy[n, p*ob+o] x[n, q*ib+i], q = col(p, k) ----------------
// Only the bs*(nf+1) stored blocks. Tokens (K) are split into `splits` chunks of `chunk`
// tokens (a multiple of bk); chunk s writes its own partial sums, reduced in split order.
// Grid: x = blk * (row tiles * column tiles) + row tile * column tiles + column tile,
// y = split.
PFT_FN int pft_ds_grid_x(pft_dims d, int bm, int bn) {
    return d.bs * (d.nf + 1) * pft_cdiv(d.ob, bm) * pft_cdiv(d.ib, bn);
}

// Tokens per split for about `want` splits (at least 1, chunks of at least min_chunk tokens
// when N allows), rounded up to a multiple of bk. N >= 1.
PFT_FN int pft_ds_chunk(int N, int want, int min_chunk, int bk) {
    int most = N / (min_chunk > 0 ? min_chunk : 1);
    if (want > most) want = most;
    if (want < 1) want = 1;
    return pft_cdiv(pft_cdiv(N, want), bk) * bk;
}
PFT_FN int pft_ds_splits(int N, int chunk) { return pft_cdiv(N, chunk); }

PFT_FN pft_ds_cta pft_ds_tile(pft_dims d, int bx, int by, int bm, int bn, int chunk) {
    int tr = pft_cdiv(d.ob, bm), tc = pft_cdiv(d.ib, bn), rem = bx % (tr * tc);
    pft_ds_cta c;
    c.blk = bx / (tr * tc);
    c.o0 = (rem / tc) * bm;
    c.c0 = (rem % tc) * bn;
    c.n_begin = by * chunk;
    c.n_end = pft_min(d.N, c.n_begin + chunk);
    return c;
}

PFT_FN int pft_ds_ksteps(pft_ds_cta c, int bk) {
    return c.n_end > c.n_begin ? pft_cdiv(c.n_end - c.n_begin, bk) : 0;
}

PFT_FN pft_kstep pft_ds_kstep(pft_ds_cta c, int t, int bk) {
    pft_kstep s;
    s.run = c.blk;
    s.kofs = c.n_begin + t * bk;
    s.klen = pft_min(bk, c.n_end - s.kofs);
    return s;
}

// A: dy[kofs.., p*ob + o0..] stored [tokens][o] (M-contiguous).
PFT_FN pft_src pft_ds_a(pft_dims d, pft_ds_cta c, pft_kstep s) {
    int p = c.blk / (d.nf + 1);
    pft_src a;
    a.off = (int64_t)s.kofs * d.out + (int64_t)p * d.ob + c.o0;
    a.ld = d.out;
    a.rows = s.klen;
    a.cols = d.ob - c.o0;
    return a;
}

// B: x[kofs.., q*ib + c0..] stored [tokens][i] (N-contiguous).
PFT_FN pft_src pft_ds_b(pft_dims d, pft_ds_cta c, pft_kstep s) {
    int p = c.blk / (d.nf + 1), k = c.blk % (d.nf + 1), q = pft_col(d, p, k);
    pft_src b;
    b.off = (int64_t)s.kofs * d.in + (int64_t)q * d.ib + c.c0;
    b.ld = d.in;
    b.rows = s.klen;
    b.cols = d.ib - c.c0;
    return b;
}

// Output tile in dS [bs][nf+1][ob][ib] (or in one split's partial sums, same layout).
PFT_FN pft_src pft_ds_out(pft_dims d, pft_ds_cta c) {
    pft_src o;
    o.off = ((int64_t)c.blk * d.ob + c.o0) * d.ib + c.c0;
    o.ld = d.ib;
    o.rows = d.ob - c.o0;
    o.cols = d.ib - c.c0;
    return o;
}

// ---- tile shape per call -----------------------------------------------------------------
// The forward and dX kernels come in three tile shapes (cuda_pixelfly.cu, PfTile):
//   PFT_TILE_L: BM 128 x BN 128, PFT_TILE_M: 128 x 64, PFT_TILE_S: 64 x 64 (also dS's).
// Chosen from the output super-block width (ob forward, ib for dX): L when the width is a
// multiple of 128 (256 at 1024<->4096 bs=16), M above 32 (192 and 48 at GPT-2 sizes: 3 and 1
// tiles with at most 25% padding), S for narrow blocks, where more token tiles matter more.
enum { PFT_TILE_L, PFT_TILE_M, PFT_TILE_S };
PFT_FN int pft_pick_tile(int width) {
    return width % 128 == 0 ? PFT_TILE_L : width > 32 ? PFT_TILE_M : PFT_TILE_S;
}

#endif
