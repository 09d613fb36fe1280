// test_models.c: whole models on the CPU backend. A finite-difference gradient check through
// tiny GPT-2 (Pixelfly and dense), ViT and MLP-Mixer (covering embeddings, patch embedding,
// class token, attention, token mixing, pooling, the classifier and the losses, including a
// mixup/cutmix batch with two label sets, and dropout with fixed masks); dropout acting only
// on armed forwards, with masks that follow the samples; parameter counts and FLOPs of
// Pixelfly layers against their dense twins; and the errors for a Pixelfly pattern that does
// not fit a layer and for a head dim the backend's attention does not run.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "op_shapes.h"
#include "pattern.h"
#include "rng.h"

// A config from the defaults plus `sets` (NULL-terminated "section.key=value" list).
static void make_config(pf_config *c, const char *const *sets) {
    pf_config_defaults(c);
    ck_assert_int_eq(pf_config_set(c, "data.train=unused.h5"), 0);
    for (const char *const *s = sets; *s; s++)
        ck_assert_msg(pf_config_set(c, *s) == 0, "%s", pf_errmsg());
    ck_assert_msg(pf_config_validate(c) == 0, "%s", pf_errmsg());
}

static pf_model *create(const char *const *sets, int B) {
    pf_config c;
    make_config(&c, sets);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, B);
    ck_assert_msg(m != NULL, "%s", pf_errmsg());
    return m;
}

// ---- gradient check --------------------------------------------------------------------

enum { GC_B = 2, GC_SAMPLES = 30 };

#define GPT2_TINY                                                                         \
    "model.type=gpt2", "model.n_layer=1", "model.n_embd=8", "model.n_head=2",             \
        "model.seq_len=4", "model.vocab_size=50", "model.init_std=0.3"
#define VISION_TINY                                                                       \
    "model.n_layer=1", "model.n_embd=8", "model.n_head=2", "model.mlp_ratio=2",           \
        "model.image_size=4", "model.patch_size=2", "model.num_classes=5",               \
        "model.token_mlp_dim=4", "model.channel_mlp_dim=16", "model.init_std=0.3",        \
        "train.label_smoothing=0.1"
#define PIXELFLY_BLOCK                                                                    \
    "pixelfly.attn_qkv=bs=2 nf=1 rank=2", "pixelfly.attn_proj=bs=2 nf=1 rank=2",          \
        "pixelfly.mlp_fc1=bs=2 nf=1 rank=2", "pixelfly.mlp_fc2=bs=2 nf=1 rank=2"

typedef struct {
    const char *name;
    const char *const *sets;
    float lam;  // > 0: a mixed (mixup/cutmix) vision batch with labels_b and this lam
    float eps;  // finite-difference step; 0: 1e-2
} gc_case;

static const gc_case GC_CASES[] = {
    {"gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL}, 0, 0},
    {"gpt2-dense", (const char *const[]){GPT2_TINY, NULL}, 0, 0},
    {"gpt2-recompute-mlp",
     (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "pixelfly.recompute_mlp=true", NULL}, 0, 0},
    {"vit-pixelfly", (const char *const[]){"model.type=vit", VISION_TINY, "model.channels=3",
                                           PIXELFLY_BLOCK, NULL}, 0, 0},
    {"mixer-pixelfly",
     (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                           "pixelfly.mlp_fc1=bs=2 nf=1 rank=2", "pixelfly.mlp_fc2=bs=2 nf=1",
                           "pixelfly.token_fc1=bs=2 nf=1 rank=1",
                           "pixelfly.token_fc2=bs=2 nf=1 rank=2", NULL}, 0, 0},
    {"mixer-dense", (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=3",
                                          NULL}, 0, 0},
    {"mixer-recompute-mlp",  // token and channel MLPs both through the pixelfly_mlp op
     (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                           "pixelfly.mlp_fc1=bs=2 nf=1 rank=2", "pixelfly.mlp_fc2=bs=2 nf=1",
                           "pixelfly.token_fc1=bs=2 nf=1 rank=1",
                           "pixelfly.token_fc2=bs=2 nf=1 rank=2", "pixelfly.recompute_mlp=true",
                           NULL}, 0, 0},
    {"vit-mixed", (const char *const[]){"model.type=vit", VISION_TINY, "model.channels=1", NULL},
     0.3f, 0},
    // the other layer kinds (layers.h): butterfly with two factors, rectangular last (qkv,
    // fc1) and first (fc2); low-rank alone; random block masks with and without U V
    {"gpt2-butterfly",
     (const char *const[]){GPT2_TINY, "pixelfly.attn_qkv=butterfly bs=4",
                           "pixelfly.attn_proj=butterfly bs=2", "pixelfly.mlp_fc1=butterfly bs=4",
                           "pixelfly.mlp_fc2=butterfly bs=4", NULL}, 0, 0},
    {"gpt2-lowrank",
     (const char *const[]){GPT2_TINY, "pixelfly.attn_qkv=lowrank rank=3",
                           "pixelfly.attn_proj=lowrank rank=2", "pixelfly.mlp_fc1=lowrank rank=4",
                           "pixelfly.mlp_fc2=lowrank rank=2", NULL},
     0, 2e-3f},  // U V products of jittered weights are strongly curved: O(eps^2) error
    {"gpt2-blocksparse",
     (const char *const[]){GPT2_TINY, "pixelfly.attn_qkv=blocksparse bs=4 blocks=2 rank=1",
                           "pixelfly.attn_proj=blocksparse bs=4 blocks=1",
                           "pixelfly.mlp_fc1=blocksparse bs=4 blocks=3 seed=9",
                           "pixelfly.mlp_fc2=blocksparse bs=8 blocks=2 rank=2", NULL}, 0, 0},
    {"mixer-kinds",
     (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                           "pixelfly.mlp_fc1=butterfly bs=4", "pixelfly.mlp_fc2=lowrank rank=2",
                           "pixelfly.token_fc1=butterfly bs=2",
                           "pixelfly.token_fc2=blocksparse bs=2 blocks=1 rank=1", NULL}, 0, 0},
    // dropout: every forward of a case is armed alike (micro-batch 3, first sample 5), so the
    // masks are fixed and the loss is differentiable; recompute_mlp through the op too
    {"gpt2-dropout",
     (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "train.dropout=0.3", NULL}, 0, 0},
    {"vit-dropout", (const char *const[]){"model.type=vit", VISION_TINY, "model.channels=1",
                                          "train.dropout=0.2", NULL}, 0, 0},
    {"mixer-dropout",
     (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                           "pixelfly.mlp_fc1=bs=2 nf=1 rank=2", "pixelfly.mlp_fc2=bs=2 nf=1",
                           "pixelfly.recompute_mlp=true", "train.dropout=0.25", NULL}, 0, 0},
    {"mixer-recompute-blocksparse",  // random masks through the pixelfly_mlp op
     (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                           "pixelfly.mlp_fc1=blocksparse bs=4 blocks=2",
                           "pixelfly.mlp_fc2=blocksparse bs=4 blocks=3 rank=1",
                           "pixelfly.token_fc1=blocksparse bs=2 blocks=1 rank=1",
                           "pixelfly.token_fc2=blocksparse bs=2 blocks=2",
                           "pixelfly.recompute_mlp=true", NULL}, 0, 0},
};
#define N_GC_CASES (int)(sizeof GC_CASES / sizeof GC_CASES[0])

// Random inputs for B samples: GPT-2 tokens/targets [B, T] (one target ignored), or images
// [B, H, W, C] ~ N(0, 1) and labels [B]; with lam > 0 also labels_b [B], each different from
// its labels entry.
typedef struct {
    int32_t tokens[GC_B * 64], targets[GC_B * 64], labels[GC_B], labels_b[GC_B];
    float images[GC_B * 64 * 3];
    pf_batch batch;
} gc_data;

static void make_batch(gc_data *d, const pf_config *c, float lam, pf_rng *rng) {
    if (c->model == PF_MODEL_GPT2) {
        int n = GC_B * c->seq_len;
        ck_assert_int_le(n, 64);
        for (int i = 0; i < n; i++) {
            d->tokens[i] = (int32_t)pf_rng_below(rng, (uint32_t)c->vocab_size);
            d->targets[i] = (int32_t)pf_rng_below(rng, (uint32_t)c->vocab_size);
        }
        d->targets[1] = -1;
        d->batch = (pf_batch){.tokens = d->tokens, .targets = d->targets};
    } else {
        int n = GC_B * c->image_size * c->image_size * c->channels;
        ck_assert_int_le(n, GC_B * 64 * 3);
        for (int i = 0; i < n; i++) d->images[i] = pf_rng_normal(rng);
        for (int b = 0; b < GC_B; b++)
            d->labels[b] = (int32_t)pf_rng_below(rng, (uint32_t)c->num_classes);
        d->batch = (pf_batch){.images = d->images, .labels = d->labels};
        if (lam > 0) {
            uint32_t K = (uint32_t)c->num_classes;
            for (int b = 0; b < GC_B; b++)
                d->labels_b[b] = (int32_t)((d->labels[b] + 1 + pf_rng_below(rng, K - 1)) % K);
            d->batch.labels_b = d->labels_b;
            d->batch.lam = lam;
        }
    }
}

// A training forward with the dropout masks of micro-batch 3, first sample 5 (no effect at
// train.dropout = 0).
static float forward_armed(pf_model *m, const pf_batch *batch) {
    pf_model_arm_dropout(m, 3, 5);
    return pf_model_forward(m, batch, NULL);
}

static float loss_at(pf_model *m, const pf_batch *batch, float *param, float value) {
    pf_backend_cpu.upload(param, &value, sizeof value);
    return forward_armed(m, batch);
}

// Central differences of the mean loss against the analytic gradient for GC_SAMPLES random
// entries of every parameter tensor. Error of a tensor: max |analytic - numeric| over its
// sample, relative to the largest |analytic| of the sample (floored, so tensors whose
// gradient is ~0 compare absolutely).
START_TEST(test_gradient_check) {
    const gc_case *tc = &GC_CASES[_i];
    pf_config c;
    make_config(&c, tc->sets);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, GC_B);
    ck_assert_msg(m != NULL, "%s: %s", tc->name, pf_errmsg());
    pf_model_init_params(m, 42);
    pf_arena *a = pf_model_arena(m);
    const pf_layout *lay = pf_model_layout(m);
    size_t bytes = sizeof(float) * (size_t)lay->numel;

    // Jitter every parameter so that biases, norms and embeddings are not at their special
    // initial values (zero biases, unit gains) that would hide errors.
    pf_rng rng;
    pf_rng_seed(&rng, 7);
    float *p = pf_malloc(bytes), *g = pf_malloc(bytes);
    pf_backend_cpu.download(p, a->params, bytes);
    for (int i = 0; i < lay->count; i++) {
        const pf_param_info *pi = &lay->params[i];
        for (int64_t j = 0; j < pf_param_numel(pi); j++)
            p[pi->offset + j] += 0.1f * pf_rng_normal(&rng);
    }
    pf_backend_cpu.upload(a->params, p, bytes);

    gc_data d;
    make_batch(&d, &c, tc->lam, &rng);
    pf_backend_cpu.zero(a->grads, bytes);
    float loss = forward_armed(m, &d.batch);
    ck_assert(isfinite(loss));
    pf_model_backward(m, 1.0f, NULL, NULL);
    pf_backend_cpu.download(g, a->grads, bytes);

    const float eps = tc->eps > 0 ? tc->eps : 1e-2f, tol = 2e-2f;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < lay->count; i++) {
        const pf_param_info *pi = &lay->params[i];
        int64_t n = pf_param_numel(pi);
        double max_err = 0, max_g = 1e-3;
        for (int s = 0; s < GC_SAMPLES && s < n; s++) {
            int64_t j = n <= GC_SAMPLES ? s : (int64_t)pf_rng_below(&rng, (uint32_t)n);
            float *param = a->params + pi->offset + j;
            float v = p[pi->offset + j];
            float up = loss_at(m, &d.batch, param, v + eps);
            float down = loss_at(m, &d.batch, param, v - eps);
            pf_backend_cpu.upload(param, &v, sizeof v);
            double num = ((double)up - down) / (2.0 * eps), ana = g[pi->offset + j];
            max_err = fmax(max_err, fabs(num - ana));
            max_g = fmax(max_g, fabs(ana));
        }
        double rel = max_err / max_g;
        if (rel > worst) worst = rel, worst_name = pi->name;
        ck_assert_msg(rel < tol, "%s: %s: max |analytic - numeric| = %.3g, %.3g relative",
                      tc->name, pi->name, max_err, rel);
    }
    printf("gradient check %-15s loss %.4f, %2d tensors, worst %.2e (%s)\n", tc->name, loss,
           lay->count, worst, worst_name);
    free(p);
    free(g);
    pf_model_free(m);
}
END_TEST

// Gradients accumulate: a second backward with scale 0.5 adds half of the first.
START_TEST(test_backward_accumulates) {
    pf_model *m = create((const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL}, GC_B);
    pf_model_init_params(m, 3);
    pf_arena *a = pf_model_arena(m);
    int64_t n = pf_model_layout(m)->numel;
    size_t bytes = sizeof(float) * (size_t)n;
    float *g1 = pf_malloc(bytes), *g2 = pf_malloc(bytes);
    pf_rng rng;
    pf_rng_seed(&rng, 5);
    pf_config c;
    make_config(&c, (const char *const[]){GPT2_TINY, NULL});
    gc_data d;
    make_batch(&d, &c, 0, &rng);
    pf_backend_cpu.zero(a->grads, bytes);
    pf_model_forward(m, &d.batch, NULL);
    pf_model_backward(m, 1.0f, NULL, NULL);
    pf_backend_cpu.download(g1, a->grads, bytes);
    pf_model_forward(m, &d.batch, NULL);
    pf_model_backward(m, 0.5f, NULL, NULL);
    pf_backend_cpu.download(g2, a->grads, bytes);
    double norm = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(fabsf(g2[i] - 1.5f * g1[i]) <= 1e-5f * (1 + fabsf(g1[i])), "at %lld",
                      (long long)i);
        norm += (double)g1[i] * g1[i];
    }
    ck_assert(norm > 0);
    free(g1);
    free(g2);
    pf_model_free(m);
}
END_TEST

// A mixed batch's training loss is lam * CE(labels) + (1 - lam) * CE(labels_b), each with the
// label smoothing; evaluation (stats) ignores labels_b and lam.
START_TEST(test_mixed_loss) {
    pf_config c;
    make_config(&c, (const char *const[]){"model.type=mixer", VISION_TINY, NULL});
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, GC_B);
    ck_assert_msg(m != NULL, "%s", pf_errmsg());
    pf_model_init_params(m, 11);
    pf_rng rng;
    pf_rng_seed(&rng, 13);
    gc_data d;
    make_batch(&d, &c, 0.3f, &rng);
    pf_batch plain_a = {.images = d.images, .labels = d.labels};
    pf_batch plain_b = {.images = d.images, .labels = d.labels_b};
    float mixed = pf_model_forward(m, &d.batch, NULL);
    float la = pf_model_forward(m, &plain_a, NULL), lb = pf_model_forward(m, &plain_b, NULL);
    ck_assert_float_eq_tol(mixed, 0.3f * la + 0.7f * lb, 1e-5f);
    ck_assert_float_ne(la, lb);
    pf_eval_stats s1 = {0}, s2 = {0};
    float e1 = pf_model_forward(m, &d.batch, &s1), e2 = pf_model_forward(m, &plain_a, &s2);
    ck_assert_float_eq(e1, e2);
    ck_assert(s1.loss_sum == s2.loss_sum && s1.correct1 == s2.correct1);
    pf_model_free(m);
}
END_TEST

// ---- input staging (pf_model_stage) --------------------------------------------------------

// Training as pftrain does it (each micro-batch staged while the previous backward runs, an
// evaluation batch computed in between while a training batch waits staged) gives the bits of
// plain forward(batch) calls: the same losses, evaluation sums and parameters after 4 steps.
static void staged_same(const char *name, const char *const *sets, float lam) {
    enum { STEPS = 4 };
    pf_config c;
    make_config(&c, sets);
    pf_rng rng;
    pf_rng_seed(&rng, 31);
    gc_data d[STEPS], ev;
    for (int k = 0; k < STEPS; k++) make_batch(&d[k], &c, k % 2 ? lam : 0, &rng);
    make_batch(&ev, &c, 0, &rng);
    pf_model *m[2] = {create(sets, GC_B), create(sets, GC_B)};
    float loss[2][STEPS];
    pf_eval_stats st[2];
    memset(st, 0, sizeof st);
    for (int v = 0; v < 2; v++) {  // v = 0: forward(batch); v = 1: staged
        pf_model_init_params(m[v], 5);
        pf_arena *a = pf_model_arena(m[v]);
        if (v) pf_model_stage(m[v], &d[0].batch);
        for (int k = 0; k < STEPS; k++) {
            pf_backend_cpu.zero(a->grads, sizeof(float) * (size_t)a->layout->numel);
            loss[v][k] = pf_model_forward(m[v], v ? NULL : &d[k].batch, NULL);
            pf_model_backward(m[v], 1.0f, NULL, NULL);
            if (v && k + 1 < STEPS) pf_model_stage(m[v], &d[k + 1].batch);
            if (k == 1) pf_model_forward(m[v], &ev.batch, &st[v]);
            pf_model_adamw_step(m[v], 1e-2f, k + 1, 1.0f);
        }
    }
    for (int k = 0; k < STEPS; k++)
        ck_assert_msg(loss[0][k] == loss[1][k], "%s step %d: loss %.9g plain, %.9g staged", name,
                      k + 1, loss[0][k], loss[1][k]);
    ck_assert_msg(st[0].loss_sum == st[1].loss_sum && st[0].count == st[1].count &&
                      st[0].correct1 == st[1].correct1,
                  "%s: evaluation differs", name);
    const pf_arena *a0 = pf_model_arena(m[0]), *a1 = pf_model_arena(m[1]);
    ck_assert_msg(!memcmp(a0->params, a1->params, sizeof(float) * (size_t)a0->layout->numel),
                  "%s: parameters differ after %d steps", name, STEPS);
    for (int v = 0; v < 2; v++) pf_model_free(m[v]);
}

START_TEST(test_staged_same_as_plain) {
    staged_same("gpt2", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL}, 0);
    staged_same("vit-mixed", (const char *const[]){"model.type=vit", VISION_TINY,
                                                   "model.channels=1", NULL}, 0.3f);
}
END_TEST

// ---- dropout -------------------------------------------------------------------------------

// Sample k of a gc_data batch as a batch of one.
static pf_batch sample_of(const gc_data *d, const pf_config *c, int k) {
    pf_batch b = {0};
    if (c->model == PF_MODEL_GPT2) {
        b.tokens = d->tokens + k * c->seq_len;
        b.targets = d->targets + k * c->seq_len;
    } else {
        b.images = d->images + k * c->image_size * c->image_size * c->channels;
        b.labels = d->labels + k;
    }
    return b;
}

// train.dropout acts only on an armed forward: unarmed, the model computes what the same
// model without dropout does, bit for bit; armed alike, twice the same loss; another
// micro-batch number, another one. And the masks follow the samples, not the split: the
// loss sum of a micro-batch of 2 armed at first sample 0 is the sum of the two samples run
// as micro-batches of 1 armed at first samples 0 and 1 (two ranks).
static void dropout_modes(const char *name, const char *const *sets) {
    const char *with[16] = {0};  // sets + train.dropout=0.3
    int n = 0;
    for (; sets[n]; n++) with[n] = sets[n];
    ck_assert(n < 15);
    with[n] = "train.dropout=0.3";
    const char *const *drop_sets = (const char *const *)with;
    pf_config c;
    make_config(&c, drop_sets);
    pf_model *plain = create(sets, GC_B), *m = create(drop_sets, GC_B), *one = create(drop_sets, 1);
    pf_model_init_params(plain, 11);
    pf_model_init_params(m, 11);
    pf_model_init_params(one, 11);
    pf_rng rng;
    pf_rng_seed(&rng, 13);
    gc_data d;
    make_batch(&d, &c, 0, &rng);
    // every forward with stats: vision's loss then has no label smoothing, as in evaluation,
    // so that the sample-by-sample sum below compares like with like
    pf_eval_stats st = {0}, unused = {0};
    float base = pf_model_forward(plain, &d.batch, &unused);
    ck_assert_msg(pf_model_forward(m, &d.batch, &unused) == base, "%s: unarmed differs", name);
    pf_model_arm_dropout(m, 4, 0);
    float a = pf_model_forward(m, &d.batch, &st);
    pf_model_arm_dropout(m, 4, 0);
    float a2 = pf_model_forward(m, &d.batch, &unused);
    pf_model_arm_dropout(m, 5, 0);
    float b = pf_model_forward(m, &d.batch, &unused);
    ck_assert_msg(a != base && a == a2 && b != a, "%s: plain %.7g, armed %.7g %.7g, micro 5 %.7g",
                  name, base, a, a2, b);
    ck_assert_msg(pf_model_forward(m, &d.batch, &unused) == base, "%s: arming outlived a forward",
                  name);
    double sum = 0;
    for (int k = 0; k < GC_B; k++) {
        pf_eval_stats sk = {0};
        pf_batch bk = sample_of(&d, &c, k);
        pf_model_arm_dropout(one, 4, k);
        pf_model_forward(one, &bk, &sk);
        sum += sk.loss_sum;
    }
    ck_assert_msg(fabs(sum - st.loss_sum) <= 1e-5 * fabs(st.loss_sum),
                  "%s: loss sum %.9g as one micro-batch, %.9g sample by sample", name,
                  st.loss_sum, sum);
    pf_model_free(plain);
    pf_model_free(m);
    pf_model_free(one);
}

START_TEST(test_dropout_modes) {
    dropout_modes("gpt2", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    dropout_modes("vit", (const char *const[]){"model.type=vit", VISION_TINY, "model.channels=1",
                                               NULL});
    dropout_modes("mixer", (const char *const[]){"model.type=mixer", VISION_TINY,
                                                 "model.channels=1", NULL});
}
END_TEST

// ---- the recomputing Pixelfly MLP (pixelfly.recompute_mlp) -------------------------------

// On the CPU the pixelfly_mlp op runs the very ops of the plain MLP (recomputing f and g first),
// so a whole training step gives the same loss and gradient bits either way.
static void same_step(const char *name, const char *const *sets, const char *const *fused) {
    pf_model *m[2] = {create(sets, GC_B), create(fused, GC_B)};
    pf_config c;
    make_config(&c, sets);
    pf_rng rng;
    pf_rng_seed(&rng, 21);
    gc_data d;
    make_batch(&d, &c, 0, &rng);
    int64_t n = pf_model_layout(m[0])->numel;
    ck_assert_int_eq(pf_model_layout(m[1])->numel, n);
    size_t bytes = sizeof(float) * (size_t)n;
    float loss[2], *g[2];
    for (int k = 0; k < 2; k++) {
        pf_model_init_params(m[k], 17);
        pf_arena *a = pf_model_arena(m[k]);
        pf_backend_cpu.zero(a->grads, bytes);
        loss[k] = pf_model_forward(m[k], &d.batch, NULL);
        pf_model_backward(m[k], 1.0f, NULL, NULL);
        g[k] = pf_malloc(bytes);
        pf_backend_cpu.download(g[k], a->grads, bytes);
    }
    ck_assert_msg(loss[0] == loss[1], "%s: loss %.9g unfused, %.9g fused", name, loss[0], loss[1]);
    ck_assert_msg(!memcmp(g[0], g[1], bytes), "%s: gradients differ", name);
    for (int k = 0; k < 2; k++) {
        free(g[k]);
        pf_model_free(m[k]);
    }
}

START_TEST(test_recompute_mlp_same_step) {
    same_step("gpt2", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL},
              (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "pixelfly.recompute_mlp=true",
                                    NULL});
    // Mixer with a dense token MLP: the channel MLP recomputes, the token MLP does not.
    same_step("mixer",
              (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=3",
                                    "pixelfly.mlp_fc1=bs=2 nf=1 rank=2",
                                    "pixelfly.mlp_fc2=bs=4 nf=2 rank=1", NULL},
              (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=3",
                                    "pixelfly.mlp_fc1=bs=2 nf=1 rank=2",
                                    "pixelfly.mlp_fc2=bs=4 nf=2 rank=1",
                                    "pixelfly.recompute_mlp=true", NULL});
}
END_TEST

// Recomputing drops the two [N, H] hidden activations of every block and adds the op's
// backward scratch (3 x [N, H] and [N, r]) in place of the unfused one's (df, dg), once.
START_TEST(test_recompute_mlp_saves_activations) {
    enum { B = 2, L = 4, T = 16, C = 64, H = 256 };
    const char *const plain[] = {"model.type=gpt2", "model.n_layer=4", "model.n_embd=64",
                                 "model.n_head=4", "model.seq_len=16", "model.vocab_size=100",
                                 "pixelfly.mlp_fc1=bs=4 nf=1 rank=8",
                                 "pixelfly.mlp_fc2=bs=8 nf=3 rank=2", NULL};
    const char *fused[16];
    int k = 0;
    for (; plain[k]; k++) fused[k] = plain[k];
    fused[k++] = "pixelfly.recompute_mlp=true";
    fused[k] = NULL;
    pf_model *m0 = create(plain, B), *m1 = create(fused, B);
    pf_pattern p1, p2;
    ck_assert_int_eq(pf_pattern_init(&p1, H, C, 4, 1, 8, true), 0);
    ck_assert_int_eq(pf_pattern_init(&p2, C, H, 8, 3, 2, true), 0);
    int64_t N = (int64_t)B * T, NH = N * H, NH64 = (NH + 63) / 64 * 64;
    int64_t unfused_scratch = NH64 + NH, fused_scratch = pf_pixelfly_mlp_scratch_numel(&p1, &p2, N);
    int64_t saved = (int64_t)sizeof(float) * (2 * L * NH - (fused_scratch - unfused_scratch));
    int64_t a0 = pf_model_activation_bytes(m0), a1 = pf_model_activation_bytes(m1);
    printf("recomputing MLP: activations %lld -> %lld bytes (%.1f%% less)\n", (long long)a0,
           (long long)a1, 100.0 * (a0 - a1) / a0);
    ck_assert_int_eq(a0 - a1, saved);
    ck_assert_int_gt(saved, 0);
    // The summary shows it.
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pf_model_summary(m1, f);
    fclose(f);
    ck_assert_msg(strstr(text, "4 of 4 MLPs recompute"), "%s", text);
    free(text);
    pf_model_free(m0);
    pf_model_free(m1);
}
END_TEST

// ---- weight decay ----------------------------------------------------------------------

// The rule of docs/MODELS.md: every tensor of two or more dimensions decays (dense weights,
// Pixelfly S, U, V, both GPT-2 embeddings, ViT's position embedding), no vector does (biases,
// layernorm gains and biases, ViT's class token).
START_TEST(test_weight_decay_rule) {
    const char *const *models[] = {
        (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL},
        (const char *const[]){"model.type=vit", VISION_TINY, "model.channels=3", PIXELFLY_BLOCK,
                              NULL},
        (const char *const[]){"model.type=mixer", VISION_TINY, "model.channels=1",
                              "pixelfly.token_fc1=bs=2 nf=1 rank=1", NULL},
    };
    for (int k = 0; k < 3; k++) {
        pf_model *m = create(models[k], 1);
        const pf_layout *lay = pf_model_layout(m);
        int decayed = 0;
        for (int i = 0; i < lay->count; i++) {
            const pf_param_info *p = &lay->params[i];
            ck_assert_msg(p->no_decay == (p->ndim == 1), "model %d: %s (%d dims) %s", k, p->name,
                          p->ndim, p->no_decay ? "not decayed" : "decayed");
            decayed += !p->no_decay;
        }
        ck_assert_int_gt(decayed, 0);
        if (k == 0) {
            ck_assert(!lay->params[pf_layout_find(lay, "wte")].no_decay);
            ck_assert(!lay->params[pf_layout_find(lay, "wpe")].no_decay);
        }
        pf_model_free(m);
    }
}
END_TEST

// ---- parameter counts and FLOPs --------------------------------------------------------

#define GPT2_SMALLISH                                                                     \
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=64", "model.n_head=4",            \
        "model.seq_len=16", "model.vocab_size=100"
#define PIXELFLY_WIDE                                                                     \
    "pixelfly.attn_qkv=bs=8 nf=2 rank=4", "pixelfly.attn_proj=bs=8 nf=1",                 \
        "pixelfly.mlp_fc1=bs=4 nf=1 rank=8", "pixelfly.mlp_fc2=bs=8 nf=3 rank=2"

static int64_t layer_params(const pf_layout *lay, const char *layer) {
    static const char *const parts[] = {"S", "U", "V", "w", "b"};
    int64_t n = 0;
    char name[PF_PARAM_NAME_MAX];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "%s.%s", layer, parts[i]);
        int idx = pf_layout_find(lay, name);
        if (idx >= 0) n += pf_param_numel(&lay->params[idx]);
    }
    return n;
}

START_TEST(test_param_counts_and_flops) {
    pf_model *sparse = create((const char *const[]){GPT2_SMALLISH, PIXELFLY_WIDE, NULL}, 1);
    pf_model *dense = create((const char *const[]){GPT2_SMALLISH, NULL}, 1);
    const pf_layout *ls = pf_model_layout(sparse), *ld = pf_model_layout(dense);
    const struct {
        const char *layer;
        int out, in, bs, nf, rank;
    } layers[] = {
        {"h.1.attn.qkv", 192, 64, 8, 2, 4},
        {"h.1.attn.proj", 64, 64, 8, 1, 0},
        {"h.0.mlp.fc1", 256, 64, 4, 1, 8},
        {"h.0.mlp.fc2", 64, 256, 8, 3, 2},
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        pf_pattern pat;
        ck_assert_int_eq(pf_pattern_init(&pat, layers[i].out, layers[i].in, layers[i].bs,
                                         layers[i].nf, layers[i].rank, true),
                         0);
        ck_assert_int_eq(layer_params(ls, layers[i].layer), pf_pattern_numel(&pat));
        ck_assert_int_eq(layer_params(ld, layers[i].layer),
                         (int64_t)layers[i].out * layers[i].in + layers[i].out);
        ck_assert_int_eq(pf_layout_find(ls, "h.0.attn.proj.U"), -1);  // rank 0: no U, V
    }
    ck_assert_int_lt(pf_layout_param_count(ls), pf_layout_param_count(ld));
    // the other kinds: butterfly 64 -> 256 with bs=8: square factors 64 x 64 with strides 1, 2
    // and the rectangular 256 x 64 last, each 2 of 8 blocks per super-row; lowrank r (out+in)
    pf_model *kinds = create((const char *const[]){GPT2_SMALLISH, "pixelfly.mlp_fc1=butterfly bs=8",
                                                   "pixelfly.mlp_fc2=lowrank rank=5",
                                                   "pixelfly.attn_proj=blocksparse bs=8 blocks=3",
                                                   NULL}, 1);
    const pf_layout *lk = pf_model_layout(kinds);
    int64_t fly = 0;
    for (int j = 0; j < 3; j++) {
        char name[64];
        snprintf(name, sizeof name, "h.0.mlp.fc1.S%d", j);
        int idx = pf_layout_find(lk, name);
        ck_assert_int_ge(idx, 0);
        fly += pf_param_numel(&lk->params[idx]);
    }
    ck_assert_int_eq(fly, 2 * (64 * 64 / 8) * 2 + 2 * 256 * 64 / 8);
    ck_assert_int_eq(layer_params(lk, "h.0.mlp.fc2"), 5 * (64 + 256) + 64);
    ck_assert_int_eq(layer_params(lk, "h.0.attn.proj"), 3 * 64 * 64 / 8 + 64);
    pf_model_free(kinds);
    double fs = pf_model_train_flops(sparse, false), fd = pf_model_train_flops(dense, false);
    ck_assert_msg(fs < 0.8 * fd, "pixelfly %g vs dense %g FLOPs", fs, fd);
    ck_assert(pf_model_train_flops(sparse, true) == fd);  // the dense twin is the dense model
    ck_assert(pf_model_train_flops(dense, true) == fd);
    pf_model_free(sparse);
    pf_model_free(dense);
}
END_TEST

// ---- patterns that do not fit ----------------------------------------------------------

typedef struct {
    const char *const *sets;
    const char *layer;
} misfit_case;

static const misfit_case MISFIT[] = {
    {(const char *const[]){GPT2_TINY, "pixelfly.attn_qkv=bs=16 nf=1", NULL}, "h.0.attn.qkv"},
    {(const char *const[]){GPT2_TINY, "pixelfly.mlp_fc2=bs=4 nf=3", NULL}, "h.0.mlp.fc2"},
    {(const char *const[]){"model.type=mixer", VISION_TINY, "pixelfly.token_fc1=bs=8 nf=1",
                           NULL},
     "h.0.token.fc1"},
    {(const char *const[]){"model.type=vit", VISION_TINY, "pixelfly.attn_proj=bs=3 nf=1",
                           NULL},
     "h.0.attn.proj"},
    {(const char *const[]){GPT2_TINY, "pixelfly.mlp_fc1=butterfly bs=16", NULL}, "h.0.mlp.fc1"},
    {(const char *const[]){GPT2_TINY, "pixelfly.attn_proj=lowrank rank=9", NULL},
     "h.0.attn.proj"},
    {(const char *const[]){GPT2_TINY, "pixelfly.attn_qkv=blocksparse bs=4 blocks=5", NULL},
     "h.0.attn.qkv"},
};

START_TEST(test_pattern_misfit) {
    const misfit_case *tc = &MISFIT[_i];
    pf_config c;
    make_config(&c, tc->sets);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, 1);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(pf_errmsg(), tc->layer), "message '%s' does not name %s", pf_errmsg(),
                  tc->layer);
}
END_TEST

// A blocksparse layer's mask goes into a checkpoint state and comes back: a model adopts the
// mask a checkpoint holds (another draw here), and refuses a missing or misshapen one.
START_TEST(test_blocksparse_masks_adopted) {
    const char *const sets[] = {GPT2_TINY, "pixelfly.mlp_fc1=blocksparse bs=4 blocks=2 seed=3",
                                NULL};
    pf_model *a = create(sets, 1), *b = create(sets, 1);
    pf_checkpoint_state st = {0}, other = {0};
    pf_model_masks(a, &st);
    ck_assert_int_eq(st.n_masks, 1);
    ck_assert_str_eq(st.masks[0].name, "h.0.mlp.fc1.S");
    ck_assert(st.masks[0].rows == 4 && st.masks[0].cols == 2);
    // the checkpoint holds another draw (seed 99) than b's own: b takes it
    pf_pattern q;
    ck_assert_int_eq(pf_pattern_init_random(&q, 32, 8, 4, 2, 0, true, 99), 0);
    bool differs = false;
    for (int i = 0; i < 8; i++) differs |= st.masks[0].col[i] != q.col[i];
    ck_assert(differs);
    for (int i = 0; i < 8; i++) st.masks[0].col[i] = q.col[i];
    ck_assert_msg(pf_model_adopt_masks(b, &st, "ckpt.h5") == 0, "%s", pf_errmsg());
    pf_model_masks(b, &other);
    ck_assert(!memcmp(other.masks[0].col, st.masks[0].col, sizeof(int32_t) * 8));
    pf_checkpoint_state_free(&other);
    st.masks[0].col[1] = st.masks[0].col[0];  // a column twice in one row (or slot)
    ck_assert_int_eq(pf_model_adopt_masks(b, &st, "ckpt.h5"), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "/masks/h.0.mlp.fc1.S"));
    st.masks[0].cols = 3;
    ck_assert_int_eq(pf_model_adopt_masks(b, &st, "ckpt.h5"), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "mismatched mask"));
    st.masks[0].cols = 2;
    st.n_masks = 0;
    ck_assert_int_eq(pf_model_adopt_masks(b, &st, "ckpt.h5"), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "has no mask /masks/h.0.mlp.fc1.S"));
    st.n_masks = 1;
    pf_checkpoint_state_free(&st);
    pf_model_free(a);
    pf_model_free(b);
}
END_TEST

// A backend whose attention runs only some head dims (as the CUDA kernels do) refuses a model
// with another one when it is built, naming the dims; one it runs builds.
START_TEST(test_attention_head_dim_refused) {
    static const int dims[] = {16, 32, 0};
    pf_backend be = pf_backend_cpu;
    be.attention_head_dims = dims;
    pf_config c;
    make_config(&c, (const char *const[]){GPT2_TINY, NULL});  // n_embd 8 / 2 heads = 4
    ck_assert_ptr_null(pf_model_create(&c, &be, 1));
    ck_assert_msg(strstr(pf_errmsg(), "= 4:") && strstr(pf_errmsg(), "head dims 16, 32 only"),
                  "message: %s", pf_errmsg());
    make_config(&c, (const char *const[]){GPT2_TINY, "model.n_embd=32", NULL});
    pf_model *m = pf_model_create(&c, &be, 1);
    ck_assert_msg(m != NULL, "%s", pf_errmsg());
    pf_model_free(m);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_gradient_check, 0, N_GC_CASES);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_mixed_loss);
    tcase_add_test(tc, test_staged_same_as_plain);
    tcase_add_test(tc, test_dropout_modes);
    tcase_add_test(tc, test_recompute_mlp_same_step);
    tcase_add_test(tc, test_recompute_mlp_saves_activations);
    tcase_add_test(tc, test_weight_decay_rule);
    suite_add_tcase(s, tc);
    tc = tcase_create("shapes");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_param_counts_and_flops);
    tcase_add_loop_test(tc, test_pattern_misfit, 0, (int)(sizeof MISFIT / sizeof MISFIT[0]));
    tcase_add_test(tc, test_attention_head_dim_refused);
    tcase_add_test(tc, test_blocksparse_masks_adopted);
    suite_add_tcase(s, tc);
    return s;
}
