#include "export.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "models/model.h"

// Every layer norm in the models (docs/MODELS.md).
#define LN_EPS 1e-5
#define SLOT_ORDER "slot 0 of super-row p is super-column p, slot k >= 1 is p xor 2^(k-1)"

// The model's linear layer `name` (e.g. "h.0.attn.qkv"), or NULL.
static const pf_linear *find_linear(const pf_model *m, const char *name) {
    const pf_linear *l;
    for (int i = 0; (l = pf_model_linear_at(m, i)); i++)
        if (!strcmp(l->name, name)) return l;
    return NULL;
}

static bool native_kind(pf_layer_kind k) { return k == PF_LAYER_DENSE || k == PF_LAYER_PIXELFLY; }

int pf_export_native_check(const pf_model *m) {
    const pf_linear *l;
    for (int i = 0; (l = pf_model_linear_at(m, i)); i++)
        if (!native_kind(l->kind)) {
            pf_error("layer %s is %s; the native format holds dense and pixelfly layers: "
                     "export with --densify", l->name, pf_layer_kind_name(l->kind));
            return -1;
        }
    return 0;
}

// ---- building the tensor list ----------------------------------------------------------

typedef struct {
    const pf_config *cfg;
    const pf_model *m;
    const pf_layout *lay;
    const float *host;
    pf_st_dtype dtype;
    pf_st_writer *w;
    char missing[PF_PARAM_NAME_MAX + 8];  // the first parameter looked for and not found
} ctx;

static const float *param(ctx *x, const char *name) {
    int i = pf_layout_find(x->lay, name);
    if (i < 0) {
        if (!x->missing[0]) snprintf(x->missing, sizeof x->missing, "%s", name);
        return NULL;
    }
    return x->host + x->lay->params[i].offset;
}

static void add(ctx *x, const char *name, int ndim, const int64_t *shape, const float *data,
                bool own) {
    if (data) pf_st_add(x->w, name, x->dtype, ndim, shape, data, own);
}

// Linear layer `prefix` of the model as a dense [out, in] matrix (bias excluded): a dense
// layer's stored w, or the matrix any other kind computes (pf_linear_dense_weight; owned).
static const float *linear_weight(ctx *x, const char *prefix, const pf_linear **lp, bool *own) {
    const pf_linear *l = find_linear(x->m, prefix);
    *own = false;
    *lp = l;
    if (!l) {
        if (!x->missing[0]) snprintf(x->missing, sizeof x->missing, "linear layer %s", prefix);
        return NULL;
    }
    if (l->kind == PF_LAYER_DENSE) return x->host + x->lay->params[l->w].offset;
    float *W = pf_malloc(sizeof(float) * (size_t)l->out * l->in);
    pf_linear_dense_weight(l, x->lay, x->host, W);
    *own = true;
    return W;
}

// The bias of linear layer l, or NULL (noted missing: every exported layer has one).
static const float *linear_bias(ctx *x, const pf_linear *l) {
    if (l->b >= 0) return x->host + x->lay->params[l->b].offset;
    if (!x->missing[0]) snprintf(x->missing, sizeof x->missing, "%s.b", l->name);
    return NULL;
}

// A linear layer as `name`.weight and `name`.bias: nn.Linear's [out, in], or transformers'
// Conv1D [in, out] (transpose).
static void add_linear(ctx *x, const char *prefix, const char *name, bool transpose) {
    const pf_linear *l;
    bool own;
    const float *W = linear_weight(x, prefix, &l, &own);
    if (!W) return;
    int out = l->out, in = l->in;
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    if (transpose) {
        float *T = pf_malloc(sizeof(float) * (size_t)out * in);
        for (int i = 0; i < out; i++)
            for (int j = 0; j < in; j++) T[(size_t)j * out + i] = W[(size_t)i * in + j];
        if (own) free((void *)W);
        add(x, key, 2, (int64_t[]){in, out}, T, true);
    } else {
        add(x, key, 2, (int64_t[]){out, in}, W, own);
    }
    snprintf(key, sizeof key, "%s.bias", name);
    add(x, key, 1, (int64_t[]){out}, linear_bias(x, l), false);
}

static void add_ln(ctx *x, const char *prefix, const char *name) {
    char p[PF_PARAM_NAME_MAX + 8], key[256];
    snprintf(p, sizeof p, "%s.g", prefix);
    snprintf(key, sizeof key, "%s.weight", name);
    add(x, key, 1, (int64_t[]){x->cfg->n_embd}, param(x, p), false);
    snprintf(p, sizeof p, "%s.b", prefix);
    snprintf(key, sizeof key, "%s.bias", name);
    add(x, key, 1, (int64_t[]){x->cfg->n_embd}, param(x, p), false);
}

// The stem (a linear map of patches flattened in (row, column, channel) order) as the
// stride-p convolution [D, C, p, p] of the standard models: a pure relayout.
static void add_stem_conv(ctx *x, const char *name) {
    int D = x->cfg->n_embd, C = x->cfg->channels, p = x->cfg->patch_size;
    const pf_linear *l;
    bool own;
    const float *w = linear_weight(x, "stem", &l, &own);
    if (!w) return;
    PF_ASSERT(l->out == D && l->in == p * p * C);
    float *conv = pf_malloc(sizeof(float) * (size_t)D * C * p * p);
    for (int d = 0; d < D; d++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < p; j++)
                    conv[(((size_t)d * C + c) * p + i) * p + j] =
                        w[(size_t)d * p * p * C + ((size_t)i * p + j) * C + c];
    if (own) free((void *)w);
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    add(x, key, 4, (int64_t[]){D, C, p, p}, conv, true);
    snprintf(key, sizeof key, "%s.bias", name);
    add(x, key, 1, (int64_t[]){D}, linear_bias(x, l), false);
}

static void dense_gpt2(ctx *x) {
    const pf_config *c = x->cfg;
    int C = c->n_embd;
    // the vocabulary unpadded: rows V .. Vp-1 of wte are zero and never used
    add(x, "transformer.wte.weight", 2, (int64_t[]){c->vocab_size, C}, param(x, "wte"), false);
    add(x, "transformer.wpe.weight", 2, (int64_t[]){c->seq_len, C}, param(x, "wpe"), false);
    for (int l = 0; l < c->n_layer; l++) {
        char p[64], n[96];
        static const char *const map[][3] = {  // pixelfly, transformers, kind
            {"ln1", "ln_1", "ln"},          {"attn.qkv", "attn.c_attn", "lin"},
            {"attn.proj", "attn.c_proj", "lin"}, {"ln2", "ln_2", "ln"},
            {"mlp.fc1", "mlp.c_fc", "lin"}, {"mlp.fc2", "mlp.c_proj", "lin"}};
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
            snprintf(p, sizeof p, "h.%d.%s", l, map[k][0]);
            snprintf(n, sizeof n, "transformer.h.%d.%s", l, map[k][1]);
            if (!strcmp(map[k][2], "ln")) add_ln(x, p, n);
            else add_linear(x, p, n, true);  // Conv1D: weight [in, out]
        }
    }
    add_ln(x, "lnf", "transformer.ln_f");
    // lm_head.weight is tied to transformer.wte.weight (tie_word_embeddings) and, as in the
    // files transformers' save_pretrained writes, not stored twice.
}

static void dense_vision(ctx *x, bool vit) {
    const pf_config *c = x->cfg;
    int D = c->n_embd, P = (c->image_size / c->patch_size) * (c->image_size / c->patch_size);
    add_stem_conv(x, vit ? "patch_embed.proj" : "stem.proj");
    if (vit) {
        add(x, "cls_token", 3, (int64_t[]){1, 1, D}, param(x, "cls"), false);
        add(x, "pos_embed", 3, (int64_t[]){1, P + 1, D}, param(x, "pos"), false);
    }
    for (int l = 0; l < c->n_layer; l++) {
        char p[64], n[96];
        static const char *const vit_map[][3] = {
            {"ln1", "norm1", "ln"},        {"attn.qkv", "attn.qkv", "lin"},
            {"attn.proj", "attn.proj", "lin"}, {"ln2", "norm2", "ln"},
            {"mlp.fc1", "mlp.fc1", "lin"}, {"mlp.fc2", "mlp.fc2", "lin"}};
        static const char *const mixer_map[][3] = {
            {"ln1", "norm1", "ln"},                {"token.fc1", "mlp_tokens.fc1", "lin"},
            {"token.fc2", "mlp_tokens.fc2", "lin"}, {"ln2", "norm2", "ln"},
            {"mlp.fc1", "mlp_channels.fc1", "lin"}, {"mlp.fc2", "mlp_channels.fc2", "lin"}};
        for (int k = 0; k < 6; k++) {
            const char *const *m = vit ? vit_map[k] : mixer_map[k];
            snprintf(p, sizeof p, "h.%d.%s", l, m[0]);
            snprintf(n, sizeof n, "blocks.%d.%s", l, m[1]);
            if (!strcmp(m[2], "ln")) add_ln(x, p, n);
            else add_linear(x, p, n, false);
        }
    }
    add_ln(x, "lnf", "norm");
    add_linear(x, "head", "head", false);
}

// ---- config.json ------------------------------------------------------------------------

static const char *model_name(pf_model_kind k) {
    return k == PF_MODEL_GPT2 ? "gpt2" : k == PF_MODEL_VIT ? "vit" : "mixer";
}

static void num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }

// One linear layer (dense or pixelfly: pf_export_native_check) into config.json's layers and
// a metadata line: "pixelfly in=32 out=96 bs=4 nf=1 rank=4 bias=1" or "dense ...".
static void layer_line(const pf_linear *l, char *line, size_t lcap, cJSON *layers) {
    cJSON *o = cJSON_AddObjectToObject(layers, l->name);
    bool bias = l->b >= 0;
    PF_ASSERT(native_kind(l->kind));
    cJSON_AddStringToObject(o, "kind", pf_layer_kind_name(l->kind));
    num(o, "in", l->in), num(o, "out", l->out);
    if (l->kind == PF_LAYER_PIXELFLY) {
        const pf_pattern *p = &l->pat[0];
        num(o, "bs", p->bs), num(o, "nf", p->nf), num(o, "rank", p->rank);
        cJSON_AddBoolToObject(o, "bias", bias);
        snprintf(line, lcap, "pixelfly in=%d out=%d bs=%d nf=%d rank=%d bias=%d", p->in, p->out,
                 p->bs, p->nf, p->rank, bias);
    } else {
        cJSON_AddBoolToObject(o, "bias", bias);
        snprintf(line, lcap, "dense in=%d out=%d bias=%d", l->in, l->out, bias);
    }
}

static cJSON *native_config(const pf_config *c, const pf_model *m, int64_t step,
                            pf_st_dtype dt, pf_st_writer *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "pixelfly-native");
    cJSON_AddStringToObject(o, "pixelfly_version", PF_VERSION);
    num(o, "step", (double)step);
    cJSON_AddStringToObject(o, "model_type", model_name(c->model));
    cJSON_AddStringToObject(o, "dtype", dt == PF_ST_BF16 ? "bfloat16" : "float32");
    num(o, "n_layer", c->n_layer), num(o, "n_embd", c->n_embd);
    if (c->model == PF_MODEL_GPT2) {
        num(o, "n_head", c->n_head), num(o, "mlp_hidden", pf_config_mlp_hidden(c));
        num(o, "vocab_size", c->vocab_size), num(o, "vocab_padded", (c->vocab_size + 63) / 64 * 64);
        num(o, "seq_len", c->seq_len);
    } else {
        if (c->model == PF_MODEL_VIT)
            num(o, "n_head", c->n_head), num(o, "mlp_hidden", pf_config_mlp_hidden(c));
        num(o, "image_size", c->image_size), num(o, "patch_size", c->patch_size);
        num(o, "channels", c->channels), num(o, "num_classes", c->num_classes);
        if (c->model == PF_MODEL_MIXER)
            num(o, "token_mlp_dim", c->token_mlp_dim), num(o, "channel_mlp_dim", c->channel_mlp_dim);
    }
    num(o, "layer_norm_eps", LN_EPS);
    cJSON_AddStringToObject(o, "activation", "gelu_tanh");
    cJSON_AddStringToObject(o, "slot_order", SLOT_ORDER);
    cJSON *layers = cJSON_AddObjectToObject(o, "layers");
    const pf_linear *l;
    for (int i = 0; (l = pf_model_linear_at(m, i)); i++) {
        char line[160], key[sizeof l->name + 24];
        layer_line(l, line, sizeof line, layers);
        snprintf(key, sizeof key, "pixelfly.layer.%s", l->name);
        pf_st_set_meta(w, key, line);
    }
    pf_st_set_meta(w, "pixelfly.slot_order", SLOT_ORDER);
    return o;
}

static cJSON *gpt2_config(const pf_config *c, pf_st_dtype dt) {
    cJSON *o = cJSON_CreateObject();
    const char *arch[] = {"GPT2LMHeadModel"};
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(arch, 1));
    cJSON_AddStringToObject(o, "model_type", "gpt2");
    num(o, "vocab_size", c->vocab_size), num(o, "n_positions", c->seq_len);
    num(o, "n_ctx", c->seq_len), num(o, "n_embd", c->n_embd), num(o, "n_layer", c->n_layer);
    num(o, "n_head", c->n_head), num(o, "n_inner", pf_config_mlp_hidden(c));
    cJSON_AddStringToObject(o, "activation_function", "gelu_new");  // the tanh form
    num(o, "layer_norm_epsilon", LN_EPS);
    // train.dropout is on the embedding and the residual branches, where transformers' GPT-2
    // has embd_pdrop and resid_pdrop; pixelfly drops no attention probabilities
    double pdrop = round((double)c->dropout * 1e6) / 1e6;  // 0.1, not the float's 0.1000000015
    num(o, "resid_pdrop", pdrop), num(o, "embd_pdrop", pdrop), num(o, "attn_pdrop", 0);
    num(o, "initializer_range", c->init_std);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", true);
    cJSON_AddBoolToObject(o, "scale_attn_weights", true);
    // GPT-2's end-of-text token (pfdata text's separator) when the vocabulary holds it; none
    // otherwise (transformers would default to 50256, outside a smaller vocabulary).
    enum { GPT2_EOT = 50256 };
    if (c->vocab_size > GPT2_EOT) {
        num(o, "bos_token_id", GPT2_EOT), num(o, "eos_token_id", GPT2_EOT);
    } else {
        cJSON_AddNullToObject(o, "bos_token_id"), cJSON_AddNullToObject(o, "eos_token_id");
    }
    cJSON_AddStringToObject(o, "torch_dtype", dt == PF_ST_BF16 ? "bfloat16" : "float32");
    return o;
}

static cJSON *timm_config(const pf_config *c, bool vit) {
    cJSON *o = cJSON_CreateObject();
    int D = c->n_embd, S = c->image_size;
    const char *arch = vit ? "vit_base_patch16_224" : "mixer_b16_224";
    cJSON_AddStringToObject(o, "architecture", arch);
    num(o, "num_classes", c->num_classes), num(o, "num_features", D);
    cJSON_AddStringToObject(o, "global_pool", vit ? "token" : "avg");
    num(o, "img_size", S), num(o, "patch_size", c->patch_size), num(o, "in_chans", c->channels);
    num(o, "embed_dim", D), num(o, "depth", c->n_layer);
    if (vit) {
        num(o, "num_heads", c->n_head);
        num(o, "mlp_ratio", (double)pf_config_mlp_hidden(c) / D);
    } else {
        num(o, "tokens_mlp_dim", c->token_mlp_dim), num(o, "channels_mlp_dim", c->channel_mlp_dim);
    }
    num(o, "layer_norm_eps", LN_EPS);
    cJSON_AddStringToObject(o, "act_layer", "gelu_tanh");
    // The keyword arguments of timm.create_model(architecture, ...) that give this model
    // (except the layer norm's eps: see docs/FORMATS.md, "Export").
    cJSON *a = cJSON_AddObjectToObject(o, "model_args");
    num(a, "img_size", S), num(a, "patch_size", c->patch_size), num(a, "in_chans", c->channels);
    num(a, "num_classes", c->num_classes), num(a, "embed_dim", D);
    cJSON_AddStringToObject(a, "global_pool", vit ? "token" : "avg");
    cJSON_AddStringToObject(a, "act_layer", "gelu_tanh");
    if (vit) {
        num(a, "depth", c->n_layer), num(a, "num_heads", c->n_head);
        num(a, "mlp_ratio", (double)pf_config_mlp_hidden(c) / D);
        cJSON_AddBoolToObject(a, "class_token", true);
    } else {
        num(a, "num_blocks", c->n_layer);
        double r[2] = {(double)c->token_mlp_dim / D, (double)c->channel_mlp_dim / D};
        cJSON_AddItemToObject(a, "mlp_ratio", cJSON_CreateDoubleArray(r, 2));
    }
    cJSON *p = cJSON_AddObjectToObject(o, "pretrained_cfg");
    cJSON_AddStringToObject(p, "architecture", arch);
    double in[3] = {c->channels, S, S};
    cJSON_AddItemToObject(p, "input_size", cJSON_CreateDoubleArray(in, 3));
    num(p, "num_classes", c->num_classes);
    cJSON_AddStringToObject(p, "first_conv", vit ? "patch_embed.proj" : "stem.proj");
    cJSON_AddStringToObject(p, "classifier", "head");
    return o;
}

int pf_export_build(const pf_config *cfg, const pf_model *m, const float *host, int64_t step,
                    const pf_export_opts *o, pf_st_writer *w, char **config_json) {
    const pf_layout *layout = pf_model_layout(m);
    ctx x = {.cfg = cfg, .m = m, .lay = layout, .host = host, .dtype = o->dtype, .w = w};
    if (!o->densify && pf_export_native_check(m) < 0) return -1;
    cJSON *conf;
    if (o->densify) {
        if (cfg->model == PF_MODEL_GPT2) dense_gpt2(&x);
        else dense_vision(&x, cfg->model == PF_MODEL_VIT);
        conf = cfg->model == PF_MODEL_GPT2 ? gpt2_config(cfg, o->dtype)
                                           : timm_config(cfg, cfg->model == PF_MODEL_VIT);
    } else {
        for (int i = 0; i < layout->count; i++) {
            const pf_param_info *p = &layout->params[i];
            add(&x, p->name, p->ndim, p->shape, host + p->offset, false);
        }
        conf = native_config(cfg, m, step, o->dtype, w);
    }
    if (x.missing[0]) {
        cJSON_Delete(conf);
        pf_error("the parameters lack '%s', which a %s model has", x.missing,
                 model_name(cfg->model));
        return -1;
    }
    cJSON *px = cJSON_AddObjectToObject(conf, "pixelfly");
    cJSON_AddStringToObject(px, "export", o->densify ? "densified" : "native");
    cJSON_AddStringToObject(px, "model", model_name(cfg->model));
    num(px, "step", (double)step);
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)step);
    // transformers refuses a safetensors file whose metadata lacks format "pt"
    pf_st_set_meta(w, "format", "pt");
    pf_st_set_meta(w, "pixelfly.export", o->densify ? "densified" : "native");
    pf_st_set_meta(w, "pixelfly.model", model_name(cfg->model));
    pf_st_set_meta(w, "pixelfly.step", buf);
    pf_st_set_meta(w, "pixelfly.version", PF_VERSION);
    char *ini = pf_config_to_string(cfg);
    pf_st_set_meta(w, "pixelfly.config", ini);
    free(ini);
    *config_json = cJSON_Print(conf);
    cJSON_Delete(conf);
    PF_ASSERT(*config_json);
    return 0;
}

// ---- the command ------------------------------------------------------------------------

static int fill_text(FILE *fp, void *text) {
    return fputs(text, fp) >= 0 && fputc('\n', fp) != EOF ? 0 : -1;
}

int pf_export(const char *ckpt, const char *dir, const pf_export_opts *o) {
    char st_path[4096], js_path[4096];
    if (snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir) >= (int)sizeof st_path ||
        snprintf(js_path, sizeof js_path, "%s/config.json", dir) >= (int)sizeof js_path) {
        pf_error("--out '%s' is too long", dir);
        return PF_EXIT_USAGE;
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        pf_error("--out '%s' exists and is not a directory", dir);
        return PF_EXIT_USAGE;
    }
    if (!o->force)
        for (int i = 0; i < 2; i++) {
            const char *p = i ? js_path : st_path;
            if (access(p, F_OK) == 0) {
                pf_error("'%s' exists; give --force to replace it, or another --out", p);
                return PF_EXIT_USAGE;
            }
        }
    // The checkpoint carries its resolved config; rebuild the model's layout from it.
    char *text = NULL;
    pf_config cfg;
    pf_config_defaults(&cfg);
    if (pf_checkpoint_read_config(ckpt, &text) < 0 ||
        pf_config_load_string(&cfg, text, ckpt) < 0) {
        free(text);
        return PF_EXIT_FAILURE;
    }
    free(text);
    pf_model *m = pf_model_describe(&cfg, &pf_backend_cpu, 1);
    if (!m) return PF_EXIT_FAILURE;
    // Refused before anything is read or written: the native format's layer kinds.
    if (!o->densify && pf_export_native_check(m) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pf_errmsg());
        pf_error("cannot export '%s' natively: %s", ckpt, msg);
        pf_model_free(m);
        return PF_EXIT_USAGE;
    }
    const pf_layout *lay = pf_model_layout(m);
    float *host = pf_calloc(lay->numel ? lay->numel : 1, sizeof(float));
    pf_checkpoint_state st = {0};
    int rc = PF_EXIT_FAILURE;
    pf_st_writer *w = pf_st_writer_new();
    char *json = NULL;
    if (pf_checkpoint_load(ckpt, lay, host, NULL, NULL, &st) < 0 ||
        pf_model_adopt_masks(m, &st, ckpt) < 0)
        goto out;
    if (pf_export_build(&cfg, m, host, st.step, o, w, &json) < 0) goto out;
    if (pf_mkdir_p(dir) < 0) {
        rc = PF_EXIT_USAGE;
        goto out;
    }
    if (pf_st_write(w, st_path) < 0 || pf_write_atomic(js_path, fill_text, json) < 0) goto out;
    rc = PF_EXIT_OK;
out:
    free(json);
    pf_st_writer_free(w);
    pf_checkpoint_state_free(&st);
    free(host);
    pf_model_free(m);
    return rc;
}
