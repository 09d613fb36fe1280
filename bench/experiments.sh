#!/usr/bin/env bash
# experiments.sh [mixer|vit|gpt2|gpt2-long|wt2|wt2-dropout|all]: the layer-kind sweeps of bench/EXPERIMENTS.md, each
# through launch/sweep.sh into runs/exp-*; rerunning resumes them. Needs the Fashion-MNIST shards
# (launch/quickstart.sh makes them), the tinyshakespeare shards
# (launch/prepare-tinyshakespeare.sh) and, for wt2, WikiText-2's (made here from the shared data). Threads: OMP_NUM_THREADS (default: all cores, waiting
# passively, as pftrain sets them).
set -u
cd "$(dirname "$0")/.." || exit 1
what=${1:-all}
rc=0

# Fashion-MNIST Mixer: the channel MLP (128 <-> 512) of each kind at two budgets, about 0.45
# and 0.25 of its dense weights (each row's `params` says exactly), 3 seeds; 700 steps.
if [ "$what" = mixer ] || [ "$what" = all ]; then
  launch/sweep.sh configs/mixer-fmnist-dense.ini --out runs/exp-mixer-fmnist \
    --grid 'pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8|blocksparse bs=8 blocks=3 rank=8|lowrank rank=46|butterfly bs=8|bs=16 nf=2 rank=8|blocksparse bs=16 blocks=3 rank=8|lowrank rank=27|butterfly bs=16' \
    --grid 'train.seed=1,2,3' -- --set train.steps=700 --set train.eval_every=0 --quiet || rc=1
fi

# Fashion-MNIST ViT: the four attention and MLP layers of each kind at the Mixer's two
# settings (per layer type the kept fraction differs: bench/EXPERIMENTS.md), 3 seeds; 700 steps.
if [ "$what" = vit ] || [ "$what" = all ]; then
  launch/sweep.sh configs/vit-fmnist-dense.ini --out runs/exp-vit-fmnist \
    --grid 'pixelfly.attn_qkv,pixelfly.attn_proj,pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8|blocksparse bs=8 blocks=3 rank=8|lowrank rank=46|butterfly bs=8|bs=16 nf=2 rank=8|blocksparse bs=16 blocks=3 rank=8|lowrank rank=27|butterfly bs=16' \
    --grid 'train.seed=1,2,3' -- --set train.steps=700 --set train.eval_every=0 --quiet || rc=1
fi

# GPT-2 tiny on tinyshakespeare: every linear layer of the blocks of each kind at about 0.45
# of the dense weights, 3 seeds; 300 steps (configs/gpt2-tiny-*.ini).
if [ "$what" = gpt2 ] || [ "$what" = all ]; then
  launch/sweep.sh configs/gpt2-tiny-dense.ini --out runs/exp-gpt2-tiny \
    --grid 'pixelfly.attn_qkv,pixelfly.attn_proj,pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8|blocksparse bs=8 blocks=3 rank=8|lowrank rank=46|butterfly bs=8' \
    --grid 'train.seed=1,2,3' -- --set train.eval_every=100 --quiet || rc=1
fi
# GPT-2 tiny on tinyshakespeare trained until the validation loss is flat: the gpt2 sweep's
# kinds and seeds at 1000 steps (about 3.4 epochs; cosine to 0 at step 1000), evaluated every 100.
if [ "$what" = gpt2-long ] || [ "$what" = all ]; then
  launch/sweep.sh configs/gpt2-tiny-dense.ini --out runs/exp-gpt2-tiny-1000 \
    --grid 'pixelfly.attn_qkv,pixelfly.attn_proj,pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8|blocksparse bs=8 blocks=3 rank=8|lowrank rank=46|butterfly bs=8' \
    --grid 'train.seed=1,2,3' -- --set train.steps=1000 --set train.eval_every=100 --quiet || rc=1
fi
# GPT-2 tiny on WikiText-2, trained on its validation split and evaluated on its test split
# (only those two are in the shared data): dense and the best two kinds of the gpt2 sweep at
# its budget, 3 seeds; 800 steps (3.2 epochs of the 2005 windows), evaluated every 100.
if [ "$what" = wt2 ] || [ "$what" = wt2-dropout ] || [ "$what" = all ]; then
  DATA=${PIXELFLY_DATA:-../shared/data}
  for split in valid test; do
    [ -f "data/wikitext2-$split.h5" ] ||
      build/pfdata text --vocab "$DATA/gpt2" --out "data/wikitext2-$split.h5" \
        "$DATA/wikitext-2/$split.txt" || rc=1
  done
fi
if [ "$what" = wt2 ] || [ "$what" = all ]; then
  launch/sweep.sh configs/gpt2-tiny-dense.ini --out runs/exp-gpt2-wt2 \
    --grid 'pixelfly.attn_qkv,pixelfly.attn_proj,pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8|blocksparse bs=8 blocks=3 rank=8' \
    --grid 'train.seed=1,2,3' -- --set data.train=data/wikitext2-valid.h5 \
    --set data.val=data/wikitext2-test.h5 --set train.steps=800 --set train.eval_every=100 \
    --quiet || rc=1
fi

# The same WikiText-2 runs for dense and Pixelfly with train.dropout = 0.1 (GPT-2's), which
# the runs above, overfitting from step 500, lack.
if [ "$what" = wt2-dropout ] || [ "$what" = all ]; then
  launch/sweep.sh configs/gpt2-tiny-dense.ini --out runs/exp-gpt2-wt2-dropout \
    --grid 'pixelfly.attn_qkv,pixelfly.attn_proj,pixelfly.mlp_fc1,pixelfly.mlp_fc2=dense|bs=8 nf=2 rank=8' \
    --grid 'train.seed=1,2,3' -- --set data.train=data/wikitext2-valid.h5 \
    --set data.val=data/wikitext2-test.h5 --set train.steps=800 --set train.eval_every=100 \
    --set train.dropout=0.1 --quiet || rc=1
fi
exit $rc
