// comm.h: the communicator. Every rank runs the same program; this is how they talk.
//
// Two implementations behind one opaque `pf_comm`:
//   PF_COMM_MPI   buffers on the host (the CPU backend): MPI_Iallreduce, MPI_Bcast.
//   PF_COMM_NCCL  buffers on the GPU (the CUDA backend): one GPU per rank on a node
//                 (cudaSetDevice(local_rank)), ncclAllReduce on the communicator's own CUDA
//                 stream so that gradient reduction overlaps the backward pass. MPI is still
//                 there underneath: it starts the job, carries the ncclUniqueId and does the
//                 host-side agreements (agree_max_int, barrier, broadcast_host).
//
// A single process started without mpirun works (MPI singleton init): world = 1.
//
// Failure model:
//   - Every MPI, NCCL and CUDA call is checked; a failure prints "rank R: file:line: call:
//     error string" and calls MPI_Abort, which ends every rank of the job.
//   - MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so an MPI call that notices a broken peer
//     returns an error (reported and aborted as above) instead of the default handler's
//     silent abort.
//   - A peer that dies (killed, segfault) without MPI_Finalize: Open MPI's mpirun notices
//     the lost process and kills the remaining ranks (SIGTERM, then SIGKILL) and exits
//     non-zero, so survivors blocked in a collective do not hang. tests/mpi/run.sh checks
//     that the job ends non-zero within a bounded time. NCCL collectives already queued on
//     the GPU cannot notice a dead peer themselves; the same mpirun teardown ends them.
//   - Configuration errors found while setting up (NCCL asked for but two ranks would share
//     a GPU, or no GPU, or a CPU-only build) are agreed on by all ranks: pf_comm_init returns
//     -1 on every rank with the same message, so the job can exit cleanly.
#ifndef PF_COMM_H
#define PF_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

typedef enum { PF_COMM_MPI, PF_COMM_NCCL } pf_comm_kind;

typedef struct pf_comm pf_comm;

// One all-reduce in flight. Owned by the caller (a stack or struct member); filled by the
// *_async call, completed and cleared by pf_comm_wait. A cleared request (all zero) is
// "nothing in flight": waiting on it returns at once.
typedef struct {
    pf_comm *comm;
    void *op;  // the implementation's in-flight operation
} pf_comm_request;

// Initializes MPI (MPI_Init_thread, FUNNELED: only the main thread calls MPI; skipped when
// the caller already initialized MPI) and the communicator of `kind`. Returns 0 with *out
// set, or -1 with pf_error() set identically on every rank when `kind` cannot be set up; in
// that case *out is still a host (MPI) communicator, good for pf_comm_rank() and
// pf_comm_finalize(), so the caller can print the message on rank 0 and exit.
int pf_comm_init(int *argc, char ***argv, pf_comm_kind kind, pf_comm **out);
// Waits for nothing: the caller waits for its requests first. Frees the communicator and
// finalizes MPI if pf_comm_init initialized it.
void pf_comm_finalize(pf_comm *c);

pf_comm_kind pf_comm_kind_of(const pf_comm *c);
const char *pf_comm_name(const pf_comm *c);   // "mpi" or "nccl"
pf_device pf_comm_device(const pf_comm *c);   // where the all-reduce/broadcast buffers live
int pf_comm_rank(const pf_comm *c);
int pf_comm_world(const pf_comm *c);
int pf_comm_local_rank(const pf_comm *c);     // rank among the ranks of this node
int pf_comm_local_size(const pf_comm *c);
int pf_comm_cuda_device(const pf_comm *c);    // the GPU this rank uses (NCCL), else -1

// NCCL only (ignored by MPI): the cudaStream_t on which the caller produces and consumes the
// reduced buffers (NULL: the legacy default stream). An all-reduce first waits for the work
// already queued on it; pf_comm_wait makes it wait for the all-reduce, without blocking the
// host.
void pf_comm_set_compute_stream(pf_comm *c, void *cuda_stream);

// In-place all-reduce of buf[n] (floats on pf_comm_device()), sum or average over ranks.
// Starts the reduction and returns; the buffer must not be touched until pf_comm_wait(req).
// Several may be in flight at once and be waited for in any order.
void pf_comm_allreduce_sum_async(pf_comm *c, float *buf, size_t n, pf_comm_request *req);
void pf_comm_allreduce_average_async(pf_comm *c, float *buf, size_t n, pf_comm_request *req);
// MPI: returns when the result is in buf. NCCL: returns at once; work queued afterwards on the
// compute stream sees the result.
void pf_comm_wait(pf_comm_request *req);
// Lets an in-flight MPI reduction progress (Open MPI advances non-blocking collectives only
// inside MPI calls); true when it has completed (then pf_comm_wait is still required).
bool pf_comm_test(pf_comm_request *req);

// Blocking broadcast of `bytes` bytes from `root`: on pf_comm_device() (initial parameters),
// or always on the host (seeds, config text).
void pf_comm_broadcast(pf_comm *c, void *buf, size_t bytes, int root);
void pf_comm_broadcast_host(pf_comm *c, void *buf, size_t bytes, int root);
// Host bytes from every rank to `root`: all[r * bytes ...] holds rank r's (all: [world, bytes]
// on root, ignored elsewhere).
void pf_comm_gather_host(pf_comm *c, const void *mine, size_t bytes, void *all, int root);
void pf_comm_barrier(pf_comm *c);
// Every rank passes a value and every rank gets the maximum. For agreements such as "some
// rank got SIGTERM: everyone saves" (any 1 wins) and "every rank saved" (agree on a failure
// flag).
int pf_comm_agree_max_int(pf_comm *c, int v);

// Prints "TOOL[rank R@HOST]: <message>" on stderr (the runtime context's prefix, common.h;
// "TOOL: " in a singleton) and ends every rank of the job with exit code `code` (MPI_Abort).
// `c` may be NULL (before or without a communicator).
void pf_comm_abort(const pf_comm *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#endif
