#!/usr/bin/env bash
# Runs every test of husk: fmt, clippy, unit, integration (real huskd, registry, runc/crun).
# Needs root. Sets up the machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Interop tests must not skip themselves quietly here: their tools are installed by setup.sh.
export HUSK_REQUIRE_INTEROP=1
# Integration tests start real daemons and registries; two at a time on small machines.
cargo test --workspace --no-fail-fast -- --test-threads="${HUSK_TEST_THREADS:-2}"
