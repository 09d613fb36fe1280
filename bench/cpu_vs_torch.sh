#!/usr/bin/env bash
# cpu_vs_torch.sh: pixelfly's CPU backend against PyTorch on the CPU, both run here in one go,
# printed as markdown tables ready for bench/RESULTS.md.
#
#   [PYTHON=python3] [BUILD=build] [STEPS=5] [WARMUP=1] [RANKS=0,32] [COMPILE=1] \
#   [COMPILE_TIMEOUT=900] [ISA=native|avx2] bench/cpu_vs_torch.sh [THREADS]
#
# Not part of the test suite (`make test` neither runs nor needs it). It needs pixelfly built
# (`make` -> $BUILD/pfbench) and a Python with PyTorch, e.g. a virtual environment:
#
#     python3 -m venv ~/torchenv && ~/torchenv/bin/pip install torch numpy
#     PYTHON=~/torchenv/bin/python bench/cpu_vs_torch.sh 2
#
# What runs, every row with THREADS threads on both sides (default 2; pixelfly: OpenMP with
# OMP_WAIT_POLICY=passive; PyTorch: torch.set_num_threads), each time the median of STEPS
# timed runs after one warm-up (pfbench's warm-up is fixed at one; WARMUP sets PyTorch's):
#   1. layers (pfbench kernels; torch_cpu.py kernels): 3072x768 and 768x3072 at 2048 tokens,
#      Pixelfly bs=16 nf=2 with each rank of RANKS against bench/torch_cpu.py's gather + bmm
#      + low-rank module, and the dense layer against F.linear: forward, dX, dS/dW passes
#      alone and forward + backward (pixelfly: the sum of its three passes);
#   2. training steps (pfbench step; torch_cpu.py step, the same .ini): forward, backward,
#      clip, AdamW on synthetic data, the parameter counts of both sides side by side, and
#      GPT-2 tiny dense once more under torch.compile (COMPILE=0 skips it; its compilation
#      is cut at COMPILE_TIMEOUT seconds and a failure is reported in the table);
#   3. peak resident set (getrusage max RSS) of each training-step process, one process per
#      model and side.
# ISA=avx2 measures an AVX2-only machine on an AVX-512 one: pixelfly built without AVX-512
# clones (`make BUILD=build-avx2 CUDA=0 CPU_AVX512=0 build-avx2/pfbench`, then BUILD=build-avx2;
# refused otherwise) and OpenBLAS held to its Haswell (AVX2) kernels; PyTorch held to AVX2
# (ATEN_CPU_CAPABILITY, oneDNN's and MKL's ISA limits). The CPU's own speed per instruction
# stays that of the AVX-512 machine.
# Ratio columns: pixelfly throughput / PyTorch throughput = PyTorch time / pixelfly time
# (> 1: pixelfly faster). Raw outputs stay in the directory printed on stderr at the end.
set -euo pipefail

THREADS=${1:-${THREADS:-2}}
PYTHON=${PYTHON:-python3}
BUILD=${BUILD:-build}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-1}
RANKS=${RANKS:-0,32}
COMPILE=${COMPILE:-1}
COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-900}

cd "$(dirname "$0")/.."
PFBENCH=$BUILD/pfbench
TORCH="$PYTHON bench/torch_cpu.py --threads $THREADS --warmup $WARMUP --steps $STEPS"
[ -x "$PFBENCH" ] || { echo "cpu_vs_torch.sh: no $PFBENCH: build pixelfly first (make)" >&2; exit 2; }
"$PYTHON" -c 'import torch' 2>/dev/null ||
    { echo "cpu_vs_torch.sh: $PYTHON cannot import torch (see the top of this file)" >&2; exit 2; }
ISA=${ISA:-native}
case $ISA in
native) isa_note="each side's widest ISA" ;;
avx2)
    if nm "$PFBENCH" | grep -q 'arch_x86_64_v4'; then
        echo "cpu_vs_torch.sh: $PFBENCH has AVX-512 clones; for ISA=avx2 build it with" >&2
        echo "  make BUILD=build-avx2 CUDA=0 CPU_AVX512=0 build-avx2/pfbench  and pass BUILD=build-avx2" >&2
        exit 2
    fi
    export OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
        MKL_ENABLE_INSTRUCTIONS=AVX2
    isa_note="AVX2 on both sides (pixelfly CPU_AVX512=0 build, OPENBLAS_CORETYPE=Haswell; ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2)"
    ;;
*) echo "cpu_vs_torch.sh: ISA must be native or avx2, not '$ISA'" >&2; exit 2 ;;
esac
RAW=$(mktemp -d "${TMPDIR:-/tmp}/cpu_vs_torch.XXXXXX")
export OMP_NUM_THREADS=$THREADS

# Run a command and append its peak resident set to its stdout: "RESULT<TAB>peak_rss<TAB>MB".
PEAK_RSS='import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
print("RESULT\tpeak_rss\t%.1f" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3))
sys.exit(rc)'
pixelfly() { OMP_WAIT_POLICY=passive "$PYTHON" -c "$PEAK_RSS" "$PFBENCH" "$@"; }

# ---- header ----------------------------------------------------------------------------
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa=""
for f in avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile; do
    [[ " $flags " == *" $f "* ]] && isa+="${isa:+ }$f"
done
$TORCH info > "$RAW/torch-info.txt"
IFS=$'\t' read -r _ _ tver tcap tthreads < <(grep '^RESULT' "$RAW/torch-info.txt")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "### pixelfly CPU vs PyTorch CPU ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- CPU: $cpu, $(nproc) CPUs online; ISA flags: ${isa:-none of avx2/avx512}"
echo "- ISA used: $isa_note"
echo "- pixelfly $commit ($PFBENCH), OMP_NUM_THREADS=$THREADS, OMP_WAIT_POLICY=passive"
echo "- PyTorch $tver, get_cpu_capability() = $tcap, torch.get_num_threads() = $tthreads"
echo "- median of $STEPS timed runs; warm-up: pixelfly 1, PyTorch $WARMUP; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- ratio = pixelfly throughput / PyTorch throughput (> 1: pixelfly faster)"
echo

# ---- 1. layers -------------------------------------------------------------------------
pixelfly kernels --shapes 3072x768,768x3072 --tokens 2048 --bs 16 --nf 2 --rank "$RANKS" \
    --repeat "$STEPS" > "$RAW/pixelfly-kernels.txt"
$TORCH kernels --shapes 3072x768,768x3072 --tokens 2048 --bs 16 --nf 2 --rank "$RANKS" \
    > "$RAW/torch-kernels.txt"

echo "#### Layers (2048 tokens, fp32; PyTorch Pixelfly = gather + bmm + low-rank, dense = F.linear)"
echo
echo "| in x out | tokens | layer | pass | pixelfly ms | PyTorch ms | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
# pfbench rows: in x out, tokens, "bs= nf= r=" (3 fields), pass, dense time, Pixelfly time, ...
# in ms or us (the header says which); its dS of the dense layer is dW here.
awk -F'\t' '
    FNR == NR {
        if ($0 ~ /^in x out/) scale = ($0 ~ /dense us/) ? 1e-3 : 1
        if ($0 !~ /^[0-9]+x[0-9]+ +[0-9]+ +bs=/) next
        split($0, f, / +/)
        pat = f[3] " " f[4] " " f[5]; pass = f[6]; dkey = f[1] SUBSEP f[2] SUBSEP "dense"
        pf[f[1], f[2], pat, pass] = f[8] * scale
        pf[f[1], f[2], pat, "fwd+bwd"] += f[8] * scale
        dpass = pass == "dS" ? "dW" : pass
        if (!((dkey, dpass) in pf)) {
            pf[dkey, dpass] = f[7] * scale
            pf[dkey, "fwd+bwd"] += f[7] * scale
        }
        next
    }
    $1 == "RESULT" && $2 == "kernel" {
        k = $3 SUBSEP $4 SUBSEP $5 SUBSEP $6
        layer = $5 == "dense" ? "dense" : "Pixelfly " $5
        if (k in pf)
            printf "| %s | %s | %s | %s | %.2f | %.2f | %.2fx |\n", $3, $4, layer, $6, pf[k], $7, $7 / pf[k]
        else
            printf "| %s | %s | %s | %s | - | %.2f | - |\n", $3, $4, layer, $6, $7
    }' "$RAW/pixelfly-kernels.txt" "$RAW/torch-kernels.txt"
echo
echo "dX = input gradient only, dS / dW = weight gradients only (with bias; Pixelfly also dU, dV),"
echo "each timed alone; pixelfly's fwd+bwd is the sum of its three passes (its dS pass recomputes"
echo "dy U, which a whole backward shares with dX), PyTorch's one forward and one backward."
echo

# ---- 2. and 3. training steps ----------------------------------------------------------
# label | config | --set options (;-separated) | batch x sequence shown
# GPT-2 small Pixelfly: the config's pixelfly.budget = 0.25 written out as the layer specs it
# chooses (`pftrain summary`), which bench/torch_cpu.py reads (it has no budget rule).
SMALL_PF="pixelfly.budget=0;pixelfly.attn_qkv=bs=16 nf=2 rank=32;pixelfly.attn_proj=bs=16 nf=2 rank=24;pixelfly.mlp_fc1=bs=16 nf=2 rank=32;pixelfly.mlp_fc2=bs=16 nf=2 rank=32"
MODELS=(
    "GPT-2 tiny dense|configs/gpt2-tiny-dense.ini||8 x 128"
    "GPT-2 small dense|configs/gpt2-small-dense.ini|train.batch_size=1;model.seq_len=256|1 x 256"
    "GPT-2 small Pixelfly|configs/gpt2-small-pixelfly.ini|train.batch_size=1;model.seq_len=256;$SMALL_PF|1 x 256"
    "Mixer Fashion-MNIST dense|configs/mixer-fmnist-dense.ini||128 images"
    "Mixer Fashion-MNIST Pixelfly|configs/mixer-fmnist-pixelfly.ini||128 images"
)
rows=() mem=() mismatch=0
for m in "${MODELS[@]}"; do
    IFS='|' read -r label cfg sets shape <<< "$m"
    setargs=()
    IFS=';' read -ra setlist <<< "$sets"
    for s in "${setlist[@]}"; do setargs+=(--set "$s"); done
    tag=$(basename "$cfg" .ini)${sets:+-b1t256}
    pixelfly step "$cfg" "${setargs[@]}" --steps "$STEPS" > "$RAW/pixelfly-$tag.txt"
    $TORCH step "$cfg" "${setargs[@]}" > "$RAW/torch-$tag.txt"
    # pfbench step row: config batch params step-ms ...
    read -r pparams pms < <(awk '$1 ~ /\.ini$/ { print $3, $4 }' "$RAW/pixelfly-$tag.txt")
    prss=$(awk -F'\t' '$2 == "peak_rss" { print $3 }' "$RAW/pixelfly-$tag.txt")
    # torch_cpu.py step: config sets mode params ms rows/s loss0 peak-MB base-MB compile-s
    IFS=$'\t' read -r _ _ _ _ _ tparams tms _ tloss trss tbase _ < <(grep '^RESULT' "$RAW/torch-$tag.txt")
    same="="
    [ "$pparams" = "$tparams" ] || { same="**differ**"; mismatch=1; }
    ratio=$(awk -v a="$pms" -v b="$tms" 'BEGIN { printf "%.2fx", b / a }')
    rows+=("| $label | $shape | $pparams $same $tparams | $pms | $tms | $ratio | $tloss | $prss | $trss |")
    [[ $label == GPT-2\ small* ]] &&
        mem+=("| $label | $shape | $prss | $trss | $tbase | $(awk -v a="$trss" -v b="$tbase" 'BEGIN { printf "%.1f", a - b }') |")
    if [[ $label == "GPT-2 tiny dense" && $COMPILE == 1 ]]; then
        set +e
        timeout "$COMPILE_TIMEOUT" $TORCH step "$cfg" --compile > "$RAW/torch-$tag-compile.txt" \
            2> "$RAW/torch-$tag-compile.err"
        rc=$?
        set -e
        if [ $rc -eq 0 ]; then
            IFS=$'\t' read -r _ _ _ _ _ cparams cms _ closs crss _ csec < <(grep '^RESULT' "$RAW/torch-$tag-compile.txt")
            cratio=$(awk -v a="$pms" -v b="$cms" 'BEGIN { printf "%.2fx", b / a }')
            rows+=("| $label, torch.compile (compiled in ${csec} s) | $shape | $pparams vs $cparams | $pms | $cms | $cratio | $closs | $prss | $crss |")
        else
            why="exit $rc: $(grep -v '^\s*$' "$RAW/torch-$tag-compile.err" | tail -1 | tr '|' '/' | cut -c1-120)"
            [ $rc -eq 124 ] && why="compilation not done in ${COMPILE_TIMEOUT} s"
            rows+=("| $label, torch.compile | $shape | - | $pms | failed | - | - | $prss | - |")
            compile_note="torch.compile of GPT-2 tiny dense failed ($why); see $RAW/torch-$tag-compile.err"
        fi
    fi
done

echo "#### Training steps (forward, backward, clip, AdamW; synthetic data)"
echo
echo "| model | batch | parameters pixelfly / PyTorch | pixelfly ms | PyTorch ms | ratio | PyTorch loss, first step | pixelfly peak RSS MB | PyTorch peak RSS MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
[ -n "${compile_note:-}" ] && echo "$compile_note" && echo
echo "#### Peak memory of a GPT-2 small training step (max RSS of the whole process, MB)"
echo
echo "| model | batch | pixelfly | PyTorch | PyTorch before the model (interpreter + torch) | PyTorch minus that |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${mem[@]}"
echo
echo "cpu_vs_torch.sh: raw outputs in $RAW" >&2
if [ $mismatch = 1 ]; then
    echo "cpu_vs_torch.sh: parameter counts differ between pixelfly and PyTorch (table above)" >&2
    exit 1
fi
