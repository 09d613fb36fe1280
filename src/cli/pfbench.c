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
//   pfbench kinds [--tokens N,...] [--shapes INxOUT,...] [--bs B] [--nf F] [--rank R]
//                 [--repeat K] [--backend cpu|cuda]
//       the layer kinds (layers.h) at about one parameter budget, one table per layer shape
//       and token count, a row per kind: dense; pixelfly (bs, nf, rank); blocksparse, a random
//       mask of nf+1 blocks per super-row at the same bs and rank (seed 1); lowrank at the
//       rank, and butterfly at the bs (a power of two 2..256 dividing both sides), whose
//       weights are closest to the Pixelfly layer's. Each layer is declared with
//       pf_linear_declare on an arena of its own (with a bias) and timed through
//       pf_linear_forward and pf_linear_backward, the calls a model makes, all kinds of a table
//       in the same rounds (each round calls every kind's three once, so a shared machine's
//       slow moments fall on all of them alike); each column is the median over rounds of
//       its value in one round:
//         fwd    pf_linear_forward
//         dS     pf_linear_backward with dx absent: every parameter gradient, with what it
//                needs on the way (Pixelfly's and lowrank's dy U, butterfly's input gradients
//                of every factor but the first)
//         dX     pf_linear_backward with dx present (the whole backward) minus dS, per round:
//                noisy when dX is small (a negative difference is shown as 0)
//         total  fwd + the whole backward; speed-up = dense total / total (same round)
//       params = stored weights (bias excluded), kept = params / (out x in). The bound is the
//       sum, over the ops the layer calls (masked kinds one Pixelfly op, butterfly its L
//       factors, lowrank its two linear ops) and their fwd, dX and dS passes, of the pass's
//       roofline bound as `kernels` computes it, with the FLOP side at the dense layer's rate
//       in the same table (forward for fwd, whole backward for dX and dS) and dy U counted
//       once per backward; "% bound" = bound / total (dense: about 100%, by construction).
//       Defaults: --bs 16 --nf 2 --rank 32 --repeat 5 --shapes 768x3072,3072x768,1024x1024,
//       --tokens as kernels.
//   pfbench step CONFIG... [--steps K] [--set section.key=value]... [--backend cpu|cuda]
//       median time of a whole training step (forward, backward, AdamW) of each config's
//       model on synthetic data, and tokens/s or images/s, relative to the first config of
//       the same model family (list the dense twin first); the model FLOP/s (nonzero work),
//       MFU against a known GPU's bf16 peak, and the device memory in use.
//   pfbench data CONFIG [--batches K] [--steps K] [--workers N,...] [--set section.key=value]...
//                [--backend cpu|cuda]
//       the config's training data (data.train, with its augmentation and mixing): loader
//       throughput in items/s (images or tokens) and per thread, built in the step on 1 and on
//       all OpenMP threads and by each count of --workers loader threads (default 1,2,4 up to
//       the CPUs), each over --batches batches (default 20) taken back to back after the queue
//       filled; then the mean training step on a synthetic batch, on one real batch used
//       again and again (real inputs without loading), and on the real data as the config
//       loads it (data.workers, data.prefetch), and the ratios: 3 blocks of each in turn, a block --steps steps (default 10) back to back after 2 warm-up steps, every
//       loaded block from a freshly opened source. Means, not medians: a loader that falls
//       behind shows as a slower mean, which a median can hide.
//
// Activations are in the backend's dtype (fp32 on the CPU, bf16 on CUDA), weight gradients fp32.
// Medians over --repeat (--steps) timed runs after one (two) warm-up runs; the machine, the
// device and the thread count are printed so a figure can be quoted with them.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "layers.h"
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

// Times n calls, fn[i](ctx[i]), in `repeat` rounds after one warm-up round; each round calls
// every one once, in order, so that the slow and the fast moments of a shared machine fall on
// all of them alike. t[r * n + i] = call i's time in round r (ms).
static void time_rounds(const pf_backend *be, int n, const bench_fn *fn, void *const *ctx,
                        int repeat, double *t) {
    // warm-up: first-touch pages, BLAS buffers, GPU clocks
    for (int i = 0; i < n; i++) fn[i](ctx[i]);
    be->synchronize();
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < n; i++) {
            double t0 = pf_now();
            fn[i](ctx[i]);
            be->synchronize();
            t[r * n + i] = 1e3 * (pf_now() - t0);
        }
}

static double time_median_ms(const pf_backend *be, bench_fn fn, void *ctx, int repeat) {
    double *t = pf_malloc(sizeof(double) * repeat);
    time_rounds(be, 1, &fn, &ctx, repeat, t);
    double m = median(t, repeat);
    free(t);
    return m;
}

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
    return pf_tensor_2d(random_buffer(be, a * b, dt, rng), dt, be->device, a, b);
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
        double ts = time_median_ms(l->be, sparse_pass[k], l, tb->repeat);
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
    print_machine(be);
    return (kernel_table){.cuda = be->device == PF_DEV_CUDA,
                          .act_size = pf_dtype_size(be->act_dtype), .repeat = o->repeat};
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
                double ms = time_median_ms(be, dense_pass[k], &l, o->repeat);
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
    int64_t w = pf_linear_declare(&l, &lay, pf_linear_kind_name(spec.kind), in, out, true, spec,
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
    PF_ASSERT(pf_linear_declare(&k->lin, &k->lay, pf_linear_kind_name(spec.kind), in, out, true,
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
// backward) and c[2] (dS), against dense's d[3], in the times t of time_rounds (n calls a
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
    for (int k = 0; k < COL_COUNT; k++) col[k] = median(v + k * repeat, repeat);
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
    time_rounds(be, n, fn, ctx, tb->repeat, t);

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
        const char *name = pf_linear_kind_name(spec[i].kind);
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

static int cmd_kinds(const pf_backend *be, const kernel_opts *o) {
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

// ---- whole training steps ------------------------------------------------------------------

typedef struct {
    pf_model *model;
    const pf_config *cfg;
    pf_batch batch;  // the batch every step takes when data is NULL
    pf_data *data;   // loaded batches, or NULL
    bool staged;     // the model holds the next step's batch, staged
    int step;
} step_bench;

// Takes the next batch and stages it in the model.
static void stage_next(step_bench *s) {
    pf_batch b = s->batch;
    if (s->data && pf_data_next(s->data, &b) < 0) PF_FATAL("pfbench: %s", pf_errmsg());
    pf_model_stage(s->model, &b);
    s->staged = true;
}

// One training step as pftrain runs it: forward of the staged batch, backward, the next batch
// taken and staged while the backward runs (on CUDA it overlaps), clip, AdamW.
static void train_step_once(void *c) {
    step_bench *s = c;
    pf_arena *a = pf_model_arena(s->model);
    const pf_layout *lay = a->layout;
    const pf_backend *be = a->be;
    be->zero(a->grads, sizeof(float) * lay->numel);
    if (!s->staged) stage_next(s);
    s->staged = false;
    pf_model_arm_dropout(s->model, (uint64_t)s->step, 0);  // train.dropout, as pftrain's
    pf_model_forward(s->model, NULL, NULL);
    pf_model_backward(s->model, 1.0f, NULL, NULL);
    stage_next(s);
    float clip = 1.0f;
    pf_grad_norm(be, a->grads, lay->numel, s->cfg->grad_clip, &clip);
    s->step++;
    pf_model_adamw_step(s->model, s->cfg->lr, s->step, clip);
}

// The config at path with the --set overrides applied, and checked whole when `validate`
// (`step` runs synthetic data and needs no data.train); -1 after saying why.
static int load_config(pf_config *c, const char *path, char **sets, int nsets, bool validate) {
    pf_config_defaults(c);
    int rc = pf_config_load(c, path);
    for (int k = 0; rc == 0 && k < nsets; k++) rc = pf_config_set(c, sets[k]);
    if (rc == 0 && validate) rc = pf_config_validate(c);
    if (rc < 0) fprintf(stderr, "pfbench: %s: %s\n", path, pf_errmsg());
    return rc;
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
        if (load_config(&c, configs[i], sets, nsets, false) < 0) return PF_EXIT_USAGE;
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

// ---- data loading --------------------------------------------------------------------------

// Seconds per batch taken back to back from a source built with `workers` loader threads
// (0: in the step, on omp_threads OpenMP threads), after 1 + prefetch warm-up batches.
static double loader_seconds(pf_config c, int workers, int omp_threads, int batches) {
    c.data_workers = workers;
    if (workers > 0 && c.data_prefetch < 2) c.data_prefetch = 2;
    int saved = omp_get_max_threads();
    omp_set_num_threads(omp_threads);
    pf_data *d = pf_data_open(&c, c.train_path, c.batch_size, 0, 1, true);
    if (!d) {
        omp_set_num_threads(saved);
        return -1;
    }
    pf_batch b;
    double t0 = 0;
    int rc = 0;
    for (int k = 0; rc == 0 && k < batches + 1 + c.data_prefetch; k++) {
        if (k == 1 + c.data_prefetch) t0 = pf_now();
        rc = pf_data_next(d, &b);
    }
    double dt = (pf_now() - t0) / batches;
    pf_data_close(d);
    omp_set_num_threads(saved);
    return rc < 0 ? -1 : dt;
}

// Mean step time (ms) over `steps` steps after 2 warm-up steps, back to back, taking s's
// batches (s->data, or s->batch); the first step may compute a batch staged before.
static double mean_step_ms(const pf_backend *be, step_bench *s, int steps) {
    for (int k = 0; k < 2; k++) train_step_once(s);
    be->synchronize();
    double t0 = pf_now();
    for (int k = 0; k < steps; k++) train_step_once(s);
    be->synchronize();
    return 1e3 * (pf_now() - t0) / steps;
}

static int cmd_data(const pf_backend *be, const char *path, char **sets, int nsets, int batches,
                    int steps, const int *workers, int nworkers) {
    pf_config c;
    if (load_config(&c, path, sets, nsets, true) < 0) return PF_EXIT_USAGE;
    print_machine(be);
    bool gpt2 = c.model == PF_MODEL_GPT2;
    const char *unit = gpt2 ? "tok" : "img";
    double per_batch = gpt2 ? (double)c.batch_size * c.seq_len : c.batch_size;
    printf("data.train = %s, batch %d, ", c.train_path, c.batch_size);
    if (gpt2)
        printf("windows of %d tokens\n", c.seq_len);
    else
        printf("%dx%d output, random resized crop %s (scale >= %g), flip %s, mixup %g, cutmix "
               "%g\n", c.image_size, c.image_size, c.augment_scale_min < 1 ? "on" : "off",
               (double)c.augment_scale_min, c.hflip ? "on" : "off", (double)c.mixup_alpha,
               (double)c.cutmix_alpha);
    printf("loader: %d batches taken back to back after the queue filled\n", batches);
    printf("%-28s %12s %16s %18s\n", "built by", "ms/batch", "throughput", "per thread");
    int cpus = omp_get_num_procs();
    typedef struct {
        int workers, omp;
    } loader_row;
    loader_row rows[2 + 8];
    int n = 0;
    rows[n++] = (loader_row){0, 1};
    if (cpus > 1) rows[n++] = (loader_row){0, cpus};
    for (int i = 0; i < nworkers; i++) rows[n++] = (loader_row){workers[i], 1};
    for (int i = 0; i < n; i++) {
        double sec = loader_seconds(c, rows[i].workers, rows[i].omp, batches);
        if (sec < 0) {
            fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
            return PF_EXIT_FAILURE;
        }
        int threads = rows[i].workers ? rows[i].workers : rows[i].omp;
        char who[64], tput[32], per[32];
        snprintf(who, sizeof who, rows[i].workers ? "%d loader thread%s" : "in the step, %d thread%s",
                 threads, threads == 1 ? "" : "s");
        snprintf(tput, sizeof tput, "%.0f %s/s", per_batch / sec, unit);
        snprintf(per, sizeof per, "%.0f %s/s", per_batch / sec / threads, unit);
        printf("%-28s %12.2f %16s %18s\n", who, 1e3 * sec, tput, per);
        fflush(stdout);
    }

    step_bench s = {.cfg = &c};
    pf_mem_plan plan;
    if (pf_mem_plan_compute(&c, be, &plan) < 0 || pf_mem_plan_check(&plan, &c, be, 1) < 0 ||
        !(s.model = pf_model_create(&c, be, c.batch_size))) {
        fprintf(stderr, "pfbench: %s: %s\n", path, pf_errmsg());
        return PF_EXIT_USAGE;
    }
    pf_model_init_params(s.model, c.seed);
    pf_rng rng;
    pf_rng_seed(&rng, 7);
    void *owned[2] = {0};
    pf_batch synthetic, reused;
    synthetic_batch(&c, &synthetic, &rng, owned);
    // The first loaded batch, used again and again: the step on real data without loading
    // (real and random inputs need not cost the same: GELU, softmax and the embedding
    // gradient take data-dependent time on a CPU).
    pf_config one = c;
    one.data_workers = 0;
    pf_data *first = pf_data_open(&one, c.train_path, c.batch_size, 0, 1, true);
    if (!first || pf_data_next(first, &reused) < 0) {
        fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
        return PF_EXIT_FAILURE;
    }
    // Blocks of `steps` steps of the three in turn, 3 of each, so that a shared machine's slow
    // moments fall on all. Each loaded block opens a fresh source: its threads start when the
    // first batch is asked for, so no block finds batches built in advance.
    double ms_syn = 0, ms_reused = 0, ms_real = 0;
    for (int round = 0; round < 3; round++) {
        s.batch = synthetic;
        ms_syn += mean_step_ms(be, &s, steps) / 3;
        s.batch = reused;
        ms_reused += mean_step_ms(be, &s, steps) / 3;
        if (!(s.data = pf_data_open(&c, c.train_path, c.batch_size, 0, 1, true))) {
            fprintf(stderr, "pfbench data: %s\n", pf_errmsg());
            return PF_EXIT_FAILURE;
        }
        ms_real += mean_step_ms(be, &s, steps) / 3;
        pf_data_close(s.data);
        s.data = NULL;
    }
    printf("\ntraining step, mean over 3 blocks of %d steps (each after 2 warm-up steps), the "
           "three kinds of block in turn, %d OpenMP threads:\n", steps, omp_get_max_threads());
    const char *what[3] = {"synthetic batch", "one real batch, reused", "loaded batches"};
    double ms[3] = {ms_syn, ms_reused, ms_real};
    for (int k = 0; k < 3; k++)
        printf("  %-24s %10.2f ms  %10.0f %s/s\n", what[k], ms[k], per_batch / (ms[k] / 1e3),
               unit);
    printf("  loaded batches with data.workers = %d, data.prefetch = %d\n", c.data_workers,
           c.data_prefetch);
    printf("  loaded / synthetic step time: %.3f\n", ms_real / ms_syn);
    printf("  loaded / reused step time: %.3f (the cost of loading)\n", ms_real / ms_reused);
    pf_data_close(first);
    free(owned[0]);
    free(owned[1]);
    pf_model_free(s.model);
    return PF_EXIT_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfbench kernels [--tokens N,...] [--shapes INxOUT,...] [--bs B,...]\n"
            "                       [--nf F,...] [--rank R,...] [--repeat K]\n"
            "                       [--backend cpu|cuda]\n"
            "       pfbench kinds [--tokens N,...] [--shapes INxOUT,...] [--bs B] [--nf F]\n"
            "                     [--rank R] [--repeat K] [--backend cpu|cuda]\n"
            "       pfbench step CONFIG... [--steps K] [--set section.key=value]...\n"
            "                       [--backend cpu|cuda]\n"
            "       pfbench data CONFIG [--batches K] [--steps K] [--workers N,...]\n"
            "                       [--set section.key=value]... [--backend cpu|cuda]\n");
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
    // Tokens, shapes and patterns default by command and backend, below.
    kernel_opts ko = {.repeat = 5};
    char *configs[32], *sets[64];
    int nconfigs = 0, nsets = 0, steps = 0;  // 0: the command's default
    bool kernels = !strcmp(argv[1], "kernels"), kinds = !strcmp(argv[1], "kinds");
    bool data = !strcmp(argv[1], "data");
    int batches = 20, workers[8], nworkers = 0;
    bool layer = kernels || kinds;  // the commands that time single layers
    int npat = kinds ? 1 : MAX_LIST;  // kinds: one Pixelfly pattern
    const char *want_pos = kinds ? "an integer >= 1" : "up to 8 comma-separated integers >= 1";
    if (!layer && !data && strcmp(argv[1], "step")) {
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
        } else if (layer && !strcmp(a, "--tokens")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (ko.ntokens = parse_ints(v, ko.tokens, MAX_LIST, 1)) < 1;
        } else if (layer && !strcmp(a, "--repeat")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &ko.repeat, 1, 1) != 1;
        } else if (layer && !strcmp(a, "--bs")) {
            want = want_pos;
            bad = bad || (ko.nbs = parse_ints(v, ko.bs, npat, 1)) < 1;
        } else if (layer && !strcmp(a, "--nf")) {
            want = want_pos;
            bad = bad || (ko.nnf = parse_ints(v, ko.nf, npat, 1)) < 1;
        } else if (layer && !strcmp(a, "--rank")) {
            want = kinds ? "an integer >= 0" : "up to 8 comma-separated integers >= 0";
            bad = bad || (ko.nrank = parse_ints(v, ko.rank, npat, 0)) < 1;
        } else if (layer && !strcmp(a, "--shapes")) {
            want = "up to 16 comma-separated INxOUT, e.g. 768x3072,3072x768";
            bad = bad || !parse_shapes(v, &ko);
        } else if (data && !strcmp(a, "--batches")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &batches, 1, 1) != 1;
        } else if (data && !strcmp(a, "--workers")) {
            want = "up to 8 comma-separated integers >= 1";
            bad = bad || (nworkers = parse_ints(v, workers, 8, 1)) < 1;
        } else if (!layer && !strcmp(a, "--steps")) {
            want = "an integer >= 1";
            bad = bad || parse_ints(v, &steps, 1, 1) != 1;
        } else if (!layer && !strcmp(a, "--set")) {
            want = "section.key=value, at most 64 of them";
            bad = bad || nsets == 64;
            if (!bad) sets[nsets++] = argv[i + 1];
        } else if (!layer && a[0] != '-') {
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
        ko.nbs = cuda && !kinds ? 3 : 1;
        memcpy(ko.bs, cuda && !kinds ? cuda_bs : cpu_bs, sizeof(int) * ko.nbs);
    }
    if (!ko.nnf) {
        ko.nnf = kinds ? 1 : 2;
        memcpy(ko.nf, (int[]){2, 3}, sizeof(int) * ko.nnf);
    }
    if (!ko.nrank) {  // kinds: Pixelfly with its low-rank term, as the paper's layers
        ko.nrank = kinds ? 1 : 2;
        memcpy(ko.rank, kinds ? (int[]){32} : (int[]){0, 32}, sizeof(int) * ko.nrank);
    }
    if (!ko.nshapes && kinds) {  // both GPT-2 small MLP layers and a square one
        int shapes[3][2] = {{768, 3072}, {3072, 768}, {1024, 1024}};
        ko.nshapes = 3;
        memcpy(ko.shapes, shapes, sizeof shapes);
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
    if (kinds) return cmd_kinds(be, &ko);
    if (data) {
        if (nconfigs != 1) {
            fprintf(stderr, "pfbench data: give one CONFIG (its data.train is measured)\n");
            return PF_EXIT_USAGE;
        }
        if (!nworkers)  // 1, 2, 4, ... up to the CPUs
            for (int w = 1; w <= omp_get_num_procs() && nworkers < 8; w *= 2) workers[nworkers++] = w;
        return cmd_data(be, configs[0], sets, nsets, batches, steps ? steps : 10, workers,
                        nworkers);
    }
    if (nconfigs == 0) {
        fprintf(stderr, "pfbench step: give one or more CONFIG files (dense and Pixelfly "
                        "twins side by side, e.g. configs/gpt2-tiny-{dense,pixelfly}.ini)\n");
        return PF_EXIT_USAGE;
    }
    return cmd_step(be, configs, nconfigs, sets, nsets, steps ? steps : 5);
}
