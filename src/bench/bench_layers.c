// bench_layers.c: `pfbench kernels` (one layer's fwd, dX and dS passes, Pixelfly against
// dense, with roofline bounds and, on CUDA, cuSPARSE Blocked-ELL) and `pfbench kinds` (every
// layer kind at one budget, through the calls a model makes). src/cli/pfbench.c documents both.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "layers.h"
#ifdef PF_CUDA
#include "cuda_bench.h"
#endif

// ---- kernels -------------------------------------------------------------------------------

typedef enum { PASS_FWD, PASS_DX, PASS_DS, PASS_COUNT } pass_kind;
static const char *const pass_name[PASS_COUNT] = {"fwd", "dX", "dS"};

// The sizes of one op that its roofline bound depends on: the Pixelfly op (nnz stored
// weights, rank r) or a dense linear op (nnz = out x in, r = 0).
typedef struct {
    double nnz, r, in, out, b;  // b: out with a bias, else 0
} op_dims;

static op_dims pattern_dims(const pf_pattern *p) {
    return (op_dims){(double)pf_pattern_sparse_numel(p), p->rank, p->in, p->out,
                     p->bias ? p->out : 0};
}

static op_dims dense_dims(int out, int in, bool bias) {
    return (op_dims){(double)out * in, 0, in, out, bias ? out : 0};
}

// Nonzero FLOPs of one pass of an op, 2 per multiply-add of what the call computes:
//   fwd: y = x S^T + (x V^T) U^T;  dX: dx = dy S + (dy U) V;
//   dS: dS = dy^T x, dU = dy^T xv, dV = (dy U)^T x (dxv = dy U recomputed: a dS-only call
//       has no dX pass to share it with).
// A dense linear op is the case S = W, r = 0: 2 N in out each (bias terms are not counted).
static double pass_flops(pass_kind k, const op_dims *d, int64_t N) {
    if (k == PASS_DS) return 2.0 * N * (d->nnz + d->r * (2 * d->out + d->in));
    return 2.0 * N * (d->nnz + d->r * (d->in + d->out));
}

// Minimum bytes one pass moves to and from memory: every tensor it needs read once, every
// output written once. e = the backend's activation element size (x, y, dy, dx, xv, dxv and
// the weights S, U, V, b it computes with); weight gradients are fp32 (4 bytes).
//   fwd: reads x [N,in], S (nnz), U [out,r], V [r,in], b [out]; writes y [N,out], xv [N,r]
//   dX:  reads dy [N,out], S, U, V and dxv [N,r]; reads and writes dx [N,in] (accumulated)
//   dS:  reads dy and x (and xv, U when r > 0: dU and dV need them); reads and writes dS
//        (nnz, fp32), dU, dV (r > 0) and db (with a bias): gradients are accumulated
static double pass_bytes(pass_kind k, const op_dims *d, int64_t N, int e) {
    double nnz = d->nnz, r = d->r, in = d->in, out = d->out, b = d->b;
    switch (k) {
    case PASS_FWD: return e * (N * in + nnz + r * (out + in) + b + N * out + N * r);
    case PASS_DX: return e * (N * out + nnz + r * (out + in) + N * r + 2.0 * N * in);
    default:
        return e * (N * out + N * in + N * r + out * r) + 4.0 * 2 * (nnz + r * (out + in) + b);
    }
}

// The buffers of one layer shape and token count (dense and shared), and of one pattern.
typedef struct {
    const pf_backend *be;
    pf_dtype act;
    pf_pattern pat;
    pf_tensor x, y, dy, dx, b, db;  // activations and bias: act dtype; db fp32
    pf_tensor w, dw;                // dense weight (act) and its gradient (fp32)
    pf_tensor xv, dxv;              // [N, r] act, Pixelfly with a rank only
    pf_pixelfly_w pw, pg;           // Pixelfly weights (act) and gradients (fp32)
#ifdef PF_CUDA
    pf_bell *bell;
#endif
} layer_bench;

static void dense_fwd(void *c) {
    layer_bench *l = c;
    l->be->linear_fwd(l->y, l->x, l->w, l->b);
}
static void dense_dx(void *c) {
    layer_bench *l = c;
    l->be->linear_bwd(l->dx, pf_none(), pf_none(), l->dy, l->x, l->w);
}
static void dense_dw(void *c) {
    layer_bench *l = c;
    l->be->linear_bwd(pf_none(), l->dw, l->db, l->dy, l->x, l->w);
}
static void sparse_fwd(void *c) {
    layer_bench *l = c;
    l->be->pixelfly_fwd(&l->pat, l->y, l->xv, l->x, l->pw);
}
static void sparse_dx(void *c) {
    layer_bench *l = c;
    l->be->pixelfly_bwd(&l->pat, l->dx, (pf_pixelfly_w){0}, l->dxv, l->dy, l->x, l->xv, l->pw);
}
static void sparse_ds(void *c) {
    layer_bench *l = c;
    l->be->pixelfly_bwd(&l->pat, pf_none(), l->pg, l->dxv, l->dy, l->x, l->xv, l->pw);
}
#ifdef PF_CUDA
static void bell_fwd(void *c) { pf_cuda_bell_run(((layer_bench *)c)->bell); }
#endif

static const bench_fn dense_pass[PASS_COUNT] = {dense_fwd, dense_dx, dense_dw};
static const bench_fn sparse_pass[PASS_COUNT] = {sparse_fwd, sparse_dx, sparse_ds};

static pf_tensor dev_buf(const pf_backend *be, pf_dtype dt, int64_t a, int64_t b, pf_rng *rng) {
    return pf_tensor_2d(bench_random_buffer(be, a * b, dt, rng), dt, be->device, a, b);
}

static void free_tensors(const pf_backend *be, pf_tensor *ts, int n) {
    for (int i = 0; i < n; i++)
        if (ts[i].data) be->free(ts[i].data);
}

// Activations, bias and the dense weight of an in x out layer at N tokens.
static void layer_alloc(layer_bench *l, const pf_backend *be, int in, int out, int N,
                        pf_rng *rng) {
    memset(l, 0, sizeof *l);
    l->be = be;
    l->act = be->act_dtype;
    l->x = dev_buf(l->be, l->act, N, in, rng);
    l->y = dev_buf(l->be, l->act, N, out, rng);
    l->dy = dev_buf(l->be, l->act, N, out, rng);
    l->dx = dev_buf(l->be, l->act, N, in, rng);
    l->w = dev_buf(l->be, l->act, out, in, rng);
    l->dw = dev_buf(l->be, PF_F32, out, in, rng);
    l->b = pf_tensor_1d(bench_random_buffer(be, out, l->act, rng), l->act, be->device, out);
    l->db = pf_tensor_1d(bench_random_buffer(be, out, PF_F32, rng), PF_F32, be->device, out);
}

static void layer_free(layer_bench *l) {
    pf_tensor ts[] = {l->x, l->y, l->dy, l->dx, l->w, l->dw, l->b, l->db};
    free_tensors(l->be, ts, (int)(sizeof ts / sizeof ts[0]));
}

// The Pixelfly weights and gradients of pattern p (same in, out and bias as the layer).
static void pixelfly_alloc(layer_bench *l, const pf_pattern *p, pf_rng *rng) {
    int64_t N = l->x.shape[0], sn = pf_pattern_sparse_numel(p);
    int r = p->rank;
    l->pat = *p;
    pf_tensor S = pf_tensor_4d(bench_random_buffer(l->be, sn, l->act, rng), l->act, l->be->device,
                               p->bs, p->nf + 1, p->ob, p->ib);
    pf_tensor dS = pf_tensor_4d(bench_random_buffer(l->be, sn, PF_F32, rng), PF_F32, l->be->device,
                                p->bs, p->nf + 1, p->ob, p->ib);
    l->pw = (pf_pixelfly_w){.S = S, .b = l->b};
    l->pg = (pf_pixelfly_w){.S = dS, .b = l->db};
    l->xv = l->dxv = pf_none();
    if (r > 0) {
        l->pw.U = dev_buf(l->be, l->act, p->out, r, rng);
        l->pw.V = dev_buf(l->be, l->act, r, p->in, rng);
        l->pg.U = dev_buf(l->be, PF_F32, p->out, r, rng);
        l->pg.V = dev_buf(l->be, PF_F32, r, p->in, rng);
        l->xv = dev_buf(l->be, l->act, N, r, rng);
        l->dxv = dev_buf(l->be, l->act, N, r, rng);
    }
}

static void pixelfly_free(layer_bench *l) {
    pf_tensor ts[] = {l->pw.S, l->pg.S, l->pw.U, l->pw.V, l->pg.U, l->pg.V, l->xv, l->dxv};
    free_tensors(l->be, ts, (int)(sizeof ts / sizeof ts[0]));
}

typedef struct {
    const pf_backend *be;
    void *dst, *src;
    size_t bytes;
} copy_bench;

static void copy_once(void *c) {
    copy_bench *b = c;
    b->be->copy(b->dst, b->src, b->bytes);
}

// Device-to-device copy bandwidth in bytes/s, read + write counted: 2 x bytes / time.
static double copy_bandwidth(const pf_backend *be, size_t bytes, int repeat) {
    copy_bench c = {be, be->alloc(bytes), be->alloc(bytes), bytes};
    be->zero(c.src, bytes);  // touch both buffers before timing
    be->zero(c.dst, bytes);
    double ms = bench_time_median_ms(be, copy_once, &c, repeat);
    be->free(c.dst);
    be->free(c.src);
    return 2.0 * (double)bytes / (ms / 1e3);
}
// Reasons a cuSPARSE column shows "n/a", each printed once below the table.
typedef struct {
    char why[8][256];
    int n;
} na_notes;

#ifdef PF_CUDA
static void note_na(na_notes *n, const char *why) {
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->why[i], why)) return;
    if (n->n < 8) snprintf(n->why[n->n++], sizeof n->why[0], "%s", why);
}

// The bell columns of a forward row: cuSPARSE Blocked-ELL time (in the run's time unit) and
// efficiency against the dense time td, or "n/a" with the reason noted.
static void bell_columns(layer_bench *l, const pf_pattern *p, double td, double tscale,
                         int repeat, na_notes *notes, char col[2][16]) {
    char why[256];
    if (!(l->bell = pf_cuda_bell_create(p, l->pw.S, l->x, l->y, why, sizeof why))) {
        snprintf(col[0], sizeof col[0], "n/a");
        note_na(notes, why);
        return;
    }
    double tb = bench_time_median_ms(l->be, bell_fwd, l, repeat);
    snprintf(col[0], sizeof col[0], "%.3f", tb * tscale);
    snprintf(col[1], sizeof col[1], "%.0f%%", 100.0 * td * pf_pattern_density(p) / tb);
    pf_cuda_bell_free(l->bell);
    l->bell = NULL;
}
#endif

// What every row of one run shares: units, the measured copy bandwidth, the reasons of n/a.
typedef struct {
    bool cuda;
    int act_size, repeat;
    double unit, tscale, bw;  // FLOP/s per printed unit, printed time units per ms, bytes/s
    na_notes notes;
} kernel_table;

// Roofline bound (ms) of work of `flops` nonzero FLOPs and `bytes` minimum bytes: the longer
// of the FLOPs at `dense_rate` (FLOP/ms: the dense layer's rate of the same pass, shape and
// token count) and the bytes at the copy bandwidth. *flop_bound: which of the two it is.
static double roofline_ms(const kernel_table *tb, double flops, double bytes, double dense_rate,
                          bool *flop_bound) {
    double t_flop = flops / dense_rate, t_mem = 1e3 * bytes / tb->bw;
    *flop_bound = t_flop > t_mem;
    return *flop_bound ? t_flop : t_mem;
}

// One FLOP/s unit for a run or a table: TFLOP/s when the fastest dense rate reaches 1e12.
static const char *flop_unit(double top_rate, double *unit) {
    *unit = top_rate >= 1e12 ? 1e12 : 1e9;
    return top_rate >= 1e12 ? "TFLOP/s" : "GFLOP/s";
}

// One time unit for a table: microseconds when even the longest dense time is under 1 ms.
static const char *time_unit(double top_ms, double *tscale) {
    *tscale = top_ms < 1.0 ? 1e3 : 1.0;
    return top_ms < 1.0 ? "us" : "ms";
}

// Measures the copy bandwidth into tb->bw and prints how every time of the run was taken.
static void measure_copy_bandwidth(kernel_table *tb, const pf_backend *be) {
    size_t copy_bytes = (size_t)(tb->cuda ? 256 : 64) << 20;
    tb->bw = copy_bandwidth(be, copy_bytes, tb->repeat < 5 ? 5 : tb->repeat);
    printf("activations %s, weight gradients fp32; median of %d runs after 1 warm-up\n",
           be->act_dtype == PF_BF16 ? "bf16" : "fp32", tb->repeat);
    printf("copy bandwidth (%zu MiB device-to-device, 2 x bytes / time): %.1f GB/s\n",
           copy_bytes >> 20, tb->bw / 1e9);
}

// The three rows (fwd, dX, dS) of pattern p on the buffers of l; td: the dense times (ms).
static void pattern_rows(kernel_table *tb, layer_bench *l, const pf_pattern *p,
                         const double td[PASS_COUNT]) {
    int64_t N = l->x.shape[0];
    double dense_flops = 2.0 * N * p->in * p->out, density = pf_pattern_density(p);
    char shape[32], pat[32];
    snprintf(shape, sizeof shape, "%dx%d", p->in, p->out);
    snprintf(pat, sizeof pat, "bs=%d nf=%d r=%d", p->bs, p->nf, p->rank);
    for (int k = 0; k < PASS_COUNT; k++) {
        double ts = bench_time_median_ms(l->be, sparse_pass[k], l, tb->repeat);
        op_dims d = pattern_dims(p);
        double flops = pass_flops(k, &d, N);
        bool flop_bound;
        double bound = roofline_ms(tb, flops, pass_bytes(k, &d, N, tb->act_size),
                                   dense_flops / td[k], &flop_bound);
        printf("%-10s %6lld %-16s %-4s %9.3f %9.3f", shape, (long long)N, pat, pass_name[k],
               td[k] * tb->tscale, ts * tb->tscale);
        if (tb->cuda) {
            char bell[2][16] = {"-", "-"};
#ifdef PF_CUDA
            if (k == PASS_FWD) bell_columns(l, p, td[k], tb->tscale, tb->repeat, &tb->notes, bell);
#endif
            printf(" %9s %8s", bell[0], bell[1]);
        }
        printf(" %8.1f %6.2fx %4.0f%% %7.3f %c %6.0f%%\n", flops / tb->unit / (ts / 1e3),
               td[k] / ts, 100.0 * td[k] * density / ts, bound * tb->tscale,
               flop_bound ? 'F' : 'M', 100.0 * bound / ts);
        fflush(stdout);
    }
}

// A table's settings from the backend and options; prints the machine line first.
static kernel_table table_begin(const pf_backend *be, const kernel_opts *o) {
    bench_print_machine(be);
    return (kernel_table){.cuda = be->device == PF_DEV_CUDA,
                          .act_size = pf_dtype_size(be->act_dtype), .repeat = o->repeat};
}

int pfbench_kernels(const pf_backend *be, const kernel_opts *o) {
    for (int s = 0; s < o->nshapes; s++)  // every pattern valid before any timing
        for (int b = 0; b < o->nbs; b++)
            for (int f = 0; f < o->nnf; f++)
                for (int r = 0; r < o->nrank; r++) {
                    pf_pattern p;
                    if (pf_pattern_init(&p, o->shapes[s][1], o->shapes[s][0], o->bs[b],
                                        o->nf[f], o->rank[r], true) < 0) {
                        fprintf(stderr, "pfbench: %dx%d: %s\n", o->shapes[s][0],
                                o->shapes[s][1], pf_errmsg());
                        return PF_EXIT_USAGE;
                    }
                }
    kernel_table tb = table_begin(be, o);
    pf_rng rng;
    pf_rng_seed(&rng, 1);
    fflush(stdout);

    // Dense times of every pass, shape and token count first: their rates go in the header
    // and are the FLOP side of every bound.
    double *dense_ms = pf_malloc(sizeof(double) * PASS_COUNT * o->nshapes * o->ntokens);
    double top_rate = 0, top_ms = 0;
    for (int s = 0; s < o->nshapes; s++)
        for (int t = 0; t < o->ntokens; t++) {
            int in = o->shapes[s][0], out = o->shapes[s][1], N = o->tokens[t];
            layer_bench l;
            layer_alloc(&l, be, in, out, N, &rng);
            for (int k = 0; k < PASS_COUNT; k++) {
                double ms = bench_time_median_ms(be, dense_pass[k], &l, o->repeat);
                dense_ms[(s * o->ntokens + t) * PASS_COUNT + k] = ms;
                double rate = 2.0 * N * in * out / (ms / 1e3);
                if (rate > top_rate) top_rate = rate;
                if (ms > top_ms) top_ms = ms;
            }
            layer_free(&l);
        }
    measure_copy_bandwidth(&tb, be);
    // One FLOP/s unit and one time unit for the whole run, by the magnitude of the fastest
    // dense rate and of the longest dense time.
    const char *uname = flop_unit(top_rate, &tb.unit), *tu = time_unit(top_ms, &tb.tscale);
    printf("passes: fwd = forward; dX = input gradient only; dS = weight gradients only "
           "(dS, dU, dV, db; dense: dW, db)\n");
    printf("dense rates, %s (fwd / dX / dS):\n", uname);
    for (int s = 0; s < o->nshapes; s++)
        for (int t = 0; t < o->ntokens; t++) {
            int in = o->shapes[s][0], out = o->shapes[s][1], N = o->tokens[t];
            const double *ms = dense_ms + (s * o->ntokens + t) * PASS_COUNT;
            double f = 2.0 * N * in * out / tb.unit;
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%d", in, out);
            printf("  %-10s %6d tokens: %8.1f / %8.1f / %8.1f\n", shape, N, f / (ms[0] / 1e3),
                   f / (ms[1] / 1e3), f / (ms[2] / 1e3));
        }
    printf("%s = nonzero work of the Pixelfly pass; eff = dense time x density / Pixelfly "
           "time;\n"
           "bound = max(nonzero FLOPs / dense rate of the pass, minimum bytes / copy "
           "bandwidth),\n"
           "F = FLOP-bound, M = memory-bound; %% bound = bound / Pixelfly time\n",
           uname);
    if (tb.cuda)
        printf("bell = cuSPARSE Blocked-ELL SpMM (forward only) of the sparse part alone: no "
               "low-rank term, no bias;\nsquare ELL blocks of g = gcd(out/bs, in/bs); bell eff "
               "= dense time x density / bell time\n");
    char h_dense[16], h_pixfly[16], h_bell[16], h_bound[16];
    snprintf(h_dense, sizeof h_dense, "dense %s", tu);
    snprintf(h_pixfly, sizeof h_pixfly, "pixfly %s", tu);
    snprintf(h_bell, sizeof h_bell, "bell %s", tu);
    snprintf(h_bound, sizeof h_bound, "bound %s", tu);
    printf("\n%-10s %6s %-16s %-4s %9s %9s", "in x out", "tokens", "pattern", "pass", h_dense,
           h_pixfly);
    if (tb.cuda) printf(" %9s %8s", h_bell, "bell eff");
    printf(" %8s %7s %5s %9s %7s\n", uname, "speedup", "eff", h_bound, "% bound");
    fflush(stdout);

    for (int s = 0; s < o->nshapes; s++)
        for (int t = 0; t < o->ntokens; t++) {
            int in = o->shapes[s][0], out = o->shapes[s][1];
            layer_bench l;
            layer_alloc(&l, be, in, out, o->tokens[t], &rng);
            for (int b = 0; b < o->nbs; b++)
                for (int f = 0; f < o->nnf; f++)
                    for (int r = 0; r < o->nrank; r++) {
                        pf_pattern p;
                        PF_ASSERT(pf_pattern_init(&p, out, in, o->bs[b], o->nf[f], o->rank[r],
                                                  true) == 0);
                        pixelfly_alloc(&l, &p, &rng);
                        pattern_rows(&tb, &l, &p, dense_ms + (s * o->ntokens + t) * PASS_COUNT);
                        pixelfly_free(&l);
                    }
            layer_free(&l);
        }
    for (int i = 0; i < tb.notes.n; i++) printf("bell n/a: %s\n", tb.notes.why[i]);
    free(dense_ms);
    return PF_EXIT_OK;
}

// ---- layer kinds at one budget -------------------------------------------------------------

// One layer of any kind (layers.h) with an arena of its own, on the table's activations.
typedef struct {
    const pf_backend *be;
    pf_layout lay;
    pf_arena arena;
    pf_linear lin;
    pf_tensor x, y, dy, dx;  // the table's: [N, in], [N, out], [N, out], [N, in]
    pf_tensor xv, dxv;       // the layer's saved activations and backward scratch
} kind_bench;

static void kind_fwd(void *c) {
    kind_bench *k = c;
    pf_linear_forward(&k->lin, &k->arena, k->y, k->xv, k->x);
}
static void kind_bwd(void *c) {  // the whole backward: dx and every parameter gradient
    kind_bench *k = c;
    pf_linear_backward(&k->lin, &k->arena, k->dx, k->dy, k->x, k->xv, k->dxv);
}
static void kind_ds(void *c) {  // dx absent: the parameter gradients and what they need
    kind_bench *k = c;
    pf_linear_backward(&k->lin, &k->arena, pf_none(), k->dy, k->x, k->xv, k->dxv);
}

enum { KIND_DENSE, KIND_PIXELFLY, KIND_BLOCKSPARSE, KIND_LOWRANK, KIND_BUTTERFLY, KIND_COUNT };

// Stored weights of `spec` at in x out (bias excluded; each is one multiply-add per row), or -1
// with pf_error naming the kind when the spec does not fit the shape.
static int64_t spec_weights(pf_layer_spec spec, int in, int out) {
    pf_layout lay;
    pf_layout_init(&lay);
    pf_linear l;
    int64_t w = pf_linear_declare(&l, &lay, pf_layer_kind_name(spec.kind), in, out, true, spec,
                                  0, 0) < 0
                    ? -1
                    : pf_linear_macs(&l);
    pf_layout_free(&lay);
    return w;
}

// The rows of one table: dense; Pixelfly (o's bs, nf, rank); blocksparse, a random mask with
// nf+1 blocks per super-row at the same bs and rank (seed 1); lowrank at the rank whose
// weights are closest to the Pixelfly layer's; butterfly at the bs whose weights are closest,
// among the powers of two 2..256 dividing both sides (bs 0: none does). -1 with pf_error when
// Pixelfly or blocksparse does not fit the shape.
static int kind_specs(const kernel_opts *o, int in, int out, pf_layer_spec spec[KIND_COUNT]) {
    spec[KIND_DENSE] = (pf_layer_spec){.kind = PF_LAYER_DENSE};
    spec[KIND_PIXELFLY] = (pf_layer_spec){.kind = PF_LAYER_PIXELFLY, .bs = o->bs[0],
                                          .nf = o->nf[0], .rank = o->rank[0]};
    spec[KIND_BLOCKSPARSE] = (pf_layer_spec){.kind = PF_LAYER_BLOCKSPARSE, .bs = o->bs[0],
                                             .blocks = o->nf[0] + 1, .rank = o->rank[0],
                                             .seed = 1};
    int64_t P = spec_weights(spec[KIND_PIXELFLY], in, out);
    if (P < 0 || spec_weights(spec[KIND_BLOCKSPARSE], in, out) < 0) return -1;
    int narrow = in < out ? in : out, r = (int)((double)P / (in + out) + 0.5);
    spec[KIND_LOWRANK] = (pf_layer_spec){.kind = PF_LAYER_LOWRANK,
                                         .rank = r < 1 ? 1 : r > narrow ? narrow : r};
    spec[KIND_BUTTERFLY] = (pf_layer_spec){.kind = PF_LAYER_BUTTERFLY};
    int64_t best = -1;
    for (int bs = 2; bs <= 256; bs *= 2) {
        pf_layer_spec b = {.kind = PF_LAYER_BUTTERFLY, .bs = bs};
        int64_t w = in % bs || out % bs ? -1 : spec_weights(b, in, out);
        int64_t diff = w > P ? w - P : P - w;
        if (w >= 0 && (best < 0 || diff < best)) best = diff, spec[KIND_BUTTERFLY] = b;
    }
    return 0;
}

// Declares the layer, allocates its arena (weights drawn as pf_linear_init does, std 0.02) and
// its saved-activation and scratch buffers for N rows.
static void kind_setup(kind_bench *k, pf_layer_spec spec, int in, int out, int64_t N,
                       pf_rng *rng) {
    pf_layout_init(&k->lay);
    PF_ASSERT(pf_linear_declare(&k->lin, &k->lay, pf_layer_kind_name(spec.kind), in, out, true,
                                spec, 0, 0) == 0);
    pf_arena_alloc(&k->arena, &k->lay, k->be);
    size_t bytes = sizeof(float) * (size_t)k->lay.numel;
    float *host = pf_calloc(1, bytes);
    pf_linear_init(&k->lin, &k->lay, host, 0.02f, rng);
    k->be->upload(k->arena.params, host, bytes);
    free(host);
    pf_arena_sync_weights(&k->arena);
    int sw = pf_linear_saved_width(&k->lin), cw = pf_linear_scratch_width(&k->lin);
    k->xv = sw ? dev_buf(k->be, k->be->act_dtype, N, sw, rng) : pf_none();
    k->dxv = cw ? dev_buf(k->be, k->be->act_dtype, N, cw, rng) : pf_none();
}

static void kind_free(kind_bench *k) {
    pf_tensor ts[] = {k->xv, k->dxv};
    free_tensors(k->be, ts, 2);
    pf_arena_free(&k->arena);
    pf_layout_free(&k->lay);
}

// A sum of roofline bounds (ms) and how many of its terms were FLOP- and memory-bound.
typedef struct {
    double ms;
    int flop, mem;
} bound_sum;

// Bound of one op's forward and whole backward (dX and dS passes, pass_flops and pass_bytes
// as `pfbench kernels` bounds each pass), at the dense rates rate[] (FLOP/ms) of the table:
// the dense forward's for fwd, the dense whole backward's for dX and dS.
// A whole backward computes dxv = dy U once, for dx and dV both: the dS pass's recomputation
// of it is not counted.
static void op_bound(const kernel_table *tb, const op_dims *d, int64_t N,
                     const double rate[PASS_COUNT], bound_sum *b) {
    for (int k = 0; k < PASS_COUNT; k++) {
        double flops = pass_flops(k, d, N) - (k == PASS_DS ? 2.0 * N * d->r * d->out : 0);
        bool f;
        b->ms += roofline_ms(tb, flops, pass_bytes(k, d, N, tb->act_size), rate[k], &f);
        *(f ? &b->flop : &b->mem) += 1;
    }
}

// Bound of the layer's forward + whole backward: the sum over the ops pf_linear_forward and
// pf_linear_backward call (layers.c): one linear op (dense), one Pixelfly op (pixelfly,
// blocksparse), the two linear ops x V^T and xv U^T (lowrank), the L factors (butterfly).
// Buffer zeroing inside the layer's backward (butterfly, lowrank) is not counted.
static bound_sum layer_bound(const kernel_table *tb, const pf_linear *l, int64_t N,
                             const double rate[PASS_COUNT]) {
    bound_sum b = {0};
    op_dims d[PF_LINEAR_MAX_MASKS];
    int n = 0;
    if (l->kind == PF_LAYER_DENSE) {
        d[n++] = dense_dims(l->out, l->in, l->b >= 0);
    } else if (l->kind == PF_LAYER_LOWRANK) {
        d[n++] = dense_dims(l->rank, l->in, false);
        d[n++] = dense_dims(l->out, l->rank, l->b >= 0);
    } else {
        for (int j = 0; j < l->nmask; j++) d[n++] = pattern_dims(&l->pat[j]);
    }
    for (int i = 0; i < n; i++) op_bound(tb, &d[i], N, rate, &b);
    return b;
}

enum { COL_FWD, COL_DX, COL_DS, COL_TOTAL, COL_SPEEDUP, COL_BWD, COL_COUNT };

// Medians over rounds of the columns of the kind whose calls are c[0] (forward), c[1] (whole
// backward) and c[2] (dS), against dense's d[3], in the times t of bench_time_rounds (n calls a
// round): fwd, dX = backward - dS, dS, total = fwd + backward, the speed-up = dense total /
// total, and the whole backward, each value of one round.
static void kind_columns(const double *t, int n, int repeat, const int c[3], const int d[3],
                         double col[COL_COUNT]) {
    double *v = pf_malloc(sizeof(double) * COL_COUNT * repeat);
    for (int r = 0; r < repeat; r++) {
        const double *tr = t + (size_t)r * n;
        double total = tr[c[0]] + tr[c[1]];
        v[COL_FWD * repeat + r] = tr[c[0]];
        // two separate calls' difference: below 0 it is timing noise, shown as 0
        v[COL_DX * repeat + r] = fmax(0.0, tr[c[1]] - tr[c[2]]);
        v[COL_DS * repeat + r] = tr[c[2]];
        v[COL_TOTAL * repeat + r] = total;
        v[COL_SPEEDUP * repeat + r] = (tr[d[0]] + tr[d[1]]) / total;
        v[COL_BWD * repeat + r] = tr[c[1]];
    }
    for (int k = 0; k < COL_COUNT; k++) col[k] = bench_median(v + k * repeat, repeat);
    free(v);
}

// One table: every kind of kind_specs at in x out and N tokens, timed in rounds together
// (time_rounds). Dense's times are the speed-up's reference and the FLOP side of every bound.
static void kinds_table(kernel_table *tb, const pf_backend *be, const kernel_opts *o, int in,
                        int out, int N, pf_rng *rng) {
    pf_layer_spec spec[KIND_COUNT];
    PF_ASSERT(kind_specs(o, in, out, spec) == 0);  // checked before any timing
    pf_dtype act = be->act_dtype;
    pf_tensor x = dev_buf(be, act, N, in, rng), y = dev_buf(be, act, N, out, rng),
              dy = dev_buf(be, act, N, out, rng), dx = dev_buf(be, act, N, in, rng);
    kind_bench *kb = pf_calloc(KIND_COUNT, sizeof *kb);
    bench_fn fn[3 * KIND_COUNT];
    void *ctx[3 * KIND_COUNT];
    int n = 0, call[KIND_COUNT];  // call[i]: kind i's first call, -1: no such layer
    for (int i = 0; i < KIND_COUNT; i++) {
        call[i] = -1;
        if (spec[i].kind == PF_LAYER_BUTTERFLY && !spec[i].bs) continue;
        kb[i] = (kind_bench){.be = be, .x = x, .y = y, .dy = dy, .dx = dx};
        kind_setup(&kb[i], spec[i], in, out, N, rng);
        static const bench_fn calls[3] = {kind_fwd, kind_bwd, kind_ds};
        call[i] = n;
        for (int c = 0; c < 3; c++) fn[n] = calls[c], ctx[n++] = &kb[i];
    }
    double *t = pf_malloc(sizeof(double) * n * tb->repeat);
    bench_time_rounds(be, n, fn, ctx, tb->repeat, t);

    const int *d = (int[]){call[KIND_DENSE], call[KIND_DENSE] + 1, call[KIND_DENSE] + 2};
    double dense[COL_COUNT], rate[PASS_COUNT], unit, dense_flops = 2.0 * N * in * out;
    kind_columns(t, n, tb->repeat, d, d, dense);
    // the rates of measured calls: dX, a difference, can be noise
    rate[PASS_FWD] = dense_flops / dense[COL_FWD];
    rate[PASS_DX] = rate[PASS_DS] = 2 * dense_flops / dense[COL_BWD];
    double fastest = rate[PASS_FWD] > rate[PASS_DX] ? rate[PASS_FWD] : rate[PASS_DX];
    const char *uname = flop_unit(1e3 * fastest, &unit);
    const char *tu = time_unit(dense[COL_BWD], &tb->tscale);
    printf("\n%dx%d (in x out), %d tokens; dense %s forward / whole backward: %.1f / %.1f\n", in,
           out, N, uname, rate[PASS_FWD] * 1e3 / unit, rate[PASS_DX] * 1e3 / unit);
    char h[5][16];
    const char *what[5] = {"fwd", "dX", "dS", "total", "bound"};
    for (int c = 0; c < 5; c++) snprintf(h[c], sizeof h[c], "%s %s", what[c], tu);
    printf("%-11s %-30s %9s %6s %9s %9s %9s %9s %7s %9s %-2s %7s\n", "kind", "pattern", "params",
           "kept", h[0], h[1], h[2], h[3], "speedup", h[4], "", "% bound");
    for (int i = 0; i < KIND_COUNT; i++) {
        const char *name = pf_layer_kind_name(spec[i].kind);
        if (call[i] < 0) {
            printf("%-11s n/a: no power of two from 2 to 256 divides both %d and %d\n", name, in,
                   out);
            continue;
        }
        double col[COL_COUNT];
        kind_columns(t, n, tb->repeat, (int[]){call[i], call[i] + 1, call[i] + 2}, d, col);
        bound_sum b = layer_bound(tb, &kb[i].lin, N, rate);
        char pat[160];
        pf_linear_describe(&kb[i].lin, pat, sizeof pat);
        int64_t w = pf_linear_macs(&kb[i].lin);
        double sc = tb->tscale;
        printf("%-11s %-30s %9lld %6.4f %9.3f %9.3f %9.3f %9.3f %6.2fx %9.3f %-2s %6.0f%%\n", name,
               pat, (long long)w, (double)w / ((double)in * out), col[COL_FWD] * sc,
               col[COL_DX] * sc, col[COL_DS] * sc, col[COL_TOTAL] * sc, col[COL_SPEEDUP],
               b.ms * sc, !b.mem ? "F" : !b.flop ? "M" : "FM", 100.0 * b.ms / col[COL_TOTAL]);
        kind_free(&kb[i]);
    }
    fflush(stdout);
    free(t);
    free(kb);
    pf_tensor ts[] = {x, y, dy, dx};
    free_tensors(be, ts, 4);
}

int pfbench_kinds(const pf_backend *be, const kernel_opts *o) {
    for (int s = 0; s < o->nshapes; s++) {  // every table's kinds valid before any timing
        pf_layer_spec spec[KIND_COUNT];
        if (kind_specs(o, o->shapes[s][0], o->shapes[s][1], spec) < 0) {
            fprintf(stderr, "pfbench kinds: %dx%d: %s\n", o->shapes[s][0], o->shapes[s][1],
                    pf_errmsg());
            return PF_EXIT_USAGE;
        }
    }
    kernel_table tb = table_begin(be, o);
    pf_rng rng;
    pf_rng_seed(&rng, 1);
    measure_copy_bandwidth(&tb, be);
    printf("kinds at Pixelfly's budget: blocksparse = random mask of the same bs, blocks per "
           "super-row and rank (seed 1);\nlowrank and butterfly at the rank / bs whose weights "
           "are closest to Pixelfly's; every layer with a bias\n"
           "params = stored weights (bias excluded), kept = params / (out x in)\n"
           "fwd = pf_linear_forward; dS = pf_linear_backward with dx absent (every parameter "
           "gradient and the\nintermediate gradients it needs); dX = whole backward (dx "
           "present) - dS; total = fwd + whole backward;\nspeedup = dense total / total; "
           "the kinds of a table run in the same rounds, each column the\nmedian over rounds "
           "of its value in one round\nbound = sum over the layer's ops and passes of "
           "max(nonzero FLOPs / the dense layer's rate in this\ntable (forward for fwd, whole "
           "backward for dX and dS), minimum bytes / copy bandwidth):\nF = every term "
           "FLOP-bound, M = every term memory-bound, FM = mixed; %% bound = bound / total\n");
    fflush(stdout);
    for (int s = 0; s < o->nshapes; s++)
        for (int t = 0; t < o->ntokens; t++)
            kinds_table(&tb, be, o, o->shapes[s][0], o->shapes[s][1], o->tokens[t], &rng);
    return PF_EXIT_OK;
}
