#!/usr/bin/env bash
# GPU consistency tests (`make test-gpu`): every CUDA op against the CPU reference, then whole
# training steps of tiny models on both backends (tests/gpu/test_cuda_ops.c); prints
# "SKIP: ..." and succeeds when no CUDA device is visible. Builds nothing: `make test-gpu`
# builds $BUILD/tests/gpu/test_cuda_ops with CUDA=1 first; by hand,
# `make CUDA=1 BUILD=DIR DIR/tests/gpu/test_cuda_ops`, then `BUILD=DIR tests/gpu/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
T=$BUILD/tests/gpu/test_cuda_ops
[ -x "$T" ] || { echo "no $T: run \`make BUILD=$BUILD test-gpu\`"; exit 1; }
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1 "$T"
