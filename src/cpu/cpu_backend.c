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

    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .pixelfly_fwd = cpu_pixelfly_fwd,
    .pixelfly_bwd = cpu_pixelfly_bwd,
    .pixelfly_mlp_fwd = cpu_pixelfly_mlp_fwd,
    .pixelfly_mlp_bwd = cpu_pixelfly_mlp_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .gelu_fwd = cpu_gelu_fwd,
    .gelu_bwd = cpu_gelu_bwd,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .embedding_fwd = cpu_embedding_fwd,
    .embedding_bwd = cpu_embedding_bwd,
    .transpose_fwd = cpu_transpose_fwd,
    .transpose_bwd = cpu_transpose_bwd,
    .meanpool_fwd = cpu_meanpool_fwd,
    .meanpool_bwd = cpu_meanpool_bwd,
    .cls_token_fwd = cpu_cls_token_fwd,
    .cls_token_bwd = cpu_cls_token_bwd,
    .cls_select_fwd = cpu_cls_select_fwd,
    .cls_select_bwd = cpu_cls_select_bwd,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .convert = cpu_convert,
};
