// image_shard.c: HDF5 image shard writer (streaming, atomic rename) and reader.
// The layout is described in image_shard.h.
#include "image_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5util.h"
#include "interrupt.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t is stored as int64_t in image_shard.h");

// Small chunks make the chunk index huge and reads slow; 64 KiB keeps a 28x28 chunk at 83
// images while an ImageNet-sized image is one chunk of its own.
#define CHUNK_BYTES (64 << 10)
#define BATCH_BYTES (4 << 20)
#define LABEL_CHUNK 16384

// ---- HDF5 error plumbing ---------------------------------------------------------------

// Records "<what> '<path>' failed: <innermost HDF5 message>" and returns -1.
static int h5_fail(const char *what, const char *path) {
    char detail[PF_H5_ERRTEXT_MAX];
    pf_error("%s '%s' failed: %s", what, path, pf_h5_errtext(detail));
    return -1;
}

static void h5_close_all(hid_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0) H5Oclose(ids[i]);
}

// ---- writer ----------------------------------------------------------------------------

// A root attribute the caller adds (pf_shard_writer_attr_*): str, or value when str is NULL.
typedef struct {
    char name[32];
    char *str;
    int64_t value;
} extra_attr;

struct pf_shard_writer {
    char *out_path, *tmp_path;
    hid_t file, images, labels;
    int H, W, C;
    size_t img_bytes;
    int64_t n;            // images already in the file
    uint8_t *buf;         // [buf_cap, H, W, C] pending images
    int32_t *buf_labels;  // [buf_cap]
    int buf_n, buf_cap;
    uint64_t sum[PF_IMAGE_MAX_C], sumsq[PF_IMAGE_MAX_C];  // exact pixel sums per channel
    int32_t min_label, max_label;
    extra_attr extra[PF_SHARD_EXTRA_ATTRS];
    int n_extra;
};

static int create_extendible(pf_shard_writer *w) {
    hsize_t dims[4] = {0, (hsize_t)w->H, (hsize_t)w->W, (hsize_t)w->C};
    hsize_t maxd[4] = {H5S_UNLIMITED, dims[1], dims[2], dims[3]};
    hsize_t per_chunk = CHUNK_BYTES / w->img_bytes ? CHUNK_BYTES / w->img_bytes : 1;
    hsize_t chunk[4] = {per_chunk, dims[1], dims[2], dims[3]};
    hsize_t ldims[1] = {0}, lmax[1] = {H5S_UNLIMITED}, lchunk[1] = {LABEL_CHUNK};
    hid_t ids[4] = {-1, -1, -1, -1};  // space, dcpl, lspace, ldcpl
    int rc = -1;
    if ((ids[0] = H5Screate_simple(4, dims, maxd)) < 0 ||
        (ids[1] = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(ids[1], 4, chunk) < 0 ||
        (ids[2] = H5Screate_simple(1, ldims, lmax)) < 0 ||
        (ids[3] = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(ids[3], 1, lchunk) < 0)
        goto done;
    w->images =
        H5Dcreate2(w->file, "/images", H5T_STD_U8LE, ids[0], H5P_DEFAULT, ids[1], H5P_DEFAULT);
    if (w->images < 0) goto done;
    w->labels =
        H5Dcreate2(w->file, "/labels", H5T_STD_I32LE, ids[2], H5P_DEFAULT, ids[3], H5P_DEFAULT);
    if (w->labels < 0) goto done;
    rc = 0;
done:
    if (rc) h5_fail("creating /images and /labels in", w->tmp_path);
    if (ids[0] >= 0) H5Sclose(ids[0]);
    if (ids[1] >= 0) H5Pclose(ids[1]);
    if (ids[2] >= 0) H5Sclose(ids[2]);
    if (ids[3] >= 0) H5Pclose(ids[3]);
    return rc;
}

pf_shard_writer *pf_shard_writer_open(const char *out_path, int H, int W, int C) {
    if (H <= 0 || W <= 0 || C <= 0 || C > PF_IMAGE_MAX_C || H > PF_IMAGE_MAX_SIDE ||
        W > PF_IMAGE_MAX_SIDE) {
        pf_error("image shape %dx%dx%d is not supported (1 <= H, W <= %d, 1 <= C <= %d)", H, W,
                 C, PF_IMAGE_MAX_SIDE, PF_IMAGE_MAX_C);
        return NULL;
    }
    pf_shard_writer *w = pf_calloc(1, sizeof *w);
    w->out_path = pf_strdup(out_path);
    size_t len = strlen(out_path) + 32;
    w->tmp_path = pf_malloc(len);
    snprintf(w->tmp_path, len, "%s.tmp.%ld", out_path, (long)getpid());
    pf_interrupt_track(w->tmp_path);  // before it exists, so an interrupt never misses it
    w->H = H, w->W = W, w->C = C;
    w->img_bytes = (size_t)H * W * C;
    w->images = w->labels = -1;
    w->min_label = INT32_MAX, w->max_label = INT32_MIN;
    size_t per_chunk = CHUNK_BYTES / w->img_bytes ? CHUNK_BYTES / w->img_bytes : 1;
    size_t chunks = BATCH_BYTES / (per_chunk * w->img_bytes);
    w->buf_cap = (int)(per_chunk * (chunks ? chunks : 1));
    w->buf = pf_malloc((size_t)w->buf_cap * w->img_bytes);
    w->buf_labels = pf_malloc((size_t)w->buf_cap * sizeof *w->buf_labels);

    pf_h5_quiet q = pf_h5_quiet_begin();
    hid_t fapl = pf_h5_checksummed_fapl();
    w->file = fapl < 0 ? -1 : H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    int rc = w->file < 0 ? h5_fail("creating", w->tmp_path) : create_extendible(w);
    pf_h5_quiet_end(q);
    if (rc) {
        if (w->file >= 0) {
            char keep[2048];
            snprintf(keep, sizeof keep, "%s", pf_errmsg());
            pf_shard_writer_abort(w);
            pf_error("%s", keep);
        } else {
            pf_error("cannot create '%s': %s (is the directory writable?)", w->tmp_path,
                     strerror(errno));
            pf_shard_writer_abort(w);
        }
        return NULL;
    }
    return w;
}

// Extends a dataset by count rows and writes data into the new rows.
static int append_rows(hid_t dset, int rank, const hsize_t *row_dims, int64_t first, int64_t count,
                       hid_t mem_type, const void *data) {
    hsize_t size[4], start[4] = {0}, cnt[4];
    size[0] = (hsize_t)(first + count), start[0] = (hsize_t)first, cnt[0] = (hsize_t)count;
    for (int d = 1; d < rank; d++) size[d] = cnt[d] = row_dims[d];
    if (H5Dset_extent(dset, size) < 0) return -1;
    hid_t fs = H5Dget_space(dset);
    if (fs < 0) return -1;
    hid_t ms = H5Screate_simple(rank, cnt, NULL);
    int rc = -1;
    if (ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
        H5Dwrite(dset, mem_type, ms, fs, H5P_DEFAULT, data) >= 0)
        rc = 0;
    if (ms >= 0) H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

static int flush(pf_shard_writer *w) {
    if (w->buf_n == 0) return 0;
    hsize_t dims[4] = {0, (hsize_t)w->H, (hsize_t)w->W, (hsize_t)w->C};
    pf_h5_quiet q = pf_h5_quiet_begin();
    int rc = 0;
    if (append_rows(w->images, 4, dims, w->n, w->buf_n, H5T_NATIVE_UINT8, w->buf) < 0 ||
        append_rows(w->labels, 1, dims, w->n, w->buf_n, H5T_NATIVE_INT32, w->buf_labels) < 0)
        rc = h5_fail("appending images to", w->tmp_path);
    pf_h5_quiet_end(q);
    if (rc == 0) w->n += w->buf_n;
    w->buf_n = 0;
    return rc;
}

int pf_shard_writer_add(pf_shard_writer *w, const uint8_t *img, int32_t label) {
    memcpy(w->buf + (size_t)w->buf_n * w->img_bytes, img, w->img_bytes);
    w->buf_labels[w->buf_n++] = label;
    if (label < w->min_label) w->min_label = label;
    if (label > w->max_label) w->max_label = label;
    for (size_t i = 0; i < w->img_bytes; i += (size_t)w->C)
        for (int c = 0; c < w->C; c++) {
            uint64_t p = img[i + c];
            w->sum[c] += p;
            w->sumsq[c] += p * p;
        }
    return w->buf_n == w->buf_cap ? flush(w) : 0;
}

int64_t pf_shard_writer_count(const pf_shard_writer *w) { return w->n + w->buf_n; }

static extra_attr *new_extra(pf_shard_writer *w, const char *name) {
    PF_ASSERT(w->n_extra < PF_SHARD_EXTRA_ATTRS && strlen(name) < sizeof w->extra[0].name);
    for (int i = 0; i < w->n_extra; i++) PF_ASSERT(strcmp(w->extra[i].name, name));
    extra_attr *a = &w->extra[w->n_extra++];
    snprintf(a->name, sizeof a->name, "%s", name);
    return a;
}

void pf_shard_writer_attr_int(pf_shard_writer *w, const char *name, int64_t value) {
    new_extra(w, name)->value = value;
}

void pf_shard_writer_attr_str(pf_shard_writer *w, const char *name, const char *value) {
    new_extra(w, name)->str = pf_strdup(value);
}

static int write_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int n,
                      const void *data) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = n ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0) return -1;
    hid_t a = H5Acreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, mem_type, data) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int write_metadata(pf_shard_writer *w, int num_classes, char *const *names,
                          const char *source) {
    float mean[PF_IMAGE_MAX_C], std[PF_IMAGE_MAX_C];
    double count = (double)w->n * w->H * w->W;
    for (int c = 0; c < w->C; c++) {
        double m = (double)w->sum[c] / (255.0 * count);
        double v = (double)w->sumsq[c] / (255.0 * 255.0 * count) - m * m;
        mean[c] = (float)m;
        std[c] = (float)sqrt(v > 0 ? v : 0);
    }
    int32_t nc = num_classes;
    int rc = -1;
    if (pf_h5_write_strings(w->file, "/class_names", names, num_classes) == 0 &&
        write_attr(w->file, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &nc) == 0 &&
        write_attr(w->file, "mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, w->C, mean) == 0 &&
        write_attr(w->file, "std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, w->C, std) == 0 &&
        pf_h5_write_string_attr(w->file, "source", source) == 0)
        rc = 0;
    for (int i = 0; rc == 0 && i < w->n_extra; i++) {
        const extra_attr *a = &w->extra[i];
        rc = a->str ? pf_h5_write_string_attr(w->file, a->name, a->str)
                    : write_attr(w->file, a->name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &a->value);
    }
    return rc;
}

static void writer_free(pf_shard_writer *w) {
    pf_interrupt_untrack(w->tmp_path);  // renamed or removed by now
    free(w->out_path);
    free(w->tmp_path);
    free(w->buf);
    free(w->buf_labels);
    for (int i = 0; i < w->n_extra; i++) free(w->extra[i].str);
    free(w);
}

int pf_shard_writer_finish(pf_shard_writer *w, int num_classes, char *const *class_names,
                           const char *source) {
    if (flush(w) < 0) goto fail;
    if (w->n == 0) {
        pf_error("no images to write to '%s' (every input was empty or skipped)", w->out_path);
        goto fail;
    }
    if (num_classes <= 0 || w->min_label < 0 || w->max_label >= num_classes) {
        pf_error("labels span [%d, %d] but num_classes is %d; check the labels or class names",
                 w->min_label, w->max_label, num_classes);
        goto fail;
    }
    pf_h5_quiet q = pf_h5_quiet_begin();
    int rc = write_metadata(w, num_classes, class_names, source);
    if (rc < 0) h5_fail("writing attributes to", w->tmp_path);
    hid_t ids[2] = {w->images, w->labels};
    h5_close_all(ids, 2);
    w->images = w->labels = -1;
    if (H5Fclose(w->file) < 0 && rc == 0) rc = h5_fail("closing", w->tmp_path);
    w->file = -1;
    pf_h5_quiet_end(q);
    if (rc < 0) goto fail;
    if (pf_durable_publish(w->tmp_path, w->out_path) < 0) goto fail;
    writer_free(w);
    return 0;
fail:;
    char keep[2048];
    snprintf(keep, sizeof keep, "%s", pf_errmsg());
    pf_shard_writer_abort(w);
    pf_error("%s", keep);
    return -1;
}

void pf_shard_writer_abort(pf_shard_writer *w) {
    if (!w) return;
    pf_h5_quiet q = pf_h5_quiet_begin();
    hid_t ids[2] = {w->images, w->labels};
    h5_close_all(ids, 2);
    if (w->file >= 0) H5Fclose(w->file);
    pf_h5_quiet_end(q);
    unlink(w->tmp_path);
    writer_free(w);
}

// ---- reader ----------------------------------------------------------------------------

static int read_attr(pf_image_shard *s, const char *path, const char *name, hid_t mem_type, int n,
                     void *out) {
    hid_t a = H5Aopen(s->file, name, H5P_DEFAULT);
    if (a < 0) {
        pf_error("'%s' has no attribute '%s'; is it an image shard written by 'pfdata images'?",
                 path, name);
        return -1;
    }
    hid_t sp = H5Aget_space(a);
    hssize_t got = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int rc = -1;
    if (got != (n ? n : 1))
        pf_error("'%s': attribute '%s' has %lld values, expected %d", path, name, (long long)got,
                 n ? n : 1);
    else if (H5Aread(a, mem_type, out) < 0)
        h5_fail("reading attribute of", path);
    else
        rc = 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

// Dataset dims; -1 unless the dataset exists with the given rank.
static int dataset_dims(hid_t d, int rank, hsize_t *dims) {
    hid_t sp = H5Dget_space(d);
    if (sp < 0) return -1;
    int r = H5Sget_simple_extent_ndims(sp);
    int rc = (r == rank && H5Sget_simple_extent_dims(sp, dims, NULL) == rank) ? 0 : -1;
    H5Sclose(sp);
    return rc;
}

static int shard_open(pf_image_shard *s, const char *path) {
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0) {
        pf_error("'%s' is not an HDF5 file (or is damaged)", path);
        return -1;
    }
    hsize_t d[4];
    if ((s->images = H5Dopen2(s->file, "/images", H5P_DEFAULT)) < 0 ||
        dataset_dims(s->images, 4, d)) {
        pf_error("'%s' has no 4-D dataset /images [N, H, W, C]; is it an image shard?", path);
        return -1;
    }
    hid_t t = H5Dget_type(s->images);
    int u8 = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1 &&
             H5Tget_sign(t) == H5T_SGN_NONE;
    if (t >= 0) H5Tclose(t);
    if (!u8) {
        pf_error("'%s': /images must be uint8", path);
        return -1;
    }
    if (d[1] < 1 || d[1] > PF_IMAGE_MAX_SIDE || d[2] < 1 || d[2] > PF_IMAGE_MAX_SIDE) {
        pf_error("'%s': /images holds %llu x %llu images; sides from 1 to %d are supported",
                 path, (unsigned long long)d[1], (unsigned long long)d[2], PF_IMAGE_MAX_SIDE);
        return -1;
    }
    s->n = (int64_t)d[0], s->H = (int)d[1], s->W = (int)d[2], s->C = (int)d[3];
    if (d[3] > PF_IMAGE_MAX_C) s->C = 0;  // refused just below
    // The shard is stored uncompressed, so a file that holds fewer bytes than its shape says
    // is truncated or damaged: refused before buffers are sized from that shape.
    double logical = (double)d[0] * (double)d[1] * (double)d[2] * (double)d[3];
    if (s->C >= 1 && (double)H5Dget_storage_size(s->images) < logical) {
        pf_error("'%s': /images announces %lld images of %dx%dx%d (%.0f bytes) but the file "
                 "stores %.0f bytes of them; it is truncated or damaged (convert it again)",
                 path, (long long)s->n, s->H, s->W, s->C, logical,
                 (double)H5Dget_storage_size(s->images));
        return -1;
    }
    if (s->C < 1 || s->C > PF_IMAGE_MAX_C || s->n == 0) {
        pf_error("'%s': /images has shape [%lld, %d, %d, %d]; need N > 0 and 1 <= C <= %d", path,
                 (long long)s->n, s->H, s->W, s->C, PF_IMAGE_MAX_C);
        return -1;
    }
    hsize_t ln;
    if ((s->labels = H5Dopen2(s->file, "/labels", H5P_DEFAULT)) < 0 ||
        dataset_dims(s->labels, 1, &ln) || (int64_t)ln != s->n) {
        pf_error("'%s': /labels must be a 1-D dataset of %lld labels, one per image", path,
                 (long long)s->n);
        return -1;
    }
    if (read_attr(s, path, "num_classes", H5T_NATIVE_INT, 0, &s->num_classes) ||
        read_attr(s, path, "mean", H5T_NATIVE_FLOAT, s->C, s->mean) ||
        read_attr(s, path, "std", H5T_NATIVE_FLOAT, s->C, s->std))
        return -1;
    if (s->num_classes <= 0 || s->num_classes > PF_IMAGE_MAX_CLASSES) {
        pf_error("'%s': num_classes is %d; 1 to %d are supported", path, s->num_classes,
                 PF_IMAGE_MAX_CLASSES);
        return -1;
    }
    if (!(s->source = pf_h5_read_string_attr(s->file, "source"))) {
        pf_error("'%s' has no string attribute 'source'; is it an image shard written by "
                 "'pfdata images'?", path);
        return -1;
    }
    hid_t cn = H5Dopen2(s->file, "/class_names", H5P_DEFAULT);
    hsize_t ncn = 0;
    if (cn < 0 || dataset_dims(cn, 1, &ncn) || (int)ncn != s->num_classes) {
        if (cn >= 0) H5Dclose(cn);
        pf_error("'%s': /class_names must hold num_classes = %d names", path, s->num_classes);
        return -1;
    }
    s->class_names = pf_calloc((size_t)s->num_classes, sizeof *s->class_names);
    int rc = pf_h5_read_strings(cn, s->num_classes, s->class_names);
    H5Dclose(cn);
    return rc ? h5_fail("reading /class_names of", path) : 0;
}

int pf_image_shard_open(pf_image_shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->file = s->images = s->labels = -1;
    s->path = pf_strdup(path);
    if (access(path, R_OK) != 0) {
        pf_error("cannot open image shard '%s': %s", path, strerror(errno));
        pf_image_shard_close(s);
        return -1;
    }
    pf_h5_quiet q = pf_h5_quiet_begin();
    int rc = shard_open(s, path);
    pf_h5_quiet_end(q);
    if (rc) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", pf_errmsg());
        pf_image_shard_close(s);
        pf_error("%s", keep);
    }
    return rc;
}

static int read_rows(hid_t d, int rank, int64_t first, int64_t count, hid_t mem_type, void *out) {
    hsize_t dims[4], start[4] = {0}, cnt[4];
    if (dataset_dims(d, rank, dims)) return -1;
    start[0] = (hsize_t)first, cnt[0] = (hsize_t)count;
    for (int i = 1; i < rank; i++) cnt[i] = dims[i];
    hid_t fs = H5Dget_space(d);
    if (fs < 0) return -1;
    hid_t ms = H5Screate_simple(rank, cnt, NULL);
    int rc = (ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
              H5Dread(d, mem_type, ms, fs, H5P_DEFAULT, out) >= 0)
                 ? 0
                 : -1;
    if (ms >= 0) H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

int pf_image_shard_read(pf_image_shard *s, int64_t first, int64_t count, uint8_t *images,
                        int32_t *labels) {
    PF_ASSERT(first >= 0 && count >= 0 && first + count <= s->n);
    if (count == 0) return 0;
    pf_h5_quiet q = pf_h5_quiet_begin();
    int rc = 0;
    if ((images && read_rows(s->images, 4, first, count, H5T_NATIVE_UINT8, images)) ||
        (labels && read_rows(s->labels, 1, first, count, H5T_NATIVE_INT32, labels))) {
        char what[64];
        snprintf(what, sizeof what, "reading images %lld..%lld of", (long long)first,
                 (long long)(first + count - 1));
        rc = h5_fail(what, s->path);
    }
    pf_h5_quiet_end(q);
    return rc;
}

int pf_image_shard_attr_int(const pf_image_shard *s, const char *name, int64_t *value) {
    pf_h5_quiet q = pf_h5_quiet_begin();
    hid_t a = H5Aexists(s->file, name) > 0 ? H5Aopen(s->file, name, H5P_DEFAULT) : -1;
    hid_t sp = a < 0 ? -1 : H5Aget_space(a), t = a < 0 ? -1 : H5Aget_type(a);
    bool ok = sp >= 0 && t >= 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
              H5Tget_class(t) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, value) >= 0;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    pf_h5_quiet_end(q);
    return ok ? 0 : -1;
}

char *pf_image_shard_attr_str(const pf_image_shard *s, const char *name) {
    return pf_h5_read_string_attr(s->file, name);
}

void pf_image_shard_close(pf_image_shard *s) {
    pf_h5_quiet q = pf_h5_quiet_begin();
    hid_t ids[2] = {s->images, s->labels};
    h5_close_all(ids, 2);
    if (s->file >= 0) H5Fclose(s->file);
    pf_h5_quiet_end(q);
    if (s->class_names)
        for (int i = 0; i < s->num_classes; i++) free(s->class_names[i]);
    free(s->class_names);
    free(s->source);
    free(s->path);
    memset(s, 0, sizeof *s);
    s->file = s->images = s->labels = -1;
}
