// tensor.h: a typed, shaped view of memory owned elsewhere (an arena or a scratch buffer).
//
// Tensors never own memory; the backend that allocated `data` decides where it lives
// (host for the CPU backend, device for CUDA). Shapes are row-major, innermost last.
#ifndef PF_TENSOR_H
#define PF_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#define PF_MAX_DIMS 4

typedef enum { PF_F32, PF_BF16, PF_I32 } pf_dtype;
typedef enum { PF_DEV_CPU, PF_DEV_CUDA } pf_device;

typedef struct {
    void *data;  // NULL means "absent" (an optional bias, an unused low-rank term)
    pf_dtype dtype;
    pf_device device;
    int ndim;
    int64_t shape[PF_MAX_DIMS];
} pf_tensor;

static inline int64_t pf_numel(pf_tensor t) {
    int64_t n = 1;
    for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
    return n;
}

static inline bool pf_present(pf_tensor t) { return t.data != 0; }

// The absent tensor, for optional arguments.
static inline pf_tensor pf_none(void) { return (pf_tensor){0}; }

static inline pf_tensor pf_tensor_1d(void *data, pf_dtype dt, pf_device dev, int64_t a) {
    return (pf_tensor){.data = data, .dtype = dt, .device = dev, .ndim = 1, .shape = {a}};
}
static inline pf_tensor pf_tensor_2d(void *data, pf_dtype dt, pf_device dev, int64_t a,
                                     int64_t b) {
    return (pf_tensor){.data = data, .dtype = dt, .device = dev, .ndim = 2, .shape = {a, b}};
}
static inline pf_tensor pf_tensor_3d(void *data, pf_dtype dt, pf_device dev, int64_t a,
                                     int64_t b, int64_t c) {
    return (pf_tensor){.data = data, .dtype = dt, .device = dev, .ndim = 3, .shape = {a, b, c}};
}
static inline pf_tensor pf_tensor_4d(void *data, pf_dtype dt, pf_device dev, int64_t a,
                                     int64_t b, int64_t c, int64_t d) {
    return (pf_tensor){
        .data = data, .dtype = dt, .device = dev, .ndim = 4, .shape = {a, b, c, d}};
}

static inline int pf_dtype_size(pf_dtype dt) { return dt == PF_BF16 ? 2 : 4; }

// bf16 on the host: the upper 16 bits of an fp32, rounded to nearest even (NaN stays NaN).
static inline uint16_t pf_bf16_from_f32(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float pf_f32_from_bf16(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#endif
