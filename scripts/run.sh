#!/usr/bin/env bash
# Builds roomcast and runs it with embedded defaults until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target roomcast-core
exec "$build_dir/core/roomcast-core" "$@"
