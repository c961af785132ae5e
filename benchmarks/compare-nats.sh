#!/usr/bin/env bash
# Runs roomcast-bench with the same flags against
#   1. roomcast: a fresh roomcast-core (--presence=false) + roomcast-edge,
#      subscribers on the edge's /ws (JSON), published with Rooms.PublishStream,
#   2. nats-server: a fresh nats-server from a generated config (client port
#      and WebSocket listener on loopback, free ports), subscribers over its
#      WebSocket listener, published with PUB on its client port,
# one after the other, each with its servers' PIDs for CPU / RSS. The servers
# (every process and thread) run on --server-cpu, the harness on --client-cpu;
# the edge gets one I/O thread per server CPU.
#
#   benchmarks/compare-nats.sh [--build DIR] [--out DIR] [--server-cpu CPUS] [--client-cpu CPUS]
#                              [--nats-server BIN] [-- BENCH FLAGS...]
#   benchmarks/compare-nats.sh --build build -- --subscribers 200 --rates 10,50,100
#
# The bench flags start as "--preset fanout --subscribers 1000 --payload 100
# --threads 1"; those given after -- come later and win. CPUs default to 1
# (servers) and 0 (harness): "server processes sharing one core, one
# single-threaded client on the other core". Reports go to
# OUT/roomcast.{txt,json,svg} and OUT/nats.{txt,json,svg} (default OUT: a new
# temporary directory, printed at the end), the servers' logs next to them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=build
out=""
server_cpu=1
client_cpu=0
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --nats-server) nats_bin=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "compare-nats.sh: unknown option $1 (bench flags go after --)" >&2; exit 2 ;;
  esac
done
[[ -x "$nats_bin" ]] || { echo "compare-nats.sh: no nats-server (apt-get install nats-server, or --nats-server BIN)" >&2; exit 1; }
[[ -n "$out" ]] || out=$(mktemp -d /tmp/roomcast-compare-nats-XXXXXX)
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

# CPUs in a taskset list such as "1", "0,2" or "1-3".
cpu_count() {
  local n=0 part parts
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}

bench_flags=(--preset fanout --subscribers 1000 --payload 100 --threads 1 "$@")
where="servers on CPU $server_cpu, harness on CPU $client_cpu, nproc $(nproc)"

echo "== roomcast (core --presence=false + edge --threads=$(cpu_count "$server_cpu")), $where, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$here/run-local.sh" --build "$build" --server-cpu "$server_cpu" --client-cpu "$client_cpu" \
  --core-flags --presence=false --edge-flags "--threads=$(cpu_count "$server_cpu")" -- \
  "${bench_flags[@]}" --json "$out/roomcast.json" --plot "$out/roomcast.svg" | tee "$out/roomcast.txt"

# Port -1: nats-server picks a free port and logs it. max_pending is the
# bytes queued for one connection before the server drops it as a slow
# consumer: far above what a step queues (10,000 msgs/s x ~150 B x 10 s).
cat >"$out/nats.conf" <<'EOF'
listen: "127.0.0.1:-1"
max_pending: 256MB
websocket {
  listen: "127.0.0.1:-1"
  no_tls: true
}
EOF
echo "== nats-server ($("$nats_bin" --version)), $where, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
log="$out/nats-server.log"
taskset -c "$server_cpu" "$nats_bin" -c "$out/nats.conf" >"$log" 2>&1 &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
ws="" client=""
for _ in $(seq 100); do
  ws=$(grep -o 'websocket clients on ws://[^ ]*' "$log" | head -1 | sed 's|.*ws://||' || true)
  client=$(grep -o 'client connections on [^ ]*' "$log" | head -1 | cut -d' ' -f4 || true)
  [[ -n "$ws" && -n "$client" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$ws" && -n "$client" ]] || { echo "compare-nats.sh: nats-server did not start:" >&2; cat "$log" >&2; exit 1; }
taskset -c "$client_cpu" "$build/benchmarks/roomcast-bench" --edge-pid "$server_pid" "${bench_flags[@]}" \
  --target "nats+ws://$ws" --nats-publish "$client" \
  --json "$out/nats.json" --plot "$out/nats.svg" | tee "$out/nats.txt"

rate_of() { grep -o 'highest sustainable rate: [0-9.e+]*' "$1" | cut -d' ' -f4 || true; }
roomcast_rate=$(rate_of "$out/roomcast.txt")
nats_rate=$(rate_of "$out/nats.txt")
echo "highest sustainable rate (msgs/s per room): roomcast ${roomcast_rate:-none}, nats-server ${nats_rate:-none}" >&2
echo "reports in $out" >&2
