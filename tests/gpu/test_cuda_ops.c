// test_cuda_ops.c: every op of the CUDA backend against the CPU reference backend, on random
// inputs and several shapes (sizes that are not multiples of 32 included).
//
// For each case both backends get the same inputs. Outputs the op overwrites start as NaN on
// the device (so an element the kernel forgets to write fails the case); outputs the op
// accumulates into start with the same random values on both sides, and their increments
// (result - start) are compared, so a small gradient is not hidden by a large start value.
// Error = max |cuda - cpu| / max |cpu| per output (on increments for accumulated ones).
//
// Then whole training steps of tiny models (GPT-2, ViT, Mixer; Pixelfly and dense): the same
// init seed and batch on both backends, loss and gradient norm within TOL, every parameter
// tensor's gradient within MODEL_TOL of the CPU's.
//
// Standalone (no Check: the GPU machines lack libcheck). Prints one line per case and
// "N passed, N failed"; exits 1 on any failure, 0 with a SKIP line when no device is visible.
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "pattern.h"

#define TOL 1e-4        // fp32 on both sides, different summation orders
#define BF16_TOL 2e-2   // bf16 inputs and outputs (8 significant bits), fp32 accumulation
#define MODEL_TOL 1e-3  // per gradient tensor after a whole backward pass

static const pf_backend *CPU = &pf_backend_cpu, *GPU = &pf_backend_cuda;

// ---- buffers on both backends -----------------------------------------------------------

typedef enum { IN, OUT, ACC } buf_kind;  // input, overwritten output, accumulated output

typedef struct {
    pf_dtype dt;
    int ndim;
    int64_t shape[PF_MAX_DIMS], n;
    buf_kind kind;
    void *h, *d;  // CPU backend's copy, CUDA backend's copy
    float *init;  // ACC: the start values
} buf;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(void) {  // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

// Uploads the host values of b to its device copy, in the device dtype. For a bf16 buffer the
// host values are rounded to bf16 first, so both backends see the same numbers.
static void upload_buf(buf *b, const float *values) {
    size_t n = (size_t)b->n;
    if (b->dt != PF_BF16) {
        GPU->upload(b->d, values, sizeof(float) * n);
        return;
    }
    uint16_t *h16 = pf_malloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h16[i] = pf_bf16_from_f32(values[i]);
    GPU->upload(b->d, h16, sizeof(uint16_t) * n);
    free(h16);
}

// Re-rounds the host copy of a bf16 buffer (after the test changed it) and uploads it.
static void sync_buf(buf *b) {
    float *h = b->h;
    if (b->dt == PF_BF16)
        for (int64_t i = 0; i < b->n; i++) h[i] = pf_f32_from_bf16(pf_bf16_from_f32(h[i]));
    upload_buf(b, h);
}

// A buffer of dtype dt on the device. The CPU copy is fp32 (int32 for PF_I32) holding the
// same values: the CPU reference computes in fp32 on the bf16-rounded inputs.
static buf make(buf_kind kind, pf_dtype dt, int ndim, int64_t s0, int64_t s1, int64_t s2,
                int64_t s3) {
    buf b = {.dt = dt, .ndim = ndim, .shape = {s0, s1, s2, s3}, .n = 1, .kind = kind};
    for (int i = 0; i < ndim; i++) b.n *= b.shape[i];
    size_t bytes = sizeof(float) * (size_t)b.n;
    b.h = pf_malloc(bytes ? bytes : 4);
    b.d = GPU->alloc((size_t)b.n * pf_dtype_size(dt));
    float *h = b.h;
    for (int64_t i = 0; i < b.n; i++) h[i] = urand();
    if (kind == OUT) {
        float *nan = pf_malloc(bytes ? bytes : 4);
        for (int64_t i = 0; i < b.n; i++) nan[i] = NAN;
        upload_buf(&b, nan);
        free(nan);
    } else {
        sync_buf(&b);
    }
    if (kind == ACC) {
        b.init = pf_malloc(bytes ? bytes : 4);
        memcpy(b.init, b.h, bytes);
    }
    return b;
}

#define F1(k, a) make(k, PF_F32, 1, a, 0, 0, 0)
#define F2(k, a, b) make(k, PF_F32, 2, a, b, 0, 0)
#define F3(k, a, b, c) make(k, PF_F32, 3, a, b, c, 0)
#define F4(k, a, b, c, d) make(k, PF_F32, 4, a, b, c, d)
// Activation-dtype buffers (fp32 or bf16: the op is tested in both).
#define A1(dt, k, a) make(k, dt, 1, a, 0, 0, 0)
#define A2(dt, k, a, b) make(k, dt, 2, a, b, 0, 0)
#define A3(dt, k, a, b, c) make(k, dt, 3, a, b, c, 0)
#define A4(dt, k, a, b, c, d) make(k, dt, 4, a, b, c, d)

// An int32 input with the given host values.
static buf ints(int ndim, int64_t s0, int64_t s1, const int32_t *v) {
    buf b = make(IN, PF_I32, ndim, s0, s1, 0, 0);
    memcpy(b.h, v, sizeof(int32_t) * (size_t)b.n);
    GPU->upload(b.d, b.h, sizeof(int32_t) * (size_t)b.n);
    return b;
}

// Scale a float input (both copies) by s.
static void scale_buf(buf *b, float s) {
    float *h = b->h;
    for (int64_t i = 0; i < b->n; i++) h[i] *= s;
    sync_buf(b);
}

static pf_tensor view(const buf *b, void *data, pf_device dev) {
    pf_dtype dt = dev == PF_DEV_CPU && b->dt == PF_BF16 ? PF_F32 : b->dt;
    pf_tensor t = {.data = data, .dtype = dt, .device = dev, .ndim = b->ndim};
    for (int i = 0; i < b->ndim; i++) t.shape[i] = b->shape[i];
    return t;
}
static pf_tensor tc(const buf *b) { return view(b, b->h, PF_DEV_CPU); }
static pf_tensor tg(const buf *b) { return view(b, b->d, PF_DEV_CUDA); }

static void release(buf *b) {
    free(b->h);
    free(b->init);
    GPU->free(b->d);
}

// ---- cases ----------------------------------------------------------------------------------

static int n_pass, n_fail;
static char case_name[256];
static double case_err;
static char case_worst[64];
static bool case_ok;

static void begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void begin(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(case_name, sizeof case_name, fmt, ap);
    va_end(ap);
    case_err = 0;
    case_ok = true;
    snprintf(case_worst, sizeof case_worst, "-");
}

// Compare output `b` of the current case at relative tolerance tol.
static void cmp_tol(const char *what, const buf *b, double tol) {
    GPU->synchronize();
    size_t bytes = sizeof(float) * (size_t)b->n;
    float *g = pf_malloc(bytes ? bytes : 4);
    if (b->dt == PF_BF16) {
        uint16_t *g16 = (uint16_t *)g;  // converted in place from the back
        GPU->download(g16, b->d, sizeof(uint16_t) * (size_t)b->n);
        for (int64_t i = b->n - 1; i >= 0; i--) g[i] = pf_f32_from_bf16(g16[i]);
    } else {
        GPU->download(g, b->d, bytes);
    }
    const float *c = b->h;
    double diff = 0, ref = 0;
    bool nan = false;
    for (int64_t i = 0; i < b->n; i++) {
        double base = b->init ? b->init[i] : 0;
        double dc = c[i] - base, dg = g[i] - base;
        if (isnan(dg) && !isnan(dc)) nan = true;
        if (fabs(dg - dc) > diff) diff = fabs(dg - dc);
        if (fabs(dc) > ref) ref = fabs(dc);
    }
    free(g);
    double err = nan ? INFINITY : diff / (ref > 1e-30 ? ref : 1e-30);
    if (diff == 0) err = 0;
    if (err > case_err || !(err <= tol)) {
        case_err = err;
        snprintf(case_worst, sizeof case_worst, "%s", what);
    }
    if (!(err <= tol)) case_ok = false;
}
static void cmp(const char *what, const buf *b) { cmp_tol(what, b, TOL); }

static void end(void) {
    printf("%s %-64s max rel err %.2e (%s)\n", case_ok ? "PASS" : "FAIL", case_name, case_err,
           case_worst);
    fflush(stdout);
    if (case_ok)
        n_pass++;
    else
        n_fail++;
}

// ---- linear -----------------------------------------------------------------------------

static void test_linear(int64_t N, int64_t in, int64_t out, bool bias, bool with_dx) {
    buf x = F2(IN, N, in), w = F2(IN, out, in), b = F1(IN, out), y = F2(OUT, N, out);
    pf_tensor bc = bias ? tc(&b) : pf_none(), bg = bias ? tg(&b) : pf_none();
    begin("linear_fwd N=%ld in=%ld out=%ld bias=%d", (long)N, (long)in, (long)out, bias);
    CPU->linear_fwd(tc(&y), tc(&x), tc(&w), bc);
    GPU->linear_fwd(tg(&y), tg(&x), tg(&w), bg);
    cmp("y", &y);
    end();

    buf dy = F2(IN, N, out), dx = F2(ACC, N, in), dw = F2(ACC, out, in), db = F1(ACC, out);
    begin("linear_bwd N=%ld in=%ld out=%ld bias=%d dx=%d", (long)N, (long)in, (long)out, bias,
          with_dx);
    CPU->linear_bwd(with_dx ? tc(&dx) : pf_none(), tc(&dw), bias ? tc(&db) : pf_none(),
                    tc(&dy), tc(&x), tc(&w));
    GPU->linear_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dw), bias ? tg(&db) : pf_none(),
                    tg(&dy), tg(&x), tg(&w));
    cmp("dx", &dx);
    cmp("dw", &dw);
    cmp("db", &db);
    end();
    buf *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- pixelfly -----------------------------------------------------------------------------

static pf_pixelfly_w pw(const pf_pattern *p, buf *S, buf *U, buf *V, buf *b, bool gpu) {
    pf_tensor (*t)(const buf *) = gpu ? tg : tc;
    return (pf_pixelfly_w){.S = S ? t(S) : pf_none(),
                           .U = p->rank ? t(U) : pf_none(),
                           .V = p->rank ? t(V) : pf_none(),
                           .b = p->bias ? t(b) : pf_none()};
}

static void test_pixelfly(int64_t N, int out, int in, int bs, int nf, int rank, bool bias,
                          bool with_dx) {
    pf_pattern p;
    if (pf_pattern_init(&p, out, in, bs, nf, rank, bias)) PF_FATAL("%s", pf_errmsg());
    int64_t r1 = rank ? rank : 1;  // placeholder size for absent low-rank buffers
    buf x = F2(IN, N, in), S = F4(IN, bs, nf + 1, p.ob, p.ib), U = F2(IN, out, r1),
        V = F2(IN, r1, in), b = F1(IN, out), y = F2(OUT, N, out), xv = F2(OUT, N, r1);
    const char *fmt = "N=%ld out=%d in=%d bs=%d nf=%d r=%d bias=%d";
    char shape[128];
    snprintf(shape, sizeof shape, fmt, (long)N, out, in, bs, nf, rank, bias);
    begin("pixelfly_fwd %s", shape);
    CPU->pixelfly_fwd(&p, tc(&y), rank ? tc(&xv) : pf_none(), tc(&x),
                      pw(&p, &S, &U, &V, &b, false));
    GPU->pixelfly_fwd(&p, tg(&y), rank ? tg(&xv) : pf_none(), tg(&x),
                      pw(&p, &S, &U, &V, &b, true));
    cmp("y", &y);
    if (rank) cmp("xv", &xv);
    end();

    // Backward reads xv as an input: give both sides the CPU forward's.
    sync_buf(&xv);
    buf dy = F2(IN, N, out), dx = F2(ACC, N, in), dS = F4(ACC, bs, nf + 1, p.ob, p.ib),
        dU = F2(ACC, out, r1), dV = F2(ACC, r1, in), db = F1(ACC, out), dxv = F2(OUT, N, r1);
    begin("pixelfly_bwd %s dx=%d", shape, with_dx);
    CPU->pixelfly_bwd(&p, with_dx ? tc(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, false),
                      rank ? tc(&dxv) : pf_none(), tc(&dy), tc(&x), rank ? tc(&xv) : pf_none(),
                      pw(&p, &S, &U, &V, &b, false));
    GPU->pixelfly_bwd(&p, with_dx ? tg(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, true),
                      rank ? tg(&dxv) : pf_none(), tg(&dy), tg(&x), rank ? tg(&xv) : pf_none(),
                      pw(&p, &S, &U, &V, &b, true));
    cmp("dx", &dx);
    cmp("dS", &dS);
    cmp("dU", &dU);
    cmp("dV", &dV);
    cmp("db", &db);
    if (rank) cmp("dxv", &dxv);
    end();
    buf *all[] = {&x, &S, &U, &V, &b, &y, &xv, &dy, &dx, &dS, &dU, &dV, &db, &dxv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- layernorm ----------------------------------------------------------------------------

static void test_layernorm(int64_t N, int64_t C, bool bias, bool with_dx) {
    buf x = F2(IN, N, C), g = F1(IN, C), b = F1(IN, C), y = F2(OUT, N, C), mean = F1(OUT, N),
        rstd = F1(OUT, N);
    scale_buf(&x, 3.0f);
    begin("layernorm_fwd N=%ld C=%ld bias=%d", (long)N, (long)C, bias);
    CPU->layernorm_fwd(tc(&y), tc(&mean), tc(&rstd), tc(&x), tc(&g), bias ? tc(&b) : pf_none(),
                       1e-5f);
    GPU->layernorm_fwd(tg(&y), tg(&mean), tg(&rstd), tg(&x), tg(&g), bias ? tg(&b) : pf_none(),
                       1e-5f);
    cmp("y", &y);
    cmp("mean", &mean);
    cmp("rstd", &rstd);
    end();

    GPU->upload(mean.d, mean.h, sizeof(float) * (size_t)N);
    GPU->upload(rstd.d, rstd.h, sizeof(float) * (size_t)N);
    buf dy = F2(IN, N, C), dx = F2(ACC, N, C), dg = F1(ACC, C), db = F1(ACC, C);
    begin("layernorm_bwd N=%ld C=%ld dx=%d", (long)N, (long)C, with_dx);
    CPU->layernorm_bwd(with_dx ? tc(&dx) : pf_none(), tc(&dg), tc(&db), tc(&dy), tc(&x), tc(&g),
                       tc(&mean), tc(&rstd));
    GPU->layernorm_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dg), tg(&db), tg(&dy), tg(&x), tg(&g),
                       tg(&mean), tg(&rstd));
    cmp("dx", &dx);
    cmp("dg", &dg);
    cmp("db", &db);
    end();
    buf *all[] = {&x, &g, &b, &y, &mean, &rstd, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- elementwise ---------------------------------------------------------------------------

static void test_elementwise(int64_t n) {
    buf x = F1(IN, n), y = F1(OUT, n), dy = F1(IN, n), dx = F1(ACC, n);
    scale_buf(&x, 4.0f);
    begin("gelu_fwd n=%ld", (long)n);
    CPU->gelu_fwd(tc(&y), tc(&x));
    GPU->gelu_fwd(tg(&y), tg(&x));
    cmp("y", &y);
    end();
    begin("gelu_bwd n=%ld", (long)n);
    CPU->gelu_bwd(tc(&dx), tc(&dy), tc(&x));
    GPU->gelu_bwd(tg(&dx), tg(&dy), tg(&x));
    cmp("dx", &dx);
    end();

    buf a = F1(IN, n), b = F1(IN, n), s = F1(OUT, n), acc = F1(ACC, n);
    begin("add n=%ld", (long)n);
    CPU->add(tc(&s), tc(&a), tc(&b));
    GPU->add(tg(&s), tg(&a), tg(&b));
    cmp("y", &s);
    end();
    begin("accumulate n=%ld", (long)n);
    CPU->accumulate(tc(&acc), tc(&a));
    GPU->accumulate(tg(&acc), tg(&a));
    cmp("dst", &acc);
    end();
    // y aliasing b: b is an input, so compare it as an overwritten output.
    begin("add aliased (y = b) n=%ld", (long)n);
    CPU->add(tc(&b), tc(&a), tc(&b));
    GPU->add(tg(&b), tg(&a), tg(&b));
    cmp("y", &b);
    end();

    buf sc = F1(ACC, n);
    begin("scale n=%ld", (long)n);
    CPU->scale(tc(&sc), -0.37f);
    GPU->scale(tg(&sc), -0.37f);
    cmp("x", &sc);
    end();
    buf *all[] = {&x, &y, &dy, &dx, &a, &b, &s, &acc, &sc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

static void test_sumsq(int64_t n) {
    buf x = F1(IN, n);
    begin("sumsq n=%ld", (long)n);
    double c = CPU->sumsq(tc(&x)), g = GPU->sumsq(tg(&x));
    double err = fabs(c - g) / (fabs(c) > 1e-30 ? fabs(c) : 1e-30);
    case_err = err;
    snprintf(case_worst, sizeof case_worst, "cpu %.9g cuda %.9g", c, g);
    case_ok = err <= 1e-9;
    end();
    release(&x);
}

// ---- attention ----------------------------------------------------------------------------

static void test_attention(int64_t B, int64_t T, int64_t C, int NH, bool causal) {
    buf qkv = F3(IN, B, T, 3 * C), out = F3(OUT, B, T, C), att = F4(OUT, B, NH, T, T);
    scale_buf(&qkv, 2.0f);
    char shape[96];
    snprintf(shape, sizeof shape, "B=%ld T=%ld C=%ld NH=%d causal=%d", (long)B, (long)T,
             (long)C, NH, causal);
    begin("attention_fwd %s", shape);
    CPU->attention_fwd(tc(&out), tc(&att), tc(&qkv), NH, causal);
    GPU->attention_fwd(tg(&out), tg(&att), tg(&qkv), NH, causal);
    cmp("out", &out);
    cmp("att", &att);
    end();

    // Backward reads att as saved by a forward: give both sides the CPU's.
    GPU->upload(att.d, att.h, sizeof(float) * (size_t)att.n);
    buf dout = F3(IN, B, T, C), dqkv = F3(ACC, B, T, 3 * C), datt = F4(OUT, B, NH, T, T);
    begin("attention_bwd %s", shape);
    CPU->attention_bwd(tc(&dqkv), tc(&datt), tc(&dout), tc(&qkv), tc(&att), NH, causal);
    GPU->attention_bwd(tg(&dqkv), tg(&datt), tg(&dout), tg(&qkv), tg(&att), NH, causal);
    cmp("dqkv", &dqkv);
    cmp("datt", &datt);
    end();
    buf *all[] = {&qkv, &out, &att, &dout, &dqkv, &datt};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- cross-entropy --------------------------------------------------------------------------

static void test_xent(int64_t N, int V, int64_t Vp, float smoothing) {
    buf logits = F2(IN, N, Vp), losses = F1(OUT, N), dl = F2(ACC, N, Vp);
    scale_buf(&logits, 5.0f);
    int32_t *t = pf_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++)
        t[i] = i % 7 == 3 ? -1 : (int32_t)((urand() + 1) * 0.5f * V) % V;  // some ignored
    buf tg_ = ints(1, N, 0, t);
    free(t);
    begin("xent_fwd N=%ld V=%d Vp=%ld eps=%g", (long)N, V, (long)Vp, smoothing);
    CPU->xent_fwd(tc(&losses), tc(&logits), tc(&tg_), V, -1, smoothing);
    GPU->xent_fwd(tg(&losses), tg(&logits), tg(&tg_), V, -1, smoothing);
    cmp("losses", &losses);
    end();
    begin("xent_bwd N=%ld V=%d Vp=%ld eps=%g", (long)N, V, (long)Vp, smoothing);
    CPU->xent_bwd(tc(&dl), tc(&logits), tc(&tg_), V, -1, smoothing, 1.0f / (float)N);
    GPU->xent_bwd(tg(&dl), tg(&logits), tg(&tg_), V, -1, smoothing, 1.0f / (float)N);
    cmp("dlogits", &dl);
    end();
    buf *all[] = {&logits, &losses, &dl, &tg_};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- embedding ----------------------------------------------------------------------------

static void test_embedding(int64_t B, int64_t T, int64_t C, int64_t vocab, bool with_wpe,
                           bool with_dwte) {
    int32_t *id = pf_malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++)  // every 5th token repeats id 1: repeated rows
        id[i] = i % 5 == 0 ? 1 : (int32_t)((urand() + 1) * 0.5f * vocab) % (int32_t)vocab;
    buf ids = ints(2, B, T, id);
    free(id);
    buf wte = F2(IN, vocab, C), wpe = F2(IN, T + 5, C), y = F3(OUT, B, T, C);
    begin("embedding_fwd B=%ld T=%ld C=%ld vocab=%ld wpe=%d", (long)B, (long)T, (long)C,
          (long)vocab, with_wpe);
    CPU->embedding_fwd(tc(&y), tc(&ids), tc(&wte), with_wpe ? tc(&wpe) : pf_none());
    GPU->embedding_fwd(tg(&y), tg(&ids), tg(&wte), with_wpe ? tg(&wpe) : pf_none());
    cmp("y", &y);
    end();
    buf dy = F3(IN, B, T, C), dwte = F2(ACC, vocab, C), dwpe = F2(ACC, T + 5, C);
    begin("embedding_bwd B=%ld T=%ld C=%ld vocab=%ld dwte=%d dwpe=%d", (long)B, (long)T,
          (long)C, (long)vocab, with_dwte, with_wpe);
    CPU->embedding_bwd(with_dwte ? tc(&dwte) : pf_none(), with_wpe ? tc(&dwpe) : pf_none(),
                       tc(&dy), tc(&ids));
    GPU->embedding_bwd(with_dwte ? tg(&dwte) : pf_none(), with_wpe ? tg(&dwpe) : pf_none(),
                       tg(&dy), tg(&ids));
    cmp("dwte", &dwte);
    cmp("dwpe", &dwpe);
    end();
    buf *all[] = {&ids, &wte, &wpe, &y, &dy, &dwte, &dwpe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- vision plumbing ----------------------------------------------------------------------

static void test_vision(int64_t B, int64_t P, int64_t C, bool with_pos) {
    char shape[64];
    snprintf(shape, sizeof shape, "B=%ld P=%ld C=%ld", (long)B, (long)P, (long)C);
    buf x = F3(IN, B, P, C), yt = F3(OUT, B, C, P), dyt = F3(IN, B, C, P), dxt = F3(ACC, B, P, C);
    begin("transpose_fwd %s", shape);
    CPU->transpose_fwd(tc(&yt), tc(&x));
    GPU->transpose_fwd(tg(&yt), tg(&x));
    cmp("y", &yt);
    end();
    begin("transpose_bwd %s", shape);
    CPU->transpose_bwd(tc(&dxt), tc(&dyt));
    GPU->transpose_bwd(tg(&dxt), tg(&dyt));
    cmp("dx", &dxt);
    end();

    buf ym = F2(OUT, B, C), dym = F2(IN, B, C), dxm = F3(ACC, B, P, C);
    begin("meanpool_fwd %s", shape);
    CPU->meanpool_fwd(tc(&ym), tc(&x));
    GPU->meanpool_fwd(tg(&ym), tg(&x));
    cmp("y", &ym);
    end();
    begin("meanpool_bwd %s", shape);
    CPU->meanpool_bwd(tc(&dxm), tc(&dym));
    GPU->meanpool_bwd(tg(&dxm), tg(&dym));
    cmp("dx", &dxm);
    end();

    buf cls = F1(IN, C), pos = F2(IN, P + 1, C), yc = F3(OUT, B, P + 1, C),
        dyc = F3(IN, B, P + 1, C), dxc = F3(ACC, B, P, C), dcls = F1(ACC, C),
        dpos = F2(ACC, P + 1, C);
    begin("cls_token_fwd %s pos=%d", shape, with_pos);
    CPU->cls_token_fwd(tc(&yc), tc(&x), tc(&cls), with_pos ? tc(&pos) : pf_none());
    GPU->cls_token_fwd(tg(&yc), tg(&x), tg(&cls), with_pos ? tg(&pos) : pf_none());
    cmp("y", &yc);
    end();
    begin("cls_token_bwd %s dpos=%d", shape, with_pos);
    CPU->cls_token_bwd(tc(&dxc), tc(&dcls), with_pos ? tc(&dpos) : pf_none(), tc(&dyc));
    GPU->cls_token_bwd(tg(&dxc), tg(&dcls), with_pos ? tg(&dpos) : pf_none(), tg(&dyc));
    cmp("dx", &dxc);
    cmp("dcls", &dcls);
    cmp("dpos", &dpos);
    end();

    buf ys = F2(OUT, B, C), dxs = F3(ACC, B, P + 1, C);
    begin("cls_select_fwd %s", shape);
    CPU->cls_select_fwd(tc(&ys), tc(&dyc));
    GPU->cls_select_fwd(tg(&ys), tg(&dyc));
    cmp("y", &ys);
    end();
    begin("cls_select_bwd %s", shape);
    CPU->cls_select_bwd(tc(&dxs), tc(&dym));
    GPU->cls_select_bwd(tg(&dxs), tg(&dym));
    cmp("dx", &dxs);
    end();
    buf *all[] = {&x, &yt, &dyt, &dxt, &ym, &dym, &dxm, &cls, &pos, &yc, &dyc, &dxc, &dcls,
                  &dpos, &ys, &dxs};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- optimizer ----------------------------------------------------------------------------

static void test_adamw(int64_t n, int step) {
    buf p = F1(ACC, n), g = F1(IN, n), m = F1(ACC, n), v = F1(ACC, n);
    // v must be non-negative, as it is in training.
    float *vh = v.h;
    for (int64_t i = 0; i < n; i++) vh[i] = v.init[i] = fabsf(vh[i]) * 0.01f;
    GPU->upload(v.d, v.h, sizeof(float) * (size_t)n);
    pf_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .step = step, .grad_scale = 0.5f};
    begin("adamw n=%ld step=%d", (long)n, step);
    CPU->adamw(tc(&p), tc(&g), tc(&m), tc(&v), &a);
    GPU->adamw(tg(&p), tg(&g), tg(&m), tg(&v), &a);
    cmp("p", &p);
    cmp("m", &m);
    cmp("v", &v);
    end();
    buf *all[] = {&p, &g, &m, &v};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}


// ---- whole models -------------------------------------------------------------------------

enum { MB = 3 };  // micro-batch

// Forward + backward of the model described by `sets` on one backend; returns the loss and
// downloads the gradient arena into *grads (malloc'd, layout->numel floats).
static float model_step(const pf_backend *be, const char *const *sets, const int32_t *tokens,
                        const int32_t *targets, const float *images, const int32_t *labels,
                        float **grads, pf_layout *layout_copy) {
    pf_config c;
    pf_config_defaults(&c);
    if (pf_config_set(&c, "data.train=unused.h5")) PF_FATAL("%s", pf_errmsg());
    for (const char *const *s = sets; *s; s++)
        if (pf_config_set(&c, *s)) PF_FATAL("%s: %s", *s, pf_errmsg());
    if (pf_config_validate(&c)) PF_FATAL("%s", pf_errmsg());
    pf_model *m = pf_model_create(&c, be, MB);
    if (!m) PF_FATAL("%s", pf_errmsg());
    pf_model_init_params(m, 1234);
    pf_arena *a = pf_model_arena(m);
    const pf_layout *l = pf_model_layout(m);
    size_t bytes = sizeof(float) * (size_t)l->numel;
    be->zero(a->grads, bytes);
    pf_batch batch = {.tokens = tokens, .targets = targets, .images = images, .labels = labels};
    float loss = pf_model_forward(m, &batch, NULL);
    pf_model_backward(m, 1.0f, NULL, NULL);
    be->synchronize();
    *grads = pf_malloc(bytes);
    be->download(*grads, a->grads, bytes);
    layout_copy->count = l->count;
    layout_copy->numel = l->numel;
    layout_copy->params = pf_malloc(sizeof(pf_param_info) * (size_t)l->count);
    memcpy(layout_copy->params, l->params, sizeof(pf_param_info) * (size_t)l->count);
    pf_model_free(m);
    return loss;
}

static double norm2(const float *g, const pf_layout *l) {
    double s = 0;
    for (int i = 0; i < l->count; i++) {
        const pf_param_info *p = &l->params[i];
        for (int64_t j = 0; j < pf_param_numel(p); j++)
            s += (double)g[p->offset + j] * g[p->offset + j];
    }
    return sqrt(s);
}

static void test_model(const char *name, const char *const *sets) {
    int32_t tokens[MB * 24], targets[MB * 24], labels[MB];
    float images[MB * 16 * 16 * 3];
    for (int i = 0; i < MB * 24; i++) {
        tokens[i] = (int32_t)((urand() + 1) * 0.5f * 101) % 101;
        targets[i] = i % 11 == 4 ? -1 : (int32_t)((urand() + 1) * 0.5f * 101) % 101;
    }
    for (int i = 0; i < MB * 16 * 16 * 3; i++) images[i] = urand();
    for (int b = 0; b < MB; b++) labels[b] = (int32_t)((urand() + 1) * 0.5f * 7) % 7;
    float *gc, *gg;
    pf_layout lc, lg;
    float loss_c = model_step(CPU, sets, tokens, targets, images, labels, &gc, &lc);
    float loss_g = model_step(GPU, sets, tokens, targets, images, labels, &gg, &lg);
    PF_ASSERT(lc.count == lg.count && lc.numel == lg.numel);
    begin("model step %s", name);
    double nc = norm2(gc, &lc), ng = norm2(gg, &lc);
    double e_loss = fabs((double)loss_c - loss_g) / fabs(loss_c);
    double e_norm = fabs(nc - ng) / (nc > 1e-30 ? nc : 1e-30);
    case_ok = e_loss <= TOL && e_norm <= TOL;
    case_err = e_loss > e_norm ? e_loss : e_norm;
    snprintf(case_worst, sizeof case_worst, "loss %.6f/%.6f |g| %.4g/%.4g", loss_c, loss_g, nc,
             ng);
    for (int i = 0; i < lc.count; i++) {
        const pf_param_info *p = &lc.params[i];
        double diff = 0, ref = 0;
        for (int64_t j = 0; j < pf_param_numel(p); j++) {
            double a = gc[p->offset + j], b = gg[p->offset + j];
            diff = isnan(b) ? INFINITY : fmax(diff, fabs(a - b));
            ref = fmax(ref, fabs(a));
        }
        double e = diff / (ref > 1e-30 ? ref : 1e-30);
        if (diff == 0) e = 0;
        if (!(e <= MODEL_TOL)) {
            printf("     %s: gradient max rel err %.2e\n", p->name, e);
            case_ok = false;
        }
    }
    end();
    free(gc);
    free(gg);
    free(lc.params);
    free(lg.params);
}

#define GPT2_TINY                                                                         \
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=64", "model.n_head=4",            \
        "model.seq_len=24", "model.vocab_size=101"
#define VISION_TINY                                                                       \
    "model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.mlp_ratio=2",          \
        "model.image_size=16", "model.patch_size=4", "model.num_classes=7",              \
        "model.token_mlp_dim=16", "model.channel_mlp_dim=64", "model.channels=3",         \
        "train.label_smoothing=0.1"
#define PIXELFLY_BLOCK                                                                    \
    "pixelfly.attn_qkv=bs=4 nf=2 rank=4", "pixelfly.attn_proj=bs=4 nf=2 rank=4",          \
        "pixelfly.mlp_fc1=bs=4 nf=2 rank=4", "pixelfly.mlp_fc2=bs=4 nf=1"

int main(void) {
    int ndev = 0;
    cudaError_t err = cudaGetDeviceCount(&ndev);
    if (err != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device visible (%s)\n",
               err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return 0;
    }
    for (pf_op op = 0; op < PF_OP_COUNT; op++)
        if (!GPU->supports(op)) {
            printf("FAIL supports(%s) is false\n", pf_op_name(op));
            n_fail++;
        }

    test_linear(67, 96, 80, true, true);
    test_linear(67, 96, 80, false, false);
    test_linear(1, 5, 3, true, true);
    test_linear(130, 64, 256, true, true);

    // (N, out, in, bs, nf, rank, bias, dx)
    test_pixelfly(67, 64, 64, 4, 1, 0, true, true);
    test_pixelfly(67, 80, 96, 4, 2, 5, true, true);
    test_pixelfly(67, 96, 80, 8, 3, 5, false, true);
    test_pixelfly(5, 128, 64, 8, 2, 0, true, true);
    test_pixelfly(67, 64, 128, 8, 1, 5, true, false);
    test_pixelfly(33, 256, 256, 4, 2, 7, true, true);

    test_layernorm(67, 96, true, true);
    test_layernorm(5, 1000, false, true);
    test_layernorm(3, 33, true, false);
    test_layernorm(4, 2050, true, true);

    test_elementwise(1);
    test_elementwise(1027);
    test_elementwise(300001);

    test_attention(2, 17, 48, 3, true);
    test_attention(2, 17, 48, 3, false);
    test_attention(1, 64, 64, 4, true);
    test_attention(3, 5, 24, 2, true);
    test_attention(1, 100, 96, 2, false);

    test_xent(67, 80, 96, 0.0f);
    test_xent(67, 80, 96, 0.1f);
    test_xent(5, 50, 50, 0.0f);
    test_xent(9, 1000, 1024, 0.2f);

    test_embedding(3, 11, 40, 50, true, true);
    test_embedding(3, 11, 40, 50, false, true);
    test_embedding(2, 7, 33, 9, true, false);

    test_vision(2, 37, 50, true);
    test_vision(3, 9, 40, false);
    test_vision(1, 64, 96, true);

    test_adamw(1031, 1);
    test_adamw(1031, 7);

    test_sumsq(1);
    test_sumsq(1000);
    test_sumsq(65536);
    test_sumsq(200003);

    test_model("gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    test_model("gpt2-dense", (const char *const[]){GPT2_TINY, NULL});
    test_model("vit-pixelfly", (const char *const[]){"model.type=vit", VISION_TINY, PIXELFLY_BLOCK,
                                                     NULL});
    test_model("mixer-pixelfly",
               (const char *const[]){"model.type=mixer", VISION_TINY,
                                     "pixelfly.mlp_fc1=bs=4 nf=2 rank=4",
                                     "pixelfly.mlp_fc2=bs=4 nf=1", "pixelfly.token_fc1=bs=4 nf=2",
                                     "pixelfly.token_fc2=bs=4 nf=1 rank=2", NULL});

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
