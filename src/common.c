#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char pf_errbuf[2048];

static pf_runtime_context runtime = {.tool = "pixelfly", .rank = -1, .world = 1};

void pf_runtime_set_tool(const char *tool) { runtime.tool = tool; }

void pf_runtime_set_rank(int rank, int world) {
    runtime.rank = rank;
    runtime.world = world;
    if (gethostname(runtime.host, sizeof runtime.host) != 0)
        snprintf(runtime.host, sizeof runtime.host, "?");
    runtime.host[sizeof runtime.host - 1] = 0;
}

const pf_runtime_context *pf_runtime(void) { return &runtime; }

const char *pf_runtime_prefix(char *buf, size_t cap) {
    if (runtime.rank >= 0 && runtime.world > 1)
        snprintf(buf, cap, "%s[rank %d@%s]", runtime.tool, runtime.rank, runtime.host);
    else
        snprintf(buf, cap, "%s", runtime.tool);
    return buf;
}

void pf_report(const char *fmt, ...) {
    char prefix[128];
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", pf_runtime_prefix(prefix, sizeof prefix));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void pf_fatal_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    char prefix[128];
    fflush(stdout);
    fprintf(stderr, "%s: fatal at %s:%d: ", pf_runtime_prefix(prefix, sizeof prefix), file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);  // stderr may be a buffered file (redirected): abort() does not flush
    abort();
}

void pf_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pf_errbuf, sizeof pf_errbuf, fmt, ap);
    va_end(ap);
}

const char *pf_errmsg(void) { return pf_errbuf; }

void *pf_malloc_at(const char *file, int line, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) pf_fatal_at(file, line, "out of host memory allocating %zu bytes", n);
    return p;
}

void *pf_calloc_at(const char *file, int line, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) pf_fatal_at(file, line, "out of host memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *pf_realloc_at(const char *file, int line, void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) pf_fatal_at(file, line, "out of host memory reallocating %zu bytes", n);
    return q;
}

char *pf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pf_malloc(n);
    memcpy(d, s, n);
    return d;
}

int pf_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pf_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = pf_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = pf_realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        pf_error("error reading '%s'", path);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int pf_fsync_path(const char *path, bool is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        pf_error("cannot fsync '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

// rename(2), or with `keep` one that never replaces an existing path: renameat2's
// RENAME_NOREPLACE, atomic; filesystems without it (EINVAL) get link(), which fails on an
// existing name just the same, then the temporary's name is dropped.
static int move_into_place(const char *tmp, const char *path, bool keep) {
    if (!keep) return rename(tmp, path);
    int rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        rc = link(tmp, path);
        if (rc == 0) unlink(tmp);
    }
    return rc;
}

// fsync the temporary, move it onto path, fsync the directory so the move is durable.
static int durable_move(const char *tmp, const char *path, bool keep) {
    if (pf_fsync_path(tmp, false) < 0) return -1;
    if (move_into_place(tmp, path, keep) != 0) {
        if (keep && errno == EEXIST)
            pf_error("'%s' exists (it appeared while this one was written): pixelfly does not "
                     "overwrite it; remove it or write elsewhere", path);
        else
            pf_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        return -1;
    }
    char *dir = pf_strdup(path);
    int rc = pf_fsync_path(dirname(dir), true);
    free(dir);
    return rc;
}

int pf_durable_rename(const char *tmp, const char *path) { return durable_move(tmp, path, false); }
int pf_durable_publish(const char *tmp, const char *path) { return durable_move(tmp, path, true); }

int pf_mkdir_p(const char *path) {
    size_t len = strlen(path);
    if (len == 0) {
        pf_error("cannot create a directory with an empty name");
        return -1;
    }
    char *p = pf_malloc(len + 1);
    memcpy(p, path, len + 1);
    int rc = 0;
    for (char *s = p + 1; rc == 0; s++) {
        if (*s != '/' && *s != 0) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            pf_error("cannot create directory '%s'%s%s%s: %s", path, c ? " (at '" : "",
                     c ? p : "", c ? "')" : "", strerror(errno));
            rc = -1;
        }
        *s = c;
        if (!c) break;
    }
    struct stat st;
    if (rc == 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        pf_error("cannot create directory '%s': a file of that name exists", path);
        rc = -1;
    }
    free(p);
    return rc;
}

double pf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int pf_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *row = pf_malloc((lb + 1) * sizeof *row);
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}
