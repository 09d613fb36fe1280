// train.h: the training loop of `pftrain CONFIG`: data-parallel over the ranks of a
// communicator, with evaluation, metrics, and coordinated checkpoints.
#ifndef PF_TRAIN_H
#define PF_TRAIN_H

#include "comm.h"
#include "config.h"

typedef struct {
    const char *resume;     // NULL, "auto" or a checkpoint path
    const char *config_path;
    bool quiet;             // no live progress line
} pf_train_opts;

// Runs the whole training; returns a PF_EXIT_* code (PF_EXIT_REQUEUE after a save on
// SIGTERM/SIGUSR1). Errors are printed by rank 0 with what to fix.
int pf_train(const pf_config *cfg, const pf_train_opts *opts, pf_comm *comm);

// Picks the backend for `choice` (auto: CUDA when built with it and a GPU is visible).
// NULL with pf_error when cuda is asked for and not available.
const struct pf_backend *pf_select_backend(int choice);

#endif
