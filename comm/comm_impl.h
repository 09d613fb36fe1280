// comm_impl.h: what comm_mpi.c and comm_nccl.c share; not for users of comm.h.
#ifndef PF_COMM_IMPL_H
#define PF_COMM_IMPL_H

#include <mpi.h>

#include "comm.h"

// The collectives on the communicator's device buffers; the host-side ones (agree, barrier,
// broadcast_host) are always MPI.
typedef struct {
    const char *name;
    pf_device device;
    void (*allreduce)(pf_comm *c, float *buf, size_t n, bool average, pf_comm_request *req);
    void (*wait)(pf_comm *c, void *op);
    bool (*test)(pf_comm *c, void *op);
    void (*broadcast)(pf_comm *c, void *buf, size_t bytes, int root);
    void (*set_stream)(pf_comm *c, void *cuda_stream);
    void (*destroy)(pf_comm *c);
} pf_comm_ops;

struct pf_comm {
    const pf_comm_ops *ops;
    pf_comm_kind kind;
    int rank, world, local_rank, local_size;
    int cuda_device;     // -1 for MPI
    MPI_Comm mpi;        // a duplicate of MPI_COMM_WORLD (errors return)
    MPI_Comm node;       // the ranks sharing this node's memory
    bool owns_mpi;       // pf_comm_init called MPI_Init_thread, so finalize calls MPI_Finalize
    void *impl;          // the NCCL state
};

// Reports a failed MPI/NCCL/CUDA call with the rank and aborts the job.
void pf_comm_fail_at(const char *file, int line, const char *call, const char *err)
    __attribute__((noreturn));

#define PF_MPI_CHECK(call)                                                          \
    do {                                                                            \
        int pf_mpi_rc_ = (call);                                                    \
        if (pf_mpi_rc_ != MPI_SUCCESS) {                                            \
            char pf_mpi_msg_[MPI_MAX_ERROR_STRING];                                 \
            int pf_mpi_len_ = 0;                                                    \
            MPI_Error_string(pf_mpi_rc_, pf_mpi_msg_, &pf_mpi_len_);                \
            pf_comm_fail_at(__FILE__, __LINE__, #call, pf_mpi_msg_);                \
        }                                                                           \
    } while (0)

// Every rank passes whether its set-up failed (with pf_error() set). When any failed, every
// rank gets the message of the lowest failing rank and -1; else 0. A collective.
int pf_comm_agree_on_error(pf_comm *c, int failed);

#ifdef PF_CUDA
// Agreed across ranks: 0 with c->ops switched to NCCL, or -1 with pf_error() (same text on
// every rank) and c left an MPI communicator.
int pf_comm_nccl_setup(pf_comm *c);
#endif

#endif
