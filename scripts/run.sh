#!/usr/bin/env bash
# Builds roomcast and runs it with embedded defaults: a core on 127.0.0.1:50051
# and an edge on 127.0.0.1:8080 serving the demo page. Ctrl-C stops both.
# Extra arguments go to the edge (e.g. --listen=0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target roomcast-core roomcast-edge

"$build_dir/core/roomcast-core" --stats_room=stats --namespaces=chat &
core=$!
edge_out=$(mktemp)
"$build_dir/edge/roomcast-edge" "$@" >"$edge_out" &
edge=$!
trap 'kill -TERM $edge $core 2>/dev/null; wait $edge $core 2>/dev/null; rm -f "$edge_out"' EXIT INT TERM
for _ in $(seq 100); do
  address=$(sed -n 's/^listening on //p' "$edge_out")
  [[ -n $address ]] && break
  sleep 0.1
done
echo "roomcast demo: http://${address:-127.0.0.1:8080}/  (open it in two tabs; Ctrl-C to stop)"
wait -n $core $edge
