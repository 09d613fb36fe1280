#!/usr/bin/env bash
# `make test-emu`: tests/gpu/test_cuda_ops.c run against the CUDA backend's own kernel source
# (kernels/*.cu) compiled by g++ for the emulation in tests/emu (mock CUDA headers, fibers for
# CUDA threads, a reference cublasGemmEx), under AddressSanitizer and UBSan: every CUDA op
# against the CPU backend, model steps, training. No GPU needed.
# Builds nothing: `make test-emu` builds $BUILD/emu/test_cuda_ops first (tests/emu/emu.mk). By
# hand: `make CUDA=0 BUILD=DIR emu-build`, then `BUILD=DIR tests/emu/run.sh`.
# Prints the program's case lines and its "N passed, N failed"; exits non-zero on a failure,
# a missing program or an emulation error (bad launch, deadlock, misaligned wmma pointer...).
#   BUILD (default build-emu)   PF_GPU_TESTS (which cases; tests/gpu/test_cuda_ops.c)
#   EMU_REVERSE=1: run the threads of each block from the last one down (another interleaving)
#   EMU_TIMEOUT (default 900 s)
# Build knobs go to make: `make test-emu EMU_SAN=` (no sanitizers), EMU_OPT (default -O1 -g).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export BUILD=${BUILD:-build-emu}

if [ ! -x "$BUILD/emu/test_cuda_ops" ]; then
  echo "FAIL: no $BUILD/emu/test_cuda_ops: run \`make test-emu\`, or first" \
       "\`make CUDA=0 BUILD=$BUILD emu-build\`"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "== running $BUILD/emu/test_cuda_ops"

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
