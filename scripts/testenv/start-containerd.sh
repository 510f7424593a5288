#!/usr/bin/env bash
# start-containerd.sh [BASE_DIR] [SNAPSHOTTER]
#   Starts a private containerd (Debian 'containerd' 1.6) as root with all state under BASE_DIR
#   (default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/containerd): root=BASE/root,
#   state=BASE/state, opt=BASE/opt (not /opt/containerd), socket BASE/containerd.sock.
#   No TCP listeners (metrics/debug/CRI streaming off). SNAPSHOTTER (default native) is the CRI
#   default snapshotter; for ctr pass --snapshotter or export CONTAINERD_SNAPSHOTTER.
#   CRI plugin disabled unless CRI=1. Idempotent: if already running for BASE_DIR and answering,
#   prints its PID. stdout: only the PID. Usage afterwards:
#     export CONTAINERD_ADDRESS=BASE/containerd.sock CONTAINERD_SNAPSHOTTER=native
#     ctr -n k8s.io images import --snapshotter native out.tar ; ctr -n k8s.io images ls
#   Stop: stop-pidfile.sh BASE/containerd.pid
set -euo pipefail
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/containerd}"
SNAP="${2:-native}"
CRI="${CRI:-0}"
log() { echo "[start-containerd] $*" >&2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds containerd:containerd ctr:containerd runc:runc

mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
SOCK="$BASE/containerd.sock"
PIDFILE="$BASE/containerd.pid"
CONF="$BASE/config.toml"
ready() { ctr -a "$SOCK" version >/dev/null 2>&1; }

if [ -s "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  if proc_alive "$pid" "$CONF"; then
    for _ in $(seq 1 100); do
      if ready; then log "already running (pid $pid), socket $SOCK"; echo "$pid"; exit 0; fi
      sleep 0.1
    done
    log "pid $pid alive but not answering on $SOCK"; exit 1
  fi
  rm -f "$PIDFILE"
fi

mkdir -p "$BASE/root" "$BASE/state"
rm -f "$SOCK" "$SOCK.ttrpc"
disabled='"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"'
[ "$CRI" = 1 ] || disabled="\"io.containerd.grpc.v1.cri\", $disabled"
cat >"$CONF" <<TOML
version = 2
root = "$BASE/root"
state = "$BASE/state"
disabled_plugins = [$disabled]

[grpc]
  address = "$SOCK"
  tcp_address = ""

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$BASE/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_cgroup = true
    disable_apparmor = true
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "$SNAP"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$BASE/cni-conf"
TOML

log "starting containerd (root $BASE/root, socket $SOCK, snapshotter $SNAP, CRI=$CRI)"
setsid nohup containerd --config "$CONF" >>"$BASE/containerd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"
for _ in $(seq 1 150); do
  if ready; then
    log "ready (pid $pid); export CONTAINERD_ADDRESS=$SOCK CONTAINERD_SNAPSHOTTER=$SNAP; log $BASE/containerd.log"
    echo "$pid"; exit 0
  fi
  pid_running "$pid" || { log "containerd exited:"; tail -20 "$BASE/containerd.log" >&2; rm -f "$PIDFILE"; exit 1; }
  sleep 0.1
done
log "timeout waiting for $SOCK"; tail -20 "$BASE/containerd.log" >&2
"$HERE/stop-pidfile.sh" "$PIDFILE" 10 "$CONF" || true
exit 1
