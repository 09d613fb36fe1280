#!/usr/bin/env bash
# sweep.sh: runs a grid of pftrain runs from one base config and collects their results.
#
#   launch/sweep.sh CONFIG --out DIR --grid 'KEYS=V1|V2|...' [--grid ...] [--np N] [--slurm]
#                   [-- pftrain flags...]
#   launch/sweep.sh --collect DIR
#
# --grid 'KEYS=VALUES': KEYS is one config key (section.key) or several joined by commas, which
#   then all take the same value (pixelfly.mlp_fc1,pixelfly.mlp_fc2=butterfly bs=8); VALUES are
#   separated by '|' when the text holds one (layer specs contain spaces and '='), else by ','
#   (train.seed=1,2,3). The points are every combination, the first --grid varying slowest.
# Each point runs in its own run directory DIR/NNN (its --set values in DIR/NNN/sets), one
# after another (mpirun -np N with --np, OMP_NUM_THREADS shared out as launch/local.sh does),
# or as one Slurm array job with --slurm (then `--collect DIR` once it has finished). Always
# with --resume auto, so a point that was interrupted continues from its last checkpoint.
# Rerunning the same command resumes the sweep: points whose run finished (DIR/NNN/done) are
# not run again; a rerun with another config or grid is refused (DIR/sweep.args holds the
# first). A point that fails is reported, its exit code kept in DIR/NNN/exit, and the sweep
# goes on; the script exits 1 when any point failed, 0 when all are done.
#
# Collection (also at the end of every sequential sweep) writes
#   DIR/points.csv    one row per point: its settings, label, metric, params, training FLOPs,
#                     seconds, samples/s
#   DIR/results.csv   and DIR/results.md: the points grouped by every setting but train.seed,
#                     metric and seconds as mean and sample standard deviation over the seeds
#   DIR/metric-flops.png, DIR/metric-time.png (gnuplot): the metric against training FLOPs
#                     and against wall-clock seconds, one line per label
# The metric is val_top1 (vision) or val_ppl (GPT-2) from DIR/NNN/summary.json. A point's
# label is its layer kind: the first word of its first pixelfly.* layer setting (dense,
# butterfly, lowrank, blocksparse; pixelfly for 'bs=...' or a budget); "base" without one.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${BUILD:-build}

usage() {
  sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "sweep.sh: $*" >&2; exit 2; }

# ---- collection ------------------------------------------------------------------------

# json_field FILE KEY: the number (or null) of "KEY": in a flat JSON object.
json_field() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1" | head -n 1; }

# point_label SETS_FILE: the point's layer kind (see the header).
point_label() {
  awk -F= '
    $1 == "pixelfly.budget" && !l { l = "pixelfly" }
    $1 ~ /^pixelfly\.(attn|mlp|token)_/ && !l {
      v = substr($0, length($1) + 2); split(v, w, /[ ,]/)
      l = (w[1] ~ /^bs=/ || w[1] == "pixelfly") ? "pixelfly" : w[1] }
    END { print (l ? l : "base") }' "$1"
}

collect() {
  local dir=$1
  [ -f "$dir/sweep.args" ] || die "'$dir' is not a sweep directory (no sweep.args)"
  local csv=$dir/points.csv
  echo "point,settings,label,seed,metric_name,metric,params,train_flops,seconds,samples_per_s" > "$csv"
  local p n=0 done_n=0
  for p in "$dir"/[0-9][0-9][0-9]; do
    [ -d "$p" ] || continue
    n=$((n + 1))
    [ -f "$p/done" ] && [ -f "$p/summary.json" ] || continue
    done_n=$((done_n + 1))
    local s=$p/summary.json metric name
    metric=$(json_field "$s" val_top1); name=val_top1
    if [ -z "$metric" ] || [ "$metric" = null ]; then metric=$(json_field "$s" val_ppl); name=val_ppl; fi
    local steps world batch fps secs seed settings
    steps=$(json_field "$s" steps); world=$(json_field "$s" world)
    batch=$(sed -n 's/^batch_size = //p' "$p/config.ini" | head -n 1)
    fps=$(json_field "$s" train_flops_per_sample); secs=$(json_field "$s" train_seconds)
    seed=$(sed -n 's/^train\.seed=//p' "$p/sets" | head -n 1)
    # the settings but the seed, as one field ("; "-joined, quotes doubled for CSV)
    settings=$(grep -v '^train\.seed=' "$p/sets" | paste -sd';' - | sed 's/;/; /g; s/"/""/g')
    awk -v pt="${p##*/}" -v set="$settings" -v lab="$(point_label "$p/sets")" -v seed="$seed" \
        -v mn="$name" -v m="$metric" -v par="$(json_field "$s" params)" -v fps="$fps" \
        -v steps="$steps" -v world="$world" -v b="$batch" -v secs="$secs" 'BEGIN {
      n = steps * world * b
      printf "%s,\"%s\",%s,%s,%s,%s,%s,%.6g,%s,%.6g\n", pt, set, lab, seed, mn, m, par,
             fps * n, secs, (secs > 0 ? n / secs : 0) }' >> "$csv"
  done
  # Group by settings (the seed excluded): mean and sample std of metric and seconds.
  awk -F'"' 'NR > 1 {
      split($1, a, ","); split(substr($3, 2), b, ",")
      k = $2; if (!(k in cnt)) order[++ng] = k
      cnt[k]++; lab[k] = b[1]; mn[k] = b[3]
      m = b[4]; s = b[7]; sm[k] += m; sm2[k] += m * m; ss[k] += s; ss2[k] += s * s
      par[k] = b[5]; fl[k] = b[6]; thr[k] += b[8] }
    function sd(x, x2, c) { return c > 1 ? sqrt(((x2 - x * x / c) > 0 ? x2 - x * x / c : 0) / (c - 1)) : 0 }
    END {
      print "settings,label,seeds,metric_name,metric_mean,metric_std,params,train_flops,seconds_mean,seconds_std,samples_per_s" > R
      print "| settings | kind | seeds | metric | mean | std | params | training FLOPs | seconds | samples/s |" > M
      print "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" > M
      for (i = 1; i <= ng; i++) {
        k = order[i]; c = cnt[k]
        printf "\"%s\",%s,%d,%s,%.6g,%.3g,%s,%s,%.4g,%.3g,%.4g\n", k, lab[k], c, mn[k],
               sm[k] / c, sd(sm[k], sm2[k], c), par[k], fl[k], ss[k] / c, sd(ss[k], ss2[k], c),
               thr[k] / c > R
        printf "| %s | %s | %d | %s | %.4g | %.2g | %s | %.3g | %.1f +- %.1f | %.4g |\n",
               (k == "" ? "(base)" : k), lab[k], c, mn[k], sm[k] / c, sd(sm[k], sm2[k], c),
               par[k], fl[k], ss[k] / c, sd(ss[k], ss2[k], c), thr[k] / c > M
        printf "%s %s %.6g %.6g %.6g %.6g\n", lab[k], fl[k], sm[k] / c, sd(sm[k], sm2[k], c),
               ss[k] / c, sd(ss[k], ss2[k], c) > D
      }
    }' R="$dir/results.csv" M="$dir/results.md" D="$dir/results.dat" "$csv"
  echo "sweep.sh: $done_n of $n points done; $dir/results.md"
  plot "$dir"
}

# plot DIR: metric against training FLOPs and against seconds, one line per label, error
# bars the seed std. Skipped (said) without gnuplot or results.
plot() {
  local dir=$1
  [ -s "$dir/results.dat" ] || return 0
  if ! command -v gnuplot > /dev/null; then
    echo "sweep.sh: gnuplot not found (apt install gnuplot-nox): no plots" >&2
    return 0
  fi
  local name labels l cmd_f="" cmd_t=""
  name=$(awk -F, 'NR == 2 { print $4 }' "$dir/results.csv")
  labels=$(awk '{ print $1 }' "$dir/results.dat" | awk '!seen[$0]++')
  for l in $labels; do
    awk -v l="$l" '$1 == l' "$dir/results.dat" | sort -g -k2 > "$dir/results-$l.dat"
    cmd_f+="${cmd_f:+, }'$dir/results-$l.dat' using 2:3:4 with yerrorlines title '$l'"
    cmd_t+="${cmd_t:+, }'$dir/results-$l.dat' using 5:3:6:4 with xyerrorlines title '$l'"
  done
  gnuplot <<EOF || echo "sweep.sh: gnuplot failed" >&2
set terminal png size 900,600 noenhanced
set grid
set key outside right
set ylabel '$name (mean over seeds, bars: std)'
set output '$dir/metric-flops.png'
set xlabel 'training FLOPs'
set logscale x
plot $cmd_f
unset logscale x
set output '$dir/metric-time.png'
set xlabel 'training wall-clock seconds'
plot $cmd_t
EOF
}

# ---- running ---------------------------------------------------------------------------

# run_point DIR N: point N (its sets file written) with --resume auto; done marker on exit 0.
run_point() {
  local dir=$1 p sets=() line rc
  p=$(printf '%s/%03d' "$1" "$2")
  [ -f "$p/done" ] && return 0
  while IFS= read -r line; do sets+=(--set "$line"); done < "$p/sets"
  local cfg np extra=()
  cfg=$(sed -n 1p "$dir/sweep.args"); np=$(sed -n 2p "$dir/sweep.args")
  while IFS= read -r line; do extra+=("$line"); done < <(sed -n '/^--$/,$p' "$dir/sweep.args" | tail -n +2)
  local cmd=("$BIN/pftrain" "$cfg" "${sets[@]}" "${extra[@]}" --set run.out_dir="$p" --resume auto)
  if [ "$np" -gt 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    local threads=$(( $(nproc) / np )); [ "$threads" -ge 1 ] || threads=1
    cmd=(env OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}" mpirun --oversubscribe --bind-to none
         -np "$np" "${cmd[@]}")
  fi
  "${cmd[@]}" > "$p/log" 2>&1
  rc=$?
  echo "$rc" > "$p/exit"
  if [ $rc -eq 0 ]; then
    touch "$p/done"
  else
    echo "sweep.sh: point ${p##*/} ($(paste -sd' ' "$p/sets")) failed with exit $rc; see $p/log" >&2
  fi
  return $rc
}

[ $# -ge 1 ] || usage
if [ "$1" = --collect ]; then
  [ $# -eq 2 ] || usage
  collect "$2"
  exit 0
fi
if [ "$1" = --point ]; then  # one point of a Slurm array job: --point DIR N
  [ $# -eq 3 ] || usage
  run_point "$2" "$3"
  exit $?
fi

CONFIG=$1; shift
[ -f "$CONFIG" ] || die "config '$CONFIG' not found"
OUT="" NP=0 SLURM=0 GRIDS=() EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
    --grid) [ $# -ge 2 ] || usage; GRIDS+=("$2"); shift 2 ;;
    --np) [ $# -ge 2 ] || usage; NP=$2; shift 2
          case $NP in ''|*[!0-9]*|0) die "--np '$NP' is not a positive rank count" ;; esac ;;
    --slurm) SLURM=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument '$1' (see the header of $0)" ;;
  esac
done
[ -n "$OUT" ] || die "--out DIR is required"
[ ${#GRIDS[@]} -ge 1 ] || die "give at least one --grid 'section.key=V1|V2'"
for g in "${GRIDS[@]}"; do
  [[ $g == *=* ]] || die "--grid '$g' has no '=': use 'section.key=V1|V2' or 'k1,k2=V1|V2'"
  [[ ${g%%=*} =~ ^[a-z_]+\.[a-z_0-9]+(,[a-z_]+\.[a-z_0-9]+)*$ ]] ||
    die "--grid '$g': '${g%%=*}' is not section.key (or keys joined by commas)"
done

# The points: every combination of the grids' values, as lines of KEY=VALUE per point.
expand() {
  local -a pts=("") next
  local g keys vals v k sep IFS_old
  for g in "${GRIDS[@]}"; do
    keys=${g%%=*}; vals=${g#*=}
    if [[ $vals == *"|"* ]]; then sep='|'; else sep=','; fi
    next=()
    local p
    for p in "${pts[@]}"; do
      IFS_old=$IFS; IFS=$sep; read -r -a vs <<< "$vals"; IFS=$IFS_old
      for v in "${vs[@]}"; do
        v=$(sed 's/^ *//; s/ *$//' <<< "$v")
        [ -n "$v" ] || die "--grid '$g' has an empty value"
        local lines=$p
        IFS_old=$IFS; IFS=,; read -r -a ks <<< "$keys"; IFS=$IFS_old
        for k in "${ks[@]}"; do lines+="$k=$v"$'\n'; done
        next+=("$lines")
      done
    done
    pts=("${next[@]}")
  done
  POINTS=("${pts[@]}")
}
expand

mkdir -p "$OUT" || die "cannot create '$OUT'"
args=$(printf '%s\n%s\n' "$CONFIG" "$NP"; printf '%s\n' "${GRIDS[@]}"; printf -- '--\n'
       [ ${#EXTRA[@]} -eq 0 ] || printf '%s\n' "${EXTRA[@]}")
if [ -f "$OUT/sweep.args" ]; then
  [ "$(cat "$OUT/sweep.args")" = "$args" ] ||
    die "'$OUT' holds another sweep (its config, --np, grids and flags are in $OUT/sweep.args): use another --out"
else
  printf '%s\n' "$args" > "$OUT/sweep.args"
fi
# sweep.args: line 1 the config, line 2 --np, then the grids, "--", the extra pftrain flags
# (run_point reads lines 1, 2 and the part after "--").
n=${#POINTS[@]}
for i in "${!POINTS[@]}"; do
  p=$(printf '%s/%03d' "$OUT" "$i")
  mkdir -p "$p"
  printf '%s' "${POINTS[$i]}" > "$p/sets"
done
echo "sweep.sh: $n points in $OUT"

if [ $SLURM -eq 1 ]; then
  command -v sbatch > /dev/null || die "--slurm: sbatch not found"
  cat > "$OUT/sweep.sbatch" <<EOF
#!/usr/bin/env bash
#SBATCH --job-name=pf-sweep
#SBATCH --array=0-$((n - 1))
#SBATCH --output=$OUT/slurm-%A_%a.out
cd "$PWD" && exec launch/sweep.sh --point "$OUT" "\$SLURM_ARRAY_TASK_ID"
EOF
  sbatch "$OUT/sweep.sbatch" || die "sbatch failed"
  echo "sweep.sh: when the array job has finished: launch/sweep.sh --collect $OUT"
  exit 0
fi

failed=0
for i in "${!POINTS[@]}"; do
  p=$(printf '%s/%03d' "$OUT" "$i")
  if [ -f "$p/done" ]; then echo "sweep.sh: point $i of $n done before"; continue; fi
  echo "sweep.sh: point $i of $n: $(paste -sd' ' "$p/sets" | sed 's/ *$//')"
  run_point "$OUT" "$i" || failed=$((failed + 1))
done
collect "$OUT"
[ $failed -eq 0 ] || { echo "sweep.sh: $failed point(s) failed" >&2; exit 1; }
