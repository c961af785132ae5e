#!/usr/bin/env bash
# Builds roomcast and runs every test (CTest). Exits non-zero on any failure.
# Usage: scripts/test.sh [extra ctest arguments]
# CI sets ROOMCAST_WERROR=ON (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DROOMCAST_WERROR="${ROOMCAST_WERROR:-OFF}" >/dev/null
cmake --build "$build_dir"

ctest --test-dir "$build_dir" --output-on-failure --timeout 300 "$@"
