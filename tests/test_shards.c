// test_shards.c: splits of several shards (shard lists and globs, the concatenated order, every
// item exactly once per epoch across ranks, exact resume) and background loading (batches
// bit-identical to loading in the step, whatever the thread count and queue depth).
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "image_loader.h"
#include "image_shard.h"
#include "shards.h"
#include "text_shard.h"
#include "token_loader.h"

// ---- shard lists -----------------------------------------------------------------------------

static void touch(const char *name) {
    FILE *f = fopen(pf_test_path(name), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

START_TEST(list_globs_and_commas) {
    touch("b-1.h5"), touch("b-0.h5"), touch("b-2.h5"), touch("a.h5");
    char spec[4096];
    snprintf(spec, sizeof spec, " %s , %s/b-*.h5", pf_test_path("a.h5"), pf_test_tmpdir());
    pf_shard_list l;
    ck_assert_msg(pf_shard_list_expand(spec, "data.train", &l) == 0, "%s", pf_errmsg());
    ck_assert_int_eq(l.n, 4);
    ck_assert_str_eq(l.paths[0], pf_test_path("a.h5"));  // elements in the order given
    ck_assert_str_eq(l.paths[1], pf_test_path("b-0.h5"));  // a glob's matches sorted
    ck_assert_str_eq(l.paths[2], pf_test_path("b-1.h5"));
    ck_assert_str_eq(l.paths[3], pf_test_path("b-2.h5"));
    pf_shard_list_free(&l);

    struct {
        const char *fmt, *needle;
    } bad[] = {
        {"%s/none-*.h5", "matches no file"},
        {"%s/b-0.h5,,%s/b-1.h5", "empty"},
        {"%s/b-*.h5,%s/b-1.h5", "twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(spec, sizeof spec, bad[i].fmt, pf_test_tmpdir(), pf_test_tmpdir());
        ck_assert_int_eq(pf_shard_list_expand(spec, "data.train", &l), -1);
        ck_assert_msg(strstr(pf_errmsg(), bad[i].needle), "%s", pf_errmsg());
        ck_assert_msg(strstr(pf_errmsg(), "data.train"), "%s", pf_errmsg());
    }
}
END_TEST

START_TEST(shard_of_prefix_sums) {
    const int64_t first[] = {0, 3, 3, 7, 8};  // shard 1 is empty
    const int want[] = {0, 0, 0, 2, 2, 2, 2, 3};
    for (int i = 0; i < 8; i++) ck_assert_int_eq(pf_shard_of(first, 4, i), want[i]);
}
END_TEST

// ---- image splits ----------------------------------------------------------------------------

enum { IS = 4, IK = 5 };  // 4x4 gray images, 5 classes

// Image `id` carries its number in its first two pixels, so a batch says which images it holds.
static void image_of(int id, uint8_t img[IS * IS]) {
    for (int p = 0; p < IS * IS; p++) img[p] = (uint8_t)((id * 37 + p * 11) & 0xff);
    img[0] = (uint8_t)(id & 0xff), img[1] = (uint8_t)(id >> 8);
}

// Images [from, to) into one shard.
static void write_images(const char *name, int from, int to) {
    pf_shard_writer *w = pf_shard_writer_open(pf_test_path(name), IS, IS, 1);
    ck_assert_msg(w != NULL, "%s", pf_errmsg());
    uint8_t img[IS * IS];
    for (int i = from; i < to; i++) {
        image_of(i, img);
        ck_assert_int_eq(pf_shard_writer_add(w, img, i % IK), 0);
    }
    char *names[IK] = {"a", "b", "c", "d", "e"};
    ck_assert_msg(pf_shard_writer_finish(w, IK, names, "test") == 0, "%s", pf_errmsg());
}

// The split of 3 uneven shards, images 0..N-1 in order, and the same images in one shard.
enum { IN = 53 };
static const char *three_image_shards(void) {
    write_images("img-0.h5", 0, 20);
    write_images("img-1.h5", 20, 27);
    write_images("img-2.h5", 27, IN);
    write_images("all.h5", 0, IN);
    static char spec[2048];
    snprintf(spec, sizeof spec, "%s/img-*.h5", pf_test_tmpdir());
    return spec;
}

static int id_of(const float *img) {
    // Options below give mean 0, std 1: the output is x / 255.
    return (int)(img[0] * 255.0f + 0.5f) + 256 * (int)(img[1] * 255.0f + 0.5f);
}

static pf_image_loader *open_plain(const char *spec, int B, int rank, int world, bool shuffle,
                                   bool pad_last) {
    static const float zero[1] = {0}, one[1] = {1};
    pf_image_loader_opts o = pf_image_loader_defaults(B, 7);
    o.train = false, o.shuffle = shuffle, o.pad_last = pad_last, o.out_size = IS;
    o.mean = zero, o.std = one;
    pf_image_loader *l = pf_image_loader_open(spec, &o, rank, world);
    ck_assert_msg(l != NULL, "%s", pf_errmsg());
    return l;
}

START_TEST(images_every_one_once_per_epoch) {
    const char *spec = three_image_shards();
    enum { B = 4 };
    for (int world = 1; world <= 3; world++)
        for (int pad = 0; pad < 2; pad++) {
            pf_image_loader *l[3];
            for (int r = 0; r < world; r++) l[r] = open_plain(spec, B, r, world, true, pad);
            int64_t batches = pf_image_loader_batches_per_epoch(l[0]);
            ck_assert_int_eq(batches, pad ? (IN + world * B - 1) / (world * B) : IN / (world * B));
            for (int epoch = 0; epoch < 2; epoch++) {
                int seen[IN] = {0}, rows = 0;
                for (int64_t k = 0; k < batches; k++)
                    for (int r = 0; r < world; r++) {
                        float img[B * IS * IS];
                        int32_t lab[B];
                        ck_assert_int_eq(pf_image_loader_next(l[r], img, lab), 0);
                        for (int j = 0; j < B; j++) {
                            if (lab[j] < 0) continue;  // padding
                            int id = id_of(img + j * IS * IS);
                            ck_assert(id >= 0 && id < IN);
                            ck_assert_int_eq(lab[j], id % IK);
                            seen[id]++, rows++;
                        }
                    }
                // Every image once; without padding the tail of the order is dropped.
                ck_assert_int_eq(rows, pad ? IN : (int)(batches * world * B));
                for (int i = 0; i < IN; i++) ck_assert_int_le(seen[i], 1);
            }
            for (int r = 0; r < world; r++) pf_image_loader_close(l[r]);
        }
}
END_TEST

// The split reads like its shards concatenated into one: same order, same pooled normalisation.
START_TEST(images_split_equals_one_shard) {
    const char *spec = three_image_shards();
    enum { B = 5 };
    pf_image_loader_opts o = pf_image_loader_defaults(B, 11);
    o.out_size = IS;
    o.scale_min = 0.3f;
    pf_image_loader *a = pf_image_loader_open(spec, &o, 0, 1);
    pf_image_loader *b = pf_image_loader_open(pf_test_path("all.h5"), &o, 0, 1);
    ck_assert_msg(a && b, "%s", pf_errmsg());
    ck_assert_int_eq(pf_image_loader_num_images(a), IN);
    for (int k = 0; k < 15; k++) {  // past an epoch of 10 batches
        float x[B * IS * IS], y[B * IS * IS];
        int32_t lx[B], ly[B];
        ck_assert_int_eq(pf_image_loader_next(a, x, lx), 0);
        ck_assert_int_eq(pf_image_loader_next(b, y, ly), 0);
        ck_assert_mem_eq(lx, ly, sizeof lx);
        for (int i = 0; i < B * IS * IS; i++) ck_assert_float_eq_tol(x[i], y[i], 2e-5f);
    }
    pf_image_loader_close(a);
    pf_image_loader_close(b);

    // Image by image from the files gives what the in-memory copy gives.
    o.memory_limit = 1;
    a = pf_image_loader_open(spec, &o, 0, 1);
    o.memory_limit = 0;
    b = pf_image_loader_open(spec, &o, 0, 1);
    ck_assert_msg(a && b, "%s", pf_errmsg());
    for (int k = 0; k < 12; k++) {
        float x[B * IS * IS], y[B * IS * IS];
        int32_t lx[B], ly[B];
        ck_assert_int_eq(pf_image_loader_next(a, x, lx), 0);
        ck_assert_int_eq(pf_image_loader_next(b, y, ly), 0);
        ck_assert_mem_eq(x, y, sizeof x);
        ck_assert_mem_eq(lx, ly, sizeof lx);
    }
    pf_image_loader_close(a);
    pf_image_loader_close(b);
}
END_TEST

START_TEST(images_shards_must_agree) {
    write_images("x-0.h5", 0, 10);
    pf_shard_writer *w = pf_shard_writer_open(pf_test_path("x-1.h5"), IS, IS, 1);
    uint8_t img[IS * IS] = {0};
    ck_assert_int_eq(pf_shard_writer_add(w, img, 0), 0);
    char *names[IK] = {"a", "b", "X", "d", "e"};
    ck_assert_int_eq(pf_shard_writer_finish(w, IK, names, "test"), 0);
    char spec[2048];
    snprintf(spec, sizeof spec, "%s/x-*.h5", pf_test_tmpdir());
    pf_image_loader_opts o = pf_image_loader_defaults(2, 1);
    o.out_size = IS;
    ck_assert_ptr_null(pf_image_loader_open(spec, &o, 0, 1));
    ck_assert_msg(strstr(pf_errmsg(), "class 2"), "%s", pf_errmsg());
}
END_TEST

// ---- token splits ----------------------------------------------------------------------------

enum { TT = 8, TV = 50257 };

// Tokens [from, to) of the sequence t -> t % 40000 into one shard.
static void write_tokens(const char *name, int from, int to) {
    pf_text_shard_writer *w = pf_text_shard_create(pf_test_path(name), TV, TV - 1, "gpt2-bpe",
                                                   "test", to - from);
    ck_assert_ptr_nonnull(w);
    for (int t = from; t < to; t++) {
        int32_t id = t % 40000;
        ck_assert_int_eq(pf_text_shard_append(w, &id, 1), 0);
    }
    ck_assert_int_eq(pf_text_shard_commit(w), 0);
}

START_TEST(tokens_windows_stay_in_their_shard) {
    // 81, 17 and 50 tokens: 10, 2 and 6 windows of 8 (+1) tokens
    write_tokens("t-0.h5", 0, 81);
    write_tokens("t-1.h5", 1000, 1017);
    write_tokens("t-2.h5", 2000, 2050);
    char spec[2048];
    snprintf(spec, sizeof spec, "%s/t-0.h5,%s/t-[12].h5", pf_test_tmpdir(), pf_test_tmpdir());
    enum { B = 2 };
    for (int world = 1; world <= 3; world++) {
        pf_token_loader *l[3];
        for (int r = 0; r < world; r++) {
            l[r] = pf_token_loader_open(spec, B, TT, r, world, 5, true, true);
            ck_assert_msg(l[r] != NULL, "%s", pf_errmsg());
        }
        ck_assert_int_eq(pf_token_loader_num_windows(l[0]), 18);
        ck_assert_int_eq(pf_token_loader_num_tokens(l[0]), 148);
        int seen[3][10] = {{0}};
        for (int64_t k = 0; k < pf_token_loader_batches_per_epoch(l[0]); k++)
            for (int r = 0; r < world; r++) {
                int32_t in[B * TT], tg[B * TT];
                ck_assert_int_eq(pf_token_loader_next(l[r], in, tg), 0);
                for (int j = 0; j < B; j++) {
                    if (tg[j * TT] < 0) continue;  // padding
                    int first = in[j * TT], shard = first / 1000, w = (first % 1000) / TT;
                    ck_assert_int_eq((first % 1000) % TT, 0);  // windows start at stride T
                    for (int i = 0; i < TT; i++) {  // contiguous, within one shard
                        ck_assert_int_eq(in[j * TT + i], first + i);
                        ck_assert_int_eq(tg[j * TT + i], first + i + 1);
                    }
                    seen[shard][w]++;
                }
            }
        const int windows[3] = {10, 2, 6};
        for (int s = 0; s < 3; s++)
            for (int w = 0; w < 10; w++) ck_assert_int_eq(seen[s][w], w < windows[s] ? 1 : 0);
        for (int r = 0; r < world; r++) pf_token_loader_close(l[r]);
    }
}
END_TEST

// ---- background loading ----------------------------------------------------------------------

typedef struct {
    float px[4 * IS * IS];
    int32_t labels[4], labels_b[4];
    float lam;
} image_batch;

static void image_config(pf_config *c, const char *spec, int workers, int prefetch) {
    pf_config_defaults(c);
    static const char *const sets[] = {
        "model.type=mixer",    "model.image_size=4",    "model.patch_size=2",
        "model.num_classes=5", "train.mixup_alpha=0.4", "train.cutmix_alpha=1",
        "train.seed=3",        "train.augment_scale_min=0.3",
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        ck_assert_int_eq(pf_config_set(c, sets[i]), 0);
    c->data_workers = workers, c->data_prefetch = prefetch;
    snprintf(c->train_path, sizeof c->train_path, "%s", spec);
    ck_assert_msg(pf_config_validate(c) == 0, "%s", pf_errmsg());
}

static void take(pf_data *d, image_batch *out) {
    pf_batch b;
    ck_assert_msg(pf_data_next(d, &b) == 0, "%s", pf_errmsg());
    memcpy(out->px, b.images, sizeof out->px);
    memcpy(out->labels, b.labels, sizeof out->labels);
    memcpy(out->labels_b, b.labels_b, sizeof out->labels_b);
    out->lam = b.lam;
}

// 30 batches (2 epochs and more of 13) in the step; then with 1..4 threads and queues of 1..3:
// bit-identical, through a cursor move and a reset in the middle, and a resume mid-epoch.
START_TEST(background_equals_step) {
    const char *spec = three_image_shards();
    enum { NB = 30, B = 4 };
    pf_config c;
    image_config(&c, spec, 0, 0);
    pf_data *d = pf_data_open(&c, spec, B, 1, 2, true);  // rank 1 of 2
    ck_assert_msg(d != NULL, "%s", pf_errmsg());
    image_batch *want = pf_malloc(sizeof *want * NB);
    pf_data_cursor at[NB + 1];
    for (int k = 0; k < NB; k++) {
        at[k] = pf_data_get_cursor(d);
        take(d, &want[k]);
    }
    at[NB] = pf_data_get_cursor(d);
    ck_assert_int_eq(at[NB].epoch, 4);  // 6 global batches of 8 per epoch
    pf_data_close(d);

    const int workers[] = {1, 2, 4}, prefetch[] = {1, 3, 2};
    for (int v = 0; v < 3; v++) {
        image_config(&c, spec, workers[v], prefetch[v]);
        d = pf_data_open(&c, spec, B, 1, 2, true);
        ck_assert_msg(d != NULL, "%s", pf_errmsg());
        image_batch got;
        for (int k = 0; k < NB; k++) {
            ck_assert_int_eq(pf_data_get_cursor(d).epoch, at[k].epoch);
            ck_assert_int_eq(pf_data_get_cursor(d).batch, at[k].batch);
            take(d, &got);
            ck_assert_mem_eq(&got, &want[k], sizeof got);
            if (k == 9) {  // back to batch 3 while the threads are ahead
                ck_assert_int_eq(pf_data_set_cursor(d, at[3]), 0);
                for (int j = 3; j <= 9; j++) {
                    take(d, &got);
                    ck_assert_mem_eq(&got, &want[j], sizeof got);
                }
            }
            if (k == 20) {  // an out-of-range cursor is refused and the position kept
                ck_assert_int_eq(pf_data_set_cursor(d, (pf_data_cursor){0, 99}), -1);
                ck_assert_msg(strstr(pf_errmsg(), "outside"), "%s", pf_errmsg());
            }
        }
        pf_data_reset(d);
        take(d, &got);
        ck_assert_mem_eq(&got, &want[0], sizeof got);
        pf_data_close(d);

        // A resume mid-epoch in a fresh source replays the same batches.
        d = pf_data_open(&c, spec, B, 1, 2, true);
        ck_assert_int_eq(pf_data_set_cursor(d, at[17]), 0);
        for (int k = 17; k < NB; k++) {
            take(d, &got);
            ck_assert_mem_eq(&got, &want[k], sizeof got);
        }
        pf_data_close(d);
    }
    free(want);
}
END_TEST

// Closing with the threads blocked on a full queue, or before any batch, ends cleanly.
START_TEST(background_close_anytime) {
    const char *spec = three_image_shards();
    pf_config c;
    image_config(&c, spec, 3, 2);
    for (int taken = 0; taken < 3; taken++) {
        pf_data *d = pf_data_open(&c, spec, 4, 0, 1, true);
        ck_assert_msg(d != NULL, "%s", pf_errmsg());
        image_batch b;
        for (int k = 0; k < taken; k++) take(d, &b);
        pf_data_close(d);
    }
}
END_TEST

// A read failure in a loader thread reaches the step as an error naming the shard: the token
// shard's one chunk is overwritten with ids above the vocabulary after the open (the threads
// read nothing before the first batch is asked for).
START_TEST(background_read_error) {
    write_tokens("bad.h5", 0, 2000);
    const char *path = pf_test_path("bad.h5");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), ds = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    haddr_t addr;
    hsize_t size;
    ck_assert_int_ge(H5Dget_chunk_info(ds, space, 0, NULL, NULL, &addr, &size), 0);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
    pf_config c;
    pf_config_defaults(&c);
    ck_assert_int_eq(pf_config_set(&c, "model.seq_len=8"), 0);
    c.data_workers = 2, c.data_prefetch = 2;
    snprintf(c.train_path, sizeof c.train_path, "%s", path);
    pf_data *d = pf_data_open(&c, path, 4, 0, 1, true);
    ck_assert_msg(d != NULL, "%s", pf_errmsg());
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, (long)addr, SEEK_SET), 0);
    for (hsize_t i = 0; i < size; i++) fputc(0xff, fp);
    fclose(fp);
    pf_batch b;
    ck_assert_int_eq(pf_data_next(d, &b), -1);
    ck_assert_msg(strstr(pf_errmsg(), "bad.h5") && strstr(pf_errmsg(), "vocabulary"), "%s",
                  pf_errmsg());
    pf_data_close(d);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("shards");
    TCase *tc = tcase_create("lists");
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(tc, list_globs_and_commas);
    tcase_add_test(tc, shard_of_prefix_sums);
    suite_add_tcase(s, tc);
    tc = tcase_create("splits");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(tc, images_every_one_once_per_epoch);
    tcase_add_test(tc, images_split_equals_one_shard);
    tcase_add_test(tc, images_shards_must_agree);
    tcase_add_test(tc, tokens_windows_stay_in_their_shard);
    suite_add_tcase(s, tc);
    tc = tcase_create("background");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(tc, background_equals_step);
    tcase_add_test(tc, background_close_anytime);
    tcase_add_test(tc, background_read_error);
    suite_add_tcase(s, tc);
    return s;
}
