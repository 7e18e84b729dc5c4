#!/usr/bin/env bash
# Installs every system dependency of husk on Debian 12 and builds the workspace.
# Idempotent; run as root. Used by the README, scripts/demo.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(runc crun criu containernetworking-plugins docker-registry busybox-static protobuf-compiler
      iproute2 iptables apache2-utils openssl zstd ca-certificates)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian starts a docker-registry service on :5000 where an init system runs; tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

# cgroup v1 hybrid hosts: crun 1.8 refuses the layout while hugetlb sits on the (empty) cgroup2
# hierarchy; mount it as v1 like a normal hybrid layout.
if [ -d /sys/fs/cgroup/unified ] && [ ! -e /sys/fs/cgroup/hugetlb ] \
   && awk '$1=="hugetlb" && $2==0 {f=1} END {exit !f}' /proc/cgroups 2>/dev/null; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || rmdir /sys/fs/cgroup/hugetlb || true
fi

# The streaming tests interoperate with independent protocol implementations: Python's
# `websockets` (installed here) and npm's `spdy-transport` (the test installs it under target/).
if ! python3 -c 'import websockets' >/dev/null 2>&1; then
  echo "setup: installing the Python websockets package"
  python3 -m pip install --quiet websockets
fi
# gRPC C-core clients send the socket's path as :authority (crates/huskd/tests/grpcio_interop.rs).
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "setup: installing the Python grpcio package"
  python3 -m pip install --quiet grpcio
fi
# The metrics exposition is checked with the Prometheus project's Python parsers
# (crates/telemetry/tests/python_parsers.rs).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "setup: installing the Python prometheus_client package"
  python3 -m pip install --quiet prometheus_client
fi
command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed by the streaming interop tests" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found (install Rust with rustup first)" >&2
  exit 1
fi
cargo build --workspace --bins
echo "setup: done"
