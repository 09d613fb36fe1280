#!/usr/bin/env bash
# local.sh NP CONFIG [pftrain flags...]: trains on this machine with NP ranks under mpirun,
# resuming from the run's latest good checkpoint when there is one. Exits with pftrain's code
# (75: a signal made every rank save; run this again to continue). Each rank gets
# OMP_NUM_THREADS = cores / NP unless OMP_NUM_THREADS is set. BUILD picks the build dir.
#   launch/local.sh 4 configs/gpt2-tiny-pixelfly.ini --set run.out_dir=runs/tiny-np4
set -u
cd "$(dirname "$0")/.." || exit 1
[ $# -ge 2 ] || { echo "usage: $0 NP CONFIG [pftrain flags...]" >&2; exit 64; }
NP=$1; shift
case $NP in ''|*[!0-9]*|0) echo "$0: NP '$NP' is not a positive rank count" >&2; exit 64 ;; esac
threads=$(( $(nproc) / NP )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
# Open MPI refuses root without these (containers); harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --oversubscribe --bind-to none -np "$NP" "${BUILD:-build}/pftrain" "$@" --resume auto
