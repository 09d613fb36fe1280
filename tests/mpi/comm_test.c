// comm_test.c: smoke test of the communicator under mpirun (tests/mpi/run.sh).
//
//   comm_test mpi|nccl          collectives: all-reduce sum/average (several in flight, odd
//                               sizes, waited for out of order), broadcast, agree, barrier.
//                               Exit 0 when every check passed on every rank.
//   comm_test mpi|nccl abort    the last rank calls pf_comm_abort(code 3): the job must end.
//   comm_test mpi|nccl die      rank 1 kills itself while the others wait in a collective: the
//                               job must end non-zero rather than hang.
// pf_comm_init failing (NCCL without a GPU per rank) prints its message on rank 0, exit 2.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef PF_CUDA
#include <cuda_runtime.h>
#endif

#include "comm.h"
#include "common.h"

typedef struct {
    pf_comm *c;
    int checks, failures;
} ctx;

// One check; on failure names the first wrong element i of a buffer of n.
static void check(ctx *t, int ok, const char *what, size_t n, size_t i, double got, double want) {
    t->checks++;
    if (ok) return;
    t->failures++;
    fprintf(stderr, "rank %d: FAIL %s (n=%zu): element %zu is %g, expected %g\n",
            pf_comm_rank(t->c), what, n, i, got, want);
}

// Buffers on the communicator's device; staged through the host for filling and checking.
static void *dev_alloc(ctx *t, size_t bytes) {
#ifdef PF_CUDA
    if (pf_comm_device(t->c) == PF_DEV_CUDA) {
        void *p;
        if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) PF_FATAL("cudaMalloc %zu", bytes);
        return p;
    }
#endif
    (void)t;
    return pf_malloc(bytes);
}

static void dev_free(ctx *t, void *p) {
#ifdef PF_CUDA
    if (pf_comm_device(t->c) == PF_DEV_CUDA) {
        cudaFree(p);
        return;
    }
#endif
    (void)t;
    free(p);
}

// dir > 0: host -> device; dir < 0: device -> host.
static void copy(ctx *t, void *dst, const void *src, size_t bytes, int dir) {
#ifdef PF_CUDA
    if (pf_comm_device(t->c) == PF_DEV_CUDA) {
        if (cudaMemcpy(dst, src, bytes, dir > 0 ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost) !=
            cudaSuccess)
            PF_FATAL("cudaMemcpy %zu", bytes);
        return;
    }
#endif
    (void)t;
    (void)dir;
    memcpy(dst, src, bytes);
}

static const size_t sizes[] = {0, 1, 7, 1023, 65537, 1000003};
#define NSIZES (sizeof sizes / sizeof sizes[0])

// Rank r contributes (r + 1) * (i % 251): sums are exact in fp32.
static float contribution(int rank, size_t i) { return (float)(rank + 1) * (float)(i % 251); }

// All sizes in flight at once, waited for in reverse order (one of them polled first).
static void test_allreduce(ctx *t, bool average) {
    int rank = pf_comm_rank(t->c), world = pf_comm_world(t->c);
    float *dev[NSIZES], *host = pf_malloc(sizeof(float) * sizes[NSIZES - 1]);
    pf_comm_request req[NSIZES];
    for (size_t s = 0; s < NSIZES; s++) {
        for (size_t i = 0; i < sizes[s]; i++) host[i] = contribution(rank, i);
        dev[s] = dev_alloc(t, sizeof(float) * sizes[s]);
        copy(t, dev[s], host, sizeof(float) * sizes[s], 1);
        if (average) pf_comm_allreduce_average_async(t->c, dev[s], sizes[s], &req[s]);
        else pf_comm_allreduce_sum_async(t->c, dev[s], sizes[s], &req[s]);
    }
    for (int spin = 0; spin < 1000000 && !pf_comm_test(&req[2]); spin++) continue;
    for (size_t s = NSIZES; s-- > 0;) {
        pf_comm_wait(&req[s]);
        t->checks++;
        if (req[s].comm) t->failures++;  // wait clears the request
        copy(t, host, dev[s], sizeof(float) * sizes[s], -1);
        double ranks = (double)world * (world + 1) / 2, want = 0;
        size_t i = 0;
        for (; i < sizes[s]; i++) {
            want = ranks * (double)(i % 251) / (average ? world : 1);
            if (average ? fabs(host[i] - want) > 1e-6 * fabs(want) : host[i] != want) break;
        }
        check(t, i == sizes[s], average ? "allreduce average" : "allreduce sum", sizes[s], i,
              i < sizes[s] ? host[i] : 0, want);
        dev_free(t, dev[s]);
    }
    pf_comm_request idle = {0};
    pf_comm_wait(&idle);  // nothing in flight: returns at once
    free(host);
}

static void test_broadcast(ctx *t, bool on_device) {
    int rank = pf_comm_rank(t->c), world = pf_comm_world(t->c);
    const size_t lens[] = {13, 3 * 1024 * 1024 + 5};
    for (int root = 0; root < world; root += world > 1 ? world - 1 : 1) {
        for (size_t k = 0; k < 2; k++) {
            size_t n = lens[k];
            unsigned char *host = pf_malloc(n);
            for (size_t i = 0; i < n; i++)
                host[i] = rank == root ? (unsigned char)(root * 31 + i * 7) : 0;
            void *buf = on_device ? dev_alloc(t, n) : host;
            if (on_device) {
                copy(t, buf, host, n, 1);
                pf_comm_broadcast(t->c, buf, n, root);
                copy(t, host, buf, n, -1);
                dev_free(t, buf);
            } else {
                pf_comm_broadcast_host(t->c, buf, n, root);
            }
            size_t i = 0;
            while (i < n && host[i] == (unsigned char)(root * 31 + i * 7)) i++;
            check(t, i == n, on_device ? "broadcast" : "broadcast_host", n, i,
                  i < n ? host[i] : 0, (unsigned char)(root * 31 + i * 7));
            free(host);
        }
    }
}

static void test_agree(ctx *t) {
    int rank = pf_comm_rank(t->c), world = pf_comm_world(t->c);
    int got = pf_comm_agree_max_int(t->c, 3 * rank);
    check(t, got == 3 * (world - 1), "agree_max_int", 1, 0, got, 3 * (world - 1));
    got = pf_comm_agree_max_int(t->c, rank == world - 1);  // one rank raises a flag
    check(t, got == 1, "agree_max_int flag", 1, 0, got, 1);
    got = pf_comm_agree_max_int(t->c, -rank);
    check(t, got == 0, "agree_max_int negative", 1, 0, got, 0);
}

static void test_ranks(ctx *t) {
    const char *env = getenv("OMPI_COMM_WORLD_SIZE");
    int world = pf_comm_world(t->c), want = env ? atoi(env) : 1;
    check(t, world == want, "world size", 0, 0, world, want);
    // Every test job runs on one node.
    check(t, pf_comm_local_size(t->c) == world, "local size", 0, 0, pf_comm_local_size(t->c),
          world);
    check(t, pf_comm_local_rank(t->c) == pf_comm_rank(t->c), "local rank", 0, 0,
          pf_comm_local_rank(t->c), pf_comm_rank(t->c));
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "mpi") && strcmp(argv[1], "nccl"))) {
        fprintf(stderr, "usage: comm_test mpi|nccl [abort|die]\n");
        return PF_EXIT_USAGE;
    }
    pf_comm_kind kind = strcmp(argv[1], "mpi") ? PF_COMM_NCCL : PF_COMM_MPI;
    const char *mode = argc > 2 ? argv[2] : "collectives";
    pf_comm *c;
    if (pf_comm_init(&argc, &argv, kind, &c)) {
        if (pf_comm_rank(c) == 0) fprintf(stderr, "pf_comm_init: %s\n", pf_errmsg());
        pf_comm_finalize(c);
        return PF_EXIT_USAGE;
    }
    ctx t = {.c = c};
    int rank = pf_comm_rank(c), world = pf_comm_world(c);
    if (!strcmp(mode, "abort")) {
        pf_comm_barrier(c);
        if (rank == world - 1) pf_comm_abort(c, 3, "comm_test: deliberate abort");
        pf_comm_agree_max_int(c, 0);  // the others wait here until the job is torn down
        fprintf(stderr, "rank %d: FAIL the job survived an abort\n", rank);
        return PF_EXIT_FAILURE;
    }
    if (!strcmp(mode, "die")) {
        pf_comm_barrier(c);
        if (rank == 1 % world) raise(SIGKILL);
        pf_comm_agree_max_int(c, 0);
        for (int i = 0; i < 60; i++) sleep(1);  // a late teardown still ends the job
        fprintf(stderr, "rank %d: FAIL the job survived a dead peer\n", rank);
        return PF_EXIT_FAILURE;
    }
    test_ranks(&t);
    test_allreduce(&t, false);
    test_allreduce(&t, true);
    test_broadcast(&t, true);
    test_broadcast(&t, false);
    test_agree(&t);
    pf_comm_barrier(c);
    int failed = pf_comm_agree_max_int(c, t.failures > 0);
    if (rank == 0)
        printf("comm_test %s np=%d: %d checks per rank, %s\n", pf_comm_name(c), world, t.checks,
               failed ? "FAILED" : "all passed");
    pf_comm_finalize(c);
    return failed ? PF_EXIT_FAILURE : PF_EXIT_OK;
}
