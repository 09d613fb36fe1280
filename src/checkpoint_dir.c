// checkpoint_dir.c: the checkpoint directory's policy (checkpoint.h): file names by step,
// `latest`, keep-K rotation and the resume search. The files themselves are checkpoint.c.
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define CKPT_STEP_FMT "ckpt-%08" PRId64 ".h5"

// ---- names ----

static int join(char *out, size_t cap, const char *dir, const char *name) {
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) {
        pf_error("checkpoint path '%s/%s' is longer than %zu bytes", dir, name, cap - 1);
        return -1;
    }
    return 0;
}

int pf_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step) {
    char name[64];
    snprintf(name, sizeof name, CKPT_STEP_FMT, step);
    return join(out, cap, dir, name);
}

// ckpt-STEP.h5 -> step (tmp false); ckpt-STEP.h5.tmp -> step (tmp true); else false.
static bool parse_name(const char *name, int64_t *step, bool *tmp) {
    int end = 0;
    if (sscanf(name, "ckpt-%" SCNd64 ".h5%n", step, &end) != 1 || end == 0) return false;
    if (strncmp(name, "ckpt-", 5) || name[5] < '0' || name[5] > '9') return false;
    *tmp = !strcmp(name + end, ".tmp");
    return name[end] == 0 || *tmp;
}

typedef struct {
    int64_t step;
    bool tmp;
} ckpt_entry;

static int by_step_desc(const void *a, const void *b) {
    int64_t x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
    return (x < y) - (x > y);
}

// The checkpoint files of `dir` (and stale .tmp ones), newest step first. -1 if unreadable.
static int scan_dir(const char *dir, ckpt_entry **out, int *n) {
    DIR *d = opendir(dir);
    if (!d) {
        pf_error("cannot list checkpoint directory '%s': %s", dir, strerror(errno));
        return -1;
    }
    ckpt_entry *e = NULL;
    int cnt = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        ckpt_entry x;
        if (!parse_name(de->d_name, &x.step, &x.tmp)) continue;
        if (cnt == cap) e = pf_realloc(e, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *e);
        e[cnt++] = x;
    }
    closedir(d);
    if (cnt) qsort(e, (size_t)cnt, sizeof *e, by_step_desc);  // e is NULL when cnt is 0
    *out = e;
    *n = cnt;
    return 0;
}

// ---- commit and pruning ----

static int prune(const char *dir, int64_t step, int keep) {
    ckpt_entry *e;
    int n, older = 0, rc = 0;
    if (scan_dir(dir, &e, &n)) return -1;
    for (int i = 0; i < n && rc == 0; i++) {
        char name[64], path[PATH_MAX];
        bool drop = e[i].tmp || (e[i].step < step && keep > 0 && ++older > keep - 1);
        if (!drop) continue;
        snprintf(name, sizeof name, CKPT_STEP_FMT "%s", e[i].step, e[i].tmp ? ".tmp" : "");
        if (join(path, sizeof path, dir, name)) rc = -1;
        else if (unlink(path) != 0 && errno != ENOENT) {
            pf_error("checkpoint step %" PRId64 " committed, but deleting the old '%s' failed: %s",
                     step, path, strerror(errno));
            rc = -1;
        }
    }
    free(e);
    return rc;
}

int pf_checkpoint_commit(const char *dir, int64_t step, int keep) {
    char name[64], path[PATH_MAX], latest[PATH_MAX], tmp[PATH_MAX];
    snprintf(name, sizeof name, CKPT_STEP_FMT, step);
    if (join(path, sizeof path, dir, name) || join(latest, sizeof latest, dir, "latest") ||
        join(tmp, sizeof tmp, dir, "latest.tmp"))
        return -1;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        pf_error("cannot commit checkpoint '%s': %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        pf_error("cannot write '%s': %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = fprintf(f, "%s\n", name) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok || rename(tmp, latest) != 0) {
        pf_error("cannot update '%s' (via '%s'): %s", latest, tmp, strerror(ok ? errno : err));
        unlink(tmp);
        return -1;
    }
    if (pf_fsync_path(dir, true)) return -1;
    return prune(dir, step, keep);
}

// ---- resume ----

static void append_line(char *msg, size_t cap, const char *what, const char *why) {
    if (!cap) return;
    size_t k = strlen(msg);
    if (k < cap) snprintf(msg + k, cap - k, "%s%s\n", what, why);
}

// The step `latest` names, or -1 (with a line in msg when it exists but is unusable).
static int64_t read_latest(const char *dir, char *msg, size_t cap) {
    char path[PATH_MAX], *text;
    if (join(path, sizeof path, dir, "latest") || access(path, F_OK) != 0) return -1;
    if (pf_read_file(path, &text, NULL)) {
        append_line(msg, cap, "ignored latest: ", pf_errmsg());
        return -1;
    }
    int64_t step;
    bool tmp;
    text[strcspn(text, "\r\n")] = 0;
    bool ok = parse_name(text, &step, &tmp) && !tmp;
    if (!ok) {
        char why[PATH_MAX + 64];
        snprintf(why, sizeof why, "'%s' does not name a ckpt-STEP.h5 file", path);
        append_line(msg, cap, "ignored latest: ", why);
    }
    free(text);
    return ok ? step : -1;
}

static int try_step(const char *dir, int64_t step, const pf_layout *layout,
                    pf_checkpoint_accept_fn accept, void *ctx, char *path_out, size_t path_cap,
                    char *msg, size_t msg_cap) {
    if (pf_checkpoint_path(path_out, path_cap, dir, step) == 0 &&
        (!accept || accept(ctx, path_out) == 0) && pf_checkpoint_verify(path_out, layout) == 0)
        return 1;
    append_line(msg, msg_cap, "skipped: ", pf_errmsg());
    return 0;
}

bool pf_checkpoint_any(const char *dir) {
    char latest[PATH_MAX];
    if (join(latest, sizeof latest, dir, "latest") == 0 && access(latest, F_OK) == 0) return true;
    DIR *d = opendir(dir);
    if (!d) return false;
    bool any = false;
    for (struct dirent *de; !any && (de = readdir(d));) {
        int64_t step;
        bool tmp;
        any = parse_name(de->d_name, &step, &tmp) && !tmp;
    }
    closedir(d);
    return any;
}

int pf_checkpoint_find_resume(const char *dir, const pf_layout *layout,
                              pf_checkpoint_accept_fn accept, void *ctx, char *path_out,
                              size_t path_cap, char *msg, size_t msg_cap) {
    if (msg_cap) msg[0] = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0 && errno == ENOENT) return PF_RESUME_NONE;
    ckpt_entry *e;
    int n;
    if (scan_dir(dir, &e, &n)) return PF_RESUME_ERROR;
    if (!pf_checkpoint_any(dir)) {
        free(e);
        return PF_RESUME_NONE;
    }
    int64_t latest = read_latest(dir, msg, msg_cap);
    int found = latest >= 0 ? try_step(dir, latest, layout, accept, ctx, path_out, path_cap, msg,
                                       msg_cap)
                            : 0;
    for (int i = 0; i < n && !found; i++) {
        if (e[i].tmp || (latest >= 0 && e[i].step >= latest)) continue;
        found = try_step(dir, e[i].step, layout, accept, ctx, path_out, path_cap, msg, msg_cap);
    }
    free(e);
    return found ? PF_RESUME_FOUND : PF_RESUME_UNUSABLE;
}

