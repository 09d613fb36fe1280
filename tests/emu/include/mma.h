// mma.h (emulation): nvcuda::wmma for 16x16x16 bf16 fragments with fp32 accumulators, the
// shapes pixelfly uses. A fragment holds the whole 16x16 matrix and only lane 0 of the warp
// loads, multiplies and stores it (the other lanes' copies are unused), so element access
// (frag.x[i], num_elements) is deliberately absent: code that relies on the per-lane layout
// does not compile here. Every call checks what the documentation requires: a 256-bit aligned
// pointer, ldm a multiple of 16 bytes, and (at the next barrier) that every lane of the warp
// made the same wmma calls.
#ifndef EMU_MMA_H
#define EMU_MMA_H

#include <stdint.h>

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "emulated wmma: 16x16x16 only");
    static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, float>::value,
                  "emulated wmma: bf16 operands, fp32 accumulators only");
    static_assert(std::is_same<Use, accumulator>::value == std::is_same<T, float>::value,
                  "emulated wmma: bf16 matrix_a/b, float accumulator");
    float emu_m[16][16];  // [row][col] of the matrix (A: [m][k], B: [k][n], C: [m][n])
};

namespace detail {
inline bool lane0(const char *op, const void *p, unsigned ldm, unsigned elem) {
    emu::cur->wmma_ops++;
    if (emu::cur->lane != 0) return false;
    if ((uintptr_t)p % 32)
        emu::kernel_error("wmma::%s: pointer %p is not 256-bit aligned", op, p);
    if (ldm * elem % 16 || ldm == 0)
        emu::kernel_error("wmma::%s: ldm %u is not a multiple of %u elements", op, ldm,
                          16 / elem);
    return true;
}
inline float ld(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float ld(float v) { return v; }
}  // namespace detail

// A [m][k]: row_major p[m * ldm + k], col_major p[m + k * ldm].
template <class L>
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __nv_bfloat16, L> &f,
                             const __nv_bfloat16 *p, unsigned ldm) {
    static_assert(!std::is_void<L>::value, "matrix_a needs a layout");
    if (!detail::lane0("load_matrix_sync(matrix_a)", p, ldm, 2)) return;
    constexpr bool row = std::is_same<L, row_major>::value;
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < 16; k++) f.emu_m[i][k] = detail::ld(row ? p[i * ldm + k] : p[i + k * ldm]);
}
// B [k][n]: row_major p[k * ldm + n], col_major p[k + n * ldm].
template <class L>
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __nv_bfloat16, L> &f,
                             const __nv_bfloat16 *p, unsigned ldm) {
    static_assert(!std::is_void<L>::value, "matrix_b needs a layout");
    if (!detail::lane0("load_matrix_sync(matrix_b)", p, ldm, 2)) return;
    constexpr bool row = std::is_same<L, row_major>::value;
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < 16; n++) f.emu_m[k][n] = detail::ld(row ? p[k * ldm + n] : p[k + n * ldm]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t l) {
    if (!detail::lane0("load_matrix_sync(accumulator)", p, ldm, 4)) return;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            f.emu_m[i][j] = p[l == mem_row_major ? i * ldm + j : i + j * ldm];
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t l) {
    if (!detail::lane0("store_matrix_sync", p, ldm, 4)) return;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) p[l == mem_row_major ? i * ldm + j : i + j * ldm] = f.emu_m[i][j];
}
inline void fill_fragment(fragment<accumulator, 16, 16, 16, float> &f, float v) {
    emu::cur->wmma_ops++;
    if (emu::cur->lane != 0) return;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.emu_m[i][j] = v;
}
// d = a b + c in fp32 (d may alias c).
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
    emu::cur->wmma_ops++;
    if (emu::cur->lane != 0) return;
    float t[16][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.emu_m[i][j];
            for (int k = 0; k < 16; k++) s += a.emu_m[i][k] * b.emu_m[k][j];
            t[i][j] = s;
        }
    memcpy(d.emu_m, t, sizeof t);
}
}  // namespace wmma
}  // namespace nvcuda

#endif
