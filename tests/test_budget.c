// test_budget.c: pixelfly.budget (src/budget.h). The rule's patterns at GPT-2 / ViT shapes and
// over a sweep of budgets: never above the budget, close to it, hardware-aligned blocks,
// valid patterns; a budget no pattern meets is refused naming the nearest feasible one, which
// then works; and whole models: auto layers take the budget, explicit specs override it, the
// summary reports the total against the budget.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "budget.h"
#include "check_main.h"
#include "common.h"
#include "models/model.h"
#include "pattern.h"

static const int SHAPES[][2] = {  // {out, in}
    {768, 768}, {2304, 768}, {3072, 768}, {768, 3072}, {1024, 4096}, {384, 1536},
    {512, 128}, {128, 512}, {64, 64}, {192, 64},
};
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

// The kept fraction of a spec's pattern (weights only), -1 when it is not a valid pattern.
static double kept(const pf_layer_spec *s, int out, int in) {
    pf_pattern p;
    if (pf_pattern_init(&p, out, in, s->bs, s->nf, s->rank, false) < 0) return -1;
    return (double)pf_pattern_macs_per_token(&p) / ((double)out * in);
}

START_TEST(test_rule_at_paper_shapes) {
    // GPT-2 small's shapes at 0.25: bs 16 (blocks of 48 / 192), 3 of 16 blocks per row
    pf_layer_spec s;
    ck_assert_int_eq(pf_budget_pattern("fc1", 3072, 768, 0.25, &s), 0);
    ck_assert_int_eq(s.kind, PF_LAYER_PIXELFLY);
    ck_assert_int_eq(s.bs, 16);
    ck_assert_int_eq(s.nf, 2);
    ck_assert_int_eq(s.rank % 8, 0);
    double k = kept(&s, 3072, 768);
    ck_assert_msg(k <= 0.25 && k > 0.23, "kept %g", k);
    printf("budget 0.25 at 3072 x 768: bs=%d nf=%d rank=%d keeps %.4f\n", s.bs, s.nf, s.rank, k);
}
END_TEST

// Every shape and budget from 0.02 to 0.98: a feasible answer is a valid pattern whose blocks
// are at least PF_BUDGET_MIN_BLOCK, keeps at most the budget and (at the larger budgets,
// where the 1/bs quantum is fine) at least 80% of it; an infeasible one names a budget that
// is then feasible.
START_TEST(test_rule_sweep) {
    for (int i = 0; i < N_SHAPES; i++) {
        int out = SHAPES[i][0], in = SHAPES[i][1];
        for (int b = 2; b <= 98; b += 2) {
            double budget = b / 100.0;
            pf_layer_spec s;
            if (pf_budget_pattern("L", out, in, budget, &s) < 0) {
                const char *msg = pf_errmsg(), *at = strstr(msg, "use pixelfly.budget >= ");
                ck_assert_msg(at != NULL, "%dx%d at %g: %s", out, in, budget, msg);
                double nearest = atof(at + strlen("use pixelfly.budget >= "));
                ck_assert_msg(nearest > budget, "%s", msg);
                ck_assert_msg(pf_budget_pattern("L", out, in, nearest, &s) == 0,
                              "%dx%d: the suggested %g fails: %s", out, in, nearest, pf_errmsg());
                continue;
            }
            double k = kept(&s, out, in);
            ck_assert_msg(k > 0, "%dx%d at %g: bs=%d nf=%d rank=%d invalid: %s", out, in,
                          budget, s.bs, s.nf, s.rank, pf_errmsg());
            ck_assert_msg(k <= budget + 1e-12, "%dx%d at %g keeps %g", out, in, budget, k);
            ck_assert_int_ge(out / s.bs, PF_BUDGET_MIN_BLOCK);
            ck_assert_int_ge(in / s.bs, PF_BUDGET_MIN_BLOCK);
            ck_assert_int_eq(s.rank % 8, 0);
            if (budget >= 0.2 && out >= 384 && in >= 384)
                ck_assert_msg(k >= 0.8 * budget, "%dx%d at %g keeps only %g (bs=%d nf=%d r=%d)",
                              out, in, budget, k, s.bs, s.nf, s.rank);
        }
    }
}
END_TEST

START_TEST(test_infeasible) {
    pf_layer_spec s;
    // 64 x 64: blocks of at least 8 allow bs <= 8, so at least 2/8 of the weights
    ck_assert_int_eq(pf_budget_pattern("h.0.attn.proj", 64, 64, 0.1, &s), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "h.0.attn.proj"));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "use pixelfly.budget >= 0.25"));
    // 16 x 64: no block size leaves blocks of 8 x 8 and a sparse pattern
    ck_assert_int_eq(pf_budget_pattern("h.0.token.fc1", 64, 16, 0.3, &s), -1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "keep it dense"));
}
END_TEST

static pf_model *model(const char *const *sets, char *err, size_t len) {
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "data.train=unused.h5"), 0);
    for (const char *const *s = sets; *s; s++)
        ck_assert_msg(pf_config_set(&c, *s) == 0, "%s", pf_errmsg());
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
    pf_model *m = pf_model_create(&c, &pf_backend_cpu, 1);
    if (!m) snprintf(err, len, "%s", pf_errmsg());
    return m;
}

#define GPT2_WIDE                                                                            \
    "model.type=gpt2", "model.n_layer=2", "model.n_embd=256", "model.n_head=4",              \
        "model.seq_len=16", "model.vocab_size=100"

START_TEST(test_models_take_the_budget) {
    char err[1024] = "", *text = NULL;
    size_t len = 0;
    pf_model *m = model((const char *const[]){GPT2_WIDE, "pixelfly.budget=0.25",
                                              "pixelfly.attn_proj=dense",
                                              "pixelfly.mlp_fc2=butterfly bs=8", NULL},
                        err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    FILE *f = open_memstream(&text, &len);
    pf_model_summary(m, f);
    fclose(f);
    printf("%s", text);
    // qkv and fc1 budgeted, proj dense, fc2 the explicit butterfly
    ck_assert_ptr_nonnull(strstr(text, "h.1.attn.qkv           pixelfly"));
    ck_assert_ptr_nonnull(strstr(text, "h.1.attn.proj          dense"));
    ck_assert_ptr_nonnull(strstr(text, "h.1.mlp.fc1            pixelfly"));
    ck_assert_ptr_nonnull(strstr(text, "h.1.mlp.fc2            butterfly"));
    const char *line = strstr(text, "budget 0.25: the 4 layers it chose keep ");
    ck_assert_msg(line != NULL, "%s", text);
    long long keep, dense;
    ck_assert_int_eq(sscanf(line, "budget 0.25: the 4 layers it chose keep %lld of %lld", &keep,
                            &dense), 2);
    ck_assert_int_eq(dense, 2 * (768LL * 256 + 1024LL * 256));
    ck_assert_msg(keep <= dense / 4 && keep > dense / 5, "%lld of %lld", keep, dense);
    free(text);
    pf_model_free(m);

    // A budget a layer cannot meet stops the build, naming the layer.
    m = model((const char *const[]){GPT2_WIDE, "pixelfly.budget=0.01", NULL}, err, sizeof err);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err, "h.0.attn.qkv") && strstr(err, "use pixelfly.budget >="), "%s", err);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("budget");
    TCase *tc = tcase_create("budget");
    tcase_add_test(tc, test_rule_at_paper_shapes);
    tcase_add_test(tc, test_rule_sweep);
    tcase_add_test(tc, test_infeasible);
    tcase_add_test(tc, test_models_take_the_budget);
    suite_add_tcase(s, tc);
    return s;
}
