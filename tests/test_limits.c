// test_limits.c: sizes from input are checked before anything is allocated from them, and bad
// input ends in a message and an exit code, never a crash: config bounds, duplicate keys, the
// config round trip, the memory plan, the pftrain pattern/sample flags, lying IDX and JPEG
// headers, lying shard shapes, and a full disk under pfdata text. The tool tests run the
// built binaries (next to this test's directory) so that exit codes and signals are real.
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "config.h"
#include "image_shard.h"
#include "memplan.h"
#include "models/model.h"
#include "pfdata.h"
#include "text_shard.h"

// ---- helpers -----------------------------------------------------------------------------

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *read_text(const char *path) {
    char *s = NULL;
    if (pf_read_file(path, &s, NULL) < 0) s = pf_strdup("");
    return s;
}

// BUILD/name for a tool built next to BUILD/tests/ (this binary).
static const char *tool(const char *name) {
    static char buf[4][PATH_MAX];
    static int next;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = 0;
    char *p = buf[next++ % 4];
    snprintf(p, PATH_MAX, "%s/../%s", dirname(exe), name);
    ck_assert_msg(access(p, X_OK) == 0, "%s is not built", p);
    return p;
}

typedef struct {
    int status;  // as waitpid gives it
    char *out, *err;
} run_result;

// Runs argv (argv[0] a path) with stdout and stderr captured; fsize > 0 caps the size of any
// file it writes (RLIMIT_FSIZE, SIGXFSZ ignored), which makes writes fail as on a full disk.
static run_result run(const char *const *argv, long fsize) {
    const char *out = pf_test_path("run.out"), *err = pf_test_path("run.err");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(127);
        if (fsize > 0) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {.rlim_cur = (rlim_t)fsize, .rlim_max = (rlim_t)fsize};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        setenv("OMP_NUM_THREADS", "1", 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    run_result r = {0};
    ck_assert_int_eq(waitpid(pid, &r.status, 0), pid);
    r.out = read_text(out);
    r.err = read_text(err);
    return r;
}

static void free_result(run_result *r) {
    free(r->out);
    free(r->err);
}

// The run exited with `code` (no signal) and stderr holds `needle`.
static void expect_exit(const char *const *argv, int code, const char *needle) {
    run_result r = run(argv, 0);
    ck_assert_msg(WIFEXITED(r.status), "%s %s was killed by signal %d; stderr: %s", argv[0],
                  argv[1], WIFSIGNALED(r.status) ? WTERMSIG(r.status) : -1, r.err);
    ck_assert_msg(WEXITSTATUS(r.status) == code, "%s %s exited %d, not %d; stderr: %s",
                  argv[0], argv[1], WEXITSTATUS(r.status), code, r.err);
    if (needle) ck_assert_msg(strstr(r.err, needle), "stderr lacks '%s': %s", needle, r.err);
    free_result(&r);
}

static const char *write_config(const char *name, const char *text) {
    const char *path = pf_test_path(name);
    write_bytes(path, text, strlen(text));
    return path;
}

#define TINY_GPT2                                                                       \
    "[model]\ntype = gpt2\nn_layer = 1\nn_embd = 32\nn_head = 2\nseq_len = 16\n"          \
    "vocab_size = 50257\n"

// ---- config: bounds, duplicate keys, long lines --------------------------------------------

START_TEST(test_config_upper_bounds) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "train.batch_size=2147483647"), -1);
    ck_assert_msg(strstr(pf_errmsg(), "train.batch_size") && strstr(pf_errmsg(), "65536"), "%s",
                  pf_errmsg());
    ck_assert_int_eq(pf_config_set(&c, "model.seq_len=1000000000"), -1);
    ck_assert_msg(strstr(pf_errmsg(), "limit 1048576"), "%s", pf_errmsg());
    ck_assert_int_eq(pf_config_set(&c, "model.seq_len=99999999999"), -1);  // past int too
    ck_assert_int_eq(pf_config_set(&c, "model.mlp_ratio=1e30"), -1);
    // A layer spec field past int wrapped to another number (rank=4294967304 became 8).
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.mlp_fc1=bs=4 nf=2 rank=4294967304"), -1);
    ck_assert_msg(strstr(pf_errmsg(), "pixelfly.mlp_fc1") && strstr(pf_errmsg(), "4194304"),
                  "%s", pf_errmsg());
    ck_assert_int_eq(pf_config_set(&c, "model.seq_len=1048576"), 0);  // the bound itself
    ck_assert_int_eq(c.seq_len, 1048576);
    // In a file, the message names the file and line.
    const char *path = write_config("big.ini", "[train]\nbatch_size = 100000\n");
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    ck_assert_msg(strstr(pf_errmsg(), "big.ini:2:") && strstr(pf_errmsg(), "batch_size"), "%s",
                  pf_errmsg());
    // `pftrain keys` documents the bounds.
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pf_config_print_keys(f);
    fclose(f);
    ck_assert_msg(strstr(text, "at most 1048576"), "%s", text);
    free(text);
}
END_TEST

START_TEST(test_config_duplicate_key) {
    pf_config c;
    pf_config_defaults(&c);
    const char *path = write_config("dup.ini", "[train]\nlr = 1e-3\nsteps = 10\nlr = 5\n");
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    ck_assert_msg(strstr(pf_errmsg(), "dup.ini:4:") && strstr(pf_errmsg(), "train.lr") &&
                      strstr(pf_errmsg(), "line 2 and line 4"),
                  "%s", pf_errmsg());
    // The same key in two [train] sections is the same mistake.
    path = write_config("dup2.ini", "[train]\nlr = 1e-3\n[run]\nlog_every = 2\n[train]\nlr = 2\n");
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    ck_assert_msg(strstr(pf_errmsg(), "line 2 and line 6"), "%s", pf_errmsg());
    // An indented line continues the key above it: named too, not silently appended.
    path = write_config("cont.ini", "[data]\ntrain = a.h5\n  b.h5\n");
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    ck_assert_msg(strstr(pf_errmsg(), "line 2 and line 3"), "%s", pf_errmsg());
    // Through pf_config_load_string (a checkpoint's config) as well.
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load_string(&c, "[model]\nn_layer = 2\nn_layer = 3\n", "ck"), -1);
    ck_assert_msg(strstr(pf_errmsg(), "ck:3:"), "%s", pf_errmsg());
}
END_TEST

START_TEST(test_config_long_line) {
    pf_config c;
    pf_config_defaults(&c);
    char text[600] = "[data]\ntrain = ";
    size_t n = strlen(text);
    memset(text + n, 'a', 250);
    strcpy(text + n + 250, ".h5\nval = v.h5\n");
    const char *path = write_config("long.ini", text);
    ck_assert_int_eq(pf_config_load(&c, path), -1);  // libinih would split it and go on
    ck_assert_msg(strstr(pf_errmsg(), "long.ini:2:") && strstr(pf_errmsg(), "longer than"), "%s",
                  pf_errmsg());
    char set[400] = "data.train=";
    memset(set + strlen(set), 'b', 250);
    ck_assert_int_eq(pf_config_set(&c, set), -1);
    ck_assert_msg(strstr(pf_errmsg(), "at most"), "%s", pf_errmsg());
    // A NUL byte in a config file is named, not silently ending the file.
    write_bytes(path, "[train]\nlr = 1\0\nsteps = 3\n", 25);
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_load(&c, path), -1);
    ck_assert_msg(strstr(pf_errmsg(), "NUL"), "%s", pf_errmsg());
}
END_TEST

// ---- config round trip -------------------------------------------------------------------

// Sets data.train = value; when accepted, the written config reads back the same value.
// Returns whether it was accepted.
static bool round_trips(const char *value) {
    pf_config c, back;
    pf_config_defaults(&c);
    char set[PF_PATH_MAX + 32];
    snprintf(set, sizeof set, "data.train=%s", value);
    if (pf_config_set(&c, set) < 0) {
        ck_assert_msg(strstr(pf_errmsg(), "data.train"), "%s", pf_errmsg());
        return false;
    }
    char *text = pf_config_to_string(&c);
    pf_config_defaults(&back);
    ck_assert_msg(pf_config_load_string(&back, text, "written") == 0, "'%s': %s", value,
                  pf_errmsg());
    ck_assert_msg(!strcmp(back.train_path, value), "'%s' read back as '%s'", value,
                  back.train_path);
    free(text);
    return true;
}

START_TEST(test_config_round_trip_values) {
    // The values of the issue: each is refused, never written in a form that reads back as
    // something else (before, "; x.h5" came back as an empty path).
    const char *refused[] = {" data/x.h5", "data/x.h5 ", ";x.h5", "data/a ;b.h5",
                             "data/a\t;b.h5", "a\nb", "a\rb", "\tx"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        ck_assert_msg(!round_trips(refused[i]), "'%s' was accepted", refused[i]);
    const char *kept[] = {"", "data/x.h5", "dir with spaces/x.h5", "a;b.h5", "#x", "a=b:c",
                          "[x]", "\"quoted\"", "caf\xc3\xa9.h5"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        ck_assert_msg(round_trips(kept[i]), "'%s' was refused: %s", kept[i], pf_errmsg());
    // Every printable character, alone and between letters and at either end: refused or
    // read back exactly.
    for (int ch = 0x20; ch < 0x7f; ch++) {
        char v[3][8];
        snprintf(v[0], sizeof v[0], "a%cb", ch);
        snprintf(v[1], sizeof v[1], "%cb", ch);
        snprintf(v[2], sizeof v[2], "a%c", ch);
        for (int k = 0; k < 3; k++) round_trips(v[k]);
    }
    // The longest value that fits a config line round-trips; one byte more is refused.
    char longest[PF_CONFIG_LINE_MAX + 8];
    size_t room = PF_CONFIG_LINE_MAX - strlen("train = ");
    memset(longest, 'p', room);
    longest[room] = 0;
    ck_assert(round_trips(longest));
    longest[room] = 'p', longest[room + 1] = 0;
    ck_assert(!round_trips(longest));
}
END_TEST

// ---- memory plan ---------------------------------------------------------------------------

static void tiny_config(pf_config *c) {
    pf_config_defaults(c);
    ck_assert_int_eq(pf_config_load_string(c, TINY_GPT2 "[data]\ntrain = x.h5\n", "tiny"), 0);
}

START_TEST(test_plan_matches_the_model) {
    pf_config c;
    tiny_config(&c);
    c.batch_size = 3;
    pf_mem_plan p;
    ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p), 0);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, 3);
    ck_assert_ptr_nonnull(m);
    // One accounting: the plan is what the model allocates.
    ck_assert_double_eq(p.model.activations, (double)pf_model_activation_bytes(m));
    ck_assert_int_eq(p.model.numel, pf_model_layout(m)->numel);
    ck_assert_double_eq(p.model.params, 4.0 * pf_model_layout(m)->numel);
    ck_assert_double_eq(p.model.weights, 0);  // fp32: the parameters are the weights
    ck_assert(p.device_is_host);
    ck_assert_double_eq_tol(p.device, 16.0 * p.model.numel + p.model.activations, 1);
    ck_assert(p.host >= p.device + p.loader);
    pf_model_free(m);
    // A [pixelfly] pattern that fits no layer fails the plan as it fails the model.
    ck_assert_int_eq(pf_config_set(&c, "pixelfly.mlp_fc1=bs=3 nf=1"), 0);
    ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p), -1);
    ck_assert_msg(strstr(pf_errmsg(), "bs=3"), "%s", pf_errmsg());
}
END_TEST

START_TEST(test_plan_refusal_names_figures_and_keys) {
    pf_config c;
    tiny_config(&c);
    c.batch_size = 8;
    pf_mem_plan p;
    ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p), 0);
    ck_assert_int_eq(pf_mem_plan_fits(&p, &c, 1, 1e12, "test", 0), 0);
    // Room for the parameters and about two samples: refused, with the batch that fits.
    double avail = p.host - 5.5 * p.act_per_sample;
    ck_assert_int_eq(pf_mem_plan_fits(&p, &c, 1, avail, "test memory", 0), -1);
    const char *msg = pf_errmsg();
    ck_assert_msg(strstr(msg, "needs") && strstr(msg, "test memory") &&
                      strstr(msg, "train.batch_size = 2 would fit") &&
                      strstr(msg, "model.seq_len"),
                  "%s", msg);
    // Two ranks on the host need twice as much.
    ck_assert_int_eq(pf_mem_plan_fits(&p, &c, 2, 1.5 * p.host, "test", 0), -1);
    ck_assert_msg(strstr(pf_errmsg(), "2 ranks"), "%s", pf_errmsg());
    // Not even one sample.
    ck_assert_int_eq(pf_mem_plan_fits(&p, &c, 1, p.model.params, "test", 0), -1);
    ck_assert_msg(strstr(pf_errmsg(), "even train.batch_size = 1"), "%s", pf_errmsg());
    // The largest config the bounds allow is planned without overflow and refused on any
    // machine (its logits alone are petabytes).
    ck_assert_int_eq(pf_config_set(&c, "train.batch_size=65536"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.seq_len=1048576"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.vocab_size=4194304"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.n_layer=1024"), 0);  // was an assertion
    ck_assert_int_eq(pf_config_set(&c, "model.n_embd=65536"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.n_head=1024"), 0);
    ck_assert_int_eq(pf_config_set(&c, "model.mlp_ratio=64"), 0);
    ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p), 0);
    ck_assert(isfinite(p.host) && p.host > 1e15);
    ck_assert_msg(p.model.activations > 1e18 && p.model.activations < 1e19,
                  "activations %g: saturated or overflowed", p.model.activations);
    ck_assert_int_eq(pf_mem_plan_check(&p, &c, &pf_backend_cpu, 1), -1);
    char source[800];
    ck_assert(pf_host_mem_available(source, sizeof source) > 0);
    // Vision models at the bounds: planned, refused, nothing allocated.
    const char *vision[] = {"model.type=vit", "model.type=mixer"};
    for (int k = 0; k < 2; k++) {
        tiny_config(&c);
        ck_assert_int_eq(pf_config_set(&c, vision[k]), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.image_size=16384"), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.patch_size=1"), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.channels=4"), 0);
        ck_assert_int_eq(pf_config_set(&c, "model.token_mlp_dim=1048576"), 0);
        ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p), 0);
        ck_assert_int_eq(pf_mem_plan_check(&p, &c, &pf_backend_cpu, 1), -1);
        ck_assert_msg(strstr(pf_errmsg(), "model.image_size"), "%s", pf_errmsg());
    }
}
END_TEST

// On a bf16 device backend the plan counts the compute copy of the weights and the smaller
// activations on the device, and the host keeps only its own buffers; a device that is
// short is named as such. (A copy of the CPU table stands in for the CUDA one: planning
// calls none of its ops.)
START_TEST(test_plan_on_a_bf16_device) {
    pf_config c;
    tiny_config(&c);
    pf_backend dev = pf_backend_cpu;
    dev.act_dtype = PF_BF16;
    dev.device = PF_DEV_CUDA;
    pf_mem_plan p32, p16;
    ck_assert_int_eq(pf_mem_plan_compute(&c, &pf_backend_cpu, &p32), 0);
    ck_assert_int_eq(pf_mem_plan_compute(&c, &dev, &p16), 0);
    ck_assert(!p16.device_is_host);
    ck_assert_double_eq(p16.model.weights, 2.0 * p16.model.numel);
    ck_assert(p16.model.activations < 0.75 * p32.model.activations);
    ck_assert_double_eq_tol(p16.host, p16.model.host + p16.loader + p16.staging, 1);
    ck_assert_int_eq(pf_mem_plan_fits(&p16, &c, 8, 1e12, "test", p16.device), 0);
    ck_assert_int_eq(pf_mem_plan_fits(&p16, &c, 8, 1e12, "test", 0.5 * p16.device), -1);
    ck_assert_msg(strstr(pf_errmsg(), "of device memory") &&
                      strstr(pf_errmsg(), "free on the device") &&
                      strstr(pf_errmsg(), "compute copy of the weights"),
                  "%s", pf_errmsg());
}
END_TEST

// pftrain refuses a run that does not fit, and a bad [pixelfly] spec, with exit 2 (both were
// SIGABRT "out of host memory" or exit 1 before).
START_TEST(test_pftrain_refuses_with_exit_2) {
    const char *cfg = write_config("run.ini", TINY_GPT2 "[data]\ntrain = /nonexistent.h5\n"
                                              "[run]\nout_dir = /nonexistent/run\n");
    const char *pftrain = tool("pftrain");
    expect_exit((const char *[]){pftrain, cfg, "--quiet", "--set", "model.seq_len=1048576",
                                 "--set", "train.batch_size=4096", NULL},
                PF_EXIT_USAGE, "GB is available");
    expect_exit((const char *[]){pftrain, cfg, "--quiet", "--set", "train.batch_size=2147483647",
                                 NULL},
                PF_EXIT_USAGE, "65536");
    expect_exit((const char *[]){pftrain, cfg, "--quiet", "--set",
                                 "pixelfly.mlp_fc1=bs=3 nf=1", NULL},
                PF_EXIT_USAGE, "bs=3");
    // summary shows the same plan, and says it does not fit.
    run_result r = run((const char *[]){pftrain, "summary", cfg, "--set", "model.seq_len=1048576",
                                        "--set", "train.batch_size=4096", NULL},
                       0);
    ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "memory plan on cpu") && strstr(r.out, "does not fit"), "%s",
                  r.out);
    free_result(&r);
}
END_TEST

// ---- pftrain pattern and sample flags ------------------------------------------------------

START_TEST(test_pattern_flags) {
    const char *pftrain = tool("pftrain");
    // Was SIGFPE: the "use one of" list doubled an int past 2^31.
    expect_exit((const char *[]){pftrain, "pattern", "--out", "99999999999", "--in", "64",
                                 "--bs", "4", "--nf", "1", NULL},
                PF_EXIT_USAGE, "[0, 2147483647]");
    expect_exit((const char *[]){pftrain, "pattern", "--out", "2147483647", "--in", "64", "--bs",
                                 "4", "--nf", "1", NULL},
                PF_EXIT_USAGE, "does not divide");
    // A mask's table holds at most PF_PATTERN_MAX_BLOCKS super-blocks.
    expect_exit((const char *[]){pftrain, "pattern", "--out", "1073741824", "--in", "1073741824",
                                 "--bs", "1073741824", "--nf", "1", NULL},
                PF_EXIT_USAGE, "more than the 2048 a mask holds");
    // A huge valid pattern is described without drawing a bs x bs grid.
    run_result r = run((const char *[]){pftrain, "pattern", "--out", "1073741824", "--in",
                                        "1073741824", "--bs", "1024", "--nf", "1", NULL},
                       0);
    ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "not drawn"), "%s", r.out);
    free_result(&r);
}
END_TEST

START_TEST(test_sample_flags) {
    const char *pftrain = tool("pftrain");
    struct { const char *flag, *value, *needle; } bad[] = {
        {"--tokens", "-5", "[0, 1000000]"},    {"--temperature", "-1", ">= 0"},
        {"--temperature", "nan", ">= 0"},      {"--temperature", "inf", ">= 0"},
        {"--top-k", "-3", "[0, 2147483647]"},  {"--tokens", "12x", "[0, 1000000]"},
        {"--seed", "99999999999", "integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_exit((const char *[]){pftrain, "sample", "ckpt.h5", "--vocab", "v", bad[i].flag,
                                     bad[i].value, NULL},
                    PF_EXIT_USAGE, bad[i].needle);
}
END_TEST

// A shard of `n` counting tokens (vocabulary 50257) for the tiny GPT-2.
static const char *write_token_shard(const char *name, int n) {
    const char *path = pf_test_path(name);
    pf_text_shard_writer *w = pf_text_shard_create(path, 50257, 50256, "gpt2-bpe", "test", n);
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < n; i++) {
        int32_t id = i % 50000;
        ck_assert_int_eq(pf_text_shard_append(w, &id, 1), 0);
    }
    ck_assert_int_eq(pf_text_shard_commit(w), 0);
    return path;
}

// Was an assertion failure (the last row of an empty window).
START_TEST(test_sample_empty_prompt) {
    const char *data = pf_test_data_dir("GPT-2 vocabulary for pftrain sample");
    if (!data) return;
    char vocab[PATH_MAX];
    snprintf(vocab, sizeof vocab, "%s/gpt2", data);
    const char *shard = write_token_shard("t.h5", 2000);
    char text[1024];
    snprintf(text, sizeof text,
             TINY_GPT2 "[data]\ntrain = %s\n[train]\nbatch_size = 2\nsteps = 1\nwarmup_steps = 1\n"
                       "[run]\nout_dir = %s\n",
             shard, pf_test_path("run"));
    const char *cfg = write_config("s.ini", text);
    expect_exit((const char *[]){tool("pftrain"), cfg, "--quiet", NULL}, PF_EXIT_OK, NULL);
    const char *ckpt = pf_test_path("run/checkpoints/ckpt-00000001.h5");
    ck_assert_msg(access(ckpt, F_OK) == 0, "no %s", ckpt);
    expect_exit((const char *[]){tool("pftrain"), "sample", ckpt, "--vocab", vocab, "--prompt",
                                 "", "--tokens", "3", "--temperature", "0", NULL},
                PF_EXIT_OK, NULL);
}
END_TEST

// ---- converters: lying headers ---------------------------------------------------------

static void put_be32(uint8_t *p, uint32_t v) {
    for (int b = 0; b < 4; b++) p[b] = (uint8_t)(v >> (24 - 8 * b));
}

static int run_images(const char **args) {
    int argc = 0;
    while (args[argc]) argc++;
    return pfdata_images_main(argc, (char **)args);
}

// Was an abort ("out of host memory") allocating 1024 images of 65536 x 65536.
START_TEST(test_idx_header_larger_than_file) {
    uint8_t lab[8 + 3] = {0}, img[16 + 48] = {0};
    put_be32(lab, 0x801), put_be32(lab + 4, 3);
    put_be32(img, 0x803), put_be32(img + 4, 3), put_be32(img + 8, 65536), put_be32(img + 12, 65536);
    write_bytes(pf_test_path("lab"), lab, sizeof lab);
    write_bytes(pf_test_path("img"), img, sizeof img);
    const char *out = pf_test_path("o.h5");
    ck_assert_int_eq(run_images((const char *[]){"images", "--quiet", "--format", "idx", "--out",
                                                 out, pf_test_path("img"), pf_test_path("lab"),
                                                 NULL}),
                     PF_EXIT_FAILURE);
    ck_assert_msg(strstr(pf_errmsg(), "truncated"), "%s", pf_errmsg());
    ck_assert(access(out, F_OK) != 0);
    // gzip'd, the file can hold at most 1032 bytes per byte: still refused up front.
    gzFile g = gzopen(pf_test_path("img.gz"), "wb");
    ck_assert_int_eq(gzwrite(g, img, sizeof img), (int)sizeof img);
    gzclose(g);
    ck_assert_int_eq(run_images((const char *[]){"images", "--quiet", "--format", "idx", "--out",
                                                 out, pf_test_path("img.gz"), pf_test_path("lab"),
                                                 NULL}),
                     PF_EXIT_FAILURE);
    // A labels header announcing 4 billion labels in an 8-byte file.
    put_be32(lab + 4, 0xffffffffu);
    write_bytes(pf_test_path("lab"), lab, 8);
    ck_assert_int_eq(run_images((const char *[]){"images", "--quiet", "--format", "idx", "--out",
                                                 out, pf_test_path("img"), pf_test_path("lab"),
                                                 NULL}),
                     PF_EXIT_FAILURE);
}
END_TEST

// A real 16 x 16 JPEG whose SOF header is rewritten to claim w x h pixels.
static void write_lying_jpeg(const char *path, int w, int h) {
    uint8_t rgb[16 * 16 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 7);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    ck_assert_int_eq(tjCompress2(tj, rgb, 16, 0, 16, TJPF_RGB, &jpeg, &size, TJSAMP_444, 90, 0), 0);
    bool patched = false;
    for (unsigned long i = 2; i + 9 < size && !patched; i++)
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {  // SOF0: FF C0 len(2) prec(1) h(2) w(2)
            jpeg[i + 5] = (uint8_t)(h >> 8), jpeg[i + 6] = (uint8_t)h;
            jpeg[i + 7] = (uint8_t)(w >> 8), jpeg[i + 8] = (uint8_t)w;
            patched = true;
        }
    ck_assert(patched);
    write_bytes(path, jpeg, size);
    tjFree(jpeg);
    tjDestroy(tj);
}

// Was accepted and decoded (hundreds of MB) under --on-corrupt stop.
START_TEST(test_jpeg_header_larger_than_file) {
    const char *root = pf_test_path("jpg");
    char cls[PATH_MAX], file[PATH_MAX + 16];
    snprintf(cls, sizeof cls, "%s/cat", root);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(cls, 0755), 0);
    int sizes[][2] = {{65000, 65000}, {8000, 8000}};  // over the pixel cap; over pixels/byte
    for (int k = 0; k < 2; k++) {
        snprintf(file, sizeof file, "%s/a.jpg", cls);
        write_lying_jpeg(file, sizes[k][0], sizes[k][1]);
        const char *out = pf_test_path("j.h5");
        ck_assert_int_eq(run_images((const char *[]){"images", "--quiet", "--format", "imagenet",
                                                     "--size", "8", "--out", out, root, NULL}),
                         PF_EXIT_FAILURE);
        ck_assert_msg(strstr(pf_errmsg(), "claims"), "%s", pf_errmsg());
        ck_assert(access(out, F_OK) != 0);
    }
}
END_TEST

// ---- shard readers: shapes larger than the file ----------------------------------------

static void int_attr(hid_t loc, const char *name, int v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

START_TEST(test_shards_announcing_more_than_stored) {
    // An image shard of 2^30 images of 64 x 64 with no pixel stored (a few KB of file).
    const char *img = pf_test_path("img.h5");
    hid_t f = H5Fcreate(img, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {1u << 30, 64, 64, 1}, chunk[4] = {1, 64, 64, 1}, ln = 1u << 30;
    hid_t sp = H5Screate_simple(4, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    H5Dclose(H5Dcreate2(f, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Sclose(sp);
    sp = H5Screate_simple(1, &ln, NULL);
    hsize_t lchunk = 1024;
    H5Pset_chunk(dcpl, 1, &lchunk);
    H5Dclose(H5Dcreate2(f, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Fclose(f);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, img), -1);
    ck_assert_msg(strstr(pf_errmsg(), "truncated or damaged"), "%s", pf_errmsg());
    pf_image_shard_close(&s);
    // A token shard of 2^36 tokens with none stored.
    const char *tok = pf_test_path("tok.h5");
    f = H5Fcreate(tok, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = (hsize_t)1 << 36, tchunk = 4096;
    sp = H5Screate_simple(1, &n, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &tchunk);
    H5Dclose(H5Dcreate2(f, "tokens", H5T_STD_U16LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Pclose(dcpl);
    H5Sclose(sp);
    int_attr(f, "vocab_size", 50257);
    int_attr(f, "eot_token", 50256);
    H5Fclose(f);
    ck_assert_ptr_null(pf_text_shard_open(tok));
    ck_assert_msg(strstr(pf_errmsg(), "truncated or damaged"), "%s", pf_errmsg());
}
END_TEST

// ---- pfdata text on a full disk --------------------------------------------------------

// Was: the right message, then a wall of HDF5 diagnostics and a segfault at exit. A file size
// limit makes the writes fail as a full disk does, without root.
START_TEST(test_pfdata_text_full_disk) {
    const char *data = pf_test_data_dir("GPT-2 vocabulary for pfdata text");
    if (!data) return;
    char vocab[PATH_MAX];
    snprintf(vocab, sizeof vocab, "%s/gpt2", data);
    const char *in = pf_test_path("in.txt"), *out = pf_test_path("out.h5");
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 20000; i++) fprintf(f, "word%d and some more text %d\n", i, i * 7);
    fclose(f);
    run_result r = run((const char *[]){tool("pfdata"), "text", "--quiet", "--vocab", vocab,
                                        "--out", out, in, NULL},
                       64 << 10);
    ck_assert_msg(WIFEXITED(r.status), "pfdata was killed by signal %d; stderr: %.2000s",
                  WIFSIGNALED(r.status) ? WTERMSIG(r.status) : -1, r.err);
    ck_assert_int_eq(WEXITSTATUS(r.status), PF_EXIT_FAILURE);
    ck_assert_msg(strstr(r.err, "pfdata text:"), "%s", r.err);
    ck_assert_msg(!strstr(r.err, "HDF5-DIAG"), "%.2000s", r.err);
    free_result(&r);
    ck_assert(access(out, F_OK) != 0);
    run_result ls = run((const char *[]){"/bin/ls", pf_test_tmpdir(), NULL}, 0);
    ck_assert_msg(!strstr(ls.out, ".tmp."), "temporary left behind: %s", ls.out);
    free_result(&ls);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_config_upper_bounds);
    tcase_add_test(tc, test_config_duplicate_key);
    tcase_add_test(tc, test_config_long_line);
    tcase_add_test(tc, test_config_round_trip_values);
    tcase_add_test(tc, test_plan_matches_the_model);
    tcase_add_test(tc, test_plan_refusal_names_figures_and_keys);
    tcase_add_test(tc, test_plan_on_a_bf16_device);
    tcase_add_test(tc, test_pftrain_refuses_with_exit_2);
    tcase_add_test(tc, test_pattern_flags);
    tcase_add_test(tc, test_sample_flags);
    tcase_add_test(tc, test_sample_empty_prompt);
    tcase_add_test(tc, test_idx_header_larger_than_file);
    tcase_add_test(tc, test_jpeg_header_larger_than_file);
    tcase_add_test(tc, test_shards_announcing_more_than_stored);
    tcase_add_test(tc, test_pfdata_text_full_disk);
    suite_add_tcase(s, tc);
    return s;
}
