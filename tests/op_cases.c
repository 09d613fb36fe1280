// op_cases.c: the op-test case table (op_cases.h), one place per op for its tests:
//
//   - op_fd_cases: per op, a builder of seeded host inputs, forward and backward through a
//     backend table and a naive forward in double; tests/test_ops.c compares the CPU backend's
//     forward with the reference and every gradient with finite differences.
//   - op_cmp_cases: per op family, a run on a tested backend against the CPU backend from the
//     same inputs. Outputs the op overwrites start as NaN on the tested backend (so an element
//     it forgets to write fails the case); outputs the op accumulates into start with the same
//     random values on both sides, and their increments (result - start) are compared, so a
//     small gradient is not hidden by a large start value. Error = max |tested - cpu| /
//     max |cpu| per output (on increments for accumulated ones). tests/gpu/test_cuda_ops.c
//     runs them on CUDA (make test-gpu, make test-emu), tests/test_bf16.c on the
//     bf16-emulating CPU backend.
//
// No Check here: the GPU machines lack libcheck; failures are returned or counted.
#include "op_cases.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "op_shapes.h"

// ==== finite-difference cases ================================================================

// ---- tensors over test buffers (NULL data gives the absent tensor) ----
// The cases' backend (op_ctx.be) computes on these host buffers: the CPU backend.

pf_tensor t1(float *p, int64_t a) {
    return p ? pf_tensor_1d(p, PF_F32, PF_DEV_CPU, a) : pf_none();
}
pf_tensor t2(float *p, int64_t a, int64_t b) {
    return p ? pf_tensor_2d(p, PF_F32, PF_DEV_CPU, a, b) : pf_none();
}
pf_tensor t3(float *p, int64_t a, int64_t b, int64_t c) {
    return p ? pf_tensor_3d(p, PF_F32, PF_DEV_CPU, a, b, c) : pf_none();
}
pf_tensor t4(float *p, int64_t a, int64_t b, int64_t c, int64_t d) {
    return p ? pf_tensor_4d(p, PF_F32, PF_DEV_CPU, a, b, c, d) : pf_none();
}
static pf_tensor i1(int32_t *p, int64_t a) { return pf_tensor_1d(p, PF_I32, PF_DEV_CPU, a); }
static pf_tensor i2(int32_t *p, int64_t a, int64_t b) {
    return pf_tensor_2d(p, PF_I32, PF_DEV_CPU, a, b);
}

// ---- one case: its buffers, differentiable variables and output ----

#define GUARD 8
#define GUARD_BITS 0x7fc0de00u  // NaN payloads no op produces, + the buffer's index

// A buffer of n floats filled with N(0, 1) (outputs and scratch too: ops must overwrite
// them), with GUARD words on both sides.
static float *fd_buf(op_ctx *c, int64_t n) {
    PF_ASSERT(c->nbuf < MAX_BUFS);
    uint32_t *raw = pf_malloc(sizeof(float) * (size_t)(n + 2 * GUARD));
    for (int i = 0; i < GUARD; i++) raw[i] = raw[n + GUARD + i] = GUARD_BITS + c->nbuf;
    float *p = (float *)(raw + GUARD);
    for (int64_t i = 0; i < n; i++) p[i] = pf_rng_normal(&c->rng);
    c->bufs[c->nbuf] = p;
    c->bufn[c->nbuf++] = n;
    return p;
}

int op_fd_free(op_ctx *c) {
    int bad = -1;
    for (int b = 0; b < c->nbuf; b++) {
        uint32_t *raw = (uint32_t *)c->bufs[b] - GUARD;
        for (int i = 0; i < GUARD; i++)
            if (bad < 0 && !(raw[i] == GUARD_BITS + b && raw[c->bufn[b] + GUARD + i] == raw[i]))
                bad = b;
        free(raw);
    }
    free(c->ids);
    return bad;
}

// Variable slot i: value x (N(0,1) * scale) and, unless no_grad, a pre-filled gradient.
static void var(op_ctx *c, int i, const char *name, int64_t n, float scale, bool no_grad) {
    grad_var *v = &c->var[i];
    v->name = name;
    v->n = n;
    v->x = fd_buf(c, n);
    for (int64_t j = 0; j < n; j++) v->x[j] *= scale;
    v->g = no_grad ? NULL : fd_buf(c, n);
}

static void set_out(op_ctx *c, int64_t n) {
    c->nout = n;
    c->out = fd_buf(c, n);
    c->dout = fd_buf(c, n);
}

static float *X(op_ctx *c, int i) { return c->var[i].n ? c->var[i].x : NULL; }
static float *G(op_ctx *c, int i) { return c->var[i].n ? c->var[i].g : NULL; }

// ---- linear: d = {N, in, out}; vars x, w, b ----

static void linear_build(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], in = oc->d[1], out = oc->d[2];
    var(c, 0, "x", (int64_t)N * in, 1, oc->no_dx);
    var(c, 1, "w", (int64_t)out * in, 1, false);
    if (oc->flag) var(c, 2, "b", out, 1, false);
    set_out(c, (int64_t)N * out);
}
static void linear_fwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], in = oc->d[1], out = oc->d[2];
    c->be->linear_fwd(t2(c->out, N, out), t2(X(c, 0), N, in), t2(X(c, 1), out, in),
                   t1(X(c, 2), out));
}
static void linear_bwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], in = oc->d[1], out = oc->d[2];
    c->be->linear_bwd(t2(G(c, 0), N, in), t2(G(c, 1), out, in), t1(G(c, 2), out),
                   t2(c->dout, N, out), t2(X(c, 0), N, in), t2(X(c, 1), out, in));
}
// y = x W^T + b for dense W [out, in] (shared with the Pixelfly reference).
static void dense_ref(const float *x, const double *W, const float *b, int N, int in, int out,
                      double *y) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < in; i++) s += (double)x[n * in + i] * W[(int64_t)o * in + i];
            y[n * out + o] = s;
        }
}
static void linear_ref(const op_case *oc, op_ctx *c, double *y) {
    int N = oc->d[0], in = oc->d[1], out = oc->d[2];
    double *W = pf_malloc(sizeof(double) * out * in);
    for (int i = 0; i < out * in; i++) W[i] = X(c, 1)[i];
    dense_ref(X(c, 0), W, X(c, 2), N, in, out, y);
    free(W);
}

// ---- pixelfly: d = {N, out, in, bs, nf, rank, mask}; vars x, S, U, V, b; aux xv, dxv ----

// The mask of a case: 0 the flat butterfly (bs, nf); 1 a random mask of nf+1 blocks per
// super-row (seed 7); 2 a butterfly factor of stride 2^(nf-1) (rank must be 0).
static void case_pattern(pf_pattern *p, int mask, int out, int in, int bs, int nf, int rank,
                         bool bias) {
    int rc = mask == 1   ? pf_pattern_init_random(p, out, in, bs, nf + 1, rank, bias, 7)
             : mask == 2 ? pf_pattern_init_factor(p, out, in, bs, 1 << (nf - 1), bias)
                         : pf_pattern_init(p, out, in, bs, nf, rank, bias);
    if (rc) PF_FATAL("%s", pf_errmsg());
}

static pf_pixelfly_w layer_weights(op_ctx *c, const pf_pattern *p, int base, bool grads) {
    float *(*get)(op_ctx *, int) = grads ? G : X;
    return (pf_pixelfly_w){
        .S = t4(get(c, base), p->bs, p->nf + 1, p->ob, p->ib),
        .U = t2(get(c, base + 1), p->out, p->rank),
        .V = t2(get(c, base + 2), p->rank, p->in),
        .b = t1(get(c, base + 3), p->out),
    };
}
static pf_pixelfly_w pf_weights(op_ctx *c, int base, bool grads) {
    return layer_weights(c, &c->pat, base, grads);
}
static void pixelfly_build(const op_case *oc, op_ctx *c) {
    int N = oc->d[0];
    case_pattern(&c->pat, oc->d[6], oc->d[1], oc->d[2], oc->d[3], oc->d[4], oc->d[5], oc->flag);
    const pf_pattern *p = &c->pat;
    var(c, 0, "x", (int64_t)N * p->in, 1, oc->no_dx);
    var(c, 1, "S", pf_pattern_sparse_numel(p), 1, false);
    if (p->rank) {
        var(c, 2, "U", (int64_t)p->out * p->rank, 1, false);
        var(c, 3, "V", (int64_t)p->rank * p->in, 1, false);
        c->aux[0] = fd_buf(c, (int64_t)N * p->rank);
        c->aux[1] = fd_buf(c, (int64_t)N * p->rank);
    }
    if (p->bias) var(c, 4, "b", p->out, 1, false);
    set_out(c, (int64_t)N * p->out);
}
static void pixelfly_fwd(const op_case *oc, op_ctx *c) {
    const pf_pattern *p = &c->pat;
    int N = oc->d[0];
    c->be->pixelfly_fwd(p, t2(c->out, N, p->out), t2(c->aux[0], N, p->rank), t2(X(c, 0), N, p->in),
                     pf_weights(c, 1, false));
}
static void pixelfly_bwd(const op_case *oc, op_ctx *c) {
    const pf_pattern *p = &c->pat;
    int N = oc->d[0];
    c->be->pixelfly_bwd(p, t2(G(c, 0), N, p->in), pf_weights(c, 1, true),
                     t2(c->aux[1], N, p->rank), t2(c->dout, N, p->out), t2(X(c, 0), N, p->in),
                     t2(c->aux[0], N, p->rank), pf_weights(c, 1, false));
}
// The dense [out, in] matrix of the layer: masked S plus U V, in double.
double *pixelfly_dense(const pf_pattern *p, const float *S, const float *U,
                              const float *V) {
    float *Wf = pf_malloc(sizeof(float) * p->out * p->in);
    double *W = pf_malloc(sizeof(double) * p->out * p->in);
    pf_pattern_to_dense(p, S, Wf);
    for (int o = 0; o < p->out; o++)
        for (int i = 0; i < p->in; i++) {
            double s = Wf[o * p->in + i];
            for (int k = 0; k < p->rank; k++) s += (double)U[o * p->rank + k] * V[k * p->in + i];
            W[o * p->in + i] = s;
        }
    free(Wf);
    return W;
}
static void pixelfly_ref(const op_case *oc, op_ctx *c, double *y) {
    const pf_pattern *p = &c->pat;
    double *W = pixelfly_dense(p, X(c, 1), X(c, 2), X(c, 3));
    dense_ref(X(c, 0), W, X(c, 4), oc->d[0], p->in, p->out, y);
    free(W);
}

// ---- pixelfly_mlp: d = {N, in, H, out, bs1, nf1, r1, bs2, nf2, r2}, flag = biases;
//      vars x, S1, U1, V1, b1, S2, U2, V2, b2; aux xv1, gv2, scratch ----

// Variables base..base+3 of one layer (weights scaled down so that GELU sees values of
// order one: neither all linear nor all saturated).
static void layer_vars(op_ctx *c, const pf_pattern *p, int base, const char *const names[4]) {
    var(c, base, names[0], pf_pattern_sparse_numel(p), 0.5f, false);
    if (p->rank) {
        var(c, base + 1, names[1], (int64_t)p->out * p->rank, 0.5f, false);
        var(c, base + 2, names[2], (int64_t)p->rank * p->in, 0.5f, false);
    }
    if (p->bias) var(c, base + 3, names[3], p->out, 0.5f, false);
}
static void pixelfly_mlp_build(const op_case *oc, op_ctx *c) {
    const int *d = oc->d;
    int N = d[0];
    PF_ASSERT(pf_pattern_init(&c->pat, d[2], d[1], d[4], d[5], d[6], oc->flag) == 0);
    PF_ASSERT(pf_pattern_init(&c->pat2, d[3], d[2], d[7], d[8], d[9], oc->flag) == 0);
    var(c, 0, "x", (int64_t)N * d[1], 1, oc->no_dx);
    layer_vars(c, &c->pat, 1, (const char *const[]){"S1", "U1", "V1", "b1"});
    layer_vars(c, &c->pat2, 5, (const char *const[]){"S2", "U2", "V2", "b2"});
    if (d[6]) c->aux[0] = fd_buf(c, (int64_t)N * d[6]);
    if (d[9]) c->aux[1] = fd_buf(c, (int64_t)N * d[9]);
    c->aux[2] = fd_buf(c, pf_pixelfly_mlp_scratch_numel(&c->pat, &c->pat2, N));
    set_out(c, (int64_t)N * d[3]);
}
static pf_tensor mlp_scratch(const op_case *oc, op_ctx *c) {
    return t1(c->aux[2], pf_pixelfly_mlp_scratch_numel(&c->pat, &c->pat2, oc->d[0]));
}
static void pixelfly_mlp_fwd(const op_case *oc, op_ctx *c) {
    const pf_pattern *p1 = &c->pat, *p2 = &c->pat2;
    int N = oc->d[0];
    c->be->pixelfly_mlp_fwd(p1, p2, t2(c->out, N, p2->out), t2(c->aux[0], N, p1->rank),
                         t2(c->aux[1], N, p2->rank), t2(X(c, 0), N, p1->in),
                         layer_weights(c, p1, 1, false), layer_weights(c, p2, 5, false),
                         mlp_scratch(oc, c));
}
static void pixelfly_mlp_bwd(const op_case *oc, op_ctx *c) {
    const pf_pattern *p1 = &c->pat, *p2 = &c->pat2;
    int N = oc->d[0];
    c->be->pixelfly_mlp_bwd(p1, p2, t2(G(c, 0), N, p1->in), layer_weights(c, p1, 1, true),
                         layer_weights(c, p2, 5, true), t2(c->dout, N, p2->out),
                         t2(X(c, 0), N, p1->in), t2(c->aux[0], N, p1->rank),
                         t2(c->aux[1], N, p2->rank), layer_weights(c, p1, 1, false),
                         layer_weights(c, p2, 5, false), mlp_scratch(oc, c));
}
static void pixelfly_mlp_ref(const op_case *oc, op_ctx *c, double *y) {
    const pf_pattern *p1 = &c->pat, *p2 = &c->pat2;
    int N = oc->d[0], in = p1->in, H = p1->out, out = p2->out;
    double *W1 = pixelfly_dense(p1, X(c, 1), X(c, 2), X(c, 3));
    double *W2 = pixelfly_dense(p2, X(c, 5), X(c, 6), X(c, 7));
    const float *x = X(c, 0), *b1 = X(c, 4), *b2 = X(c, 8);
    double *g = pf_malloc(sizeof(double) * H);
    for (int n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            double f = b1 ? b1[h] : 0;
            for (int i = 0; i < in; i++) f += (double)x[n * in + i] * W1[(int64_t)h * in + i];
            g[h] = 0.5 * f * (1 + tanh(sqrt(2 / M_PI) * (f + 0.044715 * f * f * f)));
        }
        for (int o = 0; o < out; o++) {
            double s = b2 ? b2[o] : 0;
            for (int h = 0; h < H; h++) s += g[h] * W2[(int64_t)o * H + h];
            y[n * out + o] = s;
        }
    }
    free(g);
    free(W1);
    free(W2);
}

// ---- layernorm: d = {N, C}; vars x, g, b; aux mean, rstd ----

#define LN_EPS 1e-5f

static void layernorm_build(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], C = oc->d[1];
    var(c, 0, "x", (int64_t)N * C, 1, false);
    var(c, 1, "g", C, 1, false);
    if (oc->flag) var(c, 2, "b", C, 1, false);
    c->aux[0] = fd_buf(c, N);
    c->aux[1] = fd_buf(c, N);
    set_out(c, (int64_t)N * C);
}
static void layernorm_fwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], C = oc->d[1];
    c->be->layernorm_fwd(t2(c->out, N, C), t1(c->aux[0], N), t1(c->aux[1], N), t2(X(c, 0), N, C),
                      t1(X(c, 1), C), t1(X(c, 2), C), LN_EPS);
}
static void layernorm_bwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], C = oc->d[1];
    c->be->layernorm_bwd(t2(G(c, 0), N, C), t1(G(c, 1), C), t1(G(c, 2), C), t2(c->dout, N, C),
                      t2(X(c, 0), N, C), t1(X(c, 1), C), t1(c->aux[0], N), t1(c->aux[1], N));
}
static void layernorm_ref(const op_case *oc, op_ctx *c, double *y) {
    int N = oc->d[0], C = oc->d[1];
    const float *x = X(c, 0), *g = X(c, 1), *b = X(c, 2);
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[n * C + i] / (double)C;
        for (int i = 0; i < C; i++) v += (x[n * C + i] - m) * (x[n * C + i] - m) / C;
        for (int i = 0; i < C; i++)
            y[n * C + i] = (x[n * C + i] - m) / sqrt(v + LN_EPS) * g[i] + (b ? b[i] : 0);
    }
}

// ---- gelu: d = {n}; var x (spread over [-6, 6]) ----

static void gelu_build(const op_case *oc, op_ctx *c) {
    var(c, 0, "x", oc->d[0], 2.5f, false);
    set_out(c, oc->d[0]);
}
static void gelu_fwd(const op_case *oc, op_ctx *c) {
    c->be->gelu_fwd(t1(c->out, oc->d[0]), t1(X(c, 0), oc->d[0]));
}
static void gelu_bwd(const op_case *oc, op_ctx *c) {
    c->be->gelu_bwd(t1(G(c, 0), oc->d[0]), t1(c->dout, oc->d[0]), t1(X(c, 0), oc->d[0]));
}
static void gelu_ref(const op_case *oc, op_ctx *c, double *y) {
    for (int i = 0; i < oc->d[0]; i++) {
        double v = X(c, 0)[i];
        y[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    }
}

// ---- add / accumulate: d = {rows, cols}; vars a, b. Their backward is accumulate. ----

static void add_build(const op_case *oc, op_ctx *c) {
    int64_t n = (int64_t)oc->d[0] * oc->d[1];
    var(c, 0, "a", n, 1, false);
    var(c, 1, "b", n, 1, false);
    set_out(c, n);
}
static void add_fwd(const op_case *oc, op_ctx *c) {
    int r = oc->d[0], k = oc->d[1];
    c->be->add(t2(c->out, r, k), t2(X(c, 0), r, k), t2(X(c, 1), r, k));
}
static void accumulate_fwd(const op_case *oc, op_ctx *c) {
    int r = oc->d[0], k = oc->d[1];
    memcpy(c->out, X(c, 0), sizeof(float) * r * k);
    c->be->accumulate(t2(c->out, r, k), t2(X(c, 1), r, k));
}
static void add_bwd(const op_case *oc, op_ctx *c) {
    int r = oc->d[0], k = oc->d[1];
    c->be->accumulate(t2(G(c, 0), r, k), t2(c->dout, r, k));
    c->be->accumulate(t2(G(c, 1), r, k), t2(c->dout, r, k));
}
static void add_ref(const op_case *oc, op_ctx *c, double *y) {
    for (int i = 0; i < oc->d[0] * oc->d[1]; i++) y[i] = (double)X(c, 0)[i] + X(c, 1)[i];
}

// ---- dropout: d = {n, first}, f = p; var x. The mask's key is fixed; the reference draws it
// from splitmix64 as written out in backend.h, independently of pf_dropout_bits. ----

#define DROPOUT_KEY 0x5eed0fd20b0u

static void dropout_build(const op_case *oc, op_ctx *c) {
    var(c, 0, "x", oc->d[0], 1, false);
    set_out(c, oc->d[0]);
}
static void dropout_fwd(const op_case *oc, op_ctx *c) {
    c->be->dropout(t1(c->out, oc->d[0]), t1(X(c, 0), oc->d[0]), oc->f, DROPOUT_KEY,
                   (uint64_t)oc->d[1]);
}
// The op is its own adjoint: dx += dropout(dout), through the output buffer's twin.
static void dropout_bwd(const op_case *oc, op_ctx *c) {
    int64_t n = oc->d[0];
    float *dx = pf_malloc(sizeof(float) * (size_t)(n ? n : 1));
    c->be->dropout(t1(dx, n), t1(c->dout, n), oc->f, DROPOUT_KEY, (uint64_t)oc->d[1]);
    c->be->accumulate(t1(G(c, 0), n), t1(dx, n));
    free(dx);
}
// splitmix64: state += 0x9E3779B97F4A7C15, then the finaliser; element i uses output i + 1
// (the state advanced first + i + 1 times) and keeps x when its high 32 bits / 2^32 >= p.
static void dropout_ref(const op_case *oc, op_ctx *c, double *y) {
    uint64_t state = DROPOUT_KEY;
    for (int64_t i = 0; i <= oc->d[1]; i++) state += 0x9E3779B97F4A7C15u;
    for (int i = 0; i < oc->d[0]; i++, state += 0x9E3779B97F4A7C15u) {
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        z ^= z >> 31;
        bool kept = (double)(z >> 32) / 4294967296.0 >= oc->f;
        y[i] = kept ? X(c, 0)[i] / (1.0 - oc->f) : 0.0;
    }
}

// ---- attention: d = {B, T, NH, hd}, flag causal; var qkv; aux lse ----
// Backward reads out and lse as the forward left them (a wrong lse fails the gradients).

static void attention_build(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], NH = oc->d[2], C = NH * oc->d[3];
    var(c, 0, "qkv", (int64_t)B * T * 3 * C, 1, false);
    c->aux[0] = fd_buf(c, (int64_t)B * NH * T);
    set_out(c, (int64_t)B * T * C);
}
static void attention_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], NH = oc->d[2], C = NH * oc->d[3];
    c->be->attention_fwd(t3(c->out, B, T, C), t3(c->aux[0], B, NH, T), t3(X(c, 0), B, T, 3 * C),
                      NH, oc->flag);
}
static void attention_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], NH = oc->d[2], C = NH * oc->d[3];
    c->be->attention_bwd(t3(G(c, 0), B, T, 3 * C), t3(c->dout, B, T, C), t3(X(c, 0), B, T, 3 * C),
                      t3(c->out, B, T, C), t3(c->aux[0], B, NH, T), NH, oc->flag);
}
static void attention_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], T = oc->d[1], NH = oc->d[2], hd = oc->d[3], C = NH * hd;
    const float *qkv = X(c, 0);
    double *w = pf_malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + (b * T + t) * 3 * C + h * hd;
                double sum = 0;
                for (int s = 0; s < T; s++) {
                    const float *k = qkv + (b * T + s) * 3 * C + C + h * hd;
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += (double)q[i] * k[i];
                    w[s] = oc->flag && s > t ? 0 : exp(dot / sqrt(hd));
                    sum += w[s];
                }
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += w[s] / sum * qkv[(b * T + s) * 3 * C + 2 * C + h * hd + i];
                    y[(b * T + t) * C + h * hd + i] = o;
                }
            }
    free(w);
}

// ---- xent: d = {N, V, Vp, ignored row}, f smoothing; var logits; ids targets ----
// xent_bwd scales every row alike, so R is one constant (passed as `scale`).

#define IGNORE (-100)

static void xent_build(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], V = oc->d[1], Vp = oc->d[2];
    var(c, 0, "logits", (int64_t)N * Vp, 2, false);
    c->ids = pf_malloc(sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) c->ids[n] = (int32_t)pf_rng_below(&c->rng, (uint32_t)V);
    c->ids[0] = V - 1;  // the last real class, next to the padding
    c->ids[oc->d[3]] = IGNORE;
    set_out(c, N);
    for (int n = 0; n < N; n++) c->dout[n] = 0.7f;
}
static void xent_fwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], Vp = oc->d[2];
    c->be->xent_fwd(t1(c->out, N), t2(X(c, 0), N, Vp), i1(c->ids, N), oc->d[1], IGNORE, oc->f);
}
static void xent_bwd(const op_case *oc, op_ctx *c) {
    int N = oc->d[0], Vp = oc->d[2];
    c->be->xent_bwd(t2(G(c, 0), N, Vp), t2(X(c, 0), N, Vp), i1(c->ids, N), oc->d[1], IGNORE,
                 oc->f, c->dout[0]);
}
static void xent_ref(const op_case *oc, op_ctx *c, double *y) {
    int N = oc->d[0], V = oc->d[1], Vp = oc->d[2];
    for (int n = 0; n < N; n++) {
        const float *l = X(c, 0) + n * Vp;
        double z = 0, nll_mean = 0;
        for (int k = 0; k < V; k++) z += exp(l[k]);
        for (int k = 0; k < V; k++) nll_mean += (log(z) - l[k]) / V;
        int t = c->ids[n];
        y[n] = t == IGNORE ? 0 : (1 - oc->f) * (log(z) - l[t]) + oc->f * nll_mean;
    }
}

// ---- embedding: d = {B, T, C, vocab, maxT}, flag wpe; vars wte, wpe; ids with repeats ----

static void embedding_build(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], C = oc->d[2], vocab = oc->d[3], maxT = oc->d[4];
    var(c, 0, "wte", (int64_t)vocab * C, 1, false);
    if (oc->flag) var(c, 1, "wpe", (int64_t)maxT * C, 1, false);
    c->ids = pf_malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) c->ids[i] = (int32_t)pf_rng_below(&c->rng, (uint32_t)vocab);
    c->ids[1] = c->ids[B * T - 1] = c->ids[0];  // repeated ids, within and across sequences
    set_out(c, (int64_t)B * T * C);
}
static void embedding_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], C = oc->d[2], vocab = oc->d[3], maxT = oc->d[4];
    c->be->embedding_fwd(t3(c->out, B, T, C), i2(c->ids, B, T), t2(X(c, 0), vocab, C),
                      t2(X(c, 1), maxT, C));
}
static void embedding_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], T = oc->d[1], C = oc->d[2], vocab = oc->d[3], maxT = oc->d[4];
    c->be->embedding_bwd(t2(G(c, 0), vocab, C), t2(G(c, 1), maxT, C), t3(c->dout, B, T, C),
                      i2(c->ids, B, T));
}
static void embedding_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], T = oc->d[1], C = oc->d[2];
    for (int i = 0; i < B * T; i++)
        for (int k = 0; k < C; k++)
            y[i * C + k] = (double)X(c, 0)[c->ids[i] * C + k] +
                           (X(c, 1) ? X(c, 1)[(i % T) * C + k] : 0);
}

// ---- transpose, meanpool, cls_token: d = {B, P, C}; var x (+ cls, pos) ----

static void vision_build(const op_case *oc, op_ctx *c, int64_t nout) {
    var(c, 0, "x", (int64_t)oc->d[0] * oc->d[1] * oc->d[2], 1, false);
    set_out(c, nout);
}
static void transpose_build(const op_case *oc, op_ctx *c) {
    vision_build(oc, c, (int64_t)oc->d[0] * oc->d[1] * oc->d[2]);
}
static void transpose_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->transpose_fwd(t3(c->out, B, C, P), t3(X(c, 0), B, P, C));
}
static void transpose_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->transpose_bwd(t3(G(c, 0), B, P, C), t3(c->dout, B, C, P));
}
static void transpose_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            for (int k = 0; k < C; k++) y[(b * C + k) * P + p] = X(c, 0)[(b * P + p) * C + k];
}
static void meanpool_build(const op_case *oc, op_ctx *c) {
    vision_build(oc, c, (int64_t)oc->d[0] * oc->d[2]);
}
static void meanpool_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->meanpool_fwd(t2(c->out, B, C), t3(X(c, 0), B, P, C));
}
static void meanpool_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->meanpool_bwd(t3(G(c, 0), B, P, C), t2(c->dout, B, C));
}
static void meanpool_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    for (int b = 0; b < B; b++)
        for (int k = 0; k < C; k++) {
            y[b * C + k] = 0;
            for (int p = 0; p < P; p++) y[b * C + k] += X(c, 0)[(b * P + p) * C + k] / (double)P;
        }
}
static void cls_token_build(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    vision_build(oc, c, (int64_t)B * (P + 1) * C);
    var(c, 1, "cls", C, 1, false);
    if (oc->flag) var(c, 2, "pos", (int64_t)(P + 1) * C, 1, false);
}
static void cls_token_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->cls_token_fwd(t3(c->out, B, P + 1, C), t3(X(c, 0), B, P, C), t1(X(c, 1), C),
                      t2(X(c, 2), P + 1, C));
}
static void cls_token_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->cls_token_bwd(t3(G(c, 0), B, P, C), t1(G(c, 1), C), t2(G(c, 2), P + 1, C),
                      t3(c->dout, B, P + 1, C));
}
static void cls_token_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    for (int b = 0; b < B; b++)
        for (int t = 0; t <= P; t++)
            for (int k = 0; k < C; k++)
                y[(b * (P + 1) + t) * C + k] =
                    (double)(t ? X(c, 0)[(b * P + t - 1) * C + k] : X(c, 1)[k]) +
                    (X(c, 2) ? X(c, 2)[t * C + k] : 0);
}

// cls_select: y[B,C] = x[B,0,C] of x [B,P,C]
static void cls_select_build(const op_case *oc, op_ctx *c) {
    vision_build(oc, c, (int64_t)oc->d[0] * oc->d[2]);
}
static void cls_select_fwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->cls_select_fwd(t2(c->out, B, C), t3(X(c, 0), B, P, C));
}
static void cls_select_bwd(const op_case *oc, op_ctx *c) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    c->be->cls_select_bwd(t3(G(c, 0), B, P, C), t2(c->dout, B, C));
}
static void cls_select_ref(const op_case *oc, op_ctx *c, double *y) {
    int B = oc->d[0], P = oc->d[1], C = oc->d[2];
    for (int b = 0; b < B; b++)
        for (int k = 0; k < C; k++) y[b * C + k] = X(c, 0)[b * P * C + k];
}

// ---- the table ----

#define OP(name) #name, name##_build, name##_fwd, name##_bwd, name##_ref
#define FD_TOL 1e-3

const op_case op_fd_cases[] = {
    {OP(linear), {5, 7, 3}, 0, true, false, FD_TOL},
    {OP(linear), {5, 7, 3}, 0, false, false, FD_TOL},
    {OP(linear), {1, 16, 9}, 0, true, true, FD_TOL},
    {OP(linear), {3, 5, 70}, 0, true, false, FD_TOL},
    {OP(linear), {70, 6, 5}, 0, true, false, FD_TOL},  // db over several row chunks
    // pixelfly: {N, out, in, bs, nf, rank}, flag = bias
    {OP(pixelfly), {5, 16, 16, 4, 1, 0}, 0, false, false, FD_TOL},
    {OP(pixelfly), {3, 8, 12, 4, 2, 3}, 0, true, false, FD_TOL},
    {OP(pixelfly), {4, 16, 32, 8, 2, 0}, 0, true, false, FD_TOL},
    {OP(pixelfly), {3, 24, 8, 8, 3, 3}, 0, false, false, FD_TOL},
    {OP(pixelfly), {2, 32, 16, 8, 3, 3}, 0, true, false, FD_TOL},
    {OP(pixelfly), {3, 16, 16, 8, 2, 3}, 0, true, true, FD_TOL},
    {OP(pixelfly), {3, 16, 16, 8, 2, 3, 1}, 0, true, false, FD_TOL},  // random mask
    {OP(pixelfly), {4, 24, 8, 8, 3, 0, 1}, 0, false, false, FD_TOL},
    {OP(pixelfly), {3, 16, 16, 8, 3, 0, 2}, 0, true, false, FD_TOL},  // butterfly factor
    {OP(pixelfly), {2, 32, 16, 4, 1, 0, 2}, 0, false, false, FD_TOL},
    // pixelfly_mlp: {N, in, H, out, bs1, nf1, r1, bs2, nf2, r2}, flag = biases
    {OP(pixelfly_mlp), {5, 16, 32, 8, 4, 1, 2, 4, 2, 3}, 0, true, false, FD_TOL},
    {OP(pixelfly_mlp), {3, 12, 24, 12, 4, 2, 0, 2, 1, 0}, 0, false, false, FD_TOL},
    {OP(pixelfly_mlp), {4, 16, 16, 16, 8, 3, 3, 8, 1, 0}, 0, true, true, FD_TOL},
    {OP(pixelfly_mlp), {1, 8, 16, 8, 2, 1, 1, 4, 2, 2}, 0, true, false, FD_TOL},
    {OP(layernorm), {4, 7}, 0, true, false, FD_TOL},
    {OP(layernorm), {3, 16}, 0, false, false, FD_TOL},
    {OP(layernorm), {2, 130}, 0, true, false, FD_TOL},
    // more rows than one row chunk (32) of the dg / db partials (cpu_colsum.h)
    {OP(layernorm), {70, 9}, 0, true, false, FD_TOL},
    {OP(gelu), {37}, 0, false, false, FD_TOL},
    {OP(add), {3, 5}, 0, false, false, FD_TOL},
    {"accumulate", add_build, accumulate_fwd, add_bwd, add_ref, {4, 3}, 0, false, false, FD_TOL},
    // dropout: {n, first}, f = p
    {OP(dropout), {37, 0}, 0.1f, false, false, FD_TOL},
    {OP(dropout), {64, 1000}, 0.5f, false, false, FD_TOL},
    {OP(dropout), {9, 5}, 0.0f, false, false, FD_TOL},
    // attention: {B, T, NH, hd}, flag = causal
    {OP(attention), {2, 5, 2, 3}, 0, true, false, FD_TOL},
    {OP(attention), {2, 5, 2, 3}, 0, false, false, FD_TOL},
    {OP(attention), {1, 1, 1, 4}, 0, true, false, FD_TOL},
    {OP(attention), {1, 1, 1, 4}, 0, false, false, FD_TOL},
    {OP(attention), {1, 9, 3, 2}, 0, true, false, FD_TOL},
    // more queries than one tile (64) and keys than one block (128) of cpu_attention.c
    {OP(attention), {1, 150, 1, 4}, 0, true, false, FD_TOL},
    {OP(attention), {1, 150, 1, 4}, 0, false, false, FD_TOL},
    {OP(attention), {2, 70, 2, 3}, 0, true, false, FD_TOL},
    // xent: {N, V, Vp, ignored row}, f = label smoothing
    {OP(xent), {5, 7, 10, 3}, 0.0f, false, false, FD_TOL},
    {OP(xent), {5, 7, 10, 2}, 0.1f, false, false, FD_TOL},
    {OP(xent), {4, 6, 6, 1}, 0.1f, false, false, FD_TOL},
    // embedding: {B, T, C, vocab, maxT}, flag = wpe
    {OP(embedding), {2, 4, 5, 6, 7}, 0, true, false, FD_TOL},
    {OP(embedding), {3, 3, 4, 3, 3}, 0, false, false, FD_TOL},
    {OP(embedding), {1, 5, 130, 4, 5}, 0, true, false, FD_TOL},
    {OP(transpose), {2, 3, 5}, 0, false, false, FD_TOL},
    {OP(meanpool), {2, 3, 5}, 0, false, false, FD_TOL},
    {OP(cls_token), {2, 3, 4}, 0, true, false, FD_TOL},
    {OP(cls_token), {3, 2, 5}, 0, false, false, FD_TOL},
    {OP(cls_select), {3, 4, 5}, 0, false, false, FD_TOL},
};
const int op_fd_ncases = (int)(sizeof op_fd_cases / sizeof op_fd_cases[0]);

double op_fd_loss(const op_case *oc, op_ctx *c) {
    oc->fwd(oc, c);
    double L = 0;
    for (int64_t i = 0; i < c->nout; i++) L += (double)c->out[i] * c->dout[i];
    return L;
}

// max|a - b| / max(max|b|, floor)
double rel_err(const float *a, const double *b, int64_t n, double floor) {
    double num = 0, den = floor;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (isnan(d)) return INFINITY;
        num = fmax(num, d);
        den = fmax(den, fabs(b[i]));
    }
    return num / den;
}

void op_fd_case_name(const op_case *oc, char *s, size_t len) {
    char more[64] = "";
    if (oc->d[6] || oc->d[7] || oc->d[8] || oc->d[9])
        snprintf(more, sizeof more, ",%d,%d,%d,%d", oc->d[6], oc->d[7], oc->d[8], oc->d[9]);
    snprintf(s, len, "%s{%d,%d,%d,%d,%d,%d%s}%s%s", oc->name, oc->d[0], oc->d[1], oc->d[2],
             oc->d[3], oc->d[4], oc->d[5], more, oc->flag ? "+flag" : "",
             oc->no_dx ? "-dx" : "");
}

// ==== backend-against-CPU cases =============================================================

static const pf_backend *CPU = &pf_backend_cpu, *DUT;  // the reference, the backend tested

#define TOL 1e-4        // fp32 on both sides, different summation orders
#define BF16_TOL 2e-2   // bf16 inputs and outputs (8 significant bits), fp32 accumulation

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

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
float urand(void) {  // uniform in [-1, 1)
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
        DUT->upload(b->d, values, sizeof(float) * n);
        return;
    }
    uint16_t *h16 = pf_malloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h16[i] = pf_bf16_from_f32(values[i]);
    DUT->upload(b->d, h16, sizeof(uint16_t) * n);
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
    b.d = DUT->alloc((size_t)b.n * pf_dtype_size(dt));
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
    DUT->upload(b.d, b.h, sizeof(int32_t) * (size_t)b.n);
    return b;
}

// Scale a float input (both copies) by s.
static void scale_buf(buf *b, float s) {
    float *h = b->h;
    for (int64_t i = 0; i < b->n; i++) h[i] *= s;
    sync_buf(b);
}

// The reference's view is fp32 where the tested backend's is bf16.
static pf_tensor view(const buf *b, void *data, pf_device dev, bool ref) {
    pf_dtype dt = ref && b->dt == PF_BF16 ? PF_F32 : b->dt;
    pf_tensor t = {.data = data, .dtype = dt, .device = dev, .ndim = b->ndim};
    for (int i = 0; i < b->ndim; i++) t.shape[i] = b->shape[i];
    return t;
}
static pf_tensor tc(const buf *b) { return view(b, b->h, PF_DEV_CPU, true); }
static pf_tensor tg(const buf *b) { return view(b, b->d, DUT->device, false); }

static void release(buf *b) {
    free(b->h);
    free(b->init);
    DUT->free(b->d);
}

// PF_GPU_TESTS=pixelfly,attention,... runs only those op families (linear, pixelfly, mlp,
// layernorm, elementwise, reduce, attention, xent, embedding, vision, convert, adamw, model,
// staged, training), e.g. under compute-sanitizer where the whole suite takes long; unset: all.
bool selected(const char *family) {
    const char *want = getenv("PF_GPU_TESTS");
    if (!want || !*want) return true;
    size_t n = strlen(family);
    for (const char *p = want; (p = strstr(p, family)); p += n)
        if ((p == want || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}

// ---- cases ----------------------------------------------------------------------------------

int n_pass, n_fail;
char case_name[256];
double case_err;
char case_worst[64];
bool case_ok;

void begin(const char *fmt, ...) {
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
    DUT->synchronize();
    size_t bytes = sizeof(float) * (size_t)b->n;
    float *g = pf_malloc(bytes ? bytes : 4);
    if (b->dt == PF_BF16) {
        uint16_t *g16 = (uint16_t *)g;  // converted in place from the back
        DUT->download(g16, b->d, sizeof(uint16_t) * (size_t)b->n);
        for (int64_t i = b->n - 1; i >= 0; i--) g[i] = pf_f32_from_bf16(g16[i]);
    } else {
        DUT->download(g, b->d, bytes);
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

void end(void) {
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
    DUT->linear_fwd(tg(&y), tg(&x), tg(&w), bg);
    cmp_tol("y", &y, tol);
    end();

    buf dy = A2(dt, IN, N, out), dx = A2(dt, ACC, N, in), dw = F2(ACC, out, in),
        db = F1(ACC, out);
    shrink_bf16_start(&dx);
    begin("linear_bwd %s N=%ld in=%ld out=%ld bias=%d dx=%d", dn, (long)N, (long)in, (long)out,
          bias, with_dx);
    CPU->linear_bwd(with_dx ? tc(&dx) : pf_none(), tc(&dw), bias ? tc(&db) : pf_none(),
                    tc(&dy), tc(&x), tc(&w));
    DUT->linear_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dw), bias ? tg(&db) : pf_none(),
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
    DUT->synchronize();
    DUT->download(ha, a->d, bytes);
    DUT->download(hb, b->d, bytes);
    bool same = memcmp(ha, hb, bytes) == 0;
    free(ha);
    free(hb);
    return same;
}

// Activations and weights in dt (x, y, xv, S, U, V, b, dy, dx, dxv), weight gradients fp32.
// The CUDA kernels compute in bf16 on tensor cores whatever dt is (fp32 accumulation), so
// every output is held to BF16_TOL.
static void test_pixelfly(pf_dtype dt, int64_t N, int out, int in, int bs, int nf, int rank,
                          bool bias, bool with_dx, int mask) {
    if (!selected("pixelfly")) return;
    pf_pattern p;
    case_pattern(&p, mask, out, in, bs, nf, rank, bias);
    int64_t r1 = rank ? rank : 1;  // placeholder size for absent low-rank buffers
    buf x = A2(dt, IN, N, in), S = A4(dt, IN, bs, p.nf + 1, p.ob, p.ib), U = A2(dt, IN, out, r1),
        V = A2(dt, IN, r1, in), b = A1(dt, IN, out), y = A2(dt, OUT, N, out),
        xv = A2(dt, OUT, N, r1);
    const char *fmt = "%s N=%ld out=%d in=%d bs=%d nf=%d r=%d bias=%d mask=%d";
    char shape[128];
    snprintf(shape, sizeof shape, fmt, dt == PF_BF16 ? "bf16" : "fp32", (long)N, out, in, bs,
             nf, rank, bias, mask);
    begin("pixelfly_fwd %s", shape);
    CPU->pixelfly_fwd(&p, tc(&y), rank ? tc(&xv) : pf_none(), tc(&x),
                      pw(&p, &S, &U, &V, &b, false));
    DUT->pixelfly_fwd(&p, tg(&y), rank ? tg(&xv) : pf_none(), tg(&x),
                      pw(&p, &S, &U, &V, &b, true));
    cmp_tol("y", &y, BF16_TOL);
    if (rank) cmp_tol("xv", &xv, BF16_TOL);
    end();

    // Backward reads xv as an input: give both sides the CPU forward's.
    sync_buf(&xv);
    buf dy = A2(dt, IN, N, out), dx = A2(dt, ACC, N, in), dS = F4(ACC, bs, p.nf + 1, p.ob, p.ib),
        dU = F2(ACC, out, r1), dV = F2(ACC, r1, in), db = F1(ACC, out),
        dxv = A2(dt, OUT, N, r1);
    begin("pixelfly_bwd %s dx=%d", shape, with_dx);
    CPU->pixelfly_bwd(&p, with_dx ? tc(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, false),
                      rank ? tc(&dxv) : pf_none(), tc(&dy), tc(&x), rank ? tc(&xv) : pf_none(),
                      pw(&p, &S, &U, &V, &b, false));
    DUT->pixelfly_bwd(&p, with_dx ? tg(&dx) : pf_none(), pw(&p, &dS, &dU, &dV, &db, true),
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
    buf dS2 = F4(ACC, bs, p.nf + 1, p.ob, p.ib);
    DUT->upload(dS2.d, dS.init, sizeof(float) * (size_t)dS.n);
    DUT->pixelfly_bwd(&p, pf_none(), (pf_pixelfly_w){.S = tg(&dS2)}, pf_none(), tg(&dy), tg(&x),
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
    DUT->pixelfly_mlp_fwd(&p1, &p2, tg(&y), r1 ? tg(&xv1) : pf_none(), r2 ? tg(&gv2) : pf_none(),
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
    DUT->pixelfly_mlp_bwd(&p1, &p2, with_dx ? tg(&dx) : pf_none(),
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
    DUT->layernorm_fwd(tg(&y), tg(&mean), tg(&rstd), tg(&x), tg(&g), bias ? tg(&b) : pf_none(),
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
    DUT->layernorm_bwd(with_dx ? tg(&dx) : pf_none(), tg(&dg), tg(&db), tg(&dy), tg(&x), tg(&g),
                       tg(&mean), tg(&rstd));
    cmp_tol("dx", &dx, tol);
    cmp("dg", &dg);
    cmp("db", &db);
    end();
    buf *all[] = {&x, &g, &b, &y, &mean, &rstd, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- elementwise ---------------------------------------------------------------------------

// gelu, dropout, add, accumulate in dt; scale (fp32 only: it runs on gradients) once, with
// dt = f32.
static void test_elementwise(pf_dtype dt, int64_t n) {
    if (!selected("elementwise")) return;
    const char *dn = dt == PF_BF16 ? "bf16" : "f32";
    double tol = dt == PF_BF16 ? BF16_TOL : TOL;
    buf x = A1(dt, IN, n), y = A1(dt, OUT, n), dy = A1(dt, IN, n), dx = A1(dt, ACC, n);
    scale_buf(&x, 4.0f);
    shrink_bf16_start(&dx);
    begin("gelu_fwd %s n=%ld", dn, (long)n);
    CPU->gelu_fwd(tc(&y), tc(&x));
    DUT->gelu_fwd(tg(&y), tg(&x));
    cmp_tol("y", &y, tol);
    end();
    begin("gelu_bwd %s n=%ld", dn, (long)n);
    CPU->gelu_bwd(tc(&dx), tc(&dy), tc(&x));
    DUT->gelu_bwd(tg(&dx), tg(&dy), tg(&x));
    cmp_tol("dx", &dx, tol);
    end();

    // dropout at p 0.3 from element 7 of the mask: the same elements dropped on both sides
    // (a dropped element is 0 exactly), into y and in place
    begin("dropout %s n=%ld", dn, (long)n);
    CPU->dropout(tc(&y), tc(&x), 0.3f, 99, 7);
    DUT->dropout(tg(&y), tg(&x), 0.3f, 99, 7);
    cmp_tol("y", &y, tol);
    end();
    begin("dropout in place (y = x) %s n=%ld", dn, (long)n);
    CPU->dropout(tc(&x), tc(&x), 0.3f, 99, 7);
    DUT->dropout(tg(&x), tg(&x), 0.3f, 99, 7);
    cmp_tol("y", &x, tol);
    end();

    buf a = A1(dt, IN, n), b = A1(dt, IN, n), s = A1(dt, OUT, n), acc = A1(dt, ACC, n);
    shrink_bf16_start(&acc);
    begin("add %s n=%ld", dn, (long)n);
    CPU->add(tc(&s), tc(&a), tc(&b));
    DUT->add(tg(&s), tg(&a), tg(&b));
    cmp_tol("y", &s, tol);
    end();
    begin("accumulate %s n=%ld", dn, (long)n);
    CPU->accumulate(tc(&acc), tc(&a));
    DUT->accumulate(tg(&acc), tg(&a));
    cmp_tol("dst", &acc, tol);
    end();
    // y aliasing b: b is an input, so compare it as an overwritten output.
    begin("add aliased (y = b) %s n=%ld", dn, (long)n);
    CPU->add(tc(&b), tc(&a), tc(&b));
    DUT->add(tg(&b), tg(&a), tg(&b));
    cmp_tol("y", &b, tol);
    end();

    if (dt == PF_F32) {
        buf sc = F1(ACC, n);
        begin("scale n=%ld", (long)n);
        CPU->scale(tc(&sc), -0.37f);
        DUT->scale(tg(&sc), -0.37f);
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
    double c = CPU->sumsq(tc(&x)), g = DUT->sumsq(tg(&x));
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
    for (const int *d = DUT->attention_head_dims; d && *d; d++)
        if (*d == hd) return true;
    return !DUT->attention_head_dims;
}

// Moves b's device copy one element up into a new allocation, so that its base is not 16-byte
// aligned (the attention kernels then take element accesses instead of 16-byte ones); returns
// the allocation, which the caller puts back into b->d before release().
static void *shift_buf(buf *b) {
    size_t es = pf_dtype_size(b->dt), bytes = es * (size_t)b->n;
    char *p = DUT->alloc(bytes + es);
    DUT->copy(p + es, b->d, bytes);
    DUT->synchronize();
    DUT->free(b->d);
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
    DUT->attention_fwd(tg(&out), tg(&lse), tg(&qkv), NH, causal);
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
    DUT->attention_bwd(tg(&dqkv), tg(&dout), tg(&qkv), tg(&out), tg(&lse), NH, causal);
    cmp_tol("dqkv", &dqkv, BF16_TOL);
    end();
    if (att_unaligned) qkv.d = base[0], out.d = base[1], dout.d = base[2], dqkv.d = base[3];
    buf *all[] = {&qkv, &out, &lse, &dout, &dqkv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
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
    DUT->xent_fwd(tg(&losses), tg(&logits), tg(&tg_), V, -1, smoothing);
    cmp("losses", &losses);  // fp32 from the same (rounded) logits
    end();
    begin("xent_bwd %s N=%ld V=%d Vp=%ld eps=%g", dn, (long)N, V, (long)Vp, smoothing);
    CPU->xent_bwd(tc(&dl), tc(&logits), tc(&tg_), V, -1, smoothing, 1.0f / (float)N);
    DUT->xent_bwd(tg(&dl), tg(&logits), tg(&tg_), V, -1, smoothing, 1.0f / (float)N);
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
    DUT->embedding_fwd(tg(&y), tg(&ids), tg(&wte), with_wpe ? tg(&wpe) : pf_none());
    cmp_tol("y", &y, tol);
    end();
    buf dy = A3(dt, IN, B, T, C), dwte = F2(ACC, vocab, C), dwpe = F2(ACC, T + 5, C);
    begin("embedding_bwd %s B=%ld T=%ld C=%ld vocab=%ld dwte=%d dwpe=%d", dn, (long)B, (long)T,
          (long)C, (long)vocab, with_dwte, with_wpe);
    CPU->embedding_bwd(with_dwte ? tc(&dwte) : pf_none(), with_wpe ? tc(&dwpe) : pf_none(),
                       tc(&dy), tc(&ids));
    DUT->embedding_bwd(with_dwte ? tg(&dwte) : pf_none(), with_wpe ? tg(&dwpe) : pf_none(),
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
    DUT->transpose_fwd(tg(&yt), tg(&x));
    cmp_tol("y", &yt, tol);
    end();
    begin("transpose_bwd %s", shape);
    CPU->transpose_bwd(tc(&dxt), tc(&dyt));
    DUT->transpose_bwd(tg(&dxt), tg(&dyt));
    cmp_tol("dx", &dxt, tol);
    end();

    buf ym = A2(dt, OUT, B, C), dym = A2(dt, IN, B, C), dxm = A3(dt, ACC, B, P, C);
    shrink_bf16_start(&dxm);
    begin("meanpool_fwd %s", shape);
    CPU->meanpool_fwd(tc(&ym), tc(&x));
    DUT->meanpool_fwd(tg(&ym), tg(&x));
    cmp_tol("y", &ym, tol);
    end();
    begin("meanpool_bwd %s", shape);
    CPU->meanpool_bwd(tc(&dxm), tc(&dym));
    DUT->meanpool_bwd(tg(&dxm), tg(&dym));
    cmp_tol("dx", &dxm, tol);
    end();

    buf cls = A1(dt, IN, C), pos = A2(dt, IN, P + 1, C), yc = A3(dt, OUT, B, P + 1, C),
        dyc = A3(dt, IN, B, P + 1, C), dxc = A3(dt, ACC, B, P, C), dcls = F1(ACC, C),
        dpos = F2(ACC, P + 1, C);
    shrink_bf16_start(&dxc);
    begin("cls_token_fwd %s pos=%d", shape, with_pos);
    CPU->cls_token_fwd(tc(&yc), tc(&x), tc(&cls), with_pos ? tc(&pos) : pf_none());
    DUT->cls_token_fwd(tg(&yc), tg(&x), tg(&cls), with_pos ? tg(&pos) : pf_none());
    cmp_tol("y", &yc, tol);
    end();
    begin("cls_token_bwd %s dpos=%d", shape, with_pos);
    CPU->cls_token_bwd(tc(&dxc), tc(&dcls), with_pos ? tc(&dpos) : pf_none(), tc(&dyc));
    DUT->cls_token_bwd(tg(&dxc), tg(&dcls), with_pos ? tg(&dpos) : pf_none(), tg(&dyc));
    cmp_tol("dx", &dxc, tol);
    cmp("dcls", &dcls);  // fp32 sums of the same (rounded) dy
    cmp("dpos", &dpos);
    end();

    buf ys = A2(dt, OUT, B, C), dxs = A3(dt, ACC, B, P + 1, C);
    shrink_bf16_start(&dxs);
    begin("cls_select_fwd %s", shape);
    CPU->cls_select_fwd(tc(&ys), tc(&dyc));
    DUT->cls_select_fwd(tg(&ys), tg(&dyc));
    cmp_tol("y", &ys, tol);
    end();
    begin("cls_select_bwd %s", shape);
    CPU->cls_select_bwd(tc(&dxs), tc(&dym));
    DUT->cls_select_bwd(tg(&dxs), tg(&dym));
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
    DUT->convert(tg(&dst), tg(&src));
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
    DUT->upload(v.d, v.h, sizeof(float) * (size_t)n);
    pf_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .step = step, .grad_scale = 0.5f};
    begin("adamw n=%ld step=%d", (long)n, step);
    CPU->adamw(tc(&p), tc(&g), tc(&m), tc(&v), &a);
    DUT->adamw(tg(&p), tg(&g), tg(&m), tg(&v), &a);
    cmp("p", &p);
    cmp("m", &m);
    cmp("v", &v);
    end();
    buf *all[] = {&p, &g, &m, &v};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) release(all[i]);
}

// ---- the table --------------------------------------------------------------------------

static void run_linear(pf_dtype dt, const op_cmp_case *k) {
    const int64_t *a = k->a;
    test_linear(dt, a[0], a[1], a[2], a[3], a[4]);
}
static void run_pixelfly(pf_dtype dt, const op_cmp_case *k) {
    const int64_t *a = k->a;
    test_pixelfly(dt, a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5], a[6], a[7],
                  (int)a[8]);
}
static void run_pixelfly_mlp(pf_dtype dt, const op_cmp_case *k) {
    const int64_t *a = k->a;
    test_pixelfly_mlp(dt, a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5],
                      (int)a[6], (int)a[7], (int)a[8], (int)a[9], a[10], a[11]);
}
static void run_layernorm(pf_dtype dt, const op_cmp_case *k) {
    test_layernorm(dt, k->a[0], k->a[1], k->a[2], k->a[3]);
}
static void run_elementwise(pf_dtype dt, const op_cmp_case *k) { test_elementwise(dt, k->a[0]); }
static void run_attention(pf_dtype dt, const op_cmp_case *k) {
    const int64_t *a = k->a;
    att_unaligned = a[5];
    test_attention(dt, a[0], a[1], a[2], (int)a[3], a[4]);
    att_unaligned = false;
}
static void run_xent(pf_dtype dt, const op_cmp_case *k) {
    test_xent(dt, k->a[0], (int)k->a[1], k->a[2], (float)k->f);
}
static void run_embedding(pf_dtype dt, const op_cmp_case *k) {
    const int64_t *a = k->a;
    test_embedding(dt, a[0], a[1], a[2], a[3], a[4], a[5]);
}
static void run_vision(pf_dtype dt, const op_cmp_case *k) {
    test_vision(dt, k->a[0], k->a[1], k->a[2], k->a[3]);
}
static void run_convert(pf_dtype dt, const op_cmp_case *k) {  // a[0], a[1]: dst, src bf16
    (void)dt;
    test_convert(k->a[0] ? PF_BF16 : PF_F32, k->a[1] ? PF_BF16 : PF_F32, k->a[2]);
}
static void run_adamw(pf_dtype dt, const op_cmp_case *k) {
    (void)dt;
    test_adamw(k->a[0], (int)k->a[1]);
}
static void run_sumsq(pf_dtype dt, const op_cmp_case *k) {
    (void)dt;
    test_sumsq(k->a[0]);
}

#define PER_DT(fam, group) #fam, run_##fam, group, true, 0
#define ONCE(fam, group) #fam, run_##fam, group, false, 0
#define XENT(smoothing) "xent", run_xent, 5, true, smoothing

const op_cmp_case op_cmp_cases[] = {
    // linear: {N, in, out, bias, dx}
    {PER_DT(linear, 0), {67, 96, 80, 1, 1}},
    {PER_DT(linear, 0), {67, 96, 80, 0, 0}},
    {PER_DT(linear, 0), {1, 5, 3, 1, 1}},
    {PER_DT(linear, 0), {130, 64, 256, 1, 1}},
    // pixelfly: {N, out, in, bs, nf, rank, bias, dx, mask (case_pattern)}
    {PER_DT(pixelfly, 1), {67, 64, 64, 4, 1, 0, 1, 1}},
    {PER_DT(pixelfly, 1), {67, 80, 96, 4, 2, 5, 1, 1}},
    {PER_DT(pixelfly, 1), {67, 96, 80, 8, 3, 5, 0, 1}},
    {PER_DT(pixelfly, 1), {5, 128, 64, 8, 2, 0, 1, 1}},
    {PER_DT(pixelfly, 1), {67, 64, 128, 8, 1, 5, 1, 0}},
    {PER_DT(pixelfly, 1), {33, 256, 256, 4, 2, 7, 1, 1}},
    {PER_DT(pixelfly, 1), {1, 80, 96, 4, 2, 5, 1, 1}},         // one token
    {PER_DT(pixelfly, 1), {0, 80, 96, 4, 2, 5, 1, 1}},         // no tokens
    {PER_DT(pixelfly, 1), {300, 384, 96, 8, 2, 16, 1, 1}},     // ob 48 != ib 12
    {PER_DT(pixelfly, 1), {130, 512, 1024, 4, 1, 3, 1, 1}},    // ob 128, ib 256: wide tiles
    {PER_DT(pixelfly, 1), {1000, 128, 64, 4, 2, 8, 1, 1}},     // dS split over tokens
    {PER_DT(pixelfly, 1), {256, 3072, 768, 16, 2, 32, 1, 1}},  // GPT-2 fc1 768 -> 3072
    {PER_DT(pixelfly, 1), {256, 768, 3072, 16, 2, 32, 1, 1}},  // GPT-2 fc2 3072 -> 768
    {PER_DT(pixelfly, 1), {67, 80, 96, 8, 2, 5, 1, 1, 1}},     // random mask
    {PER_DT(pixelfly, 1), {300, 384, 96, 16, 4, 0, 1, 1, 1}},
    {PER_DT(pixelfly, 1), {1000, 128, 64, 4, 1, 8, 0, 1, 1}},  // random, dS split
    {PER_DT(pixelfly, 1), {67, 64, 64, 8, 3, 0, 1, 1, 2}},     // butterfly factor, stride 4
    {PER_DT(pixelfly, 1), {130, 256, 64, 16, 1, 0, 0, 1, 2}},  // stride 1, ob 16 ib 4
    // pixelfly_mlp: {N, in, H, out, bs1, nf1, r1, bs2, nf2, r2, bias, dx}
    {PER_DT(pixelfly_mlp, 2), {67, 64, 256, 64, 4, 2, 8, 4, 2, 8, 1, 1}},
    {PER_DT(pixelfly_mlp, 2), {33, 96, 192, 80, 8, 3, 0, 4, 1, 5, 0, 1}},
    {PER_DT(pixelfly_mlp, 2), {67, 64, 128, 64, 4, 1, 3, 8, 2, 0, 1, 0}},
    {PER_DT(pixelfly_mlp, 2), {1, 64, 128, 64, 4, 1, 3, 8, 2, 0, 1, 1}},  // one token
    {PER_DT(pixelfly_mlp, 2), {0, 64, 128, 64, 4, 1, 3, 8, 2, 0, 1, 1}},  // no tokens
    {PER_DT(pixelfly_mlp, 2), {255, 768, 3072, 768, 16, 2, 32, 16, 2, 32, 1, 1}},  // GPT-2
    // layernorm: {N, C, bias, dx}
    {PER_DT(layernorm, 3), {67, 96, 1, 1}},
    {PER_DT(layernorm, 3), {5, 1000, 0, 1}},
    {PER_DT(layernorm, 3), {3, 33, 1, 0}},
    {PER_DT(layernorm, 3), {4, 2050, 1, 1}},
    {PER_DT(layernorm, 3), {1100, 40, 1, 1}},  // column sums split into 3 row parts
    // elementwise (gelu, dropout, add, accumulate; scale in fp32): {n}
    {PER_DT(elementwise, 3), {1}},
    {PER_DT(elementwise, 3), {1027}},
    {PER_DT(elementwise, 3), {300001}},
    // attention: {B, T, C, NH, causal, unaligned}: every head dim, T = 1, T off tile
    {PER_DT(attention, 4), {2, 17, 48, 3, 1}},     // hd 16
    {PER_DT(attention, 4), {2, 17, 48, 3, 0}},
    {PER_DT(attention, 4), {1, 64, 64, 4, 1}},     // one full tile
    {PER_DT(attention, 4), {3, 5, 64, 2, 1}},      // hd 32
    {PER_DT(attention, 4), {1, 100, 64, 2, 0}},    // two tiles, the second partial
    {PER_DT(attention, 4), {2, 1, 64, 1, 1}},      // T = 1, hd 64
    {PER_DT(attention, 4), {1, 1, 32, 2, 0}},
    {PER_DT(attention, 4), {2, 197, 192, 3, 0}},   // ViT: 196 patches + class token, hd 64
    {PER_DT(attention, 4), {1, 256, 128, 2, 1}},   // four tiles, causal, hd 64
    {PER_DT(attention, 4), {1, 130, 256, 2, 1}},   // hd 128
    {PER_DT(attention, 4), {2, 77, 256, 2, 0}},
    {PER_DT(attention, 4), {1, 197, 192, 2, 0}},   // hd 96 (ViT-S/16)
    // every act tensor one element off alignment: element accesses instead of 16-byte ones
    {PER_DT(attention, 4), {1, 100, 64, 2, 1, 1}},
    {PER_DT(attention, 4), {2, 77, 256, 2, 0, 1}},
    // xent: {N, V, Vp}, f = label smoothing
    {XENT(0.0), {67, 80, 96}},
    {XENT(0.1), {67, 80, 96}},
    {XENT(0.0), {5, 50, 50}},
    {XENT(0.2), {9, 1000, 1024}},
    {XENT(0.1), {3, 50257, 50304}},  // GPT-2's vocabulary
    // embedding: {B, T, C, vocab, wpe, dwte}
    {PER_DT(embedding, 5), {3, 11, 40, 50, 1, 1}},
    {PER_DT(embedding, 5), {3, 11, 40, 50, 0, 1}},
    {PER_DT(embedding, 5), {2, 7, 33, 9, 1, 0}},
    {PER_DT(embedding, 5), {4, 300, 130, 700, 1, 1}},  // 1200 tokens, C over one block
    // vision (transpose, meanpool, cls_token, cls_select): {B, P, C, pos}
    {PER_DT(vision, 5), {2, 37, 50, 1}},
    {PER_DT(vision, 5), {3, 9, 40, 0}},
    {PER_DT(vision, 5), {1, 64, 96, 1}},
    // convert: {dst bf16, src bf16, n}: every (dst, src) dtype pair
    {ONCE(convert, 6), {0, 0, 1}},    {ONCE(convert, 6), {0, 0, 1027}},
    {ONCE(convert, 6), {0, 0, 300001}}, {ONCE(convert, 6), {1, 0, 1}},
    {ONCE(convert, 6), {1, 0, 1027}}, {ONCE(convert, 6), {1, 0, 300001}},
    {ONCE(convert, 6), {0, 1, 1}},    {ONCE(convert, 6), {0, 1, 1027}},
    {ONCE(convert, 6), {0, 1, 300001}}, {ONCE(convert, 6), {1, 1, 1}},
    {ONCE(convert, 6), {1, 1, 1027}}, {ONCE(convert, 6), {1, 1, 300001}},
    // adamw (fp32): {n, step}
    {ONCE(adamw, 7), {1031, 1}},
    {ONCE(adamw, 7), {1031, 7}},
    // sumsq (fp32): {n}
    {ONCE(sumsq, 8), {1}},
    {ONCE(sumsq, 8), {1000}},
    {ONCE(sumsq, 8), {65536}},
    {ONCE(sumsq, 8), {200003}},
};
const int op_cmp_ncases = (int)(sizeof op_cmp_cases / sizeof op_cmp_cases[0]);

void op_cmp_run_all(const pf_backend *dut) {
    DUT = dut;
    for (int i = 0, j; i < op_cmp_ncases; i = j) {
        for (j = i; j < op_cmp_ncases && op_cmp_cases[j].group == op_cmp_cases[i].group;) j++;
        for (int d = 0; d < (op_cmp_cases[i].per_dtype ? 2 : 1); d++)
            for (int k = i; k < j; k++)
                op_cmp_cases[k].run(d ? PF_BF16 : PF_F32, &op_cmp_cases[k]);
    }
}

int op_cmp_run(const pf_backend *dut, int i, pf_dtype dt) {
    DUT = dut;
    int before = n_fail;
    op_cmp_cases[i].run(dt, &op_cmp_cases[i]);
    return n_fail - before;
}
