// test_export.c: safetensors writer and reader, and `pftrain export` (src/export.c): every
// exported tensor's name, shape and dtype, native values against the checkpoint, densified
// weights against the Pixelfly layer they replace, and the refusals of bad input.
// (tests/torch checks the exports against PyTorch: make test-torch.)
#include <cJSON.h>
#include <check.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "check_main.h"
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "export.h"
#include "models/model.h"
#include "rng.h"
#include "safetensors.h"

static void make_config(pf_config *c, const char *const *sets) {
    pf_config_defaults(c);
    ck_assert_int_eq(pf_config_set(c, "data.train=unused.h5"), 0);  // validation wants one
    for (const char *const *s = sets; *s; s++)
        ck_assert_msg(pf_config_set(c, *s) == 0, "%s: %s", *s, pf_errmsg());
    ck_assert_msg(pf_config_validate(c) == 0, "%s", pf_errmsg());
}

// config.json's top-level `key`, printed compactly, is `want` (e.g. "\"gpt2\"", "97").
static void check_json(const char *config, const char *key, const char *want) {
    cJSON *root = cJSON_Parse(config);
    ck_assert_msg(root, "config.json is not JSON:\n%s", config);
    cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    ck_assert_msg(item, "config.json lacks %s:\n%s", key, config);
    char *got = cJSON_PrintUnformatted(item);
    ck_assert_msg(!strcmp(got, want), "config.json %s: %s, expected %s", key, got, want);
    free(got);
    cJSON_Delete(root);
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

// ---- the file format -------------------------------------------------------------------

START_TEST(test_safetensors_roundtrip) {
    float a[6] = {1, -2.5f, 3.25f, 1e-3f, -0.0f, 65504};
    float b[5] = {1.00390625f, 3.14159265f, -1e-20f, 1e20f, 0.5f};
    pf_st_writer *w = pf_st_writer_new();
    pf_st_add(w, "a", PF_ST_F32, 2, (int64_t[]){2, 3}, a, false);
    pf_st_add(w, "b.bf16", PF_ST_BF16, 1, (int64_t[]){5}, b, false);
    pf_st_add(w, "scalar", PF_ST_F32, 0, NULL, a, false);
    pf_st_add(w, "empty", PF_ST_F32, 2, (int64_t[]){0, 4}, a, false);
    pf_st_set_meta(w, "format", "pt");
    pf_st_set_meta(w, "note", "quote \" and newline \n survive");
    const char *path = pf_test_path("t.safetensors");
    ck_assert_msg(pf_st_write(w, path) == 0, "%s", pf_errmsg());
    pf_st_writer_free(w);

    pf_st_file *f = pf_st_open(path);
    ck_assert_msg(f, "%s", pf_errmsg());
    ck_assert_int_eq((8 + pf_st_header_len(f)) % 8, 0);  // data 8-byte aligned
    ck_assert_int_eq(pf_st_count(f), 4);
    ck_assert_str_eq(pf_st_meta(f, "format"), "pt");
    ck_assert_str_eq(pf_st_meta(f, "note"), "quote \" and newline \n survive");
    ck_assert_ptr_null(pf_st_meta(f, "absent"));
    int ia = pf_st_find(f, "a"), ib = pf_st_find(f, "b.bf16");
    ck_assert_int_eq(pf_st_at(f, ia)->dtype, PF_ST_F32);
    ck_assert_int_eq(pf_st_at(f, ia)->ndim, 2);
    ck_assert_int_eq(pf_st_at(f, ia)->shape[1], 3);
    ck_assert_int_eq(pf_st_at(f, ia)->begin, 0);
    ck_assert_int_eq(pf_st_at(f, ib)->begin, 24);  // back to back
    ck_assert_int_eq(pf_st_at(f, ib)->end, 34);
    ck_assert_int_eq(pf_st_at(f, ib)->dtype, PF_ST_BF16);
    ck_assert_int_eq(pf_st_numel(pf_st_at(f, pf_st_find(f, "scalar"))), 1);
    ck_assert_int_eq(pf_st_numel(pf_st_at(f, pf_st_find(f, "empty"))), 0);
    float ra[6], rb[5];
    pf_st_read_f32(f, ia, ra);
    ck_assert(!memcmp(ra, a, sizeof a));
    pf_st_read_f32(f, ib, rb);
    for (int i = 0; i < 5; i++) {
        ck_assert_float_eq(rb[i], pf_st_bf16_to_f32(pf_st_f32_to_bf16(b[i])));
        ck_assert_msg(fabsf(rb[i] - b[i]) <= fabsf(b[i]) / 256, "bf16 %g -> %g", b[i], rb[i]);
    }
    ck_assert_float_eq(rb[0], 1.0f);  // 1 + 2^-8 is a tie: to even
    pf_st_close(f);
    // bf16 rounding: to nearest even, NaN stays NaN, infinities stay
    ck_assert_uint_eq(pf_st_f32_to_bf16(1.0f), 0x3f80);
    ck_assert(isnan(pf_st_bf16_to_f32(pf_st_f32_to_bf16(NAN))));
    ck_assert(isinf(pf_st_bf16_to_f32(pf_st_f32_to_bf16(INFINITY))));
}
END_TEST

// A file's bytes, header `json` then `data_len` bytes of data (zeros when data is NULL),
// through the reader.
static pf_st_file *parse_header_and_data(const char *json, const uint8_t *data,
                                         size_t data_len, const char *origin) {
    size_t n = strlen(json);
    uint8_t *buf = calloc(1, 8 + n + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    if (data) memcpy(buf + 8 + n, data, data_len);
    pf_st_file *f = pf_st_parse(buf, 8 + n + data_len, origin);
    free(buf);  // the reader keeps its own copy
    return f;
}

// One header with its data; the reader must refuse it.
static void expect_refused(const char *json, size_t data_len, const char *needle) {
    pf_st_file *f = parse_header_and_data(json, NULL, data_len, "bad");
    ck_assert_msg(!f, "accepted %s", json);
    ck_assert_msg(strstr(pf_errmsg(), needle), "'%s': message '%s' lacks '%s'", json, pf_errmsg(),
                  needle);
}

START_TEST(test_safetensors_refuses_bad_files) {
    ck_assert_ptr_null(pf_st_parse((const uint8_t *)"abc", 3, "short"));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "too short"));
    uint8_t big[16] = {0xff, 0xff, 0xff, 0, 0, 0, 0, 0};
    ck_assert_ptr_null(pf_st_parse(big, sizeof big, "big"));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "exceeds"));
    expect_refused("[1, 2]", 0, "not a JSON object");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]", 8, "not a JSON object");
    expect_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4,
                   "dtype F16");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "needs dtype");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8,
                   "shape[0]");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
                   "needs 12");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 8,
                   "outside");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                   "does not start");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                   " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                   4, "does not start");
    expect_refused("{\"__metadata__\": {\"k\": 1}}", 0, "not a string");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} x",
                   4, "bytes after its JSON object");
    expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 8,
                   "cover 4 of the data's 8 bytes");
    ck_assert_ptr_null(pf_st_open(pf_test_path("missing.safetensors")));
}
END_TEST

// The format fixes the data's tiling, not the header's order: entries listed out of offset
// order, an empty tensor at the same offset as a full one, and space padding are accepted.
START_TEST(test_safetensors_any_header_order) {
    const char *json = "{\"s\": {\"dtype\": \"BF16\", \"shape\": [0, 4], \"data_offsets\": [2, 2]},"
                       " \"m\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 2]},"
                       " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}  \n";
    const uint8_t one[2] = {0x80, 0x3f};  // bf16 1.0 = 0x3f80, little-endian
    pf_st_file *f = parse_header_and_data(json, one, sizeof one, "unordered");
    ck_assert_msg(f, "refused: %s", pf_errmsg());
    ck_assert_int_eq(pf_st_count(f), 3);
    ck_assert_str_eq(pf_st_at(f, 0)->name, "s");
    int m = pf_st_find(f, "m");
    ck_assert_int_eq(m, 1);
    float v = 0;
    pf_st_read_f32(f, m, &v);
    ck_assert_float_eq(v, 1.0f);
    pf_st_close(f);
}
END_TEST

// ---- densified weights ------------------------------------------------------------------

static void fill(float *x, int64_t n, float s, pf_rng *r) {
    for (int64_t i = 0; i < n; i++) x[i] = s * pf_rng_normal(r);
}

// max |x W^T + b - layer(x)| / max |layer(x)| over N random rows, layer(x) the layer's own
// forward (pf_linear_forward) on the CPU arena `a` that holds its parameters; W [out, in], or
// [in, out] when w_transposed; b [out] or NULL.
static double dense_vs_layer(const pf_linear *l, const pf_arena *a, const float *W,
                             bool w_transposed, const float *b) {
    enum { N = 7 };
    pf_rng r;
    pf_rng_seed(&r, 99);
    int sw = pf_linear_saved_width(l);
    float *x = pf_malloc(sizeof(float) * N * l->in), *y = pf_malloc(sizeof(float) * N * l->out);
    float *xv = pf_malloc(sizeof(float) * N * (sw ? sw : 1));
    fill(x, (int64_t)N * l->in, 1, &r);
    pf_linear_forward(l, a, pf_tensor_2d(y, PF_F32, PF_DEV_CPU, N, l->out),
                      sw ? pf_tensor_2d(xv, PF_F32, PF_DEV_CPU, N, sw) : pf_none(),
                      pf_tensor_2d(x, PF_F32, PF_DEV_CPU, N, l->in));
    double err = 0, scale = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < l->out; o++) {
            double acc = b ? b[o] : 0;
            for (int i = 0; i < l->in; i++)
                acc += (double)x[n * l->in + i] *
                       (w_transposed ? W[(size_t)i * l->out + o] : W[(size_t)o * l->in + i]);
            err = fmax(err, fabs(acc - y[n * l->out + o]));
            scale = fmax(scale, fabs(acc));
        }
    free(x), free(y), free(xv);
    return err / scale;
}

// pf_linear_dense_weight, which the densified export writes, is the matrix each kind's forward
// computes: pixelfly, a random block mask, butterfly products with the rectangular factor
// last (out >= in) and first (in > out), low-rank alone.
START_TEST(test_dense_weight_is_the_layer) {
    static const struct {
        const char *spec;
        int out, in;
    } cases[] = {
        {"bs=4 nf=2 rank=8", 64, 32},   {"bs=8 nf=3", 32, 96},
        {"bs=16 nf=1 rank=5", 48, 48},  {"blocksparse bs=4 blocks=2 rank=3 seed=5", 64, 32},
        {"butterfly bs=4", 96, 32},     {"butterfly bs=8", 32, 128},
        {"butterfly bs=8", 32, 32},     {"lowrank rank=3", 40, 24},
        {"dense", 24, 40},
    };
    pf_rng r;
    pf_rng_seed(&r, 3);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pf_layer_spec spec;
        ck_assert_msg(pf_layer_spec_parse(&spec, cases[k].spec) == 0, "%s", pf_errmsg());
        pf_layout lay;
        pf_layout_init(&lay);
        pf_linear l;
        ck_assert_msg(pf_linear_declare(&l, &lay, "fc", cases[k].in, cases[k].out, true,
                                        spec, 0, 0) == 0, "%s", pf_errmsg());
        pf_arena a;
        pf_arena_alloc(&a, &lay, &pf_backend_cpu);
        float *host = pf_calloc(lay.numel, sizeof(float));
        fill(host, lay.numel, 0.5f, &r);  // gaps too: unused
        pf_backend_cpu.upload(a.params, host, sizeof(float) * (size_t)lay.numel);
        float *W = pf_malloc(sizeof(float) * (size_t)l.out * l.in);
        pf_linear_dense_weight(&l, &lay, host, W);
        double e = dense_vs_layer(&l, &a, W, false, host + lay.params[l.b].offset);
        ck_assert_msg(e < 1e-5, "%s %dx%d: relative error %g", cases[k].spec, l.out, l.in, e);
        free(W), free(host);
        pf_arena_free(&a);
        pf_layout_free(&lay);
    }
}
END_TEST

// ---- whole models -----------------------------------------------------------------------

typedef struct {
    pf_config cfg;
    pf_model *m;
    const pf_layout *lay;
    float *host;
    char ckpt[512];
} saved_model;

// A model of `sets` with random parameters (biases and norms too), saved as a checkpoint.
static void save_model(saved_model *s, const char *const *sets) {
    make_config(&s->cfg, sets);
    s->m = pf_model_create(&s->cfg, &pf_backend_cpu, 1);
    ck_assert_msg(s->m, "%s", pf_errmsg());
    s->lay = pf_model_layout(s->m);
    s->host = pf_calloc(s->lay->numel, sizeof(float));
    pf_rng r;
    pf_rng_seed(&r, 17);
    for (int i = 0; i < s->lay->count; i++) {
        const pf_param_info *p = &s->lay->params[i];
        fill(s->host + p->offset, pf_param_numel(p), 0.3f, &r);
    }
    if (s->cfg.model == PF_MODEL_GPT2) {  // the padding rows of wte are zero in a real model
        const pf_param_info *wte = &s->lay->params[pf_layout_find(s->lay, "wte")];
        for (int64_t v = s->cfg.vocab_size; v < wte->shape[0]; v++)
            memset(s->host + wte->offset + v * wte->shape[1], 0, sizeof(float) * wte->shape[1]);
    }
    // the model computes with these parameters (forward_logits)
    pf_backend_cpu.upload(pf_model_arena(s->m)->params, s->host,
                          sizeof(float) * (size_t)s->lay->numel);
    uint64_t rng[1] = {1};
    int64_t cursors[2] = {0, 0};
    char *text = pf_config_to_string(&s->cfg);
    pf_checkpoint_state st = {.step = 5, .world = 1, .rng_words = 1, .rng = rng,
                              .cursors = cursors, .config_text = text};
    // Blocksparse masks: not the ones the seed draws (each super-column index + 1, mod bs,
    // still a permutation per slot), so an export that ignored the checkpoint's masks would
    // differ from the model.
    pf_model_masks(s->m, &st);
    for (int i = 0; i < st.n_masks; i++) {
        pf_checkpoint_mask *mk = &st.masks[i];
        for (int j = 0; j < mk->rows * mk->cols; j++) mk->col[j] = (mk->col[j] + 1) % mk->rows;
    }
    ck_assert_msg(pf_model_adopt_masks(s->m, &st, "test") == 0, "%s", pf_errmsg());
    const char *dir = pf_test_path("ckpt");
    ck_assert_msg(pf_checkpoint_save(dir, s->lay, s->host, s->host, s->host, &st) == 0, "%s",
                  pf_errmsg());
    for (int i = 0; i < st.n_masks; i++) free(st.masks[i].col);
    free(st.masks);
    free(text);
    ck_assert_int_eq(pf_checkpoint_path(s->ckpt, sizeof s->ckpt, dir, 5), 0);
}

static void free_model(saved_model *s) {
    pf_model_free(s->m);
    free(s->host);
}

static const pf_linear *find_linear(const pf_model *m, const char *name) {
    const pf_linear *l;
    for (int i = 0; (l = pf_model_linear_at(m, i)); i++)
        if (!strcmp(l->name, name)) return l;
    ck_assert_msg(0, "no linear layer %s", name);
    return NULL;
}

static const float *host_param(const saved_model *s, const char *name) {
    int i = pf_layout_find(s->lay, name);
    ck_assert_msg(i >= 0, "no parameter %s", name);
    return s->host + s->lay->params[i].offset;
}

static float *read_tensor(pf_st_file *f, const char *name, int ndim, const int64_t *shape,
                          pf_st_dtype dt) {
    int i = pf_st_find(f, name);
    ck_assert_msg(i >= 0, "export lacks %s", name);
    const pf_st_info *t = pf_st_at(f, i);
    ck_assert_msg(t->dtype == dt, "%s: dtype %s", name, pf_st_dtype_name(t->dtype));
    ck_assert_msg(t->ndim == ndim, "%s: %d dims, expected %d", name, t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        ck_assert_msg(t->shape[d] == shape[d], "%s: shape[%d] = %lld, expected %lld", name, d,
                      (long long)t->shape[d], (long long)shape[d]);
    float *out = pf_malloc(sizeof(float) * (pf_st_numel(t) + 1));
    pf_st_read_f32(f, i, out);
    return out;
}

static pf_st_file *export_and_open(const saved_model *s, const char *dir, bool densify,
                                   pf_st_dtype dt, char **config) {
    pf_export_opts o = {.densify = densify, .dtype = dt};
    ck_assert_msg(pf_export(s->ckpt, pf_test_path(dir), &o) == PF_EXIT_OK, "%s", pf_errmsg());
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", pf_test_path(dir));
    pf_st_file *f = pf_st_open(path);
    ck_assert_msg(f, "%s", pf_errmsg());
    ck_assert_str_eq(pf_st_meta(f, "format"), "pt");
    ck_assert_str_eq(pf_st_meta(f, "pixelfly.export"), densify ? "densified" : "native");
    ck_assert_str_eq(pf_st_meta(f, "pixelfly.step"), "5");
    snprintf(path, sizeof path, "%s/config.json", pf_test_path(dir));
    size_t len;
    ck_assert_msg(pf_read_file(path, config, &len) == 0, "%s", pf_errmsg());
    return f;
}

// Native: every parameter under its own name and shape, the checkpoint's values (bf16: those
// values rounded), nothing else; each linear layer described in the metadata.
static void check_native(const saved_model *s, pf_st_dtype dt) {
    char *config;
    pf_st_file *f = export_and_open(s, dt == PF_ST_BF16 ? "native-bf16" : "native", false, dt,
                                    &config);
    ck_assert_int_eq(pf_st_count(f), s->lay->count);
    for (int i = 0; i < s->lay->count; i++) {
        const pf_param_info *p = &s->lay->params[i];
        float *v = read_tensor(f, p->name, p->ndim, p->shape, dt);
        const float *want = s->host + p->offset;
        for (int64_t k = 0; k < pf_param_numel(p); k++) {
            float w = dt == PF_ST_BF16 ? pf_st_bf16_to_f32(pf_st_f32_to_bf16(want[k])) : want[k];
            ck_assert_msg(v[k] == w, "%s[%lld]: %g, checkpoint %g", p->name, (long long)k, v[k], w);
        }
        free(v);
        size_t len = strlen(p->name);
        if (len > 2 && !strcmp(p->name + len - 2, ".S")) {
            char key[128], layer[64];
            snprintf(layer, sizeof layer, "%.*s", (int)len - 2, p->name);
            snprintf(key, sizeof key, "pixelfly.layer.%s", layer);
            const pf_linear *l = find_linear(s->m, layer);
            ck_assert_int_eq(l->kind, PF_LAYER_PIXELFLY);
            const pf_pattern *pat = &l->pat[0];
            char want[160];
            snprintf(want, sizeof want, "pixelfly in=%d out=%d bs=%d nf=%d rank=%d bias=1",
                     pat->in, pat->out, pat->bs, pat->nf, pat->rank);
            ck_assert_msg(pf_st_meta(f, key), "no %s", key);
            ck_assert_str_eq(pf_st_meta(f, key), want);
            snprintf(want, sizeof want, "\"%s\":\t{", layer);  // cJSON_Print's layout
            ck_assert_msg(strstr(config, want), "config.json lacks %s", layer);
        }
    }
    check_json(config, "format", "\"pixelfly-native\"");
    check_json(config, "step", "5");
    free(config);
    pf_st_close(f);
}

// One linear layer of the densified export: the layer `prefix` against `name`.weight
// ([out, in], or [in, out] with transposed) and `name`.bias. Dense layers: the same values;
// every other kind: the weight computes the layer's function (its forward on the model).
static void check_linear(const saved_model *s, pf_st_file *f, const char *prefix,
                         const char *name, bool transposed) {
    char key[160], p[96];
    const pf_linear *l = find_linear(s->m, prefix);
    int out = l->out, in = l->in;
    snprintf(key, sizeof key, "%s.weight", name);
    int64_t shape[2] = {transposed ? in : out, transposed ? out : in};
    float *W = read_tensor(f, key, 2, shape, PF_ST_F32);
    snprintf(key, sizeof key, "%s.bias", name);
    float *b = read_tensor(f, key, 1, (int64_t[]){out}, PF_ST_F32);
    snprintf(p, sizeof p, "%s.b", prefix);
    ck_assert(!memcmp(b, host_param(s, p), sizeof(float) * out));
    if (l->kind != PF_LAYER_DENSE) {
        double e = dense_vs_layer(l, pf_model_arena(s->m), W, transposed, b);
        ck_assert_msg(e < 1e-5, "%s (%s): densified weight vs the layer: %g", prefix,
                      pf_layer_kind_name(l->kind), e);
    } else {
        snprintf(p, sizeof p, "%s.w", prefix);
        const float *w = host_param(s, p);
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++)
                ck_assert_float_eq(transposed ? W[(size_t)i * out + o] : W[(size_t)o * in + i],
                                   w[(size_t)o * in + i]);
    }
    free(W), free(b);
}

static void check_ln(const saved_model *s, pf_st_file *f, const char *prefix, const char *name) {
    int C = s->cfg.n_embd;
    char key[160], p[96];
    const char *part[2][2] = {{"g", "weight"}, {"b", "bias"}};
    for (int k = 0; k < 2; k++) {
        snprintf(key, sizeof key, "%s.%s", name, part[k][1]);
        snprintf(p, sizeof p, "%s.%s", prefix, part[k][0]);
        float *v = read_tensor(f, key, 1, (int64_t[]){C}, PF_ST_F32);
        ck_assert(!memcmp(v, host_param(s, p), sizeof(float) * C));
        free(v);
    }
}

// Every block of the densified export: the six entries of map[k] = {pixelfly name in block l,
// the standard name in block l}, the four linear layers first, then ln1 and ln2; std_block
// the standard block prefix ("transformer.h", "blocks"). transposed: Conv1D weights.
static void check_blocks(const saved_model *s, pf_st_file *f, const char *std_block,
                         const char *const map[6][2], bool transposed) {
    for (int l = 0; l < s->cfg.n_layer; l++)
        for (int k = 0; k < 6; k++) {
            char p[64], n[96];
            snprintf(p, sizeof p, "h.%d.%s", l, map[k][0]);
            snprintf(n, sizeof n, "%s.%d.%s", std_block, l, map[k][1]);
            if (k < 4) check_linear(s, f, p, n, transposed);
            else check_ln(s, f, p, n);
        }
}

// config.json's top-level keys[k][0] are keys[k][1] (check_json).
static void check_json_keys(const char *config, const char *const (*keys)[2], size_t n) {
    for (size_t k = 0; k < n; k++) check_json(config, keys[k][0], keys[k][1]);
}

static const char *const GPT2_PIXELFLY[] = {
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=32", "model.n_head=2",
    "model.seq_len=16", "model.vocab_size=97", "pixelfly.attn_qkv=bs=4 nf=1 rank=4",
    "pixelfly.attn_proj=bs=4 nf=2", "pixelfly.mlp_fc1=bs=8 nf=2 rank=4", "run.backend=cpu",
    NULL};

START_TEST(test_export_gpt2) {
    saved_model s;
    save_model(&s, GPT2_PIXELFLY);
    check_native(&s, PF_ST_F32);
    check_native(&s, PF_ST_BF16);
    char *config;
    pf_st_file *f = export_and_open(&s, "dense", true, PF_ST_F32, &config);
    int C = 32, V = 97;
    float *wte = read_tensor(f, "transformer.wte.weight", 2, (int64_t[]){V, C}, PF_ST_F32);
    ck_assert(!memcmp(wte, host_param(&s, "wte"), sizeof(float) * V * C));  // unpadded
    free(wte);
    float *wpe = read_tensor(f, "transformer.wpe.weight", 2, (int64_t[]){16, C}, PF_ST_F32);
    ck_assert(!memcmp(wpe, host_param(&s, "wpe"), sizeof(float) * 16 * C));
    free(wpe);
    static const char *const map[6][2] = {{"attn.qkv", "attn.c_attn"}, {"attn.proj", "attn.c_proj"},
                                          {"mlp.fc1", "mlp.c_fc"},       {"mlp.fc2", "mlp.c_proj"},
                                          {"ln1", "ln_1"},               {"ln2", "ln_2"}};
    check_blocks(&s, f, "transformer.h", map, true);  // Conv1D
    check_ln(&s, f, "lnf", "transformer.ln_f");
    ck_assert_int_eq(pf_st_count(f), 2 + 2 * 12 + 2);  // nothing else (lm_head is tied)
    ck_assert_int_lt(pf_st_find(f, "lm_head.weight"), 0);
    static const char *const keys[][2] = {
        {"model_type", "\"gpt2\""}, {"architectures", "[\"GPT2LMHeadModel\"]"},
        {"activation_function", "\"gelu_new\""}, {"vocab_size", "97"}, {"n_positions", "16"},
        {"n_embd", "32"}, {"n_layer", "2"}, {"n_inner", "128"}, {"n_head", "2"},
        {"layer_norm_epsilon", "1e-05"}, {"tie_word_embeddings", "true"}};
    check_json_keys(config, keys, sizeof keys / sizeof keys[0]);
    free(config);
    pf_st_close(f);
    // bf16: the same names, every tensor BF16
    f = export_and_open(&s, "dense-bf16", true, PF_ST_BF16, &config);
    for (int i = 0; i < pf_st_count(f); i++) ck_assert_int_eq(pf_st_at(f, i)->dtype, PF_ST_BF16);
    ck_assert_int_eq(pf_st_count(f), 28);
    check_json(config, "torch_dtype", "\"bfloat16\"");
    free(config);
    pf_st_close(f);
    free_model(&s);
}
END_TEST

static void check_stem(const saved_model *s, pf_st_file *f, const char *name) {
    int D = s->cfg.n_embd, C = s->cfg.channels, p = s->cfg.patch_size;
    char key[96];
    snprintf(key, sizeof key, "%s.weight", name);
    float *conv = read_tensor(f, key, 4, (int64_t[]){D, C, p, p}, PF_ST_F32);
    const float *w = host_param(s, "stem.w");  // [D, p*p*C], (row, column, channel)
    for (int d = 0; d < D; d++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < p; j++)
                    ck_assert_float_eq(conv[((d * C + c) * p + i) * p + j],
                                       w[d * p * p * C + (i * p + j) * C + c]);
    free(conv);
    snprintf(key, sizeof key, "%s.bias", name);
    float *b = read_tensor(f, key, 1, (int64_t[]){D}, PF_ST_F32);
    ck_assert(!memcmp(b, host_param(s, "stem.b"), sizeof(float) * D));
    free(b);
}

START_TEST(test_export_vit) {
    saved_model s;
    save_model(&s, (const char *const[]){
                       "model.type=vit", "model.n_layer=2", "model.n_embd=32", "model.n_head=2",
                       "model.image_size=16", "model.patch_size=4", "model.channels=3",
                       "model.num_classes=10", "pixelfly.attn_qkv=bs=4 nf=1 rank=4",
                       "pixelfly.mlp_fc1=bs=4 nf=2 rank=4", "pixelfly.mlp_fc2=bs=4 nf=1",
                       "run.backend=cpu", NULL});
    check_native(&s, PF_ST_F32);
    char *config;
    pf_st_file *f = export_and_open(&s, "dense", true, PF_ST_F32, &config);
    check_stem(&s, f, "patch_embed.proj");
    float *cls = read_tensor(f, "cls_token", 3, (int64_t[]){1, 1, 32}, PF_ST_F32);
    ck_assert(!memcmp(cls, host_param(&s, "cls"), sizeof(float) * 32));
    free(cls);
    float *pos = read_tensor(f, "pos_embed", 3, (int64_t[]){1, 17, 32}, PF_ST_F32);
    ck_assert(!memcmp(pos, host_param(&s, "pos"), sizeof(float) * 17 * 32));
    free(pos);
    static const char *const map[6][2] = {{"attn.qkv", "attn.qkv"}, {"attn.proj", "attn.proj"},
                                          {"mlp.fc1", "mlp.fc1"},   {"mlp.fc2", "mlp.fc2"},
                                          {"ln1", "norm1"},         {"ln2", "norm2"}};
    check_blocks(&s, f, "blocks", map, false);
    check_ln(&s, f, "lnf", "norm");
    check_linear(&s, f, "head", "head", false);
    ck_assert_int_eq(pf_st_count(f), 4 + 2 * 12 + 4);
    static const char *const keys[][2] = {
        {"architecture", "\"vit_base_patch16_224\""}, {"num_classes", "10"}, {"img_size", "16"},
        {"patch_size", "4"}, {"embed_dim", "32"}, {"depth", "2"}, {"num_heads", "2"},
        {"in_chans", "3"}, {"global_pool", "\"token\""}, {"mlp_ratio", "4"},
        {"layer_norm_eps", "1e-05"}};
    check_json_keys(config, keys, sizeof keys / sizeof keys[0]);
    free(config);
    pf_st_close(f);
    free_model(&s);
}
END_TEST

// A densified 2-layer Mixer export holds timm's MlpMixer tensors, each checked, and no other.
static void check_mixer_tensors(const saved_model *s, pf_st_file *f) {
    check_stem(s, f, "stem.proj");
    static const char *const map[6][2] = {
        {"token.fc1", "mlp_tokens.fc1"},   {"token.fc2", "mlp_tokens.fc2"},
        {"mlp.fc1", "mlp_channels.fc1"}, {"mlp.fc2", "mlp_channels.fc2"},
        {"ln1", "norm1"},                  {"ln2", "norm2"}};
    check_blocks(s, f, "blocks", map, false);
    check_ln(s, f, "lnf", "norm");
    check_linear(s, f, "head", "head", false);
    ck_assert_int_eq(pf_st_count(f), 2 + 2 * 12 + 4);
}

START_TEST(test_export_mixer) {
    saved_model s;
    save_model(&s, (const char *const[]){
                       "model.type=mixer", "model.n_layer=2", "model.n_embd=32",
                       "model.image_size=16", "model.patch_size=4", "model.channels=3",
                       "model.num_classes=10", "model.token_mlp_dim=24",
                       "model.channel_mlp_dim=64", "pixelfly.token_fc1=bs=4 nf=1 rank=2",
                       "pixelfly.token_fc2=bs=4 nf=2", "pixelfly.mlp_fc1=bs=4 nf=2 rank=4",
                       "run.backend=cpu", NULL});
    check_native(&s, PF_ST_F32);
    char *config;
    pf_st_file *f = export_and_open(&s, "dense", true, PF_ST_F32, &config);
    check_mixer_tensors(&s, f);
    static const char *const keys[][2] = {
        {"architecture", "\"mixer_b16_224\""}, {"global_pool", "\"avg\""}, {"depth", "2"},
        {"tokens_mlp_dim", "24"}, {"channels_mlp_dim", "64"}, {"in_chans", "3"}};
    check_json_keys(config, keys, sizeof keys / sizeof keys[0]);
    free(config);
    pf_st_close(f);
    free_model(&s);
}
END_TEST

// ---- the other layer kinds ---------------------------------------------------------------

#define GPT2_TINY                                                                           \
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=32", "model.n_head=2",              \
        "model.seq_len=16", "model.vocab_size=97", "run.backend=cpu"

// Every kind of layers.h in GPT-2's blocks: butterfly products with the rectangular factor
// last (qkv 96 x 32), first (fc2 32 x 128) and none (proj 32 x 32, two square factors),
// random block masks with and without U V, low-rank alone, pixelfly and dense beside them.
// native_refusal: what a native export says.
static const struct {
    const char *sets[6];
    const char *native_refusal;
} GPT2_KINDS[] = {
    {{"pixelfly.attn_qkv=butterfly bs=4", "pixelfly.attn_proj=butterfly bs=4",
      "pixelfly.mlp_fc1=lowrank rank=4", "pixelfly.mlp_fc2=blocksparse bs=4 blocks=2 rank=1",
      NULL},
     "layer h.0.attn.qkv is butterfly; the native format holds dense and pixelfly layers: "
     "export with --densify"},
    {{"pixelfly.attn_qkv=bs=4 nf=1 rank=2", "pixelfly.attn_proj=lowrank rank=3",
      "pixelfly.mlp_fc1=blocksparse bs=8 blocks=3", "pixelfly.mlp_fc2=butterfly bs=8", NULL},
     "layer h.0.attn.proj is lowrank; the native format holds dense and pixelfly layers: "
     "export with --densify"},
    {{"pixelfly.mlp_fc1=blocksparse bs=4 blocks=1", NULL},
     "layer h.0.mlp.fc1 is blocksparse; the native format holds dense and pixelfly layers: "
     "export with --densify"},
};

// GPT2_TINY's sets, then `extra` (NULL-terminated, may be NULL), into sets[cap].
static void gpt2_sets(const char **sets, size_t cap, const char *const *extra) {
    static const char *const base[] = {GPT2_TINY};
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) sets[n++] = base[i];
    for (; extra && *extra; extra++) sets[n++] = *extra;
    ck_assert_uint_lt(n, cap);
    sets[n] = NULL;
}

// The logits [T, V] of every position of one forward of GPT-2 model m on tokens [1, T].
static void forward_logits(pf_model *m, const pf_config *c, const int32_t *tokens, float *out) {
    int T = c->seq_len;
    int32_t targets[64];
    ck_assert_int_le(T, 64);
    for (int t = 0; t < T; t++) targets[t] = tokens[(t + 1) % T];
    pf_batch b = {.tokens = tokens, .targets = targets};
    float loss = pf_model_forward(m, &b, NULL);
    ck_assert(isfinite(loss));
    for (int t = 0; t < T; t++) pf_gpt2_logits_row(m, t, out + (size_t)t * c->vocab_size);
}

// The dense GPT-2 of `sets` with its parameters read back from a densified export (the
// inverse of transformers' names: Conv1D weights transposed, wte padded with zero rows).
// Every parameter comes from exactly one tensor and every tensor is used.
static pf_model *dense_from_export(pf_st_file *f, const char *const *sets, pf_config *c) {
    static const char *const map[][2] = {{"ln1", "ln_1"},          {"attn.qkv", "attn.c_attn"},
                                         {"attn.proj", "attn.c_proj"}, {"ln2", "ln_2"},
                                         {"mlp.fc1", "mlp.c_fc"},  {"mlp.fc2", "mlp.c_proj"}};
    make_config(c, sets);
    pf_model *m = pf_model_create(c, &pf_backend_cpu, 1);
    ck_assert_msg(m, "%s", pf_errmsg());
    const pf_layout *lay = pf_model_layout(m);
    float *host = pf_calloc(lay->numel, sizeof(float));
    for (int i = 0; i < lay->count; i++) {
        const pf_param_info *p = &lay->params[i];
        char key[160], rest[64];
        int l;
        bool transpose = false;
        if (!strcmp(p->name, "wte")) snprintf(key, sizeof key, "transformer.wte.weight");
        else if (!strcmp(p->name, "wpe")) snprintf(key, sizeof key, "transformer.wpe.weight");
        else if (!strcmp(p->name, "lnf.g")) snprintf(key, sizeof key, "transformer.ln_f.weight");
        else if (!strcmp(p->name, "lnf.b")) snprintf(key, sizeof key, "transformer.ln_f.bias");
        else {
            ck_assert_msg(sscanf(p->name, "h.%d.%63s", &l, rest) == 2, "parameter %s", p->name);
            char *dot = strrchr(rest, '.');
            ck_assert_ptr_nonnull(dot);
            *dot = 0;
            const char *std = NULL;
            for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
                if (!strcmp(rest, map[k][0])) std = map[k][1];
            ck_assert_msg(std, "parameter %s", p->name);
            transpose = !strcmp(dot + 1, "w");
            snprintf(key, sizeof key, "transformer.h.%d.%s.%s", l, std,
                     !strcmp(dot + 1, "b") ? "bias" : "weight");
        }
        int t = pf_st_find(f, key);
        ck_assert_msg(t >= 0, "export lacks %s (for %s)", key, p->name);
        int64_t n = pf_st_numel(pf_st_at(f, t));
        float *v = pf_malloc(sizeof(float) * (size_t)(n + 1));
        pf_st_read_f32(f, t, v);
        float *dst = host + p->offset;
        if (transpose) {  // Conv1D [in, out] into w [out, in]
            int64_t out = p->shape[0], in = p->shape[1];
            ck_assert_int_eq(n, out * in);
            for (int64_t o = 0; o < out; o++)
                for (int64_t j = 0; j < in; j++) dst[o * in + j] = v[j * out + o];
        } else {
            int64_t want = !strcmp(p->name, "wte") ? (int64_t)c->vocab_size * c->n_embd
                                                   : pf_param_numel(p);
            ck_assert_int_eq(n, want);
            memcpy(dst, v, sizeof(float) * (size_t)n);
        }
        free(v);
    }
    ck_assert_int_eq(pf_st_count(f), lay->count);
    pf_backend_cpu.upload(pf_model_arena(m)->params, host, sizeof(float) * (size_t)lay->numel);
    free(host);
    return m;
}

// Densified, a model of any layer kinds is the dense GPT-2 that transformers would load: the
// dense model of the same config, built from the exported tensors, gives the model's logits
// (each layer's weight also computes that layer: check_linear). Natively it is refused,
// naming the layer, and nothing is written.
START_TEST(test_export_gpt2_kinds) {
    const char *sets[32], *dense_sets[32];
    gpt2_sets(dense_sets, 32, NULL);
    for (size_t k = 0; k < sizeof GPT2_KINDS / sizeof GPT2_KINDS[0]; k++) {
        gpt2_sets(sets, 32, GPT2_KINDS[k].sets);
        saved_model s;
        save_model(&s, sets);
        char *config, dir[32];
        snprintf(dir, sizeof dir, "dense-%zu", k);
        pf_st_file *f = export_and_open(&s, dir, true, PF_ST_F32, &config);
        static const char *const map[6][2] = {
            {"attn.qkv", "attn.c_attn"}, {"attn.proj", "attn.c_proj"}, {"mlp.fc1", "mlp.c_fc"},
            {"mlp.fc2", "mlp.c_proj"},   {"ln1", "ln_1"},               {"ln2", "ln_2"}};
        check_blocks(&s, f, "transformer.h", map, true);
        check_json(config, "model_type", "\"gpt2\"");
        free(config);

        pf_config dc;
        pf_model *dense = dense_from_export(f, dense_sets, &dc);
        pf_st_close(f);
        int T = s.cfg.seq_len, V = s.cfg.vocab_size;
        int32_t tokens[64];
        pf_rng r;
        pf_rng_seed(&r, 5 + k);
        for (int t = 0; t < T; t++) tokens[t] = (int32_t)pf_rng_below(&r, (uint32_t)V);
        float *want = pf_malloc(sizeof(float) * T * V), *got = pf_malloc(sizeof(float) * T * V);
        forward_logits(s.m, &s.cfg, tokens, want);
        forward_logits(dense, &dc, tokens, got);
        double err = 0, scale = 0;
        for (int i = 0; i < T * V; i++) {
            err = fmax(err, fabs((double)got[i] - want[i]));
            scale = fmax(scale, fabs((double)want[i]));
        }
        ck_assert_msg(err <= 1e-4 * scale, "case %zu: logits of the dense model from the export "
                      "differ by %g (largest %g)", k, err, scale);
        free(want), free(got);
        pf_model_free(dense);

        pf_export_opts o = {.dtype = PF_ST_F32};
        const char *out = pf_test_path("native-kinds");
        ck_assert_int_eq(pf_export(s.ckpt, out, &o), PF_EXIT_USAGE);
        ck_assert_msg(strstr(pf_errmsg(), GPT2_KINDS[k].native_refusal), "message '%s' lacks '%s'",
                      pf_errmsg(), GPT2_KINDS[k].native_refusal);
        ck_assert_int_eq(file_size(out), -1);  // nothing made
        free_model(&s);
    }
}
END_TEST

// The vision models' densified export with other kinds in the token and channel MLPs.
START_TEST(test_export_mixer_kinds) {
    saved_model s;
    save_model(&s, (const char *const[]){
                       "model.type=mixer", "model.n_layer=2", "model.n_embd=32",
                       "model.image_size=16", "model.patch_size=4", "model.channels=3",
                       "model.num_classes=10", "model.token_mlp_dim=24",
                       "model.channel_mlp_dim=64", "pixelfly.token_fc1=butterfly bs=4",
                       "pixelfly.token_fc2=lowrank rank=3",
                       "pixelfly.mlp_fc1=blocksparse bs=4 blocks=2",
                       "pixelfly.mlp_fc2=butterfly bs=8", "run.backend=cpu", NULL});
    char *config;
    pf_st_file *f = export_and_open(&s, "dense", true, PF_ST_F32, &config);
    check_mixer_tensors(&s, f);
    free(config);
    pf_st_close(f);
    pf_export_opts o = {.dtype = PF_ST_F32};
    ck_assert_int_eq(pf_export(s.ckpt, pf_test_path("native"), &o), PF_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "layer h.0.token.fc1 is butterfly"));
    free_model(&s);
}
END_TEST

// ---- refusals ---------------------------------------------------------------------------

START_TEST(test_export_refuses_overwrite_and_bad_input) {
    saved_model s;
    save_model(&s, GPT2_PIXELFLY);
    pf_export_opts o = {.dtype = PF_ST_F32};
    const char *out = pf_test_path("out");
    ck_assert_int_eq(pf_export(s.ckpt, out, &o), PF_EXIT_OK);
    char st_path[600], js_path[600];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
    snprintf(js_path, sizeof js_path, "%s/config.json", out);
    off_t native = file_size(st_path);
    // an existing target is refused, left as it was, and nothing else is written
    o.densify = true;
    ck_assert_int_eq(pf_export(s.ckpt, out, &o), PF_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "--force"));
    ck_assert_int_eq(file_size(st_path), native);
    ck_assert_int_eq(remove(st_path), 0);
    ck_assert_int_eq(pf_export(s.ckpt, out, &o), PF_EXIT_USAGE);  // config.json alone, too
    ck_assert_int_eq(file_size(st_path), -1);
    o.force = true;
    ck_assert_int_eq(pf_export(s.ckpt, out, &o), PF_EXIT_OK);
    ck_assert_int_ne(file_size(st_path), native);
    // no temporary left behind
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", out);
    ck_assert_int_ne(system(cmd), 0);
    // --out a file; a missing or corrupt checkpoint
    ck_assert_int_eq(pf_export(s.ckpt, st_path, &o), PF_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "not a directory"));
    ck_assert_int_eq(pf_export(pf_test_path("none.h5"), pf_test_path("o2"), &o), PF_EXIT_FAILURE);
    write_bytes(pf_test_path("junk.h5"), "not hdf5", 8);
    ck_assert_int_eq(pf_export(pf_test_path("junk.h5"), pf_test_path("o3"), &o), PF_EXIT_FAILURE);
    ck_assert_int_eq(file_size(pf_test_path("o3")), -1);  // nothing made
    free_model(&s);
}
END_TEST

// The pftrain binary next to this test's directory (BUILD/pftrain), or NULL.
static const char *pftrain_path(void) {
    static char path[1024];
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = 0;
    snprintf(path, sizeof path, "%s/../pftrain", dirname(self));
    return access(path, X_OK) == 0 ? path : NULL;
}

static int run_pftrain(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s export %s >/dev/null 2>&1", pftrain_path(), args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(test_cli_arguments) {
    if (!pftrain_path()) {
        printf("SKIP pftrain export arguments: no pftrain next to the test binary\n");
        return;
    }
    saved_model s;
    save_model(&s, GPT2_PIXELFLY);
    char args[1200];
    ck_assert_int_eq(run_pftrain(""), PF_EXIT_USAGE);
    snprintf(args, sizeof args, "%s", s.ckpt);
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);  // no --out
    snprintf(args, sizeof args, "%s --out %s --dtype fp16", s.ckpt, pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);
    snprintf(args, sizeof args, "%s --out %s --bogus", s.ckpt, pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);
    snprintf(args, sizeof args, "%s --out %s", pf_test_path("none.h5"), pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);  // unreadable checkpoint
    write_bytes(pf_test_path("junk.h5"), "not hdf5", 8);
    snprintf(args, sizeof args, "%s --out %s", pf_test_path("junk.h5"), pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_FAILURE);
    snprintf(args, sizeof args, "%s --out %s --densify --dtype bf16", s.ckpt, pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_OK);
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);  // exists
    snprintf(args, sizeof args, "%s --out %s --densify --force", s.ckpt, pf_test_path("c"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_OK);
    free_model(&s);
    // a layer kind the native format lacks: refused as a usage error, exported densified
    const char *sets[32];
    gpt2_sets(sets, 32, GPT2_KINDS[0].sets);
    save_model(&s, sets);
    snprintf(args, sizeof args, "%s --out %s", s.ckpt, pf_test_path("k"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_USAGE);
    ck_assert_int_eq(file_size(pf_test_path("k")), -1);
    snprintf(args, sizeof args, "%s --out %s --densify", s.ckpt, pf_test_path("k"));
    ck_assert_int_eq(run_pftrain(args), PF_EXIT_OK);
    free_model(&s);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(tc, test_safetensors_roundtrip);
    tcase_add_test(tc, test_safetensors_refuses_bad_files);
    tcase_add_test(tc, test_safetensors_any_header_order);
    tcase_add_test(tc, test_dense_weight_is_the_layer);
    suite_add_tcase(s, tc);
    tc = tcase_create("export");
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_export_gpt2);
    tcase_add_test(tc, test_export_vit);
    tcase_add_test(tc, test_export_mixer);
    tcase_add_test(tc, test_export_gpt2_kinds);
    tcase_add_test(tc, test_export_mixer_kinds);
    tcase_add_test(tc, test_export_refuses_overwrite_and_bad_input);
    tcase_add_test(tc, test_cli_arguments);
    suite_add_tcase(s, tc);
    return s;
}
