#!/usr/bin/env bash
# prepare-wikitext103.sh DIR [--out OUTDIR] [--pieces K] [--jobs N]
#
# Token shards of WikiText-103 from its official raw files in DIR (wiki.train.raw,
# wiki.valid.raw, wiki.test.raw, as in wikitext-103-raw-v1.zip; DIR may also be the folder
# that holds wikitext-103-raw/):
#   OUTDIR/wikitext103-train-00000-of-0000K.h5 ... (K shards, default 8)
#   OUTDIR/wikitext103-valid.h5, OUTDIR/wikitext103-test.h5
# for data.train = OUTDIR/wikitext103-train-*.h5 and data.val = OUTDIR/wikitext103-valid.h5
# (OUTDIR defaults to data/).
#
# The training file is cut into K pieces of about equal size, each ending where an article
# begins (a level-1 heading line " = Title = "), streamed line by line by awk, and the pieces
# are tokenized by `pfdata text` on N processes at once (default: the online CPUs), each
# streaming its piece in 4 MB reads: memory stays bounded whatever the file size, the pieces
# take one copy of the training text on disk while they exist. Each piece is tokenized on its
# own, followed by an end-of-text token, so the split holds K end-of-text tokens, one at each
# cut (an article boundary); the valid and test files are one shard each.
#
# Every shard is written atomically (pfdata writes OUT.tmp.PID and renames), so a rerun
# skips the shards already there and makes only the missing ones; nothing existing is
# overwritten. Exit 2 on a usage error, 1 when a file is missing or a tokenization failed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
DATA=${PIXELFLY_DATA:-../shared/data}

usage() {
  echo "usage: $0 DIR [--out OUTDIR] [--pieces K] [--jobs N]" >&2
  echo "  DIR holds wiki.train.raw, wiki.valid.raw and wiki.test.raw (WikiText-103 raw)" >&2
  exit 2
}
[ $# -ge 1 ] || usage
src=$1; shift
out=data pieces=8 jobs=$(getconf _NPROCESSORS_ONLN)
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --pieces) [ $# -ge 2 ] || usage; pieces=$2; shift 2 ;;
    --jobs) [ $# -ge 2 ] || usage; jobs=$2; shift 2 ;;
    *) echo "prepare-wikitext103: unknown option '$1'" >&2; usage ;;
  esac
done
for v in "$pieces" "$jobs"; do
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] && [ "$v" -le 99999 ] ||
    { echo "prepare-wikitext103: --pieces and --jobs take an integer in [1, 99999], got '$v'" >&2; exit 2; }
done
[ -f "$src/wiki.train.raw" ] || [ ! -d "$src/wikitext-103-raw" ] || src=$src/wikitext-103-raw
for f in wiki.train.raw wiki.valid.raw wiki.test.raw; do
  [ -f "$src/$f" ] || { echo "prepare-wikitext103: $src/$f not found (unzip wikitext-103-raw-v1.zip into DIR)" >&2; exit 1; }
done
[ -x "$BIN/pfdata" ] || { echo "prepare-wikitext103: $BIN/pfdata not built (run make)" >&2; exit 1; }
[ -f "$DATA/gpt2/encoder.json" ] || { echo "prepare-wikitext103: GPT-2 vocabulary not found in $DATA/gpt2 (set PIXELFLY_DATA)" >&2; exit 1; }
mkdir -p "$out"

name_of() { printf '%s/wikitext103-train-%05d-of-%05d.h5' "$out" "$1" "$pieces"; }
missing=()
for ((i = 0; i < pieces; i++)); do [ -f "$(name_of "$i")" ] || missing+=("$i"); done
tmp=$(mktemp -d "$out/.wikitext103.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ ${#missing[@]} -gt 0 ]; then
  echo "prepare-wikitext103: cutting wiki.train.raw into $pieces pieces at article starts"
  size=$(stat -c %s "$src/wiki.train.raw")
  # Piece p takes whole lines until it holds at least (p+1)*size/pieces bytes of the file, then
  # ends before the next level-1 heading. Only the missing pieces are written out.
  want=" ${missing[*]} "
  awk -v size="$size" -v pieces="$pieces" -v dir="$tmp" -v want="$want" '
    BEGIN { p = 0; done = 0; file = sprintf("%s/piece-%05d", dir, p) }
    {
      if (p < pieces - 1 && done >= (p + 1) * size / pieces && $0 ~ /^ = [^=].* = $/) {
        close(file); p++; file = sprintf("%s/piece-%05d", dir, p)
      }
      if (index(want, " " p " ")) print > file
      done += length($0) + 1
    }' "$src/wiki.train.raw"
  for i in "${missing[@]}"; do
    [ -f "$(printf '%s/piece-%05d' "$tmp" "$i")" ] ||
      { echo "prepare-wikitext103: wiki.train.raw has too few articles for $pieces pieces; use fewer --pieces" >&2; exit 1; }
  done
  echo "prepare-wikitext103: tokenizing ${#missing[@]} piece(s) on up to $jobs processes"
  for i in "${missing[@]}"; do
    printf '%s\0%s\0' "$(printf '%s/piece-%05d' "$tmp" "$i")" "$(name_of "$i")"
  done | xargs -0 -n 2 -P "$jobs" sh -c \
    '"$0" text --vocab "$1" --out "$3" "$2" 2>&1 | grep -v "^$" || { echo "prepare-wikitext103: tokenizing $2 failed" >&2; exit 255; }' \
    "$BIN/pfdata" "$DATA/gpt2" ||
    { echo "prepare-wikitext103: tokenization failed; complete shards are kept, rerun to finish" >&2; exit 1; }
else
  echo "prepare-wikitext103: all $pieces training shards already exist"
fi
for split in valid test; do
  f="$out/wikitext103-$split.h5"
  if [ -f "$f" ]; then echo "prepare-wikitext103: $f already exists"; continue; fi
  "$BIN/pfdata" text --vocab "$DATA/gpt2" --out "$f" "$src/wiki.$split.raw"
done
echo "prepare-wikitext103: done; set data.train = $out/wikitext103-train-*.h5 and data.val = $out/wikitext103-valid.h5"
