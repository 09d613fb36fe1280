#!/usr/bin/env bash
# Slurm test (`make test-slurm`): a throw-away one-node Slurm cluster on localhost runs
# launch/slurm/pftrain.sbatch for real. Installs slurmctld, slurmd, the client and munge when
# missing (apt-get; needs root), writes a minimal slurm.conf into a temp dir, starts munged,
# slurmctld and slurmd, then:
#   1. a short job runs to the end: checkpoint, `latest`, metrics and summary exist;
#   2. a longer job gets SIGUSR1 (as at the time limit): the ranks save, the script exits 75
#      into `scontrol requeue`, and the requeued job resumes and finishes the run;
#   3. launch/sweep.sh --slurm runs a 2-point sweep as an array job, and --collect tables it.
# Stops the daemons it started on exit. Prints "N passed, N failed"; non-zero if any failed.
# Knobs: PF_NTASKS (ranks, default 1), PF_GPUS (GPUs per node, default 0), PF_CONFIG.
# Builds nothing: `make test-slurm` builds the tools first; by hand, `make BUILD=DIR` (or just
# DIR/pftrain and DIR/pfdata), then `BUILD=DIR tests/slurm/run.sh` (BUILD defaults to build).
set -u
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
export BUILD=${BUILD:-build}
PF_NTASKS=${PF_NTASKS:-1}
PF_GPUS=${PF_GPUS:-0}
PF_CONFIG=${PF_CONFIG:-configs/gpt2-tiny-pixelfly.ini}
TINY="--set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16"
TINY+=" --set train.eval_every=0 --set data.val= --set train.batch_size=4 --quiet"

passed=0; failed=0
pass() { passed=$((passed+1)); echo "PASS $1"; }
fail() { failed=$((failed+1)); echo "FAIL $1"; shift; [ $# -eq 0 ] || sed 's/^/    | /' <<< "$*"; }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

for p in pftrain pfdata; do
  [ -x "$BUILD/$p" ] || { fail "no $BUILD/$p: run \`make BUILD=$BUILD test-slurm\`"; finish; }
done

# ---- install ---------------------------------------------------------------------------------
. tests/slurm/lib.sh
out=$(slurm_install) || { fail "install" "$out"; finish; }

# ---- a one-node cluster ----------------------------------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/pf-slurm.XXXXXX")
tests/make-token-shard.sh "$T/train.h5" || exit 1
TINY+=" --set data.train=$T/train.h5"
chmod 755 "$T"
export SLURM_CONF=$T/slurm.conf
daemons=()
cleanup() {
  local p
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in "${daemons[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

NODE=$(hostname -s)
CPUS=$(nproc)
slurm_conf_common "$T" > "$SLURM_CONF"
cat >> "$SLURM_CONF" <<EOF
ClusterName=pftest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmdSpoolDir=$T/spool
SlurmdPidFile=$T/slurmd.pid
SlurmdLogFile=$T/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
mkdir -p "$T/spool"
# Not in $(...): it records the daemons' pids in this shell's array.
slurm_daemons "$T" > "$T/daemons.err" ||
  { fail "start munged and slurmctld" "$(cat "$T/daemons.err")"; finish; }
slurmd > "$T/slurmd.out" 2>&1 || { fail "start slurmd" "$(cat "$T/slurmd.out" "$T/slurmd.log")"; finish; }
sleep 1
[ -f "$T/slurmd.pid" ] && daemons+=("$(cat "$T/slurmd.pid")")

state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null)
  case $state in idle*|mix*|alloc*) break ;; esac
  sleep 1
done
case $state in
  idle*|mix*|alloc*) pass "slurm cluster up ($NODE, $CPUS CPUs, node $state)" ;;
  *) fail "slurm cluster up: node state '$state' after 60 s" \
       "$(tail -n 15 "$T/slurmctld.log" "$T/slurmd.log" 2>&1)"; finish ;;
esac

# ---- jobs ------------------------------------------------------------------------------------

# submit NAME RUN_DIR PF_ARGS: sets JOB; the job log is $T/NAME.out.
submit() {
  local gpus=()
  [ "$PF_GPUS" -gt 0 ] && gpus=(--gpus-per-node="$PF_GPUS")
  # The script asks for GPUs by default; a CPU-only test node has none to give.
  local script=$T/pftrain.sbatch
  if [ "$PF_GPUS" -gt 0 ]; then script=launch/slurm/pftrain.sbatch
  else grep -v '^#SBATCH --gpus-per-node' launch/slurm/pftrain.sbatch > "$script"; fi
  JOB=$(PF_REPO=$REPO PF_CONFIG=$PF_CONFIG PF_RUN_DIR=$2 PF_ARGS=$3 PF_LAUNCHER=${PF_LAUNCHER:-} PF_BIN=$BUILD/pftrain \
        OMP_NUM_THREADS=1 sbatch --parsable --job-name="$1" --nodes=1 \
        --ntasks-per-node="$PF_NTASKS" --cpus-per-task=1 --time=10 "${gpus[@]}" \
        --output="$T/$1.out" "$script" 2>&1) || { echo "$JOB"; return 1; }
}

# Case 1: a short run to the end.
RUN1=$T/run-short
if submit short "$RUN1" "$TINY --set train.steps=20"; then
  st=$(wait_done "$JOB" 120)
  if [ "$st" = COMPLETED ] && [ -f "$RUN1/checkpoints/latest" ] &&
     [ -f "$RUN1/checkpoints/$(cat "$RUN1/checkpoints/latest")" ] &&
     [ "$(grep -c '"loss"' "$RUN1/metrics.jsonl" 2>/dev/null)" = 20 ] && [ -f "$RUN1/summary.json" ]; then
    pass "sbatch pftrain.sbatch: 20 steps, checkpoint and metrics (job $JOB)"
  else
    fail "sbatch pftrain.sbatch: job $JOB ended $st" "$(cat "$T/short.out" 2>&1; ls -R "$RUN1" 2>&1)"
  fi
else
  fail "sbatch pftrain.sbatch: submit" "$JOB"
fi

# Case 2: SIGUSR1 as at the time limit, then the requeue and the resumed run.
RUN2=$T/run-requeue
STEPS=200
if submit requeue "$RUN2" "$TINY --set train.steps=$STEPS --set run.checkpoint_every=0"; then
  for _ in $(seq 120); do
    [ "$(cat "$RUN2/metrics.jsonl" 2>/dev/null | wc -l)" -ge 10 ] && break
    sleep 0.5
  done
  scancel --batch --signal=USR1 "$JOB"
  st=$(wait_done "$JOB" 240)
  log=$(cat "$T/requeue.out" 2>&1)
  steps=$(grep -c '"loss"' "$RUN2/metrics.jsonl" 2>/dev/null)
  if [ "$st" = COMPLETED ] && grep -q "launcher exited with 75" <<< "$log" &&
     grep -q "requeueing job $JOB" <<< "$log" && grep -q "resumed from .* at step" <<< "$log" &&
     [ "$steps" = "$STEPS" ] && [ "$(grep -c '"step": 1,' "$RUN2/metrics.jsonl")" = 1 ]; then
    pass "SIGUSR1 saves, exits 75, requeues and resumes to step $STEPS (job $JOB)"
  else
    fail "SIGUSR1/requeue: job $JOB ended $st with $steps logged steps" "$log"
  fi
else
  fail "SIGUSR1/requeue: submit" "$JOB"
fi

# Case 3: a sweep as an array job (two seeds), then its collection.
SW=$T/sweep
# shellcheck disable=SC2086 # TINY is a list of flags
out=$(OMP_NUM_THREADS=1 launch/sweep.sh "$PF_CONFIG" --out "$SW" --grid 'train.seed=1,2' --slurm \
      -- $TINY --set train.steps=10 2>&1)
AJOB=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' <<< "$out")
if [ -n "$AJOB" ]; then
  for _ in $(seq 180); do
    squeue -h -j "$AJOB" 2>/dev/null | grep -q . || break
    sleep 1
  done
  col=$(launch/sweep.sh --collect "$SW" 2>&1)
  if [ -f "$SW/000/done" ] && [ -f "$SW/001/done" ] && grep -q "2 of 2 points done" <<< "$col" &&
     grep -q ',2,val_ppl,' "$SW/results.csv"; then
    pass "sweep.sh --slurm: 2 points as array job $AJOB, collected"
  else
    fail "sweep.sh --slurm: array job $AJOB" "$col" "$(cat "$SW"/slurm-* "$SW"/00?/log 2>&1 | tail -n 20)"
  fi
else
  fail "sweep.sh --slurm: submit" "$out"
fi
finish
