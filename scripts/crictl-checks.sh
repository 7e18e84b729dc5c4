#!/usr/bin/env bash
# husk's own checks with the kit's crictl (the kubelet's client library), driven the way an
# operator would: images, a pod with a network, exec, attach and port-forward on both transports
# (SPDY and WebSocket), logs, stats and inspect. Every command runs under a timeout, so a hang
# fails its check instead of the run. Called by scripts/conformance.sh against a running huskd.
#
# Usage: scripts/crictl-checks.sh ENDPOINT [SUBNET_PREFIX]
# Env: CRICTL (default ../shared/conformance/bin/crictl)
# Last line: "crictl: N passed, M failed". Exit 0 iff M == 0.
set -uo pipefail
cd "$(dirname "$0")/.."
ENDPOINT="${1:?usage: crictl-checks.sh ENDPOINT [SUBNET_PREFIX]}"
CRICTL="${CRICTL:-$(pwd)/../shared/conformance/bin/crictl}"
[ -x "$CRICTL" ] || { echo "crictl-checks: no crictl at $CRICTL (the conformance kit is absent)" >&2; exit 2; }

BUSYBOX=registry.k8s.io/e2e-test-images/busybox:1.29-2
HTTPD=registry.k8s.io/e2e-test-images/httpd:2.4.39-4
TMP="$(mktemp -d /tmp/husk-crictl.XXXXXX)"
PASS=0
FAIL=0
POD=""
PF_PIDS=()

: >"$TMP/crictl.yaml"
CR=("$CRICTL" --config "$TMP/crictl.yaml" -r "$ENDPOINT" -i "$ENDPOINT")
c() { timeout -k 5 "${T:-30}" "${CR[@]}" --timeout 20s "$@"; }

cleanup() {
  for p in "${PF_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "$POD" ]; then c stopp "$POD" >/dev/null 2>&1; c rmp "$POD" >/dev/null 2>&1; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# check NAME COMMAND...: runs COMMAND (a shell function or command), counts the result
check() {
  local name="$1"; shift
  if "$@" >"$TMP/out" 2>&1; then
    PASS=$((PASS + 1)); echo "ok   $name"
  else
    FAIL=$((FAIL + 1)); echo "FAIL $name"; sed 's/^/     | /' "$TMP/out" | tail -n 15
  fi
}

# ---- setup: images, a pod with the kit's network, an httpd and a cat container -------------
cat >"$TMP/pod.json" <<EOF
{"metadata": {"name": "crictl-checks", "namespace": "default", "uid": "crictl-checks-$$"},
 "log_directory": "$TMP/logs", "linux": {}}
EOF
cat >"$TMP/httpd.json" <<EOF
{"metadata": {"name": "httpd"}, "image": {"image": "$HTTPD"}, "log_path": "httpd.log", "linux": {}}
EOF
cat >"$TMP/cat.json" <<EOF
{"metadata": {"name": "cat"}, "image": {"image": "$BUSYBOX"}, "command": ["sh", "-c", "echo started; cat; echo stdin-closed; sleep 3600"],
 "stdin": true, "log_path": "cat.log", "linux": {}}
EOF

pull() { c pull "$BUSYBOX" && c pull "$HTTPD"; }
check "pull busybox and httpd" pull
# (outputs are captured before grep -q: an early exit would SIGPIPE crictl and fail the pipe)
images() { local o; o="$(c images)" && grep -q "e2e-test-images/busybox" <<<"$o" && c images -o json | jq -e '.images | length >= 2'; }
check "images lists them" images
inspecti() { c inspecti "$BUSYBOX" | jq -e '.status.id | startswith("sha256:")'; }
check "inspecti" inspecti

POD="$(c runp "$TMP/pod.json")" || { echo "FAIL runp"; echo "crictl: $PASS passed, $((FAIL + 1)) failed"; exit 1; }
HTTPD_ID="$(c create "$POD" "$TMP/httpd.json" "$TMP/pod.json")" && c start "$HTTPD_ID" >/dev/null
CAT_ID="$(c create "$POD" "$TMP/cat.json" "$TMP/pod.json")" && c start "$CAT_ID" >/dev/null
inspectp() {
  c inspectp "$POD" | jq -e '.status.state == "SANDBOX_READY"' &&
    local ip; ip="$(c inspectp "$POD" | jq -r '.status.network.ip')" && grep -q "^${2:-}" <<<"$ip"
}
check "inspectp: ready, with a pod IP" inspectp "$POD" "${2:-}"
running() { c inspect "$1" | jq -e '.status.state == "CONTAINER_RUNNING"'; }
check "inspect: httpd running" running "$HTTPD_ID"

# ---- exec --------------------------------------------------------------------------------------
for tr in spdy websocket; do
  ex() { [ "$(c exec --transport "$tr" "$HTTPD_ID" echo hello)" = hello ]; }
  check "exec ($tr)" ex
  exi() { [ "$(printf 'in-%s' "$tr" | c exec -i --transport "$tr" "$HTTPD_ID" cat)" = "in-$tr" ]; }
  check "exec -i with stdin ($tr)" exi
  # crictl exits 1 for any non-zero code and names the code
  exc() { ! c exec --transport "$tr" "$HTTPD_ID" sh -c 'exit 7' 2>"$TMP/err"; grep -q "exit code 7" "$TMP/err"; }
  check "exec exit code ($tr)" exc
done
sync_exec() {
  c exec -s "$HTTPD_ID" sh -c 'echo out; echo err >&2' >"$TMP/so" 2>"$TMP/se"
  # crictl prints the container's stdout and then its stderr, both on its own stdout
  grep -qx out "$TMP/so" && grep -qx err "$TMP/so" && [ "$(grep -n . "$TMP/so" | head -1)" = "1:out" ]
}
check "exec -s (ExecSync) stdout and stderr" sync_exec

# ---- attach: returns by itself when stdin ends, and on SIGTERM; the container keeps running ----
for tr in spdy websocket; do
  att() { echo "hello-$tr" | T=15 c attach -i --transport "$tr" "$CAT_ID"; }
  check "attach -i returns after stdin ends ($tr)" att
  attterm() {
    sleep 3600 | "${CR[@]}" attach -i --transport "$tr" "$CAT_ID" &
    local pid=$!
    sleep 1
    # crictl 1.32 itself ignores the first SIGTERM during attach (its handler closes a channel
    # nothing waits on) and exits on the second: send both, as `timeout` effectively does
    kill -TERM "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; pkill -P $$ sleep; echo "still running 5 s after SIGTERM"; return 1; fi
    pkill -P $$ sleep 2>/dev/null
    return 0
  }
  check "attach ends on SIGTERM ($tr)" attterm
  check "container runs on after attach ($tr)" running "$CAT_ID"
done
logs_cat() { local o; o="$(c logs "$CAT_ID")" && grep -q "hello-spdy" <<<"$o" && grep -q "hello-websocket" <<<"$o"; }
check "attach stdin reached the container (logs)" logs_cat

# ---- port-forward to the pod's httpd ----------------------------------------------------------
port=18480
for tr in spdy websocket; do
  port=$((port + 1))
  pf() {
    "${CR[@]}" port-forward --transport "$tr" "$POD" "$port:80" >"$TMP/pf-$tr.log" 2>&1 &
    PF_PIDS+=($!)
    for _ in $(seq 1 50); do
      curl -fs --max-time 5 "http://127.0.0.1:$port/" >"$TMP/page" 2>/dev/null && break
      sleep 0.2
    done
    cat "$TMP/pf-$tr.log"
    grep -qi "html" "$TMP/page" && curl -fs --max-time 5 "http://127.0.0.1:$port/" -o "$TMP/page2" && grep -qi html "$TMP/page2"
  }
  check "port-forward ($tr)" pf
done

# ---- logs and stats ---------------------------------------------------------------------------
logs() { local o; o="$(c logs "$HTTPD_ID")" && grep -q httpd <<<"$o" && [ "$(c logs --tail 1 "$CAT_ID" | wc -l)" = 1 ]; }
check "logs, --tail" logs
stats() { c stats -o json | jq -e --arg id "$HTTPD_ID" '.stats[] | select(.attributes.id == $id) | .memory.workingSetBytes.value | tonumber > 0'; }
check "stats: the container's memory" stats
statsp() { c statsp -o json | jq -e --arg id "$POD" '.stats[] | select(.attributes.id == $id)'; }
check "statsp: the pod" statsp
psa() { c ps -a -p "$POD" -q | wc -l | grep -qx 2; }
check "ps: both containers" psa

# ---- stop and remove ------------------------------------------------------------------------------
stop_rm() { c stop "$CAT_ID" && c rm "$CAT_ID" && c stopp "$POD" && c rmp "$POD" && POD=""; }
check "stop, rm, stopp, rmp" stop_rm
gone() { [ -z "$(c pods -q)" ] && [ -z "$(c ps -a -q)" ]; }
check "nothing listed afterwards" gone

echo "crictl: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
