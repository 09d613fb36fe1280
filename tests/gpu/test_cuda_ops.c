// test_cuda_ops.c: every op of the CUDA backend against the CPU reference backend, on random
// inputs and several shapes (sizes that are not multiples of 32 included): the cases of
// tests/op_cases.c (op_cmp_cases, which says how outputs are compared), in fp32 and bf16.
// Then the shared-memory fit of attention's head dims (CUDA only).
//
// Then whole training steps of tiny models (GPT-2, ViT, Mixer; Pixelfly and dense): the same
// init seed and batch on both backends; the GPU computes in bf16, so the loss agrees to 1e-2,
// the gradient norm to 2e-2 and each parameter tensor's gradient to MODEL_TOL of its largest
// element (the same bounds tests/test_bf16.c holds a bf16 emulation on the CPU to), then
// 50 training steps on the GPU with falling loss. Input staging (the next micro-batch uploaded
// on a copy stream while the current one computes) gives the bits of plain forward calls.
//
// Standalone (no Check: the GPU machines lack libcheck). Prints one line per case and
// "N passed, N failed"; exits 1 on any failure, 0 with a SKIP line when no device is visible.
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "../op_cases.h"
#include "op_shapes.h"
#include "pattern.h"

#define MODEL_TOL 0.1   // per gradient tensor after a whole backward pass in bf16

static const pf_backend *CPU = &pf_backend_cpu, *GPU = &pf_backend_cuda;

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

// Forward + backward of the model described by `sets` on one backend, a training forward
// (train.dropout's masks of micro-batch 2, first sample 1: the same on every backend); returns
// the loss and downloads the gradient arena into *grads (malloc'd, layout->numel floats).
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
    pf_model_arm_dropout(m, 2, 1);
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

// Input staging (pf_model_stage; on CUDA page-locked host buffers and copies on a stream of
// their own, ordered by events): training with each micro-batch staged while the previous
// backward runs, and an evaluation batch computed while a training batch waits staged, gives
// the very bits of plain forward(batch) calls on the same backend: the same losses, the same
// evaluation sums, the same parameters after STAGED_STEPS steps. Under the emulation the
// copies run late (only when an event or a sync requires them), so a missing wait reads the
// previous batch, and a host buffer rewritten too early sends the wrong one.
enum { STAGED_STEPS = 4 };
static void test_staged(const char *name, const char *const *sets) {
    if (!selected("staged")) return;
    pf_config c;
    pf_model *m[2];
    for (int v = 0; v < 2; v++) m[v] = create_model(GPU, sets, 77, &c);
    bool gpt2 = c.model == PF_MODEL_GPT2;
    int64_t n_tok = (int64_t)MB * c.seq_len, n_img = (int64_t)MB * c.image_size * c.image_size * c.channels;
    // Batches 0..STAGED_STEPS-1 for training (the odd ones mixed, for vision), the last for
    // evaluation.
    enum { NB = STAGED_STEPS + 1 };
    int32_t *tok = pf_malloc(sizeof(int32_t) * (size_t)(2 * n_tok * NB));
    float *img = pf_malloc(sizeof(float) * (size_t)(n_img * NB));
    int32_t *lab = pf_malloc(sizeof(int32_t) * 2 * MB * NB);
    pf_batch batch[NB];
    for (int k = 0; k < NB; k++) {
        int32_t *t = tok + 2 * n_tok * k, *l = lab + 2 * MB * k;
        for (int64_t i = 0; i < 2 * n_tok; i++)
            t[i] = (int32_t)((urand() + 1) * 0.5f * c.vocab_size) % c.vocab_size;
        for (int64_t i = 0; i < n_img; i++) img[n_img * k + i] = urand();
        for (int b = 0; b < 2 * MB; b++)
            l[b] = (int32_t)((urand() + 1) * 0.5f * c.num_classes) % c.num_classes;
        batch[k] = gpt2 ? (pf_batch){.tokens = t, .targets = t + n_tok}
                        : (pf_batch){.images = img + n_img * k, .labels = l};
        if (!gpt2 && k % 2 && k < STAGED_STEPS) batch[k].labels_b = l + MB, batch[k].lam = 0.3f;
    }
    float loss[2][STAGED_STEPS];
    pf_eval_stats st[2];
    memset(st, 0, sizeof st);
    float *params[2];
    for (int v = 0; v < 2; v++) {  // v = 0: forward(batch); v = 1: staged
        pf_arena *a = pf_model_arena(m[v]);
        size_t bytes = sizeof(float) * (size_t)a->layout->numel;
        if (v) pf_model_stage(m[v], &batch[0]);
        for (int k = 0; k < STAGED_STEPS; k++) {
            GPU->zero(a->grads, bytes);
            loss[v][k] = pf_model_forward(m[v], v ? NULL : &batch[k], NULL);
            pf_model_backward(m[v], 1.0f, NULL, NULL);
            if (v && k + 1 < STAGED_STEPS) pf_model_stage(m[v], &batch[k + 1]);
            if (k == 1) pf_model_forward(m[v], &batch[STAGED_STEPS], &st[v]);
            pf_model_adamw_step(m[v], 1e-2f, k + 1, 1.0f);
        }
        GPU->synchronize();
        params[v] = pf_malloc(bytes);
        GPU->download(params[v], a->params, bytes);
    }
    begin("staged inputs = plain forward %s", name);
    int64_t numel = pf_model_arena(m[0])->layout->numel;
    for (int k = 0; k < STAGED_STEPS; k++)
        if (loss[0][k] != loss[1][k]) {
            printf("     step %d: loss %.9g plain, %.9g staged\n", k + 1, loss[0][k], loss[1][k]);
            case_ok = false;
        }
    if (st[0].loss_sum != st[1].loss_sum || st[0].count != st[1].count ||
        st[0].correct1 != st[1].correct1) {
        printf("     evaluation: loss sum %.9g plain, %.9g staged\n", st[0].loss_sum,
               st[1].loss_sum);
        case_ok = false;
    }
    if (memcmp(params[0], params[1], sizeof(float) * (size_t)numel)) {
        printf("     parameters differ after %d steps\n", STAGED_STEPS);
        case_ok = false;
    }
    snprintf(case_worst, sizeof case_worst, "losses %.4f .. %.4f", loss[1][0],
             loss[1][STAGED_STEPS - 1]);
    end();
    for (int v = 0; v < 2; v++) {
        free(params[v]);
        pf_model_free(m[v]);
    }
    free(tok);
    free(img);
    free(lab);
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
// The other layer kinds (src/layers.h), each a composition of the ops above: butterfly
// (3 factors, rectangular last in qkv, first in fc2; intermediates sliced out of xv in the
// activation dtype), lowrank (two linear ops), blocksparse (a random mask table).
#define KINDS_BLOCK                                                                       \
    "pixelfly.attn_qkv=butterfly bs=8", "pixelfly.attn_proj=lowrank rank=12",             \
        "pixelfly.mlp_fc1=blocksparse bs=4 blocks=2 rank=4", "pixelfly.mlp_fc2=butterfly bs=8"

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

    // Every case of the table (tests/op_cases.c), in fp32 then in bf16 activations.
    op_cmp_run_all(GPU);
    test_attention_fit();

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

    test_model("gpt2-kinds", (const char *const[]){GPT2_TINY, KINDS_BLOCK, NULL});
    test_model("gpt2-dropout",
               (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "train.dropout=0.2", NULL});
    test_model("mixer-dropout", (const char *const[]){"model.type=mixer", VISION_TINY,
                                                      "train.dropout=0.2", NULL});
    test_model("mixer-kinds",
               (const char *const[]){"model.type=mixer", VISION_TINY,
                                     "pixelfly.mlp_fc1=blocksparse bs=8 blocks=3",
                                     "pixelfly.mlp_fc2=blocksparse bs=4 blocks=2 rank=2",
                                     "pixelfly.token_fc1=butterfly bs=4",
                                     "pixelfly.token_fc2=lowrank rank=3",
                                     "pixelfly.recompute_mlp=true", NULL});

    test_staged("gpt2", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    test_staged("vit-mixed", (const char *const[]){"model.type=vit", VISION_TINY, NULL});

    test_training("gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    test_training("gpt2-kinds", (const char *const[]){GPT2_TINY, KINDS_BLOCK, NULL});

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
