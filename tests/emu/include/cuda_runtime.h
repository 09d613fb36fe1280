// cuda_runtime.h (emulation): the runtime API (cuda_runtime_api.h) plus, in C++, the device
// side of CUDA C++ for kernels compiled by g++ on the host (tests/emu/README.md):
//   - every CUDA thread is a fiber; the threads of one block run on one OS thread until they
//     block at a barrier or finish, blocks run one after another (tests/emu/emu_runtime.cpp);
//   - __shared__ is `static` (one block runs at a time), `extern __shared__` arrays are
//     rewritten by tests/emu/rewrite.pl into a pointer to the launch's dynamic shared memory;
//   - `k<<<grid, block, smem, stream>>>(args)` is rewritten into emu_launch(...), which checks
//     the configuration like the driver does before running the blocks.
#ifndef EMU_CUDA_RUNTIME_H
#define EMU_CUDA_RUNTIME_H

#include "cuda_runtime_api.h"

#ifdef __cplusplus
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
// One CUDA thread of the running block.
struct thread_state {
    uint3 idx;           // threadIdx
    int linear;          // x + y * bdim.x + z * bdim.x * bdim.y
    int lane, warp;      // linear % 32, linear / 32
    unsigned wmma_ops;   // wmma calls so far (every lane of a warp must make the same ones)
};
extern thread_state *cur;  // the thread running now
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;

void syncthreads();
void syncwarp(unsigned mask);
// Exchanges `bytes` bytes of v within the warp: mode 0 idx, 1 up, 2 down, 3 xor.
void shfl(unsigned mask, void *v, unsigned bytes, int mode, int arg, int width);
unsigned char *dynamic_smem();
// A kernel-side error (bad wmma pointer, bad shuffle...): reported with the kernel's name,
// the block and the thread; the run fails at exit.
void kernel_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void launch(const char *name, const char *file, int line, const void *key, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, void (*body)(void *), void *ctx);
}  // namespace emu

#define threadIdx (::emu::cur->idx)
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::syncwarp(mask); }
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    emu::shfl(mask, &v, sizeof(T), 0, src, width);
    return v;
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    emu::shfl(mask, &v, sizeof(T), 1, (int)d, width);
    return v;
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    emu::shfl(mask, &v, sizeof(T), 2, (int)d, width);
    return v;
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
    emu::shfl(mask, &v, sizeof(T), 3, m, width);
    return v;
}

// Device math: the host functions (fast intrinsics at full precision).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
template <typename A, typename B> inline auto min(A a, B b) -> typename std::common_type<A, B>::type {
    return b < a ? b : a;
}
template <typename A, typename B> inline auto max(A a, B b) -> typename std::common_type<A, B>::type {
    return a < b ? b : a;
}

template <typename T>
inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value) {
    return emu_func_set_attribute(reinterpret_cast<const void *>(func), attr, value);
}

// The launch a `<<<...>>>` becomes (tests/emu/rewrite.pl): body() runs the kernel call with
// its arguments in the calling thread's fiber, once per CUDA thread. It runs at the call, after
// the work the stream's order puts before it (README.md "Streams and events").
template <typename F> inline const void *emu_key(F *f) { return reinterpret_cast<const void *>(f); }
template <typename F>
inline void emu_launch(const char *name, const char *file, int line, const void *key, F &&body, dim3 grid, dim3 block,
                       size_t smem = 0, cudaStream_t stream = 0) {
    using B = typename std::remove_reference<F>::type;
    emu::launch(name, file, line, key, grid, block, smem, stream, [](void *p) { (*(B *)p)(); }, (void *)&body);
}
#endif  // __cplusplus

#endif
