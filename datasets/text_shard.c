// text_shard.c: writing and reading the HDF5 token shard (format in text_shard.h).
#include "text_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5util.h"
#include "interrupt.h"

struct pf_text_shard_writer {
    char *path, *tmp;
    hid_t file, dset, mem_type;
    size_t elem;        // bytes per stored id: 2 or 4
    int vocab_size;
    int64_t written;    // ids in the dataset
    void *buf;          // [chunk] ids not yet written, as stored (uint16 or uint32)
    size_t nbuf, chunk;
};

struct pf_text_shard {
    char *path, *tokenizer, *source;
    hid_t file, dset;
    int64_t num_tokens;
    int vocab_size, eot;
};

// ---- writing ---------------------------------------------------------------------------

static int write_int_attr(hid_t loc, const char *name, int value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a =
        space < 0 ? -1 : H5Acreate2(loc, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &value) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

static hid_t create_tokens(hid_t file, hid_t file_type, hsize_t chunk) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &dims, &maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0)
        d = H5Dcreate2(file, "tokens", file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

static void writer_free(pf_text_shard_writer *w) {
    pf_interrupt_untrack(w->tmp);  // renamed or removed by now
    free(w->path);
    free(w->tmp);
    free(w->buf);
    free(w);
}

pf_text_shard_writer *pf_text_shard_create(const char *path, int vocab_size, int eot_token,
                                           const char *tokenizer, const char *source,
                                           int64_t chunk_tokens) {
    PF_ASSERT(vocab_size > 0 && eot_token >= 0 && eot_token < vocab_size);
    pf_text_shard_writer *w = pf_calloc(1, sizeof *w);
    w->path = pf_strdup(path);
    size_t n = strlen(path) + 32;
    w->tmp = pf_malloc(n);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    pf_interrupt_track(w->tmp);  // before it exists, so an interrupt never misses it
    w->vocab_size = vocab_size;
    bool wide = vocab_size > 65535;
    w->elem = wide ? 4 : 2;
    w->mem_type = wide ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT16;
    w->chunk = (size_t)(chunk_tokens < 1 ? 1
                        : chunk_tokens > PF_TEXT_SHARD_MAX_CHUNK ? PF_TEXT_SHARD_MAX_CHUNK
                                                                 : chunk_tokens);
    w->buf = pf_malloc(w->chunk * w->elem);
    w->file = w->dset = -1;

    // Create the temporary ourselves first: HDF5's own failure says little about why.
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        pf_error("cannot create '%s': %s (is the output directory writable?)", w->tmp,
                 strerror(errno));
        writer_free(w);
        return NULL;
    }
    close(fd);
    H5E_BEGIN_TRY {
        hid_t fapl = pf_h5_checksummed_fapl();
        w->file = fapl < 0 ? -1 : H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (fapl >= 0) H5Pclose(fapl);
        if (w->file >= 0)
            w->dset = create_tokens(w->file, wide ? H5T_STD_U32LE : H5T_STD_U16LE, w->chunk);
    } H5E_END_TRY;
    if (w->dset < 0 || write_int_attr(w->file, "vocab_size", vocab_size) ||
        write_int_attr(w->file, "eot_token", eot_token) ||
        write_int_attr(w->file, "format_version", PF_TEXT_SHARD_VERSION) ||
        pf_h5_write_string_attr(w->file, "tokenizer", tokenizer) ||
        pf_h5_write_string_attr(w->file, "source", source)) {
        pf_error("cannot create the HDF5 token shard '%s'", w->tmp);
        pf_text_shard_abort(w);
        return NULL;
    }
    return w;
}

static int flush(pf_text_shard_writer *w) {
    if (!w->nbuf) return 0;
    hsize_t start = (hsize_t)w->written, count = w->nbuf, total = start + count;
    hid_t fspace = -1, mspace = -1;
    herr_t rc = -1;
    H5E_BEGIN_TRY {
        if (H5Dset_extent(w->dset, &total) >= 0 && (fspace = H5Dget_space(w->dset)) >= 0 &&
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0 &&
            (mspace = H5Screate_simple(1, &count, NULL)) >= 0)
            rc = H5Dwrite(w->dset, w->mem_type, mspace, fspace, H5P_DEFAULT, w->buf);
        if (mspace >= 0) H5Sclose(mspace);
        if (fspace >= 0) H5Sclose(fspace);
    } H5E_END_TRY;
    if (rc < 0) {
        pf_error("cannot write %zu tokens at position %lld of '%s' (disk full?)", w->nbuf,
                 (long long)start, w->tmp);
        return -1;
    }
    w->written += (int64_t)w->nbuf;
    w->nbuf = 0;
    return 0;
}

int pf_text_shard_append(pf_text_shard_writer *w, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= w->vocab_size) {
            pf_error("token id %d is outside the vocabulary [0, %d) of '%s'", ids[i],
                     w->vocab_size, w->path);
            return -1;
        }
        if (w->elem == 2)
            ((uint16_t *)w->buf)[w->nbuf] = (uint16_t)ids[i];
        else
            ((uint32_t *)w->buf)[w->nbuf] = (uint32_t)ids[i];
        if (++w->nbuf == w->chunk && flush(w)) return -1;
    }
    return 0;
}

int64_t pf_text_shard_count(const pf_text_shard_writer *w) {
    return w->written + (int64_t)w->nbuf;
}

int pf_text_shard_commit(pf_text_shard_writer *w) {
    int rc = flush(w);
    herr_t closed_d = -1, closed_f = -1;
    H5E_BEGIN_TRY {  // a full disk fails here: our message says so, not HDF5's error stack
        closed_d = H5Dclose(w->dset);
        closed_f = H5Fclose(w->file);
    } H5E_END_TRY;
    w->dset = w->file = -1;
    if (!rc && (closed_d < 0 || closed_f < 0)) {
        pf_error("cannot close '%s' (disk full?)", w->tmp);
        rc = -1;
    }
    if (!rc) rc = pf_durable_publish(w->tmp, w->path);
    if (rc) unlink(w->tmp);
    writer_free(w);
    return rc;
}

void pf_text_shard_abort(pf_text_shard_writer *w) {
    if (!w) return;
    H5E_BEGIN_TRY {
        if (w->dset >= 0) H5Dclose(w->dset);
        if (w->file >= 0) H5Fclose(w->file);
    } H5E_END_TRY;
    unlink(w->tmp);
    writer_free(w);
}

// ---- reading ---------------------------------------------------------------------------

static int read_int_attr(const pf_text_shard *s, const char *name, int *value) {
    hid_t a = -1;
    herr_t rc = -1;
    H5E_BEGIN_TRY {
        if (H5Aexists(s->file, name) > 0 && (a = H5Aopen(s->file, name, H5P_DEFAULT)) >= 0)
            rc = H5Aread(a, H5T_NATIVE_INT, value);
        if (a >= 0) H5Aclose(a);
    } H5E_END_TRY;
    if (rc < 0) {
        pf_error("'%s' lacks the integer attribute '%s' of a token shard (write it with "
                 "`pfdata text`)", s->path, name);
        return -1;
    }
    return 0;
}

// A string attribute as a malloc'd copy ("" when absent).
static char *read_string_attr(const pf_text_shard *s, const char *name) {
    char *out = pf_h5_read_string_attr(s->file, name);
    return out ? out : pf_strdup("");
}

// Checks that /tokens is a 1-D dataset of unsigned 16- or 32-bit integers.
static int check_tokens(pf_text_shard *s) {
    int ok = 0;
    hsize_t n = 0;
    H5E_BEGIN_TRY {
        hid_t space = H5Dget_space(s->dset), type = H5Dget_type(s->dset);
        ok = space >= 0 && type >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
             H5Sget_simple_extent_dims(space, &n, NULL) == 1 &&
             H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE &&
             (H5Tget_size(type) == 2 || H5Tget_size(type) == 4);
        if (space >= 0) H5Sclose(space);
        if (type >= 0) H5Tclose(type);
    } H5E_END_TRY;
    if (!ok) {
        pf_error("'%s': /tokens is not a 1-D dataset of uint16 or uint32 token ids", s->path);
        return -1;
    }
    s->num_tokens = (int64_t)n;
    return 0;
}

// No filters (docs/FORMATS.md): a file storing fewer bytes than its length says is truncated
// or damaged, refused before the loader sizes anything (its shuffled order) from that length.
static int check_storage(const pf_text_shard *s) {
    hid_t type = H5Dget_type(s->dset);
    double need = (double)s->num_tokens * (double)(type >= 0 ? H5Tget_size(type) : 2);
    if (type >= 0) H5Tclose(type);
    double have = (double)H5Dget_storage_size(s->dset);
    if (have < need) {
        pf_error("'%s': /tokens announces %lld tokens (%.0f bytes) but the file stores %.0f "
                 "bytes of them; it is truncated or damaged (make it again with pfdata text)",
                 s->path, (long long)s->num_tokens, need, have);
        return -1;
    }
    return 0;
}

pf_text_shard *pf_text_shard_open(const char *path) {
    if (access(path, R_OK) != 0) {
        pf_error("cannot open the token shard '%s': %s", path, strerror(errno));
        return NULL;
    }
    pf_text_shard *s = pf_calloc(1, sizeof *s);
    s->path = pf_strdup(path);
    s->dset = -1;
    H5E_BEGIN_TRY {
        s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    } H5E_END_TRY;
    if (s->file < 0) {
        pf_error("cannot open '%s': not an HDF5 file, or truncated or corrupt", path);
        pf_text_shard_close(s);
        return NULL;
    }
    H5E_BEGIN_TRY {
        if (H5Lexists(s->file, "tokens", H5P_DEFAULT) > 0)
            s->dset = H5Dopen2(s->file, "tokens", H5P_DEFAULT);
    } H5E_END_TRY;
    if (s->dset < 0) {
        pf_error("'%s' is not a token shard: no /tokens dataset (make one with `pfdata text`)",
                 path);
        pf_text_shard_close(s);
        return NULL;
    }
    if (check_tokens(s) || read_int_attr(s, "vocab_size", &s->vocab_size) ||
        read_int_attr(s, "eot_token", &s->eot)) {
        pf_text_shard_close(s);
        return NULL;
    }
    if (s->vocab_size <= 0 || s->eot < 0 || s->eot >= s->vocab_size) {
        pf_error("'%s': attributes vocab_size = %d, eot_token = %d are inconsistent", path,
                 s->vocab_size, s->eot);
        pf_text_shard_close(s);
        return NULL;
    }
    if (check_storage(s)) {
        pf_text_shard_close(s);
        return NULL;
    }
    s->tokenizer = read_string_attr(s, "tokenizer");
    s->source = read_string_attr(s, "source");
    return s;
}

void pf_text_shard_close(pf_text_shard *s) {
    if (!s) return;
    H5E_BEGIN_TRY {
        if (s->dset >= 0) H5Dclose(s->dset);
        if (s->file >= 0) H5Fclose(s->file);
    } H5E_END_TRY;
    free(s->path);
    free(s->tokenizer);
    free(s->source);
    free(s);
}

int64_t pf_text_shard_num_tokens(const pf_text_shard *s) { return s->num_tokens; }
int pf_text_shard_vocab_size(const pf_text_shard *s) { return s->vocab_size; }
int pf_text_shard_eot(const pf_text_shard *s) { return s->eot; }
const char *pf_text_shard_tokenizer(const pf_text_shard *s) { return s->tokenizer; }
const char *pf_text_shard_source(const pf_text_shard *s) { return s->source; }

int pf_text_shard_read(pf_text_shard *s, int64_t start, int64_t count, int32_t *dst) {
    PF_ASSERT(start >= 0 && count >= 0 && start + count <= s->num_tokens);
    hsize_t off = (hsize_t)start, n = (hsize_t)count;
    hid_t fspace = -1, mspace = -1;
    herr_t rc = -1;
    H5E_BEGIN_TRY {
        if ((fspace = H5Dget_space(s->dset)) >= 0 &&
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &off, NULL, &n, NULL) >= 0 &&
            (mspace = H5Screate_simple(1, &n, NULL)) >= 0)
            rc = H5Dread(s->dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, dst);
        if (mspace >= 0) H5Sclose(mspace);
        if (fspace >= 0) H5Sclose(fspace);
    } H5E_END_TRY;
    if (rc < 0) {
        pf_error("cannot read tokens [%lld, %lld) of '%s': the file is truncated or corrupt",
                 (long long)start, (long long)(start + count), s->path);
        return -1;
    }
    for (int64_t i = 0; i < count; i++) {
        if (dst[i] < 0 || dst[i] >= s->vocab_size) {
            pf_error("'%s': token %lld is %d, outside the vocabulary [0, %d): corrupt shard",
                     s->path, (long long)(start + i), dst[i], s->vocab_size);
            return -1;
        }
    }
    return 0;
}
