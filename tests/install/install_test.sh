#!/usr/bin/env bash
# Installs roomcast from BUILD_DIR into a temporary prefix, builds the consumer
# project in tests/install/consumer against it with find_package(roomcast),
# and runs it against the installed roomcast-core on a free loopback port.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
core_pid=
cleanup() {
  [[ -n $core_pid ]] && kill -TERM "$core_pid" 2>/dev/null && wait "$core_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
for f in bin/roomcast-core bin/roomcast-edge bin/roomcast include/roomcast/client.h \
         include/roomcast/v1/roomcast.pb.h lib/cmake/roomcast/roomcastConfig.cmake; do
  [[ -e $work/prefix/$f ]] || { echo "not installed: $f" >&2; exit 1; }
done
# The installed headers must not need roomcast's source tree.
if grep -rq "$(cd "$here/../.." && pwd)" "$work/prefix/lib/cmake/roomcast"; then
  echo "the installed package refers to the source tree" >&2
  exit 1
fi

cmake -S "$here/consumer" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null

"$work/prefix/bin/roomcast-core" --listen=127.0.0.1:0 >"$work/core.out" 2>"$work/core.err" &
core_pid=$!
address=
for _ in $(seq 100); do
  address=$(sed -n 's/^listening on //p' "$work/core.out")
  [[ -n $address ]] && break
  sleep 0.1
done
[[ -n $address ]] || { echo "roomcast-core did not start" >&2; cat "$work/core.err" >&2; exit 1; }

"$work/consumer/consumer" "$address"
# The installed CLI reads the same room.
"$work/prefix/bin/roomcast" history consumer-room --core="$address" | grep -q consumer \
  || { echo "the installed roomcast CLI did not show the message" >&2; exit 1; }
echo "installed package: consumer built and ran against roomcast-core at $address"
