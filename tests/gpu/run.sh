#!/usr/bin/env bash
# GPU consistency tests: every CUDA op against the CPU reference, then whole training steps
# of tiny models on both backends (tests/gpu/test_cuda_ops.c). Builds the test with CUDA=1
# and runs it; prints "SKIP: ..." and succeeds when no CUDA device is visible.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
make -s CUDA=1 "$BUILD/tests/gpu/test_cuda_ops"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1 "$BUILD/tests/gpu/test_cuda_ops"
