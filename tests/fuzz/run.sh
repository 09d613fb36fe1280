#!/usr/bin/env bash
# run.sh BIN_DIR [SECONDS]: runs every libFuzzer harness BIN_DIR/fuzz_NAME for SECONDS (default
# 60) on a scratch copy of its seed corpus tests/fuzz/corpus/NAME (with the dictionary
# tests/fuzz/NAME.dict when there is one), so fuzzing never writes into the repository.
# Prints one line per harness (executions, coverage) and fails if any harness crashed, leaked,
# failed a property, or hung (FUZZ_TIMEOUT seconds on one input, default 5); the input is kept
# in $FUZZ_ARTIFACTS (default BIN_DIR/../artifacts) with the log next to it. Faults inside
# libhdf5 itself on a corrupt file (Debian's HDF5 1.10 hangs, overreads its own buffers or
# asks for gigabytes on some) are not pixelfly's: they are kept and counted, and fuzzing goes
# on; LeakSanitizer ignores leaks inside libhdf5 (tests/fuzz/lsan.supp).
# FUZZ_ONLY="a b" limits the run to those harnesses; extra libFuzzer flags: FUZZ_FLAGS.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin_dir=${1:?usage: run.sh BIN_DIR [SECONDS]}
seconds=${2:-60}
artifacts=${FUZZ_ARTIFACTS:-$bin_dir/../artifacts}
base=/tmp
[ -w /dev/shm ] && base=/dev/shm  # scratch files (shards, outputs) in memory: fsync is cheap
work=$(mktemp -d "$base/pf-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
timeout=${FUZZ_TIMEOUT:-5}  # seconds per input; an input normally takes milliseconds
failed=()
total_execs=0

# Whether the report in log $1 is a fault of libhdf5 itself on a corrupt file rather than
# pixelfly's: the first stack frame past libFuzzer, the sanitizers and libc is in libhdf5
# (a hang, a crash, an allocation it asked for), and for a bad heap access the memory was
# allocated by libhdf5 too (a buffer pixelfly handed to HDF5 too small is pixelfly's bug).
hdf5_fault() {
  local skip='fuzzer::|__sanitizer|__asan|__interceptor_|__lsan| in (malloc|calloc|realloc|free|memcpy|memmove|memset) |libc\.so|sysdeps/'
  local report top alloc
  report=$(sed -n '/ERROR: \|runtime error\|ALARM:/,$p' "$1")
  top=$(grep -E '^ *#[0-9]+ 0x' <<<"$report" | grep -vE "$skip" | head -1)
  grep -q libhdf5 <<<"$top" || return 1
  if grep -q 'allocated by thread' <<<"$report"; then
    alloc=$(sed -n '/allocated by thread/,$p' <<<"$report" | grep -E '^ *#[0-9]+ 0x' |
            grep -vE "$skip" | head -1)
    grep -q libhdf5 <<<"$alloc" || return 1
  fi
  return 0
}
for bin in "$bin_dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" $name "* ]]; then continue; fi
  seeds=tests/fuzz/corpus/$name
  if [ ! -d "$seeds" ]; then
    echo "fuzz: $name: no seed corpus at $seeds" >&2
    failed+=("$name"); continue
  fi
  dir=$work/$name
  mkdir -p "$dir/corpus" "$dir/tmp"
  cp -r "$seeds"/. "$dir/corpus/"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  # Runs until the time is spent; after an HDF5 fault (hdf5_fault) the input is kept and
  # fuzzing starts again on the corpus grown so far.
  start=$SECONDS execs=0 hdf5=0 rc=0 seg=0 final=
  while :; do
    left=$((seconds - (SECONDS - start)))
    [ "$left" -ge 1 ] || break
    seg=$((seg + 1))
    TMPDIR=$dir/tmp "$bin" -max_total_time="$left" -timeout="$timeout" \
        -rss_limit_mb="${FUZZ_RSS_MB:-2048}" ${FUZZ_MAX_LEN:+-max_len=$FUZZ_MAX_LEN} \
        -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" ${FUZZ_FLAGS:-} \
        "$dir/corpus" > "$dir/log.$seg" 2>&1
    rc=$?
    cat "$dir/log.$seg" >> "$dir/log"
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log.$seg" | tail -1)
    execs=$((execs + ${n:-0}))
    last=$(grep -E '^#[0-9]+[[:space:]]' "$dir/log.$seg" | tail -1)
    [ -n "$last" ] && final=$last
    [ $rc -eq 0 ] && break
    a=$(ls "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-* 2>/dev/null | head -1)
    if [ -n "$a" ] && hdf5_fault "$dir/log.$seg"; then
      hdf5=$((hdf5 + 1))
      kept=$artifacts/$name-hdf5-$(basename "$a")
      mv "$a" "$kept"
      # an input that faults only after others (HDF5 keeps state) may be in the corpus already
      rm -f "$dir/corpus/$(basename "$a" | sed 's/^[a-z]*-//')"
      cp "$dir/log.$seg" "$kept.log"
      echo "fuzz: $name: a fault inside libhdf5 (kept $kept); going on" >&2
      rc=0
      continue
    fi
    break
  done
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"${final:-}")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"${final:-}")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"${final:-}")
  printf 'fuzz: %-12s %4ss  execs %-9s cov %-5s ft %-6s corpus %-12s%s%s\n' "$name" "$seconds" \
      "$execs" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
      "$([ $hdf5 -eq 0 ] || echo "  ($hdf5 fault(s) inside HDF5)")" \
      "$([ $rc -eq 0 ] || echo "  FAILED (rc $rc)")"
  total_execs=$((total_execs + execs))
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    for a in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$dir"/slow-unit-*; do
      [ -e "$a" ] || continue
      cp "$a" "$artifacts/$name-$(basename "$a")"
      echo "fuzz: $name: kept $artifacts/$name-$(basename "$a")" >&2
    done
    cp "$dir/log" "$artifacts/$name.log"
    echo "---- $name: last lines of the log ($artifacts/$name.log) ----" >&2
    tail -n 40 "$dir/log" >&2
  fi
done
echo "fuzz: $total_execs executions in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
