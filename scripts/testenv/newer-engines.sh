#!/usr/bin/env bash
# newer-engines.sh fetch SUITE [BASE] | up [BASE] | down [BASE]
#   The engines users run today, next to the Debian 12 ones of up.sh: docker.io, docker-cli and
#   containerd of Debian trixie (dockerd 26.1, containerd 1.7) and sid (dockerd 28.x,
#   containerd 2.1.x), unpacked from their debs (fetch-debs.sh: private apt configuration, the
#   system's apt sources are not touched). Debian 12's runc (/usr/sbin/runc) is used by all of
#   them: trixie's runc needs a newer glibc. BASE default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv};
#   everything lives under N=BASE/newer. Root only; unix sockets only, no TCP listener.
#
#   fetch SUITE  unpack SUITE's packages into N/SUITE (debs cached in N/debs/SUITE); idempotent.
#                On failure one line "fetch-debs: SUITE: PKG: reason" (or "newer-engines: SUITE:
#                PKG: BINARY does not run here: ...") per failed package, exit 1.
#   up           fetch trixie and sid, then start (idempotent):
#                  N/containerd17  containerd 1.7 (trixie)  socket N/containerd17/containerd.sock
#                  N/containerd21  containerd 2.1 (sid)     socket N/containerd21/containerd.sock
#                    both: CRI and NRI disabled, opt dir inside, snapshotter overlayfs (native
#                    when overlay mounts do not work here), transfer unpack_config set (2.x
#                    'ctr images pull' fails with "no unpack platforms" without it)
#                  N/dockerd26     dockerd 26 (trixie), classic store, overlay2 (vfs fallback)
#                  N/dockerd28     dockerd 28 (sid), containerd image store
#                                  (features.containerd-snapshotter), snapshotter overlayfs/native
#                    each dockerd has its own containerd of the same suite (N/dockerdXX/containerd,
#                    started by this script, not by dockerd: a dockerd-managed containerd creates
#                    /opt/containerd), its own --containerd-namespace, --bridge=none, no iptables.
#                Writes N/env.sh (export lines: NEWER_DOCKERD26_HOST, NEWER_DOCKERD28_HOST,
#                NEWER_CONTAINERD17_ADDRESS, NEWER_CONTAINERD21_ADDRESS, NEWER_CTR17, NEWER_CTR21,
#                NEWER_DOCKER_CLI, PIDs, versions, ...). Trixie failures are errors (exit 1).
#                A sid component that cannot be fetched or started is left out and gets
#                NEWER_SKIP_CONTAINERD21 / NEWER_SKIP_DOCKERD28="reason" instead (a "SKIP" line
#                on stderr; exit 0) unless NEWER_STRICT=1. NEWER_STORAGE=vfs forces vfs/native.
#                stdout: only the env.sh path.
#   down         stop all of it by PID files (dockerds first, then their containerds, the two
#                standalone containerds after killing their tasks, leftover shims), unmount
#                whatever is mounted under N (dockerd 26/28 bind-mount their data-root onto itself),
#                fail if a mount is left. Leaves the unpacked engines, debs and data in place.
#   Outside N: containerd 1.7.2x/2.x creates the empty dir /run/containerd at startup whatever
#   its state dir (the shim socket dir /run/containerd/s is hard-coded); RUNNING containers
#   (not needed for image tests) also use /run/containerd/s, and ctr run's default runc root and
#   fifo dir /run/containerd/{runc,fifo}. dockerd always creates the empty dir /run/docker/plugins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { echo "usage: newer-engines.sh fetch SUITE [BASE] | up [BASE] | down [BASE]" >&2; exit 2; }
CMD="${1:-}"
[ $# -gt 0 ] && shift
case "$CMD" in
  fetch) SUITE="${1:-}"; [ -n "$SUITE" ] || usage; BASE="${2:-}" ;;
  up | down) BASE="${1:-}" ;;
  *) usage ;;
esac
BASE="${BASE:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
if [ "$CMD" = down ] && [ ! -d "$BASE/newer" ]; then echo "[newer-engines down] no $BASE/newer" >&2; exit 0; fi
mkdir -p "$BASE/newer"
BASE="$(cd "$BASE" && pwd)"
N="$BASE/newer"
PKGS=(docker.io docker-cli containerd)
STOP="$HERE/stop-pidfile.sh"
t0=$SECONDS
log() { echo "[newer-engines $CMD +$((SECONDS - t0))s] $*" >&2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------------------------------------
# fetch

# fetch_suite SUITE : unpack PKGS of SUITE into N/SUITE and check the binaries run on this system.
# Sets FAILED_PKGS (space separated) and FAILED_WHY (the lines printed); returns 1 on any failure.
FAILED_PKGS=""
FAILED_WHY=""
fetch_suite() {
  local s="$1" pfx="$N/$1" flog="$N/debs/$1.fetch.log" rc=0 b p flag out line
  FAILED_PKGS=""
  FAILED_WHY=""
  mkdir -p "$N/debs"
  "$HERE/fetch-debs.sh" "$s" "$pfx" "$N/debs/$s" "${PKGS[@]}" 2>&1 | tee "$flog" >&2 || rc=$?
  while read -r line; do
    p="${line#fetch-debs: "$s": }"
    p="${p%%: *}"
    FAILED_PKGS="$FAILED_PKGS $p"
    FAILED_WHY="${FAILED_WHY:+$FAILED_WHY; }${line#fetch-debs: }"
  done < <(grep '^fetch-debs: ' "$flog" || true)
  if [ "$rc" != 0 ] && [ -z "$FAILED_PKGS" ]; then
    FAILED_PKGS=" ${PKGS[*]}"
    FAILED_WHY="$s: ${PKGS[*]}: fetch-debs.sh exited $rc (see $flog)"
    echo "newer-engines: $FAILED_WHY" >&2
  fi
  # Go binaries from newer suites do run on Debian 12 (libc >= 2.34); check it, once per binary
  for b in usr/sbin/dockerd:docker.io:--version usr/bin/docker:docker-cli:--version \
    usr/bin/containerd:containerd:--version usr/bin/ctr:containerd:--version \
    usr/bin/containerd-shim-runc-v2:containerd:-v; do
    IFS=: read -r b p flag <<<"$b"
    case " $FAILED_PKGS " in *" $p "*) continue ;; esac
    if ! out="$("$pfx/$b" "$flag" 2>&1)"; then
      line="$s: $p: $pfx/$b does not run here: $(echo "$out" | head -1)"
      echo "newer-engines: $line" >&2
      FAILED_PKGS="$FAILED_PKGS $p"
      FAILED_WHY="${FAILED_WHY:+$FAILED_WHY; }$line"
      sed -i "/^$p /d" "$pfx/.fetched" # so the next fetch unpacks it again
    fi
  done
  [ -z "$FAILED_PKGS" ]
}

if [ "$CMD" = fetch ]; then
  if fetch_suite "$SUITE"; then log "$SUITE ready in $N/$SUITE"; exit 0; fi
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# daemons

# sock_ok PATH : unix socket paths are limited to 107 bytes
sock_ok() { [ "${#1}" -le 100 ] || { log "socket path too long for a unix socket: $1"; return 1; }; }

# overlay_usable : can this kernel/filesystem mount overlayfs under N? (then unmounts it again)
overlay_usable() {
  local p="$N/.overlay-probe" ok=1
  rm -rf "$p"
  mkdir -p "$p/l" "$p/u" "$p/w" "$p/m"
  # in a private mount namespace, so that nothing can stay mounted on the host; -n: no
  # utab/mtab update (libmount would create /run/mount)
  if unshare --mount --propagation private mount -n -t overlay overlay \
    -o "lowerdir=$p/l,upperdir=$p/u,workdir=$p/w" "$p/m" 2>/dev/null; then
    ok=0
  fi
  rm -rf "$p"
  return "$ok"
}

# start_containerd DIR PREFIX SNAPSHOTTER : containerd PREFIX/usr/bin/containerd, all state in DIR
# (root, state, opt, sockets, config.toml, containerd.pid, containerd.log). stdout: the PID.
start_containerd() {
  local dir="$1" pfx="$2" snap="$3" bin="$2/usr/bin/containerd" ctr="$2/usr/bin/ctr"
  local conf="$1/config.toml" sock="$1/containerd.sock" pidf="$1/containerd.pid" pid ver
  sock_ok "$sock.ttrpc" || return 1
  mkdir -p "$dir/root" "$dir/state" "$dir/opt"
  if [ -s "$pidf" ]; then
    pid="$(cat "$pidf")"
    if proc_alive "$pid" "$conf"; then
      for _ in $(seq 1 100); do
        if "$ctr" -a "$sock" version >/dev/null 2>&1; then log "containerd $dir already running (pid $pid)"; echo "$pid"; return 0; fi
        sleep 0.1
      done
      log "containerd pid $pid alive but not answering on $sock"; return 1
    fi
    rm -f "$pidf"
  fi
  ver="$("$bin" --version | awk '{print $3}')" || return 1
  rm -f "$sock" "$sock.ttrpc"
  "$HERE/containerd-config.sh" "$bin" "$dir" "$snap" >"$conf" || return 1
  log "starting containerd $ver ($dir, snapshotter $snap)"
  # the suite's shims first on PATH (containerd looks them up there); runc stays Debian 12's
  PATH="$pfx/usr/bin:$pfx/usr/sbin:$PATH" setsid nohup "$bin" --config "$conf" \
    >>"$dir/containerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidf"
  for _ in $(seq 1 150); do
    if "$ctr" -a "$sock" version >/dev/null 2>&1; then log "containerd $ver ready (pid $pid), log $dir/containerd.log"; echo "$pid"; return 0; fi
    pid_running "$pid" || { log "containerd $dir exited:"; tail -20 "$dir/containerd.log" >&2; rm -f "$pidf"; return 1; }
    sleep 0.1
  done
  log "timeout waiting for $sock"; tail -20 "$dir/containerd.log" >&2
  "$STOP" "$pidf" 10 "$conf" || true
  return 1
}

# start_dockerd NAME PREFIX MODE DRIVER : dockerd PREFIX/usr/sbin/dockerd with state in N/NAME
# (data, exec, daemon.json, docker.sock, dockerd.pid, dockerd.log) and its own containerd from
# PREFIX in N/NAME/containerd. MODE classic: DRIVER is the graph driver (overlay2, vfs);
# MODE snapshotter: containerd image store, DRIVER is the containerd snapshotter (overlayfs,
# native). stdout: the dockerd PID.
start_dockerd() {
  local name="$1" pfx="$2" mode="$3" drv="$4" d="$N/$1" sock="$N/$1/docker.sock" pidf="$N/$1/dockerd.pid"
  local pat="--data-root $N/$1/data" pid csnap
  sock_ok "$sock" || return 1
  mkdir -p "$d/data" "$d/exec"
  ready() { curl -sf --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }
  if [ -s "$pidf" ]; then
    pid="$(cat "$pidf")"
    if proc_alive "$pid" "$pat"; then
      for _ in $(seq 1 100); do
        if ready; then log "dockerd $name already running (pid $pid)"; echo "$pid"; return 0; fi
        sleep 0.2
      done
      log "dockerd $name pid $pid alive but not answering on $sock"; return 1
    fi
    rm -f "$pidf"
  fi
  csnap=native # classic store: dockerd's graph driver holds the layers; containerd stores nothing
  [ "$mode" = snapshotter ] && csnap="$drv"
  start_containerd "$d/containerd" "$pfx" "$csnap" >/dev/null || return 1
  if [ "$mode" = snapshotter ]; then
    printf '{\n  "storage-driver": "%s",\n  "features": {"containerd-snapshotter": true}\n}\n' "$drv" >"$d/daemon.json"
  else
    printf '{\n  "storage-driver": "%s"\n}\n' "$drv" >"$d/daemon.json"
  fi
  rm -f "$sock"
  log "starting dockerd $name ($("$pfx/usr/sbin/dockerd" --version), $mode store, driver $drv)"
  # PREFIX first on PATH for docker-init/docker-proxy/shims; runc is Debian 12's /usr/sbin/runc
  PATH="$pfx/usr/bin:$pfx/usr/sbin:$PATH" setsid nohup "$pfx/usr/sbin/dockerd" \
    --config-file "$d/daemon.json" \
    -H "unix://$sock" \
    --data-root "$d/data" --exec-root "$d/exec" --pidfile "$pidf" \
    --containerd "$d/containerd/containerd.sock" \
    --containerd-namespace "newer-$name" --containerd-plugins-namespace "newer-$name-plugins" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --userland-proxy=false \
    >>"$d/dockerd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 300); do
    if ready; then
      echo "$pid" >"$pidf"
      log "dockerd $name ready (pid $pid), log $d/dockerd.log"
      echo "$pid"; return 0
    fi
    pid_running "$pid" || { log "dockerd $name exited:"; tail -20 "$d/dockerd.log" >&2; return 1; }
    sleep 0.1
  done
  log "timeout waiting for $sock"; tail -20 "$d/dockerd.log" >&2
  echo "$pid" >"$pidf"
  "$STOP" "$pidf" 20 "$pat" || true
  return 1
}

# server_version CLI HOST : the dockerd's version as the CLI sees it
server_version() { "$1" -H "$2" version --format '{{.Server.Version}}' 2>/dev/null; }
# containerd_version CTR SOCK
containerd_version() { "$1" -a "$2" version 2>/dev/null | awk '/^Server:/{s=1} s && $1 == "Version:" {print $2; exit}'; }
# pkg_version SUITE PKG : version recorded by fetch-debs.sh
pkg_version() { awk -v p="$2" '$1 == p {print $2}' "$N/$1/.fetched" 2>/dev/null; }

# stop_tasks CTR SOCK : kill and delete the containerd tasks (containers) of all namespaces, so
# their shims exit (stopping containerd leaves shims and containers running)
stop_tasks() {
  local ns id
  [ -x "$1" ] && [ -S "$2" ] || return 0
  timeout 10 "$1" -a "$2" version >/dev/null 2>&1 || return 0
  for ns in $(timeout 10 "$1" -a "$2" namespaces ls -q 2>/dev/null); do
    for id in $(timeout 10 "$1" -a "$2" -n "$ns" tasks ls -q 2>/dev/null); do
      log "killing task $ns/$id on $2"
      timeout 10 "$1" -a "$2" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
      sleep 0.5
      timeout 10 "$1" -a "$2" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  done
}

# ---------------------------------------------------------------------------------------------
if [ "$CMD" = down ]; then
  rc=0
  for name in dockerd28 dockerd26; do
    "$STOP" "$N/$name/dockerd.pid" 30 "--data-root $N/$name/data" || rc=1
  done
  for dir in "$N/dockerd28/containerd" "$N/dockerd26/containerd" "$N/containerd21" "$N/containerd17"; do
    case "$dir" in *21 | *28/containerd) s=sid ;; *) s=trixie ;; esac
    if [ -s "$dir/containerd.pid" ] && proc_alive "$(cat "$dir/containerd.pid")" "$dir/config.toml"; then
      stop_tasks "$N/$s/usr/bin/ctr" "$dir/containerd.sock"
    fi
    "$STOP" "$dir/containerd.pid" 20 "$dir/config.toml" || rc=1
  done
  # shims whose task could not be deleted: each writes shim.pid in its bundle under state/
  while read -r pf; do
    "$STOP" "$pf" 10 containerd-shim || rc=1
  done < <(find "$N" -path '*/state/io.containerd.runtime.v2.task/*' -name shim.pid 2>/dev/null)
  # leftover mounts under N (deepest first); mountinfo field 5 is the mount point
  while read -r m; do
    m="$(printf '%b' "$m")" # mountinfo escapes space etc. as \040
    log "umount $m"
    umount "$m" 2>/dev/null || umount -l "$m" || rc=1
  done < <(awk -v b="$N/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  left="$(awk -v b="$N/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo)"
  if [ -n "$left" ]; then log "mounts left under $N: $left"; rc=1; fi
  rm -f "$N/env.sh"
  log "down (rc=$rc)"
  exit "$rc"
fi

# ---------------------------------------------------------------------------------------------
# up
STRICT="${NEWER_STRICT:-0}"
trap 'rc=$?; [ "$rc" = 0 ] || log "up failed (rc=$rc); stop what it started: $0 down $BASE"' EXIT
declare -A SKIP=()
log "BASE=$BASE"
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
need_cmds runc:runc curl:curl dpkg-deb:dpkg timeout:coreutils unshare:util-linux
RUNC="$(command -v runc)"
log "runc: $RUNC ($("$RUNC" --version | head -1))"

# skip_sid COMPONENT REASON : record a sid SKIP (or die when NEWER_STRICT=1)
skip_sid() {
  if [ "$STRICT" = 1 ]; then log "ERROR (NEWER_STRICT=1): $1: $2"; exit 1; fi
  SKIP[$1]="$2"
  log "SKIP $1: $2"
}

if ! fetch_suite trixie; then log "ERROR: $FAILED_WHY"; exit 1; fi
T="$N/trixie"
S="$N/sid"
sid_missing=""
if ! fetch_suite sid; then
  sid_missing="$FAILED_PKGS "
  case "$sid_missing" in *" containerd "*)
    skip_sid CONTAINERD21 "$FAILED_WHY"
    skip_sid DOCKERD28 "needs sid containerd: $FAILED_WHY" ;;
  esac
  case "$sid_missing" in *" docker.io "*) [ -n "${SKIP[DOCKERD28]:-}" ] ||
    skip_sid DOCKERD28 "$FAILED_WHY" ;;
  esac
fi
log "engines unpacked"

if [ "${NEWER_STORAGE:-}" = vfs ]; then
  DRV26=vfs SNAP=native
  log "NEWER_STORAGE=vfs: dockerd26 uses vfs, containerds and dockerd28 the native snapshotter"
elif overlay_usable; then
  DRV26=overlay2 SNAP=overlayfs
  log "overlay mounts work under $N: dockerd26 overlay2, containerd snapshotter overlayfs"
else
  DRV26=vfs SNAP=native
  log "overlay mounts do NOT work under $N: dockerd26 falls back to vfs, snapshotter native"
fi

C17="$(start_containerd "$N/containerd17" "$T" "$SNAP")" || { log "ERROR: trixie containerd 1.7 did not start"; exit 1; }
C21=""
if [ -z "${SKIP[CONTAINERD21]:-}" ]; then
  C21="$(start_containerd "$N/containerd21" "$S" "$SNAP")" ||
    skip_sid CONTAINERD21 "sid containerd did not start (log $N/containerd21/containerd.log)"
fi

if ! D26="$(start_dockerd dockerd26 "$T" classic "$DRV26")"; then
  if [ "$DRV26" = overlay2 ]; then
    log "dockerd26 did not start with overlay2: falling back to vfs"
    "$STOP" "$N/dockerd26/containerd/containerd.pid" 20 "$N/dockerd26/containerd/config.toml" || true
    DRV26=vfs
    D26="$(start_dockerd dockerd26 "$T" classic "$DRV26")" || { log "ERROR: trixie dockerd 26 did not start"; exit 1; }
  else
    log "ERROR: trixie dockerd 26 did not start"; exit 1
  fi
fi
D28=""
if [ -z "${SKIP[DOCKERD28]:-}" ]; then
  D28="$(start_dockerd dockerd28 "$S" snapshotter "$SNAP")" ||
    skip_sid DOCKERD28 "sid dockerd did not start (log $N/dockerd28/dockerd.log)"
fi

H26="unix://$N/dockerd26/docker.sock"
H28="unix://$N/dockerd28/docker.sock"
case "$sid_missing" in
  *" docker-cli "*) CLI="$T/usr/bin/docker"; log "sid docker-cli unavailable: using trixie's docker CLI" ;;
  *) CLI="$S/usr/bin/docker" ;;
esac
V26="$(server_version "$CLI" "$H26")" || { log "ERROR: $CLI cannot talk to dockerd26 ($H26)"; exit 1; }
log "dockerd26: server $V26, driver $("$CLI" -H "$H26" info --format '{{.Driver}}')"
V28=""
if [ -n "$D28" ]; then
  V28="$(server_version "$CLI" "$H28")" || { log "ERROR: $CLI cannot talk to dockerd28 ($H28)"; exit 1; }
  log "dockerd28: server $V28, driver $("$CLI" -H "$H28" info --format '{{.Driver}}')"
  [ "${V28%%.*}" = 28 ] || log "WARNING: sid's dockerd is $V28 now (variables still say DOCKERD28)"
fi
CV17="$(containerd_version "$T/usr/bin/ctr" "$N/containerd17/containerd.sock")"
CV21=""
if [ -n "$C21" ]; then
  CV21="$(containerd_version "$S/usr/bin/ctr" "$N/containerd21/containerd.sock")"
  case "$CV21" in v2.1.* | 2.1.*) ;; *) log "WARNING: sid's containerd is $CV21 now (variables still say CONTAINERD21)" ;; esac
fi
log "containerd17: $CV17${CV21:+, containerd21: $CV21}"

{
  echo "# written by scripts/testenv/newer-engines.sh up; source it: . $N/env.sh"
  echo "# stop with: scripts/testenv/newer-engines.sh down $BASE"
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q NEWER_BASE "$N"
  q NEWER_RUNC "$RUNC"
  q NEWER_SNAPSHOTTER "$SNAP"
  q NEWER_DOCKER_CLI "$CLI"
  q NEWER_DOCKER_CLI_VERSION "$("$CLI" version --format '{{.Client.Version}}' 2>/dev/null || true)"
  q NEWER_CONTAINERD17_ADDRESS "$N/containerd17/containerd.sock"
  q NEWER_CONTAINERD17_PID "$C17"
  q NEWER_CONTAINERD17_VERSION "$CV17"
  q NEWER_CONTAINERD17_BIN "$T/usr/bin/containerd"
  q NEWER_CTR17 "$T/usr/bin/ctr"
  if [ -n "$C21" ]; then
    q NEWER_CONTAINERD21_ADDRESS "$N/containerd21/containerd.sock"
    q NEWER_CONTAINERD21_PID "$C21"
    q NEWER_CONTAINERD21_VERSION "$CV21"
    q NEWER_CONTAINERD21_BIN "$S/usr/bin/containerd"
    q NEWER_CTR21 "$S/usr/bin/ctr"
  else
    q NEWER_SKIP_CONTAINERD21 "${SKIP[CONTAINERD21]}"
  fi
  q NEWER_DOCKERD26_HOST "$H26"
  q NEWER_DOCKERD26_PID "$D26"
  q NEWER_DOCKERD26_VERSION "$V26"
  q NEWER_DOCKERD26_STORAGE_DRIVER "$DRV26"
  q NEWER_DOCKERD26_NAMESPACE newer-dockerd26
  q NEWER_DOCKERD26_CONTAINERD_ADDRESS "$N/dockerd26/containerd/containerd.sock"
  q NEWER_DOCKERD26_CONTAINERD_PID "$(cat "$N/dockerd26/containerd/containerd.pid")"
  q NEWER_DOCKERD26_BIN "$T/usr/sbin/dockerd"
  if [ -n "$D28" ]; then
    q NEWER_DOCKERD28_HOST "$H28"
    q NEWER_DOCKERD28_PID "$D28"
    q NEWER_DOCKERD28_VERSION "$V28"
    q NEWER_DOCKERD28_SNAPSHOTTER "$SNAP"
    q NEWER_DOCKERD28_NAMESPACE newer-dockerd28
    q NEWER_DOCKERD28_CONTAINERD_ADDRESS "$N/dockerd28/containerd/containerd.sock"
    q NEWER_DOCKERD28_CONTAINERD_PID "$(cat "$N/dockerd28/containerd/containerd.pid")"
    q NEWER_DOCKERD28_BIN "$S/usr/sbin/dockerd"
  else
    q NEWER_SKIP_DOCKERD28 "${SKIP[DOCKERD28]}"
  fi
} >"$N/env.sh.tmp"
mv "$N/env.sh.tmp" "$N/env.sh"
for k in "${!SKIP[@]}"; do log "SKIP $k: ${SKIP[$k]}"; done
log "done; . $N/env.sh"
echo "$N/env.sh"
