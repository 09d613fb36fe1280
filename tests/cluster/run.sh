#!/usr/bin/env bash
# Two-node cluster test (`make test-cluster`): a throw-away Slurm cluster of two nodes on this
# machine. Each node is a network namespace (its own address on a private bridge, its own
# loopback) with its own UTS namespace (hostname node1 / node2) and an /etc/hosts naming the
# cluster, bind-mounted in a mount namespace; one slurmd runs in each, slurmctld and munged
# in the root namespace. Jobs run launch/slurm/pftrain.sbatch with mpirun inside the
# allocation, whose ranks talk TCP across the bridge. The run directory is on the storage
# both nodes see (this machine's). Then:
#   1. 2 nodes x 2 ranks of GPT-2 tiny log the losses of 1 node x 4 ranks (relative
#      difference < 1e-4), and RUN/ranks.tsv has every rank on the right node with the right
#      node-local rank;
#   2. every process of node2 is killed mid-run (the node dies): the ranks on node1 are gone
#      within 30 s, the job log names node2 and its ranks; with node2 back, the job
#      resubmitted as an operator would resumes from the last checkpoint every rank agreed
#      on and ends with the uninterrupted run's losses;
#   3. node2 dies while a checkpoint is being written: `latest` still names the previous
#      complete checkpoint, and a resume from it works.
# Everything it made (namespaces, bridge, daemons, files) is removed on exit, also when a case
# fails or the script is interrupted. Needs root (namespaces); installs slurm and munge when
# missing (tests/slurm/lib.sh). Prints "N passed, N failed"; non-zero if any failed.
# Builds nothing: `make test-cluster` builds the tools first; by hand, `make BUILD=DIR`, then
# `BUILD=DIR tests/cluster/run.sh` (BUILD defaults to build). KEEP=1 keeps the temp dir.
set -u
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
export BUILD=${BUILD:-build}

passed=0; failed=0
pass() { passed=$((passed+1)); echo "PASS $1"; }
fail() { failed=$((failed+1)); echo "FAIL $1"; shift; [ $# -eq 0 ] || sed 's/^/    | /' <<< "$*"; }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

[ "$(id -u)" = 0 ] || { fail "the cluster needs root (network namespaces)"; finish; }
for p in pftrain pfdata; do
  [ -x "$BUILD/$p" ] || { fail "no $BUILD/$p: run \`make BUILD=$BUILD test-cluster\`"; finish; }
done
. tests/slurm/lib.sh
out=$(slurm_install) || { fail "install" "$out"; finish; }

# ---- the two nodes ---------------------------------------------------------------------------
# Names and the subnet carry a number from this process, so two runs do not collide.
ID=$(( $$ % 200 + 20 ))
NET=10.213.$ID
BR=pfbr$ID
NS=(pfc${ID}n1 pfc${ID}n2)
NODES=(node1 node2)
T=$(mktemp -d "${TMPDIR:-/tmp}/pf-cluster.XXXXXX")
chmod 755 "$T"
daemons=()
cleanup() {
  local ns p
  for ns in "${NS[@]}"; do
    p=$(ip netns pids "$ns" 2>/dev/null)
    [ -z "$p" ] || kill -KILL $p 2>/dev/null
  done
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in "${daemons[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

net_up() {
  ip link add "$BR" type bridge && ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up ||
    return 1
  local i
  for i in 0 1; do
    ip netns add "${NS[i]}" &&
      ip link add "pfv${ID}n$((i+1))" type veth peer name eth0 netns "${NS[i]}" &&
      ip link set "pfv${ID}n$((i+1))" master "$BR" up &&
      ip -n "${NS[i]}" addr add "$NET.$((11+i))/24" dev eth0 &&
      ip -n "${NS[i]}" link set eth0 up && ip -n "${NS[i]}" link set lo up || return 1
  done
}
out=$(net_up 2>&1) || { fail "network namespaces on a bridge" "$out"; finish; }
printf '127.0.0.1 localhost\n%s.1 %s\n%s.11 node1\n%s.12 node2\n' "$NET" "$(hostname -s)" \
  "$NET" "$NET" > "$T/hosts"

# on_node I CMD...: runs CMD on node I+1: in its network namespace, with its hostname and
# /etc/hosts (a new UTS and mount namespace per call; processes it starts keep them). nsenter
# rather than `ip netns exec`, which would remount /sys without the cgroup mounts slurmd needs.
on_node() {
  local i=$1; shift
  nsenter --net="/run/netns/${NS[i]}" unshare --uts --mount --propagation private \
    sh -c 'mount --bind "$0" /etc/hosts && hostname "$1" && shift && exec "$@"' \
    "$T/hosts" "${NODES[i]}" "$@"
}

# ---- slurm -----------------------------------------------------------------------------------
export SLURM_CONF=$T/slurm.conf
CTL=$(hostname -s)
slurm_conf_common "$T" > "$SLURM_CONF"
cat >> "$SLURM_CONF" <<EOF
ClusterName=pfcluster
SlurmctldHost=$CTL($NET.1)
SlurmctldPort=16837
SlurmdPort=16838
SlurmdSpoolDir=$T/spool/%n
SlurmdPidFile=$T/slurmd-%n.pid
SlurmdLogFile=$T/slurmd-%n.log
SlurmdTimeout=10
# Both nodes share this machine's cores: 4 CPUs each, whatever it has.
SlurmdParameters=config_overrides
NodeName=node1 NodeAddr=$NET.11 CPUs=4 State=UNKNOWN
NodeName=node2 NodeAddr=$NET.12 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
mkdir -p "$T/spool/node1" "$T/spool/node2"
# Not in $(...): it records the daemons' pids in this shell's array.
slurm_daemons "$T" > "$T/daemons.err" ||
  { fail "start munged and slurmctld" "$(cat "$T/daemons.err")"; finish; }

# start_slurmd I: node I+1's slurmd (it daemonizes inside the node's namespaces).
start_slurmd() {
  on_node "$1" slurmd -N "${NODES[$1]}" > "$T/slurmd-${NODES[$1]}.out" 2>&1
}

# wait_nodes STATE_REGEX LIMIT_S: until both nodes' states match.
wait_nodes() {
  local st=""
  for _ in $(seq "$2"); do
    st=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort | tr '\n' ' ')
    grep -Eq "^node1 ($1) node2 ($1) $" <<< "$st" && return 0
    sleep 1
  done
  echo "node states after $2 s: $st"
  return 1
}

start_slurmd 0 && start_slurmd 1 ||
  { fail "start slurmd on node1 and node2" "$(cat "$T"/slurmd-*.out "$T"/slurmd-*.log 2>/dev/null)"; finish; }
if out=$(wait_nodes 'idle' 60); then
  pass "two-node cluster up (node1 $NET.11, node2 $NET.12, slurmctld $NET.1)"
else
  fail "two-node cluster up" "$out" "$(tail -n 15 "$T/slurmctld.log" "$T"/slurmd-node*.log 2>&1)"
  finish
fi

# ---- jobs ------------------------------------------------------------------------------------
tests/make-token-shard.sh "$T/train.h5" || { fail "token shard"; finish; }
TINY="--set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.seq_len=16"
TINY+=" --set train.eval_every=0 --set data.val= --set data.train=$T/train.h5"
TINY+=" --set train.schedule=constant --set train.warmup_steps=5"
# The batch script without its GPU request (the nodes have none).
grep -v '^#SBATCH --gpus-per-node' launch/slurm/pftrain.sbatch > "$T/pftrain.sbatch"
# Open MPI as root, over the bridge only (each node also has its loopback).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_tcp_if_include=$NET.0/24 OMPI_MCA_oob_tcp_if_include=$NET.0/24
export OMPI_MCA_btl=self,vader,tcp

# submit NAME NODES TASKS_PER_NODE RUN_DIR PF_ARGS: sets JOB; the job log is $T/NAME.out.
submit() {
  JOB=$(PF_REPO=$REPO PF_CONFIG=configs/gpt2-tiny-pixelfly.ini PF_RUN_DIR=$4 PF_ARGS=$5 \
        PF_LAUNCHER=mpirun PF_BIN=$BUILD/pftrain OMP_NUM_THREADS=1 \
        sbatch --parsable --job-name="$1" --nodes="$2" --ntasks-per-node="$3" \
        --cpus-per-task=1 --time=10 --no-requeue --output="$T/$1.out" "$T/pftrain.sbatch" 2>&1) ||
    { echo "$JOB"; return 1; }
}

# losses RUN_DIR: "STEP LOSS" per logged step.
losses() {
  awk '/"loss":/ { s = $0; sub(/.*"step": /, "", s); sub(/,.*/, "", s)
                   l = $0; sub(/.*"loss": /, "", l); sub(/,.*/, "", l); print s, l }' \
    "$1/metrics.jsonl" 2>/dev/null
}

# close_losses A B N: N steps logged by both, every relative difference below 1e-4.
close_losses() {
  paste -d' ' <(losses "$1") <(losses "$2") | awk -v n="$3" '
    { k++; d = $2 - $4; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2)
      if ($1 != $3 || r >= 1e-4) { printf "step %s: %s vs step %s: %s (rel %.3g)\n", $1, $2, $3, $4, r; bad = 1 } }
    END { if (k != n) { print "expected " n " steps, got " k; bad = 1 }; exit bad }'
}

# final_losses RUN_DIR: "STEP LOSS" per step, the last logged for each (a resumed run logs
# again the steps after its checkpoint), in step order.
final_losses() {
  losses "$1" | awk '{ l[$1] = $2 } END { for (s in l) print s, l[s] }' | sort -n
}

# kill_node I: every process of node I+1 at once, as when the machine dies (slurmd, the
# launcher's daemon, the ranks).
kill_node() {
  local p
  p=$(ip netns pids "${NS[$1]}" 2>/dev/null)
  [ -z "$p" ] || kill -KILL $p 2>/dev/null
}

# pftrain processes still running on node I+1.
ranks_on() {
  local p n=0
  for p in $(ip netns pids "${NS[$1]}" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pftrain ] && n=$((n+1))
  done
  echo $n
}

# Case 1: 2 nodes x 2 ranks against 1 node x 4 ranks, and where each rank ran.
STEPS=20
A=$T/run-1x4 B=$T/run-2x2
if submit one 1 4 "$A" "$TINY --set train.batch_size=2 --set train.steps=$STEPS" &&
   [ "$(wait_done "$JOB" 180)" = COMPLETED ] && J1=$JOB &&
   submit two 2 2 "$B" "$TINY --set train.batch_size=2 --set train.steps=$STEPS" &&
   [ "$(wait_done "$JOB" 180)" = COMPLETED ]; then
  want=$(printf 'rank\thost\tlocal_rank\tlocal_size\n0\tnode1\t0\t2\n1\tnode1\t1\t2\n2\tnode2\t0\t2\n3\tnode2\t1\t2')
  if ! diff=$(close_losses "$A" "$B" "$STEPS"); then
    fail "2 nodes x 2 ranks = 1 node x 4 ranks" "$diff"
  elif [ "$(cat "$B/ranks.tsv")" != "$want" ]; then
    fail "2 nodes x 2 ranks: placement" "$(cat "$B/ranks.tsv")" "$(cat "$T/two.out")"
  elif ! grep -q "node2: ranks 2-3 (local 0-1 of 2)" "$T/two.out"; then
    fail "2 nodes x 2 ranks: the log names each node's ranks" "$(cat "$T/two.out")"
  else
    pass "2 nodes x 2 ranks log the losses of 1 node x 4 (jobs $J1, $JOB); ranks 0-1 on node1, 2-3 on node2"
  fi
else
  fail "2 nodes x 2 ranks = 1 node x 4 ranks: job $JOB did not complete" \
    "$(cat "$T/one.out" "$T/two.out" 2>&1 | tail -n 30)"
fi

# Case 2: node2 dies mid-run; the survivors stop; node2 comes back; the resubmitted job resumes
# from `latest` and ends as the uninterrupted run did.
STEPS=150
ARGS="$TINY --set train.batch_size=2 --set train.steps=$STEPS --set run.checkpoint_every=10"
W=$T/run-whole R=$T/run-fail
if submit whole 2 2 "$W" "$ARGS" && [ "$(wait_done "$JOB" 300)" = COMPLETED ] &&
   submit fail 2 2 "$R" "$ARGS"; then
  for _ in $(seq 300); do
    n=$(grep -c '"loss"' "$R/metrics.jsonl" 2>/dev/null)
    [ "${n:-0}" -ge 35 ] && break
    sleep 0.2
  done
  logged=$(grep -c '"loss"' "$R/metrics.jsonl" 2>/dev/null)
  t0=$SECONDS
  kill_node 1
  while [ "$(ranks_on 0)" -gt 0 ] && [ $((SECONDS - t0)) -le 60 ]; do sleep 0.5; done
  gone=$((SECONDS - t0))
  st=$(wait_done "$JOB" 120)
  latest=$(cat "$R/checkpoints/latest" 2>/dev/null)
  log=$(cat "$T/fail.out")
  start_slurmd 1
  if [ "$logged" -lt 35 ] || [ "$(grep -c '"loss"' "$R/metrics.jsonl")" -ge "$STEPS" ]; then
    fail "node failure: the run was not mid-way when node2 died ($logged steps logged)" "$log"
  elif [ "$gone" -gt 30 ]; then
    fail "node failure: node1's ranks still ran $gone s after node2 died" "$log"
  elif ! grep -q "node node2 does not respond: lost with it rank(s) 2 3" <<< "$log"; then
    fail "node failure: the job log does not name node2 and ranks 2 3 (job $JOB ended $st)" "$log"
  elif ! out=$(wait_nodes 'idle' 90); then
    fail "node failure: node2 did not come back" "$out"
  elif ! submit resumed 2 2 "$R" "$ARGS" || [ "$(wait_done "$JOB" 300)" != COMPLETED ]; then
    fail "node failure: the resubmitted job did not complete" "$(cat "$T/resumed.out")"
  elif ! grep -q "resumed from .*$latest at step" "$T/resumed.out"; then
    fail "node failure: the resubmitted job did not resume from latest ($latest)" "$(cat "$T/resumed.out")"
  elif [ "$(final_losses "$W")" != "$(final_losses "$R")" ]; then
    fail "node failure: the resumed run's losses differ from the uninterrupted run's" \
      "$(diff <(final_losses "$W") <(final_losses "$R") | head -n 10)"
  else
    pass "node2 killed at step $logged: node1's ranks gone in ${gone} s, node2 and ranks 2 3 named; resumed from $latest to the uninterrupted run's $STEPS losses"
  fi
else
  fail "node failure: job $JOB" "$(cat "$T/whole.out" "$T/fail.out" 2>&1 | tail -n 30)"
fi

# Case 3: node2 dies while rank 0 writes a checkpoint (a wider model, so that the write takes
# a while): `latest` stays on the previous complete checkpoint, and the run resumes from it.
ARGS="$TINY --set model.n_embd=256 --set model.n_head=4 --set train.batch_size=2"
ARGS+=" --set train.steps=400 --set run.checkpoint_every=3 --set run.keep_checkpoints=2"
# The kill can land after rank 0 already committed the checkpoint it saw being written (a fast
# disk): then the case did not happen, and it is tried again in a fresh run, up to 3 times.
for attempt in 1 2 3; do
  C=$T/run-ckpt$attempt
  submit ckpt 2 2 "$C" "$ARGS" || break
  tmp=""
  for _ in $(seq 60000); do  # about 60 s: until rank 0 has begun a checkpoint after the first
    if [ -f "$C/checkpoints/latest" ]; then
      tmp=$(compgen -G "$C/checkpoints/ckpt-*.h5.tmp" | head -n 1)
      [ -n "$tmp" ] && break
    fi
    sleep 0.001
  done
  kill_node 1
  st=$(wait_done "$JOB" 120)
  start_slurmd 1
  wait_nodes 'idle' 90 > /dev/null
  latest=$(cat "$C/checkpoints/latest" 2>/dev/null)
  [ -n "$tmp" ] && [ "$latest" = "$(basename "${tmp%.tmp}")" ] || break
done
if [ -n "$JOB" ]; then
  writing=$(basename "${tmp%.tmp}")
  at=${latest#ckpt-}; at=${at%.h5}
  if [ -z "$tmp" ]; then
    fail "node dies during a checkpoint: never saw one being written" "$(cat "$T/ckpt.out")"
  elif [ -z "$latest" ] || [ ! "$latest" \< "$writing" ]; then
    fail "node dies during a checkpoint: latest is '$latest' while $writing was being written" \
      "$(ls -l "$C/checkpoints")"
  elif ! out=$(wait_nodes 'idle' 90); then
    fail "node dies during a checkpoint: node2 did not come back" "$out"
  elif ! submit ckpt2 2 2 "$C" "${ARGS/train.steps=400/train.steps=$((10#$at + 3))}" ||
       [ "$(wait_done "$JOB" 300)" != COMPLETED ] ||
       ! grep -q "resumed from .*$latest at step" "$T/ckpt2.out"; then
    fail "node dies during a checkpoint: no resume from $latest" "$(cat "$T/ckpt2.out" 2>&1)"
  else
    pass "node2 killed while $writing was written: latest stayed $latest, which resumes"
  fi
else
  fail "node dies during a checkpoint: submit" "$JOB"
fi
finish
