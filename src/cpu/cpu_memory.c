// cpu_memory.c: host memory for the CPU backend. "Device" memory is ordinary host memory,
// 64-byte aligned so that every row of a parameter arena starts on a cache line.
#include <stdlib.h>
#include <string.h>
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

void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }

void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

// Every op runs to completion before it returns.
void cpu_synchronize(void) {}

bool cpu_supports(pf_op op) { return (unsigned)op < PF_OP_COUNT; }
