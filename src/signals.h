// signals.h: SIGTERM and SIGUSR1 (Slurm's warning signal) ask for a save-and-exit at the next
// step boundary. The handler only sets a flag; the training loop polls it and all ranks agree.
#ifndef PF_SIGNALS_H
#define PF_SIGNALS_H

void pf_signals_install(void);
int pf_signals_pending(void);  // the signal number received, or 0

#endif
