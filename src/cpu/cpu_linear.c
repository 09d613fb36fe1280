// cpu_linear.c: the dense linear layer, y = x w^T + b, as GEMMs (cpu_gemm.c).
#include <string.h>

#include "cpu_ops.h"

// y[N,out] = x[N,in] w[out,in]^T + b[out]
void cpu_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b) {
    CPU_F32(y);
    CPU_F32(x);
    CPU_F32(w);
    CPU_F32_OPT(b);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cpu_rows(x), in = cpu_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cpu_rows(y) == N && cpu_cols(y) == out);
    PF_ASSERT(!pf_present(b) || pf_numel(b) == out);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        if (pf_present(b))
            memcpy(Y + n * out, b.data, sizeof(float) * out);
        else
            memset(Y + n * out, 0, sizeof(float) * out);
    }
    if (N && out && in)
        cpu_sgemm(false, true, N, out, in, cpu_f(x), in, cpu_f(w), in, 1.0f, Y, out);
}

// dx[N,in] += dy w;  dw[out,in] += dy^T x;  db[out] += sum_n dy[n]
void cpu_linear_bwd(pf_tensor dx, pf_tensor dw, pf_tensor db, pf_tensor dy, pf_tensor x,
                    pf_tensor w) {
    CPU_F32_OPT(dx);
    CPU_F32_OPT(dw);
    CPU_F32_OPT(db);
    CPU_F32(dy);
    CPU_F32(x);
    CPU_F32(w);
    PF_ASSERT(w.ndim == 2);
    int64_t N = cpu_rows(x), in = cpu_cols(x), out = w.shape[0];
    PF_ASSERT(w.shape[1] == in && cpu_rows(dy) == N && cpu_cols(dy) == out);
    PF_ASSERT(!pf_present(dx) || (cpu_rows(dx) == N && cpu_cols(dx) == in));
    PF_ASSERT(!pf_present(dw) || pf_numel(dw) == out * in);
    PF_ASSERT(!pf_present(db) || pf_numel(db) == out);
    if (!N || !out || !in) return;
    if (pf_present(dx))
        cpu_sgemm(false, false, N, in, out, cpu_f(dy), out, cpu_f(w), in, 1.0f, cpu_f(dx), in);
    if (pf_present(dw))
        cpu_sgemm(true, false, out, in, N, cpu_f(dy), out, cpu_f(x), in, 1.0f, cpu_f(dw), in);
    if (pf_present(db)) cpu_colsum_add(cpu_f(db), cpu_f(dy), N, out);
}
