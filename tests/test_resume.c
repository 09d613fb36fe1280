// test_resume.c: the run directory's safety rules and the trainer's failure paths, end to end
// through pf_train (world = 1, a tiny GPT-2 on a synthetic 256-word shard, seconds per run):
//   - --resume auto never restarts a run directory that holds checkpoints from step 0: a
//     changed model-shape key is refused naming each key (old -> new), even when the parameter
//     shapes agree (n_head); all-corrupt checkpoints are refused listing every file; in both
//     cases exit 2 and nothing in the directory changes; keys that may change are reported;
//   - a new run (no --resume) into a directory that holds a run is refused (exit 2) unless
//     --new-run, which moves the old run into previous-N, byte for byte;
//   - a checkpoint written at another global batch (ranks x train.batch_size), or over a
//     training split of another size (shards added or removed), is refused;
//   - resuming a finished run leaves summary.json as it was;
//   - divergence is caught before the update: exit 1 (not an abort), and every checkpoint on
//     disk, `latest` included, holds finite values only; a non-finite checkpoint left by an
//     older trainer is refused on resume rather than resumed into the same divergence;
//   - error messages carry the runtime context's prefix ("pftrain[rank 3@host]: "), pf_fatal_at
//     included.
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "backend.h"
#include "check_main.h"
#include "checkpoint.h"
#include "comm.h"
#include "common.h"
#include "config.h"
#include "models/model.h"
#include "rng.h"
#include "text_shard.h"
#include "train.h"

enum { VOCAB = 256, T = 16 };

// ---- fixtures --------------------------------------------------------------------------

// A shard of random tokens below VOCAB at `path`.
static void make_shard(const char *path, int windows) {
    pf_text_shard_writer *w =
        pf_text_shard_create(path, VOCAB, VOCAB - 1, "test", "synthetic", 64);
    ck_assert_msg(w, "%s", pf_errmsg());
    pf_rng r;
    pf_rng_seed(&r, 5);
    for (int i = 0; i < windows * T + 1; i++) {
        int32_t id = (int32_t)pf_rng_below(&r, VOCAB - 1);
        ck_assert_int_eq(pf_text_shard_append(w, &id, 1), 0);
    }
    ck_assert_msg(pf_text_shard_commit(w) == 0, "%s", pf_errmsg());
}

// The tiny model's config with the run in TMP/run, then `extra` overrides (NULL-terminated).
static void make_config(pf_config *c, const char *const *extra) {
    static const char *const base[] = {
        "model.type=gpt2", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
        "model.seq_len=16", "model.vocab_size=256", "train.batch_size=4", "train.steps=4",
        "train.lr=2e-3", "train.warmup_steps=1", "train.eval_every=0", "train.eval_batches=2",
        "run.checkpoint_every=2", "run.keep_checkpoints=0", "run.backend=cpu",
        "run.log_every=1000", NULL};
    char train[600], val[600], out[600];
    snprintf(train, sizeof train, "data.train=%s", pf_test_path("shard.h5"));
    snprintf(val, sizeof val, "data.val=%s", pf_test_path("shard.h5"));
    snprintf(out, sizeof out, "run.out_dir=%s", pf_test_path("run"));
    pf_config_defaults(c);
    const char *const paths[] = {train, val, out, NULL};
    const char *const *lists[] = {base, paths, extra};
    for (int l = 0; l < 3; l++)
        for (const char *const *s = lists[l]; s && *s; s++)
            ck_assert_msg(pf_config_set(c, *s) == 0, "%s: %s", *s, pf_errmsg());
    ck_assert_msg(pf_config_validate(c) == 0, "%s", pf_errmsg());
}

static char *slurp(const char *path) {
    char *text = NULL;
    if (pf_read_file(path, &text, NULL) < 0) return pf_strdup("");
    return text;
}

typedef struct {
    int rc;
    char *out, *err;  // what pf_train printed on stdout and stderr
} run_result;

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

// pf_train with the config `extra` and `opts`, stdout and stderr captured.
static run_result train(pf_comm *comm, const char *const *extra, pf_train_opts opts) {
    pf_config c;
    make_config(&c, extra);
    opts.quiet = true;
    fflush(stdout);
    fflush(stderr);
    int out = dup(STDOUT_FILENO), err = dup(STDERR_FILENO);
    ck_assert(freopen(pf_test_path("stdout.txt"), "w", stdout));
    ck_assert(freopen(pf_test_path("stderr.txt"), "w", stderr));
    run_result r = {.rc = pf_train(&c, &opts, comm)};
    fflush(stdout);
    fflush(stderr);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    close(out);
    close(err);
    r.out = slurp(pf_test_path("stdout.txt"));
    r.err = slurp(pf_test_path("stderr.txt"));
    // Shown in the test log, so a failing case says what the trainer said.
    printf("--- pf_train exit %d\n%s%s", r.rc, r.out, r.err);
    return r;
}

static const char *const NONE[] = {NULL};

// Every file of the run directory (recursively), "name size crc" per line: a fingerprint that
// changes when any byte does.
static char *fingerprint(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && find . -type f | LC_ALL=C sort | xargs -r cksum > '%s' 2>&1", dir,
             pf_test_path("fingerprint.txt"));
    ck_assert_int_eq(system(cmd), 0);
    return slurp(pf_test_path("fingerprint.txt"));
}

static pf_comm *comm_init(void) {
    pf_comm *comm = NULL;
    ck_assert_msg(pf_comm_init(NULL, NULL, PF_COMM_MPI, &comm) == 0, "%s", pf_errmsg());
    return comm;
}

static void setup(void) {
    pf_test_tmpdir_setup();
    make_shard(pf_test_path("shard.h5"), 64);
}

// A finished 4-step run with checkpoints at steps 2 and 4.
static void first_run(pf_comm *comm) {
    run_result r = train(comm, NONE, (pf_train_opts){0});
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    run_free(&r);
}

static const pf_train_opts RESUME_AUTO = {.resume = "auto"};

// ---- --resume auto -----------------------------------------------------------------------

// A changed width makes every checkpoint unloadable; the old trainer then started from step 0
// in the same directory and its saves replaced the old run. Now: exit 2, each checkpoint named
// with the key that differs, and not one byte of the run directory changed.
START_TEST(test_resume_refuses_another_model) {
    pf_comm *comm = comm_init();
    first_run(comm);
    char *before = fingerprint(pf_test_path("run"));
    run_result r = train(comm, (const char *const[]){"model.n_embd=64", "train.steps=6", NULL},
                         RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "model.n_embd 32 -> 64"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "ckpt-00000004.h5") && strstr(r.err, "ckpt-00000002.h5"), "%s",
                  r.err);
    ck_assert_msg(strstr(r.err, "never restarted from step 0"), "%s", r.err);
    char *after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    run_free(&r);
    free(after);
    // n_head: the same parameter shapes (the layout check alone would accept the file), but
    // another model: refused all the same.
    r = train(comm, (const char *const[]){"model.n_head=4", "train.steps=6", NULL}, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "model.n_head 2 -> 4"), "%s", r.err);
    after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    run_free(&r);
    free(after);
    // --resume PATH is held to the same rule.
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-00000002.h5", pf_test_path("run"));
    r = train(comm, (const char *const[]){"model.n_layer=2", NULL},
              (pf_train_opts){.resume = path});
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "model.n_layer 1 -> 2"), "%s", r.err);
    run_free(&r);
    // Keys that may change do, and are reported; the run goes on from step 4.
    r = train(comm, (const char *const[]){"train.lr=5e-4", "train.steps=6", NULL}, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    ck_assert_msg(strstr(r.out, "resumed from") && strstr(r.out, "at step 4"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "resume: train.lr 0.002 -> 0.0005"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "resume: train.steps 4 -> 6"), "%s", r.out);
    run_free(&r);
    free(before);
    pf_comm_finalize(comm);
}
END_TEST

// A --resume auto over first_run's directory with `extra`: refused with exit 2, stderr naming
// both needles, and not a byte of the run directory changed.
static void expect_resume_refused(pf_comm *comm, const char *const *extra, const char *needle1,
                                  const char *needle2) {
    char *before = fingerprint(pf_test_path("run"));
    run_result r = train(comm, extra, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, needle1) && strstr(r.err, needle2), "%s", r.err);
    char *after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    run_free(&r);
    free(after);
    free(before);
}

// The data cursor counts global batches: another global batch (here train.batch_size 4 -> 2
// on one rank) cannot continue the data order exactly and is refused, naming both products.
START_TEST(test_resume_refuses_another_global_batch) {
    pf_comm *comm = comm_init();
    first_run(comm);
    expect_resume_refused(comm, (const char *const[]){"train.batch_size=2", "train.steps=6", NULL},
                          "global batch of 4 (1 rank x train.batch_size 4)",
                          "this run's is 2 (1 x 2)");
    pf_comm_finalize(comm);
}
END_TEST

// The data cursor counts the items of the training split: when data.train names other shards
// (here one more), the position would name other data, so the resume is refused.
START_TEST(test_resume_refuses_another_split) {
    pf_comm *comm = comm_init();
    first_run(comm);
    make_shard(pf_test_path("more.h5"), 16);
    char train_set[1400];
    snprintf(train_set, sizeof train_set, "data.train=%s, %s", pf_test_path("shard.h5"),
             pf_test_path("more.h5"));
    expect_resume_refused(comm, (const char *const[]){train_set, "train.steps=6", NULL},
                          "counts 64 items of the training split", "now has 80");
    pf_comm_finalize(comm);
}
END_TEST

// Every checkpoint corrupt: exit 2 with one line per file, never a fresh start over them.
START_TEST(test_resume_refuses_when_none_loads) {
    pf_comm *comm = comm_init();
    first_run(comm);
    for (int s = 2; s <= 4; s += 2) {
        char path[600];
        snprintf(path, sizeof path, "%s/checkpoints/ckpt-%08d.h5", pf_test_path("run"), s);
        ck_assert_int_eq(truncate(path, 1000), 0);
    }
    char *before = fingerprint(pf_test_path("run"));
    run_result r = train(comm, (const char *const[]){"train.steps=6", NULL}, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "none of the checkpoints"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "skipped: ") && strstr(r.err, "ckpt-00000004.h5") &&
                      strstr(r.err, "ckpt-00000002.h5"),
                  "%s", r.err);
    char *after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    run_free(&r);
    free(before);
    free(after);
    pf_comm_finalize(comm);
}
END_TEST

// No checkpoint at all (a job killed before its first save): --resume auto starts fresh.
START_TEST(test_resume_auto_without_checkpoints_starts_fresh) {
    pf_comm *comm = comm_init();
    run_result r = train(comm, NONE, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    ck_assert_msg(strstr(r.out, "starting fresh"), "%s", r.out);
    run_free(&r);
    pf_comm_finalize(comm);
}
END_TEST

// ---- new runs ------------------------------------------------------------------------------

// The old trainer overwrote metrics.jsonl and summary.json and rotated the old checkpoints
// away. Now a new run there is refused; --new-run moves the old run aside, byte for byte.
START_TEST(test_new_run_never_overwrites) {
    pf_comm *comm = comm_init();
    first_run(comm);
    char *before = fingerprint(pf_test_path("run"));
    run_result r = train(comm, NONE, (pf_train_opts){0});
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "already holds a run") && strstr(r.err, "--new-run") &&
                      strstr(r.err, "--resume auto"),
                  "%s", r.err);
    char *after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    run_free(&r);
    free(after);
    // Metrics alone (a run killed before its first checkpoint) count as a run too.
    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "rm -r '%s/checkpoints' '%s/summary.json'", pf_test_path("run"),
             pf_test_path("run"));
    r = train(comm, NONE, (pf_train_opts){.resume = "auto", .new_run = true});
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);  // the two flags contradict each other
    run_free(&r);
    r = train(comm, (const char *const[]){"train.steps=2", NULL}, (pf_train_opts){.new_run = true});
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    ck_assert_msg(strstr(r.out, "previous-1"), "%s", r.out);
    after = fingerprint(pf_test_path("run/previous-1"));
    ck_assert_str_eq(before, after);  // the old run, every file as it was
    free(after);
    run_free(&r);
    r = train(comm, NONE, (pf_train_opts){.new_run = true});
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    ck_assert_msg(strstr(r.out, "previous-2"), "%s", r.out);
    run_free(&r);
    free(before);
    ck_assert_int_eq(system(ckpt), 0);
    r = train(comm, NONE, (pf_train_opts){0});
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "(metrics.jsonl)"), "%s", r.err);
    run_free(&r);
    pf_comm_finalize(comm);
}
END_TEST

// ---- a finished run -----------------------------------------------------------------------

// The old trainer rewrote summary.json with final_loss, val_loss and train_seconds 0.
START_TEST(test_resume_finished_run_keeps_summary) {
    pf_comm *comm = comm_init();
    first_run(comm);
    char summary[600];
    snprintf(summary, sizeof summary, "%s/summary.json", pf_test_path("run"));
    char *before = slurp(summary);
    ck_assert_msg(strstr(before, "\"final_loss\": ") && !strstr(before, "\"val_loss\": 0.000000"),
                  "%s", before);
    char *dir_before = fingerprint(pf_test_path("run"));
    run_result r = train(comm, NONE, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_OK);
    ck_assert_msg(strstr(r.out, "nothing to do"), "%s", r.out);
    char *after = slurp(summary), *dir_after = fingerprint(pf_test_path("run"));
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(dir_before, dir_after);
    run_free(&r);
    free(before);
    free(after);
    free(dir_before);
    free(dir_after);
    pf_comm_finalize(comm);
}
END_TEST

// ---- divergence -----------------------------------------------------------------------------

// Loads every checkpoint of the run and checks that params, m and v are all finite.
static int check_checkpoints_finite(void) {
    pf_config c;
    make_config(&c, NONE);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, 1);
    ck_assert_msg(m, "%s", pf_errmsg());
    const pf_layout *lay = pf_model_layout(m);
    float *buf = pf_calloc(3 * (size_t)lay->numel, sizeof(float));
    int n = 0;
    for (int s = 1; s <= 64; s++) {
        char path[600];
        snprintf(path, sizeof path, "%s/checkpoints/ckpt-%08d.h5", pf_test_path("run"), s);
        if (access(path, F_OK) != 0) continue;
        pf_checkpoint_state st;
        ck_assert_msg(pf_checkpoint_load(path, lay, buf, buf + lay->numel,
                                         buf + 2 * lay->numel, &st) == 0, "%s", pf_errmsg());
        static const char *const what[3] = {"params", "opt/m", "opt/v"};
        for (int g = 0; g < 3; g++)
            ck_assert_msg(pf_checkpoint_check_finite(lay, buf + g * lay->numel, what[g]) == 0,
                          "%s: %s", path, pf_errmsg());
        pf_checkpoint_state_free(&st);
        n++;
    }
    free(buf);
    pf_model_free(m);
    return n;
}

// A learning rate far too large. The old trainer checked the loss after the update, so the
// update of the step whose gradients were already NaN was applied and saved (`latest` then
// named a NaN checkpoint, and a requeued job resumed into it forever), then it aborted the
// job. Now the step is stopped before its update: exit 1, checkpoints finite, `latest` among
// them, and the message names the step and what to try.
START_TEST(test_divergence_caught_before_update) {
    pf_comm *comm = comm_init();
    run_result r = train(comm, (const char *const[]){"train.lr=3e5", "train.warmup_steps=0",
                                                     "run.checkpoint_every=1", "train.steps=30",
                                                     NULL},
                         (pf_train_opts){0});
    ck_assert_int_eq(r.rc, PF_EXIT_FAILURE);
    int step = 0;
    const char *p = strstr(r.err, "training diverged at step ");
    ck_assert_msg(p && sscanf(p, "training diverged at step %d", &step) == 1, "%s", r.err);
    ck_assert_msg(strstr(r.err, "train.lr") && strstr(r.err, "train.grad_clip") &&
                      strstr(r.err, "train.warmup_steps"),
                  "%s", r.err);
    ck_assert_int_gt(step, 1);
    int saved = check_checkpoints_finite();
    ck_assert_int_eq(saved, step - 1);  // one per step before the diverged one, none after
    char latest[600], want[64];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", pf_test_path("run"));
    char *text = slurp(latest);
    snprintf(want, sizeof want, "ckpt-%08d.h5\n", step - 1);
    ck_assert_str_eq(text, want);
    want[strlen(want) - 1] = 0;
    ck_assert_msg(strstr(r.err, want), "%s", r.err);  // named as the way back
    free(text);
    run_free(&r);
    pf_comm_finalize(comm);
}
END_TEST

// A NaN checkpoint as the old trainer could leave behind (`latest` naming it): resuming from it
// would diverge again on every requeue, so it is refused by name (exit 2), not loaded.
START_TEST(test_resume_refuses_nonfinite_checkpoint) {
    pf_comm *comm = comm_init();
    first_run(comm);
    pf_config c;
    make_config(&c, NONE);
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, 1);
    ck_assert_msg(m, "%s", pf_errmsg());
    const pf_layout *lay = pf_model_layout(m);
    float *buf = pf_calloc(3 * (size_t)lay->numel, sizeof(float));
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/checkpoints", pf_test_path("run"));
    ck_assert_int_eq(pf_checkpoint_path(path, sizeof path, dir, 4), 0);
    pf_checkpoint_state st;
    ck_assert_int_eq(pf_checkpoint_load(path, lay, buf, buf + lay->numel, buf + 2 * lay->numel,
                                        &st), 0);
    buf[lay->params[0].offset + 3] = NAN;
    st.step = 6;
    st.allow_nonfinite = true;
    ck_assert_int_eq(pf_checkpoint_save(dir, lay, buf, buf + lay->numel, buf + 2 * lay->numel,
                                        &st), 0);
    ck_assert_int_eq(pf_checkpoint_commit(dir, 6, 0), 0);
    pf_checkpoint_state_free(&st);
    free(buf);
    pf_model_free(m);
    run_result r = train(comm, (const char *const[]){"train.steps=8", NULL}, RESUME_AUTO);
    ck_assert_int_eq(r.rc, PF_EXIT_USAGE);
    ck_assert_msg(strstr(r.err, "ckpt-00000006.h5") && strstr(r.err, "NaN") &&
                      strstr(r.err, "diverged") && strstr(r.err, "--resume PATH"),
                  "%s", r.err);
    run_free(&r);
    pf_comm_finalize(comm);
}
END_TEST

// ---- the runtime context --------------------------------------------------------------------

START_TEST(test_runtime_prefix) {
    char buf[128], host[64], want[256];
    ck_assert_str_eq(pf_runtime_prefix(buf, sizeof buf), "pixelfly");
    pf_runtime_set_tool("pftrain");
    pf_runtime_set_rank(0, 1);
    ck_assert_str_eq(pf_runtime_prefix(buf, sizeof buf), "pftrain");  // a singleton
    pf_runtime_set_rank(3, 4);
    ck_assert_int_eq(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = 0;
    snprintf(want, sizeof want, "pftrain[rank 3@%s]", host);
    ck_assert_str_eq(pf_runtime_prefix(buf, sizeof buf), want);
    ck_assert_int_eq(pf_runtime()->rank, 3);
    // pf_fatal_at and pf_report start with it (in a child: pf_fatal_at aborts).
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen(pf_test_path("fatal.txt"), "w", stderr)) _exit(9);
        pf_report("a report");
        PF_FATAL("deliberate %d", 42);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char *text = slurp(pf_test_path("fatal.txt"));
    snprintf(want, sizeof want, "pftrain[rank 3@%s]: a report\npftrain[rank 3@%s]: fatal at ",
             host, host);
    ck_assert_msg(!strncmp(text, want, strlen(want)) && strstr(text, "deliberate 42"), "%s", text);
    free(text);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("resume");
    tcase_add_checked_fixture(tc, setup, pf_test_tmpdir_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_resume_refuses_another_model);
    tcase_add_test(tc, test_resume_refuses_when_none_loads);
    tcase_add_test(tc, test_resume_refuses_another_global_batch);
    tcase_add_test(tc, test_resume_refuses_another_split);
    tcase_add_test(tc, test_resume_auto_without_checkpoints_starts_fresh);
    tcase_add_test(tc, test_new_run_never_overwrites);
    tcase_add_test(tc, test_resume_finished_run_keeps_summary);
    tcase_add_test(tc, test_divergence_caught_before_update);
    tcase_add_test(tc, test_resume_refuses_nonfinite_checkpoint);
    tcase_add_test(tc, test_runtime_prefix);
    suite_add_tcase(s, tc);
    return s;
}
