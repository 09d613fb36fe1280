// cuda_common.h: checked CUDA, cuBLAS and cuSPARSE calls (file:line and the error string,
// then abort).
#ifndef PF_CUDA_COMMON_H
#define PF_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include "common.h"

#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t err_ = (call);                                                           \
        if (err_ != cudaSuccess)                                                             \
            pf_fatal_at(__FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(err_));      \
    } while (0)

// After every kernel launch: a bad launch configuration is reported where it happened.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(call)                                                                   \
    do {                                                                                     \
        cublasStatus_t st_ = (call);                                                         \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                    \
            pf_fatal_at(__FILE__, __LINE__, "%s: %s (status %d)", #call,                     \
                        cublasGetStatusString(st_), (int)st_);                               \
    } while (0)

#define CUSPARSE_CHECK(call)                                                                 \
    do {                                                                                     \
        cusparseStatus_t st_ = (call);                                                       \
        if (st_ != CUSPARSE_STATUS_SUCCESS)                                                  \
            pf_fatal_at(__FILE__, __LINE__, "%s: %s (status %d)", #call,                     \
                        cusparseGetErrorString(st_), (int)st_);                              \
    } while (0)

#endif
