// pfbench: speed of Pixelfly against dense, side by side in one run, on one backend.
//
//   pfbench kernels [--tokens N,...] [--shapes INxOUT,...] [--bs B,...] [--nf F,...]
//                   [--rank R,...] [--repeat K] [--backend cpu|cuda]
//       for every layer shape (in x out), token count and pattern (bs, nf, rank), three
//       passes timed separately, the dense layer (linear_fwd, linear_bwd) against Pixelfly
//       (pixelfly_fwd, pixelfly_bwd), each op called with only that pass's outputs present:
//         fwd  forward
//         dX   input gradient only (dense: dx; Pixelfly: dx, through dxv with a rank)
//         dS   weight gradients only (dense: dW, db; Pixelfly: dS, dU and dV, db)
//       Each row: median times, FLOP/s of the nonzero work, speed-up, efficiency = dense time
//       x density / Pixelfly time, and the pass's roofline bound = max(nonzero FLOPs / the
//       dense rate of the same pass, shape and token count measured in this run, minimum
//       bytes (pass_bytes) / the device-to-device copy bandwidth measured at the start), with
//       "% bound" = bound / Pixelfly time. The header gives the copy bandwidth and the dense
//       rates. On CUDA, a third time column: cuSPARSE Blocked-ELL SpMM of the sparse part
//       alone (forward only; "-" elsewhere, "n/a" with the reason below the table).
//       Activations are allocated in the backend's dtype, weight gradients in fp32.
//       Defaults: --nf 2,3 --rank 0,32 --repeat 5, and on cpu --tokens 2048 --bs 16
//       --shapes 768x3072,3072x768, on cuda --tokens 8192,16384 --bs 8,16,32
//       --shapes 768x3072,3072x768,1024x4096,4096x1024.
//   pfbench step CONFIG... [--steps K] [--set section.key=value]... [--backend cpu|cuda]
//       median time of a whole training step (forward, backward, AdamW) of each config's
//       model on synthetic data, and tokens/s or images/s, relative to the first config of
//       the same model family (list the dense twin first); the model FLOP/s (nonzero work),
//       MFU against a known GPU's bf16 peak, and the device memory in use.
//
// Medians over --repeat (--steps) timed runs after one (two) warm-up runs; the machine, the
// device and the thread count are printed so a figure can be quoted with them.
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "memplan.h"
#include "models/model.h"
#include "train.h"
#ifdef PF_CUDA
#include "cuda_bench.h"
#endif

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Comma-separated integers, each >= min, into out[max]; returns the count, -1 on a malformed
// list, a value below min or more than max values.
static int parse_ints(const char *s, int *out, int max, int min) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < min || v > 1 << 30 || n == max) return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static void print_machine(const pf_backend *be) {
    struct utsname u;
    uname(&u);
    const char *threads = getenv("OMP_NUM_THREADS");
    printf("pfbench %s: backend %s, host %s (%s), %ld CPUs online, OMP_NUM_THREADS=%s\n",
           PF_VERSION, be->name, u.nodename, u.machine, sysconf(_SC_NPROCESSORS_ONLN),
           threads ? threads : "unset");
    if (be->device == PF_DEV_CUDA && be->device_info) {
        pf_device_info d;
        be->device_info(&d);
        printf("device: %s, %.1f GiB memory, %.1f GiB in use\n", d.name,
               d.mem_total / (1 << 30), d.mem_used / (1 << 30));
    }
}

// A device buffer of n elements of dtype dt (fp32 or bf16, rounded on the host) filled with
// uniform values in [-1, 1).
static void *random_buffer(const pf_backend *be, int64_t n, pf_dtype dt, pf_rng *rng) {
    PF_ASSERT(dt == PF_F32 || dt == PF_BF16);
    size_t bytes = (size_t)pf_dtype_size(dt) * (size_t)n;
    void *host = pf_malloc(bytes ? bytes : 1);
    for (int64_t i = 0; i < n; i++) {
        float v = 2.0f * pf_rng_uniform(rng) - 1.0f;
        if (dt == PF_BF16)
            ((uint16_t *)host)[i] = pf_bf16_from_f32(v);
        else
            ((float *)host)[i] = v;
    }
    void *dev = be->alloc(bytes);
    be->upload(dev, host, bytes);
    free(host);
    return dev;
}

// What one timed call does; ctx is the benchmark's own state.
typedef void (*bench_fn)(void *ctx);

static double time_median_ms(const pf_backend *be, bench_fn fn, void *ctx, int repeat) {
    double *t = pf_malloc(sizeof(double) * repeat);
    fn(ctx);  // warm-up: first-touch pages, BLAS buffers, GPU clocks
    be->synchronize();
    for (int i = 0; i < repeat; i++) {
        double t0 = pf_now();
        fn(ctx);
        be->synchronize();
        t[i] = 1e3 * (pf_now() - t0);
    }
    double m = median(t, repeat);
    free(t);
    return m;
}

// ---- kernels -------------------------------------------------------------------------------

typedef enum { PASS_FWD, PASS_DX, PASS_DS, PASS_COUNT } pass_kind;
static const char *const pass_name[PASS_COUNT] = {"fwd", "dX", "dS"};

// Nonzero FLOPs of one Pixelfly pass, 2 per multiply-add of what the call computes:
//   fwd: y = x S^T + (x V^T) U^T;  dX: dx = dy S + (dy U) V;
//   dS: dS = dy^T x, dU = dy^T xv, dV = (dy U)^T x (dxv = dy U recomputed: a dS-only call
//       has no dX pass to share it with).
// The dense layer's passes are 2 N in out each (bias terms are not counted).
static double pass_flops(pass_kind k, const pf_pattern *p, int64_t N) {
    double nnz = (double)pf_pattern_sparse_numel(p), r = p->rank, in = p->in, out = p->out;
    if (k == PASS_DS) return 2.0 * N * (nnz + r * (2 * out + in));
    return 2.0 * N * (nnz + r * (in + out));
}

// Minimum bytes one Pixelfly pass moves to and from memory: every tensor it needs read once,
// every output written once. e = the backend's activation element size (x, y, dy, dx, xv,
// dxv and the weights S, U, V, b it computes with); weight gradients are fp32 (4 bytes).
//   fwd: reads x [N,in], S (nnz), U [out,r], V [r,in], b [out]; writes y [N,out], xv [N,r]
//   dX:  reads dy [N,out], S, U, V and dxv [N,r]; reads and writes dx [N,in] (accumulated)
//   dS:  reads dy and x (and xv, U when r > 0: dU and dV need them); reads and writes dS
//        (nnz, fp32), dU, dV (r > 0) and db (with a bias): gradients are accumulated
static double pass_bytes(pass_kind k, const pf_pattern *p, int64_t N, int e) {
    double nnz = (double)pf_pattern_sparse_numel(p), r = p->rank, in = p->in, out = p->out;
    double b = p->bias ? out : 0;
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

static pf_tensor dev_buf(const layer_bench *l, pf_dtype dt, int64_t a, int64_t b, pf_rng *rng) {
    return pf_tensor_2d(random_buffer(l->be, a * b, dt, rng), dt, l->be->device, a, b);
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
    l->x = dev_buf(l, l->act, N, in, rng);
    l->y = dev_buf(l, l->act, N, out, rng);
    l->dy = dev_buf(l, l->act, N, out, rng);
    l->dx = dev_buf(l, l->act, N, in, rng);
    l->w = dev_buf(l, l->act, out, in, rng);
    l->dw = dev_buf(l, PF_F32, out, in, rng);
    l->b = pf_tensor_1d(random_buffer(be, out, l->act, rng), l->act, be->device, out);
    l->db = pf_tensor_1d(random_buffer(be, out, PF_F32, rng), PF_F32, be->device, out);
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
    pf_tensor S = pf_tensor_4d(random_buffer(l->be, sn, l->act, rng), l->act, l->be->device,
                               p->bs, p->nf + 1, p->ob, p->ib);
    pf_tensor dS = pf_tensor_4d(random_buffer(l->be, sn, PF_F32, rng), PF_F32, l->be->device,
                                p->bs, p->nf + 1, p->ob, p->ib);
    l->pw = (pf_pixelfly_w){.S = S, .b = l->b};
    l->pg = (pf_pixelfly_w){.S = dS, .b = l->db};
    l->xv = l->dxv = pf_none();
    if (r > 0) {
        l->pw.U = dev_buf(l, l->act, p->out, r, rng);
        l->pw.V = dev_buf(l, l->act, r, p->in, rng);
        l->pg.U = dev_buf(l, PF_F32, p->out, r, rng);
        l->pg.V = dev_buf(l, PF_F32, r, p->in, rng);
        l->xv = dev_buf(l, l->act, N, r, rng);
        l->dxv = dev_buf(l, l->act, N, r, rng);
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
    double ms = time_median_ms(be, copy_once, &c, repeat);
    be->free(c.dst);
    be->free(c.src);
    return 2.0 * (double)bytes / (ms / 1e3);
}

#define MAX_LIST 8

typedef struct {
    int tokens[MAX_LIST], ntokens, repeat;
    int shapes[16][2], nshapes;
    int bs[MAX_LIST], nbs, nf[MAX_LIST], nnf, rank[MAX_LIST], nrank;
} kernel_opts;

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
    double tb = time_median_ms(l->be, bell_fwd, l, repeat);
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

// The three rows (fwd, dX, dS) of pattern p on the buffers of l; td: the dense times (ms).
static void pattern_rows(kernel_table *tb, layer_bench *l, const pf_pattern *p,
                         const double td[PASS_COUNT]) {
    int64_t N = l->x.shape[0];
    double dense_flops = 2.0 * N * p->in * p->out, density = pf_pattern_density(p);
    char shape[32], pat[32];
    snprintf(shape, sizeof shape, "%dx%d", p->in, p->out);
    snprintf(pat, sizeof pat, "bs=%d nf=%d r=%d", p->bs, p->nf, p->rank);
    for (int k = 0; k < PASS_COUNT; k++) {
        double ts = time_median_ms(l->be, sparse_pass[k], l, tb->repeat);
        double flops = pass_flops(k, p, N);
        double t_flop = td[k] * flops / dense_flops;  // the nonzero FLOPs at the dense rate
        double t_mem = 1e3 * pass_bytes(k, p, N, tb->act_size) / tb->bw;
        double bound = t_flop > t_mem ? t_flop : t_mem;
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
               t_flop > t_mem ? 'F' : 'M', 100.0 * bound / ts);
        fflush(stdout);
    }
}

static int cmd_kernels(const pf_backend *be, const kernel_opts *o) {
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
    kernel_table tb = {.cuda = be->device == PF_DEV_CUDA,
                       .act_size = pf_dtype_size(be->act_dtype),
                       .repeat = o->repeat};
    pf_rng rng;
    pf_rng_seed(&rng, 1);
    print_machine(be);
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
                double ms = time_median_ms(be, dense_pass[k], &l, o->repeat);
                dense_ms[(s * o->ntokens + t) * PASS_COUNT + k] = ms;
                double rate = 2.0 * N * in * out / (ms / 1e3);
                if (rate > top_rate) top_rate = rate;
                if (ms > top_ms) top_ms = ms;
            }
            layer_free(&l);
        }
    size_t copy_bytes = (size_t)(tb.cuda ? 256 : 64) << 20;
    tb.bw = copy_bandwidth(be, copy_bytes, o->repeat < 5 ? 5 : o->repeat);
    // One FLOP/s unit and one time unit for the whole run, by the magnitude of the fastest
    // dense rate and of the longest dense time.
    bool tera = top_rate >= 1e12, micro = top_ms < 1.0;
    tb.unit = tera ? 1e12 : 1e9;
    tb.tscale = micro ? 1e3 : 1.0;
    const char *uname = tera ? "TFLOP/s" : "GFLOP/s", *tu = micro ? "us" : "ms";

    printf("activations %s, weight gradients fp32; median of %d runs after 1 warm-up\n"
           "passes: fwd = forward; dX = input gradient only; dS = weight gradients only "
           "(dS, dU, dV, db; dense: dW, db)\n",
           be->act_dtype == PF_BF16 ? "bf16" : "fp32", o->repeat);
    printf("copy bandwidth (%zu MiB device-to-device, 2 x bytes / time): %.1f GB/s\n",
           copy_bytes >> 20, tb.bw / 1e9);
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

// ---- whole training steps ------------------------------------------------------------------

typedef struct {
    pf_model *model;
    const pf_config *cfg;
    pf_batch batch;
    int step;
} step_bench;

static void train_step_once(void *c) {
    step_bench *s = c;
    pf_arena *a = pf_model_arena(s->model);
    const pf_layout *lay = a->layout;
    const pf_backend *be = a->be;
    be->zero(a->grads, sizeof(float) * lay->numel);
    pf_model_forward(s->model, &s->batch, NULL);
    pf_model_backward(s->model, 1.0f, NULL, NULL);
    float clip = 1.0f;
    pf_grad_norm(be, a->grads, lay->numel, s->cfg->grad_clip, &clip);
    s->step++;
    pf_model_adamw_step(s->model, s->cfg->lr, s->step, clip);
}

// Synthetic batch of the config's shape: random tokens, or random pixels and labels.
static void synthetic_batch(const pf_config *c, pf_batch *b, pf_rng *rng, void **owned) {
    int B = c->batch_size;
    memset(b, 0, sizeof *b);
    if (c->model == PF_MODEL_GPT2) {
        int n = B * c->seq_len;
        int32_t *tok = pf_malloc(sizeof(int32_t) * 2 * n);
        for (int i = 0; i < 2 * n; i++) tok[i] = (int32_t)pf_rng_below(rng, c->vocab_size);
        b->tokens = tok, b->targets = tok + n;
        owned[0] = tok;
        return;
    }
    int n = B * c->image_size * c->image_size * c->channels;
    float *img = pf_malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) img[i] = pf_rng_normal(rng);
    int32_t *lab = pf_malloc(sizeof(int32_t) * B);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)pf_rng_below(rng, c->num_classes);
    b->images = img, b->labels = lab;
    owned[0] = img, owned[1] = lab;
}

static int cmd_step(const pf_backend *be, char **configs, int nconfigs, char **sets, int nsets,
                    int steps) {
    print_machine(be);
    pf_device_info dev;
    be->device_info(&dev);
    printf("median of %d training steps (forward, backward, clip, AdamW) after 1 warm-up, "
           "synthetic data;\nTFLOP/s counts the model's nonzero training FLOPs, MFU against "
           "%s; mem = device memory in use (resident set on a CPU) with the model loaded\n\n",
           steps, dev.peak_tflops > 0 ? "the card's dense bf16 peak" : "no known peak (CPU)");
    printf("%-34s %6s %12s %10s %14s %9s %8s %6s %8s\n", "config", "batch", "params", "step ms",
           "throughput", "vs first", "TFLOP/s", "MFU", "mem GB");
    double first[3] = {0};  // throughput of the first config of each model kind
    for (int i = 0; i < nconfigs; i++) {
        pf_config c;
        pf_config_defaults(&c);
        if (pf_config_load(&c, configs[i]) < 0) {
            fprintf(stderr, "pfbench: %s\n", pf_errmsg());
            return PF_EXIT_USAGE;
        }
        for (int k = 0; k < nsets; k++)
            if (pf_config_set(&c, sets[k]) < 0) {
                fprintf(stderr, "pfbench: %s\n", pf_errmsg());
                return PF_EXIT_USAGE;
            }
        step_bench s = {.cfg = &c};
        pf_mem_plan plan;  // refused before the model is allocated, as pftrain does
        if (pf_mem_plan_compute(&c, be, &plan) < 0 || pf_mem_plan_check(&plan, &c, be, 1) < 0) {
            fprintf(stderr, "pfbench: %s: %s\n", configs[i], pf_errmsg());
            return PF_EXIT_USAGE;
        }
        if (!(s.model = pf_model_create(&c, be, c.batch_size))) {
            fprintf(stderr, "pfbench: %s: %s\n", configs[i], pf_errmsg());
            return PF_EXIT_USAGE;
        }
        pf_model_init_params(s.model, c.seed);
        pf_rng rng;
        pf_rng_seed(&rng, 7);
        void *owned[2] = {0};
        synthetic_batch(&c, &s.batch, &rng, owned);
        double ms = time_median_ms(be, train_step_once, &s, steps);
        double rate = c.batch_size * pf_model_rows_per_sample(s.model) / (ms / 1e3);
        if (first[c.model] == 0) first[c.model] = rate;
        char tput[32], mfu[16] = "-";
        snprintf(tput, sizeof tput, "%.0f %s/s", rate,
                 c.model == PF_MODEL_GPT2 ? "tok" : "img");
        double tflops = pf_model_train_flops(s.model, false) * c.batch_size / (ms / 1e3) / 1e12;
        if (dev.peak_tflops > 0) snprintf(mfu, sizeof mfu, "%.1f%%", 100 * tflops / dev.peak_tflops);
        be->device_info(&dev);
        printf("%-34s %6d %12lld %10.2f %14s %8.2fx %8.3f %6s %8.2f\n", configs[i], c.batch_size,
               (long long)pf_layout_param_count(pf_model_layout(s.model)), ms, tput,
               rate / first[c.model], tflops, mfu, dev.mem_used / 1e9);
        free(owned[0]);
        free(owned[1]);
        pf_model_free(s.model);
    }
    return PF_EXIT_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfbench kernels [--tokens N,...] [--shapes INxOUT,...] [--bs B,...]\n"
            "                       [--nf F,...] [--rank R,...] [--repeat K]\n"
            "                       [--backend cpu|cuda]\n"
            "       pfbench step CONFIG... [--steps K] [--set section.key=value]...\n"
            "                       [--backend cpu|cuda]\n");
}

// INxOUT,... into o->shapes; false on a malformed list or more than 16 shapes.
static bool parse_shapes(const char *v, kernel_opts *o) {
    char buf[512], extra;
    snprintf(buf, sizeof buf, "%s", v);
    o->nshapes = 0;
    for (char *sv, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
        int *s = o->shapes[o->nshapes];
        if (o->nshapes == 16 || sscanf(t, "%dx%d%c", &s[0], &s[1], &extra) != 2 || s[0] < 1 ||
            s[1] < 1)
            return false;
        o->nshapes++;
    }
    return o->nshapes > 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PF_EXIT_USAGE : PF_EXIT_OK;
    }
    int backend = PF_BACKEND_CPU;
    // Tokens, shapes and block counts default by backend, below.
    kernel_opts ko = {.repeat = 5, .nf = {2, 3}, .nnf = 2, .rank = {0, 32}, .nrank = 2};
    char *configs[32], *sets[64];
    int nconfigs = 0, nsets = 0, steps = 5;
    bool kernels = !strcmp(argv[1], "kernels");
    if (!kernels && strcmp(argv[1], "step")) {
        fprintf(stderr, "pfbench: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return PF_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char *want = "";  // what the value should be, for the message
        bool known = true, bad = !v;  // every option takes a value
        if (!strcmp(a, "--backend")) {
            want = "cpu or cuda";
            bad = bad || (strcmp(v, "cuda") && strcmp(v, "cpu"));
            if (!bad) backend = !strcmp(v, "cuda") ? PF_BACKEND_CUDA : PF_BACKEND_CPU;
        } else if (kernels && !strcmp(a, "--tokens")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (ko.ntokens = parse_ints(v, ko.tokens, MAX_LIST, 1)) < 1;
        } else if (kernels && !strcmp(a, "--repeat")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &ko.repeat, 1, 1) != 1;
        } else if (kernels && !strcmp(a, "--bs")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (ko.nbs = parse_ints(v, ko.bs, MAX_LIST, 1)) < 1;
        } else if (kernels && !strcmp(a, "--nf")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (ko.nnf = parse_ints(v, ko.nf, MAX_LIST, 1)) < 1;
        } else if (kernels && !strcmp(a, "--rank")) {
            want = "up to 8 comma-separated integers >= 0";
            bad = bad || (ko.nrank = parse_ints(v, ko.rank, MAX_LIST, 0)) < 1;
        } else if (kernels && !strcmp(a, "--shapes")) {
            want = "up to 16 comma-separated INxOUT, e.g. 768x3072,3072x768";
            bad = bad || !parse_shapes(v, &ko);
        } else if (!kernels && !strcmp(a, "--steps")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &steps, 1, 1) != 1;
        } else if (!kernels && !strcmp(a, "--set")) {
            want = "section.key=value, at most 64 of them";
            bad = bad || nsets == 64;
            if (!bad) sets[nsets++] = argv[i + 1];
        } else if (!kernels && a[0] != '-') {
            if (nconfigs == 32) {
                fprintf(stderr, "pfbench step: at most 32 CONFIG files\n");
                return PF_EXIT_USAGE;
            }
            configs[nconfigs++] = argv[i];
            continue;
        } else {
            known = false;
        }
        if (!known)
            fprintf(stderr, "pfbench %s: unknown option '%s'\n", argv[1], a);
        else if (!v)
            fprintf(stderr, "pfbench %s: option '%s' needs a value (%s)\n", argv[1], a, want);
        else if (bad)
            fprintf(stderr, "pfbench %s: bad value '%s' for option '%s' (want %s)\n", argv[1], v,
                    a, want);
        if (!known || bad) {
            usage(stderr);
            return PF_EXIT_USAGE;
        }
        i++;
    }
    bool cuda = backend == PF_BACKEND_CUDA;
    if (!ko.ntokens) {
        int cpu_tokens[] = {2048}, cuda_tokens[] = {8192, 16384};
        ko.ntokens = cuda ? 2 : 1;
        memcpy(ko.tokens, cuda ? cuda_tokens : cpu_tokens, sizeof(int) * ko.ntokens);
    }
    if (!ko.nbs) {  // the CPU sweeps the paper's bs only: each row takes seconds there
        int cpu_bs[] = {16}, cuda_bs[] = {8, 16, 32};
        ko.nbs = cuda ? 3 : 1;
        memcpy(ko.bs, cuda ? cuda_bs : cpu_bs, sizeof(int) * ko.nbs);
    }
    if (!ko.nshapes) {
        int shapes[4][2] = {{768, 3072}, {3072, 768}, {1024, 4096}, {4096, 1024}};
        ko.nshapes = cuda ? 4 : 2;
        memcpy(ko.shapes, shapes, sizeof(int) * 2 * ko.nshapes);
    }
    const pf_backend *be = pf_select_backend(backend);
    if (!be) {
        fprintf(stderr, "pfbench: %s\n", pf_errmsg());
        return PF_EXIT_USAGE;
    }
    if (kernels) return cmd_kernels(be, &ko);
    if (nconfigs == 0) {
        fprintf(stderr, "pfbench step: give one or more CONFIG files (dense and Pixelfly "
                        "twins side by side, e.g. configs/gpt2-tiny-{dense,pixelfly}.ini)\n");
        return PF_EXIT_USAGE;
    }
    return cmd_step(be, configs, nconfigs, sets, nsets, steps);
}
