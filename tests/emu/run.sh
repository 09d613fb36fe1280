#!/usr/bin/env bash
# `make test-emu`: the CUDA backend's own kernel source (kernels/*.cu) compiled by g++ against
# the emulation in tests/emu (mock CUDA headers, fibers for CUDA threads, a reference
# cublasGemmEx), under AddressSanitizer and UBSan, then tests/gpu/test_cuda_ops.c run against
# it: every CUDA op against the CPU backend, model steps, training. No GPU needed.
# Prints the program's case lines and its "N passed, N failed"; exits non-zero on a failure,
# a build error or an emulation error (bad launch, deadlock, misaligned wmma pointer...).
#   BUILD (default build-emu)   EMU_SAN= (no sanitizers)   EMU_OPT (default -O1 -g)
#   EMU_REVERSE=1: run the threads of each block from the last one down (another interleaving)
#   EMU_TIMEOUT (default 900 s)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export BUILD=${BUILD:-build-emu}

makevar() {
  make -s --no-print-directory -f Makefile -f - CUDA=0 pf-print-var PF_VAR="$1" <<< \
    'pf-print-var: ; @echo $($(PF_VAR))'
}

start=$(date +%s)
echo "== building $BUILD/libpixelfly.a (CUDA=0) and the emulated CUDA backend"
make -s CUDA=0 "$BUILD/libpixelfly.a" ||
  { echo "FAIL build: make CUDA=0 $BUILD/libpixelfly.a"; echo "0 passed, 1 failed"; exit 1; }
CC=$(makevar CC); CFLAGS=$(makevar CFLAGS); LDLIBS=$(makevar LDLIBS)
san_args=()
[ -n "${EMU_SAN+set}" ] && san_args=("EMU_SAN=$EMU_SAN")
[ -n "${EMU_OPT+set}" ] && san_args+=("EMU_OPT=$EMU_OPT")
make -s -j2 -f tests/emu/emu.mk CC="$CC" CFLAGS="$CFLAGS" LDLIBS="$LDLIBS" "${san_args[@]}" \
  "$BUILD/emu/test_cuda_ops" ||
  { echo "FAIL build: tests/emu/emu.mk"; echo "0 passed, 1 failed"; exit 1; }
echo "== build: $(( $(date +%s) - start )) s; running $BUILD/emu/test_cuda_ops"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
t0=$(date +%s)
timeout "${EMU_TIMEOUT:-900}" "$BUILD/emu/test_cuda_ops"
rc=$?
echo "== run: $(( $(date +%s) - t0 )) s, exit status $rc"
if [ $rc -eq 124 ]; then echo "FAIL: test_cuda_ops timed out after ${EMU_TIMEOUT:-900} s"; fi
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
  echo "FAIL: test_cuda_ops ended abnormally (status $rc: an emulation error, a sanitizer report or a crash above)"
fi
exit $rc
