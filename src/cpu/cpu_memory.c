// cpu_memory.c: host memory for the CPU backend. "Device" memory is ordinary host memory,
// 64-byte aligned so that every row of a parameter arena starts on a cache line.
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cpu_ops.h"

#define CPU_ALIGN 64

void *cpu_alloc(size_t bytes) {
    // aligned_alloc wants a size that is a multiple of the alignment.
    size_t n = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    void *p = aligned_alloc(CPU_ALIGN, n ? n : CPU_ALIGN);
    if (!p) {
        double avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        PF_FATAL("out of host memory allocating %zu bytes (%.1f MiB free)", bytes,
                 avail / (1 << 20));
    }
    return p;
}

void cpu_free(void *p) { free(p); }

// Large clears and device-to-device copies are split into 1 MiB chunks over the OpenMP
// threads: one core's stores do not reach the memory bandwidth that two or more do (GPT-2's
// dlogits, [N, 50,304] floats, 206 MB at 8 x 128 tokens, is cleared at every step).
// src NULL: dst is zeroed.
static void cpu_chunked(void *dst, const void *src, size_t bytes) {
    const size_t chunk = (size_t)1 << 20;
    int64_t n = (int64_t)((bytes + chunk - 1) / chunk);
    if (n < 2 || omp_in_parallel()) {
        if (src) memcpy(dst, src, bytes);
        else memset(dst, 0, bytes);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        size_t off = (size_t)i * chunk, len = bytes - off < chunk ? bytes - off : chunk;
        if (src) memcpy((char *)dst + off, (const char *)src + off, len);
        else memset((char *)dst + off, 0, len);
    }
}

void cpu_zero(void *p, size_t bytes) { cpu_chunked(p, NULL, bytes); }
void cpu_copy_device(void *dst, const void *src, size_t bytes) { cpu_chunked(dst, src, bytes); }

void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

// Every op runs to completion before it returns.
void cpu_synchronize(void) {}

// Input staging (backend.h): uploads are copies done at the call, so there is nothing to
// order; the sets' host buffers are ordinary memory.
void cpu_inputs_mark(int set) { (void)set; }

// Every op, in fp32 only (the bf16 tests emulate bf16 around these ops: tests/test_bf16.c).
bool cpu_supports(pf_op op, pf_dtype act) {
    return (unsigned)op < PF_OP_COUNT && act == PF_F32;
}

// The first "model name" of /proc/cpuinfo, or "unknown CPU".
static void cpu_model_name(char *out, size_t len) {
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = 0;
        snprintf(out, len, "%s", colon);
        break;
    }
    fclose(f);
}

// The host's name and memory, read once (device_info runs at every logged step).
static pf_device_info cpu_host;
static pthread_once_t cpu_host_once = PTHREAD_ONCE_INIT;
static void cpu_host_read(void) {
    cpu_model_name(cpu_host.name, sizeof cpu_host.name);
    cpu_host.mem_total = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
}

// Memory is the process's resident set (VmRSS now, ru_maxrss at peak); no peak FLOP/s is
// claimed for a CPU (run.peak_tflops sets one for MFU).
void cpu_device_info(pf_device_info *info) {
    pthread_once(&cpu_host_once, cpu_host_read);
    *info = cpu_host;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) info->mem_peak = 1024.0 * (double)ru.ru_maxrss;
    FILE *f = fopen("/proc/self/statm", "r");
    long pages_total = 0, pages_resident = 0;
    if (f && fscanf(f, "%ld %ld", &pages_total, &pages_resident) == 2)
        info->mem_used = (double)pages_resident * (double)sysconf(_SC_PAGESIZE);
    if (f) fclose(f);
}
