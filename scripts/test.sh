#!/usr/bin/env bash
# Runs every test of husk: fmt, clippy, unit, integration (real huskd, registry, runc/crun).
# Needs root. Sets up the machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: must run as root (the integration tests run containers, mounts and networks)" >&2
  exit 1
fi
bash scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Interop tests must not skip themselves quietly here: their tools are installed by setup.sh.
export HUSK_REQUIRE_INTEROP=1
# Nor may tests needing root or a system tool (runc, crun, CNI plugins, busybox, script…):
# under this, a missing requirement fails the test instead of passing it with nothing checked.
export HUSK_REQUIRE_SYSTEM=1
# The monitor's memory footprint test bounds the binary it is given (setup.sh built it).
HUSK_MONITOR_BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/debug/husk-monitor"
[ -x "$HUSK_MONITOR_BIN" ] || { echo "test.sh: $HUSK_MONITOR_BIN was not built" >&2; exit 1; }
export HUSK_MONITOR_BIN
# Integration tests start real daemons and registries; two at a time on small machines.
cargo test --workspace --no-fail-fast -- --test-threads="${HUSK_TEST_THREADS:-2}"
# The parsers' fuzz targets (cargo-fuzz on the stable toolchain), for a bounded time each.
echo "== fuzz (bounded)"
bash scripts/fuzz.sh "${HUSK_FUZZ_SECONDS:-15}"
