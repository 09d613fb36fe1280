#!/usr/bin/env bash
# Token shards for the gpt2-tiny configs: tinyshakespeare split 90/10 by lines into
# data/tinyshakespeare-{train,val}.h5. PIXELFLY_DATA points at the shared data (default
# ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${PIXELFLY_DATA:-../shared/data}
BIN=${BUILD:-build}
src=$DATA/tinyshakespeare/input.txt
[ -f "$src" ] || { echo "prepare: $src not found (set PIXELFLY_DATA)" >&2; exit 1; }
mkdir -p data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lines=$(wc -l < "$src")
head -n $((lines * 9 / 10)) "$src" > "$tmp/train.txt"
tail -n +$((lines * 9 / 10 + 1)) "$src" > "$tmp/val.txt"
# pfdata never overwrites a shard: one made before is kept.
for split in train val; do
  f=data/tinyshakespeare-$split.h5
  if [ -f "$f" ]; then echo "prepare: $f already exists, kept"; continue; fi
  "$BIN/pfdata" text --vocab "$DATA/gpt2" --out "$f" "$tmp/$split.txt"
done
