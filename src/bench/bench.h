// bench.h: pfbench's commands (src/bench/: bench_layers.c, bench_steps.c; src/cli/pfbench.c
// parses the command line and documents each) and the helpers they share (bench.c).
#ifndef PF_BENCH_H
#define PF_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "rng.h"

// `kernels` and `kinds`: what to time (pfbench.c fills the defaults per command and backend).
#define MAX_LIST 8

typedef struct {
    int tokens[MAX_LIST], ntokens, repeat;
    int shapes[16][2], nshapes;
    int bs[MAX_LIST], nbs, nf[MAX_LIST], nnf, rank[MAX_LIST], nrank;
} kernel_opts;

// The commands; each returns the process's exit code.
int pfbench_kernels(const pf_backend *be, const kernel_opts *o);
int pfbench_kinds(const pf_backend *be, const kernel_opts *o);
int pfbench_step(const pf_backend *be, char **configs, int nconfigs, char **sets, int nsets,
                 int steps);
int pfbench_data(const pf_backend *be, const char *path, char **sets, int nsets, int batches,
                 int steps, const int *workers, int nworkers);

// The median of v[n] (sorts v).
double bench_median(double *v, int n);
// The line naming the tool, backend, host, CPUs and OMP_NUM_THREADS (and the GPU on CUDA).
void bench_print_machine(const pf_backend *be);
// A device buffer of n elements of dtype dt (fp32 or bf16, rounded on the host) filled with
// uniform values in [-1, 1).
void *bench_random_buffer(const pf_backend *be, int64_t n, pf_dtype dt, pf_rng *rng);

// What one timed call does; ctx is the benchmark's own state.
typedef void (*bench_fn)(void *ctx);
// Times n calls, fn[i](ctx[i]), in `repeat` rounds after one warm-up round; each round calls
// every one once, in order, so that the slow and the fast moments of a shared machine fall on
// all of them alike. t[r * n + i] = call i's time in round r (ms).
void bench_time_rounds(const pf_backend *be, int n, const bench_fn *fn, void *const *ctx,
                       int repeat, double *t);
// The median of `repeat` timed calls of fn(ctx) after one warm-up call (ms).
double bench_time_median_ms(const pf_backend *be, bench_fn fn, void *ctx, int repeat);

#endif
