#!/usr/bin/env bash
# wikitext103_test.sh: launch/prepare-wikitext103.sh on a stand-in for the official raw files
# (WikiText-2's validation text as wiki.train.raw, its test text as wiki.valid.raw and
# wiki.test.raw, from the shared data): 3 training shards, tokenized on 2 processes, whose
# tokens are the single-file tokenization's up to the 3 end-of-text tokens and the BPE merges
# across the 2 cuts; a rerun writes nothing and keeps every file as it
# was; a deleted shard is remade alone; pftrain trains on the glob of the shards. Exits 0
# when all hold, else says why on stderr and exits 1. Needs $BUILD/pfdata and pftrain.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
DATA=${PIXELFLY_DATA:-../shared/data}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pf-wt103.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$WORK/raw/wikitext-103-raw"
raw=$WORK/raw/wikitext-103-raw
cp "$DATA/wikitext-2/valid.txt" "$raw/wiki.train.raw" || fail "no WikiText-2 in $DATA"
cp "$DATA/wikitext-2/test.txt" "$raw/wiki.valid.raw"
cp "$DATA/wikitext-2/test.txt" "$raw/wiki.test.raw"

run() { BUILD=$BUILD launch/prepare-wikitext103.sh "$WORK/raw" --out "$WORK/out" --pieces 3 --jobs 2; }
out=$(run 2>&1) || fail "prepare failed: $out"
shards=("$WORK"/out/wikitext103-train-0000[0-2]-of-00003.h5)
[ ${#shards[@]} -eq 3 ] && [ -f "${shards[2]}" ] || fail "expected 3 training shards: $(ls "$WORK/out")"
[ -f "$WORK/out/wikitext103-valid.h5" ] && [ -f "$WORK/out/wikitext103-test.h5" ] ||
  fail "valid/test shards missing: $(ls "$WORK/out")"
[ -z "$(ls -A "$WORK/out" | grep -v '^wikitext103-')" ] || fail "left-overs in OUTDIR: $(ls -A "$WORK/out")"

# the pieces' tokens (pfdata's summary lines) against the whole file tokenized at once
whole=$("$BUILD/pfdata" text --vocab "$DATA/gpt2" --out "$WORK/one.h5" "$raw/wiki.train.raw" 2>&1 |
        sed -n 's/.*: \([0-9]*\) tokens from.*/\1/p')
sum=$(grep 'wikitext103-train-' <<< "$out" | sed -n 's/.*: \([0-9]*\) tokens from.*/\1/p' |
      awk '{ s += $1; n++ } END { if (n == 3) print s }')
[ -n "$sum" ] && [ -n "$whole" ] || fail "no token counts in the output: $out"
d=$((sum - whole)); [ $d -lt 0 ] && d=$((-d))
[ "$d" -le 6 ] || fail "the pieces hold $sum tokens, the whole file $whole (more than 2 EOT + 2 cuts apart)"

# a rerun makes nothing and touches nothing
before=$(stat -c '%n %i %Y' "$WORK"/out/*)
out=$(run 2>&1) || fail "rerun failed: $out"
grep -q "all 3 training shards already exist" <<< "$out" || fail "the rerun did not skip: $out"
[ "$before" = "$(stat -c '%n %i %Y' "$WORK"/out/*)" ] || fail "the rerun changed files"
rm "${shards[1]}"
out=$(run 2>&1) || fail "rerun after a deletion failed: $out"
grep -q "tokenizing 1 piece" <<< "$out" || fail "the rerun did not remake exactly one shard: $out"
[ -f "${shards[1]}" ] || fail "the deleted shard was not remade"
[ "$(stat -c '%n %i %Y' "${shards[0]}" "${shards[2]}")" = "$(grep -v -- "-00001-" <<< "$before" | grep train)" ] ||
  fail "the other shards were rewritten"

# usage errors exit 2
launch/prepare-wikitext103.sh "$WORK/raw" --pieces 0 > /dev/null 2>&1; [ $? -eq 2 ] || fail "--pieces 0 not refused with 2"
launch/prepare-wikitext103.sh "$WORK/none" > /dev/null 2>&1; [ $? -eq 1 ] || fail "a missing DIR not refused with 1"

# train on the split
out=$(OMP_NUM_THREADS=2 "$BUILD/pftrain" configs/gpt2-tiny-pixelfly.ini --quiet \
      --set data.train="$WORK/out/wikitext103-train-*.h5" --set data.val="$WORK/out/wikitext103-valid.h5" \
      --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16 \
      --set train.steps=3 --set train.eval_every=3 --set train.eval_batches=2 \
      --set run.out_dir="$WORK/run" 2>&1) || fail "training on the shards failed: $out"
echo "ok: 3 shards, $sum tokens against $whole in one piece; rerun skipped; trained"
