#!/usr/bin/env bash
# MPI tests (`make test-mpi`): runs the communicator test program and the trainer, one PASS/FAIL
# line per case, then "N passed, N failed"; exits non-zero when any case failed. The
# command-line tools are checked here too (the suite that runs the built binaries): pftrain
# below, pfbench at the end. Builds nothing: `make test-mpi` builds the tools and
# $BUILD/tests/mpi/comm_test first; by hand, `make BUILD=DIR test-mpi` or
# `make BUILD=DIR DIR/pftrain DIR/pfdata DIR/pfbench DIR/tests/mpi/comm_test`, then
# `BUILD=DIR tests/mpi/run.sh` (BUILD defaults to build).
#
# To add a case: one `run_case NAME EXPECT LIMIT_S COMMAND...` line in the list at the bottom.
# EXPECT is "ok" (exit 0), "ok:REGEX" (exit 0, output matching the extended REGEX), or
# "fail:REGEX" (non-zero exit, output matching REGEX). Either way, a case still running after
# LIMIT_S seconds is killed and fails.
set -u
cd "$(dirname "$0")/../.." || exit 1
export BUILD=${BUILD:-build}

missing=()
for p in pftrain pfdata pfbench tests/mpi/comm_test; do
  [ -x "$BUILD/$p" ] || missing+=("$BUILD/$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "FAIL: missing ${missing[*]}: run \`make BUILD=$BUILD test-mpi\`"
  echo "0 passed, 1 failed"; exit 1
fi

# Open MPI refuses root without these; the test machines run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# 4 ranks on a 2-core machine: oversubscribe, and let idle ranks yield the CPU.
MPIRUN=(mpirun --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1)

passed=0; failed=0; failed_names=()
run_case() {
  local name=$1 expect=$2 limit=$3; shift 3
  local out rc ok=0 why start=$SECONDS
  out=$(timeout -k 10 "$limit" "$@" 2>&1); rc=$?
  # 124: timeout's own exit; 137 also when it had to SIGKILL (but a job whose rank was
  # killed exits 137 too, so only count it as a time-out when the time is up).
  if [ $rc -eq 124 ] || { [ $rc -eq 137 ] && [ $((SECONDS - start)) -ge "$limit" ]; }; then
    why="timed out after ${limit}s"
  elif [ "$expect" = ok ]; then
    if [ $rc -eq 0 ]; then ok=1; else why="exit code $rc, expected 0"; fi
  elif [ "${expect%%:*}" = ok ]; then
    if [ $rc -ne 0 ]; then why="exit code $rc, expected 0"
    elif grep -Eq -- "${expect#ok:}" <<< "$out"; then ok=1
    else why="exit code 0, but the output does not match /${expect#ok:}/"; fi
  else
    if [ $rc -eq 0 ]; then why="exit code 0, expected a failure"
    elif grep -Eq -- "${expect#fail:}" <<< "$out"; then ok=1
    else why="exit code $rc, but the output does not match /${expect#fail:}/"; fi
  fi
  if [ $ok -eq 1 ]; then
    passed=$((passed+1)); echo "PASS $name ($((SECONDS - start)) of ${limit} s)"
  else
    failed=$((failed+1)); failed_names+=("$name"); echo "FAIL $name: $why"
    tail -n 20 <<< "$out" | sed 's/^/    | /'
  fi
}

T=$BUILD/tests/mpi/comm_test
ngpu=0
# A CUDA build links NCCL; only then can the NCCL cases run.
if ldd "$T" 2>/dev/null | grep -q libnccl && command -v nvidia-smi >/dev/null; then
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
fi

run_case "comm mpi singleton (no mpirun)" ok 60 "$T" mpi
run_case "comm mpi np=2"                  ok 120 "${MPIRUN[@]}" -np 2 "$T" mpi
run_case "comm mpi np=4"                  ok 180 "${MPIRUN[@]}" -np 4 "$T" mpi
run_case "comm abort ends the job"        "fail:\[rank 3@[^]]+\]: comm_test: deliberate abort" 60 \
  "${MPIRUN[@]}" -np 4 "$T" mpi abort
run_case "comm dead peer ends the job"    "fail:signal 9" 90 "${MPIRUN[@]}" -np 2 "$T" mpi die
if [ "$ngpu" -ge 1 ]; then
  run_case "comm nccl np=1"               ok 120 "${MPIRUN[@]}" -np 1 "$T" nccl
fi
if [ "$ngpu" -ge 2 ]; then
  run_case "comm nccl np=2"               ok 180 "${MPIRUN[@]}" -np 2 "$T" nccl
else
  # Fewer GPUs than ranks (or none, or a CPU-only build): a clear error on every rank, no hang.
  run_case "comm nccl np=2 without a GPU per rank is refused" "fail:comm=mpi" 120 \
    "${MPIRUN[@]}" -np 2 "$T" nccl
fi

# The trainer end to end (tests/mpi/train_test.sh says what each case checks).
TT=tests/mpi/train_test.sh
run_case "train np=2 reproduces np=1 at global batch 8" ok 120 bash "$TT" reproduce 2
run_case "train np=4 reproduces np=1 at global batch 8" ok 120 bash "$TT" reproduce 4
run_case "train resume is bit-identical (singleton)"    ok 120 bash "$TT" resume 0
run_case "train resume is bit-identical np=2"           ok 120 bash "$TT" resume 2
run_case "train resume from a mid-run checkpoint, grad_accum 2, np=2" ok 120 bash "$TT" midrun 2
run_case "train with dropout np=2 reproduces np=1; resume mid-run" ok 180 bash "$TT" dropout 2
run_case "train resume of every layer kind np=2"        ok 120 bash "$TT" kinds 2
run_case "train resume from 1 rank on 2 at the same global batch" ok 120 bash "$TT" rescale 2
run_case "train on 3 shards with loader threads np=2 = np=1 in the step; exact resume" ok 180 \
  bash "$TT" shards 2
run_case "train SIGTERM saves, exits 75 (singleton)"    ok 120 bash "$TT" sigterm 0
run_case "train SIGTERM to one rank: all save, 75 np=2" ok 120 bash "$TT" sigterm 2
run_case "train kill -9 of one rank ends the job np=2"  ok 90  bash "$TT" kill9 2
run_case "train resume skips torn/corrupt checkpoints"  ok 90  bash "$TT" corrupt
run_case "train divergence stops before the update"     ok 90  bash "$TT" diverge 0
run_case "train divergence: all ranks stop, np=2"       ok 90  bash "$TT" diverge 2
run_case "train one rank's missing data is named, np=4" ok 90  bash "$TT" rankfail 4 data
run_case "train one rank fails before the broadcast np=2: no hang" ok 90 \
  bash "$TT" rankfail 2 early
run_case "train threads: unset OMP_NUM_THREADS shares the cores, np=2" ok 90 bash "$TT" threads 2

run_case "sweep 2x2: interrupted, resumed, collected"   ok 300 bash tests/sweep_test.sh
run_case "prepare-wikitext103: shards, rerun skips, trains" ok 120 bash tests/wikitext103_test.sh

# pfbench kernels on the CPU backend (no MPI): a tiny run prints every column of a dS row
# down to the roofline bound ("F"/"M" and "% bound"); an unknown option is refused by name.
PB=$BUILD/pfbench
BOUND_ROW='dS +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+x +[0-9]+% +[0-9.]+ [FM] +[0-9]+%'
run_case "pfbench kernels prints the bound column" "ok:$BOUND_ROW" 60 \
  env OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 "$PB" kernels --tokens 64 --shapes 64x128 \
  --bs 4 --nf 1 --rank 0,4 --repeat 1
KIND_ROW='butterfly +bs=8, 3 factors +[0-9]+ +[0-9.]+( +[0-9.]+){4} +[0-9.]+x +[0-9.]+ [FM]+ +[0-9]+%'
run_case "pfbench kinds prints a row per kind" "ok:$KIND_ROW" 60 \
  env OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 "$PB" kinds --tokens 64 --shapes 64x128 \
  --bs 4 --nf 1 --rank 4 --repeat 1
# pfbench data on a token shard: the loader rows (in the step and by loader threads) and the
# step time with loaded against synthetic data.
PBD=$(mktemp -d "${TMPDIR:-/tmp}/pf-pbdata.XXXXXX")
tests/make-token-shard.sh "$PBD/t.h5" >/dev/null 2>&1
run_case "pfbench data prints loader rows and the step ratio" \
  "ok:loaded / synthetic step time: [0-9.]+" 120 \
  env OMP_NUM_THREADS=2 "$PB" data configs/gpt2-tiny-pixelfly.ini --workers 1,2 --batches 3 \
  --steps 2 --set data.train="$PBD/t.h5" --set model.n_layer=1 --set model.n_embd=32 \
  --set model.n_head=2 --set model.seq_len=16
rm -rf "$PBD"
run_case "pfbench kernels refuses a bad option by name" "fail:unknown option '--bogus'" 30 \
  "$PB" kernels --bogus 1
run_case "pfbench kernels refuses a bad value by name" "fail:bad value 'x' for option '--tokens'" \
  30 "$PB" kernels --tokens x

[ $failed -eq 0 ] || echo "failed cases: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
