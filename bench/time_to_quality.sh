#!/usr/bin/env bash
# time_to_quality.sh: EXPERIMENTS.md section 3. GPT-2 with GPT-2 small's layers (width 768, 12
# heads) but 6 blocks and sequence 256, dense and Pixelfly (configs/gpt2-small-*.ini: budget
# 0.25), each given about the same wall-clock budget on this machine (16 minutes: 320 dense
# steps at 2.86 s, 495 Pixelfly steps at 1.84 s, from `pfbench step` just before), on the
# tinyshakespeare shards (launch/prepare-tinyshakespeare.sh); validation on the first 32
# windows every 50 steps. Then: build/pftrain plot runs/ttq-dense runs/ttq-pixelfly --out ...
# SEED=N (default 1) runs another seed into runs/ttq-{dense,pixelfly}-sN; BUILD=dir (default build)
# picks the pftrain binary, e.g. a CPU-only build-dev.
set -eu
cd "$(dirname "$0")/.."
SEED=${SEED:-1}
PFTRAIN=${BUILD:-build}/pftrain
suffix=""
[ "$SEED" = 1 ] || suffix=-s$SEED
COMMON=(--set model.n_layer=6 --set model.seq_len=256 --set train.batch_size=4 --set train.grad_accum=1
        --set data.train=data/tinyshakespeare-train.h5 --set data.val=data/tinyshakespeare-val.h5
        --set train.warmup_steps=30 --set train.eval_every=50 --set train.eval_batches=8
        --set run.checkpoint_every=0 --set train.seed="$SEED" --quiet)
OMP_WAIT_POLICY=passive "$PFTRAIN" configs/gpt2-small-dense.ini "${COMMON[@]}" --set train.steps=320 --set run.out_dir=runs/ttq-dense$suffix --new-run
OMP_WAIT_POLICY=passive "$PFTRAIN" configs/gpt2-small-pixelfly.ini "${COMMON[@]}" --set train.steps=495 --set run.out_dir=runs/ttq-pixelfly$suffix --new-run
