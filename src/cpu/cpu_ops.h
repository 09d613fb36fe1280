// cpu_ops.h: the CPU backend's internal header, included by every src/cpu/*.c: its op
// functions (declared from the op list, one .c file per op family as backend.h names them),
// its memory functions, and the checks and helpers they share.
//
// Every op treats a tensor of any rank as a matrix [rows, cols] with cols = the last dim,
// so activations may be passed as [B, T, C] or [N, C] alike.
// Determinism: loops are `omp parallel for schedule(static)` over independent outputs;
// every reduction runs in a fixed order inside one iteration, never across threads.
#ifndef PF_CPU_OPS_H
#define PF_CPU_OPS_H

#include "backend.h"
#include "op_shapes.h"
#include "common.h"

// A present fp32 tensor on the host. Macros, so a failure names the op's file:line.
#define CPU_F32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_F32 && (t).device == PF_DEV_CPU)
#define CPU_I32(t) PF_ASSERT(pf_present(t) && (t).dtype == PF_I32 && (t).device == PF_DEV_CPU)
// Absent, or a present fp32 host tensor.
#define CPU_F32_OPT(t) \
    PF_ASSERT(!pf_present(t) || ((t).dtype == PF_F32 && (t).device == PF_DEV_CPU))

static inline int64_t cpu_cols(pf_tensor t) { return t.ndim ? t.shape[t.ndim - 1] : 1; }
static inline int64_t cpu_rows(pf_tensor t) {
    int64_t c = cpu_cols(t);
    return c ? pf_numel(t) / c : 0;
}
static inline float *cpu_f(pf_tensor t) { return (float *)t.data; }

// Column loops that reduce over rows work on blocks of this many columns: rows are read
// contiguously and each column is still summed over n in order by a single thread.
#define CPU_COLBLOCK 64

// Column sums, accumulated: out[c] += sum_n x[n, c] for x: [N, C]. Rows in fixed chunks (a
// function of N alone), each chunk summed in double by one thread, the partials added in
// chunk order (cpu_colsum.h): every thread works whatever C, and the result does not depend
// on the thread count.
void cpu_colsum_add(float *out, const float *x, int64_t N, int64_t C);

// C[M,N] = op(A)[M,K] op(B)[K,N] + beta C, row-major with cblas's leading dimensions. C is
// split across the OpenMP threads along the larger of M and N (columns in slices of 16), one
// single-threaded OpenBLAS call per part; a GEMM under 2^18 multiply-adds, or one called
// inside a parallel region, is one call. Same thread count, same bits (another thread count
// may split differently, so the bits may differ).
void cpu_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// C[M,N] = op(A)[M,K] op(B)[K,N] + bias[N] on every row (bias NULL: + 0); C is overwritten.
// Split as cpu_sgemm, each thread first setting its own part of C to the bias: one parallel
// region, and that part of C is in the thread's cache when its GEMM adds to it.
void cpu_sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                    int64_t lda, const float *B, int64_t ldb, const float *bias, float *C,
                    int64_t ldc);

// cpu_memory.c
void *cpu_alloc(size_t bytes);
void cpu_free(void *p);
void cpu_zero(void *p, size_t bytes);
void cpu_copy(void *dst, const void *src, size_t bytes);         // upload, download
void cpu_copy_device(void *dst, const void *src, size_t bytes);  // large: over the threads
void cpu_synchronize(void);
void cpu_inputs_mark(int set);  // inputs_begin, _end, _use: nothing to do
bool cpu_supports(pf_op op, pf_dtype act);
void cpu_device_info(pf_device_info *info);

// The ops: `pf_op_NAME_fn cpu_NAME;` for every entry of PF_OPS, each defined in the file its
// section of backend.h names (cpu_reduce.c also holds cpu_colsum_add).
#define CPU_OP_DECL_(ID, name) pf_op_##name##_fn cpu_##name;
PF_OPS(CPU_OP_DECL_)
#undef CPU_OP_DECL_

#endif
