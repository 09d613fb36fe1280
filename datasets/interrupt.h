// interrupt.h: what Ctrl-C (SIGINT) and SIGTERM do while pfdata converts: remove the output's
// temporary file (OUT.tmp.PID), say so on stderr ("pfdata: interrupted; removed OUT.tmp.PID")
// and exit with 128 + the signal (130 for SIGINT, 143 for SIGTERM), so that no half-written
// temporary is left behind.
//
// The commands (text_cmd.c, images_cmd.c) install the handler for the conversion's duration;
// the shard writers (text_shard.c, image_shard.c) name their temporary before creating it and
// forget it once it is renamed or removed. Naming a temporary does nothing more than record
// it, so the writers can be used (tests, other programs) without the handler.
#ifndef PF_INTERRUPT_H
#define PF_INTERRUPT_H

#include <signal.h>

// The dispositions pf_interrupt_begin replaced.
typedef struct {
    struct sigaction sigint, sigterm;
} pf_interrupt_saved;

// Installs the SIGINT and SIGTERM handler; *saved keeps the previous dispositions.
void pf_interrupt_begin(pf_interrupt_saved *saved);
// Restores them and forgets any tracked temporary.
void pf_interrupt_end(const pf_interrupt_saved *saved);

// The file the handler removes from now on (one at a time: the latest named). A path longer
// than the handler's buffer (PATH_MAX) is not tracked.
void pf_interrupt_track(const char *tmp_path);
// Forgets tmp_path if it is the tracked file (a later writer's file stays tracked).
void pf_interrupt_untrack(const char *tmp_path);

// The handler's work before it exits, async-signal-safe (unlink and write only): removes the
// tracked temporary and writes "pfdata: interrupted; removed PATH\n" to fd (just
// "pfdata: interrupted\n" when nothing was removed; fd < 0 writes nothing). Returns 1 when a
// file was removed, else 0. The tracked path is forgotten either way.
int pf_interrupt_cleanup(int fd);

#endif
