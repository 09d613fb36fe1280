// test_checkpoint.c: checkpoint files: bit-exact round trip, `latest`, pruning, corruption and
// truncation detection, --resume auto fallback, layout mismatch, failed writes.
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "check_main.h"
#include "checkpoint.h"
#include "common.h"
#include "rng.h"

#define WORLD 3
#define RNG_WORDS 2
#define SENTINEL 0xAB

// A small model with parameters of different ranks and sizes: alignment gaps between them
// (7 and 15 elements are not multiples of PF_PARAM_ALIGN), and one parameter large enough
// (1.2 MB) to span several checkpoint chunks. `variant` 1 transposes "a.w".
static void make_layout(pf_layout *l, int variant) {
    pf_layout_init(l);
    pf_layout_add(l, "a.w", 2, variant == 1 ? (int64_t[]){5, 3} : (int64_t[]){3, 5}, false);
    pf_layout_add(l, "a.b", 1, (int64_t[]){7}, true);
    pf_layout_add(l, "h.0.mlp.fc1.S", 4, (int64_t[]){4, 3, 2, 5}, false);
    pf_layout_add(l, "big", 2, (int64_t[]){300, 1000}, false);
    pf_layout_add(l, "e", 2, (int64_t[]){1, 130}, true);
}

// Random bit patterns (NaNs and denormals included): a round trip must not convert anything.
static float *random_arena(const pf_layout *l, uint64_t seed) {
    pf_rng r;
    pf_rng_seed(&r, seed);
    uint32_t *a = pf_malloc(sizeof(float) * (size_t)l->numel);
    for (int64_t i = 0; i < l->numel; i++) a[i] = (uint32_t)pf_rng_u64(&r);
    return (float *)a;
}

static float *sentinel_arena(const pf_layout *l) {
    float *a = pf_malloc(sizeof(float) * (size_t)l->numel);
    memset(a, SENTINEL, sizeof(float) * (size_t)l->numel);
    return a;
}

static bool all_sentinel(const float *a, int64_t n) {
    const unsigned char *b = (const unsigned char *)a;
    for (size_t i = 0; i < sizeof(float) * (size_t)n; i++)
        if (b[i] != SENTINEL) return false;
    return true;
}

// A model's saved state: three arenas and the rest, all derived from `seed`.
typedef struct {
    pf_layout layout;
    float *p, *m, *v;
    uint64_t rng[WORLD * RNG_WORDS];
    int64_t cursors[WORLD * 2];
    int32_t mask[4 * 3];  // a blocksparse layer's mask [bs 4, 3 blocks]
    pf_checkpoint_mask masks[1];
    pf_checkpoint_state st;
} fixture;

static void fixture_init(fixture *f, uint64_t seed) {
    make_layout(&f->layout, 0);
    f->p = random_arena(&f->layout, seed);
    f->m = random_arena(&f->layout, seed + 1);
    f->v = random_arena(&f->layout, seed + 2);
    for (int i = 0; i < WORLD * RNG_WORDS; i++) f->rng[i] = seed * 1000003u + (uint64_t)i * ~0ull / 7;
    for (int i = 0; i < WORLD * 2; i++) f->cursors[i] = (int64_t)seed * 10 + i;
    for (int i = 0; i < 12; i++) f->mask[i] = (int32_t)((i / 3 + (i % 3) * (1 + seed % 2)) % 4);
    f->masks[0] = (pf_checkpoint_mask){.name = "h.0.mlp.fc1.S", .rows = 4, .cols = 3,
                                       .col = f->mask};
    f->st = (pf_checkpoint_state){.step = 0, .world = WORLD, .rng_words = RNG_WORDS,
                                  .rng = f->rng, .cursors = f->cursors,
                                  .config_text = "[model]\nname = tiny\nlr = 3e-4\n",
                                  .n_masks = 1, .masks = f->masks, .allow_nonfinite = true};
}

static void fixture_free(fixture *f) {
    free(f->p);
    free(f->m);
    free(f->v);
    pf_layout_free(&f->layout);
}

static int save_step(fixture *f, const char *dir, int64_t step) {
    f->st.step = step;
    return pf_checkpoint_save(dir, &f->layout, f->p, f->m, f->v, &f->st);
}

static void save_commit(fixture *f, const char *dir, int64_t step, int keep) {
    ck_assert_msg(save_step(f, dir, step) == 0, "save: %s", pf_errmsg());
    ck_assert_msg(pf_checkpoint_commit(dir, step, keep) == 0, "commit: %s", pf_errmsg());
}

static char *temp_dir(void) {
    char *d = pf_strdup("/tmp/pf_test_ckpt_XXXXXX");
    ck_assert(mkdtemp(d));
    return d;
}

static void remove_tree(char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

static bool exists(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

// pf_checkpoint_find_resume into the caller's `path` and `msg` arrays.
#define FIND_RESUME(dir, layout, accept, ctx) \
    pf_checkpoint_find_resume(dir, layout, accept, ctx, path, sizeof path, msg, sizeof msg)

static char *ckpt_path(const char *dir, int64_t step) {
    static char p[1024];
    ck_assert_int_eq(pf_checkpoint_path(p, sizeof p, dir, step), 0);
    return p;
}

// Flips one byte in the middle of the first chunk of dataset `name`.
static void flip_byte_in(const char *path, const char *name) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(file >= 0);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    ck_assert(d >= 0);
    hsize_t offset[PF_MAX_DIMS], size;
    haddr_t addr;
    unsigned mask;
    hid_t space = H5Dget_space(d);
    ck_assert(space >= 0);
    ck_assert(H5Dget_chunk_info(d, space, 0, offset, &mask, &addr, &size) >= 0);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(file);
    FILE *fp = fopen(path, "r+b");
    ck_assert(fp);
    long at = (long)(addr + size / 2);
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x10, fp);
    ck_assert_int_eq(fclose(fp), 0);
}

START_TEST(test_roundtrip_bit_exact) {
    fixture f;
    fixture_init(&f, 42);
    char *dir = temp_dir();
    ck_assert_msg(save_step(&f, dir, 1000) == 0, "%s", pf_errmsg());
    ck_assert(exists(dir, "ckpt-00001000.h5"));
    ck_assert(!exists(dir, "ckpt-00001000.h5.tmp"));
    ck_assert(!exists(dir, "latest"));  // only commit writes it

    float *p = sentinel_arena(&f.layout), *m = sentinel_arena(&f.layout),
          *v = sentinel_arena(&f.layout);
    pf_checkpoint_state st;
    ck_assert_msg(pf_checkpoint_load(ckpt_path(dir, 1000), &f.layout, p, m, v, &st) == 0, "%s",
                  pf_errmsg());
    const float *want[3] = {f.p, f.m, f.v}, *got[3] = {p, m, v};
    for (int g = 0; g < 3; g++) {
        int64_t end = 0;
        for (int i = 0; i < f.layout.count; i++) {
            const pf_param_info *pi = &f.layout.params[i];
            int64_t n = pf_param_numel(pi);
            ck_assert_msg(!memcmp(got[g] + pi->offset, want[g] + pi->offset, 4 * (size_t)n),
                          "arena %d param %s differs", g, pi->name);
            // The gap before this parameter is not written.
            ck_assert(all_sentinel(got[g] + end, pi->offset - end));
            end = pi->offset + n;
        }
        ck_assert(all_sentinel(got[g] + end, f.layout.numel - end));
    }
    ck_assert_int_eq(st.step, 1000);
    ck_assert_int_eq(st.world, WORLD);
    ck_assert_int_eq(st.rng_words, RNG_WORDS);
    ck_assert(!memcmp(st.rng, f.rng, sizeof f.rng));
    ck_assert(!memcmp(st.cursors, f.cursors, sizeof f.cursors));
    ck_assert_str_eq(st.config_text, f.st.config_text);
    ck_assert_int_eq(st.n_masks, 1);
    ck_assert_str_eq(st.masks[0].name, "h.0.mlp.fc1.S");
    ck_assert(st.masks[0].rows == 4 && st.masks[0].cols == 3);
    ck_assert(!memcmp(st.masks[0].col, f.mask, sizeof f.mask));
    pf_checkpoint_state_free(&st);

    // Parameters only (an evaluation tool): the moment buffers may be NULL.
    float *p2 = sentinel_arena(&f.layout);
    ck_assert(pf_checkpoint_load(ckpt_path(dir, 1000), &f.layout, p2, NULL, NULL, &st) == 0);
    ck_assert(!memcmp(p2 + f.layout.params[3].offset, f.p + f.layout.params[3].offset,
                      4 * 300 * 1000));
    pf_checkpoint_state_free(&st);
    free(p2);
    free(p);
    free(m);
    free(v);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_empty_config_and_nested_dir) {
    fixture f;
    fixture_init(&f, 3);
    f.st.config_text = "";
    char *dir = temp_dir(), sub[512];
    snprintf(sub, sizeof sub, "%s/run/a/ckpt", dir);  // created with its parents
    ck_assert_msg(save_step(&f, sub, 5) == 0, "%s", pf_errmsg());
    pf_checkpoint_state st;
    float *p = sentinel_arena(&f.layout);
    ck_assert(pf_checkpoint_load(ckpt_path(sub, 5), &f.layout, p, NULL, NULL, &st) == 0);
    ck_assert_str_eq(st.config_text, "");
    pf_checkpoint_state_free(&st);
    free(p);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_commit_writes_latest) {
    fixture f;
    fixture_init(&f, 7);
    char *dir = temp_dir();
    save_commit(&f, dir, 7, 3);
    char p[1024], *text;
    snprintf(p, sizeof p, "%s/latest", dir);
    ck_assert_int_eq(pf_read_file(p, &text, NULL), 0);
    ck_assert_str_eq(text, "ckpt-00000007.h5\n");
    free(text);
    ck_assert(!exists(dir, "latest.tmp"));
    // Committing a step that was never saved is an error and leaves `latest` alone.
    ck_assert_int_eq(pf_checkpoint_commit(dir, 8, 3), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "ckpt-00000008.h5"));
    ck_assert_int_eq(pf_read_file(p, &text, NULL), 0);
    ck_assert_str_eq(text, "ckpt-00000007.h5\n");
    free(text);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_keep_last_k) {
    fixture f;
    fixture_init(&f, 9);
    char *dir = temp_dir();
    for (int s = 1; s <= 4; s++) save_commit(&f, dir, s, 2);
    ck_assert(!exists(dir, "ckpt-00000001.h5") && !exists(dir, "ckpt-00000002.h5"));
    ck_assert(exists(dir, "ckpt-00000003.h5") && exists(dir, "ckpt-00000004.h5"));
    // A stale temporary from a crashed save goes; a saved but uncommitted newer step stays.
    char stale[1100];
    snprintf(stale, sizeof stale, "%s.tmp", ckpt_path(dir, 2));
    FILE *fp = fopen(stale, "w");
    ck_assert(fp && fclose(fp) == 0);
    ck_assert_int_eq(save_step(&f, dir, 9), 0);
    save_commit(&f, dir, 5, 2);
    ck_assert(!exists(dir, "ckpt-00000002.h5.tmp"));
    ck_assert(!exists(dir, "ckpt-00000003.h5"));
    ck_assert(exists(dir, "ckpt-00000004.h5") && exists(dir, "ckpt-00000005.h5"));
    ck_assert(exists(dir, "ckpt-00000009.h5"));
    // keep <= 0 keeps everything.
    save_commit(&f, dir, 6, 0);
    ck_assert(exists(dir, "ckpt-00000004.h5") && exists(dir, "ckpt-00000005.h5"));
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_flipped_byte_detected) {
    fixture f;
    fixture_init(&f, 11);
    char *dir = temp_dir();
    ck_assert_int_eq(save_step(&f, dir, 100), 0);
    const char *path = ckpt_path(dir, 100);
    flip_byte_in(path, "params/big");
    float *p = sentinel_arena(&f.layout), *m = sentinel_arena(&f.layout);
    pf_checkpoint_state st = {0};
    ck_assert_int_eq(pf_checkpoint_load(path, &f.layout, p, m, NULL, &st), -1);
    ck_assert_msg(strstr(pf_errmsg(), path) && strstr(pf_errmsg(), "/params/big") &&
                      strstr(pf_errmsg(), "corrupt"),
                  "message: %s", pf_errmsg());
    // Nothing was written into the caller's buffers or state.
    ck_assert(all_sentinel(p, f.layout.numel) && all_sentinel(m, f.layout.numel));
    ck_assert_ptr_null(st.rng);
    ck_assert_int_eq(pf_checkpoint_verify(path, &f.layout), -1);
    free(p);
    free(m);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_truncated_file_detected) {
    fixture f;
    fixture_init(&f, 13);
    char *dir = temp_dir();
    ck_assert_int_eq(save_step(&f, dir, 100), 0);
    const char *path = ckpt_path(dir, 100);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);
    float *p = sentinel_arena(&f.layout);
    pf_checkpoint_state st;
    ck_assert_int_eq(pf_checkpoint_load(path, &f.layout, p, NULL, NULL, &st), -1);
    ck_assert_msg(strstr(pf_errmsg(), path), "message: %s", pf_errmsg());
    ck_assert(all_sentinel(p, f.layout.numel));
    free(p);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_find_resume_falls_back) {
    fixture f;
    fixture_init(&f, 17);
    char *dir = temp_dir(), path[1024], msg[4096];
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_NONE);
    for (int s = 1; s <= 3; s++) save_commit(&f, dir, s, 5);
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 3));
    ck_assert_str_eq(msg, "");

    // latest names 3, which is corrupt; 4 is newer but was never committed.
    ck_assert_int_eq(save_step(&f, dir, 4), 0);
    flip_byte_in(ckpt_path(dir, 3), "opt/v/a.w");
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 2));
    ck_assert_msg(strstr(msg, "skipped") && strstr(msg, ckpt_path(dir, 3)) &&
                      strstr(msg, "/opt/v/a.w"),
                  "message: %s", msg);

    // Without `latest` (a crash before the first commit): the newest file that verifies.
    char latest[1100];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    ck_assert_int_eq(unlink(latest), 0);
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 4));

    // Nothing usable: not a fresh start (that would overwrite the run) but UNUSABLE, with the
    // reason for every file.
    FILE *fp = fopen(latest, "w");
    ck_assert(fp && fputs("garbage\n", fp) >= 0 && fclose(fp) == 0);
    for (int s = 1; s <= 4; s++) ck_assert_int_eq(truncate(ckpt_path(dir, s), 100), 0);
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_UNUSABLE);
    for (int s = 1; s <= 4; s++)
        ck_assert_msg(strstr(msg, ckpt_path(dir, s)), "no line for step %d: %s", s, msg);
    ck_assert_msg(strstr(msg, "ignored latest") && strstr(msg, ckpt_path(dir, 1)), "message: %s",
                  msg);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_layout_mismatch) {
    fixture f;
    fixture_init(&f, 19);
    char *dir = temp_dir();
    ck_assert_int_eq(save_step(&f, dir, 1), 0);
    const char *path = ckpt_path(dir, 1);
    pf_layout other;
    make_layout(&other, 1);
    float *p = sentinel_arena(&other);
    pf_checkpoint_state st;
    ck_assert_int_eq(pf_checkpoint_load(path, &other, p, NULL, NULL, &st), -1);
    ck_assert_msg(strstr(pf_errmsg(), "/params/a.w") && strstr(pf_errmsg(), "[3, 5]") &&
                      strstr(pf_errmsg(), "[5, 3]") && strstr(pf_errmsg(), path),
                  "message: %s", pf_errmsg());
    ck_assert(all_sentinel(p, other.numel));
    pf_layout_free(&other);

    // The model has a parameter the file lacks.
    make_layout(&other, 0);
    pf_layout_add(&other, "extra", 1, (int64_t[]){4}, false);
    ck_assert_int_eq(pf_checkpoint_verify(path, &other), -1);
    ck_assert_msg(strstr(pf_errmsg(), "/params/extra is missing"), "message: %s", pf_errmsg());
    pf_layout_free(&other);

    // The file has a parameter the model lacks.
    pf_layout_init(&other);
    pf_layout_add(&other, "a.w", 2, (int64_t[]){3, 5}, false);
    ck_assert_int_eq(pf_checkpoint_verify(path, &other), -1);
    ck_assert_msg(strstr(pf_errmsg(), "does not have"), "message: %s", pf_errmsg());
    pf_layout_free(&other);
    free(p);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

START_TEST(test_unwritable_directory) {
    fixture f;
    fixture_init(&f, 23);
    char *dir = temp_dir(), bad[600];
    // Tests run as root, which chmod does not stop: a regular file as a parent does.
    snprintf(bad, sizeof bad, "%s/file", dir);
    FILE *fp = fopen(bad, "w");
    ck_assert(fp && fclose(fp) == 0);
    snprintf(bad, sizeof bad, "%s/file/ckpt", dir);
    ck_assert_int_eq(save_step(&f, bad, 1), -1);
    ck_assert_msg(strstr(pf_errmsg(), bad), "message: %s", pf_errmsg());
    ck_assert_int_eq(pf_checkpoint_commit(bad, 1, 2), -1);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

// A full disk, simulated with a file-size limit (works as root, needs no mount): the save
// fails with a message, leaves no partial file, and the previous checkpoint stays current.
START_TEST(test_full_disk_keeps_previous) {
    fixture f;
    fixture_init(&f, 29);
    char *dir = temp_dir();
    save_commit(&f, dir, 1, 3);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 256 * 1024;  // the file needs ~3.6 MB
    signal(SIGXFSZ, SIG_IGN);   // a write past the limit then fails with EFBIG
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = save_step(&f, dir, 2);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(pf_errmsg(), "ckpt-00000002.h5"), "message: %s", pf_errmsg());
    ck_assert(!exists(dir, "ckpt-00000002.h5") && !exists(dir, "ckpt-00000002.h5.tmp"));
    char path[1024], msg[1024];
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 1));
    ck_assert_str_eq(msg, "");
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

// Arenas of small finite values (the random bit patterns above hold NaNs).
static void make_finite(fixture *f) {
    float *a[3] = {f->p, f->m, f->v};
    for (int g = 0; g < 3; g++)
        for (int64_t i = 0; i < f->layout.numel; i++)
            a[g][i] = (float)((i * 37 + g) % 201 - 100) / 64;
    f->st.allow_nonfinite = false;
}

// The trainer's backstop against divergence: a NaN or infinity in any parameter, moment or
// second moment makes the save fail with the place named, and leaves nothing behind; `latest`
// and the previous checkpoint stay. Values in alignment gaps are not parameters and do not count.
START_TEST(test_save_refuses_nonfinite) {
    fixture f;
    fixture_init(&f, 31);
    make_finite(&f);
    char *dir = temp_dir();
    save_commit(&f, dir, 1, 3);
    const pf_param_info *big = &f.layout.params[3], *e = &f.layout.params[4];
    ck_assert_str_eq(big->name, "big");
    float keep = f.p[big->offset + 5];
    f.p[big->offset + 5] = NAN;
    ck_assert_int_eq(save_step(&f, dir, 2), -1);
    ck_assert_msg(strstr(pf_errmsg(), "ckpt-00000002.h5") && strstr(pf_errmsg(), "/params/big") &&
                      strstr(pf_errmsg(), "NaN at element 5"),
                  "message: %s", pf_errmsg());
    ck_assert(!exists(dir, "ckpt-00000002.h5") && !exists(dir, "ckpt-00000002.h5.tmp"));
    f.p[big->offset + 5] = keep;
    f.v[e->offset + 129] = INFINITY;
    ck_assert_int_eq(save_step(&f, dir, 2), -1);
    ck_assert_msg(strstr(pf_errmsg(), "/opt/v/e holds +inf at element 129"), "message: %s",
                  pf_errmsg());
    ck_assert_int_eq(pf_checkpoint_check_finite(&f.layout, f.v, "opt/v"), -1);
    f.v[e->offset + 129] = 1;
    // "a.b" has 7 elements: the 57 after it up to the next 64-float offset are a gap.
    ck_assert_int_eq(f.layout.params[2].offset - f.layout.params[1].offset, 64);
    f.m[f.layout.params[1].offset + 7] = NAN;
    ck_assert_msg(save_step(&f, dir, 2) == 0, "%s", pf_errmsg());
    char path[1024], msg[1024];
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 1));  // `latest` never moved
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

// An accept callback that refuses the checkpoints of the steps in ctx (a 0-terminated list).
static int refuse_steps(void *ctx, const char *path) {
    for (const int *s = ctx; *s; s++) {
        char name[32];
        snprintf(name, sizeof name, "ckpt-%08d.h5", *s);
        if (strstr(path, name)) {
            pf_error("checkpoint '%s': refused by the caller", path);
            return -1;
        }
    }
    return 0;
}

// The caller's veto (the trainer's config comparison) is a reason to fall back like a failed
// verification, and when it refuses every file the directory is UNUSABLE, never NONE.
START_TEST(test_find_resume_accept_and_any) {
    fixture f;
    fixture_init(&f, 37);
    char *dir = temp_dir(), path[1024], msg[4096];
    ck_assert(!pf_checkpoint_any(dir));
    char stale[1100];
    snprintf(stale, sizeof stale, "%s.tmp", ckpt_path(dir, 9));
    FILE *fp = fopen(stale, "w");
    ck_assert(fp && fclose(fp) == 0);
    ck_assert(!pf_checkpoint_any(dir));  // a stale temporary is not a checkpoint
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_NONE);
    for (int s = 1; s <= 3; s++) save_commit(&f, dir, s, 5);
    ck_assert(pf_checkpoint_any(dir));
    int newest[] = {3, 0}, all[] = {1, 2, 3, 0};
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, refuse_steps, newest), PF_RESUME_FOUND);
    ck_assert_str_eq(path, ckpt_path(dir, 2));
    ck_assert_msg(strstr(msg, "skipped: checkpoint") && strstr(msg, "refused by the caller") &&
                      strstr(msg, ckpt_path(dir, 3)),
                  "message: %s", msg);
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, refuse_steps, all), PF_RESUME_UNUSABLE);
    for (int s = 1; s <= 3; s++) ck_assert(strstr(msg, ckpt_path(dir, s)));
    // `latest` alone (its file deleted by hand) still marks the directory as holding a run.
    for (int s = 1; s <= 3; s++) ck_assert_int_eq(unlink(ckpt_path(dir, s)), 0);
    ck_assert(pf_checkpoint_any(dir));
    ck_assert_int_eq(FIND_RESUME(dir, &f.layout, NULL, NULL), PF_RESUME_UNUSABLE);
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

// A corrupt /config fails pf_checkpoint_read_config without handing back a buffer (it used to
// leak one; found by tests/fuzz/fuzz_checkpoint).
START_TEST(test_corrupt_config_text) {
    fixture f;
    fixture_init(&f, 17);
    char *dir = temp_dir();
    ck_assert_int_eq(save_step(&f, dir, 7), 0);
    const char *path = ckpt_path(dir, 7);
    flip_byte_in(path, "config");
    char *text = NULL;
    ck_assert_int_eq(pf_checkpoint_read_config(path, &text), -1);
    ck_assert_ptr_null(text);
    ck_assert_msg(strstr(pf_errmsg(), "/config"), "message: %s", pf_errmsg());
    fixture_free(&f);
    remove_tree(dir);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip_bit_exact);
    tcase_add_test(tc, test_empty_config_and_nested_dir);
    tcase_add_test(tc, test_commit_writes_latest);
    tcase_add_test(tc, test_keep_last_k);
    tcase_add_test(tc, test_flipped_byte_detected);
    tcase_add_test(tc, test_truncated_file_detected);
    tcase_add_test(tc, test_find_resume_falls_back);
    tcase_add_test(tc, test_layout_mismatch);
    tcase_add_test(tc, test_unwritable_directory);
    tcase_add_test(tc, test_full_disk_keeps_previous);
    tcase_add_test(tc, test_save_refuses_nonfinite);
    tcase_add_test(tc, test_find_resume_accept_and_any);
    tcase_add_test(tc, test_corrupt_config_text);
    suite_add_tcase(s, tc);
    return s;
}
