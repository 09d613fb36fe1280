#!/usr/bin/env bash
# Prepares a session on a lent GPU machine (run here, on the build machine): builds the CUDA
# binaries and gathers into build/gpu-bundle everything tests/gpu/session.sh needs that the
# GPU machine's image lacks (it has CUDA, NCCL, Open MPI, HDF5, OpenBLAS and zlib, but not
# libinih, cJSON, PCRE2, libturbojpeg or Check). Carry build/gpu-bundle to the machine and run
#   tests/gpu/session.sh check|sanitize|train|bench|all
# there. The bundle is ~10 MB: under the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/gpu-bundle
LIBDIR=/lib/x86_64-linux-gnu

make -s CUDA=1 build/pftrain build/pfbench build/tests/gpu/test_cuda_ops build/libpixelfly.a
rm -rf "$B"
mkdir -p "$B/lib" "$B/data"
cp build/pftrain build/pfbench build/tests/gpu/test_cuda_ops "$B/"

# The MPI communicator test, built as tests/mpi/run.sh builds it (it runs the NCCL case).
makevar() {
  make -s --no-print-directory CUDA=1 -f Makefile -f - pf-print-var PF_VAR="$1" <<< \
    'pf-print-var: ; @echo $($(PF_VAR))'
}
# shellcheck disable=SC2046  # the flags are word lists
$(makevar CC) $(makevar CFLAGS) tests/mpi/comm_test.c build/libpixelfly.a $(makevar LDLIBS) \
  -o "$B/comm_test"

for lib in libinih.so.1 libcjson.so.1 libpcre2-8.so.0 libturbojpeg.so.0; do
  cp -L "$LIBDIR/$lib" "$B/lib/"
done

# Token shards for the training check (launch/prepare-tinyshakespeare.sh makes them).
if [ ! -f data/tinyshakespeare-train.h5 ]; then launch/prepare-tinyshakespeare.sh; fi
cp data/tinyshakespeare-train.h5 data/tinyshakespeare-val.h5 "$B/data/"
du -sh "$B"
