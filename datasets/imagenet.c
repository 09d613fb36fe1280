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
// in parallel (OpenMP) and written in file order, so the output and the first corrupt file reported
// do not depend on the thread count.
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

#define DECODE_BATCH 256
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

static int convert_items(const pf_convert_opts *o, const plan *p, pf_shard_writer *w,
                         pf_convert_result *r) {
    int S = o->size, nt = omp_get_max_threads();
    size_t img = (size_t)S * S * 3;
    decoder *dec = pf_calloc((size_t)nt, sizeof *dec);
    int rc = 0;
    for (int t = 0; t < nt; t++) {
        dec[t].f = pf_malloc(sizeof *dec[t].f * img);
        if (!(dec[t].tj = tjInitDecompress())) {
            pf_error("cannot initialize libturbojpeg: %s", tjGetErrorStr2(NULL));
            rc = -1;
        }
    }
    uint8_t *px = pf_malloc(img * DECODE_BATCH);
    int status[DECODE_BATCH];
    char(*err)[ERR_LEN] = pf_malloc(sizeof *err * DECODE_BATCH);
    pf_progress prog;
    pf_progress_begin(&prog, o->progress, p->n);
    for (int64_t first = 0; rc == 0 && first < p->n; first += DECODE_BATCH) {
        int k = p->n - first < DECODE_BATCH ? (int)(p->n - first) : DECODE_BATCH;
#pragma omp parallel for schedule(dynamic)
        for (int j = 0; j < k; j++)
            status[j] = decode_one(&dec[omp_get_thread_num()], p->items[first + j].path, S,
                                   px + img * j, err[j]);
        for (int j = 0; rc == 0 && j < k; j++) {
            if (status[j] < 0 && !o->skip_corrupt) {
                pf_error("'%s': %s (use --on-corrupt skip to leave such files out)",
                         p->items[first + j].path, err[j]);
                rc = -1;
            } else if (status[j] < 0) {
                r->skipped++;
            } else {
                r->warnings += status[j];
                rc = pf_shard_writer_add(w, px + img * j, p->items[first + j].label);
            }
        }
        pf_progress_step(&prog, first + k);
    }
    pf_progress_end(&prog);
    for (int t = 0; t < nt; t++) {
        if (dec[t].tj) tjDestroy(dec[t].tj);
        free(dec[t].px);
        free(dec[t].f);
    }
    free(dec);
    free(px);
    free(err);
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
    pf_shard_writer *w = pf_shard_writer_open(o->out, o->size, o->size, 3);
    if (!w) goto out;
    if (convert_items(o, &p, w, r) < 0) {
        pf_shard_writer_abort(w);
        goto out;
    }
    char *source = pf_source_string("imagenet", n_in, in);
    rc = pf_convert_finish(w, o, p.names, p.num_classes, source, r);
    free(source);
out:
    plan_free(&p);
    str_list_free(&dirs);
    str_list_free(&files);
    pf_free_names(syn, n_syn);
    return rc;
}
