// comm_nccl.c: the NCCL collectives on device buffers, one GPU per rank. Compiled only in
// CUDA builds (the Makefile adds -DPF_CUDA when nvcc is present).
#ifdef PF_CUDA

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"
#include "common.h"

#define PF_CUDA_CHECK(call)                                                                \
    do {                                                                                   \
        cudaError_t pf_cuda_rc_ = (call);                                                  \
        if (pf_cuda_rc_ != cudaSuccess)                                                    \
            pf_comm_fail_at(__FILE__, __LINE__, #call, cudaGetErrorString(pf_cuda_rc_));   \
    } while (0)

#define PF_NCCL_CHECK(call)                                                                \
    do {                                                                                   \
        ncclResult_t pf_nccl_rc_ = (call);                                                 \
        if (pf_nccl_rc_ != ncclSuccess)                                                    \
            pf_comm_fail_at(__FILE__, __LINE__, #call, ncclGetErrorString(pf_nccl_rc_));   \
    } while (0)

typedef struct {
    ncclComm_t nccl;
    cudaStream_t stream;   // the communicator's own stream: collectives overlap compute
    cudaStream_t compute;  // the caller's stream (NULL: the legacy default stream)
    cudaEvent_t ready;     // recorded on `compute` before each collective
    cudaEvent_t *idle;     // completion events free for reuse: [nidle]
    int nidle, cap;
} nccl_state;

static cudaEvent_t take_event(nccl_state *s) {
    if (s->nidle > 0) return s->idle[--s->nidle];
    cudaEvent_t ev;
    PF_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    return ev;
}

static void give_event(nccl_state *s, cudaEvent_t ev) {
    if (s->nidle == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->idle = pf_realloc(s->idle, (size_t)s->cap * sizeof *s->idle);
    }
    s->idle[s->nidle++] = ev;
}

// The communicator's stream waits for the work the caller already queued on its stream.
static void after_compute(nccl_state *s) {
    PF_CUDA_CHECK(cudaEventRecord(s->ready, s->compute));
    PF_CUDA_CHECK(cudaStreamWaitEvent(s->stream, s->ready, 0));
}

static void nccl_allreduce(pf_comm *c, float *buf, size_t n, bool average, pf_comm_request *req) {
    nccl_state *s = c->impl;
    cudaEvent_t done = take_event(s);
    after_compute(s);
    PF_NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, average ? ncclAvg : ncclSum, s->nccl,
                                s->stream));
    PF_CUDA_CHECK(cudaEventRecord(done, s->stream));
    req->op = done;
}

// The compute stream waits for the collective; the host does not. A reused event is safe:
// cudaStreamWaitEvent captures the record that is current when it is called.
static void nccl_wait(pf_comm *c, void *op) {
    nccl_state *s = c->impl;
    cudaEvent_t done = op;
    PF_CUDA_CHECK(cudaStreamWaitEvent(s->compute, done, 0));
    give_event(s, done);
}

static bool nccl_test(pf_comm *c, void *op) {
    (void)c;
    cudaError_t rc = cudaEventQuery((cudaEvent_t)op);
    if (rc == cudaErrorNotReady) return false;
    PF_CUDA_CHECK(rc);
    return true;
}

static void nccl_broadcast(pf_comm *c, void *buf, size_t bytes, int root) {
    nccl_state *s = c->impl;
    after_compute(s);
    PF_NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclChar, root, s->nccl, s->stream));
    PF_CUDA_CHECK(cudaStreamSynchronize(s->stream));
}

static void nccl_set_stream(pf_comm *c, void *cuda_stream) {
    nccl_state *s = c->impl;
    s->compute = (cudaStream_t)cuda_stream;
}

static void nccl_destroy(pf_comm *c) {
    nccl_state *s = c->impl;
    PF_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    PF_NCCL_CHECK(ncclCommDestroy(s->nccl));
    for (int i = 0; i < s->nidle; i++) PF_CUDA_CHECK(cudaEventDestroy(s->idle[i]));
    PF_CUDA_CHECK(cudaEventDestroy(s->ready));
    PF_CUDA_CHECK(cudaStreamDestroy(s->stream));
    free(s->idle);
    free(s);
    c->impl = NULL;
}

static const pf_comm_ops nccl_ops = {
    .name = "nccl",
    .device = PF_DEV_CUDA,
    .allreduce = nccl_allreduce,
    .wait = nccl_wait,
    .test = nccl_test,
    .broadcast = nccl_broadcast,
    .set_stream = nccl_set_stream,
    .destroy = nccl_destroy,
};

#define PF_BUS_ID_LEN 32
#define PF_USE_MPI_HINT "use the MPI communicator (backend=cpu / comm=mpi)"

// Picks this rank's GPU: local_rank when the node's GPUs are all visible, device 0 when each
// rank sees only its own (Slurm --gpus-per-task=1). Then checks over the node that no two
// ranks got the same physical GPU (by PCI bus id). Returns the device or -1 with pf_error().
// A collective over the node communicator, even on a rank that already failed.
static int pick_device(pf_comm *c) {
    int ndev = 0, dev = -1;
    char bus[PF_BUS_ID_LEN] = "";
    cudaError_t rc = cudaGetDeviceCount(&ndev);
    if (rc != cudaSuccess || ndev == 0) {
        pf_error("comm=nccl: rank %d sees no CUDA GPU (%s); %s", c->rank,
                 rc != cudaSuccess ? cudaGetErrorString(rc) : "device count 0", PF_USE_MPI_HINT);
        (void)cudaGetLastError();
    } else if (ndev < c->local_size && ndev > 1) {
        pf_error("comm=nccl needs one GPU per rank: %d ranks run on this node but it has %d "
                 "visible GPUs; start at most %d ranks per node, or %s",
                 c->local_size, ndev, ndev, PF_USE_MPI_HINT);
    } else {
        dev = ndev >= c->local_size ? c->local_rank : 0;
        PF_CUDA_CHECK(cudaSetDevice(dev));
        PF_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, PF_BUS_ID_LEN, dev));
    }
    char *all = pf_malloc((size_t)c->local_size * PF_BUS_ID_LEN);  // [local_size][32]
    PF_MPI_CHECK(MPI_Allgather(bus, PF_BUS_ID_LEN, MPI_CHAR, all, PF_BUS_ID_LEN, MPI_CHAR,
                               c->node));
    for (int r = 0; r < c->local_size && dev >= 0; r++) {
        if (r == c->local_rank || strcmp(all + (size_t)r * PF_BUS_ID_LEN, bus)) continue;
        pf_error("comm=nccl needs one GPU per rank: local ranks %d and %d of this node would "
                 "share GPU %s (%d ranks on the node, %d visible GPU(s)); start one rank per "
                 "GPU, or %s",
                 r < c->local_rank ? r : c->local_rank, r < c->local_rank ? c->local_rank : r,
                 bus, c->local_size, ndev, PF_USE_MPI_HINT);
        dev = -1;
    }
    free(all);
    return dev;
}

int pf_comm_nccl_setup(pf_comm *c) {
    int dev = pick_device(c);
    if (pf_comm_agree_on_error(c, dev < 0)) return -1;

    ncclUniqueId id;
    if (c->rank == 0) PF_NCCL_CHECK(ncclGetUniqueId(&id));
    PF_MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->mpi));

    nccl_state *s = pf_calloc(1, sizeof *s);
    PF_NCCL_CHECK(ncclCommInitRank(&s->nccl, c->world, id, c->rank));
    PF_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    PF_CUDA_CHECK(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming));
    c->impl = s;
    c->ops = &nccl_ops;
    c->kind = PF_COMM_NCCL;
    c->cuda_device = dev;
    return 0;
}

#endif
