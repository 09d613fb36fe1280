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
// init seed and batch on both backends; the GPU computes in bf16, so the loss agrees to 1e-2,
// the gradient norm to 2e-2 and each parameter tensor's gradient to MODEL_TOL of its largest
// element (the same bounds tests/test_bf16.c holds a bf16 emulation on the CPU to), then
// 50 training steps on the GPU with falling loss.
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
#include "op_shapes.h"
#include "pattern.h"

#define TOL 1e-4        // fp32 on both sides, different summation orders
#define BF16_TOL 2e-2   // bf16 inputs and outputs (8 significant bits), fp32 accumulation
#define MODEL_TOL 0.1   // per gradient tensor after a whole backward pass in bf16

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

// PF_GPU_TESTS=pixelfly,attention,... runs only those op families (linear, pixelfly, mlp,
// layernorm, elementwise, reduce, attention, xent, embedding, vision, convert, adamw, model,
// training), e.g. under compute-sanitizer where the whole suite takes long; unset: all.
static bool selected(const char *family) {
    const char *want = getenv("PF_GPU_TESTS");
    if (!want || !*want) return true;
    size_t n = strlen(family);
    for (const char *p = want; (p = strstr(p, family)); p += n)
        if ((p == want || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
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
    if (diff == 0 && !nan) err = 0;  // an all-NaN output has diff 0 too
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

// An accumulated bf16 output: its start values are scaled down (host copy, start values and
// device copy alike) so that the bf16 rounding of start + increment stays small next to the
// increment the comparison looks at. fp32 outputs keep full-size start values.
static void shrink_bf16_start(buf *b) {
    if (b->dt != PF_BF16) return;
    scale_buf(b, 1.0f / 64);
    memcpy(b->init, b->h, sizeof(float) * (size_t)b->n);
}

// x, w, b, y, dy, dx in dt; dw, db fp32.
static void test_linear(pf_dtype dt, int64_t N, int64_t in, int64_t out, bool bias,
                        bool with_dx) {
    if (!selected("linear")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    buf x = A2(dt, IN, N, in), w = A2(dt, IN, out, in), b = A1(dt, IN, out),
        y = A2(dt, OUT, N, out);
    pf_tensor bc = bias ? tc(&b) : pf_none(), bg = bias ? tg(&b) : pf_none();
    begin("linear_fwd %s N=%ld in=%ld out=%ld bias=%d", dn, (long)N, (long)in, (long)out, bias);
    CPU->linear_fwd(tc(&y), tc(&x), tc(&w), bc);
    GPU->linear_fwd(tg(&y), tg(&x), tg(&w), bg);
    cmp_tol("y", &y, tol);
    end();

    buf dy = A2(dt, IN, N, out), dx = A2(dt, ACC, N, in), dw = F2(ACC, out, in),
        db = F1(ACC, out);
    shrink_bf16_start(&dx);
    begin("linear_bwd %s N=%ld in=%ld out=%ld bias=%d dx=%d", dn, (long)N, (long)in, (long)out,
          bias, with_dx);
    CPU->linear_bwd(with_dx ? tc(&dx) : pf_none(), tc(&dw), bias ? tc(&db) : pf_none(),
                    tc(&dy), tc(&x), tc(&w));
    GPU->linear_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dw), bias ? tg(&db) : pf_none(),
                    tg(&dy), tg(&x), tg(&w));
    cmp_tol("dx", &dx, tol);
    cmp("dw", &dw);  // fp32 from the same (rounded) inputs: fp32 tolerance in both dtypes
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

// Whether the device copies of a and b (same dtype and size) hold the same bytes.
static bool pixelfly_same_bits(const buf *a, const buf *b) {
    size_t bytes = (size_t)a->n * pf_dtype_size(a->dt);
    void *ha = pf_malloc(bytes ? bytes : 1), *hb = pf_malloc(bytes ? bytes : 1);
    GPU->synchronize();
    GPU->download(ha, a->d, bytes);
    GPU->download(hb, b->d, bytes);
    bool same = memcmp(ha, hb, bytes) == 0;
    free(ha);
    free(hb);
    return same;
}

// Activations and weights in dt (x, y, xv, S, U, V, b, dy, dx, dxv), weight gradients fp32.
// The CUDA kernels compute in bf16 on tensor cores whatever dt is (fp32 accumulation), so
// every output is held to BF16_TOL.
static void test_pixelfly(pf_dtype dt, int64_t N, int out, int in, int bs, int nf, int rank,
                          bool bias, bool with_dx) {
    if (!selected("pixelfly")) return;
    pf_pattern p;
    if (pf_pattern_init(&p, out, in, bs, nf, rank, bias)) PF_FATAL("%s", pf_errmsg());
    int64_t r1 = rank ? rank : 1;  // placeholder size for absent low-rank buffers
    buf x = A2(dt, IN, N, in), S = A4(dt, IN, bs, nf + 1, p.ob, p.ib), U = A2(dt, IN, out, r1),
        V = A2(dt, IN, r1, in), b = A1(dt, IN, out), y = A2(dt, OUT, N, out),
        xv = A2(dt, OUT, N, r1);
    const char *fmt = "%s N=%ld out=%d in=%d bs=%d nf=%d r=%d bias=%d";
    char shape[128];
    snprintf(shape, sizeof shape, fmt, dt == PF_BF16 ? "bf16" : "fp32", (long)N, out, in, bs,
             nf, rank, bias);
    begin("pixelfly_fwd %s", shape);
    CPU->pixelfly_fwd(&p, tc(&y), rank ? tc(&xv) : pf_none(), tc(&x),
                      pw(&p, &S, &U, &V, &b, false));
    GPU->pixelfly_fwd(&p, tg(&y), rank ? tg(&xv) : pf_none(), tg(&x),
                      pw(&p, &S, &U, &V, &b, true));
    cmp_tol("y", &y, BF16_TOL);
    if (rank) cmp_tol("xv", &xv, BF16_TOL);
    end();

    // Backward reads xv as an input: give both sides the CPU forward's.
    sync_buf(&xv);
    buf dy = A2(dt, IN, N, out), dx = A2(dt, ACC, N, in), dS = F4(ACC, bs, nf + 1, p.ob, p.ib),
        dU = F2(ACC, out, r1), dV = F2(ACC, r1, in), db = F1(ACC, out),
        dxv = A2(dt, OUT, N, r1);
    begin("pixelfly_bwd %s dx=%d", shape, with_dx);
    CPU->pixelfly_bwd(&p, with_dx ? tc(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, false),
                      rank ? tc(&dxv) : pf_none(), tc(&dy), tc(&x), rank ? tc(&xv) : pf_none(),
                      pw(&p, &S, &U, &V, &b, false));
    GPU->pixelfly_bwd(&p, with_dx ? tg(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, true),
                      rank ? tg(&dxv) : pf_none(), tg(&dy), tg(&x), rank ? tg(&xv) : pf_none(),
                      pw(&p, &S, &U, &V, &b, true));
    cmp_tol("dx", &dx, BF16_TOL);
    cmp_tol("dS", &dS, BF16_TOL);
    cmp_tol("dU", &dU, BF16_TOL);
    cmp_tol("dV", &dV, BF16_TOL);
    cmp_tol("db", &db, BF16_TOL);
    if (rank) cmp_tol("dxv", &dxv, BF16_TOL);
    // Deterministic: dS again from the same start (split over tokens and reduced in a fixed
    // order when N is large) has the same bits.
    buf dS2 = F4(ACC, bs, nf + 1, p.ob, p.ib);
    GPU->upload(dS2.d, dS.init, sizeof(float) * (size_t)dS.n);
    GPU->pixelfly_bwd(&p, pf_none(), (pf_pixelfly_w){.S = tg(&dS2)}, pf_none(), tg(&dy), tg(&x),
                      pf_none(), pw(&p, &S, &U, &V, &b, true));
    if (!pixelfly_same_bits(&dS, &dS2)) {
        case_ok = false;
        snprintf(case_worst, sizeof case_worst, "dS differs between two runs");
    }
    end();
    buf *all[] = {&x, &S, &U, &V, &b, &y, &xv, &dy, &dx, &dS, &dU, &dV, &db, &dxv, &dS2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- pixelfly_mlp --------------------------------------------------------------------------

// Weights of one Pixelfly layer in dt, scaled to unit variance per output (urand has variance
// 1/3) so that the hidden layer's GELU sees values of order one, not only its linear tails.
static void mlp_layer(pf_dtype dt, const pf_pattern *p, buf *S, buf *U, buf *V, buf *b) {
    int64_t r1 = p->rank ? p->rank : 1;
    *S = A4(dt, IN, p->bs, p->nf + 1, p->ob, p->ib);
    *U = A2(dt, IN, p->out, r1);
    *V = A2(dt, IN, r1, p->in);
    *b = A1(dt, IN, p->out);
    scale_buf(S, sqrtf(3.0f / (float)(p->ib * (p->nf + 1) + p->rank)));
    scale_buf(V, sqrtf(3.0f / (float)p->in));
    scale_buf(U, sqrtf(3.0f / (float)(p->ib * (p->nf + 1) + p->rank)));
}

// The Pixelfly MLP y = fc2(gelu(fc1(x))) with recomputed hidden activations: activations,
// weights, xv1, gv2 and the scratch in dt, weight gradients fp32. Both layers run on the
// tensor-core Pixelfly kernels, which round to bf16 whatever dt is, and in bf16 the hidden
// f, g, dg, df are rounded too: every output is held to BF16_TOL. The scratch starts as NaN
// on the device, so an op that reads scratch it has not written fails.
static void test_pixelfly_mlp(pf_dtype dt, int64_t N, int in, int H, int out, int bs1, int nf1,
                              int r1, int bs2, int nf2, int r2, bool bias, bool with_dx) {
    if (!selected("mlp")) return;
    pf_pattern p1, p2;
    if (pf_pattern_init(&p1, H, in, bs1, nf1, r1, bias)) PF_FATAL("%s", pf_errmsg());
    if (pf_pattern_init(&p2, out, H, bs2, nf2, r2, bias)) PF_FATAL("%s", pf_errmsg());
    buf S1, U1, V1, b1, S2, U2, V2, b2;
    mlp_layer(dt, &p1, &S1, &U1, &V1, &b1);
    mlp_layer(dt, &p2, &S2, &U2, &V2, &b2);
    int64_t ns = pf_pixelfly_mlp_scratch_numel(&p1, &p2, N);
    buf x = A2(dt, IN, N, in), y = A2(dt, OUT, N, out), xv1 = A2(dt, OUT, N, r1 ? r1 : 1),
        gv2 = A2(dt, OUT, N, r2 ? r2 : 1), scratch = A1(dt, OUT, ns);
    char shape[160];
    snprintf(shape, sizeof shape, "%s N=%ld %d-%d-%d bs=%d,%d nf=%d,%d r=%d,%d bias=%d",
             dt == PF_BF16 ? "bf16" : "fp32", (long)N, in, H, out, bs1, bs2, nf1, nf2, r1, r2,
             bias);
    begin("pixelfly_mlp_fwd %s", shape);
    CPU->pixelfly_mlp_fwd(&p1, &p2, tc(&y), r1 ? tc(&xv1) : pf_none(), r2 ? tc(&gv2) : pf_none(),
                          tc(&x), pw(&p1, &S1, &U1, &V1, &b1, false),
                          pw(&p2, &S2, &U2, &V2, &b2, false), tc(&scratch));
    GPU->pixelfly_mlp_fwd(&p1, &p2, tg(&y), r1 ? tg(&xv1) : pf_none(), r2 ? tg(&gv2) : pf_none(),
                          tg(&x), pw(&p1, &S1, &U1, &V1, &b1, true),
                          pw(&p2, &S2, &U2, &V2, &b2, true), tg(&scratch));
    cmp_tol("y", &y, BF16_TOL);
    if (r1) cmp_tol("xv1", &xv1, BF16_TOL);
    if (r2) cmp_tol("gv2", &gv2, BF16_TOL);
    end();

    // Backward reads xv1 and gv2 as saved by a forward: give both sides the CPU's.
    sync_buf(&xv1);
    sync_buf(&gv2);
    int64_t q1 = r1 ? r1 : 1, q2 = r2 ? r2 : 1;
    buf dy = A2(dt, IN, N, out), dx = A2(dt, ACC, N, in),
        dS1 = F4(ACC, bs1, nf1 + 1, p1.ob, p1.ib), dU1 = F2(ACC, H, q1), dV1 = F2(ACC, q1, in),
        db1 = F1(ACC, H), dS2 = F4(ACC, bs2, nf2 + 1, p2.ob, p2.ib), dU2 = F2(ACC, out, q2),
        dV2 = F2(ACC, q2, H), db2 = F1(ACC, out), scratch2 = A1(dt, OUT, ns);
    shrink_bf16_start(&dx);
    begin("pixelfly_mlp_bwd %s dx=%d", shape, with_dx);
    CPU->pixelfly_mlp_bwd(&p1, &p2, with_dx ? tc(&dx) : pf_none(),
                          pw(&p1, &dS1, &dU1, &dV1, &db1, false),
                          pw(&p2, &dS2, &dU2, &dV2, &db2, false), tc(&dy), tc(&x),
                          r1 ? tc(&xv1) : pf_none(), r2 ? tc(&gv2) : pf_none(),
                          pw(&p1, &S1, &U1, &V1, &b1, false), pw(&p2, &S2, &U2, &V2, &b2, false),
                          tc(&scratch2));
    GPU->pixelfly_mlp_bwd(&p1, &p2, with_dx ? tg(&dx) : pf_none(),
                          pw(&p1, &dS1, &dU1, &dV1, &db1, true),
                          pw(&p2, &dS2, &dU2, &dV2, &db2, true), tg(&dy), tg(&x),
                          r1 ? tg(&xv1) : pf_none(), r2 ? tg(&gv2) : pf_none(),
                          pw(&p1, &S1, &U1, &V1, &b1, true), pw(&p2, &S2, &U2, &V2, &b2, true),
                          tg(&scratch2));
    cmp_tol("dx", &dx, BF16_TOL);
    cmp_tol("dS1", &dS1, BF16_TOL);
    cmp_tol("dU1", &dU1, BF16_TOL);
    cmp_tol("dV1", &dV1, BF16_TOL);
    cmp_tol("db1", &db1, BF16_TOL);
    cmp_tol("dS2", &dS2, BF16_TOL);
    cmp_tol("dU2", &dU2, BF16_TOL);
    cmp_tol("dV2", &dV2, BF16_TOL);
    cmp_tol("db2", &db2, BF16_TOL);
    end();
    buf *all[] = {&S1, &U1, &V1, &b1, &S2, &U2, &V2, &b2, &x, &y, &xv1, &gv2, &scratch,
                  &dy, &dx, &dS1, &dU1, &dV1, &db1, &dS2, &dU2, &dV2, &db2, &scratch2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- layernorm ----------------------------------------------------------------------------

// x, g, b, y, dy, dx in dt; mean, rstd, dg, db fp32.
static void test_layernorm(pf_dtype dt, int64_t N, int64_t C, bool bias, bool with_dx) {
    if (!selected("layernorm")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    buf x = A2(dt, IN, N, C), g = A1(dt, IN, C), b = A1(dt, IN, C), y = A2(dt, OUT, N, C),
        mean = F1(OUT, N), rstd = F1(OUT, N);
    scale_buf(&x, 3.0f);
    begin("layernorm_fwd %s N=%ld C=%ld bias=%d", dn, (long)N, (long)C, bias);
    CPU->layernorm_fwd(tc(&y), tc(&mean), tc(&rstd), tc(&x), tc(&g), bias ? tc(&b) : pf_none(),
                       1e-5f);
    GPU->layernorm_fwd(tg(&y), tg(&mean), tg(&rstd), tg(&x), tg(&g), bias ? tg(&b) : pf_none(),
                       1e-5f);
    cmp_tol("y", &y, tol);
    cmp("mean", &mean);  // fp32 statistics of the same (rounded) x
    cmp("rstd", &rstd);
    end();

    // Backward reads mean and rstd as saved by a forward: give both sides the CPU's.
    sync_buf(&mean);
    sync_buf(&rstd);
    buf dy = A2(dt, IN, N, C), dx = A2(dt, ACC, N, C), dg = F1(ACC, C), db = F1(ACC, C);
    shrink_bf16_start(&dx);
    begin("layernorm_bwd %s N=%ld C=%ld dx=%d", dn, (long)N, (long)C, with_dx);
    CPU->layernorm_bwd(with_dx ? tc(&dx) : pf_none(), tc(&dg), tc(&db), tc(&dy), tc(&x), tc(&g),
                       tc(&mean), tc(&rstd));
    GPU->layernorm_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dg), tg(&db), tg(&dy), tg(&x), tg(&g),
                       tg(&mean), tg(&rstd));
    cmp_tol("dx", &dx, tol);
    cmp("dg", &dg);
    cmp("db", &db);
    end();
    buf *all[] = {&x, &g, &b, &y, &mean, &rstd, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- elementwise ---------------------------------------------------------------------------

// gelu, add, accumulate in dt; scale (fp32 only: it runs on gradients) once, with dt = f32.
static void test_elementwise(pf_dtype dt, int64_t n) {
    if (!selected("elementwise")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    buf x = A1(dt, IN, n), y = A1(dt, OUT, n), dy = A1(dt, IN, n), dx = A1(dt, ACC, n);
    scale_buf(&x, 4.0f);
    shrink_bf16_start(&dx);
    begin("gelu_fwd %s n=%ld", dn, (long)n);
    CPU->gelu_fwd(tc(&y), tc(&x));
    GPU->gelu_fwd(tg(&y), tg(&x));
    cmp_tol("y", &y, tol);
    end();
    begin("gelu_bwd %s n=%ld", dn, (long)n);
    CPU->gelu_bwd(tc(&dx), tc(&dy), tc(&x));
    GPU->gelu_bwd(tg(&dx), tg(&dy), tg(&x));
    cmp_tol("dx", &dx, tol);
    end();

    buf a = A1(dt, IN, n), b = A1(dt, IN, n), s = A1(dt, OUT, n), acc = A1(dt, ACC, n);
    shrink_bf16_start(&acc);
    begin("add %s n=%ld", dn, (long)n);
    CPU->add(tc(&s), tc(&a), tc(&b));
    GPU->add(tg(&s), tg(&a), tg(&b));
    cmp_tol("y", &s, tol);
    end();
    begin("accumulate %s n=%ld", dn, (long)n);
    CPU->accumulate(tc(&acc), tc(&a));
    GPU->accumulate(tg(&acc), tg(&a));
    cmp_tol("dst", &acc, tol);
    end();
    // y aliasing b: b is an input, so compare it as an overwritten output.
    begin("add aliased (y = b) %s n=%ld", dn, (long)n);
    CPU->add(tc(&b), tc(&a), tc(&b));
    GPU->add(tg(&b), tg(&a), tg(&b));
    cmp_tol("y", &b, tol);
    end();

    if (dt == PF_F32) {
        buf sc = F1(ACC, n);
        begin("scale n=%ld", (long)n);
        CPU->scale(tc(&sc), -0.37f);
        GPU->scale(tg(&sc), -0.37f);
        cmp("x", &sc);
        end();
        release(&sc);
    }
    buf *all[] = {&x, &y, &dy, &dx, &a, &b, &s, &acc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

static void test_sumsq(int64_t n) {
    if (!selected("reduce")) return;
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

// qkv, out, dout, dqkv in dt; lse fp32. The CUDA kernels multiply on bf16 tensor cores
// (q, k, v, dout, P and dS rounded to bf16) whatever dt, so every case is held to BF16_TOL.
// Head dims must be 16, 32, 64 or 128 (the kernels' templates).
// Whether the device runs attention at head dim hd (the backend publishes the head dims whose
// kernels fit its shared memory per block).
static bool head_dim_runs(int64_t hd) {
    for (const int *d = GPU->attention_head_dims; d && *d; d++)
        if (*d == hd) return true;
    return !GPU->attention_head_dims;
}

// Moves b's device copy one element up into a new allocation, so that its base is not 16-byte
// aligned (the attention kernels then take element accesses instead of 16-byte ones); returns
// the allocation, which the caller puts back into b->d before release().
static void *shift_buf(buf *b) {
    size_t es = pf_dtype_size(b->dt), bytes = es * (size_t)b->n;
    char *p = GPU->alloc(bytes + es);
    GPU->copy(p + es, b->d, bytes);
    GPU->synchronize();
    GPU->free(b->d);
    b->d = p + es;
    return p;
}

static bool att_unaligned;  // test_attention: every act tensor one element off alignment

static void test_attention(pf_dtype dt, int64_t B, int64_t T, int64_t C, int NH, bool causal) {
    if (!selected("attention")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    if (!head_dim_runs(C / NH)) {  // the context printed why
        printf("SKIP attention %s hd=%ld: this device does not run it\n", dn, (long)(C / NH));
        return;
    }
    buf qkv = A3(dt, IN, B, T, 3 * C), out = A3(dt, OUT, B, T, C), lse = F3(OUT, B, NH, T);
    void *base[4] = {NULL};  // att_unaligned: the allocations of qkv, out, dout, dqkv
    if (att_unaligned) base[0] = shift_buf(&qkv), base[1] = shift_buf(&out);
    scale_buf(&qkv, 2.0f);
    char shape[112];
    snprintf(shape, sizeof shape, "%s B=%ld T=%ld C=%ld NH=%d hd=%ld causal=%d%s", dn, (long)B,
             (long)T, (long)C, NH, (long)(C / NH), causal, att_unaligned ? " unaligned" : "");
    begin("attention_fwd %s", shape);
    CPU->attention_fwd(tc(&out), tc(&lse), tc(&qkv), NH, causal);
    GPU->attention_fwd(tg(&out), tg(&lse), tg(&qkv), NH, causal);
    cmp_tol("out", &out, BF16_TOL);
    // lse's error is absolute (a log): hold it to BF16_TOL * max(1, max|lse|), since with
    // T = 1 lse is a single raw score that may lie near 0.
    double lse_max = 0;
    for (int64_t i = 0; i < lse.n; i++) lse_max = fmax(lse_max, fabs(((float *)lse.h)[i]));
    cmp_tol("lse", &lse, lse_max < 1 ? BF16_TOL / fmax(lse_max, 1e-30) : BF16_TOL);
    end();

    // Backward reads out and lse as saved by a forward: give both sides the CPU's (out
    // rounded to dt first, so both compute D = rowsum(dout * out) from the same values).
    sync_buf(&out);
    sync_buf(&lse);
    buf dout = A3(dt, IN, B, T, C), dqkv = A3(dt, ACC, B, T, 3 * C);
    if (att_unaligned) base[2] = shift_buf(&dout), base[3] = shift_buf(&dqkv);
    shrink_bf16_start(&dqkv);
    begin("attention_bwd %s", shape);
    CPU->attention_bwd(tc(&dqkv), tc(&dout), tc(&qkv), tc(&out), tc(&lse), NH, causal);
    GPU->attention_bwd(tg(&dqkv), tg(&dout), tg(&qkv), tg(&out), tg(&lse), NH, causal);
    cmp_tol("dqkv", &dqkv, BF16_TOL);
    end();
    if (att_unaligned) qkv.d = base[0], out.d = base[1], dout.d = base[2], dqkv.d = base[3];
    buf *all[] = {&qkv, &out, &lse, &dout, &dqkv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// The shared-memory fit of attention's head dims (kernels/cuda_attention.cu, declared in
// kernels/cuda_ops.h): the head dims a device with a given per-block limit runs (the
// emulation reports sm_90's 232448 bytes; sm_80 allows 166912, compute capability 8.6 / 8.9
// 101376), the refusal message, what the backend publishes for this device, and a model with
// a head dim missing from the list refused when it is built.
size_t cuda_attention_smem_bytes(int hd, const char **kernel);
int cuda_attention_fit_head_dims(int *dims, size_t limit);
bool cuda_attention_smem_refusal(char *msg, size_t n, int hd, size_t limit, const char *card);

static void fit_check(bool ok, const char *what) {
    if (!ok) {
        printf("  attention fit: %s\n", what);
        case_ok = false;
    }
}

static bool dims_equal(const int *a, const int *b) {
    for (; *a && *a == *b; a++, b++) {}
    return *a == *b;
}

static void test_attention_fit(void) {
    if (!selected("attention")) return;
    begin("attention head dims fit the device's shared memory");
    static const int all[] = {16, 32, 64, 96, 128, 0}, to96[] = {16, 32, 64, 96, 0},
                     sm86[] = {16, 32, 64, 0}, none[] = {0};
    const struct { size_t limit; const int *want; } fits[] = {
        {232448, all}, {166912, all}, {123392, all}, {123391, to96}, {101376, sm86}, {0, none}};
    int dims[8];
    for (size_t i = 0; i < sizeof fits / sizeof *fits; i++) {
        cuda_attention_fit_head_dims(dims, fits[i].limit);
        char what[64];
        snprintf(what, sizeof what, "head dims for a limit of %zu bytes", fits[i].limit);
        fit_check(dims_equal(dims, fits[i].want), what);
    }
    const char *kernel = NULL;
    fit_check(cuda_attention_smem_bytes(128, &kernel) == 123392 && !strcmp(kernel, "dK/dV"),
              "head dim 128 needs 123392 bytes (dK/dV)");
    fit_check(cuda_attention_smem_bytes(96, &kernel) == 107008, "head dim 96 needs 107008");
    fit_check(cuda_attention_smem_bytes(48, NULL) == 0, "head dim 48 has no kernels");
    char msg[512] = "";
    fit_check(!cuda_attention_smem_refusal(msg, sizeof msg, 64, 101376, "NVIDIA L4"),
              "head dim 64 runs in 101376 bytes");
    fit_check(cuda_attention_smem_refusal(msg, sizeof msg, 128, 101376, "NVIDIA L4") &&
                  strstr(msg, "head dim 128") && strstr(msg, "123392") &&
                  strstr(msg, "101376") && strstr(msg, "NVIDIA L4") &&
                  strstr(msg, "16, 32, 64"),
              "the refusal names the head dim, the bytes, the limit, the card, what runs");
    // What the backend publishes: the fit for this device's limit.
    int dev = 0, limit = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) ==
            cudaSuccess) {
        cuda_attention_fit_head_dims(dims, (size_t)limit);
        fit_check(dims_equal(GPU->attention_head_dims, dims),
                  "the backend publishes the fit for this device's limit");
    } else {
        fit_check(false, "cudaDeviceGetAttribute(cudaDevAttrMaxSharedMemoryPerBlockOptin)");
    }
    // A device of 101376 bytes refuses GPT-2 at head dim 128 (256 / 2) when it is built.
    cuda_attention_fit_head_dims(dims, 101376);
    pf_backend be = *GPU;
    be.attention_head_dims = dims;
    pf_config c;
    pf_config_defaults(&c);
    const char *sets[] = {"data.train=unused.h5", "model.type=gpt2", "model.n_layer=1",
                          "model.n_embd=256", "model.n_head=2", "model.seq_len=24",
                          "model.vocab_size=101", NULL};
    for (const char *const *st = sets; *st; st++)
        if (pf_config_set(&c, *st)) fit_check(false, pf_errmsg());
    if (pf_config_validate(&c)) fit_check(false, pf_errmsg());
    pf_model *m = pf_model_create(&c, &be, 1);
    fit_check(!m && strstr(pf_errmsg(), "= 128") && strstr(pf_errmsg(), "16, 32, 64"),
              "a model at head dim 128 is refused when it is built");
    if (!m) printf("  (build refused: %s)\n", pf_errmsg());
    if (m) pf_model_free(m);
    end();
}

// ---- cross-entropy --------------------------------------------------------------------------

// logits, dlogits in dt; losses fp32.
static void test_xent(pf_dtype dt, int64_t N, int V, int64_t Vp, float smoothing) {
    if (!selected("xent")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    buf logits = A2(dt, IN, N, Vp), losses = F1(OUT, N), dl = A2(dt, ACC, N, Vp);
    scale_buf(&logits, 5.0f);
    shrink_bf16_start(&dl);
    int32_t *t = pf_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++)
        t[i] = i % 7 == 3 ? -1 : (int32_t)((urand() + 1) * 0.5f * V) % V;  // some ignored
    buf tg_ = ints(1, N, 0, t);
    free(t);
    begin("xent_fwd %s N=%ld V=%d Vp=%ld eps=%g", dn, (long)N, V, (long)Vp, smoothing);
    CPU->xent_fwd(tc(&losses), tc(&logits), tc(&tg_), V, -1, smoothing);
    GPU->xent_fwd(tg(&losses), tg(&logits), tg(&tg_), V, -1, smoothing);
    cmp("losses", &losses);  // fp32 from the same (rounded) logits
    end();
    begin("xent_bwd %s N=%ld V=%d Vp=%ld eps=%g", dn, (long)N, V, (long)Vp, smoothing);
    CPU->xent_bwd(tc(&dl), tc(&logits), tc(&tg_), V, -1, smoothing, 1.0f / (float)N);
    GPU->xent_bwd(tg(&dl), tg(&logits), tg(&tg_), V, -1, smoothing, 1.0f / (float)N);
    cmp_tol("dlogits", &dl, tol);
    end();
    buf *all[] = {&logits, &losses, &dl, &tg_};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- embedding ----------------------------------------------------------------------------

// wte, wpe, y, dy in dt; dwte, dwpe fp32.
static void test_embedding(pf_dtype dt, int64_t B, int64_t T, int64_t C, int64_t vocab,
                           bool with_wpe, bool with_dwte) {
    if (!selected("embedding")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    int32_t *id = pf_malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++)  // every 5th token repeats id 1: repeated rows
        id[i] = i % 5 == 0 ? 1 : (int32_t)((urand() + 1) * 0.5f * vocab) % (int32_t)vocab;
    buf ids = ints(2, B, T, id);
    free(id);
    buf wte = A2(dt, IN, vocab, C), wpe = A2(dt, IN, T + 5, C), y = A3(dt, OUT, B, T, C);
    begin("embedding_fwd %s B=%ld T=%ld C=%ld vocab=%ld wpe=%d", dn, (long)B, (long)T, (long)C,
          (long)vocab, with_wpe);
    CPU->embedding_fwd(tc(&y), tc(&ids), tc(&wte), with_wpe ? tc(&wpe) : pf_none());
    GPU->embedding_fwd(tg(&y), tg(&ids), tg(&wte), with_wpe ? tg(&wpe) : pf_none());
    cmp_tol("y", &y, tol);
    end();
    buf dy = A3(dt, IN, B, T, C), dwte = F2(ACC, vocab, C), dwpe = F2(ACC, T + 5, C);
    begin("embedding_bwd %s B=%ld T=%ld C=%ld vocab=%ld dwte=%d dwpe=%d", dn, (long)B, (long)T,
          (long)C, (long)vocab, with_dwte, with_wpe);
    CPU->embedding_bwd(with_dwte ? tc(&dwte) : pf_none(), with_wpe ? tc(&dwpe) : pf_none(),
                       tc(&dy), tc(&ids));
    GPU->embedding_bwd(with_dwte ? tg(&dwte) : pf_none(), with_wpe ? tg(&dwpe) : pf_none(),
                       tg(&dy), tg(&ids));
    cmp("dwte", &dwte);  // fp32 sums of the same (rounded) dy
    cmp("dwpe", &dwpe);
    end();
    buf *all[] = {&ids, &wte, &wpe, &y, &dy, &dwte, &dwpe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- vision plumbing ----------------------------------------------------------------------

// Every x, y, dx, dy, cls, pos in dt; dcls, dpos fp32.
static void test_vision(pf_dtype dt, int64_t B, int64_t P, int64_t C, bool with_pos) {
    if (!selected("vision")) return;
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    char shape[64];
    snprintf(shape, sizeof shape, "%s B=%ld P=%ld C=%ld", dt == PF_BF16 ? "bf16" : "f32",
             (long)B, (long)P, (long)C);
    buf x = A3(dt, IN, B, P, C), yt = A3(dt, OUT, B, C, P), dyt = A3(dt, IN, B, C, P),
        dxt = A3(dt, ACC, B, P, C);
    shrink_bf16_start(&dxt);
    begin("transpose_fwd %s", shape);
    CPU->transpose_fwd(tc(&yt), tc(&x));
    GPU->transpose_fwd(tg(&yt), tg(&x));
    cmp_tol("y", &yt, tol);
    end();
    begin("transpose_bwd %s", shape);
    CPU->transpose_bwd(tc(&dxt), tc(&dyt));
    GPU->transpose_bwd(tg(&dxt), tg(&dyt));
    cmp_tol("dx", &dxt, tol);
    end();

    buf ym = A2(dt, OUT, B, C), dym = A2(dt, IN, B, C), dxm = A3(dt, ACC, B, P, C);
    shrink_bf16_start(&dxm);
    begin("meanpool_fwd %s", shape);
    CPU->meanpool_fwd(tc(&ym), tc(&x));
    GPU->meanpool_fwd(tg(&ym), tg(&x));
    cmp_tol("y", &ym, tol);
    end();
    begin("meanpool_bwd %s", shape);
    CPU->meanpool_bwd(tc(&dxm), tc(&dym));
    GPU->meanpool_bwd(tg(&dxm), tg(&dym));
    cmp_tol("dx", &dxm, tol);
    end();

    buf cls = A1(dt, IN, C), pos = A2(dt, IN, P + 1, C), yc = A3(dt, OUT, B, P + 1, C),
        dyc = A3(dt, IN, B, P + 1, C), dxc = A3(dt, ACC, B, P, C), dcls = F1(ACC, C),
        dpos = F2(ACC, P + 1, C);
    shrink_bf16_start(&dxc);
    begin("cls_token_fwd %s pos=%d", shape, with_pos);
    CPU->cls_token_fwd(tc(&yc), tc(&x), tc(&cls), with_pos ? tc(&pos) : pf_none());
    GPU->cls_token_fwd(tg(&yc), tg(&x), tg(&cls), with_pos ? tg(&pos) : pf_none());
    cmp_tol("y", &yc, tol);
    end();
    begin("cls_token_bwd %s dpos=%d", shape, with_pos);
    CPU->cls_token_bwd(tc(&dxc), tc(&dcls), with_pos ? tc(&dpos) : pf_none(), tc(&dyc));
    GPU->cls_token_bwd(tg(&dxc), tg(&dcls), with_pos ? tg(&dpos) : pf_none(), tg(&dyc));
    cmp_tol("dx", &dxc, tol);
    cmp("dcls", &dcls);  // fp32 sums of the same (rounded) dy
    cmp("dpos", &dpos);
    end();

    buf ys = A2(dt, OUT, B, C), dxs = A3(dt, ACC, B, P + 1, C);
    shrink_bf16_start(&dxs);
    begin("cls_select_fwd %s", shape);
    CPU->cls_select_fwd(tc(&ys), tc(&dyc));
    GPU->cls_select_fwd(tg(&ys), tg(&dyc));
    cmp_tol("y", &ys, tol);
    end();
    begin("cls_select_bwd %s", shape);
    CPU->cls_select_bwd(tc(&dxs), tc(&dym));
    GPU->cls_select_bwd(tg(&dxs), tg(&dym));
    cmp_tol("dx", &dxs, tol);
    end();
    buf *all[] = {&x, &yt, &dyt, &dxt, &ym, &dym, &dxm, &cls, &pos, &yc, &dyc, &dxc, &dcls,
                  &dpos, &ys, &dxs};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- convert ------------------------------------------------------------------------------

// dst (dtype dd) = src (dtype sd), exactly: the expected values are the source's, rounded on
// the host (pf_bf16_from_f32, round to nearest even) when dst is bf16. The first source
// values are rounding ties and a denormal.
static void test_convert(pf_dtype dd, pf_dtype sd, int64_t n) {
    if (!selected("convert")) return;
    buf src = make(IN, sd, 1, n, 0, 0, 0), dst = make(OUT, dd, 1, n, 0, 0, 0);
    if (sd == PF_F32) {
        const float special[] = {1.00390625f,  // 1 + 2^-8: tie, rounds down to even 1.0
                                 1.01171875f,  // 1 + 3*2^-8: tie, rounds up to 1 + 2^-6
                                 -2.0078125f,  // -(2 + 2^-7): tie, rounds to even -2.0
                                 1e-39f, -0.0f, 3.0e38f};
        float *h = src.h;
        for (int64_t i = 0; i < n && i < (int64_t)(sizeof special / sizeof *special); i++)
            h[i] = special[i];
        sync_buf(&src);
    }
    begin("convert %s <- %s n=%ld", dd == PF_BF16 ? "bf16" : "f32",
          sd == PF_BF16 ? "bf16" : "f32", (long)n);
    CPU->convert(tc(&dst), tc(&src));  // the host copies are fp32: a plain copy
    float *h = dst.h;
    if (dd == PF_BF16)
        for (int64_t i = 0; i < n; i++) h[i] = pf_f32_from_bf16(pf_bf16_from_f32(h[i]));
    GPU->convert(tg(&dst), tg(&src));
    cmp_tol("dst", &dst, 0.0);
    end();
    release(&src);
    release(&dst);
}

// ---- optimizer ----------------------------------------------------------------------------

static void test_adamw(int64_t n, int step) {
    if (!selected("adamw")) return;
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

// The model of micro-batch MB described by `sets` ("section.key=value", NULL-terminated) on
// one backend, its parameters drawn from seed; *cfg gets the resolved config.
static pf_model *create_model(const pf_backend *be, const char *const *sets, uint64_t seed,
                              pf_config *cfg) {
    pf_config_defaults(cfg);
    if (pf_config_set(cfg, "data.train=unused.h5")) PF_FATAL("%s", pf_errmsg());
    for (const char *const *s = sets; *s; s++)
        if (pf_config_set(cfg, *s)) PF_FATAL("%s: %s", *s, pf_errmsg());
    if (pf_config_validate(cfg)) PF_FATAL("%s", pf_errmsg());
    pf_model *m = pf_model_create(cfg, be, MB);
    if (!m) PF_FATAL("%s", pf_errmsg());
    pf_model_init_params(m, seed);
    return m;
}

// Forward + backward of the model described by `sets` on one backend; returns the loss and
// downloads the gradient arena into *grads (malloc'd, layout->numel floats).
static float model_step(const pf_backend *be, const char *const *sets, const int32_t *tokens,
                        const int32_t *targets, const float *images, const int32_t *labels,
                        float **grads, pf_layout *layout_copy) {
    pf_config c;
    pf_model *m = create_model(be, sets, 1234, &c);
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
    if (!selected("model")) return;
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
    case_ok = e_loss <= 1e-2 && e_norm <= 2e-2;
    case_err = e_loss > e_norm ? e_loss : e_norm;
    snprintf(case_worst, sizeof case_worst, "loss %.6f/%.6f |g| %.4g/%.4g", loss_c, loss_g, nc,
             ng);
    // Relative to at least 1% of the model's largest gradient element: a tensor whose exact
    // gradient is zero (a bias ahead of a layernorm that cancels it) holds only rounding noise.
    double gmax = 0;
    for (int64_t j = 0; j < lc.numel; j++) gmax = fmax(gmax, fabs(gc[j]));
    for (int i = 0; i < lc.count; i++) {
        const pf_param_info *p = &lc.params[i];
        double diff = 0, ref = fmax(1e-2 * gmax, 1e-30);
        for (int64_t j = 0; j < pf_param_numel(p); j++) {
            double a = gc[p->offset + j], b = gg[p->offset + j];
            diff = isnan(b) ? INFINITY : fmax(diff, fabs(a - b));
            ref = fmax(ref, fabs(a));
        }
        double e = diff / ref;
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

// TRAIN_STEPS AdamW steps of a model on one fixed batch of random tokens (which it can
// memorise); returns the first and the last loss.
enum { TRAIN_STEPS = 50 };
static void train_fixed_batch(const pf_backend *be, const char *const *sets, float *first,
                              float *last) {
    pf_config c;
    pf_model *m = create_model(be, sets, 99, &c);
    int64_t n = (int64_t)MB * c.seq_len;
    int32_t *tok = pf_malloc(sizeof(int32_t) * 2 * n);
    // The same batch for every backend (the first losses are compared): urand from a fixed
    // state, which is put back afterwards.
    uint64_t saved = rng_state;
    rng_state = 0x2545f4914f6cdd1dull;
    for (int64_t i = 0; i < 2 * n; i++) tok[i] = (int32_t)((urand() + 1) * 0.5f * c.vocab_size) % c.vocab_size;
    rng_state = saved;
    pf_batch batch = {.tokens = tok, .targets = tok + n};
    pf_arena *a = pf_model_arena(m);
    for (int step = 1; step <= TRAIN_STEPS; step++) {
        be->zero(a->grads, sizeof(float) * (size_t)a->layout->numel);
        float loss = pf_model_forward(m, &batch, NULL);
        pf_model_backward(m, 1.0f, NULL, NULL);
        float clip = 1.0f;
        pf_grad_norm(be, a->grads, a->layout->numel, 1.0f, &clip);
        pf_model_adamw_step(m, 3e-3f, step, clip);
        if (step == 1) *first = loss;
        *last = loss;
    }
    free(tok);
    pf_model_free(m);
}

// Training on the GPU: the loss falls as it does on the CPU (not bit-exact: another
// summation order, and bf16 where the GPU computes in it).
static void test_training(const char *name, const char *const *sets) {
    if (!selected("training")) return;
    float c0, c1, g0, g1;
    train_fixed_batch(CPU, sets, &c0, &c1);
    train_fixed_batch(GPU, sets, &g0, &g1);
    begin("%d training steps %s", TRAIN_STEPS, name);
    case_ok = isfinite(g1) && g1 < 0.5f * g0 && fabsf(g0 - c0) <= 1e-2f * c0;
    case_err = fabs((double)g1 - c1) / c1;
    snprintf(case_worst, sizeof case_worst, "loss cpu %.3f->%.3f gpu %.3f->%.3f", c0, c1, g0,
             g1);
    end();
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
        if (!GPU->supports(op, PF_F32) || !GPU->supports(op, PF_BF16)) {
            printf("FAIL supports(%s, fp32 or bf16) is false\n", pf_op_name(op));
            n_fail++;
        }

    for (int d = 0; d < 2; d++) {  // every shape in fp32, then in bf16
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_linear(dt, 67, 96, 80, true, true);
        test_linear(dt, 67, 96, 80, false, false);
        test_linear(dt, 1, 5, 3, true, true);
        test_linear(dt, 130, 64, 256, true, true);
    }

    for (int d = 0; d < 2; d++) {  // (N, out, in, bs, nf, rank, bias, dx): fp32, then bf16
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_pixelfly(dt, 67, 64, 64, 4, 1, 0, true, true);
        test_pixelfly(dt, 67, 80, 96, 4, 2, 5, true, true);
        test_pixelfly(dt, 67, 96, 80, 8, 3, 5, false, true);
        test_pixelfly(dt, 5, 128, 64, 8, 2, 0, true, true);
        test_pixelfly(dt, 67, 64, 128, 8, 1, 5, true, false);
        test_pixelfly(dt, 33, 256, 256, 4, 2, 7, true, true);
        test_pixelfly(dt, 1, 80, 96, 4, 2, 5, true, true);          // one token
        test_pixelfly(dt, 0, 80, 96, 4, 2, 5, true, true);          // no tokens
        test_pixelfly(dt, 300, 384, 96, 8, 2, 16, true, true);      // ob 48 != ib 12
        test_pixelfly(dt, 130, 512, 1024, 4, 1, 3, true, true);     // ob 128, ib 256: wide tiles
        test_pixelfly(dt, 1000, 128, 64, 4, 2, 8, true, true);      // dS split over tokens
        test_pixelfly(dt, 256, 3072, 768, 16, 2, 32, true, true);   // GPT-2 fc1 768 -> 3072
        test_pixelfly(dt, 256, 768, 3072, 16, 2, 32, true, true);   // GPT-2 fc2 3072 -> 768
    }

    for (int d = 0; d < 2; d++) {  // (N, in, H, out, bs1, nf1, r1, bs2, nf2, r2, bias, dx)
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_pixelfly_mlp(dt, 67, 64, 256, 64, 4, 2, 8, 4, 2, 8, true, true);
        test_pixelfly_mlp(dt, 33, 96, 192, 80, 8, 3, 0, 4, 1, 5, false, true);
        test_pixelfly_mlp(dt, 67, 64, 128, 64, 4, 1, 3, 8, 2, 0, true, false);
        test_pixelfly_mlp(dt, 1, 64, 128, 64, 4, 1, 3, 8, 2, 0, true, true);    // one token
        test_pixelfly_mlp(dt, 0, 64, 128, 64, 4, 1, 3, 8, 2, 0, true, true);    // no tokens
        test_pixelfly_mlp(dt, 255, 768, 3072, 768, 16, 2, 32, 16, 2, 32, true, true);  // GPT-2
    }

    for (int d = 0; d < 2; d++) {
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_layernorm(dt, 67, 96, true, true);
        test_layernorm(dt, 5, 1000, false, true);
        test_layernorm(dt, 3, 33, true, false);
        test_layernorm(dt, 4, 2050, true, true);
        test_layernorm(dt, 1100, 40, true, true);  // column sums split into 3 row parts

        test_elementwise(dt, 1);
        test_elementwise(dt, 1027);
        test_elementwise(dt, 300001);
    }

    test_attention_fit();
    for (int d = 0; d < 2; d++) {  // (B, T, C, NH, causal): every head dim, T = 1, T off tile
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_attention(dt, 2, 17, 48, 3, true);     // hd 16
        test_attention(dt, 2, 17, 48, 3, false);
        test_attention(dt, 1, 64, 64, 4, true);     // one full tile
        test_attention(dt, 3, 5, 64, 2, true);      // hd 32
        test_attention(dt, 1, 100, 64, 2, false);   // two tiles, the second partial
        test_attention(dt, 2, 1, 64, 1, true);      // T = 1, hd 64
        test_attention(dt, 1, 1, 32, 2, false);
        test_attention(dt, 2, 197, 192, 3, false);  // ViT: 196 patches + class token, hd 64
        test_attention(dt, 1, 256, 128, 2, true);   // four tiles, causal, hd 64
        test_attention(dt, 1, 130, 256, 2, true);   // hd 128
        test_attention(dt, 2, 77, 256, 2, false);
        test_attention(dt, 1, 197, 192, 2, false);  // hd 96 (ViT-S/16)
        att_unaligned = true;  // element accesses instead of 16-byte ones
        test_attention(dt, 1, 100, 64, 2, true);
        test_attention(dt, 2, 77, 256, 2, false);
        att_unaligned = false;
    }

    for (int d = 0; d < 2; d++) {
        pf_dtype dt = d ? PF_BF16 : PF_F32;
        test_xent(dt, 67, 80, 96, 0.0f);
        test_xent(dt, 67, 80, 96, 0.1f);
        test_xent(dt, 5, 50, 50, 0.0f);
        test_xent(dt, 9, 1000, 1024, 0.2f);
        test_xent(dt, 3, 50257, 50304, 0.1f);  // GPT-2's vocabulary

        test_embedding(dt, 3, 11, 40, 50, true, true);
        test_embedding(dt, 3, 11, 40, 50, false, true);
        test_embedding(dt, 2, 7, 33, 9, true, false);
        test_embedding(dt, 4, 300, 130, 700, true, true);  // 1200 tokens, C over one block

        test_vision(dt, 2, 37, 50, true);
        test_vision(dt, 3, 9, 40, false);
        test_vision(dt, 1, 64, 96, true);
    }

    for (int d = 0; d < 4; d++) {  // every (dst, src) dtype pair
        pf_dtype dd = d & 1 ? PF_BF16 : PF_F32, sd = d & 2 ? PF_BF16 : PF_F32;
        test_convert(dd, sd, 1);
        test_convert(dd, sd, 1027);
        test_convert(dd, sd, 300001);
    }

    test_adamw(1031, 1);
    test_adamw(1031, 7);

    test_sumsq(1);
    test_sumsq(1000);
    test_sumsq(65536);
    test_sumsq(200003);

    test_model("gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    test_model("gpt2-dense", (const char *const[]){GPT2_TINY, NULL});
    test_model("gpt2-recompute-mlp",
               (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "pixelfly.recompute_mlp=true",
                                     NULL});
    test_model("vit-pixelfly", (const char *const[]){"model.type=vit", VISION_TINY, PIXELFLY_BLOCK,
                                                     NULL});
    test_model("mixer-pixelfly",
               (const char *const[]){"model.type=mixer", VISION_TINY,
                                     "pixelfly.mlp_fc1=bs=4 nf=2 rank=4",
                                     "pixelfly.mlp_fc2=bs=4 nf=1", "pixelfly.token_fc1=bs=4 nf=2",
                                     "pixelfly.token_fc2=bs=4 nf=1 rank=2", NULL});

    test_training("gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
