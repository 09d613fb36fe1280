// test_images.c: `pfdata images` converters (IDX, CIFAR, JPEG folders, numbered resumable
// shards), the shard format (and its temporary, removed when interrupted), and the image
// loader (order, rank union, augmentation, normalization, cursor).
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "check_main.h"
#include "common.h"
#include "config.h"
#include "data.h"
#include "image_loader.h"
#include "image_shard.h"
#include "interrupt.h"
#include "pfdata.h"
#include "shard_set.h"

// The synthetic ImageNet-style folder (gen_jpeg_folder), shared with the timing program.
#include "gen/jpeg_folder.c"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

// ---- fixtures --------------------------------------------------------------------------

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

// True when the test directory (or a sub-folder) holds a leftover "*.tmp.*" file.
static bool has_temp_file(const char *dir) {
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) found = true;
    if (d) closedir(d);
    return found;
}

static int run_argv(const char **args) {
    int argc = 0;
    while (args[argc]) argc++;
    return pfdata_images_main(argc, (char **)args);
}
#define RUN(...) run_argv((const char *[]){"images", "--quiet", __VA_ARGS__, NULL})

// IDX file: big-endian magic and dims, then data.
static void write_idx(const char *path, bool gz, uint32_t magic, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t n) {
    uint8_t h[16];
    uint32_t v[4] = {magic};
    memcpy(v + 1, dims, sizeof *dims * (size_t)ndim);
    for (int i = 0; i <= ndim; i++)
        for (int b = 0; b < 4; b++) h[4 * i + b] = (uint8_t)(v[i] >> (24 - 8 * b));
    if (!gz) {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        fwrite(h, 1, 4 + 4 * (size_t)ndim, f);
        fwrite(data, 1, n, f);
        fclose(f);
        return;
    }
    gzFile f = gzopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(gzwrite(f, h, 4 + 4 * (unsigned)ndim), 4 + 4 * ndim);
    if (n) ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
    gzclose(f);
}

// 5 images of 4x3, pixel p of image i = 10*i + p; labels 0 1 2 1 0.
enum { IDX_N = 5, IDX_H = 4, IDX_W = 3 };
static const uint8_t idx_labels[IDX_N] = {0, 1, 2, 1, 0};

static void write_idx_pair(const char *images, const char *labels, bool gz, uint32_t n_labels) {
    uint8_t px[IDX_N * IDX_H * IDX_W];
    for (int i = 0; i < IDX_N * IDX_H * IDX_W; i++)
        px[i] = (uint8_t)(10 * (i / (IDX_H * IDX_W)) + i % (IDX_H * IDX_W));
    uint32_t idims[3] = {IDX_N, IDX_H, IDX_W}, ldims[1] = {n_labels};
    write_idx(images, gz, 0x803, 3, idims, px, sizeof px);
    write_idx(labels, gz, 0x801, 1, ldims, idx_labels, n_labels);
}

static void check_idx_shard(const char *path) {
    pf_image_shard s;
    ck_assert_msg(pf_image_shard_open(&s, path) == 0, "%s", pf_errmsg());
    ck_assert_int_eq(s.n, IDX_N);
    ck_assert_int_eq(s.H, IDX_H);
    ck_assert_int_eq(s.W, IDX_W);
    ck_assert_int_eq(s.C, 1);
    ck_assert_int_eq(s.num_classes, 3);
    ck_assert_str_eq(s.class_names[2], "2");
    ck_assert_ptr_nonnull(strstr(s.source, "idx:"));
    uint8_t px[IDX_N * IDX_H * IDX_W];
    int32_t lab[IDX_N];
    ck_assert_int_eq(pf_image_shard_read(&s, 0, IDX_N, px, lab), 0);
    double sum = 0, sq = 0;
    for (int i = 0; i < IDX_N * IDX_H * IDX_W; i++) {
        ck_assert_int_eq(px[i], 10 * (i / (IDX_H * IDX_W)) + i % (IDX_H * IDX_W));
        sum += px[i] / 255.0, sq += (px[i] / 255.0) * (px[i] / 255.0);
    }
    for (int i = 0; i < IDX_N; i++) ck_assert_int_eq(lab[i], idx_labels[i]);
    double m = sum / (IDX_N * IDX_H * IDX_W);
    ck_assert_double_eq_tol(s.mean[0], m, 1e-6);
    ck_assert_double_eq_tol(s.std[0], sqrt(sq / (IDX_N * IDX_H * IDX_W) - m * m), 1e-6);
    pf_image_shard_close(&s);
}

// ---- IDX -------------------------------------------------------------------------------

START_TEST(idx_plain_and_gzip) {
    write_idx_pair(pf_test_path("img"), pf_test_path("lab"), false, IDX_N);
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("plain.h5"), pf_test_path("img"), pf_test_path("lab")),
                     0);
    check_idx_shard(pf_test_path("plain.h5"));
    write_idx_pair(pf_test_path("img.gz"), pf_test_path("lab.gz"), true, IDX_N);
    ck_assert_int_eq(RUN("--format=idx", pf_test_path("img.gz"), pf_test_path("lab.gz"), "--out", pf_test_path("gz.h5")),
                     0);
    check_idx_shard(pf_test_path("gz.h5"));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
}
END_TEST

START_TEST(idx_fashion_names) {
    write_idx_pair(pf_test_path("img"), pf_test_path("lab"), false, IDX_N);
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("f.h5"), "--classes", "fashion-mnist",
                         pf_test_path("img"), pf_test_path("lab")),
                     0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("f.h5")), 0);
    ck_assert_int_eq(s.num_classes, 10);
    ck_assert_str_eq(s.class_names[0], "T-shirt/top");
    ck_assert_str_eq(s.class_names[9], "Ankle boot");
    pf_image_shard_close(&s);
    // --class-names overrides; too few names for the labels is an error.
    write_bytes(pf_test_path("names.txt"), "zero\none\r\n\ntwo\n", 15);
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("n.h5"), "--class-names",
                         pf_test_path("names.txt"), pf_test_path("img"), pf_test_path("lab")),
                     0);
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("n.h5")), 0);
    ck_assert_int_eq(s.num_classes, 3);
    ck_assert_str_eq(s.class_names[1], "one");
    ck_assert_str_eq(s.class_names[2], "two");
    pf_image_shard_close(&s);
    write_bytes(pf_test_path("two.txt"), "a\nb\n", 4);
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("bad.h5"), "--class-names",
                         pf_test_path("two.txt"), pf_test_path("img"), pf_test_path("lab")),
                     1);
    ck_assert(!exists(pf_test_path("bad.h5")));
}
END_TEST

START_TEST(idx_truncated_and_bad) {
    write_idx_pair(pf_test_path("img"), pf_test_path("lab"), false, IDX_N);
    // Plain file cut inside the last image.
    char *data;
    size_t len;
    ck_assert_int_eq(pf_read_file(pf_test_path("img"), &data, &len), 0);
    write_bytes(pf_test_path("cut"), data, len - 5);
    // Gzip stream cut in the middle.
    write_idx_pair(pf_test_path("img.gz"), pf_test_path("lab.gz"), true, IDX_N);
    char *gz;
    size_t gzlen;
    ck_assert_int_eq(pf_read_file(pf_test_path("img.gz"), &gz, &gzlen), 0);
    write_bytes(pf_test_path("cut.gz"), gz, gzlen / 2);
    write_bytes(pf_test_path("keep.h5"), "keep", 4);
    const char *bad_inputs[][2] = {{pf_test_path("cut"), pf_test_path("lab")},
                                   {pf_test_path("cut.gz"), pf_test_path("lab.gz")},
                                   {pf_test_path("lab"), pf_test_path("img")},  // swapped
                                   {pf_test_path("img"), pf_test_path("missing")}};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(
            RUN("--format", "idx", "--out", pf_test_path("o.h5"), bad_inputs[i][0], bad_inputs[i][1]),
            1);
        ck_assert(access(pf_test_path("o.h5"), F_OK) != 0);  // a failed conversion writes nothing
        ck_assert(!has_temp_file(pf_test_tmpdir()));
    }
    // An existing output is refused (usage) before anything is read, and left alone.
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("keep.h5"), pf_test_path("img"),
                         pf_test_path("lab")),
                     2);
    char *kept;
    ck_assert_int_eq(pf_read_file(pf_test_path("keep.h5"), &kept, &len), 0);
    ck_assert_str_eq(kept, "keep");
    free(kept);
    free(data);
    free(gz);
}
END_TEST

START_TEST(idx_mismatched_counts) {
    write_idx_pair(pf_test_path("img"), pf_test_path("lab"), true, IDX_N - 1);
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("o.h5"), pf_test_path("img"), pf_test_path("lab")), 1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "4 labels"));
    ck_assert(!exists(pf_test_path("o.h5")));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
}
END_TEST

// The writer names its temporary to pfdata's SIGINT/SIGTERM handler (datasets/interrupt.h):
// the handler's cleanup removes it mid-write, and a finished shard is no longer tracked.
START_TEST(writer_interrupt_cleanup) {
    const char *out = pf_test_path("o.h5");
    pf_shard_writer *w = pf_shard_writer_open(out, 2, 2, 1);
    ck_assert_ptr_nonnull(w);
    ck_assert(has_temp_file(pf_test_tmpdir()));
    ck_assert_int_eq(pf_interrupt_cleanup(-1), 1);
    ck_assert(!has_temp_file(pf_test_tmpdir()));
    pf_shard_writer_abort(w);
    w = pf_shard_writer_open(out, 2, 2, 1);
    ck_assert_ptr_nonnull(w);
    const uint8_t img[4] = {1, 2, 3, 4};
    ck_assert_int_eq(pf_shard_writer_add(w, img, 0), 0);
    char *names[] = {"a"};
    ck_assert_msg(pf_shard_writer_finish(w, 1, names, "test") == 0, "%s", pf_errmsg());
    ck_assert_int_eq(pf_interrupt_cleanup(-1), 0);
    ck_assert(exists(out));
}
END_TEST

START_TEST(usage_errors) {
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("o.h5"), "only-one"), 2);
    ck_assert_int_eq(RUN("--format", "png", "--out", pf_test_path("o.h5"), "x"), 2);
    ck_assert_int_eq(RUN("--format", "idx", "a", "b"), 2);  // no --out
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("o.h5"), "--cifar100", "a", "b"), 2);
    ck_assert_int_eq(RUN("--format", "imagenet", "--out", pf_test_path("o.h5"), "--size", "0", "d"), 2);
    ck_assert_int_eq(
        RUN("--format", "imagenet", "--out", pf_test_path("o.h5"), "--on-corrupt", "ignore", "d"), 2);
    ck_assert_int_eq(RUN("--formt", "idx"), 2);
    static const char *const bad_counts[] = {"0", "-3", "abc", "64x", "", "99999999999999999999"};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(RUN("--format", "imagenet", "--out", pf_test_path("o"), "--shard-images",
                             bad_counts[i], "d"),
                         2);
        ck_assert_int_eq(RUN("--format", "imagenet", "--out", pf_test_path("o"), "--jobs",
                             bad_counts[i], "d"),
                         2);
    }
    ck_assert_int_eq(RUN("--format", "imagenet", "--out", pf_test_path("o"), "--jobs", "1025", "d"),
                     2);
    // Numbered shards are the ImageNet converter's; IDX and CIFAR refuse them.
    ck_assert_int_eq(RUN("--format", "idx", "--out", pf_test_path("o"), "--shard-images", "8",
                         "a", "b"),
                     2);
    ck_assert_int_eq(RUN("--format", "cifar", "--out", pf_test_path("o"), "--jobs", "2", "a"), 2);
    ck_assert_int_eq(RUN("--help"), 0);
}
END_TEST

// ---- CIFAR -----------------------------------------------------------------------------

// Record i: pixel (y, x) of plane c = (i + 7*c + y + 2*x) mod 256; label (i*3) % classes.
static void write_cifar(const char *path, int n, bool hundred) {
    int lb = hundred ? 2 : 1, rec = lb + 3072;
    uint8_t *buf = malloc((size_t)n * rec);
    for (int i = 0; i < n; i++) {
        uint8_t *r = buf + (size_t)i * rec;
        r[0] = (uint8_t)(hundred ? 19 - i : (i * 3) % 10);
        if (hundred) r[1] = (uint8_t)((i * 37) % 100);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++)
                r[lb + c * 1024 + p] = (uint8_t)(i + 7 * c + p / 32 + 2 * (p % 32));
    }
    write_bytes(path, buf, (size_t)n * rec);
    free(buf);
}

START_TEST(cifar10_and_100) {
    write_cifar(pf_test_path("data_batch_1.bin"), 3, false);
    write_cifar(pf_test_path("data_batch_2.bin"), 2, false);
    const char *meta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write_bytes(pf_test_path("batches.meta.txt"), meta, strlen(meta));
    ck_assert_int_eq(RUN("--format", "cifar", "--out", pf_test_path("c10.h5"), pf_test_path("data_batch_1.bin"),
                         pf_test_path("data_batch_2.bin")),
                     0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("c10.h5")), 0);
    ck_assert_int_eq(s.n, 5);
    ck_assert_int_eq(s.H, 32);
    ck_assert_int_eq(s.C, 3);
    ck_assert_int_eq(s.num_classes, 10);
    ck_assert_str_eq(s.class_names[9], "truck");
    uint8_t *px = malloc(5 * 3072);
    int32_t lab[5];
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 5, px, lab), 0);
    for (int i = 0; i < 5; i++) {
        int rec = i < 3 ? i : i - 3;  // index within its batch file
        ck_assert_int_eq(lab[i], (rec * 3) % 10);
        for (int y = 0; y < 32; y += 5)
            for (int x = 0; x < 32; x += 3)
                for (int c = 0; c < 3; c++)
                    ck_assert_int_eq(px[(size_t)i * 3072 + (y * 32 + x) * 3 + c],
                                     (uint8_t)(rec + 7 * c + y + 2 * x));
    }
    pf_image_shard_close(&s);
    free(px);

    write_cifar(pf_test_path("train.bin"), 4, true);
    ck_assert_int_eq(
        RUN("--format", "cifar", "--cifar100", "--out", pf_test_path("c100.h5"), pf_test_path("train.bin")), 0);
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("c100.h5")), 0);
    ck_assert_int_eq(s.num_classes, 100);
    ck_assert_str_eq(s.class_names[42], "42");  // no fine_label_names.txt: numbered
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 4, NULL, lab), 0);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(lab[i], (i * 37) % 100);  // fine label
    pf_image_shard_close(&s);
}
END_TEST

START_TEST(cifar_truncated) {
    write_cifar(pf_test_path("b.bin"), 3, false);
    char *data;
    size_t len;
    ck_assert_int_eq(pf_read_file(pf_test_path("b.bin"), &data, &len), 0);
    write_bytes(pf_test_path("cut.bin"), data, len - 100);
    free(data);
    ck_assert_int_eq(
        RUN("--format", "cifar", "--out", pf_test_path("o.h5"), pf_test_path("b.bin"), pf_test_path("cut.bin")), 1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "cut.bin"));
    ck_assert(!exists(pf_test_path("o.h5")));
    // A CIFAR-10 label byte of 10 or more (e.g. CIFAR-100 data without --cifar100).
    uint8_t rec[3073] = {42};
    write_bytes(pf_test_path("lab.bin"), rec, sizeof rec);
    ck_assert_int_eq(RUN("--format", "cifar", "--out", pf_test_path("o.h5"), pf_test_path("lab.bin")), 1);
    ck_assert(!exists(pf_test_path("o.h5")));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
}
END_TEST

// ---- JPEG folders ----------------------------------------------------------------------

static void save_jpeg(const char *path, const uint8_t *rgb, int w, int h) {
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    ck_assert_int_eq(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &size, TJSAMP_444, 95, 0), 0);
    write_bytes(path, jpeg, size);
    tjFree(jpeg);
    tjDestroy(tj);
}

// Writes a w x h JPEG; column x gets color left when x < w/3 or x >= 2w/3, else mid.
static void write_jpeg(const char *path, int w, int h, const uint8_t left[3],
                       const uint8_t mid[3]) {
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(rgb + ((size_t)y * w + x) * 3, (x < w / 3 || x >= 2 * w / 3) ? left : mid, 3);
    save_jpeg(path, rgb, w, h);
    free(rgb);
}

static const uint8_t red[3] = {200, 30, 30}, blue[3] = {30, 30, 200};

// ROOT/cat: 3 red images, ROOT/dog: 3 blue images, sizes 40x30 and 30x50; plus a README.
static void write_tree(const char *root) {
    char p[300];
    mkdir(root, 0755);
    const char *cls[2] = {"dog", "cat"};  // created out of order: classes must come out sorted
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/%s", root, cls[c]);
        mkdir(p, 0755);
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s/img%d.%s", root, cls[c], i, i == 2 ? "JPEG" : "jpg");
            const uint8_t *col = c == 0 ? blue : red;
            write_jpeg(p, i % 2 ? 30 : 40, i % 2 ? 50 : 30, col, col);
        }
    }
    snprintf(p, sizeof p, "%s/cat/README.txt", root);
    write_bytes(p, "not an image", 12);
}

static void check_color(const uint8_t *img, int n, const uint8_t col[3]) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) ck_assert_int_le(abs(img[i * 3 + c] - col[c]), 6);
}

START_TEST(jpeg_tree) {
    char root[256];
    snprintf(root, sizeof root, "%s", pf_test_path("tree"));
    write_tree(root);
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--out", pf_test_path("t.h5"), root), 0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("t.h5")), 0);
    ck_assert_int_eq(s.n, 6);
    ck_assert_int_eq(s.H, 16);
    ck_assert_int_eq(s.W, 16);
    ck_assert_int_eq(s.C, 3);
    ck_assert_int_eq(s.num_classes, 2);
    ck_assert_str_eq(s.class_names[0], "cat");
    ck_assert_str_eq(s.class_names[1], "dog");
    uint8_t px[6 * 16 * 16 * 3];
    int32_t lab[6];
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 6, px, lab), 0);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(lab[i], i / 3);
        check_color(px + i * 768, 256, i < 3 ? red : blue);
    }
    pf_image_shard_close(&s);

    // --synsets renames the classes by their folder's wnid.
    write_bytes(pf_test_path("syn.txt"), "dog a good dog\ncat a cat\n", 25);
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "8", "--synsets", pf_test_path("syn.txt"),
                         "--out", pf_test_path("s.h5"), root),
                     0);
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("s.h5")), 0);
    ck_assert_str_eq(s.class_names[0], "cat a cat");  // order still the sorted folders
    pf_image_shard_close(&s);
}
END_TEST

START_TEST(jpeg_flat_labels) {
    char root[256];
    snprintf(root, sizeof root, "%s", pf_test_path("flat"));
    mkdir(root, 0755);
    char p[300];
    // Blue-red-blue thirds, 48x16: the center crop is exactly the red third.
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/v%d.jpg", root, i);
        write_jpeg(p, 48, 16, blue, red);
    }
    write_bytes(pf_test_path("pairs.txt"), "v2.jpg 1\nv0.jpg 0\nv1.jpg 1\n", 27);
    write_bytes(pf_test_path("lines.txt"), "2\n0\n1\n", 6);
    const char *files[2] = {pf_test_path("pairs.txt"), pf_test_path("lines.txt")};
    const int32_t want[2][3] = {{0, 1, 1}, {2, 0, 1}};
    for (int f = 0; f < 2; f++) {
        const char *out = pf_test_path(f ? "f1.h5" : "f0.h5");
        ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--labels", files[f], "--out",
                             out, root),
                         0);
        pf_image_shard s;
        ck_assert_int_eq(pf_image_shard_open(&s, out), 0);
        ck_assert_int_eq(s.num_classes, f ? 3 : 2);
        uint8_t px[3 * 768];
        int32_t lab[3];
        ck_assert_int_eq(pf_image_shard_read(&s, 0, 3, px, lab), 0);
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(lab[i], want[f][i]);
            for (int y = 0; y < 16; y++)  // columns 2..13: away from the JPEG's color edges
                check_color(px + i * 768 + (y * 16 + 2) * 3, 12, red);
        }
        pf_image_shard_close(&s);
    }
    write_bytes(pf_test_path("short.txt"), "0\n1\n", 4);
    ck_assert_int_eq(
        RUN("--format", "imagenet", "--labels", pf_test_path("short.txt"), "--out", pf_test_path("x.h5"), root),
        1);
    ck_assert_int_eq(RUN("--format", "imagenet", "--out", pf_test_path("x.h5"), root),
                     1);  // no classes, no labels
    ck_assert(!exists(pf_test_path("x.h5")));
}
END_TEST

// A 300x200 image with R a horizontal and G a vertical ramp, converted at --size 64: decoded
// at 1/2 scale (150x100), the central 100x100 square resampled to 64x64. A linear ramp
// survives both filters, so each output pixel is the ramp at its center in source pixels.
START_TEST(jpeg_resize_geometry) {
    enum { W = 300, H = 200, S = 64 };
    char root[256], p[300];
    snprintf(root, sizeof root, "%s", pf_test_path("ramp"));
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/only", root);
    mkdir(p, 0755);
    uint8_t *rgb = malloc(W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *q = rgb + (y * W + x) * 3;
            q[0] = (uint8_t)lround(x * 255.0 / (W - 1)),
            q[1] = (uint8_t)lround(y * 255.0 / (H - 1)), q[2] = 90;
        }
    snprintf(p, sizeof p, "%s/only/ramp.jpg", root);
    save_jpeg(p, rgb, W, H);
    free(rgb);
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "64", "--out", pf_test_path("r.h5"), root), 0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("r.h5")), 0);
    uint8_t px[S * S * 3];
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 1, px, NULL), 0);
    for (int i = 2; i < S - 2; i++)
        for (int j = 2; j < S - 2; j++) {
            double u = (W - H) / 2 + (j + 0.5) * H / S, v = (i + 0.5) * H / S;  // source coords
            ck_assert_double_le(fabs(px[(i * S + j) * 3 + 0] - (u - 0.5) * 255 / (W - 1)), 3);
            ck_assert_double_le(fabs(px[(i * S + j) * 3 + 1] - (v - 0.5) * 255 / (H - 1)), 3);
            ck_assert_int_le(abs(px[(i * S + j) * 3 + 2] - 90), 3);
        }
    pf_image_shard_close(&s);
}
END_TEST

START_TEST(jpeg_corrupt) {
    char root[256];
    snprintf(root, sizeof root, "%s", pf_test_path("tree"));
    write_tree(root);
    char p[300];
    snprintf(p, sizeof p, "%s/dog/broken.jpg", root);
    static const char junk[] = "\xff\xd8\xff\xe0 this is not a JPEG at all";
    write_bytes(p, junk, sizeof junk - 1);
    // A real JPEG that ends early: libjpeg only warns, the converter calls it corrupt.
    snprintf(p, sizeof p, "%s/cat/cut.jpg", root);
    write_jpeg(p, 40, 40, red, blue);
    char *data;
    size_t len;
    ck_assert_int_eq(pf_read_file(p, &data, &len), 0);
    write_bytes(p, data, len - 20);
    free(data);
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--on-corrupt", "stop", "--out",
                         pf_test_path("stop.h5"), root),
                     1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "cut.jpg"));  // the first bad file in order
    ck_assert(!exists(pf_test_path("stop.h5")));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--out", pf_test_path("def.h5"), root),
                     1);
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--on-corrupt", "skip", "--out",
                         pf_test_path("skip.h5"), root),
                     0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("skip.h5")), 0);
    ck_assert_int_eq(s.n, 6);
    int32_t lab[6];
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 6, NULL, lab), 0);
    ck_assert_int_eq(lab[3], 1);
    ck_assert_int_eq(lab[5], 1);
    pf_image_shard_close(&s);
}
END_TEST

// ---- numbered shards (--shard-images) --------------------------------------------------

// The synthetic folder of tests/gen/jpeg_folder.c: 4 classes x 50 JPEGs (RGB, grayscale,
// CMYK; 1x1, 17x301, 333x97, ...), plus one corrupt file, the last of class 1 (plan index
// 100). 201 planned items make 200 images; in shards of 64: 64, 63 (the corrupt file
// skipped), 64 and 9 images.
enum { SYN_CLASSES = 4, SYN_PER_CLASS = 50, SYN_N = 200, SYN_PLANNED = 201 };
enum { SYN_K = 64, SYN_SHARDS = 4, SYN_S = 32, SYN_IMG = SYN_S * SYN_S * 3 };

static void make_synthetic(char root[256]) {
    snprintf(root, 256, "%s", pf_test_path("syn"));
    ck_assert_int_eq(gen_jpeg_folder(root, SYN_CLASSES, SYN_PER_CLASS, 8, 120), 0);
    char p[300];
    snprintf(p, sizeof p, "%s/n00000001/img_broken.JPEG", root);
    write_bytes(p, "\xff\xd8\xff\xe0 not a JPEG", 15);
}

// pfdata images over the synthetic folder at --size 32, skipping the corrupt file.
#define RUN_SYN(root, ...) \
    RUN("--format", "imagenet", "--size", "32", "--on-corrupt", "skip", __VA_ARGS__, root)

// STEM-0000i-of-00004.h5 (the test spells the names out rather than asking shard_set.c).
static const char *syn_shard(const char *stem, int i) {
    static char buf[4][300];
    snprintf(buf[i % 4], sizeof buf[0], "%s-%05d-of-%05d.h5", stem, i, SYN_SHARDS);
    return buf[i % 4];
}

static int64_t int_attr(const pf_image_shard *s, const char *name) {
    int64_t v;
    ck_assert_msg(pf_image_shard_attr_int(s, name, &v) == 0, "%s: no %s", s->path, name);
    return v;
}

// Every image and label of a conversion: the shards STEM-*-of-00004.h5 in order (their
// identity attributes checked on the way), or with shards = false the one file STEM.
// px: [SYN_N, 32, 32, 3], lab: [SYN_N].
static void read_synthetic(const char *stem, bool shards, uint8_t *px, int32_t *lab) {
    int64_t at = 0;
    for (int i = 0; i < (shards ? SYN_SHARDS : 1); i++) {
        pf_image_shard s;
        ck_assert_msg(pf_image_shard_open(&s, shards ? syn_shard(stem, i) : stem) == 0, "%s",
                      pf_errmsg());
        ck_assert_int_eq(s.H, SYN_S);
        ck_assert_int_eq(s.num_classes, SYN_CLASSES);
        ck_assert_str_eq(s.class_names[3], "n00000003");
        if (shards) {
            int64_t planned = i < 3 ? SYN_K : SYN_PLANNED - 3 * SYN_K, skipped = i == 1;
            ck_assert_int_eq(int_attr(&s, "shard_index"), i);
            ck_assert_int_eq(int_attr(&s, "shard_count"), SYN_SHARDS);
            ck_assert_int_eq(int_attr(&s, "shard_images"), SYN_K);
            ck_assert_int_eq(int_attr(&s, "first_item"), i * SYN_K);
            ck_assert_int_eq(int_attr(&s, "planned_items"), planned);
            ck_assert_int_eq(int_attr(&s, "total_items"), SYN_PLANNED);
            ck_assert_int_eq(int_attr(&s, "skipped_corrupt"), skipped);
            ck_assert_int_eq(s.n, planned - skipped);
            char *digest = pf_image_shard_attr_str(&s, "plan_digest");
            ck_assert_ptr_nonnull(digest);
            ck_assert_uint_eq(strlen(digest), 16);
            free(digest);
        } else {
            int64_t v;  // a single file keeps the format it had: no identity
            ck_assert_int_eq(pf_image_shard_attr_int(&s, "shard_index", &v), -1);
        }
        ck_assert_int_le(at + s.n, SYN_N);
        ck_assert_int_eq(pf_image_shard_read(&s, 0, s.n, px + at * SYN_IMG, lab + at), 0);
        at += s.n;
        pf_image_shard_close(&s);
    }
    ck_assert_int_eq(at, SYN_N);
}

// --jobs 1 and --jobs 2 write the same shards, whose concatenation is the single file; the
// decodes are right where they can be told: labels, and gray JPEGs stay gray.
START_TEST(jpeg_shards_match_single_file) {
    char root[256];
    make_synthetic(root);
    uint8_t *px[3];
    int32_t *lab[3];
    for (int v = 0; v < 3; v++)
        px[v] = malloc((size_t)SYN_N * SYN_IMG), lab[v] = malloc(sizeof *lab[v] * SYN_N);
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "2", "--out", pf_test_path("all.h5")), 0);
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "1", "--shard-images", "64", "--out",
                             pf_test_path("one")),
                     0);
    // A trailing .h5 of --out is dropped: the shards are two-0000i-of-00004.h5.
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "2", "--shard-images=64", "--out",
                             pf_test_path("two.h5")),
                     0);
    read_synthetic(pf_test_path("all.h5"), false, px[0], lab[0]);
    read_synthetic(pf_test_path("one"), true, px[1], lab[1]);
    read_synthetic(pf_test_path("two"), true, px[2], lab[2]);
    for (int v = 1; v < 3; v++) {
        ck_assert_mem_eq(px[v], px[0], (size_t)SYN_N * SYN_IMG);
        ck_assert_mem_eq(lab[v], lab[0], sizeof *lab[0] * SYN_N);
    }
    for (int k = 0; k < SYN_N; k++) {
        ck_assert_int_eq(lab[0][k], k / SYN_PER_CLASS);  // the corrupt file left no gap
        const uint8_t *img = px[0] + (size_t)k * SYN_IMG;
        for (int i = 0; gen_jpeg_kind(k) == GEN_GRAY && i < SYN_S * SYN_S; i++)
            ck_assert(img[3 * i] == img[3 * i + 1] && img[3 * i] == img[3 * i + 2]);
    }
    ck_assert(!has_temp_file(pf_test_tmpdir()));
    for (int v = 0; v < 3; v++) free(px[v]), free(lab[v]);
}
END_TEST

// The converted shards as one split (a glob, as data.train takes them): 1, 2 and 3 ranks
// together see every converted image exactly once in an epoch (shuffled, the last global batch
// padded), each as the single-file conversion stored it.
START_TEST(jpeg_shards_every_image_once) {
    char root[256];
    make_synthetic(root);
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "2", "--out", pf_test_path("all.h5")), 0);
    ck_assert_int_eq(RUN_SYN(root, "--shard-images", "64", "--out", pf_test_path("sh")), 0);
    uint8_t *px = malloc((size_t)SYN_N * SYN_IMG);
    int32_t lab[SYN_N];
    read_synthetic(pf_test_path("all.h5"), false, px, lab);
    char spec[300];
    snprintf(spec, sizeof spec, "%s-*.h5", pf_test_path("sh"));
    enum { B = 16 };
    static const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    float *out = malloc(sizeof *out * B * SYN_IMG);
    for (int world = 1; world <= 3; world++) {
        pf_image_loader *l[3];
        for (int r = 0; r < world; r++) {
            pf_image_loader_opts o = pf_image_loader_defaults(B, 9);
            o.train = false, o.pad_last = true, o.out_size = SYN_S, o.mean = zero, o.std = one;
            l[r] = pf_image_loader_open(spec, &o, r, world);
            ck_assert_msg(l[r] != NULL, "%s", pf_errmsg());
        }
        int seen[SYN_N] = {0};
        for (int64_t k = 0; k < pf_image_loader_batches_per_epoch(l[0]); k++)
            for (int r = 0; r < world; r++) {
                int32_t got[B];
                ck_assert_int_eq(pf_image_loader_next(l[r], out, got), 0);
                for (int j = 0; j < B && got[j] >= 0; j++) {
                    uint8_t img[SYN_IMG];
                    for (int i = 0; i < SYN_IMG; i++)
                        img[i] = (uint8_t)lrintf(out[(size_t)j * SYN_IMG + i] * 255.0f);
                    int match = -1;
                    for (int n = 0; n < SYN_N && match < 0; n++)
                        if (!seen[n] && !memcmp(img, px + (size_t)n * SYN_IMG, SYN_IMG)) match = n;
                    ck_assert_msg(match >= 0, "world %d: an image seen twice or not converted",
                                  world);
                    ck_assert_int_eq(got[j], lab[match]);
                    seen[match] = 1;
                }
            }
        for (int n = 0; n < SYN_N; n++) ck_assert_msg(seen[n], "world %d: image %d unseen", world, n);
        for (int r = 0; r < world; r++) pf_image_loader_close(l[r]);
    }
    free(out);
    free(px);
}
END_TEST

static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void stat_shards(const char *stem, struct stat st[SYN_SHARDS]) {
    for (int i = 0; i < SYN_SHARDS; i++) ck_assert_int_eq(stat(syn_shard(stem, i), &st[i]), 0);
}

// A run stopped by the corrupt file (in shard 1) keeps shard 0, and a rerun with --on-corrupt
// skip goes on from there. A rerun keeps the complete shards (same inode and mtime) and
// writes a missing one again, equal to the first; a rerun with nothing to do changes nothing.
START_TEST(jpeg_shards_resume) {
    char root[256], stem[256];
    make_synthetic(root);
    snprintf(stem, sizeof stem, "%s", pf_test_path("train"));
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "32", "--shard-images", "64", "--out",
                         stem, root),
                     1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "img_broken.JPEG"));
    ck_assert(!exists(syn_shard(stem, 1)));
    struct stat first, kept;
    ck_assert_int_eq(stat(syn_shard(stem, 0), &first), 0);
    ck_assert_int_eq(RUN_SYN(root, "--shard-images", "64", "--out", stem), 0);
    ck_assert_int_eq(stat(syn_shard(stem, 0), &kept), 0);
    ck_assert(same_file(&first, &kept));
    uint8_t *px = malloc((size_t)SYN_N * SYN_IMG), *again = malloc((size_t)SYN_N * SYN_IMG);
    int32_t lab[SYN_N], lagain[SYN_N];
    read_synthetic(stem, true, px, lab);
    struct stat before[SYN_SHARDS], after[SYN_SHARDS];
    stat_shards(stem, before);
    ck_assert_int_eq(unlink(syn_shard(stem, 2)), 0);
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "1", "--shard-images", "64", "--out", stem), 0);
    stat_shards(stem, after);
    for (int i = 0; i < SYN_SHARDS; i++)
        if (i != 2) ck_assert_msg(same_file(&before[i], &after[i]), "shard %d rewritten", i);
    read_synthetic(stem, true, again, lagain);
    ck_assert_mem_eq(again, px, (size_t)SYN_N * SYN_IMG);
    ck_assert_mem_eq(lagain, lab, sizeof lab);
    ck_assert_int_eq(RUN_SYN(root, "--jobs", "2", "--shard-images", "64", "--out", stem), 0);
    stat_shards(stem, before);
    for (int i = 0; i < SYN_SHARDS; i++) ck_assert(same_file(&before[i], &after[i]));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
    free(px);
    free(again);
}
END_TEST

// A file by a shard's name that is not that shard of this conversion is refused, named, and
// left as it was; nothing is written when the refusal comes before the first shard.
START_TEST(jpeg_shards_refuse_other) {
    char root[256], stem[256], fresh[256];
    make_synthetic(root);
    snprintf(stem, sizeof stem, "%s", pf_test_path("train"));
    snprintf(fresh, sizeof fresh, "%s", pf_test_path("fresh"));
    ck_assert_int_eq(RUN_SYN(root, "--shard-images", "64", "--out", stem), 0);
    struct stat before[SYN_SHARDS], after[SYN_SHARDS];
    stat_shards(stem, before);
    // Another --size: the same names, another conversion.
    ck_assert_int_eq(RUN("--format", "imagenet", "--size", "16", "--on-corrupt", "skip",
                         "--shard-images", "64", "--out", stem, root),
                     1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), syn_shard(stem, 0)));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "another --out"));
    stat_shards(stem, after);
    for (int i = 0; i < SYN_SHARDS; i++) ck_assert(same_file(&before[i], &after[i]));
    // A user's file by the name of shard 1.
    write_bytes(syn_shard(fresh, 1), "keep", 4);
    ck_assert_int_eq(RUN_SYN(root, "--shard-images", "64", "--out", fresh), 1);
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), syn_shard(fresh, 1)));
    char *kept;
    ck_assert_int_eq(pf_read_file(syn_shard(fresh, 1), &kept, NULL), 0);
    ck_assert_str_eq(kept, "keep");
    free(kept);
    ck_assert(!exists(syn_shard(fresh, 0)));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
}
END_TEST

// SIGINT while shards are being written (the child is signalled once shard 0 is complete and
// a later shard's temporary exists; on a slow machine that may also be after its end): no
// temporary stays, complete shards do, and a rerun completes the set.
START_TEST(jpeg_shards_interrupted) {
    char root[256], stem[256];
    make_synthetic(root);
    snprintf(stem, sizeof stem, "%s", pf_test_path("train"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) _exit(RUN_SYN(root, "--jobs", "1", "--shard-images", "64", "--out", stem));
    for (int t = 0; t < 100000 && !(exists(syn_shard(stem, 0)) && has_temp_file(pf_test_tmpdir()));
         t++)
        usleep(50);
    kill(pid, SIGINT);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) ||
              (WIFEXITED(status) && (WEXITSTATUS(status) == 130 || WEXITSTATUS(status) == 0)));
    ck_assert(!has_temp_file(pf_test_tmpdir()));
    ck_assert(exists(syn_shard(stem, 0)));
    ck_assert_int_eq(RUN_SYN(root, "--shard-images", "64", "--out", stem), 0);
    uint8_t *px = malloc((size_t)SYN_N * SYN_IMG);
    int32_t lab[SYN_N];
    read_synthetic(stem, true, px, lab);
    free(px);
}
END_TEST

// Names: 5 digits, or as many as the count has; index and count of the same width.
START_TEST(shard_set_names) {
    pf_shard_set s;
    pf_shard_set_init(&s, "data/imagenet-train.h5", 1024, 1281167);
    ck_assert_int_eq(s.count, 1252);
    ck_assert_int_eq(pf_shard_set_planned(&s, 1251), 1281167 - 1251 * 1024);
    char *p = pf_shard_set_path(&s, 7);
    ck_assert_str_eq(p, "data/imagenet-train-00007-of-01252.h5");
    free(p);
    pf_shard_set_free(&s);
    pf_shard_set_init(&s, "x", 1, 123456);
    p = pf_shard_set_path(&s, 42);
    ck_assert_str_eq(p, "x-000042-of-123456.h5");
    free(p);
    p = pf_shard_set_pattern(&s);
    ck_assert_str_eq(p, "x-*-of-123456.h5");
    free(p);
    pf_shard_set_free(&s);
}
END_TEST

// ---- loader ----------------------------------------------------------------------------

// A shard of n images HxWxC; pixel fn(i, y, x, c), label i % classes.
typedef uint8_t (*pixel_fn)(int i, int y, int x, int c);

static void write_shard(const char *path, int n, int H, int W, int C, int classes, pixel_fn fn) {
    pf_shard_writer *w = pf_shard_writer_open(path, H, W, C);
    ck_assert_ptr_nonnull(w);
    uint8_t *img = malloc((size_t)H * W * C);
    for (int i = 0; i < n; i++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) img[((size_t)y * W + x) * C + c] = fn(i, y, x, c);
        ck_assert_int_eq(pf_shard_writer_add(w, img, i % classes), 0);
    }
    free(img);
    char **names = malloc(sizeof *names * (size_t)classes);
    for (int k = 0; k < classes; k++) names[k] = "class";
    ck_assert_msg(pf_shard_writer_finish(w, classes, names, "test") == 0, "%s", pf_errmsg());
    free(names);
}

static uint8_t px_const(int i, int y, int x, int c) {
    return (void)i, (void)y, (void)x, (uint8_t)(100 + 20 * c);
}
static uint8_t px_label(int i, int y, int x, int c) {
    return (void)y, (void)x, (void)c, (uint8_t)(30 * (i % 5));
}
static uint8_t px_hash(int i, int y, int x, int c) {
    return (uint8_t)((i * 131 + y * 31 + x * 17 + c * 7) * 2654435761u >> 13);
}
static uint8_t px_ramp(int i, int y, int x, int c) {
    return (void)i, (void)y, (void)c, (uint8_t)(x * 20);
}

static pf_image_loader *open_loader(const char *path, pf_image_loader_opts o, int rank, int world) {
    pf_image_loader *l = pf_image_loader_open(path, &o, rank, world);
    ck_assert_msg(l != NULL, "%s", pf_errmsg());
    return l;
}

START_TEST(loader_constant_normalizes_to_zero) {
    write_shard(pf_test_path("c.h5"), 12, 9, 7, 3, 3, px_const);
    pf_image_loader_opts o = pf_image_loader_defaults(4, 1);
    o.out_size = 5;
    pf_image_loader *l = open_loader(pf_test_path("c.h5"), o, 0, 1);
    ck_assert_int_eq(pf_image_loader_out_size(l), 5);
    float img[4 * 5 * 5 * 3];
    int32_t lab[4];
    for (int b = 0; b < 5; b++) {  // past an epoch (3 batches)
        ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
        for (int i = 0; i < 4 * 75; i++) ck_assert_float_eq_tol(img[i], 0.0f, 1e-5f);
    }
    pf_image_loader_close(l);
}
END_TEST

START_TEST(loader_eval_exact_and_deterministic) {
    enum { N = 10, H = 6, W = 6, B = 3 };
    write_shard(pf_test_path("h.h5"), N, H, W, 2, 4, px_hash);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 5);
    o.train = false, o.shuffle = false;
    pf_image_loader *l = open_loader(pf_test_path("h.h5"), o, 0, 1);
    ck_assert_int_eq(pf_image_loader_num_images(l), N);
    ck_assert_int_eq(pf_image_loader_num_classes(l), 4);
    ck_assert_int_eq(pf_image_loader_channels(l), 2);
    ck_assert_int_eq(pf_image_loader_height(l), H);
    ck_assert_int_eq(pf_image_loader_width(l), W);
    ck_assert_int_eq(pf_image_loader_batches_per_epoch(l), 3);  // N / B, tail dropped
    ck_assert_str_eq(pf_image_loader_class_name(l, 3), "class");
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("h.h5")), 0);
    float img[B * H * W * 2];
    int32_t lab[B];
    for (int b = 0; b < 3; b++) {
        ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
        for (int j = 0; j < B; j++) {
            int i = b * B + j;
            ck_assert_int_eq(lab[j], i % 4);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 2; c++) {
                        float want = (px_hash(i, y, x, c) / 255.0f - s.mean[c]) / s.std[c];
                        ck_assert_float_eq_tol(img[((j * H + y) * W + x) * 2 + c], want, 1e-5f);
                    }
        }
    }
    pf_image_shard_close(&s);
    pf_image_loader_close(l);

    // Eval with a smaller output: a center crop, the same for two loaders and two epochs.
    o.out_size = 4, o.shuffle = true;
    pf_image_loader *a = open_loader(pf_test_path("h.h5"), o, 0, 1),
                    *b2 = open_loader(pf_test_path("h.h5"), o, 0, 1);
    float x[B * 32], y[B * 32];
    int32_t la[B], lb[B];
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(pf_image_loader_next(a, x, la), 0);
        ck_assert_int_eq(pf_image_loader_next(b2, y, lb), 0);
        ck_assert_mem_eq(x, y, sizeof x);
        ck_assert_mem_eq(la, lb, sizeof la);
    }
    pf_image_loader_close(a);
    pf_image_loader_close(b2);
}
END_TEST

// The union over ranks of batch k equals the 1-rank batch k of size world*B, augmentation
// included.
START_TEST(loader_rank_union) {
    enum { N = 50, B = 4, WORLD = 3, S = 6 };
    write_shard(pf_test_path("u.h5"), N, 8, 8, 3, 7, px_hash);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 9), big = o;
    o.out_size = big.out_size = S;
    big.batch = B * WORLD;
    pf_image_loader *one = open_loader(pf_test_path("u.h5"), big, 0, 1), *r[WORLD];
    for (int k = 0; k < WORLD; k++) r[k] = open_loader(pf_test_path("u.h5"), o, k, WORLD);
    ck_assert_int_eq(pf_image_loader_batches_per_epoch(one), 4);
    ck_assert_int_eq(pf_image_loader_batches_per_epoch(r[0]), 4);
    size_t per = (size_t)S * S * 3;
    float *all = malloc(sizeof *all * per * B * WORLD), *part = malloc(sizeof *part * per * B);
    int32_t lall[B * WORLD], lpart[B];
    for (int b = 0; b < 9; b++) {  // crosses two epoch boundaries
        ck_assert_int_eq(pf_image_loader_next(one, all, lall), 0);
        for (int k = 0; k < WORLD; k++) {
            ck_assert_int_eq(pf_image_loader_next(r[k], part, lpart), 0);
            ck_assert_mem_eq(part, all + per * B * k, sizeof *part * per * B);
            ck_assert_mem_eq(lpart, lall + B * k, sizeof lpart);
        }
    }
    // Reading image by image (shard above memory_limit) gives the same batches.
    pf_image_loader_reset(one);
    big.memory_limit = 1;
    pf_image_loader *streamed = open_loader(pf_test_path("u.h5"), big, 0, 1);
    float *again = malloc(sizeof *again * per * B * WORLD);
    int32_t lagain[B * WORLD];
    for (int b = 0; b < 5; b++) {
        ck_assert_int_eq(pf_image_loader_next(one, all, lall), 0);
        ck_assert_int_eq(pf_image_loader_next(streamed, again, lagain), 0);
        ck_assert_mem_eq(again, all, sizeof *all * per * B * WORLD);
        ck_assert_mem_eq(lagain, lall, sizeof lall);
    }
    free(again);
    pf_image_loader_close(streamed);
    pf_image_loader_close(one);
    for (int k = 0; k < WORLD; k++) pf_image_loader_close(r[k]);
    free(all);
    free(part);
}
END_TEST

// Each epoch visits every image once (N divisible by B), in a different order.
START_TEST(loader_epoch_permutation) {
    enum { N = 24, B = 6 };
    write_shard(pf_test_path("p.h5"), N, 2, 2, 1, N, px_const);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 3);
    o.train = false;
    pf_image_loader *l = open_loader(pf_test_path("p.h5"), o, 0, 1);
    float img[B * 4];
    int32_t lab[B], order[2][N];
    for (int e = 0; e < 2; e++) {
        int seen[N] = {0};
        for (int b = 0; b < N / B; b++) {
            ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
            for (int j = 0; j < B; j++) seen[lab[j]]++, order[e][b * B + j] = lab[j];
        }
        for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
    }
    ck_assert(memcmp(order[0], order[1], sizeof order[0]) != 0);
    pf_image_loader_close(l);
}
END_TEST

// pad_last: an evaluation epoch over N = 10 images in global batches of 2 ranks x 3 sees every
// image once; the 2 slots past the end are zero images with label -1, and the labels of
// both ranks' batches together cover 0..N-1 exactly.
START_TEST(loader_pad_last) {
    enum { N = 10, B = 3, W = 2 };
    write_shard(pf_test_path("pad.h5"), N, 2, 2, 1, N, px_hash);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 5);
    o.train = false;
    o.shuffle = false;
    o.pad_last = true;
    int seen[N] = {0}, pads = 0;
    for (int r = 0; r < W; r++) {
        pf_image_loader *l = open_loader(pf_test_path("pad.h5"), o, r, W);
        ck_assert_int_eq(pf_image_loader_batches_per_epoch(l), 2);  // ceil(10 / 6)
        float img[B * 4];
        int32_t lab[B];
        for (int b = 0; b < 2; b++) {
            ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
            for (int j = 0; j < B; j++) {
                if (lab[j] < 0) {
                    pads++;
                    for (int k = 0; k < 4; k++) ck_assert_float_eq(img[j * 4 + k], 0.0f);
                    continue;
                }
                ck_assert_int_lt(lab[j], N);
                seen[lab[j]]++;
            }
        }
        pf_image_loader_close(l);
    }
    ck_assert_int_eq(pads, 2 * W * B - N);
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
}
END_TEST

// Random crops and flips of images whose pixels encode their label keep the label.
START_TEST(loader_augment_keeps_labels) {
    enum { N = 40, B = 8, S = 5 };
    write_shard(pf_test_path("l.h5"), N, 12, 10, 1, 5, px_label);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 11);
    o.out_size = S, o.scale_min = 0.35f;
    pf_image_loader *l = open_loader(pf_test_path("l.h5"), o, 0, 1);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("l.h5")), 0);
    float img[B * S * S];
    int32_t lab[B];
    for (int b = 0; b < 10; b++) {
        ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
        for (int j = 0; j < B; j++)
            for (int p = 0; p < S * S; p++)
                ck_assert_float_eq_tol(img[j * S * S + p] * s.std[0] + s.mean[0],
                                       30 * lab[j] / 255.0f, 1e-5f);
    }
    pf_image_shard_close(&s);
    pf_image_loader_close(l);
}
END_TEST

// Without random crops a training image is the eval image or its mirror, and both happen.
START_TEST(loader_flip) {
    enum { N = 32, B = 8, H = 4, W = 6 };
    write_shard(pf_test_path("r.h5"), N, H, W, 1, 2, px_ramp);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 2);
    o.random_resized_crop = false, o.out_size = 4;
    pf_image_loader *l = open_loader(pf_test_path("r.h5"), o, 0, 1);
    o.train = false;
    pf_image_loader *ev = open_loader(pf_test_path("r.h5"), o, 0, 1);
    float img[B * 16], ref[B * 16];
    int32_t lab[B], lref[B];
    int flipped = 0, same = 0;
    for (int b = 0; b < N / B; b++) {
        ck_assert_int_eq(pf_image_loader_next(l, img, lab), 0);
        ck_assert_int_eq(pf_image_loader_next(ev, ref, lref), 0);
        ck_assert_mem_eq(lab, lref, sizeof lab);
        for (int j = 0; j < B; j++) {
            bool is_same = true, is_flip = true;
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++) {
                    is_same &= img[j * 16 + y * 4 + x] == ref[j * 16 + y * 4 + x];
                    is_flip &= img[j * 16 + y * 4 + x] == ref[j * 16 + y * 4 + 3 - x];
                }
            ck_assert(is_same != is_flip);
            same += is_same, flipped += is_flip;
        }
    }
    ck_assert_int_gt(flipped, 0);
    ck_assert_int_gt(same, 0);
    pf_image_loader_close(l);
    pf_image_loader_close(ev);
}
END_TEST

START_TEST(loader_cursor_restore) {
    enum { N = 20, B = 3, S = 4 };
    write_shard(pf_test_path("k.h5"), N, 7, 7, 3, 4, px_hash);
    pf_image_loader_opts o = pf_image_loader_defaults(B, 77);
    o.out_size = S;
    pf_image_loader *l = open_loader(pf_test_path("k.h5"), o, 1, 2);  // 3 batches per epoch
    float img[5][B * S * S * 3], again[B * S * S * 3];
    int32_t lab[5][B], lagain[B];
    for (int b = 0; b < 4; b++) ck_assert_int_eq(pf_image_loader_next(l, img[0], lab[0]), 0);
    pf_data_cursor c = pf_image_loader_get_cursor(l);
    ck_assert_int_eq(c.epoch, 1);
    ck_assert_int_eq(c.batch, 1);
    for (int b = 0; b < 5; b++) ck_assert_int_eq(pf_image_loader_next(l, img[b], lab[b]), 0);
    pf_image_loader *r = open_loader(pf_test_path("k.h5"), o, 1, 2);
    ck_assert_int_eq(pf_image_loader_set_cursor(r, c), 0);
    for (int b = 0; b < 5; b++) {
        ck_assert_int_eq(pf_image_loader_next(r, again, lagain), 0);
        ck_assert_mem_eq(again, img[b], sizeof again);
        ck_assert_mem_eq(lagain, lab[b], sizeof lagain);
    }
    pf_image_loader_reset(r);
    ck_assert_int_eq(pf_image_loader_get_cursor(r).epoch, 0);
    ck_assert_int_eq(pf_image_loader_set_cursor(r, (pf_data_cursor){0, 4}), -1);
    pf_image_loader_close(l);
    pf_image_loader_close(r);
}
END_TEST

// Evaluation (pf_data_open without `train`) normalises with the training shard's mean and std,
// not with the evaluated shard's own.
START_TEST(eval_uses_training_stats) {
    enum { S = 4, B = 2 };
    write_shard(pf_test_path("tr.h5"), 12, S, S, 1, 3, px_hash);
    write_shard(pf_test_path("va.h5"), 6, S, S, 1, 3, px_label);
    pf_config c;
    pf_config_defaults(&c);
    static const char *const sets[] = {"model.type=mixer", "model.image_size=4",
                                       "model.patch_size=2", "model.channels=1",
                                       "model.num_classes=3"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_int_eq(pf_config_set(&c, sets[i]), 0);
    snprintf(c.train_path, sizeof c.train_path, "%s", pf_test_path("tr.h5"));
    ck_assert_msg(pf_config_validate(&c) == 0, "%s", pf_errmsg());
    pf_image_shard tr, va;
    ck_assert_int_eq(pf_image_shard_open(&tr, pf_test_path("tr.h5")), 0);
    ck_assert_int_eq(pf_image_shard_open(&va, pf_test_path("va.h5")), 0);
    ck_assert(fabsf(tr.mean[0] - va.mean[0]) > 0.05f && fabsf(tr.std[0] - va.std[0]) > 0.01f);
    pf_data *d = pf_data_open(&c, pf_test_path("va.h5"), B, 0, 1, false);
    ck_assert_msg(d != NULL, "%s", pf_errmsg());
    pf_batch b;
    ck_assert_int_eq(pf_data_next(d, &b), 0);
    for (int j = 0; j < B; j++)  // no shuffling in evaluation: images 0 and 1
        for (int p = 0; p < S * S; p++)
            ck_assert_float_eq_tol(b.images[j * S * S + p],
                                   (px_label(j, 0, 0, 0) / 255.0f - tr.mean[0]) / tr.std[0],
                                   1e-5f);
    pf_data_close(d);
    // Without a training shard the evaluated shard's own statistics are used.
    c.train_path[0] = 0;
    d = pf_data_open(&c, pf_test_path("va.h5"), B, 0, 1, false);
    ck_assert_msg(d != NULL, "%s", pf_errmsg());
    ck_assert_int_eq(pf_data_next(d, &b), 0);
    float own = (px_label(1, 0, 0, 0) / 255.0f - va.mean[0]) / va.std[0];
    ck_assert_float_eq_tol(b.images[S * S], own, 1e-5f);
    pf_data_close(d);
    pf_image_shard_close(&tr);
    pf_image_shard_close(&va);
}
END_TEST

START_TEST(loader_errors) {
    write_shard(pf_test_path("e.h5"), 6, 4, 4, 1, 2, px_const);
    pf_image_loader_opts o = pf_image_loader_defaults(4, 0);
    ck_assert_ptr_null(pf_image_loader_open(pf_test_path("e.h5"), &o, 0, 2));  // 8 > 6 images
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "global batch"));
    ck_assert_ptr_null(pf_image_loader_open(pf_test_path("none.h5"), &o, 0, 1));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "none.h5"));
    write_bytes(pf_test_path("junk.h5"), "junk", 4);
    ck_assert_ptr_null(pf_image_loader_open(pf_test_path("junk.h5"), &o, 0, 1));
    o.scale_min = 0;
    ck_assert_ptr_null(pf_image_loader_open(pf_test_path("e.h5"), &o, 0, 1));
}
END_TEST

START_TEST(resample_filter) {
    // Scale 1 on an integer box copies; shrinking a 1-pixel checkerboard by 2 averages it.
    uint8_t src[8 * 8];
    for (int i = 0; i < 64; i++) src[i] = (uint8_t)(((i / 8 + i % 8) % 2) * 255);
    float dst[16];
    pf_image_resample(src, 8, 8, 1, 2, 3, 4, 4, dst, 4, 4, false);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) ck_assert_float_eq(dst[y * 4 + x], src[(y + 2) * 8 + x + 3]);
    pf_image_resample(src, 8, 8, 1, 0, 0, 8, 8, dst, 4, 4, false);
    ck_assert_float_eq_tol(dst[1 * 4 + 1], 127.5f, 1e-3f);
    ck_assert_float_eq_tol(dst[2 * 4 + 2], 127.5f, 1e-3f);
    // Enlarging a two-pixel ramp is monotonic and stays in range.
    uint8_t two[2] = {0, 200};
    float up[8];
    pf_image_resample(two, 1, 2, 1, 0, 0, 1, 2, up, 1, 8, false);
    for (int i = 1; i < 8; i++) ck_assert_float_ge(up[i], up[i - 1]);
    ck_assert_float_eq(up[0], 0);
    ck_assert_float_eq(up[7], 200);
}
END_TEST

// ---- real data -------------------------------------------------------------------------

START_TEST(fashion_mnist_t10k) {
    if (!exists(FASHION_DIR "/t10k-images-idx3-ubyte.gz")) {
        printf("SKIP fashion_mnist_t10k: %s not installed (Debian dataset-fashion-mnist)\n",
               FASHION_DIR);
        return;
    }
    ck_assert_int_eq(
        RUN("--format", "idx", "--classes", "fashion-mnist", "--out", pf_test_path("fm.h5"),
            FASHION_DIR "/t10k-images-idx3-ubyte.gz", FASHION_DIR "/t10k-labels-idx1-ubyte.gz"),
        0);
    pf_image_shard s;
    ck_assert_int_eq(pf_image_shard_open(&s, pf_test_path("fm.h5")), 0);
    ck_assert_int_eq(s.n, 10000);
    ck_assert_int_eq(s.H, 28);
    ck_assert_int_eq(s.num_classes, 10);
    ck_assert_str_eq(s.class_names[7], "Sneaker");
    ck_assert_double_eq_tol(s.mean[0], 0.286, 0.005);
    ck_assert_double_eq_tol(s.std[0], 0.353, 0.01);
    int32_t *lab = malloc(sizeof *lab * 10000);
    ck_assert_int_eq(pf_image_shard_read(&s, 0, 10000, NULL, lab), 0);
    int hist[10] = {0};
    for (int i = 0; i < 10000; i++) hist[lab[i]]++;
    for (int k = 0; k < 10; k++) ck_assert_int_eq(hist[k], 1000);
    free(lab);
    pf_image_shard_close(&s);
    // The eval loader over it: every class shows up in one pass, values normalized.
    pf_image_loader_opts o = pf_image_loader_defaults(500, 0);
    o.train = false;
    pf_image_loader *l = open_loader(pf_test_path("fm.h5"), o, 0, 1);
    float *img = malloc(sizeof *img * 500 * 784);
    int32_t lb[500];
    double sum = 0;
    for (int b = 0; b < 20; b++) {
        ck_assert_int_eq(pf_image_loader_next(l, img, lb), 0);
        for (int i = 0; i < 500 * 784; i++) sum += img[i];
    }
    ck_assert_double_eq_tol(sum / (10000.0 * 784), 0.0, 1e-4);
    free(img);
    pf_image_loader_close(l);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("images");
    TCase *conv = tcase_create("convert");
    tcase_add_checked_fixture(conv, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_set_timeout(conv, 60);
    tcase_add_test(conv, idx_plain_and_gzip);
    tcase_add_test(conv, idx_fashion_names);
    tcase_add_test(conv, idx_truncated_and_bad);
    tcase_add_test(conv, idx_mismatched_counts);
    tcase_add_test(conv, usage_errors);
    tcase_add_test(conv, writer_interrupt_cleanup);
    tcase_add_test(conv, cifar10_and_100);
    tcase_add_test(conv, cifar_truncated);
    tcase_add_test(conv, jpeg_tree);
    tcase_add_test(conv, jpeg_flat_labels);
    tcase_add_test(conv, jpeg_resize_geometry);
    tcase_add_test(conv, jpeg_corrupt);
    tcase_add_test(conv, jpeg_shards_match_single_file);
    tcase_add_test(conv, jpeg_shards_every_image_once);
    tcase_add_test(conv, jpeg_shards_resume);
    tcase_add_test(conv, jpeg_shards_refuse_other);
    tcase_add_test(conv, jpeg_shards_interrupted);
    tcase_add_test(conv, shard_set_names);
    tcase_add_test(conv, fashion_mnist_t10k);
    suite_add_tcase(s, conv);
    TCase *load = tcase_create("loader");
    tcase_add_checked_fixture(load, pf_test_tmpdir_setup, pf_test_tmpdir_teardown);
    tcase_add_test(load, loader_constant_normalizes_to_zero);
    tcase_add_test(load, loader_eval_exact_and_deterministic);
    tcase_add_test(load, loader_rank_union);
    tcase_add_test(load, loader_epoch_permutation);
    tcase_add_test(load, loader_pad_last);
    tcase_add_test(load, loader_augment_keeps_labels);
    tcase_add_test(load, loader_flip);
    tcase_add_test(load, loader_cursor_restore);
    tcase_add_test(load, loader_errors);
    tcase_add_test(load, eval_uses_training_stats);
    tcase_add_test(load, resample_filter);
    suite_add_tcase(s, load);
    return s;
}
