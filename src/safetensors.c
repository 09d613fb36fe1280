#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

// fp32 values and the bf16 halves are copied as they lie in memory.
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

const char *pf_st_dtype_name(pf_st_dtype d) { return d == PF_ST_BF16 ? "BF16" : "F32"; }
size_t pf_st_dtype_size(pf_st_dtype d) { return d == PF_ST_BF16 ? 2 : 4; }

uint16_t pf_st_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);  // quiet, whatever the payload
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float pf_st_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

int64_t pf_st_numel(const pf_st_info *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

// ---- writer ----------------------------------------------------------------------------

typedef struct {
    pf_st_info info;
    const float *data;
    bool own;
} st_entry;

struct pf_st_writer {
    st_entry *t;
    int n, cap;
    char **meta;  // key, value pairs
    int n_meta;
};

pf_st_writer *pf_st_writer_new(void) { return pf_calloc(1, sizeof(pf_st_writer)); }

void pf_st_writer_free(pf_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].info.name);
        if (w->t[i].own) free((void *)w->t[i].data);
    }
    for (int i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->meta);
    free(w->t);
    free(w);
}

void pf_st_add(pf_st_writer *w, const char *name, pf_st_dtype dtype, int ndim,
               const int64_t *shape, const float *data, bool own) {
    PF_ASSERT(ndim >= 0 && ndim <= PF_ST_MAX_DIMS && strcmp(name, "__metadata__"));
    for (int i = 0; i < w->n; i++) PF_ASSERT(strcmp(w->t[i].info.name, name));
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = pf_realloc(w->t, sizeof *w->t * w->cap);
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    e->info.name = pf_strdup(name);
    e->info.dtype = dtype;
    e->info.ndim = ndim;
    for (int d = 0; d < ndim; d++) e->info.shape[d] = shape[d];
    int64_t begin = w->n ? w->t[w->n - 1].info.end : 0;
    e->info.begin = begin;
    e->info.end = begin + pf_st_numel(&e->info) * (int64_t)pf_st_dtype_size(dtype);
    e->data = data;
    e->own = own;
    w->n++;
}

void pf_st_set_meta(pf_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = pf_strdup(value);
            return;
        }
    w->meta = pf_realloc(w->meta, sizeof(char *) * 2 * (w->n_meta + 1));
    w->meta[2 * w->n_meta] = pf_strdup(key);
    w->meta[2 * w->n_meta + 1] = pf_strdup(value);
    w->n_meta++;
}

static char *header_json(const pf_st_writer *w) {
    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++)
            cJSON_AddStringToObject(meta, w->meta[2 * i], w->meta[2 * i + 1]);
    }
    for (int i = 0; i < w->n; i++) {
        const pf_st_info *t = &w->t[i].info;
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", pf_st_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->begin));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->end));
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    PF_ASSERT(s);
    return s;
}

// One tensor's values in the file's dtype, in chunks.
static int write_tensor(FILE *fp, const st_entry *e) {
    enum { CHUNK = 1 << 16 };
    int64_t n = pf_st_numel(&e->info);
    if (e->info.dtype == PF_ST_F32) return fwrite(e->data, 4, (size_t)n, fp) == (size_t)n ? 0 : -1;
    uint16_t buf[CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        size_t k = (size_t)(n - i < CHUNK ? n - i : CHUNK);
        for (size_t j = 0; j < k; j++) buf[j] = pf_st_f32_to_bf16(e->data[i + (int64_t)j]);
        if (fwrite(buf, 2, k, fp) != k) return -1;
    }
    return 0;
}

int pf_write_atomic(const char *path, int (*fill)(FILE *fp, void *ctx), void *ctx) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
        pf_error("path '%s' is too long", path);
        return -1;
    }
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        pf_error("cannot create '%s': %s", tmp, strerror(errno));
        return -1;
    }
    errno = 0;
    bool ok = fill(fp, ctx) == 0;
    int err = errno;
    if (fclose(fp) != 0 && ok) ok = false, err = errno;
    if (!ok) {
        pf_error("cannot write '%s': %s", tmp, err ? strerror(err) : "write failed");
        remove(tmp);
        return -1;
    }
    if (pf_durable_rename(tmp, path) < 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

static int fill_safetensors(FILE *fp, void *ctx) {
    const pf_st_writer *w = ctx;
    char *json = header_json(w);
    size_t len = strlen(json), padded = (len + 8 + 7) / 8 * 8 - 8;
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(n8, 1, 8, fp) == 8 && fwrite(json, 1, len, fp) == len;
    free(json);
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < w->n; i++) ok = write_tensor(fp, &w->t[i]) == 0;
    return ok ? 0 : -1;
}

int pf_st_write(const pf_st_writer *w, const char *path) {
    return pf_write_atomic(path, fill_safetensors, (void *)w);
}

// ---- reader ----------------------------------------------------------------------------

struct pf_st_file {
    uint8_t *bytes;  // the whole file (owned)
    size_t len;
    uint64_t n;      // header length
    const uint8_t *data;
    size_t data_len;
    pf_st_info *t;
    int count;
    char **meta;
    int n_meta;
};

void pf_st_close(pf_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->t[i].name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->bytes);
    free(f);
}

// A non-negative integer below 2^53 in a JSON number.
static bool json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

static int parse_entry(pf_st_file *f, const cJSON *o, pf_st_info *t, const char *origin) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "data_offsets");
    if (!cJSON_IsObject(o) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2) {
        pf_error("%s: tensor '%s' needs dtype, shape and data_offsets [begin, end]", origin,
                 t->name);
        return -1;
    }
    if (!strcmp(dt->valuestring, "F32")) t->dtype = PF_ST_F32;
    else if (!strcmp(dt->valuestring, "BF16")) t->dtype = PF_ST_BF16;
    else {
        pf_error("%s: tensor '%s' has dtype %s; this reader knows F32 and BF16", origin, t->name,
                 dt->valuestring);
        return -1;
    }
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > PF_ST_MAX_DIMS) {
        pf_error("%s: tensor '%s' has %d dimensions (at most %d)", origin, t->name, t->ndim,
                 PF_ST_MAX_DIMS);
        return -1;
    }
    double numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (!json_int(cJSON_GetArrayItem(shape, d), &t->shape[d])) {
            pf_error("%s: tensor '%s': shape[%d] is not a non-negative integer", origin, t->name, d);
            return -1;
        }
        numel *= (double)t->shape[d];
    }
    if (!json_int(cJSON_GetArrayItem(off, 0), &t->begin) ||
        !json_int(cJSON_GetArrayItem(off, 1), &t->end) || t->end < t->begin ||
        (uint64_t)t->end > f->data_len) {
        pf_error("%s: tensor '%s': data_offsets outside the %zu bytes of data", origin, t->name,
                 f->data_len);
        return -1;
    }
    if (numel * (double)pf_st_dtype_size(t->dtype) != (double)(t->end - t->begin)) {
        pf_error("%s: tensor '%s': data_offsets span %lld bytes, its shape needs %.0f", origin,
                 t->name, (long long)(t->end - t->begin), numel * (double)pf_st_dtype_size(t->dtype));
        return -1;
    }
    return 0;
}

// By begin, then end: an empty tensor sorts before a tensor that starts at the same offset,
// so whether a file tiles does not depend on qsort's order of ties.
static int by_offsets(const void *a, const void *b) {
    const pf_st_info *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

// Takes `bytes` (pf_malloc'd), freed on failure too.
static pf_st_file *parse_owned(uint8_t *bytes, size_t len, const char *origin) {
    if (len < 8) {
        pf_error("%s: %zu bytes, too short for a safetensors file", origin, len);
        free(bytes);
        return NULL;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)bytes[i] << (8 * i);
    if (n > PF_ST_HEADER_MAX || n > len - 8) {
        pf_error("%s: header length %llu exceeds the file (%zu bytes) or %d", origin,
                 (unsigned long long)n, len, PF_ST_HEADER_MAX);
        free(bytes);
        return NULL;
    }
    pf_st_file *f = pf_calloc(1, sizeof *f);
    f->bytes = bytes;
    f->len = len;
    f->n = n;
    f->data = f->bytes + 8 + n;
    f->data_len = len - 8 - n;
    const char *header = (const char *)f->bytes + 8, *parsed_to = header;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)n, &parsed_to, false);
    if (!root || !cJSON_IsObject(root)) {
        pf_error("%s: the header is not a JSON object", origin);
        goto fail;
    }
    // After the object only the padding may follow (JSON whitespace, as the reference reader).
    for (const char *c = parsed_to; c < header + n; c++)
        if (!strchr(" \t\r\n", *c) || !*c) {
            pf_error("%s: the header has bytes after its JSON object (at byte %td of %llu)", origin,
                     c - header, (unsigned long long)n);
            goto fail;
        }
    int count = cJSON_GetArraySize(root);
    f->t = pf_calloc(count ? count : 1, sizeof *f->t);
    for (const cJSON *o = root->child; o; o = o->next) {
        if (!strcmp(o->string, "__metadata__")) {
            if (!cJSON_IsObject(o)) {
                pf_error("%s: __metadata__ is not an object", origin);
                goto fail;
            }
            for (const cJSON *kv = o->child; kv; kv = kv->next) {
                if (!cJSON_IsString(kv)) {
                    pf_error("%s: __metadata__ value '%s' is not a string", origin, kv->string);
                    goto fail;
                }
                f->meta = pf_realloc(f->meta, sizeof(char *) * 2 * (f->n_meta + 1));
                f->meta[2 * f->n_meta] = pf_strdup(kv->string);
                f->meta[2 * f->n_meta + 1] = pf_strdup(kv->valuestring);
                f->n_meta++;
            }
            continue;
        }
        pf_st_info *t = &f->t[f->count++];
        t->name = pf_strdup(o->string);
        if (parse_entry(f, o, t, origin) < 0) goto fail;
    }
    // Back to back from 0 to the end of the data, as the format requires, in any header order:
    // sort a copy by offset and walk it.
    pf_st_info *s = pf_malloc(sizeof *s * (f->count ? f->count : 1));
    memcpy(s, f->t, sizeof *s * f->count);
    qsort(s, f->count, sizeof *s, by_offsets);
    int64_t at = 0;
    const char *bad = NULL;
    for (int i = 0; i < f->count && !bad; i++) {
        if (s[i].begin != at) bad = s[i].name;
        at = s[i].end;
    }
    free(s);
    if (bad) {
        pf_error("%s: tensor '%s' does not start where the one before it ends", origin, bad);
        goto fail;
    }
    if ((uint64_t)at != f->data_len) {
        pf_error("%s: the tensors cover %lld of the data's %llu bytes (the format allows no "
                 "unindexed bytes)", origin, (long long)at, (unsigned long long)f->data_len);
        goto fail;
    }
    for (int i = 0; i < f->count; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(f->t[i].name, f->t[j].name)) {
                pf_error("%s: tensor '%s' appears twice", origin, f->t[i].name);
                goto fail;
            }
    cJSON_Delete(root);
    return f;
fail:
    cJSON_Delete(root);
    pf_st_close(f);
    return NULL;
}

pf_st_file *pf_st_parse(const uint8_t *bytes, size_t len, const char *origin) {
    uint8_t *copy = pf_malloc(len ? len : 1);
    memcpy(copy, bytes, len);
    return parse_owned(copy, len, origin);
}

pf_st_file *pf_st_open(const char *path) {
    char *data;
    size_t len;
    if (pf_read_file(path, &data, &len) < 0) return NULL;
    return parse_owned((uint8_t *)data, len, path);
}

int pf_st_count(const pf_st_file *f) { return f->count; }
const pf_st_info *pf_st_at(const pf_st_file *f, int i) { return &f->t[i]; }
uint64_t pf_st_header_len(const pf_st_file *f) { return f->n; }

int pf_st_find(const pf_st_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->t[i].name, name)) return i;
    return -1;
}

void pf_st_read_f32(const pf_st_file *f, int i, float *out) {
    const pf_st_info *t = &f->t[i];
    const uint8_t *p = f->data + t->begin;
    int64_t n = pf_st_numel(t);
    if (t->dtype == PF_ST_F32) {
        memcpy(out, p, (size_t)n * 4);
        return;
    }
    for (int64_t k = 0; k < n; k++) out[k] = pf_st_bf16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
}

const char *pf_st_meta(const pf_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}
