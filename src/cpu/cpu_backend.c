// cpu_backend.c: the CPU backend's op table (fp32, OpenMP + OpenBLAS, deterministic; the
// reference every other backend is tested against).
#include <string.h>

#include "cpu_ops.h"

// "Device-to-device" copy: memcpy split into 1 MiB chunks over the OpenMP threads, so a
// large copy runs at the machine's memory bandwidth rather than one core's.
static void cpu_copy_parallel(void *dst, const void *src, size_t bytes) {
    const size_t chunk = (size_t)1 << 20;
    int64_t n = (int64_t)((bytes + chunk - 1) / chunk);
    if (n < 2) {
        memcpy(dst, src, bytes);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        size_t off = (size_t)i * chunk, len = bytes - off < chunk ? bytes - off : chunk;
        memcpy((char *)dst + off, (const char *)src + off, len);
    }
}

const pf_backend pf_backend_cpu = {
    .name = "cpu",
    .device = PF_DEV_CPU,
    .act_dtype = PF_F32,

    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy_parallel,
    .synchronize = cpu_synchronize,
    .supports = cpu_supports,
    .device_info = cpu_device_info,

#define CPU_OP_ENTRY_(ID, name) .name = cpu_##name,
    PF_OPS(CPU_OP_ENTRY_)
#undef CPU_OP_ENTRY_
};
