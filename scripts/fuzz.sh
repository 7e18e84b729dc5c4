#!/usr/bin/env bash
# Bounded fuzzing for CI: builds every cargo-fuzz target of husk (crates/*/fuzz, each its own
# cargo workspace) once into one target dir, then runs each for SECONDS_PER_TARGET (default 20)
# starting from its committed seed corpus (crates/*/fuzz/corpus/<target>), two at a time.
# Prints each target's execution count and ends with `fuzz: N passed, M failed`; exits non-zero
# when a target crashed (the input is kept under <target dir>/fuzz/artifacts/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
# Env:   FUZZ_JOBS=2              targets fuzzed at once
#        FUZZ_SANITIZER=none      or address (slower to build and run; husk's own code is safe
#                                 Rust, so the targets look for panics, overflows and wrong
#                                 answers, which need no sanitizer)
#        FUZZ_TARGETS="a b"       only these targets
# Needs only the stable toolchain: cargo-fuzz's unstable flags are allowed by RUSTC_BOOTSTRAP,
# and cargo-fuzz itself is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
[[ "$secs" =~ ^[0-9]+$ && "$secs" -gt 0 ]] || {
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
  exit 2
}
parallel="${FUZZ_JOBS:-2}"
sanitizer="${FUZZ_SANITIZER:-none}"
out="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1

cargo=(cargo)
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^stable'; then
  cargo=(cargo +stable)
fi
if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  "${cargo[@]}" install cargo-fuzz --locked
fi

# Every fuzz crate, and its targets (bin names are unique across crates: one target dir).
crates=()
for manifest in crates/*/fuzz/Cargo.toml; do
  grep -q '^cargo-fuzz = true' "$manifest" && crates+=("$(dirname "$(dirname "$manifest")")")
done
declare -A crate_of=()
targets=()
for c in "${crates[@]}"; do
  for t in $(cd "$c" && "${cargo[@]}" fuzz list); do
    if [[ -n "${FUZZ_TARGETS:-}" && " $FUZZ_TARGETS " != *" $t "* ]]; then
      continue
    fi
    [[ -z "${crate_of[$t]:-}" ]] || { echo "fuzz: target name $t is not unique" >&2; exit 2; }
    crate_of[$t]="$c"
    targets+=("$t")
  done
done
((${#targets[@]})) || { echo "fuzz: no targets" >&2; exit 2; }

started=$SECONDS
for c in "${crates[@]}"; do
  echo "fuzz: building $c/fuzz (sanitizer $sanitizer)"
  (cd "$c" && "${cargo[@]}" fuzz build -s "$sanitizer" --codegen-units 16 \
    --target-dir "$out" --target "$triple")
done
echo "fuzz: built in $((SECONDS - started)) s; running ${#targets[@]} targets for ${secs} s each"

bin_dir="$out/$triple/release"
logs="$out/logs"
mkdir -p "$logs"
# Targets that make files per input (unpack_layer, hosts_toml) run ~30x faster on a tmpfs.
if [[ -d /dev/shm && -w /dev/shm ]]; then
  TMPDIR="$(mktemp -d /dev/shm/husk-fuzz.XXXXXX)"
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
fi
run_one() {
  local t="$1" c="${crate_of[$1]}"
  local scratch="$out/corpus/$t" artifacts="$out/artifacts/$t/"
  rm -rf "$scratch" "$artifacts"
  mkdir -p "$scratch" "$artifacts" "$c/fuzz/corpus/$t"
  # New inputs go to the scratch corpus (first dir); the committed seeds are only read.
  "$bin_dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$scratch" "$c/fuzz/corpus/$t" >"$logs/$t.log" 2>&1
}

declare -A pid_of=()
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do
    wait -n || true
  done
  run_one "$t" &
  pid_of[$t]=$!
done

passed=0
failed=0
for t in "${targets[@]}"; do
  rc=0
  wait "${pid_of[$t]}" || rc=$?
  log="$logs/$t.log"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  [[ -n "$runs" ]] || runs="$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#')"
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'fuzz: %-14s %-16s %10s execs  ok\n' "$t" "(${crate_of[$t]#crates/})" "${runs:-?}"
  else
    failed=$((failed + 1))
    printf 'fuzz: %-14s %-16s %10s execs  FAILED (exit %s)\n' "$t" "(${crate_of[$t]#crates/})" \
      "${runs:-?}" "$rc"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$log" | head -n 8 | sed 's/^/    /'
    echo "    full log: $log"
  fi
done
echo "fuzz: total $((SECONDS - started)) s"
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
