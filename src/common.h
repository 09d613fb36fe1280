// common.h: error reporting, checked allocation and I/O, assertions that stay on.
//
// Two kinds of failure, two mechanisms:
//   - internal invariants (a shape mismatch between two ops we wrote): PF_ASSERT, which
//     stays on in release builds and names file:line;
//   - user mistakes and environment failures (bad config, missing file, full disk): the
//     function returns -1 after pf_error() recorded a message naming what is wrong and
//     how to fix it; the caller decides whether to print and exit.
#ifndef PF_COMMON_H
#define PF_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PF_VERSION "0.1.0"

// Exit codes of the command-line tools (documented in README.md).
enum {
    PF_EXIT_OK = 0,
    PF_EXIT_FAILURE = 1,   // runtime failure: I/O error, corrupt data, divergence
    PF_EXIT_USAGE = 2,     // bad command line or configuration
    PF_EXIT_REQUEUE = 75,  // saved a checkpoint on SIGTERM/SIGUSR1: requeue the job (EX_TEMPFAIL)
};

// ---- runtime context: who this process is, for the first words of its error messages ----
// The tool ("pixelfly" until a main names itself) and, once a communicator is up, the rank, the
// job's size and the host. One per process, set at start-up by the main (tool) and pf_comm_init
// (rank), read by every message that ends a process or reports one rank's own failure.
typedef struct {
    const char *tool;  // a string literal, kept by pointer
    int rank;          // -1 until pf_runtime_set_rank
    int world;
    char host[64];
} pf_runtime_context;

void pf_runtime_set_tool(const char *tool);
void pf_runtime_set_rank(int rank, int world);  // also records the host name
const pf_runtime_context *pf_runtime(void);
// "pftrain[rank 3@node2]" in a job of several ranks, "pftrain" otherwise, into buf; returns buf.
const char *pf_runtime_prefix(char *buf, size_t cap);
// One line on stderr, "PREFIX: message" (stdout is flushed first so the two interleave in order).
void pf_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Prints "PREFIX: fatal at FILE:LINE: message" and aborts (PREFIX as pf_runtime_prefix).
void pf_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define PF_ASSERT(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) pf_fatal_at(__FILE__, __LINE__, "assertion failed: %s", #cond);      \
    } while (0)

#define PF_FATAL(...) pf_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

// Recoverable errors: a per-thread message buffer, set by pf_error(), read by pf_errmsg().
void pf_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *pf_errmsg(void);

// Allocation that never returns NULL (out of host memory is fatal, with the size asked).
#define pf_malloc(n) pf_malloc_at(__FILE__, __LINE__, (n))
#define pf_calloc(n, s) pf_calloc_at(__FILE__, __LINE__, (n), (s))
#define pf_realloc(p, n) pf_realloc_at(__FILE__, __LINE__, (p), (n))
void *pf_malloc_at(const char *file, int line, size_t n);
void *pf_calloc_at(const char *file, int line, size_t n, size_t size);
void *pf_realloc_at(const char *file, int line, void *p, size_t n);
char *pf_strdup(const char *s);

// Whole-file read into a NUL-terminated buffer; -1 and pf_error() on failure.
int pf_read_file(const char *path, char **data, size_t *len);

// fsync of a file or directory by name; -1 with pf_error() naming it.
int pf_fsync_path(const char *path, bool is_dir);
// The last step of every atomic write in pixelfly: fsync the finished temporary file, rename
// it onto `path`, fsync the directory so the rename itself is durable. -1 with pf_error();
// the caller removes `tmp` then.
int pf_durable_rename(const char *tmp, const char *path);
// The same for a file that must never replace another (pfdata's shards: nothing the user made
// is overwritten): fails, naming `path`, when it exists, even if it appeared meanwhile.
int pf_durable_publish(const char *tmp, const char *path);

// mkdir -p: creates the directory `path` and any missing parents (mode 0777 less the umask).
// -1 with pf_error() naming `path` and the component that could not be made, also when
// `path` exists but is not a directory.
int pf_mkdir_p(const char *path);

// Wall-clock seconds (monotonic).
double pf_now(void);

// Levenshtein distance, for "did you mean" suggestions on near-miss names.
int pf_edit_distance(const char *a, const char *b);

#ifdef __cplusplus
}
#endif

#endif
