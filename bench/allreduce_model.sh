#!/usr/bin/env bash
# allreduce_model.sh: scaling on paper. For GPT-2 small and medium, dense and Pixelfly, the
# per-step gradient all-reduce at 8 to 64 GPUs on 200 and 400 Gb/s links under a ring model,
# against the GPU step time those models would need, and what bucketed overlap leaves exposed.
# Nothing here is measured on a GPU: the byte counts and FLOPs come from `pftrain summary` of
# the configs (the arena pftrain all-reduces, FLOPs of the nonzero work), the rest are the
# assumptions printed with the table. Prints a markdown table.
#
#   ring all-reduce  t_ar = 2 (N-1)/N x bytes / link + 2 (N-1) x latency      (one link per GPU)
#   step compute     t_c  = FLOPs/token x 512 x 1024 / N / (peak x MFU)        (global batch 512)
#   overlap window   t_b  = 2/3 of the last micro-batch (min(16, 512/N) sequences): the buckets
#                    are all-reduced while backward runs, the last one after it
#   exposed          max(0, t_ar - t_b) + the last bucket's own ring time
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
PEAK=${PEAK_TFLOPS:-989}  # H100 SXM dense bf16
MFU=${MFU:-0.40}
LATENCY_US=${LATENCY_US:-5}
BUCKET=$(sed -n 's/^bucket_bytes *= *//p' configs/gpt2-small-dense.ini)
BUCKET=${BUCKET:-26214400}
echo "| model | N GPUs | link | grad bytes | all-reduce ms | compute ms | overlap window ms | exposed ms | comm share of step |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in gpt2-small-dense gpt2-small-pixelfly gpt2-medium-dense gpt2-medium-pixelfly; do
  s=$("$BIN/pftrain" summary "configs/$m.ini" 2>/dev/null)
  floats=$(sed -n 's/^arena: \([0-9]*\) floats.*/\1/p' <<< "$s")
  fpt=$(sed -n 's/^training FLOPs per token: \([0-9.e+]*\).*/\1/p' <<< "$s")
  for gbit in 200 400; do
    for n in 8 16 32 64; do
      awk -v m="$m" -v n="$n" -v gbit="$gbit" -v bytes="$((floats * 4))" -v fpt="$fpt" \
          -v peak="$PEAK" -v mfu="$MFU" -v lat="$LATENCY_US" -v bucket="$BUCKET" 'BEGIN {
        link = gbit / 8 * 1e9; rate = peak * 1e12 * mfu
        ring = 2 * (n - 1) / n
        t_ar = ring * bytes / link + 2 * (n - 1) * lat * 1e-6
        t_c = fpt * 512 * 1024 / n / rate
        micro = 512 / n; if (micro > 16) micro = 16
        t_b = 2 / 3 * fpt * micro * 1024 / rate
        t_last = ring * bucket / link + 2 * (n - 1) * lat * 1e-6
        exposed = (t_ar > t_b ? t_ar - t_b : 0) + t_last
        printf "| %s | %d | %d Gb/s | %.0f MB | %.1f | %.1f | %.1f | %.1f | %.0f%% |\n", m, n, gbit,
               bytes / 1e6, 1e3 * t_ar, 1e3 * t_c, 1e3 * t_b, 1e3 * exposed, 100 * exposed / (t_c + exposed) }'
    done
  done
done
echo
echo "Assumptions: ${PEAK} TFLOP/s peak x MFU ${MFU} for dense and Pixelfly alike (Pixelfly's"
echo "achieved rate on a GPU is not measured yet), ${LATENCY_US} us per ring hop, one link per"
echo "GPU, ${BUCKET}-byte buckets, fp32 gradients."
