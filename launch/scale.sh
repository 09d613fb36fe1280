#!/usr/bin/env bash
# scale.sh [--weak|--strong] [--ranks "1 2 4"] [--steps K] [--batch B] CONFIG [pftrain flags...]
# Runs CONFIG for K steps at each rank count under mpirun and prints median step time,
# throughput and scaling efficiency, read from each run's metrics.jsonl (the first 2 steps
# are warm-up and skipped).
#   weak (default): B samples per rank (train.batch_size = B), so the global batch grows.
#   strong:         B samples in all (train.batch_size = B / ranks; B must divide evenly).
# Efficiency = (throughput / ranks) relative to the first rank count's. Runs go to
# SCALE_OUT (default runs/scale) and start fresh each time.
#   launch/scale.sh --strong --batch 8 --steps 20 configs/gpt2-tiny-pixelfly.ini
set -u
cd "$(dirname "$0")/.." || exit 1
mode=weak ranks="1 2 4" steps=20 batch=8
while [ $# -gt 0 ]; do
  case $1 in
    --weak|--strong) mode=${1#--}; shift ;;
    --ranks) ranks=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n '2,3p' "$0" | sed 's/^# /usage: /' >&2; exit 64; }
[ "$steps" -gt 2 ] || { echo "$0: --steps $steps: need more than the 2 warm-up steps" >&2; exit 64; }
CONFIG=$1; shift
OUT=${SCALE_OUT:-runs/scale}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT" || exit 1

# stats METRICS: "MEDIAN_STEP_MS MEDIAN_RATE UNIT" over the training steps after step 2.
stats() {
  awk '/"step_ms"/ {
         s = $0; sub(/.*"step": /, "", s); sub(/,.*/, "", s); if (s + 0 <= 2) next
         t = $0; sub(/.*"step_ms": /, "", t); sub(/[,}].*/, "", t)
         r = $0; unit = (r ~ /tokens_per_s/) ? "tok/s" : "img/s"
         sub(/.*_per_s": /, "", r); sub(/,.*/, "", r); n++; ms[n] = t; rate[n] = r }
       function median(a, n,   i, j, x) {
         for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
         return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
       END { if (n) print median(ms, n), median(rate, n), unit }' "$1"
}

printf '%-6s %6s %8s %14s %16s %10s\n' ranks batch global "step ms (med)" "throughput" efficiency
base=""
for np in $ranks; do
  if [ "$mode" = strong ]; then
    [ $((batch % np)) -eq 0 ] || { echo "$0: --batch $batch does not split over $np ranks" >&2; exit 64; }
    b=$((batch / np))
  else
    b=$batch
  fi
  dir=$OUT/$mode-np$np
  rm -rf "$dir"
  threads=$(( $(nproc) / np )); [ "$threads" -ge 1 ] || threads=1
  if ! OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} mpirun --oversubscribe --bind-to none \
       -np "$np" "${BUILD:-build}/pftrain" "$CONFIG" "$@" --set run.out_dir="$dir" \
       --set train.batch_size="$b" --set train.steps="$steps" --set train.eval_every=0 \
       --set data.val= --quiet > "$dir.log" 2>&1; then
    echo "$0: the $np-rank run failed; see $dir.log" >&2; tail -n 5 "$dir.log" >&2; exit 1
  fi
  read -r ms rate unit <<< "$(stats "$dir/metrics.jsonl")"
  per_rank=$(awk -v r="$rate" -v n="$np" 'BEGIN { print r / n }')
  [ -n "$base" ] || base=$per_rank
  printf '%-6s %6s %8s %14.1f %10.0f %-5s %9.1f%%\n' "$np" "$b" $((b * np)) "$ms" "$rate" \
    "$unit" "$(awk -v p="$per_rank" -v b="$base" 'BEGIN { print 100 * p / b }')"
done
