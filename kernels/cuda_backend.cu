// cuda_backend.cu: the CUDA backend's runtime context, memory functions and op table.
//
// bf16 compute: activations and the compute copy of the weights (pf_arena.weights) are bf16,
// master weights, gradients and AdamW moments fp32 (kernels/cuda_ops.h states the rule per
// tensor). Dense GEMMs run in cuBLAS (bf16 in, fp32 accumulation), Pixelfly and attention in
// our tensor-core kernels, every other op in the kernels of kernels/cuda_*.cu. Each op also
// accepts fp32 activations, and tests/gpu/test_cuda_ops.c checks both dtypes against the CPU
// reference.
#include <string.h>

#include "cuda_ops.h"

// Dense bf16 tensor-core peaks from NVIDIA's datasheets (without 2:4 sparsity), matched on
// the device name; 0 for any other card (run.peak_tflops supplies one).
static double known_peak_tflops(const char *name) {
    if (strstr(name, "H100") && strstr(name, "PCIe")) return 756.0;
    if (strstr(name, "H100") && strstr(name, "NVL")) return 835.0;
    if (strstr(name, "H100") || strstr(name, "H200")) return 989.0;
    if (strstr(name, "A100")) return 312.0;
    return 0.0;
}

static pf_cuda_context make_context(void) {
    pf_cuda_context c = {};
    c.stream = 0;
    CUBLAS_CHECK(cublasCreate(&c.cublas));
    CUBLAS_CHECK(cublasSetStream(c.cublas, c.stream));
    CUBLAS_CHECK(cublasSetMathMode(c.cublas, CUBLAS_DEFAULT_MATH));
    int dev = 0;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    snprintf(c.device.name, sizeof c.device.name, "%s", prop.name);
    c.device.mem_total = (double)prop.totalGlobalMem;
    c.device.peak_tflops = known_peak_tflops(prop.name);
    // cudaDevAttrMaxSharedMemoryPerBlockOptin: 227 KB on sm_90, 163 KB on sm_80, 99 KB on
    // sm_86 / sm_89. It decides which attention head dims this device runs.
    c.smem_optin = prop.sharedMemPerBlockOptin;
    cuda_attention_fit_device(c.smem_optin, prop.name);
    CUDA_CHECK(cudaStreamCreateWithFlags(&c.copy_stream, cudaStreamNonBlocking));
    for (int s = 0; s < PF_INPUT_SETS; s++) {
        CUDA_CHECK(cudaEventCreateWithFlags(&c.uploaded[s], cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&c.released[s], cudaEventDisableTiming));
    }
    c.inputs_active = -1;
    return c;
}

// The one runtime context of the process (a function-local static: created on first use,
// thread-safe by C++ rules), so it binds to the device the caller selected before.
pf_cuda_context *pf_cuda_ctx(void) {
    static pf_cuda_context ctx = make_context();
    return &ctx;
}

void *cuda_scratch(size_t bytes) {
    pf_cuda_context *c = pf_cuda_ctx();
    if (bytes > c->scratch_bytes) {
        if (c->scratch) CUDA_CHECK(cudaFree(c->scratch));  // waits for its last users
        CUDA_CHECK(cudaMalloc(&c->scratch, bytes));
        c->scratch_bytes = bytes;
        cuda_note_memory();
    }
    return c->scratch;
}

size_t cuda_note_memory(void) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    pf_cuda_context *c = pf_cuda_ctx();
    if (total_b - free_b > c->mem_peak) c->mem_peak = total_b - free_b;
    return total_b - free_b;
}

// Called every logged step: the static part was read once with the context.
static void cuda_device_info(pf_device_info *info) {
    *info = pf_cuda_ctx()->device;
    info->mem_used = (double)cuda_note_memory();
    info->mem_peak = (double)pf_cuda_ctx()->mem_peak;
}

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        PF_FATAL("cudaMalloc of %zu bytes failed (%s); %zu of %zu bytes free on the device",
                 bytes, cudaGetErrorString(err), free_b, total_b);
    }
    cuda_note_memory();
    return p;
}

// Memory calls run on the legacy default stream too, so they are ordered with the ops.
static void cuda_free(void *p) { CUDA_CHECK(cudaFree(p)); }
static void cuda_zero(void *p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0, bytes)); }
static void cuda_upload(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cuda_download(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
// Asynchronous on the context stream, like the ops; the caller synchronizes to time it.
static void cuda_copy(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, pf_cuda_ctx()->stream));
}
static void cuda_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

// Page-locked host memory: the DMA engines read it directly, so an upload from it runs
// asynchronously at full bus bandwidth (from pageable memory the driver would stage it).
static void *cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMallocHost(&p, bytes ? bytes : 1);
    if (err != cudaSuccess)
        PF_FATAL("cudaMallocHost of %zu bytes (page-locked host memory) failed: %s", bytes,
                 cudaGetErrorString(err));
    return p;
}
static void cuda_host_free(void *p) { CUDA_CHECK(cudaFreeHost(p)); }

// Input staging (backend.h). Set s's cycle: inputs_begin waits on the host for its last
// uploads (uploaded[s]) and makes the copy stream wait for released[s]; the uploads and
// uploaded[s] go to the copy stream; inputs_use makes the compute stream wait for
// uploaded[s] and records released[] of the set it stops reading.
static void cuda_inputs_begin(int set) {
    pf_cuda_context *c = pf_cuda_ctx();
    PF_ASSERT(set >= 0 && set < PF_INPUT_SETS);
    CUDA_CHECK(cudaEventSynchronize(c->uploaded[set]));
    // Staging the set the ops read now (an evaluation batch between training steps): the
    // ops issued so far may still read it.
    if (set == c->inputs_active) CUDA_CHECK(cudaEventRecord(c->released[set], c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->copy_stream, c->released[set], 0));
}
static void cuda_inputs_upload(void *dst, const void *host_src, size_t bytes) {
    pf_cuda_context *c = pf_cuda_ctx();
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->copy_stream));
}
static void cuda_inputs_end(int set) {
    pf_cuda_context *c = pf_cuda_ctx();
    CUDA_CHECK(cudaEventRecord(c->uploaded[set], c->copy_stream));
}
static void cuda_inputs_use(int set) {
    pf_cuda_context *c = pf_cuda_ctx();
    PF_ASSERT(set >= 0 && set < PF_INPUT_SETS);
    if (c->inputs_active >= 0 && c->inputs_active != set)
        CUDA_CHECK(cudaEventRecord(c->released[c->inputs_active], c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->uploaded[set], 0));
    c->inputs_active = set;
}
// Every op, with fp32 or bf16 activations. The trainer asks this for every op first thing
// after the communicator's cudaSetDevice (src/train.c setup), so the context is created here,
// on that device: what the table publishes for the device (attention_head_dims) is settled
// before a model is planned or built. (Not in pf_cuda_available: pftrain selects the backend
// before the communicator picks the rank's device.)
static bool cuda_supports(pf_op op, pf_dtype act) {
    pf_cuda_ctx();
    return (unsigned)op < PF_OP_COUNT && (act == PF_F32 || act == PF_BF16);
}

bool pf_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

extern "C" const pf_backend pf_backend_cuda = {
    .name = "cuda",
    .device = PF_DEV_CUDA,
    .act_dtype = PF_BF16,
    .attention_head_dims = cuda_attention_head_dims,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .inputs_begin = cuda_inputs_begin,
    .inputs_upload = cuda_inputs_upload,
    .inputs_end = cuda_inputs_end,
    .inputs_use = cuda_inputs_use,
    .supports = cuda_supports,
    .device_info = cuda_device_info,

#define CUDA_OP_ENTRY_(ID, name) .name = cuda_##name,
    PF_OPS(CUDA_OP_ENTRY_)
#undef CUDA_OP_ENTRY_
};
