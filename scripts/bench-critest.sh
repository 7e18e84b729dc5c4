#!/usr/bin/env bash
# critest's benchmark specs (../shared/conformance/run-critest.sh --benchmark), side by side:
# husk (release build) and containerd 1.6 (Debian 12's package, CRI plugin), one script run, same
# images, same CNI config, same machine.
#
# Usage: scripts/bench-critest.sh [--husk-runtime crun|runc]... [--no-containerd] [--seed N]
#   --husk-runtime H  run husk with H as its default handler (repeatable; default: crun, then runc)
#   --no-containerd   husk only
#   --seed N          ginkgo seed, the same for every run so that the specs run in the same order
#                     (default 1)
# Env: HUSK_CONFORMANCE_KIT (default ../shared/conformance beside the checkout),
#      HUSK_BENCH_OUT (default target/bench-critest).
# Writes the raw reports to OUT/husk (crun), OUT/husk-runc, OUT/containerd and the side-by-side
# table of medians to OUT/summary.md (also printed).
# containerd runs runc (io.containerd.runc.v2 shim, cgroupfs) and a pause container per pod
# (registry.k8s.io/pause:3.6, its 1.6 default, pulled before the specs); husk runs no pause image.
# Network: one bridge and subnet of this script's own (host-local IPAM, portmap, loopback, no
# masquerade, an iptables FORWARD drop for pod traffic leaving the subnet), used by both runtimes,
# each with its own host-local dataDir. Everything it starts it stops by PID; on exit it removes
# leftover pods, unmounts everything under its temp dir, deletes the bridge, the rule and the dir.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
KIT="${HUSK_CONFORMANCE_KIT:-$REPO/../shared/conformance}"
OUT="${HUSK_BENCH_OUT:-$REPO/target/bench-critest}"

HUSK_RUNTIMES=()
WITH_CONTAINERD=1
SEED=1
while [ $# -gt 0 ]; do
  case "$1" in
    --husk-runtime) HUSK_RUNTIMES+=("$2"); shift 2 ;;
    --no-containerd) WITH_CONTAINERD=0; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-critest: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#HUSK_RUNTIMES[@]} -gt 0 ] || HUSK_RUNTIMES=(crun runc)

log() { printf '[bench-critest] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ ! -x "$KIT/bin/critest" ] || [ ! -x "$KIT/bin/crictl" ] || [ ! -f "$KIT/run-critest.sh" ]; then
  log "the conformance kit is absent: expected $KIT/bin/critest, bin/crictl and run-critest.sh"
  log "(a checkout on its own has no ../shared/conformance; set HUSK_CONFORMANCE_KIT)"
  log "NOT RUN: no figures were measured"
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  log "must run as root (namespaces, mounts, iptables, cgroups, apt-get)"
  exit 2
fi
for t in jq iptables ip awk; do command -v "$t" >/dev/null || die "$t is required (scripts/setup.sh installs it)"; done
for rt in "${HUSK_RUNTIMES[@]}"; do
  case "$rt" in crun | runc) ;; *) die "--husk-runtime: crun or runc, not $rt" ;; esac
  command -v "$rt" >/dev/null || die "runtime $rt is not installed (scripts/setup.sh installs runc and crun)"
done
CRICTL="$KIT/bin/crictl"

log "building huskd, husk-monitor (release)"
cargo build --release -q -p huskd -p husk-monitor
BIN="$REPO/target/release"

if [ "$WITH_CONTAINERD" = 1 ]; then
  if ! { command -v containerd && command -v containerd-shim-runc-v2; } >/dev/null; then
    log "installing containerd (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends containerd >/dev/null \
      || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends containerd >/dev/null; }
  fi
  command -v containerd >/dev/null && command -v containerd-shim-runc-v2 >/dev/null \
    || die "containerd is not installed and could not be installed"
  command -v runc >/dev/null || die "runc is required for containerd"
fi

log "test images: $KIT/crit-images.sh up"
bash "$KIT/crit-images.sh" up

# ---- this run's world ---------------------------------------------------------------------------
mkdir -p "$OUT"
WORK="$(mktemp -d /var/tmp/husk-bench-critest.XXXXXX)"
# searchable by others: containers in user namespaces resolve their rootfs path below it
chmod 0711 "$WORK"
for _ in $(seq 1 20); do
  BRIDGE="huskbc$((RANDOM % 90 + 10))"
  SUBNET_PREFIX="10.234.$((RANDOM % 200 + 20))"
  ip link show "$BRIDGE" >/dev/null 2>&1 && continue
  ip -4 route show | grep -q -F "$SUBNET_PREFIX." && continue
  break
done
SUBNET="$SUBNET_PREFIX.0/24"
FWD_COMMENT="husk-bench-critest-$BRIDGE"
CGROUP_PARENT=husk-bench
HUSKD_PID="" CONTAINERD_PID="" CD_SOCK="" HUSK_SOCK=""
# critest's cgroup parent is /test.slice when the runtime has no RuntimeConfig (containerd 1.6):
# the dirs it makes are removed on exit when empty and not there before.
PRE_TEST_SLICE="$(ls -d /sys/fs/cgroup/*/test.slice /sys/fs/cgroup/test.slice 2>/dev/null || true)"
# containerd 1.6 makes /run/containerd/s (shim sockets) and libcni's /var/lib/cni/results
# (ADD cache) whatever its root and state are: removed on exit when empty and made by this run.
PRE_RUN_CONTAINERD=0 PRE_VAR_LIB_CNI=0
[ -e /run/containerd ] && PRE_RUN_CONTAINERD=1
[ -e /var/lib/cni ] && PRE_VAR_LIB_CNI=1

PATFILE="$(mktemp /tmp/husk-bench-critest-pat.XXXXXX)"
printf '%s\n' "$WORK" >"$PATFILE"
# Processes whose command line names this run's dir (husk monitors and pod inits, containerd
# shims through their -address). The pattern comes from a file so grep's own argv cannot match.
procs_from_work() {
  grep -l -s -F -f "$PATFILE" /proc/[0-9]*/cmdline 2>/dev/null | sed 's#/proc/\([0-9]*\)/cmdline#\1#' | grep -v -x "$$" || true
}
# containerd-shim-runc-v2 processes (reparented to init) whose -address is socket $1
shims_of() {
  local sock=$1 p args
  for p in /proc/[0-9]*; do
    args="$( { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null)" || continue
    case "${args%%$'\n'*}" in */containerd-shim-runc-v2 | containerd-shim-runc-v2) ;; *) continue ;; esac
    grep -qx -F -- "$sock" <<<"$(sed -n '/^-address$/{n;p}' <<<"$args")" && echo "${p#/proc/}"
  done
}
mounts_under() { awk -v w="$1/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r; }

stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Pods (and their containers) a run left, removed through the CRI as a kubelet would.
remove_pods() {
  local sock=$1 c n
  c=("$CRICTL" --timeout 60s -r "unix://$sock" -i "unix://$sock")
  n=$("${c[@]}" pods -q 2>/dev/null | wc -l) || n=0
  if [ "$n" != 0 ]; then
    log "critest left $n pods on $sock; crictl rmp -af"
    "${c[@]}" rmp -af >/dev/null 2>&1 || log "crictl rmp -af failed"
  fi
  n=$("${c[@]}" ps -aq 2>/dev/null | wc -l) || n=0
  if [ "$n" != 0 ]; then
    log "$n containers left on $sock; crictl rm -af"
    "${c[@]}" rm -af >/dev/null 2>&1 || true
  fi
}

stop_huskd() {
  [ -n "$HUSKD_PID" ] || return 0
  stop_pid "$HUSKD_PID" 15
  HUSKD_PID=""
}

stop_containerd() {
  local p
  [ -n "$CONTAINERD_PID" ] && stop_pid "$CONTAINERD_PID" 15
  CONTAINERD_PID=""
  [ -n "$CD_SOCK" ] || return 0
  # Containers whose shim outlived containerd: through runc's own state in our root.
  if [ -d "$WORK/containerd/runc/k8s.io" ]; then
    for p in $(runc --root "$WORK/containerd/runc/k8s.io" list -q 2>/dev/null); do
      log "runc delete -f $p (left behind)"
      runc --root "$WORK/containerd/runc/k8s.io" delete -f "$p" >/dev/null 2>&1 || true
    done
  fi
  for p in $(shims_of "$CD_SOCK"); do
    log "stopping containerd-shim-runc-v2 pid $p"
    kill -TERM "$p" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do [ -z "$(shims_of "$CD_SOCK")" ] && break; sleep 0.1; done
  for p in $(shims_of "$CD_SOCK"); do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
  local rc=$? m c
  trap - EXIT INT TERM
  set +e
  [ -n "$HUSKD_PID" ] && [ -S "$HUSK_SOCK" ] && remove_pods "$HUSK_SOCK"
  stop_huskd
  [ -n "$CONTAINERD_PID" ] && [ -S "$CD_SOCK" ] && remove_pods "$CD_SOCK"
  stop_containerd
  for p in $(procs_from_work); do kill -KILL "$p" 2>/dev/null; done
  for m in $(mounts_under "$WORK"); do umount -l "$m" 2>/dev/null; done
  for c in $(find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d -path "*/$CGROUP_PARENT/*" 2>/dev/null | sort -r); do rmdir "$c" 2>/dev/null; done
  for c in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/"$CGROUP_PARENT"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
  for c in /sys/fs/cgroup/*/test.slice /sys/fs/cgroup/test.slice; do
    [ -d "$c" ] && ! grep -qx -F "$c" <<<"$PRE_TEST_SLICE" && rmdir "$c" 2>/dev/null
  done
  [ "$PRE_RUN_CONTAINERD" = 0 ] && [ -d /run/containerd ] && rmdir /run/containerd/s /run/containerd 2>/dev/null
  [ "$PRE_VAR_LIB_CNI" = 0 ] && [ -d /var/lib/cni ] && rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
  while iptables -D FORWARD -s "$SUBNET" ! -d "$SUBNET" -m comment --comment "$FWD_COMMENT" -j DROP 2>/dev/null; do :; done
  ip link del "$BRIDGE" 2>/dev/null
  if [ -n "$(mounts_under "$WORK")" ]; then
    log "leaving $WORK: still mounted: $(mounts_under "$WORK" | tr '\n' ' ')"
  else
    rm -rf "$WORK"
  fi
  rm -f "$PATFILE"
  [ "$rc" = 0 ] || log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Registry mirrors: critest's original names resolve to the kit's registry (containerd's
# hosts.toml layout, read by both runtimes).
CERTS="$WORK/certs.d"
for host in registry.k8s.io k8s.gcr.io gcr.io docker.io quay.io public.ecr.aws; do
  mkdir -p "$CERTS/$host"
  cat >"$CERTS/$host/hosts.toml" <<EOF
server = "http://127.0.0.1:5000"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
EOF
done

# One conflist, one bridge; each runtime's copy differs only in its host-local dataDir.
write_conflist() {
  local confdir=$1 ipamdir=$2
  mkdir -p "$confdir" "$ipamdir"
  cat >"$confdir/10-husk-bench.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "husk-bench",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]],
              "routes": [{"dst": "$SUBNET"}], "dataDir": "$ipamdir"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}
iptables -I FORWARD -s "$SUBNET" ! -d "$SUBNET" -m comment --comment "$FWD_COMMENT" -j DROP
log "network: bridge $BRIDGE, subnet $SUBNET (no masquerade; FORWARD drop out of the subnet)"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Left-behind check after a runtime is stopped: mounts, reservations, veths, processes.
check_clean() {
  local what=$1 dir=$2 n bad=0
  n=$(mounts_under "$dir" | wc -l)
  [ "$n" = 0 ] || { log "LEFT ($what): $n mounts under $dir"; bad=1; }
  n=$(find "$dir/cni/ipam" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { log "LEFT ($what): $n host-local IP reservations"; bad=1; }
  n=$(ip -o link show master "$BRIDGE" 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { log "LEFT ($what): $n veths on $BRIDGE"; bad=1; }
  n=$(procs_from_work | wc -l)
  [ "$n" = 0 ] || { log "LEFT ($what): $n processes naming $WORK"; bad=1; }
  return $bad
}

# run_critest NAME LABEL SOCKET REPORT_DIR: one critest --benchmark run, its last line and load
RUN_NAMES=() RUN_LABELS=() RUN_RESULTS=() RUN_LOADS=()
run_critest() {
  local name=$1 label=$2 sock=$3 report=$4 rc l0 l1 line
  rm -rf "$report"
  l0=$(loadavg)
  log "== critest --benchmark on $label (load average before: $l0)"
  set +e
  bash "$KIT/run-critest.sh" --benchmark "unix://$sock" "$report" -- --ginkgo.seed="$SEED" \
    | tee "$report.last"
  rc=${PIPESTATUS[0]}
  set -e
  l1=$(loadavg)
  line="$(tail -n 1 "$report.last")"
  mv "$report.last" "$report/last-line.txt"
  [ "$rc" = 0 ] || log "critest --benchmark on $label: exit $rc ($line); see $report/failures.txt"
  RUN_NAMES+=("$name") RUN_LABELS+=("$label") RUN_RESULTS+=("$line") RUN_LOADS+=("$l0 → $l1")
}

# ---- husk -----------------------------------------------------------------------------------------
run_husk() {
  local rt=$1 dir="$WORK/husk-$1" name report
  mkdir -p "$dir"/{root,state,logs}
  write_conflist "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$dir/config.toml" <<EOF
root = "$dir/root"
state_dir = "$dir/state"
socket = "$dir/husk.sock"
default_runtime = "$rt"
default_cgroup_parent = "/$CGROUP_PARENT"
[registry]
config_path = "$CERTS"
[cni]
conf_dir = "$dir/cni/net.d"
EOF
  HUSK_SOCK="$dir/husk.sock"
  setsid "$BIN/huskd" --config "$dir/config.toml" --log-level info >"$dir/logs/huskd.log" 2>&1 </dev/null &
  HUSKD_PID=$!
  local ok=0
  for _ in $(seq 1 100); do
    [ -S "$HUSK_SOCK" ] && "$CRICTL" --timeout 2s -r "unix://$HUSK_SOCK" version >/dev/null 2>&1 && { ok=1; break; }
    kill -0 "$HUSKD_PID" 2>/dev/null || { tail -n 30 "$dir/logs/huskd.log" >&2; die "huskd exited at start"; }
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "huskd did not answer on $HUSK_SOCK"
  if [ "$rt" = crun ]; then name=husk; else name="husk-$rt"; fi
  report="$OUT/$name"
  run_critest "$name" "husk ($rt)" "$HUSK_SOCK" "$report"
  remove_pods "$HUSK_SOCK"
  stop_huskd
  sleep 0.5
  check_clean "husk $rt" "$dir" || true
  cp "$dir/logs/huskd.log" "$report/" 2>/dev/null || true
  for m in $(mounts_under "$dir"); do umount -l "$m" 2>/dev/null || true; done
  # (the next run starts from scratch; what cannot be unmounted stays for the exit trap to report)
  [ -z "$(mounts_under "$dir")" ] && rm -rf "$dir"
  HUSK_SOCK=""
}

for rt in "${HUSK_RUNTIMES[@]}"; do run_husk "$rt"; done

# ---- containerd -----------------------------------------------------------------------------------
CD_VERSION=""
if [ "$WITH_CONTAINERD" = 1 ]; then
  CD="$WORK/containerd"
  CD_SOCK="$CD/containerd.sock"
  CD_VERSION="$(containerd --version | awk '{print $3}')"
  mkdir -p "$CD"/{root,state,opt,runc,logs}
  write_conflist "$CD/cni/net.d" "$CD/cni/ipam"
  cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
# not used here; failing to load them only costs log lines
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CD_SOCK"
[ttrpc]
  address = "$CD_SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  disable_apparmor = true
  # this VM may not lower oom_score_adj (runc's nsexec fails writing the pause container's -998):
  # containers get at least containerd's own score, as for rootless containerd
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_concurrent_downloads = 3
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$CD/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CD/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CERTS"
EOF
  setsid containerd --config "$CD/config.toml" >"$CD/logs/containerd.log" 2>&1 </dev/null &
  CONTAINERD_PID=$!
  ok=0
  for _ in $(seq 1 200); do
    [ -S "$CD_SOCK" ] && "$CRICTL" --timeout 2s -r "unix://$CD_SOCK" version >/dev/null 2>&1 && { ok=1; break; }
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { tail -n 30 "$CD/logs/containerd.log" >&2; die "containerd exited at start"; }
    sleep 0.1
  done
  [ "$ok" = 1 ] || { tail -n 30 "$CD/logs/containerd.log" >&2; die "containerd did not answer on $CD_SOCK"; }
  # The pause image is on every kubelet node before its first pod; pull it first so that the
  # first RunPodSandbox is not a pull.
  "$CRICTL" --timeout 60s -r "unix://$CD_SOCK" -i "unix://$CD_SOCK" pull registry.k8s.io/pause:3.6 >/dev/null \
    || die "containerd could not pull registry.k8s.io/pause:3.6 from the kit's registry"
  report="$OUT/containerd"
  run_critest containerd "containerd $CD_VERSION (runc)" "$CD_SOCK" "$report"
  remove_pods "$CD_SOCK"
  stop_containerd
  sleep 0.5
  check_clean containerd "$CD" || true
  cp "$CD/logs/containerd.log" "$report/" 2>/dev/null || true
fi

# ---- the table --------------------------------------------------------------------------------------
# benchmark-summary.txt lines: "<file or experiment> <operation>: n=N min=Xms median=Yms max=Zms"
# -> "<key>\t<n>\t<min>\t<median>\t<max>" with key "<file minus _benchmark_data.json> <operation>"
parse_summary() {
  sed -n 's/^\(.*\): n=\([0-9]*\) min=\([0-9.]*\)ms median=\([0-9.]*\)ms max=\([0-9.]*\)ms$/\1\t\2\t\3\t\4\t\5/p' "$1" \
    | sed 's/_benchmark_data\.json / /; s/^start-container-benchmark /start-container /'
}
# Per-sample sums of several operations of one spec (from the raw datapoints, same median and
# rounding as the kit's summary): the runtimes split the work between calls differently
# (containerd 1.6 makes the shim and runs `runc create` in StartContainer and deletes the task
# when the container exits; husk runs `<runtime> create` in CreateContainer and deletes in
# RemoveContainer), so Create+Start and Stop+Remove are the like-for-like figures.
# sums FILE LABEL OP... -> "<label>\tn\tmin\tmedian\tmax"
sums() {
  local f=$1 label=$2
  shift 2
  [ -s "$f" ] || return 0
  jq -r --arg name "$label" --args '
    def ms: (. / 1e4 | floor) / 100;
    . as $r | $ARGS.positional as $ops
    | [$ops[] as $o | $r.operationsNames | index($o)] as $ix
    | select(all($ix[]; . != null))
    | [$r.datapoints[] | .operationsDurationsNs as $d | [$ix[] | $d[.]] | add] | select(length > 0) | sort as $s
    | "\($name)\t\($s | length)\t\($s[0] | ms)\t\($s[($s | length) / 2 | floor] | ms)\t\($s[-1] | ms)"' \
    "$@" <"$f" 2>/dev/null || true
}
for i in "${!RUN_NAMES[@]}"; do
  r="$OUT/${RUN_NAMES[$i]}"
  t="$WORK/${RUN_NAMES[$i]}.tsv"
  if [ -s "$r/benchmark-summary.txt" ]; then parse_summary "$r/benchmark-summary.txt" >"$t"; else : >"$t"; fi
  b="$r/benchmark"
  {
    sums "$b/container_benchmark_data.json" "container Create+Start" CreateContainer StartContainer
    sums "$b/container_benchmark_data.json" "container Stop+Remove" StopContainer RemoveContainer
    sums "$b/container_benchmark_data.json" "container all 5 calls" CreateContainer StartContainer StatusContainer StopContainer RemoveContainer
    sums "$b/pod_benchmark_data.json" "pod all 4 calls" CreatePod StatusPod StopPod RemovePod
    sums "$b/image_lifecycle_benchmark_data.json" "image_lifecycle all 3 calls" PullImage StatusImage RemoveImage
  } >>"$t"
done

# operations in the order of the runs' reports
all_keys() { for n in "${RUN_NAMES[@]}"; do cut -f1 "$WORK/$n.tsv"; done | awk '!seen[$0]++'; }

SUMMARY="$OUT/summary.md"
{
  if [ "$WITH_CONTAINERD" = 1 ]; then echo "# critest benchmark specs: husk vs containerd $CD_VERSION"; else echo "# critest benchmark specs: husk"; fi
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM;" \
    "kernel $(uname -r); husk $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?');" \
    "runc $(runc --version | awk 'NR == 1 {print $3}'), crun $(crun --version | awk 'NR == 1 {print $3}');" \
    "ginkgo seed $SEED; params $(basename "$KIT")/benchmark-params.yaml."
  echo
  echo "Medians in ms (n = samples; \"A+B\" and \"all\" rows: median of the per-sample sums)."
  echo "husk's default runtime is crun (the husk (runc) column runs husk with runc as its default);"
  if [ "$WITH_CONTAINERD" = 1 ]; then
    echo "containerd runs runc through the io.containerd.runc.v2 shim and a pause container per pod."
    echo "ratio = husk / containerd (below 1: husk is faster)."
  fi
  echo
  hdr="| operation | n |"
  sep="|---|---:|"
  for i in "${!RUN_NAMES[@]}"; do hdr+=" ${RUN_LABELS[$i]} |"; sep+="---:|"; done
  if [ "$WITH_CONTAINERD" = 1 ]; then
    for i in "${!RUN_NAMES[@]}"; do
      [ "${RUN_NAMES[$i]}" = containerd ] && continue
      hdr+=" ${RUN_LABELS[$i]} / containerd |"; sep+="---:|"
    done
  fi
  echo "$hdr"
  echo "$sep"
  # keys in the order of the first run that has them
  all_keys | while IFS= read -r key; do
    n=""
    meds=()
    for i in "${!RUN_NAMES[@]}"; do
      rec="$(awk -F'\t' -v k="$key" '$1 == k' "$WORK/${RUN_NAMES[$i]}.tsv" | head -n 1)"
      if [ -n "$rec" ]; then
        [ -n "$n" ] || n="$(cut -f2 <<<"$rec")"
        meds+=("$(cut -f4 <<<"$rec")")
      else
        meds+=("")
      fi
    done
    row="| $key | $n |"
    cdmed=""
    for i in "${!RUN_NAMES[@]}"; do
      row+=" ${meds[$i]:-–} |"
      [ "${RUN_NAMES[$i]}" = containerd ] && cdmed="${meds[$i]}"
    done
    if [ "$WITH_CONTAINERD" = 1 ]; then
      for i in "${!RUN_NAMES[@]}"; do
        [ "${RUN_NAMES[$i]}" = containerd ] && continue
        if [ -n "${meds[$i]}" ] && [ -n "$cdmed" ] && awk -v d="$cdmed" 'BEGIN {exit !(d > 0)}'; then
          row+=" $(awk -v h="${meds[$i]}" -v d="$cdmed" 'BEGIN {printf "%.2f", h / d}') |"
        else
          row+=" – |"
        fi
      done
    fi
    echo "$row"
  done
  echo
  echo "min – max (ms):"
  echo
  hdr="| operation |"; sep="|---|"
  for i in "${!RUN_NAMES[@]}"; do hdr+=" ${RUN_LABELS[$i]} |"; sep+="---:|"; done
  echo "$hdr"
  echo "$sep"
  all_keys | while IFS= read -r key; do
    row="| $key |"
    for i in "${!RUN_NAMES[@]}"; do
      rec="$(awk -F'\t' -v k="$key" '$1 == k' "$WORK/${RUN_NAMES[$i]}.tsv" | head -n 1)"
      if [ -n "$rec" ]; then row+=" $(cut -f3 <<<"$rec") – $(cut -f5 <<<"$rec") |"; else row+=" – |"; fi
    done
    echo "$row"
  done
  echo
  echo "| run | critest | load average (1/5/15 min) before → after |"
  echo "|---|---|---|"
  for i in "${!RUN_NAMES[@]}"; do
    echo "| ${RUN_LABELS[$i]} | ${RUN_RESULTS[$i]} | ${RUN_LOADS[$i]} |"
  done
  echo
  echo "Raw reports: $(for n in "${RUN_NAMES[@]}"; do printf '%s/ ' "${OUT#"$REPO"/}/$n"; done)"
} >"$SUMMARY"

echo
cat "$SUMMARY"
FAILED=0
for i in "${!RUN_NAMES[@]}"; do
  case "${RUN_RESULTS[$i]}" in *" 0 failed"*) ;; *) FAILED=1 ;; esac
done
[ "$FAILED" = 0 ] && log "done; table in $SUMMARY" || log "some benchmark specs failed; table in $SUMMARY (see failures.txt in the reports)"
exit "$FAILED"
