#!/usr/bin/env bash
# Gathers, on the build machine, what a session on a lent GPU machine needs into
# $BUILD/gpu-bundle (BUILD default build): the CUDA build's binaries (pftrain, pfbench,
# test_cuda_ops, comm_test) and the libraries the GPU machine's image lacks (it has CUDA, NCCL,
# Open MPI, HDF5, OpenBLAS and zlib, but not libinih, cJSON, PCRE2, libturbojpeg or Check).
# Builds nothing: `make gpu-bundle` builds the binaries with CUDA=1 and then runs this. Carry
# $BUILD/gpu-bundle to the machine and run
#   tests/gpu/session.sh check|sanitize|train|bench|all
# there. The bundle is ~25 MB: under the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILD=${BUILD:-build}
B=$BUILD/gpu-bundle
LIBDIR=/lib/x86_64-linux-gnu

bins=("$BUILD/pftrain" "$BUILD/pfbench" "$BUILD/tests/gpu/test_cuda_ops"
      "$BUILD/tests/mpi/comm_test")
for p in "${bins[@]}"; do
  # A CPU-only build of the same name would pass every check here and fail on the GPU.
  if [ ! -x "$p" ] || ! ldd "$p" | grep -q libcudart; then
    echo "bundle: $p is missing or not a CUDA build: run \`make BUILD=$BUILD gpu-bundle\`" >&2
    exit 1
  fi
done
rm -rf "$B"
mkdir -p "$B/lib" "$B/data"
cp "${bins[@]}" "$B/"

for lib in libinih.so.1 libcjson.so.1 libpcre2-8.so.0 libturbojpeg.so.0; do
  cp -L "$LIBDIR/$lib" "$B/lib/"
done

# Token shards for the training check (launch/prepare-tinyshakespeare.sh makes them).
if [ ! -f data/tinyshakespeare-train.h5 ]; then launch/prepare-tinyshakespeare.sh; fi
cp data/tinyshakespeare-train.h5 data/tinyshakespeare-val.h5 "$B/data/"
du -sh "$B"
