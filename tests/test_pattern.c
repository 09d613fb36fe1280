// test_pattern.c: the flat block butterfly pattern (pattern.h): its mask drawn out by hand,
// density, symmetry, balance, rectangular layers, every invalid-parameter message (and that
// the values it suggests do work), and that the initialisation keeps the dense layer's
// output variance (measured with the CPU backend).
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check_main.h"
#include "common.h"
#include "pattern.h"

static int log2i(int n) {
    int k = 0;
    while ((1 << k) < n) k++;
    return k;
}

// Every (bs, nf) with 2 <= bs <= 64, calling f on a square layer of 2*bs features.
static void for_each_pattern(void (*f)(const pf_pattern *p)) {
    for (int bs = 2; bs <= 64; bs *= 2)
        for (int nf = 1; nf <= log2i(bs); nf++) {
            pf_pattern p;
            ck_assert_int_eq(pf_pattern_init(&p, 2 * bs, 2 * bs, bs, nf, 0, false), 0);
            f(&p);
        }
}

static void check_density(const pf_pattern *p) {
    char *draw = pf_malloc((size_t)p->bs * (p->bs + 1) + 1);
    pf_pattern_draw(p, draw);
    int kept = 0;
    for (char *s = draw; *s; s++) kept += *s == '#';
    ck_assert_int_eq(kept, p->bs * (p->nf + 1));
    ck_assert(pf_pattern_density(p) == (double)(p->nf + 1) / p->bs);
    ck_assert_int_eq(pf_pattern_sparse_numel(p) * p->bs, (int64_t)(p->nf + 1) * p->out * p->in);
    free(draw);
}

// slot(p, q) >= 0 iff slot(q, p) >= 0, with the same slot (the CPU backend's dX walks
// row q at slot k to find column q of row p); col() inverts slot().
static void check_symmetry(const pf_pattern *p) {
    for (int r = 0; r < p->bs; r++)
        for (int c = 0; c < p->bs; c++) {
            int k = pf_pattern_slot(p, r, c);
            ck_assert_int_eq(k, pf_pattern_slot(p, c, r));
            if (k >= 0) ck_assert_int_eq(pf_pattern_col(p, r, k), c);
        }
}

// nf+1 super-blocks in every super-row and every super-column, distinct slots per row.
static void check_balance(const pf_pattern *p) {
    for (int i = 0; i < p->bs; i++) {
        int row = 0, col = 0;
        unsigned slots = 0;
        for (int j = 0; j < p->bs; j++) {
            int k = pf_pattern_slot(p, i, j);
            row += k >= 0;
            col += pf_pattern_slot(p, j, i) >= 0;
            if (k >= 0) slots |= 1u << k;
        }
        ck_assert_int_eq(row, p->nf + 1);
        ck_assert_int_eq(col, p->nf + 1);
        ck_assert_uint_eq(slots, (1u << (p->nf + 1)) - 1);
    }
}

START_TEST(test_density) { for_each_pattern(check_density); }
END_TEST

START_TEST(test_symmetry) { for_each_pattern(check_symmetry); }
END_TEST

START_TEST(test_balance) { for_each_pattern(check_balance); }
END_TEST

// The masks drawn by hand from the rule "keep (p, q) iff p xor q is 0 or 2^k, k < nf".
START_TEST(test_draw_bs8) {
    static const struct {
        int bs, nf;
        const char *mask;
    } want[] = {
        {8, 1, "##......\n##......\n..##....\n..##....\n....##..\n....##..\n......##\n......##\n"},
        // p xor q in {0, 1, 2}: block diagonal in groups of 4, 3/4 full inside each.
        {8, 2, "###.....\n##.#....\n#.##....\n.###....\n....###.\n....##.#\n....#.##\n.....###\n"},
        // p xor q in {0, 1, 2, 4}: the same plus the diagonal of the off-diagonal 4x4 blocks.
        {8, 3, "###.#...\n##.#.#..\n#.##..#.\n.###...#\n#...###.\n.#..##.#\n..#.#.##\n...#.###\n"},
        {4, 2, "###.\n##.#\n#.##\n.###\n"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        pf_pattern p;
        char buf[8 * 9 + 1];
        ck_assert_int_eq(pf_pattern_init(&p, 64, 64, want[i].bs, want[i].nf, 0, false), 0);
        pf_pattern_draw(&p, buf);
        ck_assert_str_eq(buf, want[i].mask);
    }
}
END_TEST

// to_dense puts block (row, slot k) at super-column col(row, k) and zeros elsewhere.
START_TEST(test_to_dense) {
    pf_pattern p;
    ck_assert_int_eq(pf_pattern_init(&p, 24, 40, 8, 2, 0, false), 0);  // ob 3, ib 5
    int64_t ns = pf_pattern_sparse_numel(&p);
    float *S = pf_malloc(sizeof(float) * ns), *W = pf_malloc(sizeof(float) * p.out * p.in);
    for (int64_t i = 0; i < ns; i++) S[i] = (float)(i + 1);
    pf_pattern_to_dense(&p, S, W);
    for (int o = 0; o < p.out; o++)
        for (int i = 0; i < p.in; i++) {
            int k = pf_pattern_slot(&p, o / p.ob, i / p.ib);
            float want = k < 0 ? 0.0f
                               : S[(((int64_t)(o / p.ob) * (p.nf + 1) + k) * p.ob + o % p.ob) *
                                       p.ib + i % p.ib];
            ck_assert_float_eq(W[o * p.in + i], want);
        }
    free(S);
    free(W);
}
END_TEST

// GPT-2's MLP shapes: fc1 3072x768 and fc2 768x3072 with bs=16.
START_TEST(test_rectangular) {
    pf_pattern p;
    ck_assert_int_eq(pf_pattern_init(&p, 3072, 768, 16, 2, 32, true), 0);
    ck_assert_int_eq(p.ob, 192);
    ck_assert_int_eq(p.ib, 48);
    ck_assert_int_eq(pf_pattern_sparse_numel(&p), 16 * 3 * 192 * 48);
    ck_assert_int_eq(pf_pattern_numel(&p), 16 * 3 * 192 * 48 + 32 * (3072 + 768) + 3072);
    ck_assert_int_eq(pf_pattern_macs_per_token(&p), 16 * 3 * 192 * 48 + 32 * (3072 + 768));
    ck_assert(fabs(pf_pattern_density(&p) - 3.0 / 16) < 1e-15);

    ck_assert_int_eq(pf_pattern_init(&p, 768, 3072, 16, 4, 0, false), 0);
    ck_assert_int_eq(p.ob, 48);
    ck_assert_int_eq(p.ib, 192);
    ck_assert_int_eq(pf_pattern_sparse_numel(&p), 16 * 5 * 48 * 192);
    ck_assert_int_eq(pf_pattern_numel(&p), 16 * 5 * 48 * 192);
    ck_assert_int_eq(pf_pattern_macs_per_token(&p), (int64_t)768 * 3072 * 5 / 16);
}
END_TEST

// ---- invalid parameters ----

typedef struct {
    int out, in, bs, nf, rank;
    const char *says[3];  // substrings the message must contain
    char fix;             // which parameter the suggested values are for: 'b', 'n', 'r', 0
} bad_case;

static const bad_case bad[] = {
    {48, 48, 6, 2, 0, {"bs=6", "not a power of two", "use one of"}, 'b'},
    {48, 48, 1, 1, 0, {"bs=1", "not a power of two >= 2", "use one of"}, 'b'},
    {40, 64, 16, 2, 0, {"bs=16 does not divide out=40", "use one of", NULL}, 'b'},
    {64, 48, 32, 2, 0, {"bs=32 does not divide in=48", "use one of", NULL}, 'b'},
    {64, 64, 8, 0, 0, {"nf=0", "bs=8", "use 1..3"}, 'n'},
    {64, 64, 8, 4, 0, {"nf=4", "bs=8", "use 1..3"}, 'n'},
    {32, 64, 8, 2, -1, {"rank=-1", "to 32", NULL}, 'r'},
    {32, 64, 8, 2, 33, {"rank=33", "to 32", NULL}, 'r'},
    {0, 64, 8, 2, 0, {"out=0", "positive", NULL}, 0},
    {64, -4, 8, 2, 0, {"in=-4", "positive", NULL}, 0},
};

// Every value the message suggests ("use one of 2,4,8", "use 1..3", "0 ... to 32") works.
static void check_suggestions(const bad_case *b, const char *msg) {
    pf_pattern p;
    if (b->fix == 'b') {
        const char *s = strstr(msg, "use one of ") + strlen("use one of ");
        int n = 0;
        for (char *end; *s; s = *end == ',' ? end + 1 : end, n++) {
            long v = strtol(s, &end, 10);
            ck_assert_msg(end != s, "no number in '%s'", msg);
            ck_assert_msg(pf_pattern_init(&p, b->out, b->in, (int)v, 1, 0, false) == 0,
                          "suggested bs=%ld fails: %s", v, pf_errmsg());
        }
        ck_assert_msg(n > 0, "no suggestion in '%s'", msg);
    } else if (b->fix == 'n') {
        for (int nf = 1; nf <= 3; nf++)
            ck_assert_int_eq(pf_pattern_init(&p, b->out, b->in, b->bs, nf, 0, false), 0);
    } else if (b->fix == 'r') {
        ck_assert_int_eq(pf_pattern_init(&p, b->out, b->in, b->bs, b->nf, 0, false), 0);
        ck_assert_int_eq(pf_pattern_init(&p, b->out, b->in, b->bs, b->nf, 32, false), 0);
    }
}

START_TEST(test_invalid_parameters) {
    const bad_case *b = &bad[_i];
    pf_pattern p;
    memset(&p, 0xff, sizeof p);
    pf_error("%s", "");
    ck_assert_int_eq(pf_pattern_init(&p, b->out, b->in, b->bs, b->nf, b->rank, true), -1);
    const char *msg = pf_errmsg();
    for (int i = 0; i < 3 && b->says[i]; i++)
        ck_assert_msg(strstr(msg, b->says[i]), "message '%s' lacks '%s'", msg, b->says[i]);
    ck_assert_int_eq(p.bs, 0);  // the pattern is cleared, not half-filled
    char copy[2048];
    snprintf(copy, sizeof copy, "%s", msg);
    check_suggestions(b, copy);
}
END_TEST

// ---- initialisation keeps the dense layer's output variance ----

static double variance(const float *y, int64_t n) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        s += y[i];
        ss += (double)y[i] * y[i];
    }
    return ss / n - (s / n) * (s / n);
}

// {out, in, bs, nf, rank}
static const int init_cases[][5] = {
    {256, 256, 8, 2, 0}, {256, 256, 8, 2, 8}, {512, 256, 16, 3, 0}, {512, 256, 16, 3, 8},
};

START_TEST(test_init_variance) {
    const pf_backend *be = &pf_backend_cpu;
    const int *d = init_cases[_i];
    const int N = 4096;
    const float std = 0.02f;
    pf_pattern p;
    ck_assert_int_eq(pf_pattern_init(&p, d[0], d[1], d[2], d[3], d[4], false), 0);
    int out = p.out, in = p.in, r = p.rank;
    pf_rng rng;
    pf_rng_seed(&rng, 21 + (uint64_t)_i);
    float *x = pf_malloc(sizeof(float) * N * in), *y = pf_malloc(sizeof(float) * N * out);
    float *W = pf_malloc(sizeof(float) * out * in), *xv = pf_malloc(sizeof(float) * (N * r + 1));
    float *S = pf_malloc(sizeof(float) * pf_pattern_sparse_numel(&p));
    float *U = pf_malloc(sizeof(float) * (out * r + 1));
    float *V = pf_malloc(sizeof(float) * (r * in + 1));
    for (int64_t i = 0; i < (int64_t)N * in; i++) x[i] = pf_rng_normal(&rng);
    for (int64_t i = 0; i < (int64_t)out * in; i++) W[i] = std * pf_rng_normal(&rng);

    be->linear_fwd(pf_tensor_2d(y, PF_F32, PF_DEV_CPU, N, out),
                   pf_tensor_2d(x, PF_F32, PF_DEV_CPU, N, in),
                   pf_tensor_2d(W, PF_F32, PF_DEV_CPU, out, in), pf_none());
    double dense = variance(y, (int64_t)N * out);

    pf_pattern_init_weights(&p, std, &rng, S, U, V, NULL);
    pf_pixelfly_w w = {
        .S = pf_tensor_4d(S, PF_F32, PF_DEV_CPU, p.bs, p.nf + 1, p.ob, p.ib),
        .U = r ? pf_tensor_2d(U, PF_F32, PF_DEV_CPU, out, r) : pf_none(),
        .V = r ? pf_tensor_2d(V, PF_F32, PF_DEV_CPU, r, in) : pf_none(),
    };
    be->pixelfly_fwd(&p, pf_tensor_2d(y, PF_F32, PF_DEV_CPU, N, out),
                     pf_tensor_2d(xv, PF_F32, PF_DEV_CPU, N, r),
                     pf_tensor_2d(x, PF_F32, PF_DEV_CPU, N, in), w);
    double sparse = variance(y, (int64_t)N * out);

    double expect = in * (double)std * std;
    ck_assert_msg(fabs(dense / expect - 1) < 0.05, "dense variance %.4g, expected %.4g", dense,
                  expect);
    ck_assert_msg(fabs(sparse / dense - 1) < 0.10,
                  "bs=%d nf=%d rank=%d: pixelfly output variance %.4g vs dense %.4g", p.bs, p.nf,
                  r, sparse, dense);
    float *bufs[] = {x, y, W, xv, S, U, V};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("pattern");
    TCase *tc = tcase_create("mask");
    tcase_add_test(tc, test_density);
    tcase_add_test(tc, test_symmetry);
    tcase_add_test(tc, test_balance);
    tcase_add_test(tc, test_draw_bs8);
    tcase_add_test(tc, test_to_dense);
    tcase_add_test(tc, test_rectangular);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_invalid_parameters, 0, (int)(sizeof bad / sizeof bad[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("init");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_init_variance, 0,
                        (int)(sizeof init_cases / sizeof init_cases[0]));
    suite_add_tcase(s, tc);
    return s;
}
