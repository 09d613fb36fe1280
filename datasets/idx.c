// idx.c: MNIST / Fashion-MNIST IDX files (images 0x00000803 [N, rows, cols] uint8, labels
// 0x00000801 [N] uint8, big-endian header) -> image shard with C = 1.
// zlib's gzread reads both forms: it recognizes gzip by its magic 1f 8b and passes plain
// files through unchanged.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common.h"
#include "image_convert.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IMAGES_PER_READ 1024

static char *const fashion_mnist_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

// Reads exactly n bytes; -1 with a message naming the file and what was expected.
static int read_exact(gzFile f, const char *path, void *buf, size_t n, const char *what) {
    size_t got = 0;
    while (got < n) {
        unsigned ask = n - got > (1u << 30) ? 1u << 30 : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, ask);
        if (r <= 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (r < 0 && zerr != Z_BUF_ERROR)
                pf_error("'%s': read error in %s: %s", path, what,
                         zerr == Z_ERRNO ? strerror(errno) : msg);
            else
                pf_error("'%s' is truncated: it ends inside %s", path, what);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

// Opens an IDX file and reads its header: magic then ndim big-endian uint32 dims. *room gets
// the most bytes of data the file can hold after its header: its size less the header when
// plain, 1032 times its size when gzip'd (deflate's largest expansion), so that a header
// announcing more than the file could hold is refused before anything is allocated for it.
static gzFile idx_open(const char *path, uint32_t magic, int ndim, uint32_t *dims,
                       double *room) {
    struct stat st;
    if (stat(path, &st) != 0) {
        pf_error("cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    gzFile f = gzopen(path, "rb");
    if (!f) {
        pf_error("cannot open '%s': %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    uint8_t h[16];
    if (read_exact(f, path, h, 4 + 4 * (size_t)ndim, "the IDX header") < 0) {
        gzclose(f);
        return NULL;
    }
    uint32_t v[4];
    for (int i = 0; i <= ndim; i++)
        v[i] = (uint32_t)h[4 * i] << 24 | (uint32_t)h[4 * i + 1] << 16 |
               (uint32_t)h[4 * i + 2] << 8 | h[4 * i + 3];
    if (v[0] != magic) {
        pf_error("'%s' is not an IDX %s file: magic 0x%08x, expected 0x%08x%s", path,
                 magic == IDX_IMAGES_MAGIC ? "images" : "labels", v[0], magic,
                 v[0] == (magic ^ IDX_IMAGES_MAGIC ^ IDX_LABELS_MAGIC)
                     ? " (IMAGES and LABELS swapped?)"
                     : "");
        gzclose(f);
        return NULL;
    }
    memcpy(dims, v + 1, sizeof *dims * (size_t)ndim);
    *room = gzdirect(f) ? (double)st.st_size - 4 - 4 * ndim : 1032.0 * (double)st.st_size;
    return f;
}

// Whole labels file: labels [n] and the largest label.
static int read_labels(const char *path, uint8_t **labels, uint32_t *n, int *max_label) {
    double room;
    gzFile f = idx_open(path, IDX_LABELS_MAGIC, 1, n, &room);
    if (!f) return -1;
    if (*n > room) {
        pf_error("'%s' is truncated: its header announces %u labels but the file holds at most "
                 "%.0f bytes of them", path, *n, room);
        gzclose(f);
        return -1;
    }
    *labels = pf_malloc(*n ? *n : 1);
    char what[64];
    snprintf(what, sizeof what, "the %u labels its header announces", *n);
    int rc = read_exact(f, path, *labels, *n, what);
    gzclose(f);
    if (rc < 0) {
        free(*labels);
        return -1;
    }
    *max_label = -1;
    for (uint32_t i = 0; i < *n; i++)
        if ((*labels)[i] > *max_label) *max_label = (*labels)[i];
    return 0;
}

int pf_convert_idx(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r) {
    PF_ASSERT(n_in == 2);
    const char *img_path = in[0], *lab_path = in[1];
    uint8_t *labels;
    uint32_t n_labels, dims[3];
    int max_label;
    if (read_labels(lab_path, &labels, &n_labels, &max_label) < 0) return -1;
    double room;
    gzFile f = idx_open(img_path, IDX_IMAGES_MAGIC, 3, dims, &room);
    if (!f) {
        free(labels);
        return -1;
    }
    double need = (double)dims[0] * dims[1] * dims[2];
    if (dims[1] > PF_IMAGE_MAX_SIDE || dims[2] > PF_IMAGE_MAX_SIDE || need > room) {
        if (need > room)
            pf_error("'%s' is truncated or not an IDX file: its header announces %u images of "
                     "%u x %u (%.0f bytes) but the file holds at most %.0f bytes of pixels",
                     img_path, dims[0], dims[1], dims[2], need, room);
        else
            pf_error("'%s' announces images of %u x %u pixels; pfdata takes sides up to %d",
                     img_path, dims[1], dims[2], PF_IMAGE_MAX_SIDE);
        gzclose(f);
        free(labels);
        return -1;
    }
    if (dims[0] != n_labels || dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
        if (dims[0] != n_labels)
            pf_error(
                "'%s' holds %u images but '%s' holds %u labels; they must match (train vs "
                "t10k files mixed up?)",
                img_path, dims[0], lab_path, n_labels);
        else
            pf_error("'%s' has an empty shape [%u, %u, %u]", img_path, dims[0], dims[1], dims[2]);
        gzclose(f);
        free(labels);
        return -1;
    }
    *r = (pf_convert_result){.H = (int)dims[1], .W = (int)dims[2], .C = 1};
    pf_shard_writer *w = pf_shard_writer_open(o->out, r->H, r->W, 1);
    int rc = w ? 0 : -1;
    size_t img_bytes = (size_t)dims[1] * dims[2];
    // reads of up to IMAGES_PER_READ images and 64 MiB (one image at least)
    uint32_t per_read = (uint32_t)((64u << 20) / img_bytes);
    per_read = per_read < 1 ? 1 : per_read > IMAGES_PER_READ ? IMAGES_PER_READ : per_read;
    uint8_t *buf = pf_malloc(img_bytes * per_read);
    pf_progress prog;
    pf_progress_begin(&prog, o->progress, dims[0]);
    for (uint32_t i = 0; rc == 0 && i < dims[0]; i += per_read) {
        uint32_t k = dims[0] - i < per_read ? dims[0] - i : per_read;
        char what[96];
        snprintf(what, sizeof what, "images %u..%u (header announces %u images of %ux%u)", i,
                 i + k - 1, dims[0], dims[1], dims[2]);
        rc = read_exact(f, img_path, buf, img_bytes * k, what);
        for (uint32_t j = 0; rc == 0 && j < k; j++)
            rc = pf_shard_writer_add(w, buf + img_bytes * j, labels[i + j]);
        pf_progress_step(&prog, i + k);
    }
    pf_progress_end(&prog);
    gzclose(f);
    free(buf);
    free(labels);
    if (rc < 0) {
        pf_shard_writer_abort(w);
        return -1;
    }
    int nc = o->classes ? 10 : max_label + 1;
    char **names = o->classes ? NULL : pf_numbered_names(nc);
    char *source = pf_source_string("idx", n_in, in);
    rc = pf_convert_finish(w, o, names ? names : fashion_mnist_names, nc, source, r);
    free(source);
    pf_free_names(names, nc);
    return rc;
}
