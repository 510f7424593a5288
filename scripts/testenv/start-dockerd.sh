#!/usr/bin/env bash
# start-dockerd.sh [BASE_DIR] [STORAGE_DRIVER]
#   Starts a private Docker daemon (Debian 'docker.io' 20.10 dockerd) as root, all state under
#   BASE_DIR (default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/dockerd), API socket
#   BASE/docker.sock (unix only, no TCP). No networking: --bridge=none --iptables=false ...
#   Uses its own containerd (start-containerd.sh BASE/containerd), so nothing goes to
#   /opt/containerd or /run/docker/containerd. STORAGE_DRIVER: vfs (default) or overlay2.
#   127.0.0.0/8 registries are plain-http "insecure" by default; extra dockerd args via
#   DOCKERD_EXTRA_ARGS. Idempotent; stdout: only the dockerd PID. Afterwards:
#     export DOCKER_HOST=unix://BASE/docker.sock ; docker load -i out.tar
#   Stop: stop-pidfile.sh BASE/dockerd.pid; then stop-pidfile.sh BASE/containerd/containerd.pid
#   (down.sh does both). dockerd always creates the empty dir /run/docker/plugins.
set -euo pipefail
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/dockerd}"
DRV="${2:-vfs}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[start-dockerd] $*" >&2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds dockerd:docker.io containerd:containerd runc:runc curl:curl

mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
SOCK="$BASE/docker.sock"
PIDFILE="$BASE/dockerd.pid"
PAT="--data-root $BASE/data"
if [ "${#SOCK}" -gt 100 ]; then log "socket path too long for a unix socket: $SOCK"; exit 1; fi
ready() { curl -sf --max-time 2 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }

if [ -s "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  if proc_alive "$pid" "$PAT"; then
    for _ in $(seq 1 100); do
      if ready; then log "already running (pid $pid), DOCKER_HOST=unix://$SOCK"; echo "$pid"; exit 0; fi
      sleep 0.2
    done
    log "pid $pid alive but not answering on $SOCK"; exit 1
  fi
  rm -f "$PIDFILE"
fi

# containerd for this dockerd (its snapshotter does not matter: dockerd uses its graphdriver)
"$HERE/start-containerd.sh" "$BASE/containerd" native >/dev/null
CSOCK="$BASE/containerd/containerd.sock"

mkdir -p "$BASE/data" "$BASE/exec"
[ -s "$BASE/daemon.json" ] || echo '{}' >"$BASE/daemon.json" # never read /etc/docker/daemon.json
rm -f "$SOCK"
extra=()
if [ -n "${DOCKERD_EXTRA_ARGS:-}" ]; then read -ra extra <<<"$DOCKERD_EXTRA_ARGS"; fi
setsid nohup dockerd \
  --config-file "$BASE/daemon.json" \
  --host "unix://$SOCK" \
  --data-root "$BASE/data" --exec-root "$BASE/exec" --pidfile "$PIDFILE" \
  --containerd "$CSOCK" \
  --storage-driver "$DRV" \
  --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
  --userland-proxy=false \
  "${extra[@]}" >>"$BASE/dockerd.log" 2>&1 </dev/null &
pid=$!
log "starting dockerd (pid $pid, driver $DRV, data $BASE/data)"
for _ in $(seq 1 300); do
  if ready; then
    echo "$pid" >"$PIDFILE"
    log "ready; export DOCKER_HOST=unix://$SOCK ; log $BASE/dockerd.log"
    echo "$pid"; exit 0
  fi
  pid_running "$pid" || { log "dockerd exited:"; tail -20 "$BASE/dockerd.log" >&2; exit 1; }
  sleep 0.1
done
log "timeout waiting for $SOCK"; tail -20 "$BASE/dockerd.log" >&2
echo "$pid" >"$PIDFILE"
"$HERE/stop-pidfile.sh" "$PIDFILE" 20 "$PAT" || true
exit 1
