#!/usr/bin/env bash
# sweep_test.sh: launch/sweep.sh end to end on a tiny GPT-2 (1 layer, 32 wide, 16 tokens,
# 30 steps with a checkpoint every 5). A 2 x 2 sweep (two layer kinds x two seeds) is
# interrupted (SIGKILL of the sweep and its pftrain) while its third point runs, then resumed
# with the same command: the two finished points are not run again, the interrupted one
# continues from its checkpoint, and the collected tables hold every point and one row per
# kind with the mean and std of its two seeds. Also: a rerun into the directory with another
# grid is refused; a failing point is reported and the others still run. Exits 0 when all
# hold; otherwise says why on stderr, exits 1.
set -u
cd "$(dirname "$0")/.." || exit 1
export BUILD=${BUILD:-build} OMP_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pf-sweep-test.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
tests/make-token-shard.sh "$WORK/train.h5" || exit 1

SWEEP=(launch/sweep.sh configs/gpt2-tiny-pixelfly.ini --out "$WORK/sweep"
       --grid 'pixelfly.mlp_fc1,pixelfly.mlp_fc2=bs=4 nf=1 rank=4|butterfly bs=4'
       --grid 'train.seed=1,2'
       -- --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16
          --set train.steps=30 --set train.batch_size=4 --set train.eval_every=0
          --set train.eval_batches=2 --set data.train="$WORK/train.h5"
          --set data.val="$WORK/train.h5" --set run.checkpoint_every=5 --quiet)

# 1. Interrupted while point 002 runs (after its first checkpoint).
setsid "${SWEEP[@]}" > "$WORK/first.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -f "$WORK/sweep/002/checkpoints/latest" ] && break
  kill -0 $pid 2> /dev/null || break
  sleep 0.1
done
[ -f "$WORK/sweep/002/checkpoints/latest" ] || fail "point 002 never checkpointed: $(cat "$WORK/first.log")"
kill -9 -- -$pid 2> /dev/null
wait $pid 2> /dev/null
[ -f "$WORK/sweep/000/done" ] && [ -f "$WORK/sweep/001/done" ] || fail "points 000, 001 not done before the kill"
[ ! -f "$WORK/sweep/002/done" ] || fail "point 002 finished before the kill: the test did not interrupt it"
before0=$(stat -c %Y "$WORK/sweep/000/log")

# 2. Resumed with the same command.
out=$("${SWEEP[@]}" 2>&1) || fail "resumed sweep failed: $out"
grep -q "point 0 of 4 done before" <<< "$out" || fail "point 000 was not skipped: $out"
grep -q "point 1 of 4 done before" <<< "$out" || fail "point 001 was not skipped: $out"
[ "$(stat -c %Y "$WORK/sweep/000/log")" = "$before0" ] || fail "point 000 ran again"
grep -q "resumed from .*ckpt-" "$WORK/sweep/002/log" || fail "point 002 did not resume from its checkpoint: $(cat "$WORK/sweep/002/log")"
for i in 000 001 002 003; do [ -f "$WORK/sweep/$i/done" ] || fail "point $i not done"; done

# 3. The tables: 4 points, 2 groups of 2 seeds, labels pixelfly and butterfly.
[ "$(tail -n +2 "$WORK/sweep/points.csv" | wc -l)" = 4 ] || fail "points.csv: $(cat "$WORK/sweep/points.csv")"
res=$WORK/sweep/results.csv
[ "$(tail -n +2 "$res" | wc -l)" = 2 ] || fail "results.csv should have 2 rows: $(cat "$res")"
grep -q ',pixelfly,2,val_ppl,' "$res" && grep -q ',butterfly,2,val_ppl,' "$res" ||
  fail "results.csv lacks a kind with 2 seeds: $(cat "$res")"
# each group's mean is the mean of its two points' metrics
awk -F'"' 'NR > 1 { split(substr($3, 2), b, ","); s[b[1]] += b[4]; c[b[1]]++ }
  END { for (k in s) print k, s[k] / c[k] }' "$WORK/sweep/points.csv" | sort > "$WORK/want"
awk -F'"' 'NR > 1 { split(substr($3, 2), b, ","); print b[1], b[4] }' "$res" | sort > "$WORK/got"
paste "$WORK/want" "$WORK/got" | awk '{ if ($1 != $3 || ($2 - $4) ^ 2 > 1e-6 * $2 ^ 2) bad = 1 }
  END { exit bad }' || fail "results.csv means differ from points.csv: $(paste "$WORK/want" "$WORK/got")"
grep -q '^| .* | butterfly | 2 | val_ppl |' "$WORK/sweep/results.md" || fail "results.md: $(cat "$WORK/sweep/results.md")"
if command -v gnuplot > /dev/null; then
  [ -s "$WORK/sweep/metric-flops.png" ] && [ -s "$WORK/sweep/metric-time.png" ] || fail "no plots"
fi

# 4. Another grid into the same directory is refused; nothing is touched.
out=$(launch/sweep.sh configs/gpt2-tiny-pixelfly.ini --out "$WORK/sweep" --grid 'train.seed=7' 2>&1)
[ $? -eq 2 ] && grep -q "holds another sweep" <<< "$out" || fail "another grid was not refused: $out"

# 5. A failing point (a layer spec that does not fit) is reported; the other point runs.
out=$(launch/sweep.sh configs/gpt2-tiny-pixelfly.ini --out "$WORK/bad" \
      --grid 'pixelfly.mlp_fc1=bs=64 nf=1|bs=4 nf=1' \
      -- --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16 \
         --set train.steps=3 --set train.eval_every=0 --set data.train="$WORK/train.h5" \
         --set data.val= --quiet 2>&1)
[ $? -eq 1 ] || fail "a sweep with a failing point did not exit 1: $out"
grep -q "point 000 (pixelfly.mlp_fc1=bs=64 nf=1) failed with exit 2" <<< "$out" || fail "the failure was not reported: $out"
[ -f "$WORK/bad/001/done" ] || fail "the point after the failing one did not run: $out"
echo "sweep: interrupted and resumed, 4 points in 2 groups, refusals hold"
