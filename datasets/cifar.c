// cifar.c: CIFAR-10 / CIFAR-100 binary batches -> image shard (32x32x3).
// A record is the label byte(s) then 3072 pixel bytes as three 32x32 planes (R, G, B);
// CIFAR-100 has a coarse then a fine label byte and we keep the fine one. The planes are
// interleaved into HWC on the way.
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "image_convert.h"

#define SIDE 32
#define PLANE (SIDE * SIDE)
#define RECORDS_PER_READ 1000

typedef struct {
    const char *name, *meta;  // dataset name, class-name file shipped next to the batches
    int label_bytes, num_classes;
} cifar_kind;

static const cifar_kind cifar10 = {"CIFAR-10", "batches.meta.txt", 1, 10};
static const cifar_kind cifar100 = {"CIFAR-100", "fine_label_names.txt", 2, 100};

// Class names from the meta file next to the first batch, else "0".."n-1".
static int class_names(const cifar_kind *k, const char *first_batch, char ***names) {
    char *dir = pf_strdup(first_batch);
    size_t len = strlen(first_batch) + strlen(k->meta) + 2;
    char *meta = pf_malloc(len);
    snprintf(meta, len, "%s/%s", dirname(dir), k->meta);
    free(dir);
    int n = 0, rc = 0;
    if (access(meta, R_OK) != 0) {
        *names = pf_numbered_names(k->num_classes);
    } else if (pf_read_name_list(meta, names, &n) < 0) {
        rc = -1;
    } else if (n != k->num_classes) {
        pf_error("'%s' lists %d class names; %s has %d", meta, n, k->name, k->num_classes);
        pf_free_names(*names, n);
        *names = NULL;
        rc = -1;
    }
    free(meta);
    return rc;
}

static int convert_file(const cifar_kind *k, const char *path, pf_shard_writer *w,
                        pf_progress *prog, int64_t *done) {
    size_t rec = (size_t)k->label_bytes + 3 * PLANE;
    FILE *f = fopen(path, "rb");
    if (!f) {
        pf_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = pf_malloc(rec * RECORDS_PER_READ), img[PLANE * 3];
    int rc = 0;
    for (int64_t first = 0; rc == 0;) {
        size_t got = fread(buf, rec, RECORDS_PER_READ, f);
        if (got < RECORDS_PER_READ && ferror(f)) {
            pf_error("read error in '%s': %s", path, strerror(errno));
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < got; i++) {
            const uint8_t *r = buf + rec * i, *px = r + k->label_bytes;
            int label = r[k->label_bytes - 1];
            if (label >= k->num_classes) {
                pf_error(
                    "'%s' record %lld has label %d, outside %s's 0..%d (wrong --cifar100 "
                    "setting?)",
                    path, (long long)(first + (int64_t)i), label, k->name, k->num_classes - 1);
                rc = -1;
                break;
            }
            for (int p = 0; p < PLANE; p++)
                for (int c = 0; c < 3; c++) img[p * 3 + c] = px[c * PLANE + p];
            rc = pf_shard_writer_add(w, img, label);
        }
        first += (int64_t)got;
        *done += (int64_t)got;
        pf_progress_step(prog, *done);
        if (got < RECORDS_PER_READ) break;
    }
    free(buf);
    fclose(f);
    return rc;
}

// Sizes first, so a truncated or mismatched file fails before anything is converted.
static int check_sizes(const cifar_kind *k, int n_in, char **in, int64_t *total) {
    size_t rec = (size_t)k->label_bytes + 3 * PLANE;
    *total = 0;
    for (int i = 0; i < n_in; i++) {
        struct stat st;
        if (stat(in[i], &st) != 0) {
            pf_error("cannot open '%s': %s", in[i], strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode) || st.st_size == 0 || (size_t)st.st_size % rec) {
            pf_error(
                "'%s' has %lld bytes, not a whole number of %zu-byte %s records (truncated "
                "download, a non-batch file, or %s?)",
                in[i], (long long)st.st_size, rec, k->name,
                k->label_bytes == 1 ? "CIFAR-100 data without --cifar100"
                                    : "CIFAR-10 data with --cifar100");
            return -1;
        }
        *total += (int64_t)((size_t)st.st_size / rec);
    }
    return 0;
}

int pf_convert_cifar(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r) {
    const cifar_kind *k = o->cifar100 ? &cifar100 : &cifar10;
    int64_t total, done = 0;
    if (check_sizes(k, n_in, in, &total) < 0) return -1;
    char **names = NULL;
    if (!o->class_names && class_names(k, in[0], &names) < 0) return -1;
    *r = (pf_convert_result){.H = SIDE, .W = SIDE, .C = 3};
    pf_shard_writer *w = pf_shard_writer_open(o->out, SIDE, SIDE, 3);
    int rc = w ? 0 : -1;
    pf_progress prog;
    pf_progress_begin(&prog, o->progress, total);
    for (int i = 0; rc == 0 && i < n_in; i++) rc = convert_file(k, in[i], w, &prog, &done);
    pf_progress_end(&prog);
    if (rc == 0) {
        char *source = pf_source_string(o->cifar100 ? "cifar100" : "cifar10", n_in, in);
        rc = pf_convert_finish(w, o, names, k->num_classes, source, r);
        free(source);
    } else {
        pf_shard_writer_abort(w);
    }
    pf_free_names(names, k->num_classes);
    return rc;
}
