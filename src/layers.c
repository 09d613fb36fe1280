#include "layers.h"

#include <string.h>

#include "common.h"

int pf_linear_declare(pf_linear *l, pf_layout *lay, const char *name, int in, int out,
                      bool bias, pf_layer_spec spec) {
    memset(l, 0, sizeof *l);
    PF_ASSERT(strlen(name) < sizeof l->name);
    strcpy(l->name, name);
    l->in = in;
    l->out = out;
    l->pixelfly = spec.pixelfly;
    l->w = l->b = l->S = l->U = l->V = -1;
    char pname[PF_PARAM_NAME_MAX];
    if (spec.pixelfly) {
        if (pf_pattern_init(&l->pat, out, in, spec.bs, spec.nf, spec.rank, bias) < 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "layer %s (%d -> %d): %s", name, in, out, pf_errmsg());
            pf_error("%s", msg);
            return -1;
        }
        const pf_pattern *p = &l->pat;
        snprintf(pname, sizeof pname, "%s.S", name);
        l->S = pf_layout_add(lay, pname, 4, (int64_t[]){p->bs, p->nf + 1, p->ob, p->ib}, false);
        if (p->rank > 0) {
            snprintf(pname, sizeof pname, "%s.U", name);
            l->U = pf_layout_add(lay, pname, 2, (int64_t[]){out, p->rank}, false);
            snprintf(pname, sizeof pname, "%s.V", name);
            l->V = pf_layout_add(lay, pname, 2, (int64_t[]){p->rank, in}, false);
        }
    } else {
        snprintf(pname, sizeof pname, "%s.w", name);
        l->w = pf_layout_add(lay, pname, 2, (int64_t[]){out, in}, false);
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
    float *b = host_param(lay, host, l->b);
    if (b) memset(b, 0, sizeof(float) * l->out);
    if (l->pixelfly) {
        pf_pattern_init_weights(&l->pat, std, rng, host_param(lay, host, l->S),
                                host_param(lay, host, l->U), host_param(lay, host, l->V), b);
        return;
    }
    float *w = host_param(lay, host, l->w);
    for (int64_t i = 0; i < (int64_t)l->out * l->in; i++) w[i] = std * pf_rng_normal(rng);
}

int pf_linear_rank(const pf_linear *l) { return l->pixelfly ? l->pat.rank : 0; }

// The layer's gradients (fp32) or, with base NULL, the weights ops compute with.
static pf_pixelfly_w pixelfly_view(const pf_linear *l, const pf_arena *a, const float *base) {
    int idx[4] = {l->S, l->U, l->V, l->b};
    pf_tensor t[4];
    for (int i = 0; i < 4; i++)
        t[i] = base ? pf_arena_view(a, base, idx[i]) : pf_arena_weight(a, idx[i]);
    return (pf_pixelfly_w){.S = t[0], .U = t[1], .V = t[2], .b = t[3]};
}

pf_pixelfly_w pf_linear_pixelfly_w(const pf_linear *l, const pf_arena *a, bool grads) {
    PF_ASSERT(l->pixelfly);
    return pixelfly_view(l, a, grads ? a->grads : NULL);
}

void pf_linear_forward(const pf_linear *l, const pf_arena *a, pf_tensor y, pf_tensor xv,
                       pf_tensor x) {
    const pf_backend *be = a->be;
    if (l->pixelfly)
        be->pixelfly_fwd(&l->pat, y, xv, x, pixelfly_view(l, a, NULL));
    else
        be->linear_fwd(y, x, pf_arena_weight(a, l->w), pf_arena_weight(a, l->b));
}

void pf_linear_backward(const pf_linear *l, const pf_arena *a, pf_tensor dx, pf_tensor dy,
                        pf_tensor x, pf_tensor xv, pf_tensor dxv) {
    const pf_backend *be = a->be;
    if (l->pixelfly) {
        be->pixelfly_bwd(&l->pat, dx, pixelfly_view(l, a, a->grads), dxv, dy, x, xv,
                         pixelfly_view(l, a, NULL));
        return;
    }
    be->linear_bwd(dx, pf_arena_view(a, a->grads, l->w), pf_arena_view(a, a->grads, l->b), dy, x,
                   pf_arena_weight(a, l->w));
}

int64_t pf_linear_params(const pf_linear *l) {
    int64_t bias = l->b >= 0 ? l->out : 0;
    if (l->pixelfly) return pf_pattern_numel(&l->pat) - (l->pat.bias ? l->out : 0) + bias;
    return (int64_t)l->out * l->in + bias;
}

int64_t pf_linear_macs(const pf_linear *l) {
    return l->pixelfly ? pf_pattern_macs_per_token(&l->pat) : (int64_t)l->out * l->in;
}

void pf_linear_summary_row(const pf_linear *l, int64_t rows_per_sample, FILE *f) {
    char pattern[64] = "dense";
    double density = 1.0;
    if (l->pixelfly) {
        snprintf(pattern, sizeof pattern, "bs=%d nf=%d r=%d", l->pat.bs, l->pat.nf, l->pat.rank);
        density = pf_pattern_density(&l->pat);
    }
    fprintf(f, "  %-22s %-9s %5d x %-5d %-18s %7.4f %12lld %14.4g\n", l->name,
            l->pixelfly ? "pixelfly" : "dense", l->out, l->in, pattern, density,
            (long long)pf_linear_params(l), 2.0 * (double)pf_linear_macs(l) * rows_per_sample);
}
