#include "signals.h"

#include <signal.h>
#include <string.h>

// The one piece of process-wide state the trainer has: set from a signal handler, which can
// reach nothing else.
static volatile sig_atomic_t pf_signal_received;

static void on_signal(int sig) { pf_signal_received = sig; }

void pf_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int pf_signals_pending(void) { return pf_signal_received; }
