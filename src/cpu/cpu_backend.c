// cpu_backend.c: the CPU backend's op table (fp32, OpenMP + OpenBLAS, deterministic; the
// reference every other backend is tested against).
#include "cpu_ops.h"

const pf_backend pf_backend_cpu = {
    .name = "cpu",
    .device = PF_DEV_CPU,
    .act_dtype = PF_F32,

    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy_device,
    .synchronize = cpu_synchronize,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .inputs_begin = cpu_inputs_mark,
    .inputs_upload = cpu_copy,
    .inputs_end = cpu_inputs_mark,
    .inputs_use = cpu_inputs_mark,
    .supports = cpu_supports,
    .device_info = cpu_device_info,

#define CPU_OP_ENTRY_(ID, name) .name = cpu_##name,
    PF_OPS(CPU_OP_ENTRY_)
#undef CPU_OP_ENTRY_
};
