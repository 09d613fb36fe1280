// test_mix.c: the Gamma and Beta samplers of rng.c, and mixup / cutmix of image batches
// (pf_image_mix_batch, and pf_data applying it to training batches reproducibly on resume).
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "image_loader.h"
#include "image_shard.h"
#include "rng.h"

// ---- samplers --------------------------------------------------------------------------

// Sample mean and variance of n draws of fn(r, a, b).
static void moments(double (*fn)(pf_rng *, double, double), double a, double b, int n,
                    double *mean, double *var, double *lo, double *hi) {
    pf_rng r;
    pf_rng_seed(&r, 2024);
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double x = fn(&r, a, b);
        ck_assert_msg(isfinite(x), "draw %d of (%g, %g) is %g", i, a, b, x);
        s += x, s2 += x * x;
        *lo = fmin(*lo, x), *hi = fmax(*hi, x);
    }
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
}

static double gamma2(pf_rng *r, double a, double b) { return (void)b, pf_rng_gamma(r, a); }

enum { DRAWS = 200000 };

// Beta(a, b): mean a / (a + b), variance ab / ((a + b)^2 (a + b + 1)); symmetric shapes as
// mixup uses them (mean 1/2) and one skewed pair, small shapes included (the alpha < 1 boost).
START_TEST(beta_moments) {
    static const double shapes[][2] = {{0.2, 0.2}, {1, 1}, {0.05, 0.05}, {2.5, 2.5}, {2, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double a = shapes[i][0], b = shapes[i][1], mean, var, lo, hi;
        moments(pf_rng_beta, a, b, DRAWS, &mean, &var, &lo, &hi);
        double want_mean = a / (a + b), want_var = a * b / ((a + b) * (a + b) * (a + b + 1));
        // 5 standard errors of the mean; 3% of the variance
        ck_assert_msg(fabs(mean - want_mean) < 5 * sqrt(want_var / DRAWS),
                      "Beta(%g, %g): mean %.5f, want %.5f", a, b, mean, want_mean);
        ck_assert_msg(fabs(var - want_var) < 0.03 * want_var,
                      "Beta(%g, %g): variance %.5f, want %.5f", a, b, var, want_var);
        ck_assert(lo >= 0 && hi <= 1);
    }
}
END_TEST

// Gamma(alpha): mean and variance alpha; strictly positive.
START_TEST(gamma_moments) {
    static const double shapes[] = {0.3, 1, 4.5};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double a = shapes[i], mean, var, lo, hi;
        moments(gamma2, a, 0, DRAWS, &mean, &var, &lo, &hi);
        ck_assert_msg(fabs(mean - a) < 5 * sqrt(a / DRAWS), "Gamma(%g): mean %.5f", a, mean);
        ck_assert_msg(fabs(var - a) < 0.04 * a, "Gamma(%g): variance %.5f", a, var);
        ck_assert(lo >= 0);
    }
}
END_TEST

// ---- pf_image_mix_batch ----------------------------------------------------------------

enum { MB = 5, MS = 8, MC = 2, MN = MS * MS * MC };  // odd B: the middle sample pairs itself

typedef struct {
    float x[MB * MN], out[MB * MN];
    int32_t labels[MB], labels_b[MB];
} mix_case;

// Distinct N(0, 1) pixels, labels b; runs the mix on a copy. Returns lam.
static float run_mix(mix_case *t, float mixup, float cutmix, uint64_t seed) {
    pf_rng r;
    pf_rng_seed(&r, 99);
    for (int i = 0; i < MB * MN; i++) t->x[i] = pf_rng_normal(&r);
    for (int b = 0; b < MB; b++) t->labels[b] = 10 + b;
    memcpy(t->out, t->x, sizeof t->x);
    return pf_image_mix_batch(t->out, t->labels, t->labels_b, MB, MS, MC, mixup, cutmix, seed);
}

static void check_labels_b(const mix_case *t) {
    for (int b = 0; b < MB; b++) ck_assert_int_eq(t->labels_b[b], t->labels[MB - 1 - b]);
}

START_TEST(mixup_exact) {
    mix_case t;
    float lam = run_mix(&t, 0.4f, 0, 5);
    ck_assert(lam > 0 && lam < 1);
    check_labels_b(&t);
    for (int b = 0; b < MB; b++)
        for (int i = 0; i < MN; i++) {
            float x = t.x[b * MN + i], xf = t.x[(MB - 1 - b) * MN + i];
            ck_assert_msg(t.out[b * MN + i] == lam * x + (1 - lam) * xf, "sample %d elem %d", b,
                          i);
        }
}
END_TEST

// Checks one cutmix output: the pixels that changed in sample 0 form a box; inside it every
// sample holds its partner's pixels, outside its own; lam = 1 - box area / image area.
// Returns the box area.
static int check_cutmix(const mix_case *t, float lam) {
    check_labels_b(t);
    int y0 = MS, y1 = -1, x0 = MS, x1 = -1, inside = 0;
    bool in[MS][MS];
    for (int y = 0; y < MS; y++)
        for (int x = 0; x < MS; x++) {
            int i = (y * MS + x) * MC;
            in[y][x] = t->out[i] != t->x[i];
            if (!in[y][x]) continue;
            inside++;
            y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
        }
    if (inside) ck_assert_int_eq(inside, (y1 - y0 + 1) * (x1 - x0 + 1));  // a full rectangle
    for (int b = 0; b < MB; b++)
        for (int y = 0; y < MS; y++)
            for (int x = 0; x < MS; x++)
                for (int c = 0; c < MC; c++) {
                    int i = (y * MS + x) * MC + c, src = in[y][x] ? MB - 1 - b : b;
                    ck_assert_msg(t->out[b * MN + i] == t->x[src * MN + i],
                                  "sample %d pixel (%d, %d) is not from sample %d", b, y, x, src);
                }
    ck_assert_float_eq(lam, 1.0f - (float)inside / (MS * MS));
    return inside;
}

START_TEST(cutmix_box) {
    int partial = 0, clipped = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        mix_case t;
        float lam = run_mix(&t, 0, 1.0f, seed);
        int area = check_cutmix(&t, lam);
        partial += area > 0 && area < MS * MS;
        // boxes reaching the first or the last pixel (clipped at a corner) occur too
        clipped += area > 0 && (t.out[0] != t.x[0] || t.out[MN - 1] != t.x[MN - 1]);
    }
    ck_assert_int_gt(partial, 100);
    ck_assert_int_gt(clipped, 5);
}
END_TEST

// Both alphas: each batch is one or the other, about half each.
START_TEST(switch_half) {
    int cut = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        mix_case t;
        float lam = run_mix(&t, 0.5f, 1.0f, seed);
        // mixup leaves no output pixel equal to an input one (lam in (0, 1), distinct pixels)
        bool is_cut = t.out[MN] == t.x[MN] || t.out[MN] == t.x[(MB - 2) * MN];
        if (is_cut) check_cutmix(&t, lam);
        cut += is_cut;
    }
    ck_assert_msg(cut > 70 && cut < 130, "%d of 200 batches were cutmix", cut);
}
END_TEST

START_TEST(mix_deterministic) {
    static const float alphas[][2] = {{0.4f, 0}, {0, 1}, {0.8f, 1}};
    for (size_t k = 0; k < sizeof alphas / sizeof alphas[0]; k++) {
        mix_case a, b, c;
        float la = run_mix(&a, alphas[k][0], alphas[k][1], 123);
        float lb = run_mix(&b, alphas[k][0], alphas[k][1], 123);
        float lc = run_mix(&c, alphas[k][0], alphas[k][1], 124);
        ck_assert(la == lb);
        ck_assert_mem_eq(a.out, b.out, sizeof a.out);
        ck_assert(la != lc || memcmp(a.out, c.out, sizeof a.out));  // another seed, another mix
    }
}
END_TEST

START_TEST(alpha_zero_untouched) {
    mix_case t;
    float lam = run_mix(&t, 0, 0, 7);
    ck_assert(lam == 1.0f);
    ck_assert_mem_eq(t.out, t.x, sizeof t.x);
    check_labels_b(&t);
}
END_TEST

// ---- through pf_data: training batches only, replayed after a cursor restore ---------------

static char tmp_dir[64], shard_path[128];

static void setup(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/pf_test_mix_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(shard_path, sizeof shard_path, "%s/s.h5", tmp_dir);
}

static void teardown(void) {
    unlink(shard_path);
    rmdir(tmp_dir);
}

enum { DN = 12, DB = 3, DS = 6, DK = 4 };  // 4 batches per epoch

static void write_shard(void) {
    pf_shard_writer *w = pf_shard_writer_open(shard_path, DS, DS, 1);
    ck_assert_msg(w != NULL, "%s", pf_errmsg());
    uint8_t img[DS * DS];
    for (int i = 0; i < DN; i++) {
        for (int p = 0; p < DS * DS; p++)
            img[p] = (uint8_t)((i * 131 + p * 29) * 2654435761u >> 13);
        ck_assert_int_eq(pf_shard_writer_add(w, img, i % DK), 0);
    }
    char *names[DK] = {"a", "b", "c", "d"};
    ck_assert_msg(pf_shard_writer_finish(w, DK, names, "test") == 0, "%s", pf_errmsg());
}

static void mix_config(pf_config *c) {
    pf_config_defaults(c);
    static const char *const sets[] = {
        "model.type=mixer",      "model.image_size=6",    "model.patch_size=3",
        "model.num_classes=4",   "train.mixup_alpha=0.5", "train.cutmix_alpha=1",
        "train.seed=31",
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_int_eq(pf_config_set(c, sets[i]), 0);
    snprintf(c->train_path, sizeof c->train_path, "%s", shard_path);
    ck_assert_msg(pf_config_validate(c) == 0, "%s", pf_errmsg());
}

typedef struct {
    float images[DB * DS * DS];
    int32_t labels[DB], labels_b[DB];
    float lam;
} data_batch;

static void next_batch(pf_data *d, data_batch *out) {
    pf_batch b;
    ck_assert_msg(pf_data_next(d, &b) == 0, "%s", pf_errmsg());
    ck_assert_ptr_nonnull(b.labels_b);
    memcpy(out->images, b.images, sizeof out->images);
    memcpy(out->labels, b.labels, sizeof out->labels);
    memcpy(out->labels_b, b.labels_b, sizeof out->labels_b);
    out->lam = b.lam;
}

START_TEST(data_mix_resume) {
    write_shard();
    pf_config c;
    mix_config(&c);
    pf_data *d = pf_data_open(&c, shard_path, DB, 0, 1, true);
    ck_assert_msg(d != NULL, "%s", pf_errmsg());
    data_batch seen[6], again;
    for (int i = 0; i < 3; i++) next_batch(d, &seen[0]);
    pf_data_cursor cur = pf_data_get_cursor(d);
    bool lam_varies = false;
    for (int i = 0; i < 6; i++) {  // crosses into epoch 1
        next_batch(d, &seen[i]);
        ck_assert(seen[i].lam >= 0 && seen[i].lam <= 1);
        for (int b = 0; b < DB; b++)
            ck_assert_int_eq(seen[i].labels_b[b], seen[i].labels[DB - 1 - b]);
        lam_varies |= seen[i].lam != seen[0].lam;
    }
    ck_assert(lam_varies);
    pf_data *r = pf_data_open(&c, shard_path, DB, 0, 1, true);
    ck_assert_msg(r != NULL, "%s", pf_errmsg());
    ck_assert_int_eq(pf_data_set_cursor(r, cur), 0);
    for (int i = 0; i < 6; i++) {
        next_batch(r, &again);
        ck_assert_mem_eq(&again, &seen[i], sizeof again);
    }
    pf_data_close(r);
    pf_data_close(d);

    // evaluation data is never mixed
    pf_data *e = pf_data_open(&c, shard_path, DB, 0, 1, false);
    ck_assert_msg(e != NULL, "%s", pf_errmsg());
    pf_batch b;
    ck_assert_int_eq(pf_data_next(e, &b), 0);
    ck_assert_ptr_null(b.labels_b);
    pf_data_close(e);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("mix");
    TCase *tc = tcase_create("samplers");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, beta_moments);
    tcase_add_test(tc, gamma_moments);
    suite_add_tcase(s, tc);
    tc = tcase_create("mix");
    tcase_add_test(tc, mixup_exact);
    tcase_add_test(tc, cutmix_box);
    tcase_add_test(tc, switch_half);
    tcase_add_test(tc, mix_deterministic);
    tcase_add_test(tc, alpha_zero_untouched);
    suite_add_tcase(s, tc);
    tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, data_mix_resume);
    suite_add_tcase(s, tc);
    return s;
}
