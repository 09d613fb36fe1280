#!/usr/bin/env bash
# make-token-shard.sh OUT.h5: the token shard of tinyshakespeare that the multi-rank and
# Slurm tests train on, built from the shared data (PIXELFLY_DATA, default ../shared/data)
# so that the tests need nothing but a fresh clone and a build.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${PIXELFLY_DATA:-../shared/data}
if [ ! -f "$DATA/tinyshakespeare/input.txt" ]; then
  echo "make-token-shard: $DATA/tinyshakespeare/input.txt not found (set PIXELFLY_DATA)" >&2
  exit 1
fi
"${BUILD:-build}/pfdata" text --quiet --vocab "$DATA/gpt2" --out "$1" "$DATA/tinyshakespeare/input.txt"
