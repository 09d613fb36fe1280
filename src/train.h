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
    // --new-run: start a new run even though run.out_dir holds one; the old run's files are
    // moved into run.out_dir/previous-N first (without it such a run is refused, exit 2).
    bool new_run;
} pf_train_opts;

// Runs the whole training; returns a PF_EXIT_* code, the same on every rank: PF_EXIT_REQUEUE
// after a save on SIGTERM/SIGUSR1; PF_EXIT_USAGE when the run directory's state forbids the
// start (a run there and no --resume/--new-run; checkpoints that cannot be resumed under this
// config); PF_EXIT_FAILURE on a runtime failure, divergence included (caught before the update,
// so no checkpoint holds it). Job-wide errors are printed by rank 0, a rank's own failure by
// that rank, prefixed with its rank and host (pf_report).
int pf_train(const pf_config *cfg, const pf_train_opts *opts, pf_comm *comm);

// Picks the backend for `choice` (auto: CUDA when built with it and a GPU is visible).
// NULL with pf_error when cuda is asked for and not available.
const struct pf_backend *pf_select_backend(int choice);

#endif
