#!/usr/bin/env bash
# Builds roomcast and runs it with embedded defaults: a core on 127.0.0.1:50051
# and an edge on 127.0.0.1:8080 serving the demo page. Ctrl-C stops both.
# Extra arguments go to the edge (e.g. --listen=0.0.0.0:8080).
#
# --cluster (first argument): nats-server -js on 127.0.0.1:4222 (data under a
# temporary directory), two cores (--broker=nats, gRPC on 50051 and 50052)
# and two edges (8080 and 8081), one per core; prints both demo URLs (a chat
# between tabs on different edges goes through NATS). docs/cluster.md.
# NATS_PORT, CORE_PORT (first core; the second takes the next port) and
# EDGE_PORT (likewise) move them.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=false
if [[ ${1:-} == --cluster ]]; then
  cluster=true
  shift
fi

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target roomcast-core roomcast-edge

# Waits for "listening on ADDRESS" in a file and prints ADDRESS.
address_in() {
  local address=
  for _ in $(seq 100); do
    address=$(sed -n 's/^listening on //p' "$1")
    [[ -n $address ]] && break
    sleep 0.1
  done
  echo "$address"
}

if ! $cluster; then
  "$build_dir/core/roomcast-core" --stats_room=stats --namespaces=chat &
  core=$!
  edge_out=$(mktemp)
  "$build_dir/edge/roomcast-edge" "$@" >"$edge_out" &
  edge=$!
  trap 'kill -TERM $edge $core 2>/dev/null; wait $edge $core 2>/dev/null; rm -f "$edge_out"' EXIT INT TERM
  address=$(address_in "$edge_out")
  echo "roomcast demo: http://${address:-127.0.0.1:8080}/  (open it in two tabs; Ctrl-C to stop)"
  wait -n $core $edge
  exit
fi

nats_port=${NATS_PORT:-4222}
work=$(mktemp -d)
pids=()
cleanup() {
  # Edges first, then cores, then NATS; each by its own pid.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
  sleep 0.1
done
urls=()
for i in 1 2; do
  "$build_dir/core/roomcast-core" --broker=nats --nats_url="nats://127.0.0.1:$nats_port" \
    --node_name="core$i" --listen="127.0.0.1:$((${CORE_PORT:-50051} + i - 1))" --namespaces=chat \
    >"$work/core$i.out" &
  pids+=($!)
  core_address=$(address_in "$work/core$i.out")
  "$build_dir/edge/roomcast-edge" --core="$core_address" --listen="127.0.0.1:$((${EDGE_PORT:-8080} + i - 1))" "$@" \
    >"$work/edge$i.out" &
  pids+=($!)
  urls+=("http://$(address_in "$work/edge$i.out")/")
done
echo "roomcast cluster (NATS on 127.0.0.1:$nats_port, data in $work/nats):"
echo "  edge 1 -> core 1: ${urls[0]}"
echo "  edge 2 -> core 2: ${urls[1]}"
echo "open one tab on each and chat; Ctrl-C to stop"
wait -n "${pids[@]}"
