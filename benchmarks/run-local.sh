#!/usr/bin/env bash
# Starts a fresh roomcast-core and roomcast-edge on loopback port 0, runs
# roomcast-bench against them with their PIDs (RSS / CPU), then stops both.
#
#   benchmarks/run-local.sh [--build DIR] [--core-flags "..."] [--edge-flags "..."]
#                           [--server-cpu CPUS] [--client-cpu CPUS] -- BENCH FLAGS...
#   benchmarks/run-local.sh -- --preset fanout --json /tmp/fanout.json
#
# --server-cpu / --client-cpu pin the core and the edge (every thread) / the
# bench to a CPU list (taskset -c, e.g. 1 or 0,2); default: not pinned.
#
# "{edge}" in the bench flags is replaced by the edge's address (for the
# generic target mode: --target ws://{edge}/ws ...).
# Binaries come from DIR (default: build) as DIR/core/roomcast-core,
# DIR/edge/roomcast-edge and DIR/benchmarks/roomcast-bench.
set -euo pipefail

build=build
core_flags=""
edge_flags=""
server_pin=()
client_pin=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --core-flags) core_flags=$2; shift 2 ;;
    --edge-flags) edge_flags=$2; shift 2 ;;
    --server-cpu) server_pin=(taskset -c "$2"); shift 2 ;;
    --client-cpu) client_pin=(taskset -c "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run-local.sh: unknown option $1 (bench flags go after --)" >&2; exit 2 ;;
  esac
done

# 10,000 connections need as many descriptors in the edge and in the bench.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts "$@" with output in $work/$name.log; sets $address once it prints
# "listening on HOST:PORT" (20 s at most).
start() {
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  started_pid=$!
  for _ in $(seq 200); do
    address=$(grep -o 'listening on [^ ]*' "$work/$name.log" | head -1 | cut -d' ' -f3 || true)
    [[ -n "$address" ]] && return 0
    kill -0 "$started_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run-local.sh: $name did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# shellcheck disable=SC2086
start core "${server_pin[@]}" "$build/core/roomcast-core" --listen=127.0.0.1:0 $core_flags
core_address=$address core_pid=$started_pid
# shellcheck disable=SC2086
start edge "${server_pin[@]}" "$build/edge/roomcast-edge" --listen=127.0.0.1:0 --core="$core_address" $edge_flags
edge_address=$address edge_pid=$started_pid
for _ in $(seq 100); do
  curl -sf "http://$edge_address/healthz" >/dev/null && break
  sleep 0.1
done

echo "core $core_address (pid $core_pid) $core_flags; edge $edge_address (pid $edge_pid) $edge_flags" >&2
"${client_pin[@]}" "$build/benchmarks/roomcast-bench" --edge="$edge_address" --core="$core_address" \
  --edge-pid="$edge_pid" --core-pid="$core_pid" "${@//\{edge\}/$edge_address}"
