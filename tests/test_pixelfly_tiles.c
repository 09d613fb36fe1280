// test_pixelfly_tiles.c: the index arithmetic of the CUDA Pixelfly kernels
// (kernels/pixelfly_tiles.h), replayed on the CPU. For each op (forward, dX, dS) and several
// layer shapes and tile shapes (multiples of the tile and not, N below one tile, N = 1), every
// CTA of the grid is walked as the kernel walks it: each K-step's A and B tiles are staged
// through the header's descriptors (every real read checked to lie inside its tensor, the rest
// zero as the kernel's loader fills them), multiplied into a tile accumulator, and written
// through the output descriptor. Checked: every output element is written exactly once (dS: once
// per token split), each sums exactly the expected number of real products, and the results
// equal a dense reference built with pf_pattern_to_dense / pf_pattern_col (src/pattern.h).
// The masks: flat butterflies, random masks and butterfly factors, their tables passed to the
// header as host pointers. A random mask's src differs from its col (checked), so a dX that
// gathered through col(q, k), as the xor masks allow, would miss the reference.
// Inputs are small integers, so every sum is exact and "equal" means bit-equal.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "common.h"
#include "pattern.h"
#include "pixelfly_tiles.h"

// ck_assert marks a point (a write to Check's pipe) on every call; in the loops below that
// is most of the run time, so these checks reach Check only when they fail.
#define REQUIRE(c)                                                          \
    do {                                                                    \
        if (!(c)) ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #c); \
    } while (0)
#define REQUIRE_MSG(c, ...)                 \
    do {                                    \
        if (!(c)) ck_abort_msg(__VA_ARGS__); \
    } while (0)

typedef struct {
    int bm, bn, bk;
} tile_cfg;

// The kernels' shapes (cuda_pixelfly.cu: PfTile L, M, S with BK 32) and two odd ones that
// stress the arithmetic (narrow tiles, BN not a power of two).
static const tile_cfg cfgs[] = {{128, 128, 32}, {128, 64, 32}, {64, 64, 32}, {16, 16, 16},
                                {32, 48, 16}};
#define NCFG ((int)(sizeof cfgs / sizeof cfgs[0]))

// mask PF_MASK_FLAT_BUTTERFLY: bs, nf; PF_MASK_RANDOM: nf+1 blocks per super-row (seed N);
// PF_MASK_BUTTERFLY_FACTOR: stride nf (the pattern's nf is 1), r must be 0.
typedef struct {
    int N, out, in, bs, nf, r;
    pf_mask_kind mask;
} shape;

#define FLAT PF_MASK_FLAT_BUTTERFLY
#define RAND PF_MASK_RANDOM
#define FACT PF_MASK_BUTTERFLY_FACTOR
static const shape shapes[] = {
    {67, 64, 64, 4, 1, 0, FLAT},      {67, 80, 96, 4, 2, 5, FLAT},
    {67, 96, 80, 8, 3, 5, FLAT},      {5, 128, 64, 8, 2, 0, FLAT},
    {1, 64, 128, 8, 1, 5, FLAT},      {33, 256, 256, 4, 2, 7, FLAT},
    {300, 384, 96, 8, 2, 16, FLAT},   {40, 3072, 768, 16, 2, 32, FLAT},
    {129, 48, 160, 2, 1, 3, FLAT},    {64, 1024, 256, 4, 2, 0, FLAT},
    {40, 768, 3072, 16, 2, 32, FLAT}, {70, 512, 1024, 4, 1, 3, FLAT},
    {1000, 128, 64, 4, 2, 8, FLAT},
    {67, 80, 96, 8, 2, 5, RAND},      {300, 384, 96, 16, 4, 0, RAND},
    {1, 64, 128, 8, 1, 5, RAND},      {40, 768, 3072, 16, 2, 32, RAND},
    {129, 96, 160, 32, 5, 3, RAND},  // ob 3, ib 5
    {67, 64, 64, 8, 4, 0, FACT},      {130, 256, 64, 16, 1, 0, FACT},
    {40, 3072, 768, 16, 8, 0, FACT},
};
#define NSHAPE ((int)(sizeof shapes / sizeof shapes[0]))

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double irand(void) {  // an integer in [-3, 3]
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)((int)(rng >> 33) % 7 - 3);
}

static double *rand_array(int64_t n) {
    double *a = pf_malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) a[i] = irand();
    return a;
}

// The tensors of one layer and batch, and the dense reference results.
typedef struct {
    pf_pattern p;
    pft_dims d;
    int64_t nS;
    double *x, *xv, *S, *U, *V, *b, *dy, *dxv;  // inputs
    double *y, *dx, *dS;                        // references
} layer;

static void layer_make(layer *L, const shape *s) {
    int rc = s->mask == RAND ? pf_pattern_init_random(&L->p, s->out, s->in, s->bs, s->nf + 1,
                                                      s->r, true, (uint64_t)s->N)
             : s->mask == FACT ? pf_pattern_init_factor(&L->p, s->out, s->in, s->bs, s->nf, true)
                               : pf_pattern_init(&L->p, s->out, s->in, s->bs, s->nf, s->r, true);
    ck_assert_msg(rc == 0, "%s", pf_errmsg());
    const pf_pattern *p = &L->p;
    L->d = (pft_dims){.N = s->N, .out = p->out, .in = p->in, .bs = p->bs, .nf = p->nf,
                      .r = p->rank, .ob = p->ob, .ib = p->ib, .col = p->col, .src = p->src};
    if (s->mask == RAND) {  // the case this test is for: src(q, k) != col(q, k) somewhere
        bool differs = false;
        for (int q = 0; q < p->bs; q++)
            for (int k = 0; k <= p->nf; k++)
                differs |= pf_pattern_src(p, q, k) != pf_pattern_col(p, q, k);
        REQUIRE(differs);
    }
    int N = s->N, out = p->out, in = p->in, r = p->rank;
    L->nS = pf_pattern_sparse_numel(p);
    L->x = rand_array((int64_t)N * in);
    L->xv = rand_array((int64_t)N * r);
    L->S = rand_array(L->nS);
    L->U = rand_array((int64_t)out * r);
    L->V = rand_array((int64_t)r * in);
    L->b = rand_array(out);
    L->dy = rand_array((int64_t)N * out);
    L->dxv = rand_array((int64_t)N * r);

    // W = the dense [out, in] matrix of S (zeros outside the mask), built by pattern.c.
    float *Sf = pf_malloc(sizeof(float) * (size_t)L->nS);
    float *Wf = pf_malloc(sizeof(float) * (size_t)out * in);
    for (int64_t i = 0; i < L->nS; i++) Sf[i] = (float)L->S[i];
    pf_pattern_to_dense(p, Sf, Wf);
    // y = x W^T + xv U^T + b;  dx = dy W + dxv V;  dS[p][k] = (dy^T x) at block (p, col(p, k))
    L->y = pf_malloc(sizeof(double) * (size_t)N * out + 8);
    L->dx = pf_malloc(sizeof(double) * (size_t)N * in + 8);
    L->dS = pf_malloc(sizeof(double) * (size_t)L->nS);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double v = L->b[o];
            for (int i = 0; i < in; i++) v += L->x[(int64_t)n * in + i] * Wf[(int64_t)o * in + i];
            for (int j = 0; j < r; j++) v += L->xv[(int64_t)n * r + j] * L->U[(int64_t)o * r + j];
            L->y[(int64_t)n * out + o] = v;
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double v = 0;
            for (int o = 0; o < out; o++) v += L->dy[(int64_t)n * out + o] * Wf[(int64_t)o * in + i];
            for (int j = 0; j < r; j++) v += L->dxv[(int64_t)n * r + j] * L->V[(int64_t)j * in + i];
            L->dx[(int64_t)n * in + i] = v;
        }
    for (int row = 0; row < p->bs; row++)
        for (int k = 0; k <= p->nf; k++) {
            int q = pf_pattern_col(p, row, k);
            for (int o = 0; o < p->ob; o++)
                for (int i = 0; i < p->ib; i++) {
                    double v = 0;
                    for (int n = 0; n < N; n++)
                        v += L->dy[(int64_t)n * out + row * p->ob + o] *
                             L->x[(int64_t)n * in + q * p->ib + i];
                    L->dS[(((int64_t)row * (p->nf + 1) + k) * p->ob + o) * p->ib + i] = v;
                }
        }
    free(Sf);
    free(Wf);
}

static void layer_free(layer *L) {
    double *all[] = {L->x, L->xv, L->S, L->U, L->V, L->b, L->dy, L->dxv, L->y, L->dx, L->dS};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

// One staged operand tile as the kernel's loader fills shared memory, in GEMM orientation
// (A: [bm][bk], B: [bk][bn]): real elements read through the descriptor, the rest zero.
typedef struct {
    double *v;
    bool *real;
} staged;

// GEMM element (i, j) of a rows_g x cols_g tile is the descriptor's stored element (i, j), or
// (j, i) when `trans` (a K-contiguous B, an M-contiguous A); base holds n elements.
static void stage(staged *t, int rows_g, int cols_g, bool trans, const double *base, int64_t n,
                  pft_src s) {
    for (int i = 0; i < rows_g; i++)
        for (int j = 0; j < cols_g; j++) {
            int r = trans ? j : i, c = trans ? i : j;
            bool real = r < s.rows && c < s.cols;
            double v = 0;
            if (real) {
                int64_t idx = s.off + (int64_t)r * s.ld + c;
                REQUIRE_MSG(idx >= 0 && idx < n, "read at %lld outside [0, %lld)",
                              (long long)idx, (long long)n);
                v = base[idx];
            }
            t->v[(int64_t)i * cols_g + j] = v;
            t->real[(int64_t)i * cols_g + j] = real;
        }
}

// acc[bm][bn] += A[bm][bk] B[bk][bn]; cnt counts products of two real elements. A padding
// element is a staged zero, so its products are skipped (they add 0 and count 0).
static void tile_mma(const tile_cfg *t, const staged *A, const staged *B, double *acc,
                     int *cnt) {
    for (int m = 0; m < t->bm; m++)
        for (int k = 0; k < t->bk; k++) {
            double a = A->v[m * t->bk + k];
            bool ra = A->real[m * t->bk + k];
            if (!ra) {
                REQUIRE(a == 0);
                continue;
            }
            for (int n = 0; n < t->bn; n++) {
                acc[m * t->bn + n] += a * B->v[k * t->bn + n];
                cnt[m * t->bn + n] += ra && B->real[k * t->bn + n];
            }
        }
}

typedef struct {
    staged A, B;
    double *acc;
    int *cnt;
} workspace;

static void ws_make(workspace *w, const tile_cfg *t) {
    size_t a = (size_t)t->bm * t->bk, b = (size_t)t->bk * t->bn, c = (size_t)t->bm * t->bn;
    w->A = (staged){pf_malloc(sizeof(double) * a), pf_malloc(sizeof(bool) * a)};
    w->B = (staged){pf_malloc(sizeof(double) * b), pf_malloc(sizeof(bool) * b)};
    w->acc = pf_malloc(sizeof(double) * c);
    w->cnt = pf_malloc(sizeof(int) * c);
}

static void ws_free(workspace *w) {
    free(w->A.v), free(w->A.real), free(w->B.v), free(w->B.real), free(w->acc), free(w->cnt);
}

// One K-step's klen is in [1, bk] and the kernel's 16-wide MMA steps cover it.
static void check_kstep(pft_kstep s, int bk) {
    REQUIRE(s.klen >= 1 && s.klen <= bk);
    int steps16 = (s.klen + 15) / 16;
    REQUIRE(steps16 * 16 >= s.klen && steps16 * 16 <= ((bk + 15) / 16) * 16);
}

// ---- forward ---------------------------------------------------------------------------------

static void run_fwd(const layer *L, const tile_cfg *t) {
    pft_dims d = L->d;
    int64_t ny = (int64_t)d.N * d.out;
    double *y = pf_malloc(sizeof(double) * (size_t)(ny + 1));
    int *writes = calloc((size_t)ny + 1, sizeof(int));
    workspace w;
    ws_make(&w, t);
    int gx = pft_grid_x(d.bs, d.ob, t->bn), gy = pft_grid_y(d.N, t->bm);
    int steps = pft_ksteps(d.nf + 1, d.ib, d.r, t->bk);
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            pft_cta c = pft_rowtile(bx, by, d.ob, t->bm, t->bn);
            REQUIRE(c.blk >= 0 && c.blk < d.bs && c.c0 < d.ob && c.m0 < d.N);
            memset(w.acc, 0, sizeof(double) * (size_t)t->bm * t->bn);
            memset(w.cnt, 0, sizeof(int) * (size_t)t->bm * t->bn);
            for (int ts = 0; ts < steps; ts++) {
                pft_kstep s = pft_kstep_at(ts, d.nf + 1, d.ib, d.r, t->bk);
                check_kstep(s, t->bk);
                bool sparse = s.run <= d.nf;
                stage(&w.A, t->bm, t->bk, !PFT_FWD_AK, sparse ? L->x : L->xv,
                      sparse ? (int64_t)d.N * d.in : (int64_t)d.N * d.r, pft_fwd_a(d, c, s));
                stage(&w.B, t->bk, t->bn, PFT_FWD_BK, sparse ? L->S : L->U,
                      sparse ? L->nS : (int64_t)d.out * d.r, pft_fwd_b(d, c, s));
                tile_mma(t, &w.A, &w.B, w.acc, w.cnt);
            }
            pft_src o = pft_fwd_out(d, c);
            int64_t bias = pft_fwd_bias(d, c);
            for (int m = 0; m < t->bm; m++)
                for (int n = 0; n < t->bn; n++) {
                    if (!(m < o.rows && n < o.cols)) continue;
                    int64_t idx = o.off + (int64_t)m * o.ld + n;
                    REQUIRE(idx >= 0 && idx < ny && bias + n < d.out);
                    y[idx] = w.acc[m * t->bn + n] + L->b[bias + n];
                    writes[idx]++;
                    REQUIRE(w.cnt[m * t->bn + n] == (d.nf + 1) * d.ib + d.r);
                }
        }
    for (int64_t i = 0; i < ny; i++) {
        REQUIRE_MSG(writes[i] == 1, "y[%lld] written %d times", (long long)i, writes[i]);
        REQUIRE_MSG(y[i] == L->y[i], "y[%lld] = %g, expected %g", (long long)i, y[i], L->y[i]);
    }
    ws_free(&w);
    free(y);
    free(writes);
}

// ---- dX ------------------------------------------------------------------------------------

static void run_dx(const layer *L, const tile_cfg *t) {
    pft_dims d = L->d;
    int64_t nx = (int64_t)d.N * d.in;
    double *dx = calloc((size_t)nx + 1, sizeof(double));
    int *writes = calloc((size_t)nx + 1, sizeof(int));
    workspace w;
    ws_make(&w, t);
    int gx = pft_grid_x(d.bs, d.ib, t->bn), gy = pft_grid_y(d.N, t->bm);
    int steps = pft_ksteps(d.nf + 1, d.ob, d.r, t->bk);
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            pft_cta c = pft_rowtile(bx, by, d.ib, t->bm, t->bn);
            REQUIRE(c.blk >= 0 && c.blk < d.bs && c.c0 < d.ib && c.m0 < d.N);
            memset(w.acc, 0, sizeof(double) * (size_t)t->bm * t->bn);
            memset(w.cnt, 0, sizeof(int) * (size_t)t->bm * t->bn);
            for (int ts = 0; ts < steps; ts++) {
                pft_kstep s = pft_kstep_at(ts, d.nf + 1, d.ob, d.r, t->bk);
                check_kstep(s, t->bk);
                bool sparse = s.run <= d.nf;
                if (sparse)  // S[p'][k] really is the block (p', q): slot k of row p' is q
                    REQUIRE(pf_pattern_slot(&L->p, pft_src_row(d, c.blk, s.run), c.blk) ==
                            s.run);
                stage(&w.A, t->bm, t->bk, !PFT_DX_AK, sparse ? L->dy : L->dxv,
                      sparse ? (int64_t)d.N * d.out : (int64_t)d.N * d.r, pft_dx_a(d, c, s));
                stage(&w.B, t->bk, t->bn, PFT_DX_BK, sparse ? L->S : L->V,
                      sparse ? L->nS : (int64_t)d.r * d.in, pft_dx_b(d, c, s));
                tile_mma(t, &w.A, &w.B, w.acc, w.cnt);
            }
            pft_src o = pft_dx_out(d, c);
            for (int m = 0; m < t->bm; m++)
                for (int n = 0; n < t->bn; n++) {
                    if (!(m < o.rows && n < o.cols)) continue;
                    int64_t idx = o.off + (int64_t)m * o.ld + n;
                    REQUIRE(idx >= 0 && idx < nx);
                    dx[idx] += w.acc[m * t->bn + n];
                    writes[idx]++;
                    REQUIRE(w.cnt[m * t->bn + n] == (d.nf + 1) * d.ob + d.r);
                }
        }
    for (int64_t i = 0; i < nx; i++) {
        REQUIRE_MSG(writes[i] == 1, "dx[%lld] written %d times", (long long)i, writes[i]);
        REQUIRE_MSG(dx[i] == L->dx[i], "dx[%lld] = %g, expected %g", (long long)i, dx[i],
                      L->dx[i]);
    }
    ws_free(&w);
    free(dx);
    free(writes);
}

// ---- dS --------------------------------------------------------------------------------------

static void run_ds(const layer *L, const tile_cfg *t, int want, int min_chunk) {
    pft_dims d = L->d;
    int64_t nS = L->nS;
    int chunk = pft_ds_chunk(d.N, want, min_chunk, t->bk);
    int splits = pft_ds_splits(d.N, chunk);
    REQUIRE(chunk % t->bk == 0);
    REQUIRE(splits >= 1 && splits <= (want > 1 ? want : 1));
    REQUIRE((int64_t)(splits - 1) * chunk < d.N && (int64_t)splits * chunk >= d.N);
    // part[s][e]: split s's partial sums (the kernel's scratch), reduced in split order.
    double *part = pf_malloc(sizeof(double) * (size_t)(splits * nS));
    int *writes = calloc((size_t)(splits * nS), sizeof(int));
    int *real = calloc((size_t)nS, sizeof(int));
    workspace w;
    ws_make(&w, t);
    int gx = pft_ds_grid_x(d, t->bm, t->bn);
    for (int by = 0; by < splits; by++)
        for (int bx = 0; bx < gx; bx++) {
            pft_ds_cta c = pft_ds_tile(d, bx, by, t->bm, t->bn, chunk);
            REQUIRE(c.blk >= 0 && c.blk < d.bs * (d.nf + 1) && c.o0 < d.ob && c.c0 < d.ib);
            REQUIRE(c.n_begin < c.n_end && c.n_end <= d.N);
            memset(w.acc, 0, sizeof(double) * (size_t)t->bm * t->bn);
            memset(w.cnt, 0, sizeof(int) * (size_t)t->bm * t->bn);
            int steps = pft_ds_ksteps(c, t->bk);
            for (int ts = 0; ts < steps; ts++) {
                pft_kstep s = pft_ds_kstep(c, ts, t->bk);
                check_kstep(s, t->bk);
                stage(&w.A, t->bm, t->bk, !PFT_DS_AK, L->dy, (int64_t)d.N * d.out,
                      pft_ds_a(d, c, s));
                stage(&w.B, t->bk, t->bn, PFT_DS_BK, L->x, (int64_t)d.N * d.in,
                      pft_ds_b(d, c, s));
                tile_mma(t, &w.A, &w.B, w.acc, w.cnt);
            }
            pft_src o = pft_ds_out(d, c);
            for (int m = 0; m < t->bm; m++)
                for (int n = 0; n < t->bn; n++) {
                    if (!(m < o.rows && n < o.cols)) continue;
                    int64_t idx = o.off + (int64_t)m * o.ld + n;
                    REQUIRE(idx >= 0 && idx < nS);
                    part[by * nS + idx] = w.acc[m * t->bn + n];
                    writes[by * nS + idx]++;
                    real[idx] += w.cnt[m * t->bn + n];
                }
        }
    for (int64_t e = 0; e < nS; e++) {
        double v = 0;
        for (int s = 0; s < splits; s++) {
            REQUIRE_MSG(writes[s * nS + e] == 1, "dS[%lld] split %d written %d times",
                          (long long)e, s, writes[s * nS + e]);
            v += part[s * nS + e];
        }
        REQUIRE(real[e] == d.N);
        REQUIRE_MSG(v == L->dS[e], "dS[%lld] = %g, expected %g", (long long)e, v, L->dS[e]);
    }
    ws_free(&w);
    free(part);
    free(writes);
    free(real);
}

// ---- cases ---------------------------------------------------------------------------------

START_TEST(test_forward) {
    layer L;
    layer_make(&L, &shapes[_i]);
    for (int c = 0; c < NCFG; c++) run_fwd(&L, &cfgs[c]);
    layer_free(&L);
}
END_TEST

START_TEST(test_dx) {
    layer L;
    layer_make(&L, &shapes[_i]);
    for (int c = 0; c < NCFG; c++) run_dx(&L, &cfgs[c]);
    layer_free(&L);
}
END_TEST

START_TEST(test_ds) {
    layer L;
    layer_make(&L, &shapes[_i]);
    static const int wants[][2] = {{1, 1}, {2, 1}, {3, 32}, {7, 1}, {1000, 64}, {1000, 1}};
    for (int c = 0; c < NCFG; c++)
        for (size_t w = 0; w < sizeof wants / sizeof wants[0]; w++)
            run_ds(&L, &cfgs[c], wants[w][0], wants[w][1]);
    layer_free(&L);
}
END_TEST

// K-steps: the runs are visited in order, each K index of each run exactly once.
START_TEST(test_ksteps) {
    for (int nruns = 1; nruns <= 5; nruns++)
        for (int runlen = 1; runlen <= 100; runlen += 7)
            for (int lowlen = 0; lowlen <= 70; lowlen += 5)
                for (int bk = 16; bk <= 32; bk += 16) {
                    int steps = pft_ksteps(nruns, runlen, lowlen, bk);
                    int seen[6][100] = {{0}};
                    int prev = 0;
                    for (int t = 0; t < steps; t++) {
                        pft_kstep s = pft_kstep_at(t, nruns, runlen, lowlen, bk);
                        check_kstep(s, bk);
                        REQUIRE(s.run >= prev && s.run <= nruns);
                        prev = s.run;
                        int len = s.run < nruns ? runlen : lowlen;
                        REQUIRE(s.kofs % bk == 0 && s.kofs + s.klen <= len);
                        for (int k = s.kofs; k < s.kofs + s.klen; k++) seen[s.run][k]++;
                    }
                    for (int run = 0; run <= nruns; run++)
                        for (int k = 0; k < (run < nruns ? runlen : lowlen); k++)
                            REQUIRE(seen[run][k] == 1);
                }
}
END_TEST

// The tile choice: every width gets a shape, multiples of 128 the wide one.
START_TEST(test_pick_tile) {
    ck_assert_int_eq(pft_pick_tile(256), PFT_TILE_L);
    ck_assert_int_eq(pft_pick_tile(128), PFT_TILE_L);
    ck_assert_int_eq(pft_pick_tile(192), PFT_TILE_M);
    ck_assert_int_eq(pft_pick_tile(48), PFT_TILE_M);
    ck_assert_int_eq(pft_pick_tile(24), PFT_TILE_S);
    ck_assert_int_eq(pft_pick_tile(8), PFT_TILE_S);
    for (int w = 1; w <= 1024; w++) {
        int k = pft_pick_tile(w);
        ck_assert(k == PFT_TILE_L || k == PFT_TILE_M || k == PFT_TILE_S);
    }
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("pixelfly_tiles");
    TCase *tc = tcase_create("tiles");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_forward, 0, NSHAPE);
    tcase_add_loop_test(tc, test_dx, 0, NSHAPE);
    tcase_add_loop_test(tc, test_ds, 0, NSHAPE);
    tcase_add_test(tc, test_ksteps);
    tcase_add_test(tc, test_pick_tile);
    suite_add_tcase(s, tc);
    return s;
}
