// shards.c: expanding a split's shard list, and finding an item's shard.
#include "shards.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common.h"

static bool has_glob_chars(const char *s) { return strpbrk(s, "*?[") != NULL; }

static void push(pf_shard_list *l, int *cap, const char *path) {
    if (l->n == *cap) l->paths = pf_realloc(l->paths, sizeof *l->paths * (size_t)(*cap *= 2));
    l->paths[l->n++] = pf_strdup(path);
}

// Appends the expansion of one element; -1 + pf_error.
static int expand_element(const char *elem, const char *what, pf_shard_list *l, int *cap) {
    if (!has_glob_chars(elem)) {
        push(l, cap, elem);  // opening it reports a missing file with the loader's context
        return 0;
    }
    glob_t g;
    int rc = glob(elem, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        pf_error("%s: '%s' matches no file (check the directory and the pattern)", what, elem);
        return -1;
    }
    if (rc != 0) {
        pf_error("%s: cannot expand '%s': %s", what, elem,
                 rc == GLOB_NOSPACE ? "out of memory" : "a directory could not be read");
        return -1;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (l->n >= PF_MAX_SHARDS) {
            pf_error("%s: '%s' gives more than %d shards; convert with more images per shard",
                     what, elem, PF_MAX_SHARDS);
            globfree(&g);
            return -1;
        }
        push(l, cap, g.gl_pathv[i]);
    }
    globfree(&g);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pf_shard_list_expand(const char *spec, const char *what, pf_shard_list *out) {
    *out = (pf_shard_list){0};
    int cap = 4;
    out->paths = pf_malloc(sizeof *out->paths * (size_t)cap);
    char *copy = pf_strdup(spec);
    int rc = 0, elements = 0;
    // strtok_r would skip empty elements silently; walk the commas by hand to refuse them.
    for (char *e = copy, *next; rc == 0 && e; e = next) {
        next = strchr(e, ',');
        if (next) *next++ = 0;
        while (*e == ' ' || *e == '\t') e++;
        size_t len = strlen(e);
        while (len && (e[len - 1] == ' ' || e[len - 1] == '\t')) e[--len] = 0;
        elements++;
        if (!len) {
            pf_error("%s = '%s': element %d of the list is empty (separate shard paths or "
                     "patterns with single commas)", what, spec, elements);
            rc = -1;
        } else {
            rc = expand_element(e, what, out, &cap);
        }
    }
    free(copy);
    if (rc == 0) {
        // A shard named twice would be seen twice per epoch; sorted copies find it.
        char **sorted = pf_malloc(sizeof *sorted * (size_t)out->n);
        memcpy(sorted, out->paths, sizeof *sorted * (size_t)out->n);
        qsort(sorted, (size_t)out->n, sizeof *sorted, cmp_str);
        for (int i = 1; rc == 0 && i < out->n; i++)
            if (!strcmp(sorted[i - 1], sorted[i])) {
                pf_error("%s = '%s' names '%s' twice; an epoch must see each shard once", what,
                         spec, sorted[i]);
                rc = -1;
            }
        free(sorted);
    }
    if (rc < 0) pf_shard_list_free(out);
    return rc;
}

void pf_shard_list_free(pf_shard_list *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    *l = (pf_shard_list){0};
}

int pf_shard_reserve_files(int n, const char *what) {
    // Leave room for what the rest of the process opens (logs, checkpoints, MPI, CUDA).
    const rlim_t spare = 256;
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0) return 0;
    rlim_t want = (rlim_t)n + spare;
    if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
        if (r.rlim_max == RLIM_INFINITY || r.rlim_max >= want) {
            r.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &r) == 0) return 0;
        }
        pf_error("%s: its %d shards stay open, which needs about %llu open files, but this "
                 "process may open %llu (ulimit -n; hard limit %llu); raise the limit "
                 "(ulimit -n %llu) or convert with more images per shard",
                 what, n, (unsigned long long)want, (unsigned long long)r.rlim_cur,
                 (unsigned long long)r.rlim_max, (unsigned long long)want);
        return -1;
    }
    return 0;
}

int pf_shard_of(const int64_t *first, int n, int64_t i) {
    PF_ASSERT(n > 0 && i >= 0 && i < first[n]);
    int lo = 0, hi = n - 1;  // the last s with first[s] <= i
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (first[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
