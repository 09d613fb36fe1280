#!/usr/bin/env bash
# Runs each Check test binary, then prints one closing line "N passed, N failed".
# A missing shared data directory is a failure when PIXELFLY_REQUIRE_DATA=1 (CI sets it).
set -u
passed=0; failed=0; failed_names=()
for t in "$@"; do
  echo "== ${t##*/}"
  if "$t"; then passed=$((passed+1)); else failed=$((failed+1)); failed_names+=("${t##*/}"); fi
done
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
