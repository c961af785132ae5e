#!/usr/bin/env bash
# Builds every Bazel target and runs the GoogleTest unit tests under Bazel,
# offline; CTest runs this as `bazel_build_test` (tests/bazel/CMakeLists.txt).
#
#   1. `bazel fetch //...` sets up the repositories, all of them local (the
#      stand-ins under bazel/stubs and @system_libs from pkg-config): nothing
#      is downloaded, the machine needs no network.
#   2. `bazel build --nofetch //...`: every target, with fetching switched off.
#   3. `bazel test --nofetch //...`: the cc_test targets.
#
# Bazel's output base and a disk cache live under $ROOMCAST_BAZEL_CACHE
# (default ~/.cache/roomcast-bazel), outside the checkout, so a rerun (or a
# fresh clone on the same machine) only rebuilds what changed. The whole run is
# bounded by ROOMCAST_BAZEL_TIMEOUT seconds (default 1500); at the limit, or when
# CTest stops the test, the Bazel server is shut down so no build keeps running.
#
# Usage: bazel/ci.sh [extra bazel options, e.g. --config=release]
#        bazel/ci.sh --parity [CMAKE_MODEL_DIR]
#          runs scripts/check-bazel-parity.sh with the same Bazel output base
set -euo pipefail
cd "$(dirname "$0")/.."

bazel=${BAZEL:-bazel}
command -v "$bazel" >/dev/null || {
  echo "bazel/ci.sh: $bazel not found; scripts/install-deps.sh installs Debian's bazel-bootstrap" >&2
  exit 1
}
cache=${ROOMCAST_BAZEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roomcast-bazel}
mkdir -p "$cache"
# One output base per checkout (Bazel ties an output base to one workspace);
# the disk cache is shared by all of them.
key=$(printf %s "$PWD" | md5sum | cut -c1-12)
# The disk cache has no eviction in Bazel 4.2: start it over past 5 GiB.
if [[ -d $cache/disk ]] && (($(du -sm "$cache/disk" | cut -f1) > 5120)); then
  echo "bazel/ci.sh: disk cache over 5 GiB, clearing it"
  rm -rf "$cache/disk"
fi

startup=(--output_base="$cache/output_base-$key" --max_idle_secs=600)
if [[ ${1:-} == --parity ]]; then
  shift
  BAZEL=$bazel BAZEL_STARTUP_OPTIONS="${startup[*]}" exec nice -n 10 scripts/check-bazel-parity.sh "$@"
fi
options=(--config=ci --disk_cache="$cache/disk" --symlink_prefix=/ "$@")
run_bazel() { nice -n 10 "$bazel" "${startup[@]}" "$@"; }

stop_bazel() {
  echo "bazel/ci.sh: stopped; shutting the Bazel server down" >&2
  "$bazel" "${startup[@]}" shutdown >/dev/null 2>&1 || true
  exit 124
}
trap stop_bazel TERM INT
timeout_s=${ROOMCAST_BAZEL_TIMEOUT:-1500}
# A watchdog: the Bazel server runs outside this process group, so a plain
# `timeout` on the client would leave it building.
(sleep "$timeout_s" && echo "bazel/ci.sh: over ${timeout_s}s" >&2 && kill -TERM $$) &
watchdog=$!
trap 'kill $watchdog 2>/dev/null || true' EXIT

step() {
  local start=$SECONDS
  echo "== bazel $*"
  run_bazel "$@" &
  wait $! || { echo "== failed after $((SECONDS - start)) s: bazel $*"; return 1; }
  echo "== done in $((SECONDS - start)) s"
}

step fetch //...
step build --nofetch "${options[@]}" //...
step test --nofetch "${options[@]}" //...
