// test_bf16.c: the model code with bf16 activations, on the CPU.
//
// The CUDA backend computes in bf16 (activations and the compute copy of the weights), which
// CI cannot run. This suite runs the same model code against "emu": the CPU backend with
// act_dtype = PF_BF16, whose ops round every bf16 tensor to fp32, call the CPU op, and round
// the results back. So the bf16 plumbing of the models is exercised where CI runs: tensor
// dtypes, byte sizes of bf16 buffers (every memory call is checked against the allocation it
// lands in), the compute copy of the weights and its refresh, the fp32 staging of host
// transfers. It also shows what bf16 rounding does to a training step and to training: the
// loss and gradients agree with fp32 to bf16 precision and a model still learns. First, every
// case of the op table (tests/op_cases.c) runs on emu against the CPU backend, as
// tests/gpu/test_cuda_ops.c runs them on CUDA.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "op_cases.h"

// ---- memory: host buffers whose bounds every call is checked against ---------------------

enum { EMU_MAX_ALLOCS = 4096 };
static struct {
    char *p;
    size_t bytes;
} emu_allocs[EMU_MAX_ALLOCS];

static void *emu_alloc(size_t bytes) {
    for (int i = 0; i < EMU_MAX_ALLOCS; i++)
        if (!emu_allocs[i].p) {
            emu_allocs[i].p = pf_malloc(bytes ? bytes : 1);
            emu_allocs[i].bytes = bytes;
            return emu_allocs[i].p;
        }
    ck_abort_msg("emu: more than %d live allocations", EMU_MAX_ALLOCS);
    return NULL;
}

static void emu_free(void *p) {
    for (int i = 0; i < EMU_MAX_ALLOCS; i++)
        if (emu_allocs[i].p == p) {
            free(p);
            emu_allocs[i].p = NULL;
            return;
        }
    ck_abort_msg("emu: free of %p, which emu did not allocate", p);
}

// [p, p + bytes) lies inside one allocation.
static void emu_check(const void *p, size_t bytes, const char *what) {
    const char *c = p;
    for (int i = 0; i < EMU_MAX_ALLOCS; i++)
        if (emu_allocs[i].p && c >= emu_allocs[i].p &&
            c < emu_allocs[i].p + (emu_allocs[i].bytes ? emu_allocs[i].bytes : 1)) {
            ck_assert_msg(c + bytes <= emu_allocs[i].p + emu_allocs[i].bytes,
                          "emu: %s of %zu bytes at offset %td overruns an allocation of %zu",
                          what, bytes, c - emu_allocs[i].p, emu_allocs[i].bytes);
            return;
        }
    ck_assert_msg(bytes == 0, "emu: %s of %zu bytes outside every allocation", what, bytes);
}

static void emu_zero(void *p, size_t n) { emu_check(p, n, "zero"), memset(p, 0, n); }
static void emu_upload(void *d, const void *s, size_t n) { emu_check(d, n, "upload"), memcpy(d, s, n); }
static void emu_download(void *d, const void *s, size_t n) {
    emu_check(s, n, "download"), memcpy(d, s, n);
}
static void emu_copy(void *d, const void *s, size_t n) {
    emu_check(d, n, "copy"), emu_check(s, n, "copy"), memcpy(d, s, n);
}
// Input staging: host memory is the heap; uploads are checked copies done at the call.
static void *emu_host_alloc(size_t n) { return pf_malloc(n ? n : 1); }
static void emu_inputs_mark(int set) { ck_assert(set >= 0 && set < PF_INPUT_SETS); }

// dst = src elementwise in their dtypes (fp32 or bf16), any memory.
static void convert_any(pf_tensor dst, pf_tensor src) {
    int64_t n = pf_numel(src);
    ck_assert_int_eq(pf_numel(dst), n);
    for (int64_t i = 0; i < n; i++) {
        float v = src.dtype == PF_BF16 ? pf_f32_from_bf16(((uint16_t *)src.data)[i])
                                       : ((float *)src.data)[i];
        if (dst.dtype == PF_BF16) ((uint16_t *)dst.data)[i] = pf_bf16_from_f32(v);
        else ((float *)dst.data)[i] = v;
    }
}

static void emu_convert(pf_tensor dst, pf_tensor src) {
    emu_check(dst.data, (size_t)pf_numel(dst) * pf_dtype_size(dst.dtype), "convert dst");
    emu_check(src.data, (size_t)pf_numel(src) * pf_dtype_size(src.dtype), "convert src");
    convert_any(dst, src);
}

// ---- ops: round bf16 tensors to fp32, run the CPU op, round back --------------------------

// The tensors of one op call. Each bf16 argument is swapped for an fp32 copy (one per
// distinct buffer, so aliased arguments stay aliased); after the call every copy is rounded
// back into its buffer (inputs come back unchanged: bf16 -> fp32 -> bf16 is exact).
enum { EMU_MAX_ARGS = 24 };
typedef struct {
    pf_tensor *args[EMU_MAX_ARGS];
    pf_tensor orig[EMU_MAX_ARGS];
    int n;
} emu_call;

static void emu_begin(emu_call *c, int n, pf_tensor **args) {
    ck_assert_int_le(n, EMU_MAX_ARGS);
    c->n = n;
    for (int i = 0; i < n; i++) {
        pf_tensor *t = c->args[i] = args[i];
        c->orig[i] = *t;
        if (!pf_present(*t) || t->dtype == PF_I32) {
            if (pf_present(*t)) emu_check(t->data, 4 * (size_t)pf_numel(*t), "op input");
            continue;
        }
        int64_t numel = pf_numel(*t);
        emu_check(t->data, (size_t)numel * pf_dtype_size(t->dtype), "op tensor");
        if (t->dtype != PF_BF16) continue;
        int same = -1;
        for (int j = 0; j < i; j++)
            if (c->orig[j].data == t->data && c->orig[j].dtype == PF_BF16) same = j;
        pf_tensor f = *t;
        f.dtype = PF_F32;
        if (same >= 0) {
            ck_assert_int_le(numel, pf_numel(c->orig[same]));
            f.data = c->args[same]->data;
        } else {
            f.data = pf_malloc(sizeof(float) * (size_t)(numel ? numel : 1));
            convert_any(f, *t);
        }
        *t = f;
    }
}

static void emu_end(emu_call *c) {
    for (int i = 0; i < c->n; i++) {
        if (!pf_present(c->orig[i]) || c->orig[i].dtype != PF_BF16) continue;
        bool first = true;
        for (int j = 0; j < i; j++)
            if (c->orig[j].data == c->orig[i].data && c->orig[j].dtype == PF_BF16) first = false;
        if (!first) continue;
        // The widest view of this buffer in the call decides how much comes back.
        pf_tensor widest = c->orig[i];
        for (int j = i + 1; j < c->n; j++)
            if (c->orig[j].data == widest.data && pf_numel(c->orig[j]) > pf_numel(widest))
                widest = c->orig[j];
        pf_tensor f = widest;
        f.dtype = PF_F32;
        f.data = c->args[i]->data;
        convert_any(widest, f);
        free(f.data);
    }
    for (int i = 0; i < c->n; i++) *c->args[i] = c->orig[i];
}

// Wraps one op: EMU(call) with the op's tensors listed.
#define EMU(call, ...)                                                        \
    do {                                                                      \
        pf_tensor *args_[] = {__VA_ARGS__};                                   \
        emu_call c_;                                                          \
        emu_begin(&c_, (int)(sizeof args_ / sizeof *args_), args_);           \
        call;                                                                 \
        emu_end(&c_);                                                         \
    } while (0)

static const pf_backend *CPU = &pf_backend_cpu;

// One wrapper per entry of the op list, each of its op's type (backend.h), named emu_NAME.
#define EMU_OP_DECL_(ID, name) static pf_op_##name##_fn emu_##name;
PF_OPS(EMU_OP_DECL_)
#undef EMU_OP_DECL_

static void emu_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b) {
    EMU(CPU->linear_fwd(y, x, w, b), &y, &x, &w, &b);
}
static void emu_linear_bwd(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                           pf_tensor w) {
    EMU(CPU->linear_bwd(dx, dw, db, dy, x, w), &dx, &dw, &db, &dy, &x, &w);
}
static void emu_pixelfly_fwd(const pf_pattern *p, pf_tensor y, pf_tensor xv, pf_tensor x,
                             pf_pixelfly_w w) {
    EMU(CPU->pixelfly_fwd(p, y, xv, x, w), &y, &xv, &x, &w.S, &w.U, &w.V, &w.b);
}
static void emu_pixelfly_bwd(const pf_pattern *p, pf_tensor dx, pf_pixelfly_w dw, pf_tensor dxv,
                             pf_tensor dy, pf_tensor x, pf_tensor xv, pf_pixelfly_w w) {
    EMU(CPU->pixelfly_bwd(p, dx, dw, dxv, dy, x, xv, w), &dx, &dw.S, &dw.U, &dw.V, &dw.b, &dxv,
        &dy, &x, &xv, &w.S, &w.U, &w.V, &w.b);
}
// The fused MLP runs the fp32 CPU op on the rounded inputs, so its f and g are not rounded to
// bf16 between fc1, GELU and fc2 as the CUDA composition's are; what it checks is the model's
// plumbing (dtypes, and the bf16 scratch, xv1 and gv2 sizes against their allocations).
static void emu_pixelfly_mlp_fwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor y,
                                 pf_tensor xv1, pf_tensor gv2, pf_tensor x, pf_pixelfly_w w1,
                                 pf_pixelfly_w w2, pf_tensor scratch) {
    EMU(CPU->pixelfly_mlp_fwd(p1, p2, y, xv1, gv2, x, w1, w2, scratch), &y, &xv1, &gv2, &x,
        &w1.S, &w1.U, &w1.V, &w1.b, &w2.S, &w2.U, &w2.V, &w2.b, &scratch);
}
static void emu_pixelfly_mlp_bwd(const pf_pattern *p1, const pf_pattern *p2, pf_tensor dx,
                                 pf_pixelfly_w dw1, pf_pixelfly_w dw2, pf_tensor dy, pf_tensor x,
                                 pf_tensor xv1, pf_tensor gv2, pf_pixelfly_w w1,
                                 pf_pixelfly_w w2, pf_tensor scratch) {
    EMU(CPU->pixelfly_mlp_bwd(p1, p2, dx, dw1, dw2, dy, x, xv1, gv2, w1, w2, scratch), &dx,
        &dw1.S, &dw1.U, &dw1.V, &dw1.b, &dw2.S, &dw2.U, &dw2.V, &dw2.b, &dy, &x, &xv1, &gv2,
        &w1.S, &w1.U, &w1.V, &w1.b, &w2.S, &w2.U, &w2.V, &w2.b, &scratch);
}
static void emu_layernorm_fwd(pf_tensor y, pf_tensor mean, pf_tensor rstd, pf_tensor x,
                              pf_tensor g, pf_tensor b, float eps) {
    EMU(CPU->layernorm_fwd(y, mean, rstd, x, g, b, eps), &y, &mean, &rstd, &x, &g, &b);
}
static void emu_layernorm_bwd(pf_tensor dx, pf_tensor dg, pf_tensor db, pf_tensor dy,
                              pf_tensor x, pf_tensor g, pf_tensor mean, pf_tensor rstd) {
    EMU(CPU->layernorm_bwd(dx, dg, db, dy, x, g, mean, rstd), &dx, &dg, &db, &dy, &x, &g, &mean,
        &rstd);
}
static void emu_gelu_fwd(pf_tensor y, pf_tensor x) { EMU(CPU->gelu_fwd(y, x), &y, &x); }
static void emu_gelu_bwd(pf_tensor dx, pf_tensor dy, pf_tensor x) {
    EMU(CPU->gelu_bwd(dx, dy, x), &dx, &dy, &x);
}
static void emu_add(pf_tensor y, pf_tensor a, pf_tensor b) { EMU(CPU->add(y, a, b), &y, &a, &b); }
static void emu_accumulate(pf_tensor d, pf_tensor s) { EMU(CPU->accumulate(d, s), &d, &s); }
static void emu_dropout(pf_tensor y, pf_tensor x, float p, uint64_t key, uint64_t first) {
    EMU(CPU->dropout(y, x, p, key, first), &y, &x);
}
static void emu_attention_fwd(pf_tensor out, pf_tensor lse, pf_tensor qkv, int nh, bool causal) {
    EMU(CPU->attention_fwd(out, lse, qkv, nh, causal), &out, &lse, &qkv);
}
static void emu_attention_bwd(pf_tensor dqkv, pf_tensor dout, pf_tensor qkv, pf_tensor out,
                              pf_tensor lse, int nh, bool causal) {
    EMU(CPU->attention_bwd(dqkv, dout, qkv, out, lse, nh, causal), &dqkv, &dout, &qkv, &out,
        &lse);
}
static void emu_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V, int ig,
                         float sm) {
    EMU(CPU->xent_fwd(losses, logits, targets, V, ig, sm), &losses, &logits, &targets);
}
static void emu_xent_bwd(pf_tensor dlogits, pf_tensor logits, pf_tensor targets, int V, int ig,
                         float sm, float scale) {
    EMU(CPU->xent_bwd(dlogits, logits, targets, V, ig, sm, scale), &dlogits, &logits, &targets);
}
static void emu_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    EMU(CPU->embedding_fwd(y, ids, wte, wpe), &y, &ids, &wte, &wpe);
}
static void emu_embedding_bwd(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids) {
    EMU(CPU->embedding_bwd(dwte, dwpe, dy, ids), &dwte, &dwpe, &dy, &ids);
}
static void emu_transpose_fwd(pf_tensor y, pf_tensor x) { EMU(CPU->transpose_fwd(y, x), &y, &x); }
static void emu_transpose_bwd(pf_tensor dx, pf_tensor dy) {
    EMU(CPU->transpose_bwd(dx, dy), &dx, &dy);
}
static void emu_meanpool_fwd(pf_tensor y, pf_tensor x) { EMU(CPU->meanpool_fwd(y, x), &y, &x); }
static void emu_meanpool_bwd(pf_tensor dx, pf_tensor dy) {
    EMU(CPU->meanpool_bwd(dx, dy), &dx, &dy);
}
static void emu_cls_token_fwd(pf_tensor y, pf_tensor x, pf_tensor cls, pf_tensor pos) {
    EMU(CPU->cls_token_fwd(y, x, cls, pos), &y, &x, &cls, &pos);
}
static void emu_cls_token_bwd(pf_tensor dx, pf_tensor dcls, pf_tensor dpos, pf_tensor dy) {
    EMU(CPU->cls_token_bwd(dx, dcls, dpos, dy), &dx, &dcls, &dpos, &dy);
}
static void emu_cls_select_fwd(pf_tensor y, pf_tensor x) { EMU(CPU->cls_select_fwd(y, x), &y, &x); }
static void emu_cls_select_bwd(pf_tensor dx, pf_tensor dy) {
    EMU(CPU->cls_select_bwd(dx, dy), &dx, &dy);
}
static void emu_adamw(pf_tensor p, pf_tensor g, pf_tensor m, pf_tensor v, const pf_adamw_args *a) {
    ck_assert(p.dtype == PF_F32 && g.dtype == PF_F32 && m.dtype == PF_F32 && v.dtype == PF_F32);
    EMU(CPU->adamw(p, g, m, v, a), &p, &g, &m, &v);
}
static double emu_sumsq(pf_tensor x) {
    ck_assert_msg(x.dtype == PF_F32, "sumsq runs on fp32 gradients");
    emu_check(x.data, sizeof(float) * (size_t)pf_numel(x), "sumsq");
    return CPU->sumsq(x);
}
static void emu_scale(pf_tensor x, float s) {
    ck_assert_msg(x.dtype == PF_F32, "scale runs on fp32 gradients");
    emu_check(x.data, sizeof(float) * (size_t)pf_numel(x), "scale");
    CPU->scale(x, s);
}
static void emu_device_info(pf_device_info *info) { CPU->device_info(info); }
static void emu_synchronize(void) {}
// Every op the CPU runs, with fp32 activations (passed through) or bf16 ones (emulated).
static bool emu_supports(pf_op op, pf_dtype act) {
    return CPU->supports(op, PF_F32) && (act == PF_F32 || act == PF_BF16);
}

static const pf_backend EMU_BF16 = {
    .name = "cpu-bf16-emulation",
    .device = PF_DEV_CPU,
    .act_dtype = PF_BF16,
    .alloc = emu_alloc,
    .free = emu_free,
    .zero = emu_zero,
    .upload = emu_upload,
    .download = emu_download,
    .copy = emu_copy,
    .synchronize = emu_synchronize,
    .host_alloc = emu_host_alloc,
    .host_free = free,
    .inputs_begin = emu_inputs_mark,
    .inputs_upload = emu_upload,
    .inputs_end = emu_inputs_mark,
    .inputs_use = emu_inputs_mark,
    .supports = emu_supports,
    .device_info = emu_device_info,
#define EMU_OP_ENTRY_(ID, name) .name = emu_##name,
    PF_OPS(EMU_OP_ENTRY_)
#undef EMU_OP_ENTRY_
};

// ---- ops: every case of the op table against the CPU backend --------------------------------

// Case _i / 2 of tests/op_cases.c (op_cmp_cases), in fp32 (_i even: passed through) or bf16
// activations (_i odd: emulated); once-only cases (fp32 ops, convert's dtype pairs) at even
// _i only. The tolerances are test_cuda_ops's: emu rounds what a CUDA kernel rounds, at least.
START_TEST(test_op_cases) {
    const op_cmp_case *k = &op_cmp_cases[_i / 2];
    if (_i % 2 && !k->per_dtype) return;
    int failed = op_cmp_run(&EMU_BF16, _i / 2, _i % 2 ? PF_BF16 : PF_F32);
    ck_assert_msg(failed == 0, "%s case %d: %d op calls failed (FAIL lines above)", k->family,
                  _i / 2, failed);
    for (int i = 0; i < EMU_MAX_ALLOCS; i++)
        ck_assert_msg(!emu_allocs[i].p, "%s case %d: an allocation was not freed", k->family,
                      _i / 2);
}
END_TEST

// ---- models --------------------------------------------------------------------------------

enum { MB = 3 };

#define GPT2_TINY                                                                         \
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=32", "model.n_head=2",            \
        "model.seq_len=16", "model.vocab_size=101"
#define VISION_TINY                                                                       \
    "model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.mlp_ratio=2",          \
        "model.image_size=16", "model.patch_size=4", "model.num_classes=7",              \
        "model.token_mlp_dim=16", "model.channel_mlp_dim=64", "model.channels=3",         \
        "train.label_smoothing=0.1"
#define PIXELFLY_BLOCK                                                                    \
    "pixelfly.attn_qkv=bs=4 nf=2 rank=4", "pixelfly.attn_proj=bs=4 nf=2 rank=4",          \
        "pixelfly.mlp_fc1=bs=4 nf=2 rank=4", "pixelfly.mlp_fc2=bs=4 nf=1"

static pf_model *create(const pf_backend *be, const char *const *sets) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "data.train=unused.h5"), 0);
    for (const char *const *s = sets; *s; s++)
        ck_assert_msg(pf_config_set(&c, *s) == 0, "%s: %s", *s, pf_errmsg());
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
    pf_model *m = pf_model_create(&c, be, MB);
    ck_assert_msg(m != NULL, "%s", pf_errmsg());
    pf_model_init_params(m, 1234);
    return m;
}

// A fixed batch for either model kind: tokens over a 101-word vocabulary (some targets
// ignored), or 16x16x3 images with labels of 7 classes.
typedef struct {
    int32_t tokens[MB * 16], targets[MB * 16], labels[MB];
    float images[MB * 16 * 16 * 3];
    pf_batch batch;
} fixed_batch;

static void make_batch(fixed_batch *f) {
    uint64_t s = 42;
    for (int i = 0; i < MB * 16; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        f->tokens[i] = (int32_t)(s >> 33) % 101;
        f->targets[i] = i % 7 == 3 ? -1 : (int32_t)(s >> 45) % 101;
    }
    for (int i = 0; i < MB * 16 * 16 * 3; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        f->images[i] = (float)((s >> 40) * (2.0 / (1ull << 24)) - 1.0);
    }
    for (int b = 0; b < MB; b++) f->labels[b] = (b * 3 + 1) % 7;
    f->batch = (pf_batch){.tokens = f->tokens, .targets = f->targets, .images = f->images,
                          .labels = f->labels};
}

// Forward + backward; the loss, and the gradient arena copied to the host.
static float step(pf_model *m, const pf_batch *b, float **grads) {
    pf_arena *a = pf_model_arena(m);
    size_t bytes = sizeof(float) * (size_t)a->layout->numel;
    a->be->zero(a->grads, bytes);
    float loss = pf_model_forward(m, b, NULL);
    pf_model_backward(m, 1.0f, NULL, NULL);
    *grads = pf_malloc(bytes);
    a->be->download(*grads, a->grads, bytes);
    return loss;
}

// One training step in bf16 against fp32: the loss to 1e-2, the whole gradient's norm to
// 2e-2, each parameter tensor's gradient to 0.1 of its largest element (bf16 keeps 8
// significant bits; a tensor whose gradient comes through a long chain of rounded
// activations loses a few more).
static void compare_step(const char *name, const char *const *sets) {
    fixed_batch fb;
    make_batch(&fb);
    pf_model *m32 = create(&pf_backend_cpu, sets), *m16 = create(&EMU_BF16, sets);
    float *g32, *g16;
    float l32 = step(m32, &fb.batch, &g32), l16 = step(m16, &fb.batch, &g16);
    const pf_layout *lay = pf_model_layout(m32);
    // A tensor whose gradient is zero in exact arithmetic (a bias that shifts every channel
    // of a token equally, ahead of a layernorm) has only rounding noise to compare: errors are
    // relative to at least 1% of the largest gradient element of the model.
    double gmax = 0;
    for (int64_t j = 0; j < lay->numel; j++) gmax = fmax(gmax, fabs(g32[j]));
    double n32 = 0, n16 = 0, worst = 0;
    const char *worst_name = "-";
    for (int i = 0; i < lay->count; i++) {
        const pf_param_info *p = &lay->params[i];
        double diff = 0, ref = 1e-2 * gmax;
        for (int64_t j = 0; j < pf_param_numel(p); j++) {
            double a = g32[p->offset + j], b = g16[p->offset + j];
            n32 += a * a, n16 += b * b;
            diff = fmax(diff, fabs(a - b)), ref = fmax(ref, fabs(a));
        }
        double e = diff / ref;
        if (e > worst) worst = e, worst_name = p->name;
    }
    n32 = sqrt(n32), n16 = sqrt(n16);
    printf("bf16 step %-16s loss %.5f vs fp32 %.5f, |g| %.5g vs %.5g, worst tensor %.2e (%s)\n",
           name, l16, l32, n16, n32, worst, worst_name);
    fflush(stdout);
    ck_assert_msg(fabsf(l16 - l32) <= 1e-2f * l32, "%s: loss %f vs %f", name, l16, l32);
    ck_assert_msg(fabs(n16 - n32) <= 2e-2 * n32, "%s: |g| %g vs %g", name, n16, n32);
    ck_assert_msg(worst <= 0.1, "%s: gradient of %s off by %.2e", name, worst_name, worst);
    free(g32);
    free(g16);
    pf_model_free(m32);
    pf_model_free(m16);
}

START_TEST(test_step_matches_fp32) {
    compare_step("gpt2-pixelfly", (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    compare_step("gpt2-dense", (const char *const[]){GPT2_TINY, NULL});
    compare_step("gpt2-recompute-mlp",
                 (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, "pixelfly.recompute_mlp=true",
                                       NULL});
    compare_step("vit-pixelfly",
                 (const char *const[]){"model.type=vit", VISION_TINY, PIXELFLY_BLOCK, NULL});
    compare_step("mixer-pixelfly",
                 (const char *const[]){"model.type=mixer", VISION_TINY,
                                       "pixelfly.mlp_fc1=bs=4 nf=2 rank=4",
                                       "pixelfly.mlp_fc2=bs=4 nf=1",
                                       "pixelfly.token_fc1=bs=4 nf=2",
                                       "pixelfly.token_fc2=bs=4 nf=1 rank=2", NULL});
    compare_step("mixer-recompute-mlp",
                 (const char *const[]){"model.type=mixer", VISION_TINY,
                                       "pixelfly.mlp_fc1=bs=4 nf=2 rank=4",
                                       "pixelfly.mlp_fc2=bs=4 nf=1",
                                       "pixelfly.token_fc1=bs=4 nf=2",
                                       "pixelfly.token_fc2=bs=4 nf=1 rank=2",
                                       "pixelfly.recompute_mlp=true", NULL});
}
END_TEST

// The compute copy follows the master weights: after an optimizer step the next forward
// uses the new weights (a stale copy would give the old loss again).
START_TEST(test_weights_refresh_after_update) {
    fixed_batch fb;
    make_batch(&fb);
    pf_model *m = create(&EMU_BF16, (const char *const[]){GPT2_TINY, PIXELFLY_BLOCK, NULL});
    pf_arena *a = pf_model_arena(m);
    float losses[40];
    for (int s = 0; s < 40; s++) {
        a->be->zero(a->grads, sizeof(float) * (size_t)a->layout->numel);
        losses[s] = pf_model_forward(m, &fb.batch, NULL);
        pf_model_backward(m, 1.0f, NULL, NULL);
        float clip = 1.0f;
        pf_grad_norm(a->be, a->grads, a->layout->numel, 1.0f, &clip);
        pf_model_adamw_step(m, 3e-3f, s + 1, clip);
    }
    printf("bf16 gpt2-pixelfly on one batch: loss %.3f -> %.3f in 40 steps\n", losses[0],
           losses[39]);
    fflush(stdout);
    ck_assert_msg(losses[1] != losses[0], "the second forward saw the old weights");
    ck_assert_msg(losses[39] < 0.5f * losses[0], "loss %.3f -> %.3f: not learning", losses[0],
                  losses[39]);
    // Sampling reads one row of logits back to the host through the fp32 staging buffer.
    float row[101];
    pf_gpt2_logits_row(m, 5, row);
    for (int i = 0; i < 101; i++) ck_assert(isfinite(row[i]));
    pf_model_free(m);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_op_cases, 0, 2 * op_cmp_ncases);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_step_matches_fp32);
    tcase_add_test(tc, test_weights_refresh_after_update);
    suite_add_tcase(s, tc);
    return s;
}
