// bench.c: what pfbench's commands share: medians, the machine line, random device buffers
// and the round-robin timer (bench.h).
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_print_machine(const pf_backend *be) {
    struct utsname u;
    uname(&u);
    const char *threads = getenv("OMP_NUM_THREADS");
    printf("pfbench %s: backend %s, host %s (%s), %ld CPUs online, OMP_NUM_THREADS=%s\n",
           PF_VERSION, be->name, u.nodename, u.machine, sysconf(_SC_NPROCESSORS_ONLN),
           threads ? threads : "unset");
    if (be->device == PF_DEV_CUDA && be->device_info) {
        pf_device_info d;
        be->device_info(&d);
        printf("device: %s, %.1f GiB memory, %.1f GiB in use\n", d.name,
               d.mem_total / (1 << 30), d.mem_used / (1 << 30));
    }
}

// A device buffer of n elements of dtype dt (fp32 or bf16, rounded on the host) filled with
// uniform values in [-1, 1).
void *bench_random_buffer(const pf_backend *be, int64_t n, pf_dtype dt, pf_rng *rng) {
    PF_ASSERT(dt == PF_F32 || dt == PF_BF16);
    size_t bytes = (size_t)pf_dtype_size(dt) * (size_t)n;
    void *host = pf_malloc(bytes ? bytes : 1);
    for (int64_t i = 0; i < n; i++) {
        float v = 2.0f * pf_rng_uniform(rng) - 1.0f;
        if (dt == PF_BF16)
            ((uint16_t *)host)[i] = pf_bf16_from_f32(v);
        else
            ((float *)host)[i] = v;
    }
    void *dev = be->alloc(bytes);
    be->upload(dev, host, bytes);
    free(host);
    return dev;
}

// Times n calls, fn[i](ctx[i]), in `repeat` rounds after one warm-up round; each round calls
// every one once, in order, so that the slow and the fast moments of a shared machine fall on
// all of them alike. t[r * n + i] = call i's time in round r (ms).
void bench_time_rounds(const pf_backend *be, int n, const bench_fn *fn, void *const *ctx,
                       int repeat, double *t) {
    // warm-up: first-touch pages, BLAS buffers, GPU clocks
    for (int i = 0; i < n; i++) fn[i](ctx[i]);
    be->synchronize();
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < n; i++) {
            double t0 = pf_now();
            fn[i](ctx[i]);
            be->synchronize();
            t[r * n + i] = 1e3 * (pf_now() - t0);
        }
}

double bench_time_median_ms(const pf_backend *be, bench_fn fn, void *ctx, int repeat) {
    double *t = pf_malloc(sizeof(double) * repeat);
    bench_time_rounds(be, 1, &fn, &ctx, repeat, t);
    double m = bench_median(t, repeat);
    free(t);
    return m;
}
