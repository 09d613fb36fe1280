# lib.sh: what the Slurm tests share (tests/slurm/run.sh, tests/cluster/run.sh), sourced.
# Each function returns non-zero with the reason on stdout, for the caller's FAIL line.

# slurm_install: installs slurmctld, slurmd, the client, munge and iproute2 when one is missing
# (apt-get; needs root).
slurm_install() {
  command -v slurmctld > /dev/null && command -v slurmd > /dev/null &&
    command -v sbatch > /dev/null && command -v munged > /dev/null && command -v ip > /dev/null &&
    return 0
  [ "$(id -u)" = 0 ] || { echo "slurm is missing and this is not root"; return 1; }
  echo "== installing slurmctld slurmd slurm-client munge iproute2" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends \
      slurmctld slurmd slurm-client munge iproute2; } > /tmp/pf-slurm-apt.log 2>&1 ||
    { echo "apt-get failed:"; tail -n 20 /tmp/pf-slurm-apt.log; return 1; }
}

# slurm_conf_common DIR: the slurm.conf lines both test clusters share (controller files in
# DIR, root daemons, no cgroups, no accounting); each script adds its controller, ports,
# slurmd files and nodes.
slurm_conf_common() {
  cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$1/state
SlurmctldPidFile=$1/slurmctld.pid
SlurmctldLogFile=$1/slurmctld.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
EOF
}

# slurm_daemons DIR: munged with its own key and socket in DIR/munge (a system munged is left
# alone), the AuthInfo line appended to $SLURM_CONF, then slurmctld. Appends the daemons'
# pids to the caller's array `daemons`.
slurm_daemons() {
  local dir=$1
  mkdir -p "$dir/munge" "$dir/state"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" > "$dir/munged.out" 2>&1 ||
    { echo "munged:"; cat "$dir/munged.out" "$dir/munge/munged.log" 2>/dev/null; return 1; }
  daemons+=("$(cat "$dir/munge/munged.pid")")
  # cred_expire also delays a requeued job's restart (default 120 s).
  echo "AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10" >> "$SLURM_CONF"
  slurmctld -c > "$dir/slurmctld.out" 2>&1 || { echo "slurmctld:"; cat "$dir/slurmctld.out"; return 1; }
  sleep 1
  [ -f "$dir/slurmctld.pid" ] && daemons+=("$(cat "$dir/slurmctld.pid")")
  return 0
}

# wait_done JOB LIMIT_S: until the job left the queue for good; prints its final state.
wait_done() {
  local st
  for _ in $(seq "$2"); do
    st=$(scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case $st in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|"") break ;; esac
    sleep 1
  done
  echo "${st:-GONE}"
}
