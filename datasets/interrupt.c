// interrupt.c: pfdata's SIGINT/SIGTERM handler, which removes the output's temporary file
// (interrupt.h).
#include "interrupt.h"

#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

// The temporary file a signal removes. File-scope because a signal handler can reach nothing
// else; only pf_interrupt_track/untrack write it, and they clear `armed` before touching the
// path, so the handler never reads a half-written one.
static struct {
    volatile sig_atomic_t armed;  // path[0, len) names a file to remove
    size_t len;
    char path[PATH_MAX];
} pfdata_interrupt_tmp;

void pf_interrupt_track(const char *tmp_path) {
    pfdata_interrupt_tmp.armed = 0;
    atomic_signal_fence(memory_order_seq_cst);
    size_t len = tmp_path ? strlen(tmp_path) : 0;
    if (!len || len >= sizeof pfdata_interrupt_tmp.path) return;
    memcpy(pfdata_interrupt_tmp.path, tmp_path, len + 1);
    pfdata_interrupt_tmp.len = len;
    atomic_signal_fence(memory_order_seq_cst);
    pfdata_interrupt_tmp.armed = 1;
}

void pf_interrupt_untrack(const char *tmp_path) {
    if (pfdata_interrupt_tmp.armed && tmp_path && !strcmp(pfdata_interrupt_tmp.path, tmp_path))
        pfdata_interrupt_tmp.armed = 0;
}

// write() until done or failed: a message from a signal handler has no other way out.
static void write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k <= 0) return;
        s += k, n -= (size_t)k;
    }
}

int pf_interrupt_cleanup(int fd) {
    int removed = 0;
    if (pfdata_interrupt_tmp.armed) {
        pfdata_interrupt_tmp.armed = 0;
        atomic_signal_fence(memory_order_seq_cst);
        removed = unlink(pfdata_interrupt_tmp.path) == 0;
    }
    if (fd < 0) return removed;
    static const char head[] = "pfdata: interrupted", tail[] = "; removed ";
    write_all(fd, head, sizeof head - 1);
    if (removed) {
        write_all(fd, tail, sizeof tail - 1);
        write_all(fd, pfdata_interrupt_tmp.path, pfdata_interrupt_tmp.len);
    }
    write_all(fd, "\n", 1);
    return removed;
}

static void on_interrupt(int sig) {
    pf_interrupt_cleanup(STDERR_FILENO);
    _exit(128 + sig);  // 130 for SIGINT, 143 for SIGTERM, as a shell reports a killed job
}

void pf_interrupt_begin(pf_interrupt_saved *saved) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);  // one signal at a time: the second waits for the _exit
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, &saved->sigint);
    sigaction(SIGTERM, &sa, &saved->sigterm);
}

void pf_interrupt_end(const pf_interrupt_saved *saved) {
    sigaction(SIGINT, &saved->sigint, NULL);
    sigaction(SIGTERM, &saved->sigterm, NULL);
    pfdata_interrupt_tmp.armed = 0;
}
