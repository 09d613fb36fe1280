// test_ops.c: the CPU backend's ops, in the spirit of ggml's test-backend-ops.
//
// The finite-difference cases of tests/op_cases.c (op, shapes, parameters, tolerance; the
// table the CUDA and bf16 drivers share) and one looped test that, per case:
//   - checks the forward against an independent naive implementation in double;
//   - builds the scalar loss L = sum(out * R) with a fixed random R, runs backward into
//     gradients pre-filled with random values (backward must ADD), and compares every
//     analytic gradient with central finite differences of L (fp32 forward, L in double);
//   - checks guard words around every buffer (no out-of-bounds writes).
// A second looped test runs each case twice and wants bit-identical outputs and gradients.
// Then: Pixelfly against the dense masked layer (forward and all gradients), AdamW against
// hand-computed steps, gradient-norm clipping, sumsq across thread counts, memory ops.
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "op_cases.h"
#include "op_shapes.h"
#include "pattern.h"
#include "rng.h"

static const pf_backend *const be = &pf_backend_cpu;


START_TEST(test_op_gradients) {
    const op_case *oc = &op_fd_cases[_i];
    char name[96];
    op_fd_case_name(oc, name, sizeof name);
    op_ctx c = {.be = be};
    pf_rng_seed(&c.rng, 1000 + (uint64_t)_i);
    oc->build(oc, &c);

    // Forward against the naive double implementation.
    double *ref = pf_malloc(sizeof(double) * c.nout);
    oc->fwd(oc, &c);
    oc->ref(oc, &c, ref);
    double e = rel_err(c.out, ref, c.nout, 1e-3);
    ck_assert_msg(e < 1e-5, "%s: forward differs from the reference, rel err %.3g", name, e);
    free(ref);

    // Analytic gradients: backward adds into the pre-filled gradients.
    float *g0[MAX_VARS] = {0};
    for (int v = 0; v < MAX_VARS; v++)
        if (c.var[v].n && c.var[v].g) {
            g0[v] = pf_malloc(sizeof(float) * c.var[v].n);
            memcpy(g0[v], c.var[v].g, sizeof(float) * c.var[v].n);
        }
    oc->bwd(oc, &c);

    const float h = 1e-2f;
    for (int v = 0; v < MAX_VARS; v++) {
        grad_var *gv = &c.var[v];
        if (!gv->n || !gv->g) continue;
        float *ana = pf_malloc(sizeof(float) * gv->n);
        double *num = pf_malloc(sizeof(double) * gv->n);
        for (int64_t j = 0; j < gv->n; j++) {
            ana[j] = gv->g[j] - g0[v][j];
            float x0 = gv->x[j], xp = x0 + h, xm = x0 - h;
            gv->x[j] = xp;
            double lp = op_fd_loss(oc, &c);
            gv->x[j] = xm;
            double lm = op_fd_loss(oc, &c);
            gv->x[j] = x0;
            num[j] = (lp - lm) / ((double)xp - xm);
            // No output moved at all: the op must not have touched this gradient either.
            if (lp == lm)
                ck_assert_msg(ana[j] == 0, "%s: d%s[%ld] = %g where the loss does not depend on it",
                              name, gv->name, (long)j, ana[j]);
        }
        e = rel_err(ana, num, gv->n, 1e-3);
        ck_assert_msg(e < oc->tol, "%s: d%s max rel err %.3g (tol %.1g)", name, gv->name, e,
                      oc->tol);
        free(ana);
        free(num);
        free(g0[v]);
    }
    int bad = op_fd_free(&c);
    ck_assert_msg(bad < 0, "%s: write outside buffer %d", name, bad);
}
END_TEST

// Two runs from the same state: outputs and gradients bit-identical.
START_TEST(test_op_deterministic) {
    const op_case *oc = &op_fd_cases[_i];
    char name[96];
    op_fd_case_name(oc, name, sizeof name);
    op_ctx c[2];
    memset(c, 0, sizeof c);
    for (int r = 0; r < 2; r++) {
        c[r].be = be;
        pf_rng_seed(&c[r].rng, 77 + (uint64_t)_i);
        oc->build(oc, &c[r]);
        oc->fwd(oc, &c[r]);
        oc->bwd(oc, &c[r]);
    }
    ck_assert_msg(!memcmp(c[0].out, c[1].out, sizeof(float) * c[0].nout), "%s: output", name);
    for (int v = 0; v < MAX_VARS; v++)
        if (c[0].var[v].n && c[0].var[v].g)
            ck_assert_msg(!memcmp(c[0].var[v].g, c[1].var[v].g, sizeof(float) * c[0].var[v].n),
                          "%s: d%s differs between runs", name, c[0].var[v].name);
    for (int r = 0; r < 2; r++) {
        int bad = op_fd_free(&c[r]);
        ck_assert_msg(bad < 0, "%s: write outside buffer %d", name, bad);
    }
}
END_TEST

// ---- Pixelfly against the dense masked layer W = to_dense(S) + U V ----

static void randn(pf_rng *r, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = pf_rng_normal(r);
}

// max|a - b| / max|b| over float arrays
static double rel_errf(const float *a, const float *b, int64_t n) {
    double num = 0, den = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d)) return INFINITY;
        num = fmax(num, d);
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static const int dense_cases[][6] = {
    // {N, out, in, bs, nf, rank}
    {7, 16, 16, 4, 1, 0}, {5, 32, 64, 8, 2, 3}, {9, 48, 24, 8, 3, 5}, {6, 64, 64, 16, 4, 8},
};

START_TEST(test_pixelfly_matches_dense) {
    const int *d = dense_cases[_i];
    int N = d[0];
    pf_pattern p;
    ck_assert_int_eq(pf_pattern_init(&p, d[1], d[2], d[3], d[4], d[5], true), 0);
    int out = p.out, in = p.in, r = p.rank;
    int64_t ns = pf_pattern_sparse_numel(&p);
    pf_rng rng;
    pf_rng_seed(&rng, 5 + (uint64_t)_i);
    float *x = pf_malloc(sizeof(float) * N * in), *dy = pf_malloc(sizeof(float) * N * out);
    float *S = pf_malloc(sizeof(float) * ns), *U = pf_malloc(sizeof(float) * (out * r + 1));
    float *V = pf_malloc(sizeof(float) * (r * in + 1)), *b = pf_malloc(sizeof(float) * out);
    randn(&rng, x, N * in);
    randn(&rng, dy, N * out);
    randn(&rng, S, ns);
    randn(&rng, U, out * r);
    randn(&rng, V, r * in);
    randn(&rng, b, out);

    // Dense weights W = masked S + U V (double, then rounded once).
    double *Wd = pixelfly_dense(&p, S, U, V);
    float *W = pf_malloc(sizeof(float) * out * in);
    for (int i = 0; i < out * in; i++) W[i] = (float)Wd[i];

    float *y = pf_malloc(sizeof(float) * N * out), *yd = pf_malloc(sizeof(float) * N * out);
    float *xv = pf_malloc(sizeof(float) * (N * r + 1));
    float *dxv = pf_malloc(sizeof(float) * (N * r + 1));
    pf_pixelfly_w w = {t4(S, p.bs, p.nf + 1, p.ob, p.ib), t2(U, out, r), t2(V, r, in), t1(b, out)};
    if (!r) w.U = w.V = pf_none();
    be->pixelfly_fwd(&p, t2(y, N, out), t2(xv, N, r), t2(x, N, in), w);
    be->linear_fwd(t2(yd, N, out), t2(x, N, in), t2(W, out, in), t1(b, out));
    ck_assert_msg(rel_errf(y, yd, N * out) < 1e-5, "forward: rel err %.3g",
                  rel_errf(y, yd, N * out));

    // Backward, both from zero gradients.
    float *dx = pf_calloc(N * in, sizeof(float)), *dxd = pf_calloc(N * in, sizeof(float));
    float *dS = pf_calloc(ns, sizeof(float)), *dU = pf_calloc(out * r + 1, sizeof(float));
    float *dV = pf_calloc(r * in + 1, sizeof(float)), *db = pf_calloc(out, sizeof(float));
    float *dW = pf_calloc(out * in, sizeof(float)), *dbd = pf_calloc(out, sizeof(float));
    pf_pixelfly_w dw = {t4(dS, p.bs, p.nf + 1, p.ob, p.ib), t2(dU, out, r), t2(dV, r, in),
                        t1(db, out)};
    if (!r) dw.U = dw.V = pf_none();
    be->pixelfly_bwd(&p, t2(dx, N, in), dw, t2(dxv, N, r), t2(dy, N, out), t2(x, N, in),
                     t2(xv, N, r), w);
    be->linear_bwd(t2(dxd, N, in), t2(dW, out, in), t1(dbd, out), t2(dy, N, out), t2(x, N, in),
                   t2(W, out, in));
    ck_assert_msg(rel_errf(dx, dxd, N * in) < 1e-5, "dx: rel err %.3g", rel_errf(dx, dxd, N * in));
    ck_assert_msg(rel_errf(db, dbd, out) < 1e-6, "db: rel err %.3g", rel_errf(db, dbd, out));

    // dS = the dense dW gathered at the stored blocks.
    float *dSd = pf_malloc(sizeof(float) * ns);
    for (int row = 0; row < p.bs; row++)
        for (int k = 0; k <= p.nf; k++) {
            int q = pf_pattern_col(&p, row, k);
            for (int i = 0; i < p.ob; i++)
                for (int j = 0; j < p.ib; j++)
                    dSd[(((int64_t)row * (p.nf + 1) + k) * p.ob + i) * p.ib + j] =
                        dW[(row * p.ob + i) * in + q * p.ib + j];
        }
    ck_assert_msg(rel_errf(dS, dSd, ns) < 1e-5, "dS: rel err %.3g", rel_errf(dS, dSd, ns));

    // dU = dW V^T, dV = U^T dW (W = ... + U V).
    float *dUd = pf_malloc(sizeof(float) * (out * r + 1));
    float *dVd = pf_malloc(sizeof(float) * (r * in + 1));
    for (int o = 0; o < out; o++)
        for (int k = 0; k < r; k++) {
            double s = 0;
            for (int i = 0; i < in; i++) s += (double)dW[o * in + i] * V[k * in + i];
            dUd[o * r + k] = (float)s;
        }
    for (int k = 0; k < r; k++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int o = 0; o < out; o++) s += (double)U[o * r + k] * dW[o * in + i];
            dVd[k * in + i] = (float)s;
        }
    if (r) {
        ck_assert_msg(rel_errf(dU, dUd, out * r) < 1e-5, "dU: rel err %.3g",
                      rel_errf(dU, dUd, out * r));
        ck_assert_msg(rel_errf(dV, dVd, r * in) < 1e-5, "dV: rel err %.3g",
                      rel_errf(dV, dVd, r * in));
    }
    float *bufs[] = {x,  dy, S,  U,  V,  b,  W,  y,  yd,  xv,  dxv,
                     dx, dxd, dS, dU, dV, db, dW, dbd, dSd, dUd, dVd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(Wd);
}
END_TEST

// The layer runs twice on the same inputs: bit-identical y, xv, dx, dS, dU, dV, db.
START_TEST(test_pixelfly_deterministic) {
    pf_pattern p;
    ck_assert_int_eq(pf_pattern_init(&p, 256, 128, 16, 3, 8, true), 0);
    int N = 67, out = p.out, in = p.in, r = p.rank;
    int64_t ns = pf_pattern_sparse_numel(&p);
    // One buffer per run, laid out [y | xv | dxv | dx | dS | dU | dV | db]; inputs shared.
    int64_t nrun = (int64_t)N * out + 2 * N * r + N * in + ns + out * r + r * in + out;
    float *inputs = pf_malloc(sizeof(float) * (N * in + N * out + ns + out * r + r * in + out));
    pf_rng rng;
    pf_rng_seed(&rng, 9);
    randn(&rng, inputs, N * in + N * out + ns + out * r + r * in + out);
    float *x = inputs, *dy = x + N * in, *S = dy + N * out, *U = S + ns, *V = U + out * r,
          *b = V + r * in;
    pf_pixelfly_w w = {t4(S, p.bs, p.nf + 1, p.ob, p.ib), t2(U, out, r), t2(V, r, in), t1(b, out)};
    float *run[2];
    for (int k = 0; k < 2; k++) {
        run[k] = pf_calloc(nrun, sizeof(float));
        float *y = run[k], *xv = y + N * out, *dxv = xv + N * r, *dx = dxv + N * r,
              *dS = dx + N * in, *dU = dS + ns, *dV = dU + out * r, *db = dV + r * in;
        pf_pixelfly_w dw = {t4(dS, p.bs, p.nf + 1, p.ob, p.ib), t2(dU, out, r), t2(dV, r, in),
                            t1(db, out)};
        be->pixelfly_fwd(&p, t2(y, N, out), t2(xv, N, r), t2(x, N, in), w);
        be->pixelfly_bwd(&p, t2(dx, N, in), dw, t2(dxv, N, r), t2(dy, N, out), t2(x, N, in),
                         t2(xv, N, r), w);
    }
    ck_assert(!memcmp(run[0], run[1], sizeof(float) * nrun));
    free(run[0]);
    free(run[1]);
    free(inputs);
}
END_TEST

// ---- the Pixelfly MLP against its unfused composition ----

// {N, in, H, out, bs1, nf1, r1, bs2, nf2, r2, bias, which gradients: 0 all, 1 no dx,
//  2 only fc2's (no dx, no fc1 gradients)}
static const int mlp_cases[][12] = {
    {67, 64, 256, 64, 8, 2, 8, 8, 3, 4, 1, 0},
    {33, 48, 96, 32, 4, 2, 0, 2, 1, 5, 0, 0},
    {17, 32, 64, 32, 4, 1, 3, 4, 2, 0, 1, 1},
    {9, 32, 64, 48, 8, 3, 2, 4, 1, 2, 1, 2},
};

// pixelfly_mlp_fwd/bwd = pixelfly_fwd, gelu_fwd, pixelfly_fwd / pixelfly_bwd, gelu_bwd,
// pixelfly_bwd on the same inputs: the CPU op is that composition, so every output and
// gradient (backward adds into random start values) has the same bits.
START_TEST(test_pixelfly_mlp_matches_unfused) {
    const int *d = mlp_cases[_i];
    int N = d[0], in = d[1], H = d[2], out = d[3], r1 = d[6], r2 = d[9], rm = r1 > r2 ? r1 : r2;
    bool want_dx = d[11] == 0, want_dw1 = d[11] < 2;
    pf_pattern p1, p2;
    ck_assert_int_eq(pf_pattern_init(&p1, H, in, d[4], d[5], r1, d[10]), 0);
    ck_assert_int_eq(pf_pattern_init(&p2, out, H, d[7], d[8], r2, d[10]), 0);
    pf_rng rng;
    pf_rng_seed(&rng, 31 + (uint64_t)_i);
    // Parameters of one layer in one buffer [S | U | V | b], their gradients alike.
    int64_t n1 = pf_pattern_numel(&p1), n2 = pf_pattern_numel(&p2);
    float *x = pf_malloc(sizeof(float) * N * in), *dy = pf_malloc(sizeof(float) * N * out);
    float *w1 = pf_malloc(sizeof(float) * n1), *w2 = pf_malloc(sizeof(float) * n2);
    randn(&rng, x, N * in);
    randn(&rng, dy, N * out);
    randn(&rng, w1, n1);
    randn(&rng, w2, n2);
    for (int64_t i = 0; i < n1; i++) w1[i] *= 0.3f;
    for (int64_t i = 0; i < n2; i++) w2[i] *= 0.3f;
    float *g0[2] = {pf_malloc(sizeof(float) * n1), pf_malloc(sizeof(float) * n2)};
    float *dx0 = pf_malloc(sizeof(float) * N * in);
    randn(&rng, g0[0], n1);
    randn(&rng, g0[1], n2);
    randn(&rng, dx0, N * in);
    int64_t ns = pf_pixelfly_mlp_scratch_numel(&p1, &p2, N);
    float *scratch = pf_malloc(sizeof(float) * ns);

    // run 0: fused; run 1: composed. Outputs [y | xv1 | gv2 | dx | dw1 | dw2].
    int64_t ny = (int64_t)N * out, nrun = ny + (int64_t)N * (r1 + r2) + N * in + n1 + n2;
    float *run[2];
    for (int k = 0; k < 2; k++) {
        run[k] = pf_calloc(nrun, sizeof(float));
        float *y = run[k], *xv1 = y + ny, *gv2 = xv1 + N * r1, *dx = gv2 + N * r2,
              *dw1 = dx + N * in, *dw2 = dw1 + n1;
        memcpy(dx, dx0, sizeof(float) * N * in);
        memcpy(dw1, g0[0], sizeof(float) * n1);
        memcpy(dw2, g0[1], sizeof(float) * n2);
        pf_pixelfly_w W1 = {.S = t4(w1, p1.bs, p1.nf + 1, p1.ob, p1.ib)};
        pf_pixelfly_w W2 = {.S = t4(w2, p2.bs, p2.nf + 1, p2.ob, p2.ib)};
        pf_pixelfly_w D1 = {.S = t4(dw1, p1.bs, p1.nf + 1, p1.ob, p1.ib)};
        pf_pixelfly_w D2 = {.S = t4(dw2, p2.bs, p2.nf + 1, p2.ob, p2.ib)};
        int64_t o1 = pf_pattern_sparse_numel(&p1), o2 = pf_pattern_sparse_numel(&p2);
        if (r1) {
            W1.U = t2(w1 + o1, H, r1), W1.V = t2(w1 + o1 + H * r1, r1, in);
            D1.U = t2(dw1 + o1, H, r1), D1.V = t2(dw1 + o1 + H * r1, r1, in);
        }
        if (r2) {
            W2.U = t2(w2 + o2, out, r2), W2.V = t2(w2 + o2 + out * r2, r2, H);
            D2.U = t2(dw2 + o2, out, r2), D2.V = t2(dw2 + o2 + out * r2, r2, H);
        }
        if (d[10]) {
            W1.b = t1(w1 + n1 - H, H), D1.b = t1(dw1 + n1 - H, H);
            W2.b = t1(w2 + n2 - out, out), D2.b = t1(dw2 + n2 - out, out);
        }
        if (!want_dw1) D1 = (pf_pixelfly_w){0};
        pf_tensor tx = t2(x, N, in), tdx = want_dx ? t2(dx, N, in) : pf_none();
        pf_tensor txv1 = r1 ? t2(xv1, N, r1) : pf_none(), tgv2 = r2 ? t2(gv2, N, r2) : pf_none();
        pf_tensor ty = t2(y, N, out), tdy = t2(dy, N, out);
        for (int64_t i = 0; i < ns; i++) scratch[i] = NAN;  // the op may not read it first
        if (k == 0) {
            be->pixelfly_mlp_fwd(&p1, &p2, ty, txv1, tgv2, tx, W1, W2, t1(scratch, ns));
            for (int64_t i = 0; i < ns; i++) scratch[i] = NAN;
            be->pixelfly_mlp_bwd(&p1, &p2, tdx, D1, D2, tdy, tx, txv1, tgv2, W1, W2,
                                 t1(scratch, ns));
        } else {
            float *f = pf_malloc(sizeof(float) * N * H), *g = pf_malloc(sizeof(float) * N * H);
            float *df = pf_calloc((size_t)N * H, sizeof(float));
            float *dg = pf_calloc((size_t)N * H, sizeof(float));
            float *dxv = pf_malloc(sizeof(float) * (N * rm + 1));
            pf_tensor tf = t2(f, N, H), tg = t2(g, N, H);
            be->pixelfly_fwd(&p1, tf, txv1, tx, W1);
            be->gelu_fwd(tg, tf);
            be->pixelfly_fwd(&p2, ty, tgv2, tg, W2);
            be->pixelfly_bwd(&p2, want_dw1 ? t2(dg, N, H) : pf_none(), D2,
                             r2 ? t2(dxv, N, r2) : pf_none(), tdy, tg, tgv2, W2);
            if (want_dw1) {
                be->gelu_bwd(t2(df, N, H), t2(dg, N, H), tf);
                be->pixelfly_bwd(&p1, tdx, D1, r1 ? t2(dxv, N, r1) : pf_none(), t2(df, N, H),
                                 tx, txv1, W1);
            }
            free(f);
            free(g);
            free(df);
            free(dg);
            free(dxv);
        }
    }
    const char *names[] = {"y", "xv1", "gv2", "dx", "dw1", "dw2"};
    int64_t sizes[] = {ny, (int64_t)N * r1, (int64_t)N * r2, (int64_t)N * in, n1, n2};
    for (int64_t i = 0, off = 0; i < 6; off += sizes[i++])
        ck_assert_msg(!memcmp(run[0] + off, run[1] + off, sizeof(float) * sizes[i]),
                      "case %d: fused %s differs from the composition (rel err %.3g)", _i,
                      names[i], rel_errf(run[0] + off, run[1] + off, sizes[i]));
    // The gradients moved (the comparison is not between two untouched start values).
    if (want_dw1) ck_assert(rel_errf(run[0] + nrun - n2 - n1, g0[0], n1) > 0);
    ck_assert(rel_errf(run[0] + nrun - n2, g0[1], n2) > 0);
    float *bufs[] = {x, dy, w1, w2, g0[0], g0[1], dx0, scratch, run[0], run[1]};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
END_TEST

// ---- AdamW against steps computed by hand ----

// Two steps from m = v = 0 of p = 1.0, g = 0.4 (both steps), lr = 0.1, b1 = 0.9, b2 = 0.999,
// eps = 1e-8, grad_scale = 0.5 (so g' = 0.2):
//   step 1: m = 0.02, v = 4e-5; mhat = 0.2, vhat = 0.04, update = 0.2 / (0.2 + 1e-8) ~ 1
//           wd = 0: p = 1 - 0.1 * 0.99999995 = 0.900000005
//           wd = 0.1: p = 1 - 0.1 * (0.99999995 + 0.1 * 1) = 0.890000005
//   step 2: m = 0.038, v = 7.996e-5; mhat = 0.038/0.19 = 0.2, vhat = 7.996e-5/0.001999 = 0.04
//           so the update is again ~1:
//           wd = 0: p = 0.900000005 - 0.1 * 0.99999995 = 0.80000001
//           wd = 0.1: p = 0.890000005 - 0.1 * (0.99999995 + 0.1 * 0.890000005) = 0.781100005
START_TEST(test_adamw_by_hand) {
    const double expect[2][2] = {{0.900000005, 0.80000001}, {0.890000005, 0.781100005}};
    for (int wdi = 0; wdi < 2; wdi++) {
        float p = 1.0f, g = 0.4f, m = 0, v = 0;
        pf_adamw_args a = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                           .weight_decay = wdi ? 0.1f : 0.0f, .grad_scale = 0.5f};
        for (int step = 1; step <= 2; step++) {
            a.step = step;
            be->adamw(t1(&p, 1), t1(&g, 1), t1(&m, 1), t1(&v, 1), &a);
            ck_assert_msg(fabs(p - expect[wdi][step - 1]) < 1e-6, "wd=%g step %d: p=%.9f want %.9f",
                          a.weight_decay, step, p, expect[wdi][step - 1]);
        }
        ck_assert(fabs(m - 0.038) < 1e-7 && fabs(v - 7.996e-5) < 1e-8);
        ck_assert(g == 0.4f);  // the gradient is read, not scaled in place
    }
}
END_TEST

// The same formula written out in double, over many elements of mixed sign and size.
START_TEST(test_adamw_formula) {
    enum { n = 1031 };
    float p[n], g[n], m[n], v[n];
    double pd[n], md[n] = {0}, vd[n] = {0};
    pf_rng rng;
    pf_rng_seed(&rng, 3);
    for (int i = 0; i < n; i++) {
        pd[i] = p[i] = pf_rng_normal(&rng);
        m[i] = v[i] = 0;
    }
    for (int wdi = 0; wdi < 2; wdi++) {
        pf_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-6f,
                           .weight_decay = wdi ? 0.05f : 0.0f, .grad_scale = 0.25f};
        for (int step = 1; step <= 2; step++) {
            a.step = step;
            for (int i = 0; i < n; i++) g[i] = pf_rng_normal(&rng) * (i % 7 ? 1.0f : 1e-4f);
            be->adamw(t1(p, n), t1(g, n), t1(m, n), t1(v, n), &a);
            for (int i = 0; i < n; i++) {
                double gi = a.grad_scale * (double)g[i];
                md[i] = a.beta1 * md[i] + (1 - (double)a.beta1) * gi;
                vd[i] = a.beta2 * vd[i] + (1 - (double)a.beta2) * gi * gi;
                double mh = md[i] / (1 - pow(a.beta1, step)), vh = vd[i] / (1 - pow(a.beta2, step));
                pd[i] -= a.lr * (mh / (sqrt(vh) + a.eps) + a.weight_decay * pd[i]);
                ck_assert_msg(fabs(p[i] - pd[i]) < 2e-6, "element %d step %d wd %g: %.8f vs %.8f",
                              i, step, a.weight_decay, p[i], pd[i]);
            }
        }
    }
}
END_TEST

// ---- gradient norm, clip factor, sumsq ----

START_TEST(test_grad_norm) {
    float g[] = {3, 0, -4, 0, 0};
    float s = -1;
    ck_assert(pf_grad_norm(be, g, 5, 1.0f, &s) == 5.0);
    ck_assert(fabsf(s - 0.2f) < 1e-7f);
    pf_grad_norm(be, g, 5, 10.0f, &s);
    ck_assert(s == 1.0f);
    pf_grad_norm(be, g, 5, 0.0f, &s);  // max_norm <= 0: no clipping
    ck_assert(s == 1.0f);
    pf_grad_norm(be, g, 5, 5.0f, &s);  // exactly at the limit
    ck_assert(s == 1.0f);
    g[1] = NAN;
    ck_assert(isnan(pf_grad_norm(be, g, 5, 1.0f, &s)));
    ck_assert(s == 1.0f);
}
END_TEST

// sumsq over several chunks: exact against a naive double sum up to rounding, and the same
// bits on 1, 2 and 3 threads.
START_TEST(test_sumsq_thread_independent) {
    int64_t n = 3 * 65536 + 1001;
    float *x = pf_malloc(sizeof(float) * n);
    pf_rng rng;
    pf_rng_seed(&rng, 11);
    double naive = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = pf_rng_normal(&rng) * (i % 3 ? 1.0f : 1e3f);
        naive += (double)x[i] * x[i];
    }
    int saved = omp_get_max_threads();
    double got[3];
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        got[t - 1] = be->sumsq(t1(x, n));
    }
    omp_set_num_threads(saved);
    ck_assert(fabs(got[0] - naive) < 1e-12 * naive);
    ck_assert(got[0] == got[1] && got[1] == got[2]);
    float s = -1;
    double norm = pf_grad_norm(be, x, n, 1.0f, &s);
    ck_assert(norm == sqrt(got[0]) && fabs(s - 1.0 / norm) < 1e-6 / norm);
    be->scale(t1(x, n), 0.5f);
    ck_assert(fabs(be->sumsq(t1(x, n)) - 0.25 * got[0]) < 1e-12 * got[0]);
    free(x);
}
END_TEST

// ---- the dense linear layer at shapes that take each split of cpu_sgemm ----

// {N, in, out, bias}: {40, 33, 300}: forward split by output columns (300 = 18 panels of 16
// + 12), each thread setting its columns of y to the bias first, dX and dW by rows;
// {300, 40, 33}: forward and dX by rows, dW [33, 40] by columns (panels of 16, 16, 8); the
// same without a bias (y set to 0). Against a double reference on 1, 2 and 3 threads; bias
// and layernorm gain gradients (row-chunk partials) must give the same bits on every count.
static const int split_cases[][4] = {
    {40, 33, 300, 1}, {300, 40, 33, 1}, {40, 33, 300, 0}, {300, 40, 33, 0}};

START_TEST(test_linear_gemm_splits) {
    int N = split_cases[_i][0], in = split_cases[_i][1], out = split_cases[_i][2];
    pf_rng rng;
    pf_rng_seed(&rng, 500 + (uint64_t)_i);
    float *x = pf_malloc(sizeof(float) * N * in), *w = pf_malloc(sizeof(float) * out * in);
    float *b = pf_malloc(sizeof(float) * out), *dy = pf_malloc(sizeof(float) * N * out);
    randn(&rng, x, (int64_t)N * in);
    randn(&rng, w, (int64_t)out * in);
    randn(&rng, b, out);
    randn(&rng, dy, (int64_t)N * out);
    const float *bias = split_cases[_i][3] ? b : NULL;
    double *y_ref = pf_malloc(sizeof(double) * N * out);
    double *dx_ref = pf_malloc(sizeof(double) * N * in);
    double *dw_ref = pf_malloc(sizeof(double) * out * in);
    double *db_ref = pf_malloc(sizeof(double) * out);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0;
            for (int i = 0; i < in; i++) s += (double)x[n * in + i] * w[o * in + i];
            y_ref[n * out + o] = s;
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int o = 0; o < out; o++) s += (double)dy[n * out + o] * w[o * in + i];
            dx_ref[n * in + i] = s;
        }
    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int n = 0; n < N; n++) sb += dy[n * out + o];
        db_ref[o] = sb;
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dy[n * out + o] * x[n * in + i];
            dw_ref[o * in + i] = s;
        }
    }
    float *y = pf_malloc(sizeof(float) * N * out), *dx = pf_malloc(sizeof(float) * N * in);
    float *dw = pf_malloc(sizeof(float) * out * in), *db[3];
    float *lg[3], *lb[3];
    float *mean = pf_malloc(sizeof(float) * N), *rstd = pf_malloc(sizeof(float) * N);
    int saved = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        db[t - 1] = pf_calloc(out, sizeof(float));
        lg[t - 1] = pf_calloc(out, sizeof(float));
        lb[t - 1] = pf_calloc(out, sizeof(float));
        for (int rep = 0; rep < 2; rep++) {  // the second run must repeat the first's bits
            float *y0 = rep ? pf_malloc(sizeof(float) * N * out) : NULL;
            float *dx0 = rep ? pf_malloc(sizeof(float) * N * in) : NULL;
            float *dw0 = rep ? pf_malloc(sizeof(float) * out * in) : NULL;
            if (rep) {
                memcpy(y0, y, sizeof(float) * N * out);
                memcpy(dx0, dx, sizeof(float) * N * in);
                memcpy(dw0, dw, sizeof(float) * out * in);
            }
            memset(dx, 0, sizeof(float) * N * in);
            memset(dw, 0, sizeof(float) * out * in);
            memset(y, 0xff, sizeof(float) * N * out);  // NaN: the forward must overwrite y
            be->linear_fwd(t2(y, N, out), t2(x, N, in), t2(w, out, in), t1((float *)bias, out));
            be->linear_bwd(t2(dx, N, in), t2(dw, out, in), t1(rep ? NULL : db[t - 1], out),
                           t2(dy, N, out), t2(x, N, in), t2(w, out, in));
            if (rep) {
                ck_assert_msg(!memcmp(y0, y, sizeof(float) * N * out) &&
                                  !memcmp(dx0, dx, sizeof(float) * N * in) &&
                                  !memcmp(dw0, dw, sizeof(float) * out * in),
                              "linear {%d,%d,%d}: two runs on %d threads differ", N, in, out, t);
                free(y0);
                free(dx0);
                free(dw0);
            }
        }
        ck_assert_msg(rel_err(y, y_ref, (int64_t)N * out, 1e-3) < 1e-5, "y, %d threads", t);
        ck_assert_msg(rel_err(dx, dx_ref, (int64_t)N * in, 1e-3) < 1e-5, "dx, %d threads", t);
        ck_assert_msg(rel_err(dw, dw_ref, (int64_t)out * in, 1e-3) < 1e-5, "dW, %d threads", t);
        ck_assert_msg(rel_err(db[t - 1], db_ref, out, 1e-3) < 1e-5, "db, %d threads", t);
        // layernorm over dy's rows: only its gain and bias gradients are compared here
        be->layernorm_fwd(t2(y, N, out), t1(mean, N), t1(rstd, N), t2(dy, N, out), t1(b, out),
                          pf_none(), 1e-5f);
        be->layernorm_bwd(pf_none(), t1(lg[t - 1], out), t1(lb[t - 1], out), t2(y, N, out),
                          t2(dy, N, out), t1(b, out), t1(mean, N), t1(rstd, N));
    }
    omp_set_num_threads(saved);
    for (int t = 2; t <= 3; t++) {
        ck_assert_msg(!memcmp(db[0], db[t - 1], sizeof(float) * out), "db: 1 vs %d threads", t);
        ck_assert_msg(!memcmp(lg[0], lg[t - 1], sizeof(float) * out), "ln dg: 1 vs %d threads", t);
        ck_assert_msg(!memcmp(lb[0], lb[t - 1], sizeof(float) * out), "ln db: 1 vs %d threads", t);
    }
    for (int t = 0; t < 3; t++) free(db[t]), free(lg[t]), free(lb[t]);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(mean), free(rstd);
    free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
}
END_TEST

// ---- the table itself, memory ops, add aliasing ----

START_TEST(test_supports_and_names) {
    for (int op = 0; op < PF_OP_COUNT; op++) {
        ck_assert(be->supports((pf_op)op, PF_F32) && !be->supports((pf_op)op, PF_BF16));
        ck_assert_str_ne(pf_op_name((pf_op)op), "unknown");
        for (int o2 = 0; o2 < op; o2++)
            ck_assert_str_ne(pf_op_name((pf_op)op), pf_op_name((pf_op)o2));
    }
    ck_assert(!be->supports(PF_OP_COUNT, PF_F32));
    ck_assert_str_eq(pf_op_name(PF_OP_COUNT), "unknown");
    ck_assert_str_eq(pf_op_name(PF_OP_LINEAR_FWD), "linear_fwd");
    ck_assert_str_eq(be->name, "cpu");
    // No op entry can be NULL: the table is generated from the op list (backend.h) and does
    // not link without every cpu_NAME.
    ck_assert(be->device == PF_DEV_CPU && be->act_dtype == PF_F32);
}
END_TEST

START_TEST(test_memory) {
    float host[100], back[100];
    for (int i = 0; i < 100; i++) host[i] = (float)i;
    float *d = be->alloc(sizeof host - 4);  // not a multiple of the alignment
    ck_assert((uintptr_t)d % 64 == 0);
    be->upload(d, host, sizeof host - 4);
    be->synchronize();
    be->download(back, d, sizeof host - 4);
    ck_assert(!memcmp(host, back, sizeof host - 4));
    be->zero(d, 10 * sizeof(float));
    be->download(back, d, sizeof host - 4);
    ck_assert(back[0] == 0 && back[9] == 0 && back[10] == 10.0f && back[98] == 98.0f);
    be->free(d);
    be->free(be->alloc(0));
}
END_TEST

// convert on the CPU backend: fp32 -> fp32 only (a copy), any shapes of the same numel,
// every element written, and in place (dst aliasing src) a no-op.
START_TEST(test_convert) {
    float src[13], dst[13];
    for (int i = 0; i < 13; i++) {
        src[i] = (float)i * 0.37f - 2.0f;
        dst[i] = NAN;
    }
    src[5] = -0.0f;
    src[6] = 1e-40f;  // a denormal copies bit for bit
    be->convert(t1(dst, 13), t1(src, 13));
    ck_assert(!memcmp(dst, src, sizeof src));
    float dst2[13];
    be->convert(t2(dst2, 1, 13), t1(src, 13));
    ck_assert(!memcmp(dst2, src, sizeof src));
    be->convert(t1(dst, 13), t1(dst, 13));
    ck_assert(!memcmp(dst, src, sizeof src));
    be->convert(t1(dst, 0), t1(src, 0));  // empty: nothing to do
}
END_TEST

START_TEST(test_add_aliasing) {
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {10, 20, 30, 40, 50};
    be->add(t1(a, 5), t1(a, 5), t1(b, 5));
    be->add(t1(b, 5), t1(a, 5), t1(b, 5));
    for (int i = 0; i < 5; i++) ck_assert(a[i] == 11.0f * (i + 1) && b[i] == 21.0f * (i + 1));
}
END_TEST

// The dropout mask: the fraction dropped is p (to 5 standard deviations over 2^20 elements),
// kept elements are scaled by exactly 1/(1-p), a slice with its `first` has the mask of the
// whole tensor's elements there, and another key draws an unrelated mask.
START_TEST(test_dropout_mask) {
    const int64_t n = 1 << 20;
    const float p = 0.1f;
    float *x = pf_malloc(sizeof(float) * n), *y = pf_malloc(sizeof(float) * n),
          *z = pf_malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    be->dropout(t1(y, n), t1(x, n), p, 42, 0);
    int64_t dropped = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert(y[i] == 0.0f || y[i] == 1.0f / (1.0f - p));
        dropped += y[i] == 0.0f;
    }
    double frac = (double)dropped / n, sd = sqrt(p * (1 - p) / n);
    ck_assert_msg(fabs(frac - p) < 5 * sd, "dropped %.5f, want %.2f", frac, p);
    be->dropout(t1(z, 1000), t1(x, 1000), p, 42, 5000);
    ck_assert(!memcmp(z, y + 5000, sizeof(float) * 1000));
    be->dropout(t1(z, n), t1(x, n), p, 43, 0);
    int64_t both = 0;
    for (int64_t i = 0; i < n; i++) both += y[i] == 0.0f && z[i] == 0.0f;
    ck_assert_msg(fabs((double)both / n - p * p) < 0.002, "masks of keys 42, 43 overlap %.4f",
                  (double)both / n);
    // p = 0 keeps everything as it is
    be->dropout(t1(z, n), t1(x, n), 0.0f, 42, 0);
    ck_assert(!memcmp(z, x, sizeof(float) * n));
    free(x);
    free(y);
    free(z);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_op_gradients, 0, op_fd_ncases);
    tcase_add_loop_test(tc, test_op_deterministic, 0, op_fd_ncases);
    suite_add_tcase(s, tc);
    tc = tcase_create("pixelfly");
    tcase_add_loop_test(tc, test_pixelfly_matches_dense, 0,
                        (int)(sizeof dense_cases / sizeof dense_cases[0]));
    tcase_add_test(tc, test_pixelfly_deterministic);
    tcase_add_loop_test(tc, test_pixelfly_mlp_matches_unfused, 0,
                        (int)(sizeof mlp_cases / sizeof mlp_cases[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("optim");
    tcase_add_test(tc, test_adamw_by_hand);
    tcase_add_test(tc, test_adamw_formula);
    tcase_add_test(tc, test_grad_norm);
    tcase_add_test(tc, test_sumsq_thread_independent);
    tcase_add_loop_test(tc, test_linear_gemm_splits, 0,
                        (int)(sizeof split_cases / sizeof split_cases[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("backend");
    tcase_add_test(tc, test_supports_and_names);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_convert);
    tcase_add_test(tc, test_add_aliasing);
    tcase_add_test(tc, test_dropout_mask);
    suite_add_tcase(s, tc);
    return s;
}
