#!/usr/bin/env bash
# Runs roomcast-bench's generic target mode (WebSocket subscribers, one HTTP
# POST per message) with the same flags against
#   1. roomcast: a fresh roomcast-core (--presence=false) + roomcast-edge,
#      subscribing at /ws and publishing to POST /publish, and
#   2. ws-broadcast: benchmarks/targets/ws-broadcast.mjs, a minimal Node `ws`
#      broadcast server (POST /publish with the same body),
# one after the other, each with its server's PID for CPU / RSS.
#
#   benchmarks/compare-ws.sh [--build DIR] [--out DIR] -- BENCH FLAGS...
#   benchmarks/compare-ws.sh --build build -- --preset fanout --subscribers 200 --rates 10,50,100
#
# Each target's report goes to OUT/roomcast.{txt,json,svg} and
# OUT/ws-broadcast.{txt,json,svg} (default OUT: a new temporary directory,
# printed at the end).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=build
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "compare-ws.sh: unknown option $1 (bench flags go after --)" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out=$(mktemp -d /tmp/roomcast-compare-XXXXXX)
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

echo "== roomcast (core --presence=false + edge), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$here/run-local.sh" --build "$build" --core-flags --presence=false -- "$@" \
  --target 'ws://{edge}/ws' --subscribe-frame '{"id":1,"join":{"room":"{room}"}}' \
  --message-match '{"message":' --joined-match '"reply":{"join"' \
  --publish-url 'http://{edge}/publish' \
  --json "$out/roomcast.json" --plot "$out/roomcast.svg" | tee "$out/roomcast.txt"

echo "== ws-broadcast (node $(node --version)), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
log="$out/ws-broadcast.log"
node "$here/targets/ws-broadcast.mjs" >"$log" 2>&1 &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
address=""
for _ in $(seq 100); do
  address=$(grep -o 'listening on [^ ]*' "$log" | head -1 | cut -d' ' -f3 || true)
  [[ -n "$address" ]] && break
  sleep 0.1
done
[[ -n "$address" ]] || { echo "compare-ws.sh: ws-broadcast did not start:" >&2; cat "$log" >&2; exit 1; }
"$build/benchmarks/roomcast-bench" --edge-pid "$server_pid" "$@" \
  --target "ws://$address/ws" --subscribe-frame '{"subscribe":"{room}"}' \
  --message-match '"seq":' --joined-match '"subscribed"' \
  --publish-url "http://$address/publish" \
  --json "$out/ws-broadcast.json" --plot "$out/ws-broadcast.svg" | tee "$out/ws-broadcast.txt"

echo "reports in $out" >&2
