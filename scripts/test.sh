#!/usr/bin/env bash
# Builds roomcast and runs every test (CTest). Exits non-zero on any failure.
# Usage: scripts/test.sh [extra ctest arguments]
#
# Also compiles the servers and the client library with clang and
# -Wthread-safety -Werror, so that the ABSL_GUARDED_BY annotations are checked
# (skip with ROOMCAST_THREAD_SAFETY_CHECK=0). CI sets ROOMCAST_WERROR=ON.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DROOMCAST_WERROR="${ROOMCAST_WERROR:-OFF}" >/dev/null
cmake --build "$build_dir"

if [[ ${ROOMCAST_THREAD_SAFETY_CHECK:-1} != 0 ]]; then
  echo "thread-safety analysis (clang -Wthread-safety -Werror)"
  cmake -S . -B "$build_dir-clang" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_COMPILER=clang++ -DROOMCAST_WERROR=ON \
    -DROOMCAST_BUILD_TESTS=OFF -DROOMCAST_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build_dir-clang"
fi

ctest --test-dir "$build_dir" --output-on-failure --timeout 300 "$@"
