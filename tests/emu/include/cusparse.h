// cusparse.h (emulation): only what kernels/cuda_common.h names (cuSPARSE itself is used by
// the benchmark-only kernels/cuda_blocked_ell.cu, which the emulated build leaves out).
#ifndef EMU_CUSPARSE_H
#define EMU_CUSPARSE_H
typedef enum { CUSPARSE_STATUS_SUCCESS = 0 } cusparseStatus_t;
inline const char *cusparseGetErrorString(cusparseStatus_t s) {
    return s == CUSPARSE_STATUS_SUCCESS ? "CUSPARSE_STATUS_SUCCESS" : "cuSPARSE error";
}
#endif
