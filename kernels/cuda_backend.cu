// cuda_backend.cu: the CUDA backend's memory functions and op table.
//
// Status: memory management only. The compute ops (bf16 Pixelfly kernels, fused layernorm,
// attention, AdamW) are issue #6 and have not run on a GPU yet, so `supports()` answers
// false for every op and pftrain refuses run.backend = cuda with "not supported" instead of
// computing anything unverified.
#include <cuda_runtime.h>

#include "backend.h"
#include "cuda_common.h"

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        PF_FATAL("cudaMalloc of %zu bytes failed (%s); %zu of %zu bytes free on the device",
                 bytes, cudaGetErrorString(err), free_b, total_b);
    }
    return p;
}

static void cuda_free(void *p) { CUDA_CHECK(cudaFree(p)); }
static void cuda_zero(void *p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0, bytes)); }
static void cuda_upload(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cuda_download(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void cuda_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }
static bool cuda_supports(pf_op op) {
    (void)op;
    return false;
}

bool pf_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

extern "C" const pf_backend pf_backend_cuda = {
    .name = "cuda",
    .device = PF_DEV_CUDA,
    .act_dtype = PF_BF16,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .upload = cuda_upload,
    .download = cuda_download,
    .synchronize = cuda_synchronize,
    .supports = cuda_supports,
};
