// backend.c: the backend-independent helpers of the op interface.
#include "backend.h"

#include <math.h>

#include "common.h"

const char *pf_op_name(pf_op op) {
    static const char *const names[PF_OP_COUNT] = {
#define NAME_(ID, name) [PF_OP_##ID] = #name,
        PF_OPS(NAME_)
#undef NAME_
    };
    return (unsigned)op < PF_OP_COUNT ? names[op] : "unknown";
}

// A non-finite norm gives clip factor 1: the caller sees the norm and decides (skip the
// step, stop), rather than having the gradients silently zeroed.
double pf_grad_norm(const pf_backend *be, float *grads, int64_t n, float max_norm,
                    float *clip_scale) {
    double norm = sqrt(be->sumsq(pf_tensor_1d(grads, PF_F32, be->device, n)));
    float s = 1.0f;
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) s = (float)(max_norm / norm);
    if (clip_scale) *clip_scale = s;
    return norm;
}
