#!/usr/bin/env bash
# Cold-pull throughput: husk vs containerd, same image, same local registry, same machine.
#
#   bash scripts/bench-pull.sh [--with-containerd] [--count N] [--bytes N] [--layers N] [--downloads N]
#
# Starts a plain-HTTP docker-registry on 127.0.0.1 (husk-testimg registry), pushes an image of
# incompressible random data (default 200 MB in 8 uncompressed layers), then
#   1. huskd (release build):  huskctl bench pull <image> --count N -o json
#      (each run: remove the image, pull it: download + digest check + unpack into snapshots);
#   2. containerd, when installed (--with-containerd installs the Debian package): its own temp
#      root/state/socket, no CRI plugin; each run times
#      `ctr images pull --plain-http <image>` (download + unpack into overlayfs) after
#      `ctr images rm --sync` + `ctr content prune references` + a check that no content or
#      snapshot is left, so every run is cold.
# Both get the same download concurrency (--downloads, default 3: huskd's default). Everything
# lives in one temp dir; every process is stopped by PID and the dir removed on exit. Root only.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

WITH_CONTAINERD=0 COUNT=3 BYTES=200000000 LAYERS=8 DOWNLOADS=3
while (($#)); do
  case $1 in
    --with-containerd) WITH_CONTAINERD=1 ;;
    --count) COUNT=$2; shift ;;
    --bytes) BYTES=$2; shift ;;
    --layers) LAYERS=$2; shift ;;
    --downloads) DOWNLOADS=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-pull: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -t 1 ]; then B=$'\e[1m' C=$'\e[36m' N=$'\e[0m'; else B='' C='' N=''; fi
section() { printf '\n%s==> %s%s\n' "$B$C" "$*" "$N"; }

TMP='' REGISTRY_PID='' HUSKD_PID='' CONTAINERD_PID=''

stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Mount points below $1, deepest first.
mounts_under() { awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r; }

cleanup() {
  local rc=$? m
  trap - EXIT INT TERM
  if ((rc != 0)) && [ -n "$TMP" ]; then
    echo "bench-pull: failed (exit $rc)" >&2
    for f in huskd.log containerd.log registry.out; do
      [ -s "$TMP/$f" ] && { echo "--- tail of $f ---" >&2; tail -n 20 "$TMP/$f" >&2; }
    done
  fi
  [ -n "$HUSKD_PID" ] && stop_pid "$HUSKD_PID" 15
  [ -n "$CONTAINERD_PID" ] && stop_pid "$CONTAINERD_PID" 15
  [ -n "$REGISTRY_PID" ] && stop_pid "$REGISTRY_PID" 10
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    for m in $(mounts_under "$TMP"); do umount -l "$m" 2>/dev/null || true; done
    if [ -n "$(mounts_under "$TMP")" ]; then
      echo "bench-pull: leaving $TMP: still mounted: $(mounts_under "$TMP" | tr '\n' ' ')" >&2
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  echo "bench-pull: timed out waiting for $what" >&2
  return 1
}

section "Building husk (release)"
cargo build --release -p huskd -p huskctl -p husk-test-support
BIN=$REPO/target/release
HUSKD=$BIN/huskd HUSKCTL=$BIN/huskctl TESTIMG=$BIN/husk-testimg

if ((WITH_CONTAINERD)) && ! { command -v containerd && command -v ctr; } >/dev/null; then
  section "Installing containerd (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containerd
fi
HAVE_CONTAINERD=0
command -v containerd >/dev/null && command -v ctr >/dev/null && HAVE_CONTAINERD=1

TMP=$(mktemp -d /tmp/husk-bench.XXXXXX)

section "Starting a local registry"
"$TESTIMG" registry --dir "$TMP/registry" >"$TMP/registry.out" 2>&1 &
REGISTRY_PID=$!
registry_ready() {
  grep -q '^READY ' "$TMP/registry.out" 2>/dev/null && return 0
  kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$TMP/registry.out" >&2; exit 1; }
  return 1
}
wait_for "the registry" 30 registry_ready
REGISTRY=$(awk '/^READY /{print $2; exit}' "$TMP/registry.out")
IMAGE=$REGISTRY/bench/big:v1
echo "registry on http://$REGISTRY"

section "Pushing $IMAGE ($BYTES bytes of random data in $LAYERS layers)"
"$TESTIMG" push-big --registry "$REGISTRY" --repo bench/big --tag v1 --bytes "$BYTES" --layers "$LAYERS" \
  | tee "$TMP/push.out"
IMAGE_BYTES=$(sed -n 's/.* layers, \([0-9]*\) bytes.*/\1/p' "$TMP/push.out")

section "husk: huskctl bench pull --count $COUNT"
mkdir -p "$TMP/husk/root" "$TMP/husk/state" "$TMP/husk/certs.d"
cat >"$TMP/husk/config.toml" <<EOF
root = "$TMP/husk/root"
state_dir = "$TMP/husk/state"
socket = "$TMP/husk/state/husk.sock"
log_level = "warn"

[registry]
config_path = "$TMP/husk/certs.d"
max_concurrent_downloads = $DOWNLOADS
EOF
"$HUSKD" --config "$TMP/husk/config.toml" >"$TMP/huskd.log" 2>&1 &
HUSKD_PID=$!
huskd_ready() {
  [ -S "$TMP/husk/state/husk.sock" ] && return 0
  kill -0 "$HUSKD_PID" 2>/dev/null || { echo "bench-pull: huskd exited" >&2; exit 1; }
  return 1
}
wait_for "huskd" 30 huskd_ready
"$HUSKCTL" -r "unix://$TMP/husk/state/husk.sock" bench pull "$IMAGE" --count "$COUNT" -o json \
  >"$TMP/husk.json"
cat "$TMP/husk.json"
stop_pid "$HUSKD_PID" 15
HUSKD_PID=''
rm -rf "$TMP/husk"

# "mb_per_s": <number> lines of the per-run records (the summary is an object, not a number).
HUSK_MBS=$(sed -n 's/^ *"mb_per_s": \([0-9.e+-]*\),\{0,1\}$/\1/p' "$TMP/husk.json" | tr '\n' ' ')
HUSK_SECS=$(sed -n 's/^ *"seconds": \([0-9.e+-]*\),\{0,1\}$/\1/p' "$TMP/husk.json" | tr '\n' ' ')

CTR_SECS=''
if ((HAVE_CONTAINERD)); then
  section "containerd $(containerd --version | awk '{print $3}'): ctr images pull --plain-http, $COUNT cold runs"
  CD=$TMP/containerd
  SOCK=$CD/containerd.sock
  mkdir -p "$CD/root" "$CD/state" "$CD/opt"
  cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
EOF
  containerd --config "$CD/config.toml" >"$TMP/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  containerd_ready() {
    [ -S "$SOCK" ] && ctr -a "$SOCK" version >/dev/null 2>&1 && return 0
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { echo "bench-pull: containerd exited" >&2; exit 1; }
    return 1
  }
  wait_for "containerd" 30 containerd_ready
  CTR=(ctr -a "$SOCK")
  make_cold() {
    "${CTR[@]}" images rm --sync "$IMAGE" >/dev/null 2>&1 || true
    "${CTR[@]}" content prune references >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 100; i++)); do
      [ -z "$("${CTR[@]}" content ls -q)" ] && [ -z "$("${CTR[@]}" snapshots ls | tail -n +2)" ] && return 0
      sleep 0.1
    done
    echo "bench-pull: containerd still holds content or snapshots after images rm:" >&2
    "${CTR[@]}" content ls >&2
    "${CTR[@]}" snapshots ls >&2
    return 1
  }
  for ((run = 1; run <= COUNT; run++)); do
    make_cold
    t0=$(date +%s%N)
    "${CTR[@]}" images pull --plain-http --max-concurrent-downloads "$DOWNLOADS" "$IMAGE" >"$TMP/ctr-pull.out" 2>&1 \
      || { cat "$TMP/ctr-pull.out" >&2; exit 1; }
    t1=$(date +%s%N)
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    snaps=$("${CTR[@]}" snapshots ls | tail -n +2 | wc -l)
    printf 'run %d: %s s  %.1f MB/s  (%d snapshots)\n' "$run" "$s" \
      "$(awk -v n="$IMAGE_BYTES" -v s="$s" 'BEGIN {print n / 1e6 / s}')" "$snaps"
    ((snaps == LAYERS)) || { echo "bench-pull: expected $LAYERS unpacked snapshots, found $snaps" >&2; exit 1; }
    CTR_SECS+="$s "
  done
  make_cold
  stop_pid "$CONTAINERD_PID" 15
  CONTAINERD_PID=''
else
  section "containerd: not installed, skipped (pass --with-containerd to install and compare)"
fi

# name, MB/s figures -> "name  mean  min  max" (MB/s)
summary() {
  awk -v name="$1" '{
      n = 0; sum = 0; min = ""; max = "";
      for (i = 1; i <= NF; i++) { v = $i; n++; sum += v; if (min == "" || v < min) min = v; if (max == "" || v > max) max = v }
      if (n) printf "%-12s %5d  %9.1f  %9.1f  %9.1f  %10.3f\n", name, n, sum / n, min, max, ENVIRON["MEAN_S"]
    }' <<<"$2"
}
mean() { awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF) printf "%.3f", s / NF}' <<<"$1"; }

section "Summary: cold pull of $IMAGE ($IMAGE_BYTES bytes, $LAYERS layers), $(nproc) cores"
printf '%-12s %5s  %9s  %9s  %9s  %10s\n' runtime runs "MB/s mean" "MB/s min" "MB/s max" "mean s"
MEAN_S=$(mean "$HUSK_SECS") summary husk "$HUSK_MBS"
if [ -n "$CTR_SECS" ]; then
  CTR_MBS=$(for s in $CTR_SECS; do awk -v n="$IMAGE_BYTES" -v s="$s" 'BEGIN {printf "%f ", n / 1e6 / s}'; done)
  MEAN_S=$(mean "$CTR_SECS") summary containerd "$CTR_MBS"
fi
