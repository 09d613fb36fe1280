#!/usr/bin/env bash
# What a session on a lent GPU machine runs, from the repository root, over the bundle that
# `make gpu-bundle` made on the build machine (carried as $BUILD/gpu-bundle, BUILD default
# build). Runs only what the bundle holds. Logs go to $OUT (or build/gpu-out).
#   check  the device, missing libraries, every CUDA op against the CPU (test_cuda_ops),
#          the NCCL communicator on one rank
#   sanitize  compute-sanitizer memcheck, racecheck and synccheck over the tensor-core ops
#          (Pixelfly, the pixelfly_mlp op, attention: PF_GPU_TESTS selects them)
#   train  50 steps of GPT-2 tiny Pixelfly on tinyshakespeare with run.backend = cuda
#   bench  pfbench kernels (GPT-2 small and medium shapes) and pfbench step (dense vs
#          Pixelfly GPT-2 small and medium)
#   all    the four in that order
# Exits non-zero when a stage fails; later stages still run under `all`.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}/gpu-bundle
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} OPENBLAS_NUM_THREADS=1
[ -x "$B/pftrain" ] || { echo "no $B/pftrain: run \`make gpu-bundle\` first and carry $B"; exit 2; }

check() {
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  if ldd "$B/pftrain" "$B/test_cuda_ops" | grep 'not found'; then
    echo "missing libraries: add them to tests/gpu/bundle.sh"; return 1
  fi
  "$B/test_cuda_ops" 2>&1 | tee "$OUT/test-gpu.log" || return 1
  mpirun --allow-run-as-root -np 1 "$B/comm_test" nccl 2>&1 | tee "$OUT/nccl.log"
}

sanitize() {
  local cs rc=0
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool"
    PF_GPU_TESTS=pixelfly,mlp,attention "$cs" --tool "$tool" --error-exitcode 3 \
      "$B/test_cuda_ops" > "$OUT/sanitize-$tool.log" 2>&1 || rc=1
    tail -n 4 "$OUT/sanitize-$tool.log"
  done
  return $rc
}

train() {
  rm -rf "$OUT/run-tiny"  # a failed session's run (pftrain does not start a new run over one)
  "$B/pftrain" configs/gpt2-tiny-pixelfly.ini --set run.backend=cuda --set train.steps=50 \
    --set data.train="$B/data/tinyshakespeare-train.h5" \
    --set data.val="$B/data/tinyshakespeare-val.h5" --set run.out_dir="$OUT/run-tiny" \
    --set run.log_every=10 2>&1 | tee "$OUT/train.log" || return 1
  cp "$OUT/run-tiny/metrics.jsonl" "$OUT/train-metrics.jsonl"
  rm -rf "$OUT/run-tiny"
}

bench() {
  "$B/pfbench" kernels --backend cuda 2>&1 | tee "$OUT/kernels.txt" || return 1
  "$B/pfbench" step configs/gpt2-small-dense.ini configs/gpt2-small-pixelfly.ini \
    configs/gpt2-medium-dense.ini configs/gpt2-medium-pixelfly.ini --backend cuda 2>&1 |
    tee "$OUT/step.txt"
}

rc=0
case "${1:-all}" in
  check | sanitize | train | bench) "$1" || rc=1 ;;
  all) for s in check sanitize train bench; do echo "== $s"; "$s" || rc=1; done ;;
  *) echo "usage: tests/gpu/session.sh check|sanitize|train|bench|all"; exit 2 ;;
esac
exit $rc
