// shard_set.c: names, identity attributes and the resume check of numbered image shards
// (shard_set.h).
#include "shard_set.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

void pf_shard_set_init(pf_shard_set *s, const char *out, int64_t per_shard, int64_t total) {
    PF_ASSERT(per_shard >= 1 && total >= 0);
    size_t len = strlen(out);
    if (len > 3 && !strcmp(out + len - 3, ".h5")) len -= 3;
    *s = (pf_shard_set){.stem = pf_malloc(len + 1), .per_shard = per_shard, .total = total};
    memcpy(s->stem, out, len);
    s->stem[len] = 0;
    s->count = total / per_shard + (total % per_shard != 0);
}

void pf_shard_set_free(pf_shard_set *s) {
    free(s->stem);
    *s = (pf_shard_set){0};
}

// Digits of the index and the count in the names: 5, or those of the count when more.
static int name_width(const pf_shard_set *s) {
    int w = 1;
    for (int64_t c = s->count; c >= 10; c /= 10) w++;
    return w > 5 ? w : 5;
}

// "STEM-<index>-of-<count>.h5" with index given as text (a number or "*").
static char *shard_name(const pf_shard_set *s, const char *index) {
    size_t len = strlen(s->stem) + strlen(index) + 48;
    char *p = pf_malloc(len);
    snprintf(p, len, "%s-%s-of-%0*" PRId64 ".h5", s->stem, index, name_width(s), s->count);
    return p;
}

char *pf_shard_set_path(const pf_shard_set *s, int64_t i) {
    char index[32];
    snprintf(index, sizeof index, "%0*" PRId64, name_width(s), i);
    return shard_name(s, index);
}

char *pf_shard_set_pattern(const pf_shard_set *s) { return shard_name(s, "*"); }

int64_t pf_shard_set_first(const pf_shard_set *s, int64_t i) { return i * s->per_shard; }

int64_t pf_shard_set_planned(const pf_shard_set *s, int64_t i) {
    int64_t left = s->total - pf_shard_set_first(s, i);
    return left < s->per_shard ? left : s->per_shard;
}

// The identity attributes that are integers, with shard i's values.
enum { N_IDS = 6 };
typedef struct {
    const char *name;
    int64_t value;
} id_attr;

static void identity(const pf_shard_set *s, int64_t i, id_attr ids[N_IDS]) {
    ids[0] = (id_attr){"shard_index", i};
    ids[1] = (id_attr){"shard_count", s->count};
    ids[2] = (id_attr){"shard_images", s->per_shard};
    ids[3] = (id_attr){"first_item", pf_shard_set_first(s, i)};
    ids[4] = (id_attr){"planned_items", pf_shard_set_planned(s, i)};
    ids[5] = (id_attr){"total_items", s->total};
}

static void digest_hex(uint64_t digest, char hex[17]) {
    snprintf(hex, 17, "%016" PRIx64, digest);
}

void pf_shard_set_label(const pf_shard_set *s, int64_t i, uint64_t digest, int64_t skipped,
                        pf_shard_writer *w) {
    id_attr ids[N_IDS];
    identity(s, i, ids);
    for (int k = 0; k < N_IDS; k++) pf_shard_writer_attr_int(w, ids[k].name, ids[k].value);
    pf_shard_writer_attr_int(w, "skipped_corrupt", skipped);
    char hex[17];
    digest_hex(digest, hex);
    pf_shard_writer_attr_str(w, "plan_digest", hex);
}

// Why the open shard sh is not shard i of this conversion, into why; 0 when it is.
static int differs(const pf_image_shard *sh, const pf_shard_set *s, int64_t i, uint64_t digest,
                   const int shape[3], char *why, size_t cap) {
    id_attr ids[N_IDS];
    identity(s, i, ids);
    int64_t v, skipped;
    for (int k = 0; k < N_IDS; k++) {
        if (pf_image_shard_attr_int(sh, ids[k].name, &v) < 0)
            return snprintf(why, cap, "it has no attribute '%s' (not a numbered shard)",
                            ids[k].name);
        if (v != ids[k].value)
            return snprintf(why, cap, "its %s is %" PRId64 ", this run's is %" PRId64,
                            ids[k].name, v, ids[k].value);
    }
    if (sh->H != shape[0] || sh->W != shape[1] || sh->C != shape[2])
        return snprintf(why, cap, "it holds %dx%dx%d images, this run makes %dx%dx%d", sh->H,
                        sh->W, sh->C, shape[0], shape[1], shape[2]);
    char want[17], *got = pf_image_shard_attr_str(sh, "plan_digest");
    digest_hex(digest, want);
    int rc = 0;
    if (!got || strcmp(got, want))
        rc = snprintf(why, cap,
                      "its plan_digest %s is not this run's %s (other input files, labels, "
                      "--size or class names)",
                      got ? got : "(none)", want);
    else if (pf_image_shard_attr_int(sh, "skipped_corrupt", &skipped) < 0 ||
             sh->n + skipped != ids[4].value)
        rc = snprintf(why, cap, "it holds %" PRId64 " images, not planned_items less "
                      "skipped_corrupt", sh->n);
    free(got);
    return rc;
}

int pf_shard_set_check(const pf_shard_set *s, int64_t i, uint64_t digest, int H, int W, int C) {
    char *path = pf_shard_set_path(s, i);
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT) {
        free(path);
        return 0;
    }
    char why[1024];
    pf_image_shard sh;
    int rc = -1;
    if (pf_image_shard_open(&sh, path) < 0) {
        snprintf(why, sizeof why, "%s", pf_errmsg());
    } else {
        const int shape[3] = {H, W, C};
        rc = differs(&sh, s, i, digest, shape, why, sizeof why) ? -1 : 1;
        pf_image_shard_close(&sh);
    }
    if (rc < 0)
        pf_error("'%s' exists but is not shard %" PRId64 " of this conversion: %s; pfdata does "
                 "not overwrite it: use another --out or remove the file",
                 path, i, why);
    free(path);
    return rc;
}

uint64_t pf_digest(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t pf_digest_int(uint64_t h, int64_t v) {
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)((uint64_t)v >> (8 * b));
    return pf_digest(h, le, sizeof le);
}
