// comm_mpi.c: communicator set-up (always MPI) and the MPI collectives on host buffers.
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"
#include "common.h"

// MPI counts are int: a larger broadcast goes in pieces of this many bytes.
#define PF_COMM_BCAST_PIECE ((size_t)1 << 30)

// The rank for messages, when it can be asked for (MPI up and not yet finalized); else -1.
static int world_rank_or_minus1(void) {
    int up = 0, down = 0, rank = -1;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static void __attribute__((noreturn)) abort_job(int code) {
    int up = 0, down = 0;
    fflush(stdout);
    fflush(stderr);
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

// "pftrain[rank 3@node2]" once pf_comm_init has recorded the rank in the runtime context (or a
// singleton's "pftrain"); before that "pixelfly: rank R" (R -1 when MPI is not up).
static void print_prefix(void) {
    char prefix[128];
    if (pf_runtime()->rank >= 0) fprintf(stderr, "%s: ", pf_runtime_prefix(prefix, sizeof prefix));
    else fprintf(stderr, "%s: rank %d: ", pf_runtime()->tool, world_rank_or_minus1());
}

void pf_comm_fail_at(const char *file, int line, const char *call, const char *err) {
    fflush(stdout);
    print_prefix();
    fprintf(stderr, "fatal at %s:%d: %s: %s\n", file, line, call, err);
    abort_job(PF_EXIT_FAILURE);
}

void pf_comm_abort(const pf_comm *c, int code, const char *fmt, ...) {
    va_list ap;
    (void)c;
    fflush(stdout);
    print_prefix();
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort_job(code);
}

// ---- MPI collectives on host buffers ----

typedef struct {
    MPI_Request req;
    float *buf;  // [n], scaled by 1/world at completion for an average
    size_t n;
    bool average;
} mpi_op;

static void mpi_allreduce(pf_comm *c, float *buf, size_t n, bool average, pf_comm_request *req) {
    PF_ASSERT(n <= INT_MAX);  // 8 GiB of fp32 per call; split the buffer beyond that
    mpi_op *op = pf_malloc(sizeof *op);
    *op = (mpi_op){.buf = buf, .n = n, .average = average};
    PF_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->mpi, &op->req));
    req->op = op;
}

static void mpi_wait(pf_comm *c, void *p) {
    mpi_op *op = p;
    PF_MPI_CHECK(MPI_Wait(&op->req, MPI_STATUS_IGNORE));
    if (op->average) {
        float w = (float)c->world;
        for (size_t i = 0; i < op->n; i++) op->buf[i] /= w;
    }
    free(op);
}

static bool mpi_test(pf_comm *c, void *p) {
    (void)c;
    mpi_op *op = p;
    int done = 0;
    // MPI_Test would free a completed request; get_status leaves it for MPI_Wait.
    PF_MPI_CHECK(MPI_Request_get_status(op->req, &done, MPI_STATUS_IGNORE));
    return done != 0;
}

static void mpi_broadcast(pf_comm *c, void *buf, size_t bytes, int root) {
    for (size_t off = 0; off < bytes; off += PF_COMM_BCAST_PIECE) {
        size_t len = bytes - off < PF_COMM_BCAST_PIECE ? bytes - off : PF_COMM_BCAST_PIECE;
        PF_MPI_CHECK(MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, c->mpi));
    }
}

static void mpi_set_stream(pf_comm *c, void *cuda_stream) {
    (void)c;
    (void)cuda_stream;
}

static void mpi_destroy(pf_comm *c) { (void)c; }

static const pf_comm_ops mpi_ops = {
    .name = "mpi",
    .device = PF_DEV_CPU,
    .allreduce = mpi_allreduce,
    .wait = mpi_wait,
    .test = mpi_test,
    .broadcast = mpi_broadcast,
    .set_stream = mpi_set_stream,
    .destroy = mpi_destroy,
};

// ---- set-up ----

int pf_comm_agree_on_error(pf_comm *c, int failed) {
    int first = failed ? c->rank : c->world;
    PF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, c->mpi));
    if (first == c->world) return 0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pf_errmsg());
    PF_MPI_CHECK(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, c->mpi));
    pf_error("%s", msg);
    return -1;
}

static int setup_kind(pf_comm *c, pf_comm_kind kind) {
    if (kind == PF_COMM_MPI) return 0;
#ifdef PF_CUDA
    return pf_comm_nccl_setup(c);
#else
    (void)c;
    pf_error("comm=nccl: this build has no CUDA (built with CUDA=0 or without nvcc); "
             "use the MPI communicator (backend=cpu / comm=mpi)");
    return -1;
#endif
}

int pf_comm_init(int *argc, char ***argv, pf_comm_kind kind, pf_comm **out) {
    pf_comm *c = pf_calloc(1, sizeof *c);
    int up = 0;
    MPI_Initialized(&up);
    if (!up) {
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) pf_comm_fail_at(__FILE__, __LINE__, "MPI_Init_thread", "failed");
        if (provided < MPI_THREAD_FUNNELED)
            pf_comm_fail_at(__FILE__, __LINE__, "MPI_Init_thread",
                            "the MPI library does not provide MPI_THREAD_FUNNELED");
        c->owns_mpi = true;
    }
    PF_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    PF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi));
    PF_MPI_CHECK(MPI_Comm_rank(c->mpi, &c->rank));
    PF_MPI_CHECK(MPI_Comm_size(c->mpi, &c->world));
    PF_MPI_CHECK(MPI_Comm_split_type(c->mpi, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                     &c->node));
    PF_MPI_CHECK(MPI_Comm_rank(c->node, &c->local_rank));
    PF_MPI_CHECK(MPI_Comm_size(c->node, &c->local_size));
    pf_runtime_set_rank(c->rank, c->world);  // from now on, messages name the rank and host
    c->ops = &mpi_ops;
    c->kind = PF_COMM_MPI;
    c->cuda_device = -1;
    *out = c;
    return pf_comm_agree_on_error(c, setup_kind(c, kind) != 0);
}

void pf_comm_finalize(pf_comm *c) {
    if (!c) return;
    c->ops->destroy(c);
    PF_MPI_CHECK(MPI_Comm_free(&c->node));
    PF_MPI_CHECK(MPI_Comm_free(&c->mpi));
    if (c->owns_mpi) PF_MPI_CHECK(MPI_Finalize());
    free(c);
}

// ---- the public interface ----

pf_comm_kind pf_comm_kind_of(const pf_comm *c) { return c->kind; }
const char *pf_comm_name(const pf_comm *c) { return c->ops->name; }
pf_device pf_comm_device(const pf_comm *c) { return c->ops->device; }
int pf_comm_rank(const pf_comm *c) { return c->rank; }
int pf_comm_world(const pf_comm *c) { return c->world; }
int pf_comm_local_rank(const pf_comm *c) { return c->local_rank; }
int pf_comm_local_size(const pf_comm *c) { return c->local_size; }
int pf_comm_cuda_device(const pf_comm *c) { return c->cuda_device; }

void pf_comm_set_compute_stream(pf_comm *c, void *cuda_stream) {
    c->ops->set_stream(c, cuda_stream);
}

void pf_comm_allreduce_sum_async(pf_comm *c, float *buf, size_t n, pf_comm_request *req) {
    req->comm = c;
    c->ops->allreduce(c, buf, n, false, req);
}

void pf_comm_allreduce_average_async(pf_comm *c, float *buf, size_t n, pf_comm_request *req) {
    req->comm = c;
    c->ops->allreduce(c, buf, n, true, req);
}

void pf_comm_wait(pf_comm_request *req) {
    if (!req->comm) return;
    req->comm->ops->wait(req->comm, req->op);
    *req = (pf_comm_request){0};
}

bool pf_comm_test(pf_comm_request *req) {
    if (!req->comm) return true;
    return req->comm->ops->test(req->comm, req->op);
}

void pf_comm_broadcast(pf_comm *c, void *buf, size_t bytes, int root) {
    c->ops->broadcast(c, buf, bytes, root);
}

void pf_comm_broadcast_host(pf_comm *c, void *buf, size_t bytes, int root) {
    mpi_broadcast(c, buf, bytes, root);
}

void pf_comm_gather_host(pf_comm *c, const void *mine, size_t bytes, void *all, int root) {
    PF_ASSERT(bytes <= INT32_MAX);
    PF_MPI_CHECK(MPI_Gather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, root, c->mpi));
}

void pf_comm_barrier(pf_comm *c) { PF_MPI_CHECK(MPI_Barrier(c->mpi)); }

int pf_comm_agree_max_int(pf_comm *c, int v) {
    PF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, c->mpi));
    return v;
}
