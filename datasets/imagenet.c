// imagenet.c: folders of JPEGs -> image shard of S x S x 3 (libturbojpeg + own resampling).
//
// Layouts:
//   train: ROOT/<class>/*.jpg|jpeg (any case); class index = rank of the folder name in
//          byte-wise sorted order, files taken in sorted order.
//   flat:  ROOT/*.jpg with --labels FILE, either one label per line for the files in sorted
//          name order, or "filename label" lines (the form is read from the first line);
//          every file needs exactly one label. A label is a 0-based integer, or a synset id
//          (first word of a --synsets line) whose line number is the class.
// --synsets FILE ("wnid [description]" lines, e.g. LOC_synset_mapping.txt) supplies class
// names; for the flat layout it also fixes the class count and order (sorted wnids keep it
// consistent with the train layout).
//
// Each image: decoded with DCT scaling to the smallest size whose short side is still
// >= S, the central short-side square resampled to S x S (pf_image_resample: antialiased
// shrink, bilinear enlarge). Grayscale decodes to RGB; CMYK/YCCK (Adobe, inverted) is
// converted. A file libjpeg cannot decode, or that ends early, is corrupt (--on-corrupt);
// one that decodes with other warnings (extraneous bytes) is kept and counted. Batches are decoded
// in parallel (OpenMP, --jobs threads) and written in file order, so the output and the first
// corrupt file reported do not depend on the thread count.
//
// Output: one shard OUT.h5, or with --shard-images K numbered shards of K planned files each
// (shard_set.h), written one after the other; those a previous run completed are kept.
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "common.h"
#include "image_convert.h"
#include "image_loader.h"
#include "shard_set.h"

#define DECODE_BATCH 64
#define ERR_LEN 512

typedef struct {
    char *path;
    int32_t label;
} item;

typedef struct {
    char **v;
    int n, cap;
} str_list;

static void str_push(str_list *l, char *s) {
    if (l->n == l->cap)
        l->v = pf_realloc(l->v, sizeof *l->v * (size_t)(l->cap = l->cap ? 2 * l->cap : 64));
    l->v[l->n++] = s;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_jpeg_name(const char *name) {
    const char *ext = strrchr(name, '.');
    return ext && (!strcasecmp(ext, ".jpg") || !strcasecmp(ext, ".jpeg"));
}

static char *join_path(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = pf_malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

// Sorted names in dir: sub-folders into dirs, JPEG files into files (either may be NULL).
static int list_dir(const char *dir, str_list *dirs, str_list *files) {
    DIR *d = opendir(dir);
    if (!d) {
        pf_error("cannot open folder '%s': %s", dir, strerror(errno));
        return -1;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *full = join_path(dir, e->d_name);
        struct stat st;
        bool is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        free(full);
        if (is_dir && dirs)
            str_push(dirs, pf_strdup(e->d_name));
        else if (!is_dir && files && is_jpeg_name(e->d_name))
            str_push(files, pf_strdup(e->d_name));
    }
    closedir(d);
    if (dirs && dirs->n) qsort(dirs->v, (size_t)dirs->n, sizeof *dirs->v, cmp_str);
    if (files && files->n) qsort(files->v, (size_t)files->n, sizeof *files->v, cmp_str);
    return 0;
}

static void str_list_free(str_list *l) { pf_free_names(l->v, l->n), *l = (str_list){0}; }

// Length of the first word of a synset line ("n01440764 tench, Tinca tinca").
static size_t word_len(const char *s) { return strcspn(s, " \t"); }

static int find_synset(char *const *syn, int n_syn, const char *id, size_t len) {
    for (int i = 0; i < n_syn; i++)
        if (word_len(syn[i]) == len && !strncmp(syn[i], id, len)) return i;
    return -1;
}

// ---- the two layouts -------------------------------------------------------------------

typedef struct {
    item *items;
    int64_t n;
    char **names;  // [num_classes]
    int num_classes;
} plan;

static int plan_tree(const char *root, const str_list *classes, char **syn, int n_syn, plan *p) {
    int64_t cap = 1024;
    p->items = pf_malloc(sizeof *p->items * (size_t)cap);
    p->num_classes = classes->n;
    p->names = pf_calloc((size_t)classes->n, sizeof *p->names);
    for (int c = 0; c < classes->n; c++) {
        const char *folder = classes->v[c];
        int s = syn ? find_synset(syn, n_syn, folder, strlen(folder)) : -1;
        p->names[c] = pf_strdup(s >= 0 ? syn[s] : folder);
        char *dir = join_path(root, folder);
        str_list files = {0};
        int rc = list_dir(dir, NULL, &files);
        for (int i = 0; rc == 0 && i < files.n; i++) {
            if (p->n == cap) p->items = pf_realloc(p->items, sizeof *p->items * (size_t)(cap *= 2));
            p->items[p->n++] = (item){join_path(dir, files.v[i]), c};
        }
        free(dir);
        str_list_free(&files);
        if (rc < 0) return -1;
    }
    return 0;
}

// One label token: a non-negative integer, or a synset id when --synsets was given.
static int parse_label(const char *tok, size_t len, char **syn, int n_syn, const char *file,
                       int entry, int32_t *out) {
    char *end;
    long v = strtol(tok, &end, 10);
    if (end == tok + len && len > 0 && v >= 0 && v < INT32_MAX) {
        *out = (int32_t)v;
        return 0;
    }
    int s = syn ? find_synset(syn, n_syn, tok, len) : -1;
    if (s >= 0) {
        *out = s;
        return 0;
    }
    pf_error("'%s' entry %d: label '%.*s' is %s", file, entry, (int)len, tok,
             syn ? "neither a non-negative integer nor a synset id of --synsets"
                 : "not a non-negative integer (give --synsets FILE to use synset ids)");
    return -1;
}

static int cmp_item_name(const void *a, const void *b) {
    return strcmp(((const item *)a)->path, ((const item *)b)->path);
}

// Flat folder + labels file: p->items in sorted file order.
static int plan_flat(const pf_convert_opts *o, const char *root, const str_list *files, char **syn,
                     int n_syn, plan *p) {
    char **lines;
    int n_lines;
    if (pf_read_name_list(o->labels, &lines, &n_lines) < 0) return -1;
    bool pairs = lines[0][word_len(lines[0])] != 0;
    item *given = pf_malloc(sizeof *given * (size_t)n_lines);  // (file name, label) per line
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_lines; i++) {
        char *s = lines[i], *tok = s;
        if (pairs) {
            size_t n = word_len(s);
            if (!s[n]) {
                pf_error("'%s' entry %d: '%s' is not a \"filename label\" line like the first one",
                         o->labels, i + 1, s);
                rc = -1;
                break;
            }
            s[n] = 0;
            for (tok = s + n + 1; *tok == ' ' || *tok == '\t';) tok++;
        }
        given[i].path = s;
        rc = parse_label(tok, word_len(tok), syn, n_syn, o->labels, i + 1, &given[i].label);
    }
    if (rc == 0 && n_lines != files->n) {
        pf_error("'%s' has %d labels but '%s' holds %d JPEG files; need one label per file",
                 o->labels, n_lines, root, files->n);
        rc = -1;
    }
    if (rc == 0 && pairs) qsort(given, (size_t)n_lines, sizeof *given, cmp_item_name);
    p->items = pf_malloc(sizeof *p->items * (size_t)(files->n ? files->n : 1));
    int32_t max_label = -1;
    for (int i = 0; rc == 0 && i < files->n; i++) {
        item key = {files->v[i], 0},
             *hit = pairs ? bsearch(&key, given, (size_t)n_lines, sizeof *given, cmp_item_name)
                          : &given[i];
        if (!hit) {
            pf_error("'%s' has no label for '%s'", o->labels, files->v[i]);
            rc = -1;
            break;
        }
        p->items[p->n++] = (item){join_path(root, files->v[i]), hit->label};
        if (hit->label > max_label) max_label = hit->label;
    }
    free(given);
    pf_free_names(lines, n_lines);
    if (rc < 0) return -1;
    p->num_classes = syn ? n_syn : max_label + 1;
    if (syn) {
        p->names = pf_malloc(sizeof *p->names * (size_t)n_syn);
        for (int i = 0; i < n_syn; i++) p->names[i] = pf_strdup(syn[i]);
    } else {
        p->names = pf_numbered_names(p->num_classes);
    }
    return 0;
}

static void plan_free(plan *p) {
    for (int64_t i = 0; i < p->n; i++) free(p->items[i].path);
    free(p->items);
    pf_free_names(p->names, p->num_classes);
}

// ---- decoding --------------------------------------------------------------------------

// Decoding limits (docs/FORMATS.md): at most 2^28 pixels (16384 x 16384) per image, and at
// most 4096 pixels per byte of the file; a JPEG over either is corrupt (--on-corrupt).
#define JPEG_MAX_PIXELS 268435456.0
#define JPEG_MAX_PIXELS_PER_BYTE 4096.0

typedef struct {
    tjhandle tj;
    uint8_t *px;  // decoded image [h, w, 3 or 4]
    size_t px_cap;
    float *f;  // [S, S, 3]
} decoder;

// The scaled size of the decode: the smallest whose short side is still >= S.
static void pick_scale(int w, int h, int S, int *sw, int *sh) {
    int n;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    *sw = w, *sh = h;
    for (int i = 0; sf && i < n; i++) {
        if (sf[i].num > sf[i].denom) continue;
        int cw = TJSCALED(w, sf[i]), ch = TJSCALED(h, sf[i]);
        if ((cw < ch ? cw : ch) >= S && (int64_t)cw * ch < (int64_t)*sw * *sh) *sw = cw, *sh = ch;
    }
}

// Decodes path into out [S, S, 3]. 0 ok, 1 ok but libjpeg warned, -1 corrupt (err says why).
static int decode_one(decoder *d, const char *path, int S, uint8_t *out, char *err) {
    char *buf;
    size_t len;
    if (pf_read_file(path, &buf, &len) < 0) {
        snprintf(err, ERR_LEN, "%s", pf_errmsg());
        return -1;
    }
    int w = 0, h = 0, subsamp, cs,
        rc = -1;  // the header call can "succeed" on junk without setting w, h
    if (tjDecompressHeader3(d->tj, (unsigned char *)buf, (unsigned long)len, &w, &h, &subsamp,
                            &cs) < 0 ||
        w <= 0 || h <= 0) {
        snprintf(err, ERR_LEN, "not a readable JPEG: %s", tjGetErrorStr2(d->tj));
        goto done;
    }
    // The header's size is checked before a buffer is sized from it: a cap on the pixels,
    // and the file must be large enough to code them (Huffman coding spends at least one bit
    // on every 8x8 block: at most 512 pixels per byte; the bound leaves 8x headroom).
    double pixels = (double)w * h;
    if (pixels > JPEG_MAX_PIXELS || pixels > JPEG_MAX_PIXELS_PER_BYTE * (double)len) {
        snprintf(err, ERR_LEN, "the JPEG header claims %d x %d pixels, %s (%zu bytes)", w, h,
                 pixels > JPEG_MAX_PIXELS ? "more than the 268 million pfdata decodes"
                                          : "more than a file this small can hold",
                 len);
        goto done;
    }
    int sw, sh, cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK, pf = cmyk ? TJPF_CMYK : TJPF_RGB;
    pick_scale(w, h, S, &sw, &sh);
    size_t need = (size_t)sw * sh * tjPixelSize[pf];
    if (need > d->px_cap) d->px = pf_realloc(d->px, d->px_cap = need);
    rc = 0;
    if (tjDecompress2(d->tj, (unsigned char *)buf, (unsigned long)len, d->px, sw, 0, sh, pf, 0) <
        0) {
        // Warnings such as extraneous bytes leave a whole image; a truncated file is a warning
        // too for libjpeg (the rest is filled with gray), but for a data set it is corrupt.
        const char *msg = tjGetErrorStr2(d->tj);
        rc = tjGetErrorCode(d->tj) == TJERR_WARNING && !strstr(msg, "Premature end") ? 1 : -1;
        if (rc < 0) {
            snprintf(err, ERR_LEN, "JPEG decode failed: %s", msg);
            goto done;
        }
    }
    if (cmyk)  // inverted CMYK as Adobe writes it: R = C*K/255, in place to RGB
        for (size_t i = 0; i < (size_t)sw * sh; i++) {
            const uint8_t *p = d->px + 4 * i;
            uint8_t rgb[3] = {(uint8_t)(p[0] * p[3] / 255), (uint8_t)(p[1] * p[3] / 255),
                              (uint8_t)(p[2] * p[3] / 255)};
            memcpy(d->px + 3 * i, rgb, 3);
        }
    float side = (float)(sw < sh ? sw : sh);
    pf_image_resample(d->px, sh, sw, 3, ((float)sh - side) / 2, ((float)sw - side) / 2, side, side,
                      d->f, S, S, false);
    for (size_t i = 0; i < (size_t)S * S * 3; i++) {
        float v = d->f[i] + 0.5f;
        out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
done:
    free(buf);
    return rc;
}

// ---- decoding in parallel --------------------------------------------------------------

// The decoders and buffers of a conversion, used batch after batch and shard after shard.
// Two batches of buffers: one thread writes batch b-1 out of one half while the others (and
// then it too) decode batch b into the other, so the writer's serial work (copying into the
// shard, the channel sums, HDF5) overlaps the decoding.
typedef struct {
    int S, nt, batch;  // output side, threads (--jobs), items decoded at once
    decoder *dec;      // [nt], one per thread
    uint8_t *px;       // [2, batch, S, S, 3]
    int *status;       // [2, batch]: decode_one's result
    char (*err)[ERR_LEN];  // [2, batch]: why an item is corrupt
    pf_progress prog;      // over every item this run decodes
    int64_t done;
} decode_pool;

// A batch fills the threads twice over, up to DECODE_BATCH items, and holds about
// BATCH_BYTES of output pixels at most (a 4096 x 4096 x 3 output is 48 MiB).
#define BATCH_BYTES ((size_t)256 << 20)

// pool must be closed (pool_close) whatever this returns; todo: the items to decode.
static int pool_open(decode_pool *d, const pf_convert_opts *o, int64_t todo) {
    size_t img = (size_t)o->size * o->size * 3;
    *d = (decode_pool){.S = o->size, .nt = o->jobs > 0 ? o->jobs : omp_get_max_threads()};
    d->batch = BATCH_BYTES / img > DECODE_BATCH ? DECODE_BATCH : (int)(BATCH_BYTES / img);
    if (d->batch < 2 * d->nt) d->batch = 2 * d->nt;
    d->dec = pf_calloc((size_t)d->nt, sizeof *d->dec);
    int rc = 0;
    for (int t = 0; t < d->nt; t++) {
        d->dec[t].f = pf_malloc(sizeof *d->dec[t].f * img);
        if (!(d->dec[t].tj = tjInitDecompress())) {
            pf_error("cannot initialize libturbojpeg: %s", tjGetErrorStr2(NULL));
            rc = -1;
        }
    }
    d->px = pf_malloc(img * 2 * (size_t)d->batch);
    d->status = pf_malloc(sizeof *d->status * 2 * (size_t)d->batch);
    d->err = pf_malloc(sizeof *d->err * 2 * (size_t)d->batch);
    pf_progress_begin(&d->prog, o->progress, todo);
    return rc;
}

static void pool_close(decode_pool *d) {
    pf_progress_end(&d->prog);
    for (int t = 0; d->dec && t < d->nt; t++) {
        if (d->dec[t].tj) tjDestroy(d->dec[t].tj);
        free(d->dec[t].px);
        free(d->dec[t].f);
    }
    free(d->dec);
    free(d->px);
    free(d->status);
    free(d->err);
    *d = (decode_pool){0};
}

// Writes the k decoded items of buffer half h (plan items from `at`) into w, in plan order.
// A corrupt item ends the conversion, or with --on-corrupt skip is counted in *skipped.
static int write_batch(decode_pool *d, int h, const pf_convert_opts *o, const plan *p,
                       int64_t at, int k, pf_shard_writer *w, int64_t *skipped,
                       int64_t *warnings) {
    size_t img = (size_t)d->S * d->S * 3;
    const int *status = d->status + (size_t)h * d->batch;
    const uint8_t *px = d->px + img * (size_t)h * d->batch;
    for (int j = 0; j < k; j++) {
        if (status[j] < 0 && !o->skip_corrupt) {
            pf_error("'%s': %s (use --on-corrupt skip to leave such files out)",
                     p->items[at + j].path, d->err[(size_t)h * d->batch + j]);
            return -1;
        }
        if (status[j] < 0) {
            (*skipped)++;
            continue;
        }
        *warnings += status[j];
        if (pf_shard_writer_add(w, px + img * j, p->items[at + j].label) < 0) return -1;
    }
    return 0;
}

// Decodes plan items [first, first + count) into w in plan order, batch b into half b % 2 on
// the pool's threads while one of them writes batch b - 1: the output and the first corrupt
// file reported are those of one thread.
static int convert_range(decode_pool *d, const pf_convert_opts *o, const plan *p, int64_t first,
                         int64_t count, pf_shard_writer *w, int64_t *skipped, int64_t *warnings) {
    size_t img = (size_t)d->S * d->S * 3;
    int64_t batches = (count + d->batch - 1) / d->batch, end = first + count;
    int rc = 0;
    for (int64_t b = 0; rc == 0 && b <= batches; b++) {
        int64_t at = first + b * d->batch, prev_at = at - d->batch;
        int k = b == batches ? 0 : end - at < d->batch ? (int)(end - at) : d->batch;
        int prev_k = b == 0 ? 0 : end - prev_at < d->batch ? (int)(end - prev_at) : d->batch;
        int h = (int)(b % 2);
        uint8_t *px = d->px + img * (size_t)h * d->batch;
        int *status = d->status + (size_t)h * d->batch;
        char(*err)[ERR_LEN] = d->err + (size_t)h * d->batch;
        char why[1024] = "";  // the writer's pf_error, from whichever thread it ran on
#pragma omp parallel num_threads(d->nt)
        {
#pragma omp single nowait
            if (prev_k && write_batch(d, 1 - h, o, p, prev_at, prev_k, w, skipped, warnings) < 0)
                snprintf(why, sizeof why, "%s", pf_errmsg());
#pragma omp for schedule(dynamic) nowait
            for (int j = 0; j < k; j++)
                status[j] = decode_one(&d->dec[omp_get_thread_num()], p->items[at + j].path,
                                       d->S, px + img * j, err[j]);
        }
        if (why[0]) {
            pf_error("%s", why);
            rc = -1;
        }
        pf_progress_step(&d->prog, d->done += prev_k);
    }
    return rc;
}

// ---- one file (OUT.h5) -----------------------------------------------------------------

static int convert_one_file(const pf_convert_opts *o, const plan *p, const char *source,
                            pf_convert_result *r) {
    pf_shard_writer *w = pf_shard_writer_open(o->out, o->size, o->size, 3);
    if (!w) return -1;
    decode_pool d;
    int rc = pool_open(&d, o, p->n);
    if (rc == 0) rc = convert_range(&d, o, p, 0, p->n, w, &r->skipped, &r->warnings);
    pool_close(&d);
    if (rc < 0) {
        pf_shard_writer_abort(w);
        return -1;
    }
    return pf_convert_finish(w, o, p->names, p->num_classes, source, r);
}

// ---- numbered shards (--shard-images K: shard_set.h) -----------------------------------

// What every shard of one conversion shares.
typedef struct {
    const pf_convert_opts *o;
    const plan *p;
    const char *root, *source;
    char **names;  // [nc]: --class-names' or the plan's
    int nc;
    pf_shard_set set;
    decode_pool pool;
} sharded;

// Part of every plan_digest: change it when decoding or resampling changes the pixels, so
// that a rerun does not mix shards of two versions.
#define DIGEST_TAG "pfdata images imagenet 1"

// Shard i's plan_digest: DIGEST_TAG, the output size, its files' names below ROOT (so a
// moved ROOT keeps its shards) with their labels, and the class names. Not the files' bytes.
static uint64_t shard_digest(const sharded *j, int64_t i) {
    uint64_t h = pf_digest(PF_DIGEST_INIT, DIGEST_TAG, sizeof DIGEST_TAG);
    h = pf_digest_int(h, j->o->size);
    size_t skip = strlen(j->root);
    int64_t first = pf_shard_set_first(&j->set, i), end = first + pf_shard_set_planned(&j->set, i);
    for (int64_t k = first; k < end; k++) {
        const char *rel = j->p->items[k].path + skip;
        while (*rel == '/') rel++;
        h = pf_digest_int(pf_digest(h, rel, strlen(rel) + 1), j->p->items[k].label);
    }
    h = pf_digest_int(h, j->nc);
    for (int c = 0; c < j->nc; c++) h = pf_digest(h, j->names[c], strlen(j->names[c]) + 1);
    return h;
}

// Each shard checks its own labels; all are checked before the first shard is written.
static int check_labels(const sharded *j) {
    for (int64_t k = 0; k < j->p->n; k++)
        if (j->p->items[k].label >= j->nc) {
            pf_error("'%s' has label %d but there are %d classes%s; check the labels or class "
                     "names",
                     j->p->items[k].path, j->p->items[k].label, j->nc,
                     j->o->class_names ? " (--class-names)" : "");
            return -1;
        }
    return 0;
}

// Decodes and writes shard i. Just before its rename the name is checked again: a shard
// another run completed meanwhile is kept (ours dropped), any other file is refused.
static int write_shard(sharded *j, int64_t i, pf_convert_result *r) {
    int S = j->o->size;
    char *path = pf_shard_set_path(&j->set, i);
    pf_shard_writer *w = pf_shard_writer_open(path, S, S, 3);
    free(path);
    if (!w) return -1;
    uint64_t digest = shard_digest(j, i);
    int64_t skipped = 0, first = pf_shard_set_first(&j->set, i);
    int rc = convert_range(&j->pool, j->o, j->p, first, pf_shard_set_planned(&j->set, i), w,
                           &skipped, &r->warnings);
    int there = rc < 0 ? 0 : pf_shard_set_check(&j->set, i, digest, S, S, 3);
    if (rc < 0 || there != 0) {
        pf_shard_writer_abort(w);
        r->shards_kept += there == 1;
        return rc < 0 || there < 0 ? -1 : 0;
    }
    int64_t n = pf_shard_writer_count(w);
    pf_shard_set_label(&j->set, i, digest, skipped, w);
    if (pf_shard_writer_finish(w, j->nc, j->names, j->source) < 0) return -1;
    r->images += n, r->skipped += skipped, r->shards_written++;
    return 0;
}

// Which shards are complete already (done[i]); -1 when a shard's name holds another file.
static int scan_shards(sharded *j, bool *done, int64_t *todo, pf_convert_result *r) {
    for (int64_t i = 0; i < j->set.count; i++) {
        int c = pf_shard_set_check(&j->set, i, shard_digest(j, i), j->o->size, j->o->size, 3);
        if (c < 0) return -1;
        done[i] = c == 1;
        r->shards_kept += c;
        if (!c) *todo += pf_shard_set_planned(&j->set, i);
    }
    if (r->shards_kept && !j->o->quiet)
        fprintf(stderr, "pfdata images: %lld of %lld shards already complete, skipping them\n",
                (long long)r->shards_kept, (long long)j->set.count);
    return 0;
}

static int convert_sharded(const pf_convert_opts *o, const plan *p, const char *root,
                           const char *source, pf_convert_result *r) {
    char **given = NULL;
    int n_given = 0;
    if (o->class_names && pf_read_name_list(o->class_names, &given, &n_given) < 0) return -1;
    sharded j = {.o = o, .p = p, .root = root, .source = source,
                 .names = given ? given : p->names, .nc = given ? n_given : p->num_classes};
    r->num_classes = j.nc;
    pf_shard_set_init(&j.set, o->out, o->shard_images, p->n);
    r->out = pf_shard_set_pattern(&j.set);
    bool *done = pf_calloc((size_t)j.set.count, sizeof *done);
    int64_t todo = 0;
    int rc = check_labels(&j) < 0 || scan_shards(&j, done, &todo, r) < 0 ? -1 : 0;
    if (rc == 0 && todo) rc = pool_open(&j.pool, o, todo);
    for (int64_t i = 0; rc == 0 && i < j.set.count; i++)
        if (!done[i]) rc = write_shard(&j, i, r);
    pool_close(&j.pool);
    free(done);
    pf_shard_set_free(&j.set);
    pf_free_names(given, n_given);
    return rc;
}

int pf_convert_imagenet(const pf_convert_opts *o, int n_in, char **in, pf_convert_result *r) {
    PF_ASSERT(n_in == 1);
    const char *root = in[0];
    char **syn = NULL;
    int n_syn = 0;
    str_list dirs = {0}, files = {0};
    plan p = {0};
    int rc = -1;
    if ((o->synsets && pf_read_name_list(o->synsets, &syn, &n_syn) < 0) ||
        list_dir(root, &dirs, &files) < 0)
        goto out;
    if (!o->labels && dirs.n == 0) {
        pf_error("'%s' has no class sub-folders; for a flat folder of JPEGs give --labels FILE",
                 root);
        goto out;
    }
    if ((o->labels ? plan_flat(o, root, &files, syn, n_syn, &p)
                   : plan_tree(root, &dirs, syn, n_syn, &p)) < 0)
        goto out;
    if (p.n == 0) {
        pf_error("'%s' holds no .jpg/.jpeg files%s", root,
                 o->labels ? "" : " in its class folders");
        goto out;
    }
    *r = (pf_convert_result){.H = o->size, .W = o->size, .C = 3};
    char *source = pf_source_string("imagenet", n_in, in);
    rc = o->shard_images > 0 ? convert_sharded(o, &p, root, source, r)
                             : convert_one_file(o, &p, source, r);
    free(source);
out:
    plan_free(&p);
    str_list_free(&dirs);
    str_list_free(&files);
    pf_free_names(syn, n_syn);
    return rc;
}
