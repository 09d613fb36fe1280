// threads.h: the OpenMP thread count and wait policy of a training process, when the user
// has not chosen them. `mpirun -np 8 pftrain CONFIG` starts 8 ranks on one node; OpenMP's
// default (one thread per core, spinning between parallel regions) would then run 8 x cores
// threads that fight for the cores (a step with 2 spinning threads on a shared 2-core machine
// was measured about 4x slower than with 1).
#ifndef PF_THREADS_H
#define PF_THREADS_H

#include <stddef.h>

// When OMP_WAIT_POLICY is unset: sets it to passive and re-executes the program with the
// same arguments (libgomp reads the policy once, when it is loaded, so only a fresh image
// sees it). Call first thing in main, before MPI_Init. Returns only when no re-execution
// happened (the policy was set, or exec failed: then a warning says so).
void pf_threads_passive_reexec(char **argv);

// Threads for one rank when OMP_NUM_THREADS is unset: min(cores in this process's affinity
// mask, online cores / ranks on this node), at least 1, so ranks unbound, bound to cores or
// bound to sockets all share the node's cores without oversubscribing them. Sets it with
// omp_set_num_threads and writes a one-line note for the log into msg. Returns the thread
// count; when OMP_NUM_THREADS is set, leaves it alone, returns OpenMP's count and msg = "".
int pf_threads_pick(int local_ranks, char *msg, size_t msg_len);

#endif
