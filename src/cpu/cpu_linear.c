// cpu_linear.c: the dense linear layer, y = x w^T + b, as GEMMs (cpu_gemm.c) with the bias
// set in the forward GEMM's own parallel region and its gradient as row-chunked column sums
// (cpu_colsum_add).
#include "cpu_ops.h"

// y[N,out] = x[N,in] w[out,in]^T + b[out]
void cpu_linear_fwd(pf_tensor y, pf_tensor x, pf_tensor w, pf_tensor b) {
    CPU_F32(y);
    CPU_F32(x);
    CPU_F32(w);
    CPU_F32_OPT(b);
    pf_linear_shape d = pf_shape_linear(y, x, w, b, pf_none(), pf_none());
    int64_t N = d.N, in = d.in, out = d.out;
    // y = b (or 0) set by each thread on its own part of y, then the GEMM adds x w^T to it.
    cpu_sgemm_bias(false, true, N, out, in, cpu_f(x), in, cpu_f(w), in, cpu_f(b), cpu_f(y), out);
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
    pf_linear_shape d = pf_shape_linear(dy, x, w, db, dx, dw);
    int64_t N = d.N, in = d.in, out = d.out;
    if (!N || !out || !in) return;
    if (pf_present(dx))
        cpu_sgemm(false, false, N, in, out, cpu_f(dy), out, cpu_f(w), in, 1.0f, cpu_f(dx), in);
    if (pf_present(dw))
        cpu_sgemm(true, false, out, in, N, cpu_f(dy), out, cpu_f(x), in, 1.0f, cpu_f(dw), in);
    if (pf_present(db)) cpu_colsum_add(cpu_f(db), cpu_f(dy), N, out);
}
