#!/usr/bin/env bash
# `make test-emu`: the emulation's self-test (tests/emu/test_streams.cpp: streams, events,
# page-locked memory), then tests/gpu/test_cuda_ops.c run against the CUDA backend's own kernel
# source (kernels/*.cu) compiled by g++ for the emulation in tests/emu (mock CUDA headers, fibers
# for CUDA threads, a reference cublasGemmEx), under AddressSanitizer and UBSan: every CUDA op
# against the CPU backend, model steps, training. No GPU needed.
# Builds nothing: `make test-emu` builds $BUILD/emu/test_streams and test_cuda_ops first
# (tests/emu/emu.mk). By hand: `make CUDA=0 BUILD=DIR emu-build`, then `BUILD=DIR tests/emu/run.sh`.
# Prints the self-test's PASS/FAIL line, test_cuda_ops' case lines and its "N passed, N failed",
# then the closing "N passed, N failed" with the self-test counted as one more case; exits
# non-zero on a failure, a missing program or an emulation error (bad launch, deadlock,
# misaligned wmma pointer...). A failed self-test stops the run: the emulation itself is wrong.
#   BUILD (default build-emu)   PF_GPU_TESTS (which cases; tests/gpu/test_cuda_ops.c)
#   EMU_REVERSE=1: run the threads of each block from the last one down (another interleaving)
#   EMU_TIMEOUT (default 900 s)
# Build knobs go to make: `make test-emu EMU_SAN=` (no sanitizers), EMU_OPT (default -O1 -g).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export BUILD=${BUILD:-build-emu}

for p in test_streams test_cuda_ops; do
  if [ ! -x "$BUILD/emu/$p" ]; then
    echo "FAIL: no $BUILD/emu/$p: run \`make test-emu\`, or first" \
         "\`make CUDA=0 BUILD=$BUILD emu-build\`"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "== running $BUILD/emu/test_streams"
"$BUILD/emu/test_streams"
rc=$?
if [ $rc -ne 0 ]; then
  echo "FAIL emulation self-test test_streams (exit status $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "PASS emulation self-test test_streams"

echo "== running $BUILD/emu/test_cuda_ops"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
t0=$(date +%s)
timeout "${EMU_TIMEOUT:-900}" "$BUILD/emu/test_cuda_ops" | tee "$log"
rc=$?
echo "== run: $(( $(date +%s) - t0 )) s, exit status $rc"
if [ $rc -eq 124 ]; then echo "FAIL: test_cuda_ops timed out after ${EMU_TIMEOUT:-900} s"; fi
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
  echo "FAIL: test_cuda_ops ended abnormally (status $rc: an emulation error, a sanitizer report or a crash above)"
fi
# Its own counts plus the self-test; a run that failed without counting a failure (a crash,
# an emulation error at exit) counts as one.
read -r passed failed < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n 1)
passed=${passed:-0} failed=${failed:-0}
if [ $rc -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$((passed + 1)) passed, $failed failed"
exit $rc
