// checkpoint.c: the checkpoint file format (layout documented in checkpoint.h): one file
// written through a temporary name and fsync so that a crash leaves either the old state or
// the new one, read back and verified. The directory around the files (names, `latest`,
// rotation, the resume search) is checkpoint_dir.c.
#include "checkpoint.h"

#include "pattern.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "h5util.h"

#define CKPT_CHUNK_BYTES ((size_t)1 << 20)  // upper bound on one chunk of any dataset

static const char *const arena_group[3] = {"params", "opt/m", "opt/v"};

// ---- writing ----

// Chunk shape for a dataset: the whole array, leading dimensions halved until a chunk is
// at most CKPT_CHUNK_BYTES (fletcher32 needs chunked storage; one chunk per read is fast).
static void chunk_dims(int ndim, const hsize_t *dims, size_t elsize, hsize_t *chunk) {
    size_t bytes = elsize;
    for (int i = 0; i < ndim; i++) {
        chunk[i] = dims[i] ? dims[i] : 1;
        bytes *= chunk[i];
    }
    for (int i = 0; i < ndim && bytes > CKPT_CHUNK_BYTES; i++) {
        while (chunk[i] > 1 && bytes > CKPT_CHUNK_BYTES) {
            bytes = bytes / chunk[i] * ((chunk[i] + 1) / 2);
            chunk[i] = (chunk[i] + 1) / 2;
        }
    }
}

// One checksummed dataset at `name` (relative to the root; missing groups are created).
static int write_dataset(hid_t file, const char *path, const char *name, hid_t ftype,
                         hid_t mtype, int ndim, const hsize_t *dims, const void *data) {
    hsize_t chunk[PF_MAX_DIMS];
    PF_ASSERT(ndim >= 1 && ndim <= PF_MAX_DIMS);
    chunk_dims(ndim, dims, H5Tget_size(ftype), chunk);
    hid_t space = -1, dcpl = -1, lcpl = -1, d = -1;
    int rc = -1;
    if ((space = H5Screate_simple(ndim, dims, NULL)) < 0) goto done;
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) goto done;
    if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) goto done;
    if ((lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0) goto done;
    if (H5Pset_create_intermediate_group(lcpl, 1) < 0) goto done;
    if ((d = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0) goto done;
    if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) goto done;
    rc = H5Dclose(d) < 0 ? -1 : 0;
    d = -1;
done:
    if (rc) {
        char eb[PF_H5_ERRTEXT_MAX];
        pf_error("cannot write checkpoint '%s': dataset /%s: %s", path, name, pf_h5_errtext(eb));
    }
    if (d >= 0) H5Dclose(d);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}

// A scalar attribute on the root group: an int32, or a string when `text` is not NULL.
static int write_attr(hid_t file, const char *path, const char *name, int value,
                      const char *text) {
    hid_t type = text ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_STD_I32LE);
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (type < 0 || space < 0) goto done;
    if (text && H5Tset_size(type, strlen(text) + 1) < 0) goto done;
    if ((a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto done;
    if (H5Awrite(a, text ? type : H5T_NATIVE_INT, text ? (const void *)text : &value) < 0)
        goto done;
    rc = 0;
done:
    if (rc) {
        char eb[PF_H5_ERRTEXT_MAX];
        pf_error("cannot write checkpoint '%s': attribute %s: %s", path, name, pf_h5_errtext(eb));
    }
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return rc;
}

// /config: a [1] array of one fixed-length NUL-padded string (checksummable, unlike a scalar).
static int write_config(hid_t file, const char *path, const char *text) {
    size_t len = strlen(text);
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (type >= 0 && H5Tset_size(type, len ? len : 1) >= 0 &&
        H5Tset_strpad(type, H5T_STR_NULLPAD) >= 0) {
        char *buf = pf_calloc(len ? len : 1, 1);
        memcpy(buf, text, len);
        rc = write_dataset(file, path, "config", type, type, 1, (hsize_t[]){1}, buf);
        free(buf);
    } else {
        char eb[PF_H5_ERRTEXT_MAX];
        pf_error("cannot write checkpoint '%s': config string type: %s", path, pf_h5_errtext(eb));
    }
    if (type >= 0) H5Tclose(type);
    return rc;
}

static int write_contents(hid_t file, const char *path, const pf_layout *layout,
                          const float *const bufs[3], const pf_checkpoint_state *st) {
    hsize_t one = 1, rng_dims[2] = {(hsize_t)st->world, (hsize_t)st->rng_words};
    hsize_t cur_dims[2] = {(hsize_t)st->world, 2};
    if (write_attr(file, path, "format_version", PF_CHECKPOINT_FORMAT_VERSION, NULL) ||
        write_attr(file, path, "world_size", st->world, NULL) ||
        write_attr(file, path, "pixelfly_version", 0, PF_VERSION) ||
        write_dataset(file, path, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &one, &st->step) ||
        write_dataset(file, path, "rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 2, rng_dims,
                      st->rng) ||
        write_dataset(file, path, "cursors", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, cur_dims,
                      st->cursors) ||
        write_config(file, path, st->config_text ? st->config_text : "") ||
        (st->data_items > 0 && write_dataset(file, path, "data_items", H5T_STD_I64LE,
                                             H5T_NATIVE_INT64, 1, &one, &st->data_items)))
        return -1;
    for (int i = 0; i < st->n_masks; i++) {
        const pf_checkpoint_mask *mk = &st->masks[i];
        char name[PF_PARAM_NAME_MAX + 16];
        PF_ASSERT(!strchr(mk->name, '/'));
        snprintf(name, sizeof name, "masks/%s", mk->name);
        if (write_dataset(file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 2,
                          (hsize_t[]){(hsize_t)mk->rows, (hsize_t)mk->cols}, mk->col))
            return -1;
    }
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < layout->count; i++) {
            const pf_param_info *p = &layout->params[i];
            PF_ASSERT(!strchr(p->name, '/'));  // a '/' would make HDF5 groups
            char name[PF_PARAM_NAME_MAX + 16];
            hsize_t dims[PF_MAX_DIMS];
            for (int k = 0; k < p->ndim; k++) dims[k] = (hsize_t)p->shape[k];
            snprintf(name, sizeof name, "%s/%s", arena_group[g], p->name);
            if (write_dataset(file, path, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p->ndim, dims,
                              bufs[g] + p->offset))
                return -1;
        }
    }
    return 0;
}

// The core driver's buffer: HDF5 allocates it through these callbacks, and at close hands it
// to us instead of freeing it. New memory is zeroed so that no stale heap bytes reach the file.
// When a file already exists at the path, H5Fcreate first opens it into a buffer of its own
// and closes it again: that buffer, kept at its close like the final one, is freed when the
// next one is allocated (`released`), so only the last file's image reaches the caller.
typedef struct {
    void *image;
    size_t size;
    bool released;  // HDF5 closed `image`: ours now, no longer the driver's
} image_capture;

static void drop_released(image_capture *c) {
    if (!c->released) return;
    free(c->image);
    c->image = NULL;
    c->released = false;
}

static void *img_malloc(size_t n, H5FD_file_image_op_t op, void *u) {
    (void)op;
    image_capture *c = u;
    drop_released(c);
    c->image = calloc(n, 1);
    c->size = c->image ? n : 0;
    return c->image;
}

static void *img_realloc(void *p, size_t n, H5FD_file_image_op_t op, void *u) {
    (void)op;
    image_capture *c = u;
    if (!p) drop_released(c);
    char *q = realloc(p, n);
    if (!q) return NULL;  // HDF5 reports the failure
    if (n > c->size) memset(q + c->size, 0, n - c->size);
    c->image = q;
    c->size = n;
    return q;
}

static void *img_memcpy(void *dst, const void *src, size_t n, H5FD_file_image_op_t op, void *u) {
    (void)op;
    (void)u;
    return memcpy(dst, src, n);
}

static herr_t img_free(void *p, H5FD_file_image_op_t op, void *u) {
    image_capture *c = u;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && p == c->image) {
        c->released = true;  // kept for the caller
        return 0;
    }
    free(p);
    return 0;
}

static void *udata_copy(void *u) { return u; }
static herr_t udata_free(void *u) {
    (void)u;
    return 0;
}

// Builds the whole file in memory with HDF5's core driver and returns its image (malloc'd)
// and size. HDF5 never touches the disk on the write path because HDF5 1.10 cannot recover
// from a failed H5Fclose: a full disk while it flushes leaves the file registered, holding its
// descriptor, and crashes the process at exit. The price is host memory of the file size
// (~12 bytes per parameter) while saving. (H5Fget_file_image would be simpler, but in 1.10 it
// returns a version-2 superblock with a wrong checksum.) `path` only names the file in messages.
static int build_image(const char *path, const pf_layout *layout, const float *const bufs[3],
                       const pf_checkpoint_state *st, void **image, size_t *size) {
    char eb[PF_H5_ERRTEXT_MAX];
    // One allocation for the whole file: the data plus room for the metadata.
    size_t est = 3 * sizeof(float) * (size_t)pf_layout_param_count(layout) + ((size_t)1 << 20);
    image_capture cap = {0};
    H5FD_file_image_callbacks_t cb = {img_malloc, img_memcpy, img_realloc, img_free,
                                      udata_copy, udata_free, &cap};
    hid_t fapl = pf_h5_checksummed_fapl(), file = -1;
    if (fapl < 0 || H5Pset_fapl_core(fapl, est, 0) < 0 || H5Pset_file_image_callbacks(fapl, &cb) < 0 ||
        (file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        pf_error("cannot create checkpoint '%s' in memory: %s", path, pf_h5_errtext(eb));
        if (fapl >= 0) H5Pclose(fapl);
        free(cap.image);
        return -1;
    }
    int rc = write_contents(file, path, layout, bufs, st);
    // The size of the file proper (its end of allocation), not of the driver's buffer.
    ssize_t n = -1;
    if (rc == 0 && (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 ||
                    (n = H5Fget_file_image(file, NULL, 0)) <= 0)) {
        pf_error("cannot write checkpoint '%s': flush: %s", path, pf_h5_errtext(eb));
        rc = -1;
    }
    if (H5Fclose(file) < 0 && rc == 0) {
        pf_error("cannot write checkpoint '%s': close: %s", path, pf_h5_errtext(eb));
        rc = -1;
    }
    H5Pclose(fapl);
    PF_ASSERT(rc || (size_t)n <= cap.size);
    if (rc) {
        free(cap.image);
        cap.image = NULL;
    }
    *image = cap.image;
    *size = rc ? 0 : (size_t)n;
    return rc;
}

// Writes data[n] to a new file at `path` and fsyncs it; -1 with pf_error() (the file may
// then be partial: the caller removes it).
static int write_whole(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        pf_error("cannot create checkpoint '%s': %s", path, strerror(errno));
        return -1;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, (const char *)data + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            pf_error("cannot write checkpoint '%s' (%zu of %zu bytes written): %s", path, done,
                     n, w < 0 ? strerror(errno) : "no progress");
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        pf_error("cannot write checkpoint '%s': fsync/close: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int pf_checkpoint_check_finite(const pf_layout *layout, const float *arena, const char *what) {
    for (int i = 0; i < layout->count; i++) {
        const pf_param_info *p = &layout->params[i];
        const float *x = arena + p->offset;
        int64_t n = pf_param_numel(p);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(x[j])) {
                pf_error("/%s/%s holds %s at element %" PRId64 " (of %" PRId64 ")", what,
                         p->name, isnan(x[j]) ? "NaN" : x[j] > 0 ? "+inf" : "-inf", j, n);
                return -1;
            }
    }
    return 0;
}

int pf_checkpoint_save(const char *dir, const pf_layout *layout, const float *params,
                       const float *m, const float *v, const pf_checkpoint_state *st) {
    PF_ASSERT(st->world >= 1 && st->rng_words >= 1 && st->rng && st->cursors);
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    if (pf_checkpoint_path(path, sizeof path, dir, st->step)) return -1;
    const float *const bufs[3] = {params, m, v};
    for (int g = 0; g < 3 && !st->allow_nonfinite; g++)
        if (pf_checkpoint_check_finite(layout, bufs[g], arena_group[g])) {
            char why[1024];
            snprintf(why, sizeof why, "%s", pf_errmsg());
            pf_error("checkpoint '%s' not written: %s (the model diverged; the previous "
                     "checkpoints and `latest` are untouched)", path, why);
            return -1;
        }
    if (pf_mkdir_p(dir)) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    void *image;
    size_t size;
    pf_h5_quiet q = pf_h5_quiet_begin();
    int rc = build_image(path, layout, bufs, st, &image, &size);
    pf_h5_quiet_end(q);
    if (rc) return -1;
    rc = write_whole(tmp, image, size);
    free(image);
    if (rc == 0 && rename(tmp, path) != 0) {
        pf_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && pf_fsync_path(dir, true) != 0) {
        unlink(path);
        rc = -1;
    }
    if (rc) unlink(tmp);
    return rc;
}

// ---- reading ----

typedef struct {
    const char *path;
    hid_t file;
    void *scratch;  // read target when verifying only
    size_t scratch_cap;
} reader;

static void *scratch(reader *r, size_t bytes) {
    if (bytes > r->scratch_cap) {
        r->scratch = pf_realloc(r->scratch, bytes);
        r->scratch_cap = bytes;
    }
    return r->scratch;
}

static void format_shape(char *out, size_t cap, int ndim, const hsize_t *dims) {
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

// Whether every component of `path` ("opt/m/h.0.S") exists: H5Lexists alone fails, rather
// than answering false, when an intermediate group is missing.
static bool link_exists(hid_t file, const char *path) {
    char p[PF_PARAM_NAME_MAX + 16];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p;; s++) {
        if (*s != '/' && *s != 0) continue;
        char c = *s;
        *s = 0;
        if (H5Lexists(file, p, H5P_DEFAULT) <= 0) return false;
        if (!c) return true;
        *s = c;
    }
}

// Opens dataset `name`, checks its type class/size, and its shape against want[ndim] (a want
// entry of 0 accepts any size and reports it in got[]). Returns the dataset or -1.
static hid_t open_checked(reader *r, const char *name, H5T_class_t cls, size_t elsize, int ndim,
                          const hsize_t *want, hsize_t *got) {
    char eb[PF_H5_ERRTEXT_MAX], ws[128], gs[128];
    if (!link_exists(r->file, name)) {
        pf_error("checkpoint '%s': dataset /%s is missing (not a checkpoint of this model, or "
                 "an incomplete file)", r->path, name);
        return -1;
    }
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (d < 0) {
        pf_error("checkpoint '%s': cannot open dataset /%s: %s", r->path, name, pf_h5_errtext(eb));
        return -1;
    }
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[PF_MAX_DIMS] = {0};
    bool ok = type >= 0 && nd >= 0 && nd <= PF_MAX_DIMS &&
              H5Sget_simple_extent_dims(space, dims, NULL) >= 0;
    bool type_ok = ok && H5Tget_class(type) == cls && (elsize == 0 || H5Tget_size(type) == elsize);
    bool shape_ok = ok && nd == ndim;
    for (int i = 0; shape_ok && i < ndim; i++) {
        shape_ok = want[i] == 0 || want[i] == dims[i];
        if (got) got[i] = dims[i];
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (ok && type_ok && shape_ok) return d;
    H5Dclose(d);
    format_shape(ws, sizeof ws, ndim, want);
    format_shape(gs, sizeof gs, nd < 0 ? 0 : nd, dims);
    if (!ok)
        pf_error("checkpoint '%s': cannot read the type and shape of dataset /%s: %s", r->path,
                 name, pf_h5_errtext(eb));
    else if (!type_ok)
        pf_error("checkpoint '%s': dataset /%s has the wrong element type", r->path, name);
    else
        pf_error("checkpoint '%s': dataset /%s has shape %s, but the model's layout expects %s "
                 "(a different model or config?)", r->path, name, gs, ws);
    return -1;
}

// Reads the whole of an opened dataset into dst (or scratch when dst is NULL) and closes it.
// A checksum mismatch surfaces here as a read error.
static int read_all(reader *r, hid_t d, const char *name, hid_t mtype, void *dst, size_t bytes) {
    char eb[PF_H5_ERRTEXT_MAX];
    herr_t rc = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst ? dst : scratch(r, bytes));
    H5Dclose(d);
    if (rc < 0) {
        pf_error("checkpoint '%s': dataset /%s is corrupt (checksum mismatch or read error: "
                 "%s)", r->path, name, pf_h5_errtext(eb));
        return -1;
    }
    return 0;
}

// The parameter group `group` ("params", "opt/m", "opt/v") must hold exactly the layout's
// parameters; reads each into base + offset (or scratch when base is NULL).
static int read_arena(reader *r, const pf_layout *layout, const char *group, float *base) {
    char eb[PF_H5_ERRTEXT_MAX];
    hid_t g = link_exists(r->file, group) ? H5Gopen2(r->file, group, H5P_DEFAULT) : -1;
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        pf_error("checkpoint '%s': group /%s is missing or unreadable%s%s", r->path, group,
                 g < 0 ? "" : ": ", g < 0 ? "" : pf_h5_errtext(eb));
        if (g >= 0) H5Gclose(g);
        return -1;
    }
    for (hsize_t i = 0; info.nlinks > (hsize_t)layout->count && i < info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            break;
        if (pf_layout_find(layout, name) < 0) {
            pf_error("checkpoint '%s': has /%s/%s, a parameter the model's layout does not "
                     "have (a different model or config?)", r->path, group, name);
            H5Gclose(g);
            return -1;
        }
    }
    H5Gclose(g);
    for (int i = 0; i < layout->count; i++) {
        const pf_param_info *p = &layout->params[i];
        char name[PF_PARAM_NAME_MAX + 16];
        hsize_t want[PF_MAX_DIMS];
        for (int k = 0; k < p->ndim; k++) want[k] = (hsize_t)p->shape[k];
        snprintf(name, sizeof name, "%s/%s", group, p->name);
        hid_t d = open_checked(r, name, H5T_FLOAT, 4, p->ndim, want, NULL);
        if (d < 0 ||
            read_all(r, d, name, H5T_NATIVE_FLOAT, base ? base + p->offset : NULL,
                     sizeof(float) * (size_t)pf_param_numel(p)))
            return -1;
    }
    return 0;
}

static int read_int_attr(reader *r, const char *name, int *out) {
    char eb[PF_H5_ERRTEXT_MAX];
    hid_t a = H5Aexists(r->file, name) > 0 ? H5Aopen(r->file, name, H5P_DEFAULT) : -1;
    herr_t rc = a >= 0 ? H5Aread(a, H5T_NATIVE_INT, out) : -1;
    if (a >= 0) H5Aclose(a);
    if (rc < 0) {
        pf_error("checkpoint '%s': attribute %s is missing or unreadable%s%s", r->path, name,
                 a < 0 ? "" : ": ", a < 0 ? "" : pf_h5_errtext(eb));
        return -1;
    }
    return 0;
}

// /config: one fixed-length string of any length -> a new NUL-terminated *out.
static int read_config(reader *r, char **out) {
    hsize_t one = 1;
    hid_t d = open_checked(r, "config", H5T_STRING, 0, 1, &one, NULL);
    if (d < 0) return -1;
    hid_t type = H5Dget_type(d);
    size_t len = type >= 0 ? H5Tget_size(type) : 0;
    if (len == 0) {
        char eb[PF_H5_ERRTEXT_MAX];
        pf_error("checkpoint '%s': dataset /config: cannot read its string type: %s", r->path,
                 pf_h5_errtext(eb));
        if (type >= 0) H5Tclose(type);
        H5Dclose(d);
        return -1;
    }
    *out = pf_calloc(len + 1, 1);
    int rc = read_all(r, d, "config", type, *out, len);
    H5Tclose(type);
    if (rc) free(*out), *out = NULL;  // a failed read leaves nothing for the caller to free
    return rc;
}

// /masks/* (absent: none) into st->masks, each checked against the table bounds.
static int read_masks(reader *r, pf_checkpoint_state *st) {
    char eb[PF_H5_ERRTEXT_MAX];
    if (!link_exists(r->file, "masks")) return 0;
    hid_t g = H5Gopen2(r->file, "masks", H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0 || info.nlinks > PF_CHECKPOINT_MAX_MASKS) {
        pf_error("checkpoint '%s': group /masks is unreadable or holds more than %d masks%s%s",
                 r->path, PF_CHECKPOINT_MAX_MASKS, g < 0 ? "" : ": ",
                 g < 0 ? "" : pf_h5_errtext(eb));
        if (g >= 0) H5Gclose(g);
        return -1;
    }
    st->masks = pf_calloc(info.nlinks ? info.nlinks : 1, sizeof *st->masks);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        pf_checkpoint_mask *mk = &st->masks[st->n_masks];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, mk->name, sizeof mk->name,
                               H5P_DEFAULT) < 0) {
            pf_error("checkpoint '%s': cannot list /masks: %s", r->path, pf_h5_errtext(eb));
            H5Gclose(g);
            return -1;
        }
        char name[PF_PARAM_NAME_MAX + 16];
        snprintf(name, sizeof name, "masks/%s", mk->name);
        hsize_t any[2] = {0, 0}, dims[2];
        hid_t d = open_checked(r, name, H5T_INTEGER, 4, 2, any, dims);
        if (d < 0) {
            H5Gclose(g);
            return -1;
        }
        if (dims[0] < 1 || dims[1] < 1 || dims[0] * dims[1] > PF_PATTERN_MAX_BLOCKS) {
            H5Dclose(d);
            H5Gclose(g);
            pf_error("checkpoint '%s': mask /%s is %llu x %llu; a mask holds 1 to %d entries",
                     r->path, name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                     PF_PATTERN_MAX_BLOCKS);
            return -1;
        }
        mk->rows = (int)dims[0];
        mk->cols = (int)dims[1];
        mk->col = pf_malloc(sizeof(int32_t) * dims[0] * dims[1]);
        st->n_masks++;
        if (read_all(r, d, name, H5T_NATIVE_INT32, mk->col,
                     sizeof(int32_t) * dims[0] * dims[1])) {
            H5Gclose(g);
            return -1;
        }
    }
    H5Gclose(g);
    return 0;
}

// Reads everything besides the arenas into a new *st (freed again on failure).
static int read_state(reader *r, pf_checkpoint_state *st) {
    int version, world;
    if (read_int_attr(r, "format_version", &version) || read_int_attr(r, "world_size", &world))
        return -1;
    if (version != PF_CHECKPOINT_FORMAT_VERSION) {
        pf_error("checkpoint '%s' has format_version %d; this build reads version %d", r->path,
                 version, PF_CHECKPOINT_FORMAT_VERSION);
        return -1;
    }
    memset(st, 0, sizeof *st);
    hsize_t one = 1, rng_want[2] = {(hsize_t)world, 0}, rng_got[2];
    hsize_t cur_want[2] = {(hsize_t)world, 2};
    hid_t d;
    if ((d = open_checked(r, "step", H5T_INTEGER, 8, 1, &one, NULL)) < 0 ||
        read_all(r, d, "step", H5T_NATIVE_INT64, &st->step, sizeof st->step))
        goto fail;
    if ((d = open_checked(r, "rng", H5T_INTEGER, 8, 2, rng_want, rng_got)) < 0) goto fail;
    st->world = world;
    st->rng_words = (int)rng_got[1];
    st->rng = pf_malloc(sizeof(uint64_t) * (size_t)world * rng_got[1]);
    if (read_all(r, d, "rng", H5T_NATIVE_UINT64, st->rng,
                 sizeof(uint64_t) * (size_t)world * rng_got[1]))
        goto fail;
    st->cursors = pf_malloc(sizeof(int64_t) * 2 * (size_t)world);
    if ((d = open_checked(r, "cursors", H5T_INTEGER, 8, 2, cur_want, NULL)) < 0 ||
        read_all(r, d, "cursors", H5T_NATIVE_INT64, st->cursors, sizeof(int64_t) * 2 * world))
        goto fail;
    if (link_exists(r->file, "data_items") &&
        ((d = open_checked(r, "data_items", H5T_INTEGER, 8, 1, &one, NULL)) < 0 ||
         read_all(r, d, "data_items", H5T_NATIVE_INT64, &st->data_items, sizeof st->data_items)))
        goto fail;
    if (read_config(r, &st->config_text) == 0 && read_masks(r, st) == 0) return 0;
fail:
    pf_checkpoint_state_free(st);
    return -1;
}

// Reads (or, with all of params/m/v/st NULL, only verifies) the whole file.
static int read_file(const char *path, const pf_layout *layout, float *params, float *m,
                     float *v, pf_checkpoint_state *st) {
    char eb[PF_H5_ERRTEXT_MAX];
    struct stat sb;
    if (stat(path, &sb) != 0) {
        pf_error("cannot open checkpoint '%s': %s", path, strerror(errno));
        return -1;
    }
    reader r = {.path = path};
    pf_h5_quiet q = pf_h5_quiet_begin();
    r.file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = -1;
    if (r.file < 0) {
        pf_error("cannot open checkpoint '%s' (truncated or not an HDF5 file?): %s", path,
                 pf_h5_errtext(eb));
    } else {
        pf_checkpoint_state tmp;
        float *bufs[3] = {params, m, v};
        bool verify = !params && !m && !v && !st;
        rc = read_state(&r, &tmp);
        bool have_state = rc == 0;
        for (int g = 0; g < 3 && rc == 0; g++)
            if (verify || bufs[g]) rc = read_arena(&r, layout, arena_group[g], bufs[g]);
        if (rc == 0 && st) {
            *st = tmp;
            have_state = false;
        }
        if (have_state) pf_checkpoint_state_free(&tmp);
        if (H5Fclose(r.file) < 0 && rc == 0) {
            pf_error("checkpoint '%s': close failed: %s", path, pf_h5_errtext(eb));
            rc = -1;
        }
    }
    pf_h5_quiet_end(q);
    free(r.scratch);
    return rc;
}

int pf_checkpoint_verify(const char *path, const pf_layout *layout) {
    return read_file(path, layout, NULL, NULL, NULL, NULL);
}

int pf_checkpoint_load(const char *path, const pf_layout *layout, float *params, float *m,
                       float *v, pf_checkpoint_state *st) {
    PF_ASSERT(params && st);
    if (pf_checkpoint_verify(path, layout)) return -1;
    return read_file(path, layout, params, m, v, st);
}

void pf_checkpoint_state_free(pf_checkpoint_state *st) {
    for (int i = 0; i < st->n_masks; i++) free(st->masks[i].col);
    free(st->masks);
    free(st->rng);
    free(st->cursors);
    free(st->config_text);
    memset(st, 0, sizeof *st);
}

int pf_checkpoint_read_config(const char *path, char **text) {
    char eb[PF_H5_ERRTEXT_MAX];
    reader r = {.path = path};
    pf_h5_quiet q = pf_h5_quiet_begin();
    r.file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = -1;
    if (r.file < 0)
        pf_error("cannot open checkpoint '%s' (missing, truncated or not an HDF5 file?): %s",
                 path, pf_h5_errtext(eb));
    else {
        rc = read_config(&r, text);
        H5Fclose(r.file);
    }
    pf_h5_quiet_end(q);
    free(r.scratch);
    return rc;
}
