#!/usr/bin/env bash
# Builds every Bazel target and runs the GoogleTest unit tests under Bazel,
# offline; CTest runs this as `bazel_build_test` (tests/bazel/CMakeLists.txt).
#
#   1. `bazel fetch` sets up the repositories, all of them local (the
#      stand-ins under bazel/stubs, @system_libs from pkg-config and Bazel's
#      auto-configured toolchains): nothing is downloaded, no network needed.
#   2. `bazel build --nofetch //...`: every target, with fetching switched off.
#   3. `bazel test --nofetch //...`: the cc_test targets.
#
# Bazel's output base and a disk cache live under $ROOMCAST_BAZEL_CACHE
# (default ~/.cache/roomcast-bazel), outside the checkout, so a rerun (or a
# fresh clone on the same machine) only rebuilds what changed. The whole run is
# bounded by ROOMCAST_BAZEL_TIMEOUT seconds (default 1500).
#
# What is built and tested: ROOMCAST_BAZEL_TARGETS if set (target patterns),
# else ROOMCAST_BAZEL_SCOPE:
#   full (default)  //...: every library, binary, benchmark and unit test.
#   representative  what CTest runs (tests/bazel/CMakeLists.txt): both code
#                   generators (protoc/grpc_cpp_plugin, the demo page), every
#                   @system_libs library linked into a binary or test that runs,
#                   roomcast-core and the CLI, and the unit tests engine_test,
#                   codec_test, hub_test, auth_test and client_test. It leaves
#                   out the Beast translation units (the edge sessions and
#                   roomcast-bench's clients, 20-60 s each) and the heavier
#                   service tests; a change to roomcast.proto rebuilds
#                   everything, so the full set would often run cold in CI.
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
# The whole run is bounded; the Bazel server lives outside this process tree,
# so at the limit (or on SIGINT/SIGTERM) the build is cancelled and the server
# shut down rather than left compiling. CTest's TIMEOUT is set above this bound.
deadline=$((SECONDS + ${ROOMCAST_BAZEL_TIMEOUT:-1500}))
shutdown_bazel() { "$bazel" "${startup[@]}" shutdown >/dev/null 2>&1 || true; }
client=
stop() {
  # SIGINT makes the Bazel client cancel the command in the server.
  [[ -n $client ]] && kill -INT "$client" 2>/dev/null
  shutdown_bazel
  exit 130
}
trap stop INT TERM

step() {
  local start=$SECONDS left=$((deadline - SECONDS)) rc=0
  echo "== bazel $*"
  ((left > 0)) || left=1
  # In the background so that a signal reaches the trap at once.
  timeout -s INT -k 60 "$left" nice -n 10 "$bazel" "${startup[@]}" "$@" </dev/null &
  client=$!
  wait "$client" || rc=$?
  client=
  if ((rc == 124 || rc == 137)); then
    echo "== over ROOMCAST_BAZEL_TIMEOUT (${ROOMCAST_BAZEL_TIMEOUT:-1500} s): bazel $*" >&2
    shutdown_bazel
    exit 1
  fi
  if ((rc != 0)); then
    echo "== failed after $((SECONDS - start)) s: bazel $*"
    exit "$rc"
  fi
  echo "== done in $((SECONDS - start)) s"
}

# `fetch //...` leaves out the toolchain repositories, which a --nofetch build
# needs as well.
repositories=(//... @local_config_platform//... @local_config_cc//... @local_config_cc_toolchains//...
  @local_config_sh//... @rules_cc//... @rules_java//... @remote_coverage_tools//...)
step fetch "${repositories[@]}"
representative=(
  //core:roomcast-core //clients/cli:roomcast //edge:demo_page_cc //benchmarks:codec_bench
  //tests/core:engine_test //tests/edge:codec_test //tests/edge:hub_test //tests/edge:auth_test
  //tests/clients:client_test
)
case ${ROOMCAST_BAZEL_SCOPE:-full} in
  full) default_targets=(//...) ;;
  representative) default_targets=("${representative[@]}") ;;
  *) echo "bazel/ci.sh: ROOMCAST_BAZEL_SCOPE is full or representative" >&2; exit 2 ;;
esac
if [[ -n ${ROOMCAST_BAZEL_TARGETS:-} ]]; then
  read -r -a targets <<<"$ROOMCAST_BAZEL_TARGETS"
else
  targets=("${default_targets[@]}")
fi
step build --nofetch "${options[@]}" -- "${targets[@]}"
step test --nofetch "${options[@]}" -- "${targets[@]}"
