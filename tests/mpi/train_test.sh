#!/usr/bin/env bash
# train_test.sh CASE [NP]: one end-to-end case of $BUILD/pftrain (BUILD default build) under
# mpirun, for tests/mpi/run.sh. Exits 0 when the case holds; otherwise says why on stderr,
# exits 1.
# NP 0 means a singleton run (no mpirun). All runs use a tiny GPT-2 (1 layer, 32 wide, 16
# tokens) so a 20-step run takes seconds; the 50257-word LM head is most of the cost.
#
#   reproduce NP     NP ranks at batch 8/NP reproduce the 1-rank losses at batch 8 (rel < 1e-4)
#   resume NP        save at step 5 and 10, resume with train.steps raised to 20: the losses
#                    are the very strings of an uninterrupted 20-step run
#   midrun NP        train.grad_accum=2, checkpoints every 5 steps of a 20-step run (each
#                    written while the next step's first micro-batch is already staged); a run
#                    resumed from step 10's logs the very losses of steps 11-20
#   dropout NP       train.dropout=0.1: NP ranks at batch 8/NP reproduce 1 rank at batch 8
#                    (rel < 1e-4; the masks follow the samples, not the ranks), the losses
#                    differ from those without dropout, and midrun NP holds with dropout
#   kinds NP         resume NP with blocksparse (masks saved in the checkpoint, read by rank 0
#                    and sent to every rank), butterfly and lowrank layers
#   rescale NP       10 steps on 1 rank at batch 8, resumed on NP ranks at batch 8/NP (the same
#                    global batch): the losses follow the uninterrupted 1-rank run (rel < 1e-4);
#                    resuming at another global batch is refused with exit 2
#   sigterm NP       SIGTERM to one rank mid-run: every rank saves, the job exits 75, and the
#                    resumed run matches an uninterrupted one exactly
#   kill9 NP         SIGKILL to one rank: the job ends non-zero within 30 s, no rank is left
#   corrupt          a torn newest checkpoint, then one with a flipped data byte: --resume
#                    auto falls back to the previous good one and says why on stderr
#   diverge NP       a learning rate far too large (at step 2 the loss is still finite but the
#                    gradients are NaN): every rank stops before that update, the job exits 1
#                    without an abort, `latest` names the step before, and every checkpoint
#                    resumes (resuming refuses non-finite ones), so none holds the divergence
#   rankfail NP WHEN the last rank's set-up fails (WHEN = data: its training shard is missing;
#                    early: its memory plan, before the parameter broadcast): the job ends
#                    within 60 s, non-zero, and that rank's own message reaches stderr
#                    as "pftrain[rank R@HOST]: ..."
#   shards NP        tinyshakespeare cut into 3 token shards, data.train a glob of them: NP
#                    ranks with 3 loader threads each reproduce 1 rank loading in the step
#                    (rel < 1e-4); a resume with loader threads is the uninterrupted run's very
#                    losses; a resume over the split plus one more shard is refused with exit 2
#   threads NP       OMP_NUM_THREADS and OMP_WAIT_POLICY unset: rank 0 says how many threads
#                    each rank takes (the node's online cores / NP, at least 1) and that they
#                    wait passively, and each rank's process runs that many; with
#                    OMP_NUM_THREADS set nothing is said and the setting stands
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
PFTRAIN=$BUILD/pftrain
CONFIG=configs/gpt2-tiny-pixelfly.ini
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1)
TINY=(--set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16
      --set train.eval_every=0 --set data.val= --set run.keep_checkpoints=5 --quiet)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pf-train-test.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
tests/make-token-shard.sh "$WORK/train.h5" || exit 1
TINY+=(--set data.train="$WORK/train.h5")

fail() { echo "FAIL: $*" >&2; exit 1; }

# command_for NP OUT_DIR [pftrain flags...]: sets CMD to the run's command line.
command_for() {
  local np=$1 out=$2; shift 2
  CMD=("$PFTRAIN" "$CONFIG" "${TINY[@]}" --set run.out_dir="$out" "$@")
  [ "$np" = 0 ] || CMD=("${MPIRUN[@]}" -np "$np" "${CMD[@]}")
}

# train NP OUT_DIR [pftrain flags...]: runs in the foreground, returns pftrain's (or mpirun's)
# exit code.
train() { command_for "$@"; "${CMD[@]}"; }

# The per-rank batch that keeps the global batch at 8.
batch_for() { echo $((8 / ($1 > 0 ? $1 : 1))); }

# losses RUN_DIR: "STEP LOSS" per training step, LOSS as the trainer printed it.
losses() {
  awk '/"loss":/ { s = $0; sub(/.*"step": /, "", s); sub(/,.*/, "", s)
                   l = $0; sub(/.*"loss": /, "", l); sub(/,.*/, "", l); print s, l }' \
    "$1/metrics.jsonl"
}

# same_losses A B: the two runs logged the same steps with identical loss strings.
same_losses() {
  local a b
  a=$(losses "$1"); b=$(losses "$2")
  [ -n "$a" ] || fail "no losses in $1/metrics.jsonl"
  [ "$a" = "$b" ] || fail "losses differ:$(diff <(echo "$a") <(echo "$b") | head -n 10)"
}

# close_losses A B TOL: same steps, every relative loss difference below TOL.
close_losses() {
  paste -d' ' <(losses "$1") <(losses "$2") | awk -v tol="$3" '
    { n++; d = $2 - $4; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2)
      if ($1 != $3 || r >= tol) { printf "step %s: %s vs step %s: %s (rel %.3g)\n", $1, $2, $3, $4, r; bad = 1 } }
    END { if (n != 20) { print "expected 20 steps, got " n; bad = 1 }; exit bad }' >&2 ||
    fail "loss trajectories of $1 and $2 differ by more than $3"
}

case_reproduce() {
  local np=$1
  train 0 "$WORK/one" --set train.steps=20 --set train.batch_size=8 || fail "1-rank run failed"
  train "$np" "$WORK/many" --set train.steps=20 --set train.batch_size="$(batch_for "$np")" ||
    fail "$np-rank run failed"
  close_losses "$WORK/one" "$WORK/many" 1e-4
}

case_resume() {
  local np=$1 bs; shift
  bs=$(batch_for "$np")
  # A constant rate after warmup, so that raising train.steps changes no earlier step.
  local flags=(--set train.batch_size="$bs" --set train.schedule=constant
               --set train.warmup_steps=5 --set run.checkpoint_every=5 "$@")
  train "$np" "$WORK/whole" "${flags[@]}" --set train.steps=20 || fail "uninterrupted run failed"
  train "$np" "$WORK/split" "${flags[@]}" --set train.steps=10 || fail "first half failed"
  [ "$(cat "$WORK/split/checkpoints/latest")" = ckpt-00000010.h5 ] ||
    fail "latest does not name step 10"
  local out
  out=$(train "$np" "$WORK/split" "${flags[@]}" --set train.steps=20 --resume auto 2>&1) ||
    fail "resumed run failed: $out"
  grep -q "resumed from .*ckpt-00000010.h5 at step 10" <<< "$out" ||
    fail "the resumed run does not say it resumed from step 10: $out"
  same_losses "$WORK/whole" "$WORK/split"
}

case_midrun() {
  local np=$1 bs; shift
  bs=$(batch_for "$np")
  local flags=(--set train.batch_size="$bs" --set train.grad_accum=2 --set train.steps=20
               --set run.checkpoint_every=5 "$@")
  train "$np" "$WORK/whole" "${flags[@]}" || fail "uninterrupted run failed"
  local ckpt=$WORK/whole/checkpoints/ckpt-00000010.h5
  [ -f "$ckpt" ] || fail "no checkpoint at step 10 in $WORK/whole/checkpoints"
  train "$np" "$WORK/from10" "${flags[@]}" --resume "$ckpt" || fail "run resumed from step 10 failed"
  local a b
  a=$(losses "$WORK/whole" | awk '$1 > 10'); b=$(losses "$WORK/from10")
  [ -n "$b" ] || fail "no losses in $WORK/from10/metrics.jsonl"
  [ "$a" = "$b" ] || fail "steps 11-20 differ:$(diff <(echo "$a") <(echo "$b") | head -n 10)"
}

case_dropout() {
  local np=$1
  train 0 "$WORK/plain" --set train.steps=20 --set train.batch_size=8 || fail "run without dropout failed"
  train 0 "$WORK/one" --set train.steps=20 --set train.batch_size=8 --set train.dropout=0.1 ||
    fail "1-rank run with dropout failed"
  train "$np" "$WORK/many" --set train.steps=20 --set train.batch_size="$(batch_for "$np")" \
    --set train.dropout=0.1 || fail "$np-rank run with dropout failed"
  [ "$(losses "$WORK/plain")" != "$(losses "$WORK/one")" ] || fail "train.dropout=0.1 changed no loss"
  close_losses "$WORK/one" "$WORK/many" 1e-4
  case_midrun "$np" --set train.dropout=0.1
}

case_kinds() {
  case_resume "$1" --set "pixelfly.attn_qkv=blocksparse bs=4 blocks=2 rank=4 seed=7" \
    --set "pixelfly.attn_proj=butterfly bs=4" --set "pixelfly.mlp_fc1=lowrank rank=8" \
    --set "pixelfly.mlp_fc2=blocksparse bs=8 blocks=3"
}

case_rescale() {
  local np=$1 out
  local flags=(--set train.schedule=constant --set train.warmup_steps=5 --set run.checkpoint_every=5)
  train 0 "$WORK/whole" "${flags[@]}" --set train.batch_size=8 --set train.steps=20 ||
    fail "uninterrupted 1-rank run failed"
  train 0 "$WORK/split" "${flags[@]}" --set train.batch_size=8 --set train.steps=10 ||
    fail "first half (1 rank) failed"
  # Another global batch cannot continue the data order: refused, exit 2.
  out=$(train "$np" "$WORK/split" "${flags[@]}" --set train.batch_size=1 --set train.steps=20 \
        --resume auto 2>&1)
  [ $? -eq 2 ] && grep -q "global batch of 8" <<< "$out" ||
    fail "a resume at another global batch was not refused with exit 2: $out"
  out=$(train "$np" "$WORK/split" "${flags[@]}" --set train.batch_size="$(batch_for "$np")" \
        --set train.steps=20 --resume auto 2>&1) || fail "resumed $np-rank run failed: $out"
  grep -q "resumed from .*ckpt-00000010.h5 at step 10" <<< "$out" ||
    fail "the resumed run does not say it resumed from step 10: $out"
  close_losses "$WORK/whole" "$WORK/split" 1e-4
}

case_shards() {
  local np=$1 out data=${PIXELFLY_DATA:-../shared/data}
  split -n l/3 -d "$data/tinyshakespeare/input.txt" "$WORK/piece-"
  for p in "$WORK"/piece-0[0-2]; do
    "$BUILD/pfdata" text --quiet --vocab "$data/gpt2" --out "$p.h5" "$p" || fail "pfdata text $p"
  done
  local split=(--set data.train="$WORK/piece-*.h5")
  train 0 "$WORK/one" "${split[@]}" --set data.workers=0 --set train.steps=20 \
    --set train.batch_size=8 || fail "1-rank run loading in the step failed"
  train "$np" "$WORK/many" "${split[@]}" --set data.workers=3 --set data.prefetch=3 \
    --set train.steps=20 --set train.batch_size="$(batch_for "$np")" ||
    fail "$np-rank run with loader threads failed"
  close_losses "$WORK/one" "$WORK/many" 1e-4
  local flags=("${split[@]}" --set data.workers=2 --set train.batch_size="$(batch_for "$np")"
               --set train.schedule=constant --set train.warmup_steps=5 --set run.checkpoint_every=5)
  train "$np" "$WORK/whole" "${flags[@]}" --set train.steps=20 || fail "uninterrupted run failed"
  train "$np" "$WORK/half" "${flags[@]}" --set train.steps=10 || fail "first half failed"
  out=$(train "$np" "$WORK/half" "${flags[@]}" --set train.steps=20 --resume auto 2>&1) ||
    fail "resumed run failed: $out"
  same_losses "$WORK/whole" "$WORK/half"
  out=$(train "$np" "$WORK/half" "${flags[@]}" --set data.train="$WORK/piece-*.h5, $WORK/train.h5" \
        --set train.steps=30 --resume auto 2>&1)
  [ $? -eq 2 ] && grep -q "items of the training split but data.train" <<< "$out" ||
    fail "a resume over another split was not refused with exit 2: $out"
}

# rank_pids LAUNCHER_PID OUT_DIR: the pftrain processes of this run (the launcher itself when
# it is pftrain, else its pftrain children).
rank_pids() {
  if [ "$NP" = 0 ]; then echo "$1"; else pgrep -P "$1" -f "run.out_dir=$2"; fi
}

# start_bg OUT_DIR [flags...]: starts a run in the background, waits until it has logged 3
# steps, sets LAUNCHER and VICTIM (the last rank's pid).
start_bg() {
  local out=$1; shift
  command_for "$NP" "$out" "$@"
  "${CMD[@]}" > "$WORK/bg.out" 2>&1 &
  LAUNCHER=$!
  for _ in $(seq 300); do
    [ "$(cat "$out/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
    kill -0 "$LAUNCHER" 2>/dev/null || fail "the run ended early: $(cat "$WORK/bg.out")"
    sleep 0.1
  done
  VICTIM=$(rank_pids "$LAUNCHER" "$out" | tail -n 1)
  [ -n "$VICTIM" ] || fail "no pftrain rank process found under pid $LAUNCHER"
}

case_sigterm() {
  NP=$1
  local flags=(--set train.batch_size="$(batch_for "$NP")" --set train.steps=60) rc
  train "$NP" "$WORK/whole" "${flags[@]}" || fail "uninterrupted run failed"
  start_bg "$WORK/split" "${flags[@]}"
  kill -TERM "$VICTIM"
  wait "$LAUNCHER"; rc=$?
  # Open MPI 4.1's mpirun returns the first non-zero rank exit code, so 75 comes through.
  [ $rc -eq 75 ] || fail "exit code $rc after SIGTERM, expected 75: $(cat "$WORK/bg.out")"
  grep -q "signal received: saved step" "$WORK/bg.out" || fail "no save message: $(cat "$WORK/bg.out")"
  local saved
  saved=$(sed -n 's/^ckpt-0*\([0-9]*\)\.h5$/\1/p' "$WORK/split/checkpoints/latest")
  [ -n "$saved" ] && [ "$saved" -lt 60 ] || fail "latest does not name a mid-run step"
  [ "$(losses "$WORK/split" | wc -l)" -eq "$saved" ] || fail "metrics do not end at step $saved"
  train "$NP" "$WORK/split" "${flags[@]}" --resume auto || fail "resumed run failed"
  same_losses "$WORK/whole" "$WORK/split"
}

case_kill9() {
  NP=$1
  start_bg "$WORK/run" --set train.batch_size="$(batch_for "$NP")" --set train.steps=100000
  local start=$SECONDS rc
  kill -KILL "$VICTIM"
  while kill -0 "$LAUNCHER" 2>/dev/null && [ $((SECONDS - start)) -lt 30 ]; do sleep 0.2; done
  if kill -0 "$LAUNCHER" 2>/dev/null; then
    pkill -KILL -P "$LAUNCHER"; kill -KILL "$LAUNCHER"
    fail "the job still runs 30 s after one rank was killed"
  fi
  wait "$LAUNCHER"; rc=$?
  [ $rc -ne 0 ] || fail "the job exited 0 after a rank was killed"
  ! pgrep -f "run.out_dir=$WORK/run" > /dev/null || fail "ranks left behind: $(pgrep -af "run.out_dir=$WORK/run")"
  echo "job ended with exit code $rc $((SECONDS - start)) s after the kill"
}

# flip_byte FILE OFFSET: inverts the bits of one byte in place.
flip_byte() {
  local v
  v=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((255 - v)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# resume_says RUN_DIR STEP_EXPECTED REGEX: --resume auto resumes from STEP_EXPECTED and its
# stderr matches REGEX.
resume_says() {
  local err
  train 0 "$1" --set train.steps=10 --set run.checkpoint_every=5 --resume auto \
    > "$WORK/resume.out" 2> "$WORK/resume.err" || fail "resume failed: $(cat "$WORK/resume.err")"
  err=$(cat "$WORK/resume.err")
  grep -Eq -- "$3" <<< "$err" || fail "stderr does not match /$3/: $err"
  grep -q "resumed from .*ckpt-0*$2.h5 at step $2" "$WORK/resume.out" ||
    fail "did not resume from step $2: $(cat "$WORK/resume.out")"
}

case_corrupt() {
  local run=$WORK/run ck=$WORK/run/checkpoints size
  train 0 "$run" --set train.steps=10 --set run.checkpoint_every=5 || fail "first run failed"
  # A write torn by a crash: latest names a file cut in half.
  cp "$ck/ckpt-00000010.h5" "$WORK/good10.h5"
  size=$(stat -c %s "$ck/ckpt-00000010.h5")
  truncate -s $((size / 2)) "$ck/ckpt-00000010.h5"
  resume_says "$run" 5 "skipped: .*ckpt-00000010\.h5.*(truncated|corrupt)"
  # One flipped bit pattern in the parameter data: the fletcher32 checksum must catch it.
  cp "$WORK/good10.h5" "$ck/ckpt-00000010.h5"
  echo ckpt-00000010.h5 > "$ck/latest"
  flip_byte "$ck/ckpt-00000010.h5" $((size / 2))
  resume_says "$run" 5 "skipped: .*ckpt-00000010\.h5.*checksum mismatch"
}

case_diverge() {
  local np=$1 out rc step latest f s
  local flags=(--set train.batch_size="$(batch_for "$np")" --set train.lr=3e5
               --set train.warmup_steps=0 --set run.checkpoint_every=1 --set run.keep_checkpoints=0
               --set train.steps=12)
  out=$(train "$np" "$WORK/run" "${flags[@]}" 2>&1); rc=$?
  [ $rc -eq 1 ] || fail "exit code $rc, expected 1: $out"
  ! grep -q MPI_ABORT <<< "$out" || fail "the job was aborted rather than ended: $out"
  step=$(sed -n 's/.*training diverged at step \([0-9]*\):.*/\1/p' <<< "$out" | head -n 1)
  [ -n "$step" ] || fail "no 'training diverged at step N' message: $out"
  [ "$(grep -c "training diverged at step" <<< "$out")" -eq 1 ] || fail "said by more than rank 0: $out"
  latest=$(cat "$WORK/run/checkpoints/latest")
  [ "$latest" = "$(printf 'ckpt-%08d.h5' $((step - 1)))" ] ||
    fail "diverged at step $step, but latest names $latest"
  grep -q -- "--resume .*$latest" <<< "$out" || fail "the message does not name $latest: $out"
  for f in "$WORK"/run/checkpoints/ckpt-*.h5; do
    s=$(basename "$f" .h5); s=$((10#${s#ckpt-}))
    [ "$s" -lt "$step" ] || fail "a checkpoint of the diverged step or later: $f"
    # One rank at the run's global batch of 8, so the data position carries over.
    out=$(train 0 "$WORK/run" "${flags[@]}" --set train.batch_size=8 --set train.steps="$s" \
          --resume "$f" 2>&1) ||
      fail "resuming from $f (finite values only) failed: $out"
    grep -q "nothing to do" <<< "$out" || fail "resuming from $f: $out"
  done
}

case_rankfail() {
  local np=$1 when=$2 last=$(($1 - 1)) out rc start=$SECONDS
  case $when in
    data) export PF_BAD_FLAGS="--set data.train=$WORK/missing.h5"
          local want="cannot open .*missing\.h5" ;;
    early) export PF_BAD_FLAGS="--set train.batch_size=65536 --set model.seq_len=1024"
           local want="needs .* of host memory" ;;
    *) fail "rankfail: WHEN is data or early" ;;
  esac
  export PF_BAD_RANK=$last
  # The last rank runs with PF_BAD_FLAGS added; every other rank as usual.
  cat > "$WORK/rank.sh" <<'WRAP'
#!/usr/bin/env bash
if [ "${OMPI_COMM_WORLD_RANK:-0}" = "$PF_BAD_RANK" ]; then exec "$@" $PF_BAD_FLAGS; fi
exec "$@"
WRAP
  out=$(timeout -k 5 60 "${MPIRUN[@]}" -x PF_BAD_RANK -x PF_BAD_FLAGS -np "$np" \
        bash "$WORK/rank.sh" "$PFTRAIN" "$CONFIG" "${TINY[@]}" --set run.out_dir="$WORK/run" \
        --set train.batch_size="$(batch_for "$np")" --set train.steps=5 2>&1); rc=$?
  [ $rc -ne 124 ] && [ $((SECONDS - start)) -lt 60 ] || fail "the job hung (killed after 60 s): $out"
  [ $rc -ne 0 ] || fail "the job exited 0: $out"
  grep -Eq "pftrain\[rank $last@[^]]+\]: .*$want" <<< "$out" ||
    fail "rank $last's own error does not reach stderr with its rank and host: $out"
  echo "job ended with exit code $rc $((SECONDS - start)) s after the start"
}

# threads_of PID: the number of threads of a process (OpenMP's pool once it ran a region).
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }

case_threads() {
  local np=$1 cores want out pids p n
  cores=$(nproc --all)
  want=$((cores / np)); [ $want -ge 1 ] || want=1
  # Long enough to look at the running ranks: an effectively endless run, stopped by SIGTERM.
  env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY "${MPIRUN[@]}" -np "$np" "$PFTRAIN" "$CONFIG" \
    "${TINY[@]}" --set run.out_dir="$WORK/run" --set train.steps=100000 \
    --set run.checkpoint_every=0 > "$WORK/out" 2>&1 &
  local job=$!
  for _ in $(seq 100); do
    pids=$(pgrep -f "$PFTRAIN $CONFIG" | while read -r p; do
             [ "$(ps -o comm= -p "$p")" = pftrain ] && echo "$p"; done)
    [ "$(wc -w <<< "$pids")" -eq "$np" ] && grep -q '"step"' "$WORK/run/metrics.jsonl" 2>/dev/null &&
      break
    sleep 0.2
  done
  for p in $pids; do
    tr '\0' '\n' < "/proc/$p/environ" | grep -qx 'OMP_WAIT_POLICY=passive' ||
      { kill $pids; fail "rank process $p does not run with OMP_WAIT_POLICY=passive"; }
    n=$(threads_of "$p")
    # OpenMP's threads plus MPI's progress threads and the loader thread (at most a few);
    # never the node's cores x NP.
    [ "$n" -ge "$want" ] && [ "$n" -le $((want + 4)) ] ||
      { kill $pids; fail "rank process $p runs $n threads, want $want OpenMP threads (+ MPI's)"; }
  done
  kill $pids; wait $job
  out=$(cat "$WORK/out")
  grep -q "OMP_NUM_THREADS unset: $want threads\{0,1\} per rank .*$np ranks\{0,1\} on this node), OMP_WAIT_POLICY=passive" \
    <<< "$out" || fail "no thread note naming $want per rank: $out"
  [ "$(grep -c 'OMP_NUM_THREADS unset' <<< "$out")" -eq 1 ] || fail "the note is not printed once: $out"
  out=$(OMP_NUM_THREADS=1 "${MPIRUN[@]}" -np "$np" "$PFTRAIN" "$CONFIG" "${TINY[@]}" \
        --set run.out_dir="$WORK/run2" --set train.steps=1 2>&1) || fail "run with OMP_NUM_THREADS=1 failed: $out"
  ! grep -q 'OMP_NUM_THREADS unset' <<< "$out" || fail "a note although OMP_NUM_THREADS is set: $out"
}

NP=0
case "${1:-}" in
  threads) [ $# -eq 2 ] || fail "usage: $0 $1 NP"; case_threads "$2" ;;
  reproduce|resume|midrun|dropout|kinds|rescale|shards|sigterm|kill9|diverge) [ $# -eq 2 ] || fail "usage: $0 $1 NP"; "case_$1" "$2" ;;
  rankfail) [ $# -eq 3 ] || fail "usage: $0 rankfail NP data|early"; case_rankfail "$2" "$3" ;;
  corrupt) case_corrupt ;;
  *) fail "usage: $0 reproduce|resume|kinds|rescale|shards|sigterm|kill9|diverge|threads NP | rankfail NP WHEN | corrupt" ;;
esac
