// test_streams.cpp: the emulation's streams, events and page-locked memory
// (tests/emu/README.md "Streams and events"), checked against tests/emu/emu_runtime.cpp alone.
// Above all that it keeps what a synchronous emulation hides visible: work queued on a
// created stream is not done until something waits for it, so a missing event wait reads
// stale device data, and a host write to a pinned buffer before the copy ran travels with it.
// C++ (not C) for the kernel launches and a std::thread case; run by tests/emu/run.sh before
// test_cuda_ops. Prints one line per check and "N passed, N failed"; exits 1 on any failure.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thread>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

static int n_pass, n_fail;

static void check(bool ok, const char *what) {
    printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    if (ok)
        n_pass++;
    else
        n_fail++;
}

// A failing setup call makes every later check meaningless: stop.
#define CK(call)                                                                           \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            printf("FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

// The byte at d (device memory), read back by a copy on the default stream.
static int dev_byte(const void *d) {
    unsigned char b = 0;
    CK(cudaMemcpy(&b, d, 1, cudaMemcpyDeviceToHost));
    return b;
}

// Whether the call failed with `want`, cudaGetLastError reports it once, and then nothing.
static bool api_fails(cudaError_t got, cudaError_t want) {
    cudaError_t last = cudaGetLastError();
    return got == want && last == want && cudaGetLastError() == cudaSuccess;
}

__global__ void copy_byte(const unsigned char *src, unsigned char *dst) { *dst = *src; }

// copy_byte<<<1, 1, 0, stream>>>(src, dst), as tests/emu/rewrite.pl writes it.
static void launch_copy_byte(const unsigned char *src, unsigned char *dst, cudaStream_t stream) {
    emu_launch("copy_byte", __FILE__, __LINE__, emu_key(copy_byte), [&] { copy_byte(src, dst); },
               dim3(1), dim3(1), 0, stream);
    CK(cudaGetLastError());
}

int main(void) {
    const size_t n = 4096;
    unsigned char *dev, *dev2, *pinned, *out;
    CK(cudaMalloc((void **)&dev, n));
    CK(cudaMalloc((void **)&dev2, n));
    CK(cudaMalloc((void **)&out, 1));
    CK(cudaMallocHost((void **)&pinned, n));
    cudaStream_t nb, blk;
    CK(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking));
    CK(cudaStreamCreate(&blk));
    cudaEvent_t ev, ev2;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    CK(cudaEventCreate(&ev2));

    setvbuf(stdout, nullptr, _IOLBF, 0);  // keep each check's line next to its EMU: messages
    printf("(an \"EMU:\" line is an API error that the check printed after it provokes on purpose)\n");

    // Page-locked memory.
    check(pinned[0] == 0xff && pinned[n - 1] == 0xff, "cudaMallocHost memory starts as 0xff bytes");
    memset(pinned, 1, n);
    CK(cudaMemcpy(dev, pinned, n, cudaMemcpyHostToDevice));
    check(dev_byte(dev) == 1 && dev_byte(dev + n - 1) == 1,
          "cudaMemcpy host-to-device from cudaMallocHost memory");
    check(api_fails(cudaMemcpy(pinned, dev, n, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue),
          "cudaMallocHost memory is host memory: a device-to-device copy into it is an error");
    check(api_fails(cudaFree(pinned), cudaErrorInvalidValue) &&
              api_fails(cudaFreeHost(dev), cudaErrorInvalidValue),
          "cudaFree of pinned memory and cudaFreeHost of device memory are errors");

    // A non-blocking stream's copy waits for whoever needs it.
    CK(cudaMemset(dev, 0, n));
    memset(pinned, 2, n);
    CK(cudaMemcpyAsync(dev, pinned, n, cudaMemcpyHostToDevice, nb));
    CK(cudaEventRecord(ev, nb));
    check(dev_byte(dev) == 0,
          "copy on a non-blocking stream is deferred: a default-stream cudaMemcpy reads the old bytes");
    launch_copy_byte(dev, out, 0);
    check(dev_byte(out) == 0, "a default-stream kernel does not wait for a non-blocking stream");
    CK(cudaStreamWaitEvent(0, ev, 0));
    check(dev_byte(dev) == 2 && dev_byte(dev + n - 1) == 2,
          "cudaStreamWaitEvent(0, event of the copy): the default stream sees the new bytes");

    // The hazard double buffering must avoid: the host rewrites the staging buffer before the
    // copy reading it ran; the copy carries the new bytes.
    memset(pinned, 3, n);
    CK(cudaMemcpyAsync(dev, pinned, n, cudaMemcpyHostToDevice, nb));
    CK(cudaEventRecord(ev, nb));
    memset(pinned, 4, n);
    CK(cudaEventSynchronize(ev));
    check(dev_byte(dev) == 4,
          "a pinned buffer rewritten before the deferred copy ran: the copy carries the new bytes");

    // Device-to-host into pinned memory: the host sees it after a synchronisation only.
    memset(pinned, 0, n);
    CK(cudaMemcpyAsync(pinned, dev, n, cudaMemcpyDeviceToHost, nb));
    bool before = pinned[0] == 0;
    CK(cudaStreamSynchronize(nb));
    check(before && pinned[0] == 4 && pinned[n - 1] == 4,
          "device-to-host copy on a stream lands at cudaStreamSynchronize");

    // Events: positions, re-recording, queries.
    CK(cudaMemset(dev, 0, n));
    CK(cudaMemsetAsync(dev, 5, 1, nb));
    CK(cudaEventRecord(ev, nb));
    CK(cudaMemsetAsync(dev + 1, 6, 1, nb));
    CK(cudaEventSynchronize(ev));
    check(dev_byte(dev) == 5 && dev_byte(dev + 1) == 0,
          "cudaEventSynchronize runs the stream up to the event's position only");
    CK(cudaEventRecord(ev, nb));
    CK(cudaEventSynchronize(ev));
    check(dev_byte(dev + 1) == 6, "re-recording an event moves its position");
    CK(cudaMemsetAsync(dev, 7, 1, nb));
    CK(cudaMemsetAsync(dev + 1, 8, 1, nb));
    CK(cudaEventRecord(ev, nb));
    int not_ready = 0;
    cudaError_t q;
    while ((q = cudaEventQuery(ev)) == cudaErrorNotReady) not_ready++;
    check(q == cudaSuccess && not_ready == 2 && dev_byte(dev) == 7 && dev_byte(dev + 1) == 8 &&
              cudaGetLastError() == cudaSuccess,
          "cudaEventQuery: cudaErrorNotReady per pending operation (not an error), then success");
    check(cudaEventQuery(ev2) == cudaSuccess && cudaEventSynchronize(ev2) == cudaSuccess &&
              cudaStreamWaitEvent(nb, ev2, 0) == cudaSuccess &&
              cudaStreamWaitEvent(0, ev2, 0) == cudaSuccess,
          "an event never recorded is complete: query, synchronize and waits do nothing");
    CK(cudaMemsetAsync(dev, 9, 1, nb));
    CK(cudaEventRecord(ev2, 0));
    check(cudaEventQuery(ev2) == cudaSuccess && dev_byte(dev) == 7,
          "an event recorded on the default stream is complete at once");
    CK(cudaStreamSynchronize(nb));
    check(dev_byte(dev) == 9, "cudaStreamSynchronize runs all of the stream");

    // A created stream waiting on another: the wait is a queue entry.
    cudaStream_t nb2;
    CK(cudaStreamCreateWithFlags(&nb2, cudaStreamNonBlocking));
    CK(cudaMemset(dev, 0, n));
    CK(cudaMemset(dev2, 0, n));
    CK(cudaMemsetAsync(dev, 10, 1, nb));
    CK(cudaEventRecord(ev, nb));
    CK(cudaMemsetAsync(dev + 1, 11, 1, nb));
    CK(cudaMemcpyAsync(dev2 + 2, dev, 1, cudaMemcpyDeviceToDevice, nb2));  // no wait: stale
    CK(cudaStreamWaitEvent(nb2, ev, 0));
    CK(cudaMemcpyAsync(dev2, dev, 2, cudaMemcpyDeviceToDevice, nb2));
    check(dev_byte(dev) == 0, "cudaStreamWaitEvent on a created stream runs nothing at the call");
    CK(cudaStreamSynchronize(nb2));
    check(dev_byte(dev2 + 2) == 0 && dev_byte(dev2) == 10 && dev_byte(dev2 + 1) == 0 &&
              dev_byte(dev + 1) == 0,
          "stream waiting on an event: copies before the wait read stale data, after it the "
          "event's work, not the producer's later work");
    CK(cudaStreamDestroy(nb2));

    // A blocking stream is flushed by any default-stream operation; launches and GEMMs on a
    // created stream run after its queue.
    CK(cudaMemset(dev, 0, n));
    CK(cudaMemsetAsync(dev, 12, 1, blk));
    check(dev_byte(dev) == 12, "a blocking stream runs before a default-stream cudaMemcpy");
    CK(cudaMemsetAsync(dev, 13, 1, blk));
    CK(cudaMemsetAsync(dev + 1, 14, 1, nb));
    launch_copy_byte(dev, out, 0);
    check(dev_byte(out) == 13 && dev_byte(dev + 1) == 0,
          "a blocking stream runs before a default-stream kernel, a non-blocking one does not");
    launch_copy_byte(dev + 1, out, nb);
    check(dev_byte(out) == 14, "a kernel on a created stream runs after that stream's queue");
    {
        cublasHandle_t h;
        cublasCreate(&h);
        float *m;
        CK(cudaMalloc((void **)&m, 3 * sizeof(float)));  // a, b, c (1 x 1 each)
        float *host = (float *)pinned, one = 1.0f, zero = 0.0f;
        host[0] = 2.0f;
        host[1] = 3.0f;
        CK(cudaMemcpy(m, host, 2 * sizeof(float), cudaMemcpyHostToDevice));
        host[0] = 5.0f;
        CK(cudaMemcpyAsync(m, host, sizeof(float), cudaMemcpyHostToDevice, nb));
        cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, m, CUDA_R_32F, 1, m + 1,
                     CUDA_R_32F, 1, &zero, m + 2, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
        float c0;
        CK(cudaMemcpy(&c0, m + 2, sizeof c0, cudaMemcpyDeviceToHost));
        cublasSetStream(h, nb);
        cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, m, CUDA_R_32F,
                                         1, m + 1, CUDA_R_32F, 1, &zero, m + 2, CUDA_R_32F, 1,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        float c1;
        CK(cudaMemcpy(&c1, m + 2, sizeof c1, cudaMemcpyDeviceToHost));
        check(st == CUBLAS_STATUS_SUCCESS && c0 == 6.0f && c1 == 15.0f,
              "cuBLAS: on the default stream it does not wait for a non-blocking stream, on a "
              "created stream it runs after its queue");
        cublasDestroy(h);
        CK(cudaFree(m));
    }

    // Pageable memory: fine on the default stream, an error on a created one.
    unsigned char *pageable = (unsigned char *)malloc(n);
    memset(pageable, 15, n);
    CK(cudaMemcpyAsync(dev, pageable, n, cudaMemcpyHostToDevice, 0));
    check(dev_byte(dev) == 15, "cudaMemcpyAsync from pageable memory on the default stream");
    memset(pageable, 16, n);
    check(api_fails(cudaMemcpyAsync(dev, pageable, n, cudaMemcpyHostToDevice, nb),
                    cudaErrorInvalidValue) &&
              api_fails(cudaMemcpyAsync(pageable, dev, n, cudaMemcpyDeviceToHost, nb),
                        cudaErrorInvalidValue),
          "cudaMemcpyAsync with pageable host memory on a created stream is an error");
    CK(cudaDeviceSynchronize());
    check(dev_byte(dev) == 15 && pageable[0] == 16, "the refused copies were not queued");
    free(pageable);

    // Implicit synchronisations: cudaDeviceSynchronize, cudaFree(Host), cudaStreamDestroy.
    CK(cudaMemsetAsync(dev, 17, 1, nb));
    CK(cudaDeviceSynchronize());
    check(dev_byte(dev) == 17, "cudaDeviceSynchronize runs the non-blocking stream too");
    unsigned char *pinned2;
    CK(cudaMallocHost((void **)&pinned2, n));
    memset(pinned2, 19, n);
    CK(cudaMemcpyAsync(dev, pinned2, n, cudaMemcpyHostToDevice, nb));
    CK(cudaFreeHost(pinned2));
    check(dev_byte(dev) == 19, "cudaFreeHost runs the queued copies first");
    unsigned char *tmp;
    CK(cudaMalloc((void **)&tmp, n));
    CK(cudaMemsetAsync(tmp, 20, n, nb));
    CK(cudaMemcpyAsync(dev, tmp, n, cudaMemcpyDeviceToDevice, nb));
    CK(cudaFree(tmp));
    check(dev_byte(dev) == 20, "cudaFree runs the queued work first");
    CK(cudaMemsetAsync(dev, 21, 1, nb));
    CK(cudaEventRecord(ev, nb));
    cudaStream_t gone = nb;
    CK(cudaStreamDestroy(nb));
    check(dev_byte(dev) == 21 && cudaEventQuery(ev) == cudaSuccess,
          "cudaStreamDestroy runs the stream's work; its events are complete");
    check(api_fails(cudaMemsetAsync(dev, 0, 1, gone), cudaErrorInvalidResourceHandle) &&
              api_fails(cudaStreamSynchronize(gone), cudaErrorInvalidResourceHandle) &&
              api_fails(cudaStreamCreateWithFlags(&nb, 4), cudaErrorInvalidValue) &&
              api_fails(cudaStreamWaitEvent(0, ev, 1), cudaErrorInvalidValue),
          "a destroyed stream, unknown stream flags and nonzero wait flags are errors");

    // Threads: each with its own non-blocking stream and event; every flush happens inside an
    // API call holding the runtime's lock.
    {
        std::vector<std::thread> th;
        std::vector<int> bad(4, 0);
        for (int t = 0; t < 4; t++)
            th.emplace_back([&, t] {
                cudaStream_t s;
                cudaEvent_t e;
                unsigned char *h, *d;
                if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) ||
                    cudaEventCreateWithFlags(&e, cudaEventDisableTiming) ||
                    cudaMallocHost((void **)&h, 64) || cudaMalloc((void **)&d, 64)) {
                    bad[t] = 1;
                    return;
                }
                for (int r = 0; r < 200; r++) {
                    memset(h, r, 64);
                    unsigned char b = 0;
                    if (cudaMemcpyAsync(d, h, 64, cudaMemcpyHostToDevice, s) ||
                        cudaEventRecord(e, s) || cudaStreamWaitEvent(0, e, 0) ||
                        cudaMemcpy(&b, d + 63, 1, cudaMemcpyDeviceToHost) || b != (unsigned char)r)
                        bad[t] = 1;
                }
                if (cudaStreamDestroy(s) || cudaEventDestroy(e) || cudaFreeHost(h) || cudaFree(d))
                    bad[t] = 1;
            });
        for (auto &x : th) x.join();
        check(!bad[0] && !bad[1] && !bad[2] && !bad[3],
              "4 threads, each copying on its own stream and waiting from the default stream");
    }

    CK(cudaStreamDestroy(blk));
    CK(cudaEventDestroy(ev));
    CK(cudaEventDestroy(ev2));
    CK(cudaFreeHost(pinned));
    CK(cudaFree(dev));
    CK(cudaFree(dev2));
    CK(cudaFree(out));
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
