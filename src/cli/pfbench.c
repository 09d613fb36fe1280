// pfbench: speed of Pixelfly against dense, side by side in one run, on one backend.
//
//   pfbench kernels [--tokens N] [--shapes 768x3072,3072x768] [--bs 16] [--nf 2,3]
//                   [--rank 0,32] [--repeat K] [--backend cpu|cuda]
//       per layer shape (in x out): dense linear forward and backward (dX + dW + db) against
//       the Pixelfly layer (forward; backward dX + dS + dU + dV + db), median times,
//       GFLOP/s of the nonzero work, speed-up and efficiency = dense time x density / time.
//   pfbench step CONFIG... [--steps K] [--set section.key=value]... [--backend cpu|cuda]
//       median time of a whole training step (forward, backward, AdamW) of each config's
//       model on synthetic data, and tokens/s or images/s, relative to the first config of
//       the same model family (list the dense twin first).
//
// Medians over --repeat (--steps) timed runs after one (two) warm-up runs; the machine and
// the thread count are printed so a figure can be quoted with them.
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "train.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Comma-separated integers into out[max]; returns the count, -1 on a malformed list.
static int parse_ints(const char *s, int *out, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',')) return -1;
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
}

// A device buffer of n floats filled with uniform values in [-1, 1).
static float *random_buffer(const pf_backend *be, int64_t n, pf_rng *rng) {
    float *host = pf_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) host[i] = 2.0f * pf_rng_uniform(rng) - 1.0f;
    float *dev = be->alloc(sizeof(float) * (size_t)n);
    be->upload(dev, host, sizeof(float) * (size_t)n);
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

typedef struct {
    const pf_backend *be;
    pf_pattern pat;
    pf_tensor x, y, dy, dx, w, b, dw, db, xv, dxv;
    pf_pixelfly_w pw, pg;
} layer_bench;

static void dense_fwd(void *c) {
    layer_bench *l = c;
    l->be->linear_fwd(l->y, l->x, l->w, l->b);
}
static void dense_bwd(void *c) {
    layer_bench *l = c;
    l->be->linear_bwd(l->dx, l->dw, l->db, l->dy, l->x, l->w);
}
static void sparse_fwd(void *c) {
    layer_bench *l = c;
    l->be->pixelfly_fwd(&l->pat, l->y, l->xv, l->x, l->pw);
}
static void sparse_bwd(void *c) {
    layer_bench *l = c;
    l->be->pixelfly_bwd(&l->pat, l->dx, l->pg, l->dxv, l->dy, l->x, l->xv, l->pw);
}

static pf_tensor dev2(const pf_backend *be, float *d, int64_t a, int64_t b) {
    return pf_tensor_2d(d, PF_F32, be->device, a, b);
}

// Allocates every buffer of a dense and a Pixelfly layer of the pattern's shape.
static void layer_bench_init(layer_bench *l, const pf_backend *be, const pf_pattern *p, int N,
                             pf_rng *rng) {
    int in = p->in, out = p->out, r = p->rank;
    memset(l, 0, sizeof *l);
    l->be = be;
    l->pat = *p;
    l->x = dev2(be, random_buffer(be, (int64_t)N * in, rng), N, in);
    l->dy = dev2(be, random_buffer(be, (int64_t)N * out, rng), N, out);
    l->y = dev2(be, random_buffer(be, (int64_t)N * out, rng), N, out);
    l->dx = dev2(be, random_buffer(be, (int64_t)N * in, rng), N, in);
    l->w = dev2(be, random_buffer(be, (int64_t)out * in, rng), out, in);
    l->dw = dev2(be, random_buffer(be, (int64_t)out * in, rng), out, in);
    l->b = pf_tensor_1d(random_buffer(be, out, rng), PF_F32, be->device, out);
    l->db = pf_tensor_1d(random_buffer(be, out, rng), PF_F32, be->device, out);
    int64_t sn = pf_pattern_sparse_numel(p);
    pf_tensor S = pf_tensor_4d(random_buffer(be, sn, rng), PF_F32, be->device, p->bs, p->nf + 1,
                               p->ob, p->ib);
    pf_tensor dS = S;
    dS.data = random_buffer(be, sn, rng);
    l->pw = (pf_pixelfly_w){.S = S, .b = l->b};
    l->pg = (pf_pixelfly_w){.S = dS, .b = l->db};
    if (r > 0) {
        l->pw.U = dev2(be, random_buffer(be, (int64_t)out * r, rng), out, r);
        l->pw.V = dev2(be, random_buffer(be, (int64_t)r * in, rng), r, in);
        l->pg.U = dev2(be, random_buffer(be, (int64_t)out * r, rng), out, r);
        l->pg.V = dev2(be, random_buffer(be, (int64_t)r * in, rng), r, in);
        l->xv = dev2(be, random_buffer(be, (int64_t)N * r, rng), N, r);
        l->dxv = dev2(be, random_buffer(be, (int64_t)N * r, rng), N, r);
    }
}

static void layer_bench_free(layer_bench *l) {
    pf_tensor ts[] = {l->x, l->y, l->dy, l->dx, l->w, l->dw, l->b, l->db, l->xv, l->dxv,
                      l->pw.S, l->pg.S, l->pw.U, l->pw.V, l->pg.U, l->pg.V};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i].data) l->be->free(ts[i].data);
}

typedef struct {
    int tokens, repeat;
    int shapes[16][2], nshapes;
    int bs, nf[4], nnf, rank[4], nrank;
} kernel_opts;

static int cmd_kernels(const pf_backend *be, const kernel_opts *o) {
    for (int s = 0; s < o->nshapes; s++)  // every pattern valid before any timing
        for (int f = 0; f < o->nnf; f++)
            for (int r = 0; r < o->nrank; r++) {
                pf_pattern p;
                if (pf_pattern_init(&p, o->shapes[s][1], o->shapes[s][0], o->bs, o->nf[f],
                                    o->rank[r], true) < 0) {
                    fprintf(stderr, "pfbench: %dx%d: %s\n", o->shapes[s][0], o->shapes[s][1],
                            pf_errmsg());
                    return PF_EXIT_USAGE;
                }
            }
    print_machine(be);
    printf("tokens %d, median of %d runs; fwd = forward, bwd = dX + dW (dS, dU, dV) + db;\n"
           "GFLOP/s counts nonzero work; eff = dense time x density / Pixelfly time\n\n",
           o->tokens, o->repeat);
    printf("%-11s %-16s %-4s %10s %10s %8s %8s %7s %6s\n", "in x out", "pattern", "pass",
           "dense ms", "pixfly ms", "dense GF", "pixf GF", "speedup", "eff");
    pf_rng rng;
    pf_rng_seed(&rng, 1);
    for (int s = 0; s < o->nshapes; s++)
        for (int f = 0; f < o->nnf; f++)
            for (int r = 0; r < o->nrank; r++) {
                int in = o->shapes[s][0], out = o->shapes[s][1];
                pf_pattern p;
                PF_ASSERT(pf_pattern_init(&p, out, in, o->bs, o->nf[f], o->rank[r], true) == 0);
                layer_bench l;
                layer_bench_init(&l, be, &p, o->tokens, &rng);
                double dense_macs = (double)o->tokens * in * out;
                double sparse_macs = (double)o->tokens * pf_pattern_macs_per_token(&p);
                struct { const char *name; bench_fn dense, sparse; double mult; } passes[] = {
                    {"fwd", dense_fwd, sparse_fwd, 2.0}, {"bwd", dense_bwd, sparse_bwd, 4.0}};
                for (int k = 0; k < 2; k++) {
                    double td = time_median_ms(be, passes[k].dense, &l, o->repeat);
                    double ts = time_median_ms(be, passes[k].sparse, &l, o->repeat);
                    char shape[32], pat[32];
                    snprintf(shape, sizeof shape, "%dx%d", in, out);
                    snprintf(pat, sizeof pat, "bs=%d nf=%d r=%d", p.bs, p.nf, p.rank);
                    printf("%-11s %-16s %-4s %10.3f %10.3f %8.1f %8.1f %6.2fx %5.0f%%\n", shape,
                           pat, passes[k].name, td, ts, passes[k].mult * dense_macs / td / 1e6,
                           passes[k].mult * sparse_macs / ts / 1e6, td / ts,
                           100.0 * td * pf_pattern_density(&p) / ts);
                }
                layer_bench_free(&l);
            }
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
    for (int i = 0; i < lay->count; i++) {
        pf_adamw_args args = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                              .weight_decay = 0.1f, .step = s->step, .grad_scale = clip};
        be->adamw(pf_arena_view(a, a->params, i), pf_arena_view(a, a->grads, i),
                  pf_arena_view(a, a->m, i), pf_arena_view(a, a->v, i), &args);
    }
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
    printf("median of %d training steps (forward, backward, clip, AdamW) after 1 warm-up, "
           "synthetic data\n\n", steps);
    printf("%-34s %6s %12s %10s %14s %9s\n", "config", "batch", "params", "step ms", "throughput",
           "vs first");
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
        char tput[32];
        snprintf(tput, sizeof tput, "%.0f %s/s", rate,
                 c.model == PF_MODEL_GPT2 ? "tok" : "img");
        printf("%-34s %6d %12lld %10.2f %14s %8.2fx\n", configs[i], c.batch_size,
               (long long)pf_layout_param_count(pf_model_layout(s.model)), ms, tput,
               rate / first[c.model]);
        free(owned[0]);
        free(owned[1]);
        pf_model_free(s.model);
    }
    return PF_EXIT_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfbench kernels [--tokens N] [--shapes INxOUT,...] [--bs B] [--nf F,...]\n"
            "                       [--rank R,...] [--repeat K] [--backend cpu|cuda]\n"
            "       pfbench step CONFIG... [--steps K] [--set section.key=value]...\n"
            "                       [--backend cpu|cuda]\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PF_EXIT_USAGE : PF_EXIT_OK;
    }
    int backend = PF_BACKEND_CPU;
    kernel_opts ko = {.tokens = 2048, .repeat = 5, .shapes = {{768, 3072}, {3072, 768}},
                      .nshapes = 2, .bs = 16, .nf = {2, 3}, .nnf = 2, .rank = {0, 32},
                      .nrank = 2};
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
        int bad = 0;
        if (!strcmp(a, "--backend") && v) {
            backend = !strcmp(v, "cuda") ? PF_BACKEND_CUDA : PF_BACKEND_CPU;
            bad = strcmp(v, "cuda") && strcmp(v, "cpu");
            i++;
        } else if (kernels && !strcmp(a, "--tokens") && v) {
            bad = parse_ints(v, &ko.tokens, 1) != 1, i++;
        } else if (kernels && !strcmp(a, "--repeat") && v) {
            bad = parse_ints(v, &ko.repeat, 1) != 1, i++;
        } else if (kernels && !strcmp(a, "--bs") && v) {
            bad = parse_ints(v, &ko.bs, 1) != 1, i++;
        } else if (kernels && !strcmp(a, "--nf") && v) {
            bad = (ko.nnf = parse_ints(v, ko.nf, 4)) < 1, i++;
        } else if (kernels && !strcmp(a, "--rank") && v) {
            bad = (ko.nrank = parse_ints(v, ko.rank, 4)) < 1, i++;
        } else if (kernels && !strcmp(a, "--shapes") && v) {
            ko.nshapes = 0;
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *sv, *t = strtok_r(buf, ",", &sv); t && ko.nshapes < 16;
                 t = strtok_r(NULL, ",", &sv))
                bad |= sscanf(t, "%dx%d", &ko.shapes[ko.nshapes][0],
                              &ko.shapes[ko.nshapes][1]) != 2,
                    ko.nshapes++;
            i++;
        } else if (!kernels && !strcmp(a, "--steps") && v) {
            bad = parse_ints(v, &steps, 1) != 1, i++;
        } else if (!kernels && !strcmp(a, "--set") && v && nsets < 64) {
            sets[nsets++] = argv[++i];
        } else if (!kernels && a[0] != '-' && nconfigs < 32) {
            configs[nconfigs++] = argv[i];
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "pfbench: bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return PF_EXIT_USAGE;
        }
    }
    if (ko.repeat < 1 || steps < 1 || ko.tokens < 1) {
        fprintf(stderr, "pfbench: --repeat, --steps and --tokens must be >= 1\n");
        return PF_EXIT_USAGE;
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
