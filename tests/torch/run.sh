#!/usr/bin/env bash
# run.sh: the PyTorch reference test of `pftrain export` (make test-torch builds what it runs:
# $BUILD/pftrain and $BUILD/tests/torch/pf_reference). PYTHON: an interpreter with torch and
# numpy (Debian's python3-torch and python3-numpy, installed by `make deps`). Without them the
# test is skipped with a message, and fails when CI=true.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the tree
if ! "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP test-torch: '$PYTHON' cannot import torch and numpy (make deps installs python3-torch python3-numpy)"
  [ "${CI:-}" = true ] && { echo "FAIL: CI=true and torch is missing"; exit 1; }
  exit 0
fi
work=${PF_TORCH_WORK:-$(mktemp -d /tmp/pf_torch_XXXXXX)}
[ -n "${PF_TORCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
"$PYTHON" tests/torch/test_export.py "$BUILD" "$work"
