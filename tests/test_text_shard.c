// test_text_shard.c: `pfdata text` (shard contents, attributes, atomic output on every
// failure and on SIGINT/SIGTERM) and the token loader (rank slices, the union property,
// seeded order, cursor, the padded last batch of evaluation).
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "interrupt.h"
#include "pfdata.h"
#include "rng.h"
#include "text_shard.h"
#include "token_loader.h"
#include "tokenizer.h"

static char tmp_dir[64];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/pf_test_shard_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void) {
    DIR *d = opendir(tmp_dir);
    if (!d) return;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

static const char *tmp_path(const char *name) {
    static char path[8][4096];  // a few names live at once
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", tmp_dir, name);
    return p;
}

static void write_bytes(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Names in tmp_dir containing ".tmp.": leftovers of an aborted write.
static int count_temporaries(void) {
    DIR *d = opendir(tmp_dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static const char *vocab_dir(void) {
    static char dir[4096];
    const char *data = pf_test_data_dir("GPT-2 vocabulary for pfdata text");
    if (!data) return NULL;
    snprintf(dir, sizeof dir, "%s/gpt2", data);
    return dir;
}

// Runs `pfdata text --vocab V --out OUT --quiet FILES...`.
static int run_pfdata(const char *vocab, const char *out, const char **files, int nfiles) {
    char *argv[16] = {"text", "--vocab", (char *)vocab, "--out", (char *)out, "--quiet"};
    int argc = 6;
    for (int i = 0; i < nfiles; i++) argv[argc++] = (char *)files[i];
    return pfdata_text_main(argc, argv);
}

// All ids of a shard; checks its attributes on the way.
static int32_t *read_shard(const char *path, int64_t *n) {
    pf_text_shard *s = pf_text_shard_open(path);
    ck_assert_msg(s, "%s", pf_errmsg());
    ck_assert_int_eq(pf_text_shard_vocab_size(s), 50257);
    ck_assert_int_eq(pf_text_shard_eot(s), 50256);
    ck_assert_str_eq(pf_text_shard_tokenizer(s), "gpt2-bpe");
    *n = pf_text_shard_num_tokens(s);
    int32_t *ids = pf_malloc((size_t)*n * sizeof *ids);
    ck_assert_msg(pf_text_shard_read(s, 0, *n, ids) == 0, "%s", pf_errmsg());
    pf_text_shard_close(s);
    return ids;
}

// The expected shard: each text's ids from the tokenizer, then end-of-text.
static void expect_shard(const char *path, const char **texts, const size_t *lens, int n) {
    pf_tokenizer *tok = pf_tokenizer_load(vocab_dir());
    ck_assert_msg(tok, "%s", pf_errmsg());
    pf_ids want = {0};
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(pf_tokenizer_encode(tok, texts[i], lens[i], &want), 0);
        pf_ids_push(&want, pf_tokenizer_eot(tok));
    }
    int64_t got_n;
    int32_t *got = read_shard(path, &got_n);
    ck_assert_msg((size_t)got_n == want.n, "shard has %lld tokens, expected %zu",
                  (long long)got_n, want.n);
    ck_assert(!memcmp(got, want.data, want.n * sizeof *got));
    free(got);
    pf_ids_free(&want);
    pf_tokenizer_free(tok);
}

// A few MB of wikitext-like lines (" = Title = \n \n text ... \n"), past pfdata's 4 MB read
// piece, so pre-tokens straddle its boundaries.
static char *generated_text(size_t min_bytes, size_t *len) {
    static const char *words[] = {"the", "Valkyria", "3", ",", "@-@", "don't", "caf\xc3\xa9",
                                  "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x9a\x80", "1,000", "\t",
                                  "  ", "we'll", "(", ")", "=", "\xc2\xa0"};
    pf_rng r;
    pf_rng_seed(&r, 7);
    size_t cap = min_bytes + 4096, n = 0;
    char *s = pf_malloc(cap);
    while (n < min_bytes) {
        if (pf_rng_below(&r, 12) == 0) n += (size_t)sprintf(s + n, " \n = Section %u = \n \n",
                                                             pf_rng_below(&r, 100));
        for (unsigned k = pf_rng_below(&r, 30); k > 0; k--)
            n += (size_t)sprintf(s + n, " %s", words[pf_rng_below(&r, 17)]);
        n += (size_t)sprintf(s + n, pf_rng_below(&r, 3) ? " \n" : "\n\n");
    }
    *len = n;
    return s;
}

START_TEST(test_pfdata_small_files) {
    const char *vocab = vocab_dir();
    if (!vocab) return;
    make_tmp_dir();
    size_t lens[2];
    const char *texts[2];
    char *big = generated_text((size_t)9 << 20, &lens[0]);
    texts[0] = big;
    texts[1] = "Hello world\n\nsecond file's text \xf0\x9f\x91\x8b";
    lens[1] = strlen(texts[1]);
    const char *files[2] = {tmp_path("a.txt"), tmp_path("b.txt")};
    write_bytes(files[0], texts[0], lens[0]);
    write_bytes(files[1], texts[1], lens[1]);
    const char *out = tmp_path("out.h5");
    ck_assert_int_eq(run_pfdata(vocab, out, files, 2), PF_EXIT_OK);
    expect_shard(out, texts, lens, 2);
    pf_text_shard *s = pf_text_shard_open(out);
    char source[8300];
    snprintf(source, sizeof source, "%s\n%s", files[0], files[1]);
    ck_assert_str_eq(pf_text_shard_source(s), source);
    pf_text_shard_close(s);
    ck_assert_int_eq(count_temporaries(), 0);
    free(big);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_pfdata_tinyshakespeare) {
    const char *vocab = vocab_dir();
    const char *data = pf_test_data_dir("tinyshakespeare for pfdata text");
    if (!vocab || !data) return;
    make_tmp_dir();
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/tinyshakespeare/input.txt", data);
    ck_assert_int_eq(pf_read_file(path, &text, &len), 0);
    const char *files[1] = {path}, *texts[1] = {text};
    const char *out = tmp_path("shakespeare.h5");
    ck_assert_int_eq(run_pfdata(vocab, out, files, 1), PF_EXIT_OK);
    expect_shard(out, texts, &len, 1);
    int64_t n;
    free(read_shard(out, &n));
    ck_assert_int_eq(n, 338025 + 1);  // the reference's count (test_tokenizer.c) + EOT
    free(text);
    remove_tmp_dir();
}
END_TEST

// A file that appears at the output path while the shard is written is not replaced: the
// commit fails, naming it, and removes only its own temporary.
START_TEST(test_commit_never_replaces) {
    make_tmp_dir();
    const char *out = tmp_path("late.h5");
    pf_text_shard_writer *w = pf_text_shard_create(out, 50257, 50256, "gpt2-bpe", "test", 16);
    ck_assert_msg(w != NULL, "%s", pf_errmsg());
    int32_t ids[3] = {1, 2, 3};
    ck_assert_int_eq(pf_text_shard_append(w, ids, 3), 0);
    write_bytes(out, "someone else's", 14);
    ck_assert_int_eq(pf_text_shard_commit(w), -1);
    ck_assert_msg(strstr(pf_errmsg(), "late.h5' exists"), "%s", pf_errmsg());
    char *content;
    size_t len;
    ck_assert_int_eq(pf_read_file(out, &content, &len), 0);
    ck_assert(len == 14 && !memcmp(content, "someone else's", 14));
    free(content);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    ck_assert(!exists(tmp));
}
END_TEST

START_TEST(test_pfdata_errors_leave_no_output) {
    const char *vocab = vocab_dir();
    if (!vocab) return;
    make_tmp_dir();
    const char *good = tmp_path("good.txt"), *bad = tmp_path("bad.txt");
    const char *out = tmp_path("out.h5"), *kept = tmp_path("kept.h5");
    write_bytes(good, "some good text\n", 15);
    write_bytes(bad, "fine until here \xff then bad\n", 27);
    write_bytes(kept, "precious", 8);
    const char *missing[] = {good, tmp_path("missing.txt")};
    const char *invalid[] = {good, bad};
    ck_assert_int_eq(run_pfdata(vocab, out, missing, 2), PF_EXIT_FAILURE);
    ck_assert(!exists(out));
    ck_assert_int_eq(run_pfdata(vocab, out, invalid, 2), PF_EXIT_FAILURE);
    ck_assert(!exists(out));
    ck_assert_msg(strstr(pf_errmsg(), "bad.txt: invalid UTF-8 at byte offset 16"), "%s",
                  pf_errmsg());
    // An existing output is refused before anything is read, and left as it was.
    const char *goods[] = {good};
    ck_assert_int_eq(run_pfdata(vocab, kept, goods, 1), PF_EXIT_USAGE);
    char *content;
    size_t len;
    ck_assert_int_eq(pf_read_file(kept, &content, &len), 0);
    ck_assert(len == 8 && !memcmp(content, "precious", 8));
    free(content);
    ck_assert_int_eq(run_pfdata(vocab, "/nonexistent-dir/out.h5", invalid, 1), PF_EXIT_FAILURE);
    if (geteuid() != 0) {  // root writes into a read-only directory anyway
        const char *ro = tmp_path("ro");
        ck_assert_int_eq(mkdir(ro, 0555), 0);
        char ro_out[4200];
        snprintf(ro_out, sizeof ro_out, "%s/out.h5", ro);
        ck_assert_int_eq(run_pfdata(vocab, ro_out, invalid, 1), PF_EXIT_FAILURE);
        ck_assert_msg(strstr(pf_errmsg(), "writable"), "%s", pf_errmsg());
        rmdir(ro);
    }
    ck_assert_int_eq(run_pfdata(tmp_dir, out, invalid, 1), PF_EXIT_FAILURE);  // no vocabulary
    ck_assert(!exists(out));
    ck_assert_int_eq(count_temporaries(), 0);
    char *no_out[] = {"text", "--vocab", (char *)vocab, (char *)good};
    ck_assert_int_eq(pfdata_text_main(4, no_out), PF_EXIT_USAGE);
    char *bad_flag[] = {"text", "--vocab", (char *)vocab, "--out", (char *)out, "--fast",
                        (char *)good};
    ck_assert_int_eq(pfdata_text_main(7, bad_flag), PF_EXIT_USAGE);
    char *help[] = {"text", "--help"};
    ck_assert_int_eq(pfdata_text_main(2, help), PF_EXIT_OK);
    ck_assert(!exists(out));
    remove_tmp_dir();
}
END_TEST

// ---- interrupted conversions -----------------------------------------------------------

// The writer names its temporary to the interrupt handler; the handler's cleanup removes it
// and says so, and a committed shard is no longer tracked.
START_TEST(test_interrupt_cleanup) {
    make_tmp_dir();
    const char *out = tmp_path("out.h5");
    pf_text_shard_writer *w = pf_text_shard_create(out, 50257, 50256, "test", "cleanup", 64);
    ck_assert_msg(w, "%s", pf_errmsg());
    ck_assert_int_eq(count_temporaries(), 1);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(pf_interrupt_cleanup(fds[1]), 1);
    ck_assert_int_eq(count_temporaries(), 0);
    ck_assert_int_eq(pf_interrupt_cleanup(fds[1]), 0);  // nothing tracked any more
    close(fds[1]);
    char msg[8192] = {0}, want[8192];
    ck_assert_int_gt(read(fds[0], msg, sizeof msg - 1), 0);  // both lines, already written
    close(fds[0]);
    snprintf(want, sizeof want, "pfdata: interrupted; removed %s.tmp.%ld\npfdata: interrupted\n",
             out, (long)getpid());
    ck_assert_str_eq(msg, want);
    pf_text_shard_abort(w);
    ck_assert(!exists(out));
    // Once renamed into place, the shard is not the handler's to remove.
    w = pf_text_shard_create(out, 50257, 50256, "test", "cleanup", 64);
    ck_assert_msg(w, "%s", pf_errmsg());
    int32_t id = 42;
    ck_assert_int_eq(pf_text_shard_append(w, &id, 1), 0);
    ck_assert_msg(pf_text_shard_commit(w) == 0, "%s", pf_errmsg());
    ck_assert_int_eq(pf_interrupt_cleanup(-1), 0);
    ck_assert(exists(out));
    remove_tmp_dir();
}
END_TEST

enum { INTERRUPT_REPEATS = 256 };  // x 1 MB of text: seconds of work, killed in its first ms

// Runs `pfdata text` in a child over INTERRUPT_REPEATS copies of `input`, sends it `sig` as
// soon as its temporary exists, and checks that it exits with 128 + sig, removes the
// temporary, and says so.
static void interrupt_pfdata(const char *vocab, const char *input, int sig) {
    const char *out = tmp_path("out.h5"), *log = tmp_path("stderr.log");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        // As a fresh process: Check's runner handlers (inherited) would kill the test too.
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        FILE *err = freopen(log, "w", stderr);
        if (!err) _exit(99);
        char *argv[6 + INTERRUPT_REPEATS] = {"text", "--vocab", (char *)vocab, "--out",
                                             (char *)out, "--quiet"};
        for (int i = 0; i < INTERRUPT_REPEATS; i++) argv[6 + i] = (char *)input;
        _exit(pfdata_text_main(6 + INTERRUPT_REPEATS, argv));
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)pid);
    int status = 0;
    bool ended = false;
    double t0 = pf_now();
    while (!exists(tmp) && pf_now() - t0 < 30) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ended = true;
            break;
        }
        usleep(200);
    }
    if (!ended) {
        ck_assert_msg(exists(tmp), "no %s after %.0f s", tmp, pf_now() - t0);
        ck_assert_int_eq(kill(pid, sig), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    }
    ck_assert_msg(!ended, "pfdata ended (status %d) before its temporary was seen", status);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 128 + sig,
                  "signal %d: status %d, expected exit %d", sig, status, 128 + sig);
    ck_assert(!exists(tmp));
    ck_assert(!exists(out));
    ck_assert_int_eq(count_temporaries(), 0);
    char *text, want[4300];
    ck_assert_int_eq(pf_read_file(log, &text, NULL), 0);
    snprintf(want, sizeof want, "pfdata: interrupted; removed %s\n", tmp);
    ck_assert_msg(strstr(text, want), "stderr: '%s'", text);
    free(text);
    unlink(log);
}

START_TEST(test_pfdata_interrupted) {
    const char *vocab = vocab_dir();
    if (!vocab) return;
    make_tmp_dir();
    size_t len;
    char *text = generated_text((size_t)1 << 20, &len);
    const char *input = tmp_path("input.txt");
    write_bytes(input, text, len);
    free(text);
    interrupt_pfdata(vocab, input, SIGINT);   // Ctrl-C: 130
    interrupt_pfdata(vocab, input, SIGTERM);  // 143
    remove_tmp_dir();
}
END_TEST

// ---- loader ----------------------------------------------------------------------------

enum { N_TOK = 1001, T_LEN = 8, WINDOWS = (N_TOK - 1) / T_LEN };  // 125 windows

// A shard whose token i is (i * 7) % vocab_size, so a window names where it starts.
static const char *write_counting_shard(const char *name, int vocab, int64_t n) {
    const char *path = tmp_path(name);
    pf_text_shard_writer *w = pf_text_shard_create(path, vocab, vocab - 1, "test", "counting", 64);
    ck_assert_msg(w, "%s", pf_errmsg());
    for (int64_t i = 0; i < n; i++) {
        int32_t id = (int32_t)((i * 7) % vocab);
        ck_assert_int_eq(pf_text_shard_append(w, &id, 1), 0);
    }
    ck_assert_msg(pf_text_shard_commit(w) == 0, "%s", pf_errmsg());
    return path;
}

// Window index of a batch row (its first input token is 7 * T * w).
static int window_of(const int32_t *row) { return row[0] / (7 * T_LEN); }

static pf_token_loader *open_loader(const char *path, int B, int rank, int world, uint64_t seed,
                                    bool shuffle) {
    pf_token_loader *l = pf_token_loader_open(path, B, T_LEN, rank, world, seed, shuffle, false);
    ck_assert_msg(l, "%s", pf_errmsg());
    return l;
}

static void next_batch(pf_token_loader *l, int B, int32_t *in, int32_t *tg) {
    ck_assert_msg(pf_token_loader_next(l, in, tg) == 0, "%s", pf_errmsg());
    for (int i = 0; i < B * T_LEN; i++) ck_assert_int_eq(tg[i], in[i] + 7);
    for (int j = 0; j < B; j++) ck_assert_int_eq(in[j * T_LEN] % (7 * T_LEN), 0);
}

START_TEST(test_loader_ranks_union) {
    make_tmp_dir();
    const char *path = write_counting_shard("count.h5", 50257, N_TOK);
    enum { B = 3, WORLD = 4 };
    pf_token_loader *one = open_loader(path, WORLD * B, 0, 1, 42, true), *ranks[WORLD];
    for (int r = 0; r < WORLD; r++) ranks[r] = open_loader(path, B, r, WORLD, 42, true);
    int64_t bpe = pf_token_loader_batches_per_epoch(one);
    ck_assert_int_eq(bpe, WINDOWS / (WORLD * B));
    ck_assert_int_eq(pf_token_loader_batches_per_epoch(ranks[3]), bpe);
    ck_assert_int_eq(pf_token_loader_num_tokens(one), N_TOK);
    int32_t all_in[WORLD * B * T_LEN], all_tg[WORLD * B * T_LEN], in[B * T_LEN], tg[B * T_LEN];
    for (int epoch = 0; epoch < 3; epoch++) {
        bool seen[WINDOWS] = {0};
        for (int64_t k = 0; k < bpe; k++) {
            next_batch(one, WORLD * B, all_in, all_tg);
            for (int r = 0; r < WORLD; r++) {
                next_batch(ranks[r], B, in, tg);
                // The ranks' batches, side by side, are the one-rank batch of size WORLD*B.
                ck_assert(!memcmp(in, all_in + r * B * T_LEN, sizeof in));
                ck_assert(!memcmp(tg, all_tg + r * B * T_LEN, sizeof tg));
                for (int j = 0; j < B; j++) {
                    int w = window_of(in + j * T_LEN);
                    ck_assert_msg(!seen[w], "window %d twice in epoch %d", w, epoch);
                    seen[w] = true;
                }
            }
        }
        ck_assert_int_eq(pf_token_loader_get_cursor(one).epoch, epoch);
    }
    pf_token_loader_close(one);
    for (int r = 0; r < WORLD; r++) pf_token_loader_close(ranks[r]);
    remove_tmp_dir();
}
END_TEST

// The window order of the first `steps` batches (B windows each).
static void window_order(pf_token_loader *l, int B, int steps, int *order) {
    int32_t in[4 * T_LEN], tg[4 * T_LEN];
    ck_assert_int_le(B, 4);
    for (int k = 0; k < steps; k++) {
        next_batch(l, B, in, tg);
        for (int j = 0; j < B; j++) order[k * B + j] = window_of(in + j * T_LEN);
    }
}

// Epoch `epoch`'s order as docs/FORMATS.md ("Data order") states it, written out here rather
// than taken from the loader: a Fisher-Yates shuffle of 0..n-1 by a pf_rng seeded with
// seed ^ ((epoch + 1) * 0xD1B54A32D192ED03).
static void documented_order(uint64_t seed, int64_t epoch, uint32_t n, int *order) {
    pf_rng r;
    pf_rng_seed(&r, seed ^ ((uint64_t)epoch + 1) * 0xD1B54A32D192ED03ull);
    for (uint32_t i = 0; i < n; i++) order[i] = (int)i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = pf_rng_below(&r, i);
        int t = order[i - 1];
        order[i - 1] = order[j], order[j] = t;
    }
}

START_TEST(test_loader_order) {
    make_tmp_dir();
    const char *path = write_counting_shard("count.h5", 50257, N_TOK);
    enum { B = 4, STEPS = WINDOWS / B };  // one epoch: 31 batches
    int a[STEPS * B], b[STEPS * B], c[STEPS * B], e1[STEPS * B];
    pf_token_loader *l = open_loader(path, B, 0, 1, 1, true);
    window_order(l, B, STEPS, a);
    window_order(l, B, STEPS, e1);  // epoch 1
    pf_token_loader_close(l);
    l = open_loader(path, B, 0, 1, 1, true);
    window_order(l, B, STEPS, b);
    pf_token_loader_close(l);
    ck_assert_msg(!memcmp(a, b, sizeof a), "same seed, different order");
    ck_assert_msg(memcmp(a, e1, sizeof a), "epoch 1 repeats epoch 0's order");
    int doc[WINDOWS];
    for (int e = 0; e < 2; e++) {
        documented_order(1, e, WINDOWS, doc);
        for (int i = 0; i < STEPS * B; i++)
            ck_assert_msg((e ? e1 : a)[i] == doc[i], "epoch %d position %d: window %d, the "
                          "documented order says %d", e, i, (e ? e1 : a)[i], doc[i]);
    }
    l = open_loader(path, B, 0, 1, 2, true);
    window_order(l, B, STEPS, c);
    pf_token_loader_close(l);
    ck_assert_msg(memcmp(a, c, sizeof a), "seeds 1 and 2 give the same order");
    l = open_loader(path, B, 0, 1, 1, false);  // no shuffling: windows in file order
    window_order(l, B, STEPS, c);
    for (int i = 0; i < STEPS * B; i++) ck_assert_int_eq(c[i], i);
    pf_token_loader_close(l);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_loader_cursor) {
    make_tmp_dir();
    const char *path = write_counting_shard("count.h5", 50257, N_TOK);
    enum { B = 2, WORLD = 2, RANK = 1, STEPS = 50 };  // 31 batches per epoch: crosses one
    int first[STEPS * B], again[STEPS * B], warm[7 * B];
    pf_token_loader *l = open_loader(path, B, RANK, WORLD, 9, true);
    window_order(l, B, 7, warm);
    pf_data_cursor cur = pf_token_loader_get_cursor(l);
    ck_assert(cur.epoch == 0 && cur.batch == 7);
    window_order(l, B, STEPS, first);
    ck_assert_int_eq(pf_token_loader_get_cursor(l).epoch, 1);
    pf_token_loader_close(l);
    // A fresh loader set to the saved cursor continues exactly where the first one was.
    l = open_loader(path, B, RANK, WORLD, 9, true);
    ck_assert_int_eq(pf_token_loader_set_cursor(l, (pf_data_cursor){0, 32}), -1);
    ck_assert_int_eq(pf_token_loader_set_cursor(l, cur), 0);
    window_order(l, B, STEPS, again);
    ck_assert(!memcmp(first, again, sizeof first));
    pf_token_loader_reset(l);
    window_order(l, B, 7, again);
    ck_assert(!memcmp(warm, again, sizeof warm));
    pf_token_loader_close(l);
    remove_tmp_dir();
}
END_TEST

// Evaluation order (pad_last): an epoch yields every window exactly once whatever B and the
// rank count, its last global batch topped up with padding rows (inputs 0, targets all -1).
START_TEST(test_loader_pad_last) {
    make_tmp_dir();
    const char *path = write_counting_shard("count.h5", 50257, N_TOK);  // 125 windows
    // {B, world, shuffle}: 125 = 31*4 + 1 = 20*6 + 5 = 17*7 + 6 = 125*1
    const struct { int B, world; bool shuffle; } cases[] = {
        {4, 1, false}, {3, 2, false}, {7, 1, true}, {1, 1, false}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int B = cases[c].B, world = cases[c].world, global = B * world;
        const int64_t bpe = (WINDOWS + global - 1) / global;
        pf_token_loader *l[2];
        for (int r = 0; r < world; r++) {
            l[r] = pf_token_loader_open(path, B, T_LEN, r, world, 5, cases[c].shuffle, true);
            ck_assert_msg(l[r], "%s", pf_errmsg());
            ck_assert_int_eq(pf_token_loader_batches_per_epoch(l[r]), bpe);
        }
        int seen[WINDOWS] = {0}, pads = 0;
        int32_t in[7 * T_LEN], tg[7 * T_LEN];
        for (int64_t k = 0; k < bpe; k++)
            for (int r = 0; r < world; r++) {
                ck_assert_msg(pf_token_loader_next(l[r], in, tg) == 0, "%s", pf_errmsg());
                for (int j = 0; j < B; j++) {
                    const int32_t *x = in + j * T_LEN, *y = tg + j * T_LEN;
                    if (y[0] == -1) {  // padding: only in the epoch's last batch, all ignored
                        ck_assert_int_eq(k, bpe - 1);
                        for (int i = 0; i < T_LEN; i++) {
                            ck_assert_int_eq(y[i], -1);
                            ck_assert_int_eq(x[i], 0);
                        }
                        pads++;
                        continue;
                    }
                    for (int i = 0; i < T_LEN; i++) ck_assert_int_eq(y[i], x[i] + 7);
                    seen[window_of(x)]++;
                }
            }
        for (int w = 0; w < WINDOWS; w++)
            ck_assert_msg(seen[w] == 1, "B=%d world=%d: window %d seen %d times", B, world, w,
                          seen[w]);
        ck_assert_int_eq(pads, bpe * global - WINDOWS);
        // Then the next epoch starts over with real windows.
        ck_assert_int_eq(pf_token_loader_get_cursor(l[0]).batch, bpe);
        ck_assert_int_eq(pf_token_loader_next(l[0], in, tg), 0);
        ck_assert_int_eq(pf_token_loader_get_cursor(l[0]).epoch, 1);
        ck_assert_int_ne(tg[0], -1);
        for (int r = 0; r < world; r++) pf_token_loader_close(l[r]);
    }
    // The data source pads evaluation batches and leaves training batches as they were.
    pf_config cfg;
    pf_config_defaults(&cfg);
    char seq[32];
    snprintf(seq, sizeof seq, "model.seq_len=%d", T_LEN);
    ck_assert_int_eq(pf_config_set(&cfg, "model.type=gpt2"), 0);
    ck_assert_int_eq(pf_config_set(&cfg, seq), 0);
    pf_data *eval = pf_data_open(&cfg, path, 4, 0, 1, false);
    pf_data *train = pf_data_open(&cfg, path, 4, 0, 1, true);
    ck_assert_msg(eval && train, "%s", pf_errmsg());
    ck_assert_int_eq(pf_data_batches_per_epoch(eval), 32);   // ceil(125 / 4)
    ck_assert_int_eq(pf_data_batches_per_epoch(train), 31);  // 125 / 4, the rest dropped
    int64_t real = 0, ignored = 0;
    for (int k = 0; k < 32; k++) {
        pf_batch b;
        ck_assert_int_eq(pf_data_next(eval, &b), 0);
        for (int i = 0; i < 4 * T_LEN; i++) b.targets[i] < 0 ? ignored++ : real++;
    }
    ck_assert_int_eq(real, WINDOWS * T_LEN);
    ck_assert_int_eq(ignored, 3 * T_LEN);
    pf_data_close(eval);
    pf_data_close(train);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_loader_wide_ids) {
    make_tmp_dir();
    const char *path = write_counting_shard("wide.h5", 70001, N_TOK);  // stored as uint32
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t type = H5Dget_type(d);
    ck_assert_uint_eq(H5Tget_size(type), 4);
    H5Tclose(type);
    H5Dclose(d);
    H5Fclose(f);
    pf_token_loader *l = open_loader(path, 1, 0, 1, 0, false);
    ck_assert_int_eq(pf_token_loader_vocab_size(l), 70001);
    ck_assert_int_eq(pf_token_loader_eot(l), 70000);
    int32_t in[T_LEN], tg[T_LEN];
    for (int k = 0; k < 2; k++) next_batch(l, 1, in, tg);
    pf_token_loader_close(l);
    remove_tmp_dir();
}
END_TEST

static void expect_open_error(const char *path, int B, const char *needle) {
    pf_token_loader *l = pf_token_loader_open(path, B, T_LEN, 0, 1, 0, true, false);
    ck_assert_msg(!l, "%s opened", path);
    ck_assert_msg(strstr(pf_errmsg(), needle), "'%s' lacks '%s'", pf_errmsg(), needle);
}

START_TEST(test_loader_bad_files) {
    make_tmp_dir();
    const char *path = write_counting_shard("count.h5", 50257, N_TOK);
    expect_open_error(tmp_path("missing.h5"), 1, "No such file");
    const char *text = tmp_path("text.h5");
    write_bytes(text, "not hdf5 at all\n", 16);
    expect_open_error(text, 1, "not an HDF5 file");
    // HDF5, but no /tokens; then /tokens without the attributes.
    const char *other = tmp_path("other.h5");
    hid_t f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_open_error(other, 1, "no /tokens dataset");
    f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 100;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "tokens", H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    expect_open_error(other, 1, "lacks the integer attribute 'vocab_size'");
    // Too small for one batch: 1001 tokens hold 125 windows of 8; 126 rows need 1009.
    expect_open_error(path, 126, "needs at least 1009 tokens");
    // Truncated: the open or the first read must fail and say so.
    char *data;
    size_t len;
    ck_assert_int_eq(pf_read_file(path, &data, &len), 0);
    const char *cut = tmp_path("cut.h5");
    write_bytes(cut, data, len - 1500);
    free(data);
    pf_token_loader *l = pf_token_loader_open(cut, 4, T_LEN, 0, 1, 0, false, false);
    int rc = 0;
    int32_t in[4 * T_LEN], tg[4 * T_LEN];
    for (int k = 0; l && k < 31 && rc == 0; k++) rc = pf_token_loader_next(l, in, tg);
    ck_assert_msg(!l || rc == -1, "a truncated shard read without error");
    ck_assert_msg(strstr(pf_errmsg(), "truncated"), "%s", pf_errmsg());
    pf_token_loader_close(l);
    remove_tmp_dir();
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("text_shard");
    TCase *tc = tcase_create("pfdata_text");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pfdata_small_files);
    tcase_add_test(tc, test_pfdata_tinyshakespeare);
    tcase_add_test(tc, test_pfdata_errors_leave_no_output);
    tcase_add_test(tc, test_commit_never_replaces);
    tcase_add_test(tc, test_interrupt_cleanup);
    tcase_add_test(tc, test_pfdata_interrupted);
    suite_add_tcase(s, tc);
    tc = tcase_create("loader");
    tcase_add_test(tc, test_loader_ranks_union);
    tcase_add_test(tc, test_loader_order);
    tcase_add_test(tc, test_loader_cursor);
    tcase_add_test(tc, test_loader_pad_last);
    tcase_add_test(tc, test_loader_wide_ids);
    tcase_add_test(tc, test_loader_bad_files);
    suite_add_tcase(s, tc);
    return s;
}
