#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "common.h"

// Butterfly factor j of L for a layer [out, in]: its shape [fo, fi] (layers.h: square on the
// narrower side, the rectangular factor last when out >= in, first when in > out).
static void factor_shape(int out, int in, int L, int j, int *fo, int *fi) {
    bool rect = out >= in ? j == L - 1 : j == 0;
    int m = out < in ? out : in;
    *fo = rect ? out : m;
    *fi = rect ? in : m;
}

static int log2_exact(int v) {
    int k = 0;
    while ((1 << k) < v) k++;
    return (1 << k) == v ? k : -1;
}

// The masks of the layer's kind into l->pat; -1 with pf_error (without the layer's name).
static int build_masks(pf_linear *l, pf_layer_spec s, bool bias, uint64_t seed_salt) {
    switch (l->kind) {
    case PF_LAYER_PIXELFLY:
        l->nmask = 1;
        return pf_pattern_init(&l->pat[0], l->out, l->in, s.bs, s.nf, s.rank, bias);
    case PF_LAYER_BLOCKSPARSE: {
        // splitmix-style mix: the same seed gives every layer its own mask
        uint64_t seed = (uint64_t)s.seed * 0x9E3779B97F4A7C15ull + seed_salt;
        l->nmask = 1;
        return pf_pattern_init_random(&l->pat[0], l->out, l->in, s.bs, s.blocks, s.rank, bias,
                                      seed);
    }
    case PF_LAYER_BUTTERFLY: {
        int L = log2_exact(s.bs);
        if (L < 1 || L > PF_LINEAR_MAX_MASKS) {
            pf_error("butterfly bs=%d: use a power of two from 2 to %d (the number of blocks "
                     "per side; log2 bs factors)", s.bs, 1 << PF_LINEAR_MAX_MASKS);
            return -1;
        }
        l->nmask = L;
        for (int j = 0; j < L; j++) {
            int fo, fi;
            factor_shape(l->out, l->in, L, j, &fo, &fi);
            if (pf_pattern_init_factor(&l->pat[j], fo, fi, s.bs, 1 << j, bias && j == L - 1) < 0)
                return -1;
        }
        return 0;
    }
    case PF_LAYER_LOWRANK: {
        int maxr = l->out < l->in ? l->out : l->in;
        if (s.rank > maxr) {
            pf_error("lowrank rank=%d: use 1..%d (the narrower side)", s.rank, maxr);
            return -1;
        }
        return 0;
    }
    default: return 0;
    }
}

int pf_linear_declare(pf_linear *l, pf_layout *lay, const char *name, int in, int out,
                      bool bias, pf_layer_spec spec, double budget, uint64_t seed_salt) {
    memset(l, 0, sizeof *l);
    PF_ASSERT(strlen(name) < sizeof l->name);
    strcpy(l->name, name);
    l->in = in;
    l->out = out;
    l->w = l->b = l->U = l->V = -1;
    for (int j = 0; j < PF_LINEAR_MAX_MASKS; j++) l->S[j] = -1;
    if (spec.kind == PF_LAYER_AUTO) {
        if (budget <= 0)
            spec = (pf_layer_spec){.kind = PF_LAYER_DENSE};
        else if (pf_budget_pattern(name, out, in, budget, &spec) < 0)
            return -1;
        l->budgeted = spec.kind != PF_LAYER_DENSE;
    }
    l->kind = spec.kind;
    l->seed = spec.seed;
    l->rank = spec.kind == PF_LAYER_BUTTERFLY || spec.kind == PF_LAYER_DENSE ? 0 : spec.rank;
    if (build_masks(l, spec, bias, seed_salt) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "layer %s (%d -> %d): %s", name, in, out, pf_errmsg());
        pf_error("%s", msg);
        return -1;
    }
    char pname[PF_PARAM_NAME_MAX];
    if (l->kind == PF_LAYER_DENSE) {
        snprintf(pname, sizeof pname, "%s.w", name);
        l->w = pf_layout_add(lay, pname, 2, (int64_t[]){out, in}, false);
    }
    for (int j = 0; j < l->nmask; j++) {
        const pf_pattern *p = &l->pat[j];
        if (l->kind == PF_LAYER_BUTTERFLY)
            snprintf(pname, sizeof pname, "%s.S%d", name, j);
        else
            snprintf(pname, sizeof pname, "%s.S", name);
        l->S[j] = pf_layout_add(lay, pname, 4, (int64_t[]){p->bs, p->nf + 1, p->ob, p->ib}, false);
    }
    if (l->rank > 0) {
        snprintf(pname, sizeof pname, "%s.U", name);
        l->U = pf_layout_add(lay, pname, 2, (int64_t[]){out, l->rank}, false);
        snprintf(pname, sizeof pname, "%s.V", name);
        l->V = pf_layout_add(lay, pname, 2, (int64_t[]){l->rank, in}, false);
    }
    if (bias) {
        snprintf(pname, sizeof pname, "%s.b", name);
        l->b = pf_layout_add(lay, pname, 1, (int64_t[]){out}, true);
    }
    return 0;
}

static float *host_param(const pf_layout *lay, float *host, int idx) {
    return idx < 0 ? NULL : host + lay->params[idx].offset;
}

void pf_linear_init(const pf_linear *l, const pf_layout *lay, float *host, float std,
                    pf_rng *rng) {
    float *b = host_param(lay, host, l->b), *U = host_param(lay, host, l->U),
          *V = host_param(lay, host, l->V);
    if (b) memset(b, 0, sizeof(float) * l->out);
    switch (l->kind) {
    case PF_LAYER_PIXELFLY:
    case PF_LAYER_BLOCKSPARSE:
        pf_pattern_init_weights(&l->pat[0], std, rng, host_param(lay, host, l->S[0]), U, V, b);
        break;
    case PF_LAYER_BUTTERFLY:
        // Factors before the last keep the variance (gain 1: std^2 = 1/fan-in of a dense
        // factor); the last one scales it to the dense layer's in * std^2.
        for (int j = 0; j < l->nmask; j++) {
            const pf_pattern *p = &l->pat[j];
            float sj = j < l->nmask - 1 ? sqrtf(1.0f / p->in)
                                        : std * sqrtf((float)l->in / (float)p->in);
            pf_pattern_init_weights(p, sj, rng, host_param(lay, host, l->S[j]), NULL, NULL,
                                    j == l->nmask - 1 ? b : NULL);
        }
        break;
    case PF_LAYER_LOWRANK: {
        // x V^T has unit-scale entries; U brings y to the dense layer's in * std^2.
        float sv = sqrtf(1.0f / l->in), su = std * sqrtf((float)l->in / (float)l->rank);
        for (int64_t i = 0; i < (int64_t)l->rank * l->in; i++) V[i] = sv * pf_rng_normal(rng);
        for (int64_t i = 0; i < (int64_t)l->out * l->rank; i++) U[i] = su * pf_rng_normal(rng);
        break;
    }
    default: {
        float *w = host_param(lay, host, l->w);
        for (int64_t i = 0; i < (int64_t)l->out * l->in; i++) w[i] = std * pf_rng_normal(rng);
    }
    }
}

static int narrow(const pf_linear *l) { return l->out < l->in ? l->out : l->in; }

int pf_linear_saved_width(const pf_linear *l) {
    return l->kind == PF_LAYER_BUTTERFLY ? (l->nmask - 1) * narrow(l) : l->rank;
}

int pf_linear_scratch_width(const pf_linear *l) {
    return l->kind == PF_LAYER_BUTTERFLY ? (l->nmask > 1 ? 2 * narrow(l) : 0) : l->rank;
}

// Mask j's weights: the compute copy (base NULL) or the gradients at base; U, V and the bias
// ride with mask 0 of a masked kind, the bias with the last factor of a butterfly.
static pf_pixelfly_w mask_view(const pf_linear *l, const pf_arena *a, const float *base, int j) {
    bool last = j == l->nmask - 1;
    int idx[4] = {l->S[j], j == 0 ? l->U : -1, j == 0 ? l->V : -1, last ? l->b : -1};
    pf_tensor t[4];
    for (int i = 0; i < 4; i++)
        t[i] = base ? pf_arena_view(a, base, idx[i]) : pf_arena_weight(a, idx[i]);
    return (pf_pixelfly_w){.S = t[0], .U = t[1], .V = t[2], .b = t[3]};
}

pf_pixelfly_w pf_linear_pixelfly_w(const pf_linear *l, const pf_arena *a, bool grads) {
    PF_ASSERT(pf_layer_kind_masked(l->kind));
    return mask_view(l, a, grads ? a->grads : NULL, 0);
}

// Rows [N, cols] at element offset `at` of t's memory (t: activations of one dtype).
static pf_tensor slice(pf_tensor t, int64_t at, int64_t N, int64_t cols) {
    char *p = (char *)t.data + at * pf_dtype_size(t.dtype);
    return pf_tensor_2d(p, t.dtype, t.device, N, cols);
}

static pf_tensor weight(const pf_arena *a, int idx) { return pf_arena_weight(a, idx); }
static pf_tensor grad(const pf_arena *a, int idx) { return pf_arena_view(a, a->grads, idx); }

void pf_linear_forward(const pf_linear *l, const pf_arena *a, pf_tensor y, pf_tensor xv,
                       pf_tensor x) {
    const pf_backend *be = a->be;
    int64_t N = x.shape[0], m = narrow(l);
    switch (l->kind) {
    case PF_LAYER_PIXELFLY:
    case PF_LAYER_BLOCKSPARSE: be->pixelfly_fwd(&l->pat[0], y, xv, x, mask_view(l, a, NULL, 0)); break;
    case PF_LAYER_LOWRANK:
        be->linear_fwd(xv, x, weight(a, l->V), pf_none());
        be->linear_fwd(y, xv, weight(a, l->U), weight(a, l->b));
        break;
    case PF_LAYER_BUTTERFLY: {
        pf_tensor h = x;  // h_j: factor j's input; h_{j+1} = xv slice j
        for (int j = 0; j < l->nmask; j++) {
            pf_tensor o = j == l->nmask - 1 ? y : slice(xv, j * N * m, N, m);
            be->pixelfly_fwd(&l->pat[j], o, pf_none(), h, mask_view(l, a, NULL, j));
            h = o;
        }
        break;
    }
    default: be->linear_fwd(y, x, weight(a, l->w), weight(a, l->b));
    }
}

void pf_linear_backward(const pf_linear *l, const pf_arena *a, pf_tensor dx, pf_tensor dy,
                        pf_tensor x, pf_tensor xv, pf_tensor dxv) {
    const pf_backend *be = a->be;
    int64_t N = x.shape[0], m = narrow(l);
    switch (l->kind) {
    case PF_LAYER_PIXELFLY:
    case PF_LAYER_BLOCKSPARSE:
        be->pixelfly_bwd(&l->pat[0], dx, mask_view(l, a, a->grads, 0), dxv, dy, x, xv,
                         mask_view(l, a, NULL, 0));
        break;
    case PF_LAYER_LOWRANK:
        be->zero(dxv.data, (size_t)pf_numel(dxv) * pf_dtype_size(dxv.dtype));
        be->linear_bwd(dxv, grad(a, l->U), grad(a, l->b), dy, xv, weight(a, l->U));
        be->linear_bwd(dx, grad(a, l->V), pf_none(), dxv, x, weight(a, l->V));
        break;
    case PF_LAYER_BUTTERFLY: {
        // g: the gradient at factor j's output; factor j's input gradient goes to dx (j = 0)
        // or to one of the two [N, m] halves of dxv, alternating.
        pf_tensor g = dy;
        for (int j = l->nmask - 1; j >= 0; j--) {
            pf_tensor in = j == 0 ? x : slice(xv, (j - 1) * N * m, N, m);
            pf_tensor din = dx;
            if (j > 0) {
                din = slice(dxv, (j % 2) * N * m, N, m);
                be->zero(din.data, (size_t)(N * m) * pf_dtype_size(din.dtype));
            }
            be->pixelfly_bwd(&l->pat[j], din, mask_view(l, a, a->grads, j), pf_none(), g, in,
                             pf_none(), mask_view(l, a, NULL, j));
            g = din;
        }
        break;
    }
    default:
        be->linear_bwd(dx, grad(a, l->w), grad(a, l->b), dy, x, weight(a, l->w));
    }
}

// dense [fo, fi] of mask j (no low-rank), in double
static double *mask_dense(const pf_linear *l, const pf_layout *lay, const float *host, int j) {
    const pf_pattern *p = &l->pat[j];
    float *Wf = pf_malloc(sizeof(float) * (size_t)p->out * p->in);
    pf_pattern_to_dense(p, host + lay->params[l->S[j]].offset, Wf);
    double *W = pf_malloc(sizeof(double) * (size_t)p->out * p->in);
    for (size_t i = 0; i < (size_t)p->out * p->in; i++) W[i] = Wf[i];
    free(Wf);
    return W;
}

void pf_linear_dense_weight(const pf_linear *l, const pf_layout *lay, const float *host, float *W) {
    size_t n = (size_t)l->out * l->in;
    double *acc = NULL;
    if (l->kind == PF_LAYER_DENSE) {
        memcpy(W, host + lay->params[l->w].offset, sizeof(float) * n);
        return;
    }
    if (l->kind == PF_LAYER_BUTTERFLY) {
        // W = D_{L-1} ... D_0, accumulated from the input side: acc [rows_j, in]
        acc = mask_dense(l, lay, host, 0);
        for (int j = 1; j < l->nmask; j++) {
            const pf_pattern *p = &l->pat[j];
            double *D = mask_dense(l, lay, host, j), *next = pf_calloc(
                (size_t)p->out * l->in, sizeof(double));
            for (int r = 0; r < p->out; r++)
                for (int k = 0; k < p->in; k++) {
                    double d = D[(size_t)r * p->in + k];
                    if (d == 0) continue;
                    for (int c = 0; c < l->in; c++)
                        next[(size_t)r * l->in + c] += d * acc[(size_t)k * l->in + c];
                }
            free(D);
            free(acc);
            acc = next;
        }
    } else {
        acc = l->nmask ? mask_dense(l, lay, host, 0) : pf_calloc(n, sizeof(double));
    }
    if (l->rank) {
        const float *U = host + lay->params[l->U].offset, *V = host + lay->params[l->V].offset;
        for (int i = 0; i < l->out; i++)
            for (int k = 0; k < l->rank; k++) {
                double u = U[(size_t)i * l->rank + k];
                for (int j = 0; j < l->in; j++) acc[(size_t)i * l->in + j] += u * V[(size_t)k * l->in + j];
            }
    }
    for (size_t i = 0; i < n; i++) W[i] = (float)acc[i];
    free(acc);
}

int64_t pf_linear_macs(const pf_linear *l) {
    if (l->kind == PF_LAYER_DENSE) return (int64_t)l->out * l->in;
    int64_t macs = (int64_t)l->rank * (l->out + l->in);
    for (int j = 0; j < l->nmask; j++) macs += pf_pattern_sparse_numel(&l->pat[j]);
    return macs;
}

int64_t pf_linear_params(const pf_linear *l) {
    return pf_linear_macs(l) + (l->b >= 0 ? l->out : 0);  // every weight is used once per row
}

void pf_linear_summary_header(FILE *f) {
    fprintf(f, "  %-22s %-11s %-13s %-30s %7s %12s %14s\n", "layer", "kind", "out x in",
            "pattern", "kept", "params", "fwd FLOP/sample");
}

void pf_linear_describe(const pf_linear *l, char *buf, size_t len) {
    if (l->kind == PF_LAYER_BLOCKSPARSE)
        snprintf(buf, len, "bs=%d blocks=%d rank=%d seed=%lld", l->pat[0].bs, l->pat[0].nf + 1,
                 l->rank, (long long)l->seed);
    else if (l->kind == PF_LAYER_PIXELFLY)
        snprintf(buf, len, "bs=%d nf=%d rank=%d", l->pat[0].bs, l->pat[0].nf, l->rank);
    else if (l->kind == PF_LAYER_BUTTERFLY)
        snprintf(buf, len, "bs=%d, %d factor%s", l->pat[0].bs, l->nmask, l->nmask > 1 ? "s" : "");
    else if (l->kind == PF_LAYER_LOWRANK)
        snprintf(buf, len, "rank=%d", l->rank);
    else
        snprintf(buf, len, "-");
}

void pf_linear_summary_row(const pf_linear *l, int64_t rows_per_sample, FILE *f) {
    char pattern[96];
    pf_linear_describe(l, pattern, sizeof pattern);
    char shape[32];
    snprintf(shape, sizeof shape, "%d x %d", l->out, l->in);
    double kept = (double)pf_linear_macs(l) / ((double)l->out * l->in);
    fprintf(f, "  %-22s %-11s %-13s %-30s %7.4f %12lld %14.4g\n", l->name,
            pf_layer_kind_name(l->kind), shape, pattern, kept, (long long)pf_linear_params(l),
            2.0 * (double)pf_linear_macs(l) * rows_per_sample);
}
