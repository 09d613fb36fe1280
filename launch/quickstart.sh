#!/usr/bin/env bash
# The first-run experience: converts Fashion-MNIST (Debian's dataset-fashion-mnist) into
# HDF5 image shards, trains a Pixelfly MLP-Mixer and its dense twin, and prints a side-by-side
# table of test accuracy, parameters, FLOPs and wall-clock time, plus a plot of both runs.
# Run through `make quickstart`, which installs and builds what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
FM=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
BIN=${BUILD:-build}
OUT=${QUICKSTART_OUT:-runs/quickstart}
mkdir -p data "$OUT"
for split in train:train t10k:test; do
  src=${split%%:*}; dst=data/fashion-mnist-${split##*:}.h5
  if [ ! -f "$dst" ]; then
    "$BIN/pfdata" images --format idx --classes fashion-mnist --out "$dst" \
      "$FM/$src-images-idx3-ubyte.gz" "$FM/$src-labels-idx1-ubyte.gz"
  fi
done
for variant in pixelfly dense; do
  echo "== training mixer-fmnist-$variant"
  # A rerun trains afresh; --new-run moves an earlier quickstart's run into previous-N rather
  # than deleting it.
  "$BIN/pftrain" "configs/mixer-fmnist-$variant.ini" --set "run.out_dir=$OUT/$variant" --new-run "$@"
done
"$BIN/pftrain" plot "$OUT/pixelfly" "$OUT/dense" --out "$OUT/loss.png"
# summary.json is one flat JSON object; awk pulls the fields out.
print_table() {
  printf '\n%-10s %11s %12s %16s %10s\n' model "test top-1" parameters "train FLOP/img" "time (s)"
  for variant in pixelfly dense; do
    awk -v name="$variant" '{
      n = split($0, kv, /, */)
      for (i = 1; i <= n; i++) { gsub(/[{}" ]/, "", kv[i]); split(kv[i], p, ":"); f[p[1]] = p[2] }
      printf "%-10s %10.2f%% %12d %16.4g %10.1f\n", name, 100 * f["val_top1"], f["params"],
             f["train_flops_per_sample"], f["train_seconds"] }' "$OUT/$variant/summary.json"
  done
}
print_table | tee "$OUT/table.txt"
echo "plot: $OUT/loss.png"
