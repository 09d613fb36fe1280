// test_config.c: the .ini configuration (config.h): defaults, a good file, every kind of
// user mistake and its message (file:line, key, value, near-miss suggestion), --set
// overrides, the cross-key checks, the write -> load round trip, and every shipped config in
// configs/ loading, validating and building its model (which catches a Pixelfly pattern that
// does not fit one of its layers).
#include <check.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "config.h"
#include "models/model.h"

// ---- fixtures --------------------------------------------------------------------------

// Writes `text` to a new .ini file in the test's scratch directory and returns its path.
static const char *write_ini(const char *text) {
    static int count;
    char name[32];
    snprintf(name, sizeof name, "c%d.ini", count++);
    const char *path = pf_test_path(name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

// Loads `text` over the defaults, expects failure, and checks that the message contains
// every string of the NULL-terminated list.
static void expect_load_error(const char *text, const char *const *needles) {
    pf_config c;
    pf_config_defaults(&c);
    const char *path = write_ini(text);
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    const char *msg = pf_errmsg();
    ck_assert_msg(strstr(msg, path), "message '%s' does not name the file", msg);
    for (const char *const *n = needles; *n; n++)
        ck_assert_msg(strstr(msg, *n), "message '%s' lacks '%s'", msg, *n);
}

#define EXPECT_LOAD_ERROR(text, ...) \
    expect_load_error(text, (const char *const[]){__VA_ARGS__, NULL})

static void expect_set_error(const char *assignment, const char *needle) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, assignment), -1);
    ck_assert_msg(strstr(pf_errmsg(), needle), "--set '%s': message '%s' lacks '%s'",
                  assignment, pf_errmsg(), needle);
}

// ---- defaults and a good file ----------------------------------------------------------

START_TEST(test_defaults) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(c.model, PF_MODEL_GPT2);
    ck_assert_int_eq(c.n_layer, 4);
    ck_assert_int_eq(c.n_embd, 128);
    ck_assert_int_eq(c.vocab_size, 50257);
    ck_assert_float_eq(c.lr, 6e-4f);
    ck_assert_int_eq(c.schedule, PF_SCHED_COSINE);
    ck_assert_int_eq((int)c.seed, 1337);
    ck_assert(!c.hflip);
    ck_assert_float_eq(c.mixup_alpha, 0);
    ck_assert_float_eq(c.cutmix_alpha, 0);
    ck_assert_int_eq(c.mlp_fc1.kind, PF_LAYER_AUTO);  // dense without a budget
    ck_assert_int_eq(pf_config_layer_kind(&c, &c.mlp_fc1), PF_LAYER_DENSE);
    ck_assert_str_eq(c.out_dir, "runs/default");
    ck_assert_str_eq(c.train_path, "");
    // the defaults only lack the training shard
    ck_assert_int_eq(pf_config_validate(&c), -1);
    ck_assert_int_eq(pf_config_set(&c, "data.train=x.h5"), 0);
    ck_assert_int_eq(pf_config_validate(&c), 0);
}
END_TEST

START_TEST(test_good_file) {
    pf_config c;
    pf_config_defaults(&c);
    const char *path = write_ini("; a comment\n"
                                 "[model]\n"
                                 "type = mixer\n"
                                 "n_layer = 2\n"
                                 "n_embd = 64\n"
                                 "image_size = 32\n"
                                 "patch_size = 8\n"
                                 "channels = 3\n"
                                 "\n[pixelfly]\n"
                                 "mlp_fc1 = rank=4 nf=2 bs=8\n"
                                 "token_fc2 = bs=4 nf=1\n"
                                 "\n[data]\n"
                                 "train = some/train.h5\n"
                                 "\n[train]\n"
                                 "lr = 1.5e-3\n"
                                 "steps = 5000000000\n"
                                 "schedule = linear\n"
                                 "hflip = true\n"
                                 "\n[run]\n"
                                 "backend = cpu\n");
    ck_assert_msg(pf_config_load(&c, path) == 0, "%s", pf_errmsg());
    ck_assert_int_eq(c.model, PF_MODEL_MIXER);
    ck_assert_int_eq(c.n_layer, 2);
    ck_assert_int_eq(c.n_embd, 64);
    ck_assert_int_eq(c.channels, 3);
    ck_assert_int_eq(c.mlp_fc1.kind, PF_LAYER_PIXELFLY);
    ck_assert_int_eq(c.mlp_fc1.bs, 8);
    ck_assert_int_eq(c.mlp_fc1.nf, 2);
    ck_assert_int_eq(c.mlp_fc1.rank, 4);
    ck_assert_int_eq(c.token_fc2.kind, PF_LAYER_PIXELFLY);
    ck_assert_int_eq(c.token_fc2.rank, 0);
    ck_assert_int_eq(pf_config_layer_kind(&c, &c.mlp_fc2), PF_LAYER_DENSE);
    ck_assert_str_eq(c.train_path, "some/train.h5");
    ck_assert_float_eq(c.lr, 1.5e-3f);
    ck_assert(c.steps == 5000000000LL);
    ck_assert_int_eq(c.schedule, PF_SCHED_LINEAR);
    ck_assert(c.hflip);
    ck_assert_int_eq(c.backend, PF_BACKEND_CPU);
    ck_assert_int_eq(c.n_head, 4);  // untouched keys keep their defaults
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
}
END_TEST

// ---- mistakes in a file ----------------------------------------------------------------

// Reported at the section's first key (libinih calls back per key).
START_TEST(test_unknown_section) {
    EXPECT_LOAD_ERROR("[model]\nn_layer = 2\n[optim]\nlr = 1\n", ":4:", "[optim]", "train");
}
END_TEST

START_TEST(test_unknown_key_suggestion) {
    EXPECT_LOAD_ERROR("[model]\nn_layer = 2\n\n[train]\nlrr = 1e-3\n", ":5:", "'lrr'",
                      "did you mean 'train.lr'?");
    // a key in the wrong section is suggested in the right one
    EXPECT_LOAD_ERROR("[train]\nn_embd = 64\n", ":2:", "did you mean 'model.n_embd'?");
    // nothing close: no suggestion
    EXPECT_LOAD_ERROR("[train]\nwhatever_this_is = 1\n", ":2:", "'whatever_this_is'");
    ck_assert_ptr_null(strstr(pf_errmsg(), "did you mean"));
}
END_TEST

START_TEST(test_bad_values) {
    EXPECT_LOAD_ERROR("[model]\nn_layer = four\n", ":2:", "model.n_layer", "'four'");
    EXPECT_LOAD_ERROR("[model]\nn_layer = -3\n", ":2:", "model.n_layer", "'-3'");
    EXPECT_LOAD_ERROR("[model]\nn_embd = 12x\n", ":2:", "model.n_embd", "'12x'");
    EXPECT_LOAD_ERROR("[train]\nlr = fast\n", ":2:", "train.lr", "'fast'");
    EXPECT_LOAD_ERROR("[train]\nlr = inf\n", ":2:", "train.lr", "'inf'");
    EXPECT_LOAD_ERROR("[train]\nschedule = cosin\n", ":2:", "train.schedule", "'cosin'",
                      "cosine|linear|constant");
    EXPECT_LOAD_ERROR("[model]\ntype = resnet\n", ":2:", "model.type", "'resnet'");
    EXPECT_LOAD_ERROR("[train]\nhflip = yes\n", ":2:", "train.hflip", "'yes'", "true or false");
    EXPECT_LOAD_ERROR("[run]\nbackend = tpu\n", ":2:", "run.backend", "'tpu'");
}
END_TEST

START_TEST(test_bad_layer_spec) {
    EXPECT_LOAD_ERROR("[pixelfly]\nmlp_fc1 = bs=8\n", ":2:", "pixelfly.mlp_fc1", "nf=");
    EXPECT_LOAD_ERROR("[pixelfly]\nmlp_fc1 = bs=8 nf=2 rnk=4\n", ":2:", "pixelfly.mlp_fc1",
                      "'rnk'");
    EXPECT_LOAD_ERROR("[pixelfly]\nattn_qkv = bs=x nf=2\n", ":2:", "pixelfly.attn_qkv",
                      "bs=x");
    EXPECT_LOAD_ERROR("[pixelfly]\nattn_qkv = sparse\n", ":2:", "pixelfly.attn_qkv", "sparse");
    pf_layer_spec s;
    ck_assert_int_eq(pf_layer_spec_parse(&s, "dense"), 0);
    ck_assert_int_eq(s.kind, PF_LAYER_DENSE);
    ck_assert_int_eq(pf_layer_spec_parse(&s, "pixelfly bs=4, nf=1, rank=2"), 0);
    ck_assert(s.kind == PF_LAYER_PIXELFLY && s.bs == 4 && s.nf == 1 && s.rank == 2);
    char buf[96];
    pf_layer_spec_format(&s, buf, sizeof buf);
    ck_assert_str_eq(buf, "bs=4 nf=1 rank=2");
    // every kind parses, formats and parses back to itself
    const char *forms[][2] = {
        {"auto", "auto"},
        {"butterfly bs=16", "butterfly bs=16"},
        {"lowrank rank=96", "lowrank rank=96"},
        {"blocksparse bs=16 blocks=3 seed=5", "blocksparse bs=16 blocks=3 rank=0 seed=5"},
        {"blocksparse bs=8 blocks=2 rank=4", "blocksparse bs=8 blocks=2 rank=4 seed=1"},
    };
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(pf_layer_spec_parse(&s, forms[i][0]) == 0, "%s: %s", forms[i][0],
                      pf_errmsg());
        pf_layer_spec_format(&s, buf, sizeof buf);
        ck_assert_str_eq(buf, forms[i][1]);
        pf_layer_spec back;
        ck_assert_int_eq(pf_layer_spec_parse(&back, buf), 0);
        ck_assert(memcmp(&back, &s, sizeof s) == 0);
    }
    // fields a kind does not take, missing ones, repeats, a kind word not first
    const char *bad[][2] = {
        {"butterfly bs=8 nf=2", "'nf'"},        {"lowrank bs=8", "'bs'"},
        {"lowrank rank=0", "rank >= 1"},       {"blocksparse bs=8", "blocks="},
        {"bs=8 nf=1 bs=4", "twice"},           {"dense bs=4", "no fields"},
        {"bs=8 butterfly", "'butterfly'"},     {"", "empty"},
        {"blocksparse bs=8 blocks=2 seed=-1", "seed=-1"},
        // butterfly and lowrank take no optional field (the table once ended before them)
        {"butterfly bs=8 rank=2", "'rank'"},   {"butterfly bs=8 seed=2", "'seed'"},
        {"lowrank rank=4 seed=3", "'seed'"},   {"lowrank rank=4 blocks=1", "'blocks'"},
        {"lowrank =lowrank", "unknown field ''"},
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof *bad); i++) {
        ck_assert_msg(pf_layer_spec_parse(&s, bad[i][0]) == -1, "%s accepted", bad[i][0]);
        ck_assert_msg(strstr(pf_errmsg(), bad[i][1]), "%s: %s", bad[i][0], pf_errmsg());
    }
}
END_TEST

START_TEST(test_syntax_error) {
    EXPECT_LOAD_ERROR("[model]\nn_layer = 2\nthis line has no equals sign\n", ":3:", "syntax");
}
END_TEST

START_TEST(test_missing_file) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load(&c, "/nonexistent/dir/run.ini"), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "/nonexistent/dir/run.ini"));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "No such file"));
}
END_TEST

// ---- --set -----------------------------------------------------------------------------

START_TEST(test_set) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "train.lr=3e-4"), 0);
    ck_assert_float_eq(c.lr, 3e-4f);
    ck_assert_int_eq(pf_config_set(&c, "model.type=vit"), 0);
    ck_assert_int_eq(c.model, PF_MODEL_VIT);
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.mlp_fc2=bs=4 nf=2 rank=8"), 0);
    ck_assert(c.mlp_fc2.kind == PF_LAYER_PIXELFLY && c.mlp_fc2.bs == 4 && c.mlp_fc2.nf == 2);
    ck_assert_int_eq(c.mlp_fc2.rank, 8);
    ck_assert_int_eq(pf_config_set(&c, "data.train=a/b.c=d.h5"), 0);  // '=' in the value
    ck_assert_str_eq(c.train_path, "a/b.c=d.h5");

    expect_set_error("train.lrr=1", "did you mean 'train.lr'?");
    expect_set_error("train.lrr=1", "train.lrr");
    expect_set_error("lr=1", "section.key=value");
    expect_set_error("train.lr", "section.key=value");
    expect_set_error("train.lr=abc", "train.lr");
    expect_set_error("train.lr=abc", "'abc'");
    expect_set_error("model.n_layer=1.5", "'1.5'");
}
END_TEST

// ---- cross-key checks ------------------------------------------------------------------

static void expect_invalid(const char *const *sets, const char *needle) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "data.train=t.h5"), 0);
    for (const char *const *s = sets; *s; s++) ck_assert_int_eq(pf_config_set(&c, *s), 0);
    ck_assert_int_eq(pf_config_validate(&c), -1);
    ck_assert_msg(strstr(pf_errmsg(), needle), "message '%s' lacks '%s'", pf_errmsg(), needle);
}

#define EXPECT_INVALID(needle, ...) expect_invalid((const char *const[]){__VA_ARGS__, NULL}, needle)

START_TEST(test_validate) {
    EXPECT_INVALID("n_head", "model.n_embd=100", "model.n_head=3");
    EXPECT_INVALID("patch_size", "model.type=vit", "model.image_size=30", "model.patch_size=4");
    EXPECT_INVALID("patch_size", "model.type=mixer", "model.image_size=28",
                   "model.patch_size=5");
    EXPECT_INVALID("n_layer", "model.n_layer=0");
    EXPECT_INVALID("num_classes", "model.type=mixer", "model.num_classes=1");
    EXPECT_INVALID("label_smoothing", "train.label_smoothing=1");
    EXPECT_INVALID("train.dropout = 1", "train.dropout=1");
    EXPECT_INVALID("train.dropout = -0.1", "train.dropout=-0.1");
    EXPECT_INVALID("train.mixup_alpha", "model.type=mixer", "train.mixup_alpha=-0.2");
    EXPECT_INVALID("train.cutmix_alpha", "model.type=vit", "train.cutmix_alpha=-1");
    // mixing is for vision models: the default gpt2 refuses it, naming the key
    EXPECT_INVALID("train.mixup_alpha", "train.mixup_alpha=0.2");
    EXPECT_INVALID("train.cutmix_alpha", "train.cutmix_alpha=1");
    // the recomputing MLP needs both MLP layers Pixelfly, and names the dense one
    EXPECT_INVALID("pixelfly.mlp_fc1 is not", "pixelfly.recompute_mlp=true",
                   "pixelfly.mlp_fc2=bs=4 nf=2");
    EXPECT_INVALID("pixelfly.mlp_fc2 is not", "pixelfly.recompute_mlp=true",
                   "pixelfly.mlp_fc1=bs=4 nf=2");
    EXPECT_INVALID("pixelfly.recompute_mlp", "pixelfly.recompute_mlp=true");

    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_validate(&c), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "data.train"));
    // a mixer does not need n_embd % n_head
    ck_assert_int_eq(pf_config_set(&c, "data.train=t.h5"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.type=mixer"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.n_head=3"), 0);
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
    // and may mix: both alphas at once are allowed
    ck_assert_int_eq(pf_config_set(&c, "train.mixup_alpha=0.8"), 0);
    ck_assert_int_eq(pf_config_set(&c, "train.cutmix_alpha=1.0"), 0);
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
    // a Mixer may recompute its (channel) MLP with a dense token MLP
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.recompute_mlp=true"), 0);
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.mlp_fc1=bs=4 nf=2 rank=2"), 0);
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.mlp_fc2=bs=4 nf=1"), 0);
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
}
END_TEST

// ---- write -> load round trip ----------------------------------------------------------

START_TEST(test_round_trip) {
    static const char *const sets[] = {
        "model.type=vit",           "model.n_layer=3",
        "model.mlp_ratio=2.75",     "model.init_std=0.0137",
        "pixelfly.attn_qkv=bs=4 nf=2 rank=3", "pixelfly.token_fc1=bs=2 nf=1",
        "data.train=/x/train.h5",   "data.val=rel/val.h5",
        "train.lr=3.3e-4",          "train.beta2=0.999",
        "train.eps=1e-7",           "train.steps=123456789012",
        "train.seed=98765",         "train.schedule=constant",
        "train.hflip=true",         "train.augment_scale_min=0.35",
        "train.mixup_alpha=0.2",    "train.cutmix_alpha=1.5",
        "run.backend=cuda",         "run.bucket_bytes=1048576",
    };
    pf_config a;
    pf_config_defaults(&a);
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_msg(pf_config_set(&a, sets[i]) == 0, "%s", pf_errmsg());
    char *text = pf_config_to_string(&a);
    pf_config b;
    pf_config_defaults(&b);
    ck_assert_msg(pf_config_load_string(&b, text, "roundtrip") == 0, "%s", pf_errmsg());
    ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "config differs after round trip:\n%s", text);
    // and through a file
    pf_config d;
    pf_config_defaults(&d);
    ck_assert_msg(pf_config_load(&d, write_ini(text)) == 0, "%s", pf_errmsg());
    ck_assert(memcmp(&a, &d, sizeof a) == 0);
    free(text);

    // load_string reports errors with its origin and line
    ck_assert_int_eq(pf_config_load_string(&b, "[train]\nlr = x\n", "ckpt:/config"), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "ckpt:/config:2:"));
}
END_TEST

// ---- the shipped configs ---------------------------------------------------------------

// Every configs/*.ini loads, validates, and builds its model (B=1) on the CPU backend. The
// layer shapes (and so whether each Pixelfly pattern fits) do not depend on n_layer, seq_len
// or vocab_size, so these are shrunk first to keep paper-size models small in memory.
START_TEST(test_shipped_configs) {
    glob_t g;
    ck_assert_msg(glob("configs/*.ini", 0, NULL, &g) == 0,
                  "no configs/*.ini: run the test from the repository root");
    ck_assert_int_ge((int)g.gl_pathc, 4);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *path = g.gl_pathv[i];
        pf_config c;
        pf_config_defaults(&c);
        ck_assert_msg(pf_config_load(&c, path) == 0, "%s", pf_errmsg());
        ck_assert_msg(pf_config_validate(&c) == 0, "%s: %s", path, pf_errmsg());
        ck_assert_int_eq(pf_config_set(&c, "model.n_layer=1"), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.seq_len=8"), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.vocab_size=64"), 0);
        pf_model *m = pf_model_create(&c, &pf_backend_cpu, 1);
        ck_assert_msg(m != NULL, "%s: %s", path, pf_errmsg());
        const pf_layer_spec *specs[] = {&c.attn_qkv, &c.attn_proj, &c.mlp_fc1,
                                        &c.mlp_fc2,  &c.token_fc1, &c.token_fc2};
        bool any_pixelfly = false;
        for (int i = 0; i < 6; i++)
            any_pixelfly |= pf_config_layer_kind(&c, specs[i]) != PF_LAYER_DENSE;
        double flops = pf_model_train_flops(m, false), dense = pf_model_train_flops(m, true);
        if (any_pixelfly) ck_assert_msg(flops < dense, "%s: %g >= %g", path, flops, dense);
        else ck_assert_msg(flops == dense, "%s: dense config %g != %g", path, flops, dense);
        pf_model_free(m);
    }
    globfree(&g);
}
END_TEST

// A former key name (pixelfly.fuse_mlp) still sets its key, from --set and from a file (an old
// run's config.ini or checkpoint), and the config is written under the new name only.
START_TEST(test_renamed_key_alias) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.fuse_mlp=true"), 0);
    ck_assert(c.recompute_mlp);
    pf_config_defaults(&c);
    ck_assert_msg(pf_config_load(&c, write_ini("[pixelfly]\nfuse_mlp = true\n")) == 0, "%s",
                  pf_errmsg());
    ck_assert(c.recompute_mlp);
    char *text = pf_config_to_string(&c);
    ck_assert_ptr_nonnull(strstr(text, "recompute_mlp = true"));
    ck_assert_ptr_null(strstr(text, "fuse_mlp"));
    free(text);
    // both names at once is one key given twice
    EXPECT_LOAD_ERROR("[pixelfly]\nrecompute_mlp = true\nfuse_mlp = false\n", "given twice");
}
END_TEST

// `pftrain keys`: every key the writer emits is listed, with its default and meaning.
START_TEST(print_keys_lists_every_key) {
    char *keys = NULL, *written = NULL;
    size_t klen = 0;
    FILE *f = open_memstream(&keys, &klen);
    pf_config_print_keys(f);
    fclose(f);
    pf_config c;
    pf_config_defaults(&c);
    written = pf_config_to_string(&c);
    char section[32] = "", line[256];
    int n = 0;
    for (char *save, *l = strtok_r(written, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)strlen(l) - 2, l + 1);
            continue;
        }
        char key[64];
        ck_assert_int_eq(sscanf(l, "%63s =", key), 1);
        snprintf(line, sizeof line, "\n%s.%s ", section, key);
        ck_assert_msg(strstr(keys, line) != NULL, "'%s.%s' missing from the key list", section, key);
        n++;
    }
    ck_assert_int_gt(n, 40);
    ck_assert_ptr_nonnull(strstr(keys, "train.lr                   6e-4"));
    ck_assert_ptr_nonnull(strstr(keys, "auto|cpu|cuda"));
    free(keys);
    free(written);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(tc, print_keys_lists_every_key);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_good_file);
    tcase_add_test(tc, test_unknown_section);
    tcase_add_test(tc, test_unknown_key_suggestion);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_bad_layer_spec);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_set);
    tcase_add_test(tc, test_renamed_key_alias);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_shipped_configs);
    suite_add_tcase(s, tc);
    return s;
}
