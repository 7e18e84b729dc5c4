#!/usr/bin/env bash
# The husk demo on a fresh Debian 12 machine, with no network beyond loopback:
#   installs dependencies and builds (scripts/setup.sh), starts a local registry holding a
#   busybox image, starts huskd with docker.io mirrored to that registry, then pulls, lists,
#   inspects and imports images with huskctl. Everything lives in one temp dir and is stopped
#   and removed on exit, success or not. Run as root:  bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ -t 1 ]; then B=$'\e[1m' C=$'\e[36m' R=$'\e[31m' G=$'\e[32m' N=$'\e[0m'; else B='' C='' R='' G='' N=''; fi
section() { printf '\n%s==> %s%s\n' "$B$C" "$*" "$N"; }
# Shows a command (program by its base name, arguments with spaces quoted), then runs it.
run() {
  local shown=${1##*/} a
  for a in "${@:2}"; do [[ $a == *[[:space:]]* ]] && shown+=" '$a'" || shown+=" $a"; done
  printf '%s$ %s%s\n' "$B" "$shown" "$N"
  "$@"
}

TMP=''
SOCK=''
HUSKD_PID=''
REGISTRY_PID=''

# Stops a process we started: SIGTERM, up to $2 seconds, then SIGKILL.
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

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)); then
    printf '\n%sdemo failed (exit %d)%s\n' "$B$R" "$rc" "$N" >&2
    if [ -n "$TMP" ] && [ -s "$TMP/huskd.log" ]; then
      echo "--- last lines of huskd.log ---" >&2
      tail -n 30 "$TMP/huskd.log" >&2 || true
    fi
    if [ -n "$TMP" ] && [ -s "$TMP/registry.out" ]; then
      echo "--- husk-testimg registry output ---" >&2
      tail -n 10 "$TMP/registry.out" >&2 || true
    fi
  fi
  # Pods first: their namespaces and mounts must not outlive the demo.
  if [ -n "$HUSKD_PID" ] && [ -n "$SOCK" ] && [ -S "$SOCK" ]; then
    "$REPO/target/debug/huskctl" -r "unix://$SOCK" rmp -f -a >/dev/null 2>&1 || true
  fi
  [ -n "$HUSKD_PID" ] && stop_pid "$HUSKD_PID" 15
  [ -n "$REGISTRY_PID" ] && stop_pid "$REGISTRY_PID" 10
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    # Nothing should be mounted there (pulls do not mount); never delete through a mount.
    if awk -v d="$TMP" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
      echo "demo: leaving $TMP in place: something is still mounted below it" >&2
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Installing dependencies and building (scripts/setup.sh)"
bash scripts/setup.sh

HUSKD=$REPO/target/debug/huskd
HUSKCTL=$REPO/target/debug/huskctl
TESTIMG=$REPO/target/debug/husk-testimg
for b in "$HUSKD" "$HUSKCTL" "$TESTIMG"; do
  [ -x "$b" ] || { echo "demo: $b was not built" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/husk-demo.XXXXXX)
SOCK=$TMP/state/husk.sock
mkdir -p "$TMP/root" "$TMP/state" "$TMP/certs.d/docker.io"

# Waits up to $2 seconds for the command in $3... to succeed; fails naming $1.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  echo "demo: timed out waiting for $what" >&2
  return 1
}

section "Starting a local registry (husk-testimg registry)"
"$TESTIMG" registry --dir "$TMP/registry" >"$TMP/registry.out" 2>&1 &
REGISTRY_PID=$!
registry_ready() {
  grep -q '^READY ' "$TMP/registry.out" 2>/dev/null && return 0
  kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$TMP/registry.out" >&2; exit 1; }
  return 1
}
wait_for "the registry" 30 registry_ready
REGISTRY=$(awk '/^READY /{print $2; exit}' "$TMP/registry.out")
echo "registry serving on http://$REGISTRY (pid $REGISTRY_PID)"

section "Pushing a busybox image to it as library/busybox:latest"
run "$TESTIMG" push --registry "$REGISTRY" --repo library/busybox --tag latest

section "Writing huskd's config: docker.io is mirrored to the local registry"
# The upstream server is a closed port on 127.0.0.1, so nothing can leave the machine.
DEAD_PORT=''
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then DEAD_PORT=$p; break; fi
done
[ -n "$DEAD_PORT" ] || { echo "demo: no closed port found for the dead upstream" >&2; exit 1; }
cat >"$TMP/certs.d/docker.io/hosts.toml" <<EOF
server = "http://127.0.0.1:$DEAD_PORT"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
cat >"$TMP/config.toml" <<EOF
root = "$TMP/root"
state_dir = "$TMP/state"
socket = "$SOCK"
log_level = "info"

[registry]
config_path = "$TMP/certs.d"

[cni]
conf_dir = "$TMP/net.d"
EOF
# Pods get a network namespace with only loopback: nothing to route, nothing to clean up.
mkdir -p "$TMP/net.d"
cat >"$TMP/net.d/10-demo.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "demo-lo", "plugins": [{"type": "loopback"}]}
EOF
echo "# $TMP/config.toml"; cat "$TMP/config.toml"
echo "# $TMP/certs.d/docker.io/hosts.toml"; cat "$TMP/certs.d/docker.io/hosts.toml"

section "Starting huskd"
"$HUSKD" --config "$TMP/config.toml" >"$TMP/huskd.log" 2>&1 &
HUSKD_PID=$!
huskd_ready() {
  [ -S "$SOCK" ] && return 0
  kill -0 "$HUSKD_PID" 2>/dev/null || { echo "demo: huskd exited during startup" >&2; exit 1; }
  return 1
}
wait_for "huskd's socket" 30 huskd_ready
echo "huskd running (pid $HUSKD_PID), socket $SOCK"

huskctl() { run "$HUSKCTL" -r "unix://$SOCK" "$@"; }

section "huskctl version"
huskctl version

section "huskctl pull busybox (docker.io/library/busybox:latest, served by the mirror)"
huskctl pull busybox

section "huskctl images"
huskctl images

section "huskctl inspecti busybox | head"
huskctl inspecti busybox | head -n 20

section "Offline import: a 'docker save' archive, no registry involved"
run "$TESTIMG" archive --format docker --tag busybox:offline "$TMP/busybox-offline.tar" \
  --cmd echo "hello from an imported image"
huskctl import "$TMP/busybox-offline.tar"

section "huskctl images (after the import)"
huskctl images
"$HUSKCTL" -r "unix://$SOCK" images -q | grep -q . || { echo "demo: no images listed" >&2; exit 1; }
"$HUSKCTL" -r "unix://$SOCK" images | grep -q 'busybox *offline' \
  || { echo "demo: the imported busybox:offline is not listed" >&2; exit 1; }

section "huskctl run: a busybox pod whose container prints a line"
cat > "$TMP/pod.json" <<JSON
{"metadata": {"name": "hello", "namespace": "default", "uid": "husk-demo-hello", "attempt": 0},
 "log_directory": "$TMP/pod-logs",
 "linux": {"security_context": {"namespace_options": {"pid": "CONTAINER"}}}}
JSON
cat > "$TMP/container.json" <<JSON
{"metadata": {"name": "hello"}, "image": {"image": "busybox"},
 "command": ["sh", "-c", "echo hello from husk, running on \$(hostname)"],
 "log_path": "hello.log", "linux": {}}
JSON
CID=$("$HUSKCTL" -r "unix://$SOCK" run "$TMP/container.json" "$TMP/pod.json")
echo "container $CID"
exited() { "$HUSKCTL" -r "unix://$SOCK" ps -a -q --state exited | grep -q "^${CID:0:13}"; }
wait_for "the container to finish" 30 exited

section "huskctl ps -a / pods"
huskctl ps -a
huskctl pods

section "huskctl logs (the container's CRI log)"
huskctl logs "$CID"
"$HUSKCTL" -r "unix://$SOCK" logs "$CID" | grep -q "hello from husk" \
  || { echo "demo: the container's line is not in its log" >&2; exit 1; }

section "huskctl exec -i: stdin streamed into a running container (CRI Exec over WebSocket)"
cat > "$TMP/sleeper.json" <<JSON
{"metadata": {"name": "sleeper"}, "image": {"image": "busybox"},
 "command": ["sleep", "300"], "log_path": "sleeper.log", "linux": {}}
JSON
POD=$("$HUSKCTL" -r "unix://$SOCK" pods -q | head -n 1)
SID=$("$HUSKCTL" -r "unix://$SOCK" create "$POD" "$TMP/sleeper.json" "$TMP/pod.json")
"$HUSKCTL" -r "unix://$SOCK" start "$SID" >/dev/null
printf '%s$ echo "hello through the streaming server" | huskctl exec -i %s tr a-z A-Z%s\n' "$B" "${SID:0:13}" "$N"
OUT=$(echo "hello through the streaming server" | "$HUSKCTL" -r "unix://$SOCK" exec -i "$SID" tr a-z A-Z)
echo "$OUT"
[ "$OUT" = "HELLO THROUGH THE STREAMING SERVER" ] || { echo "demo: streaming exec failed" >&2; exit 1; }

section "Removing the pod"
huskctl rmp -f -a

printf '\n%sdemo finished: huskd pulled from a mirror, imported an archive and ran a pod%s\n' "$B$G" "$N"
