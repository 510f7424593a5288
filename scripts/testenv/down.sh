#!/usr/bin/env bash
# down.sh [--purge] [BASE]  -- stop everything up.sh started (by PID file)
#   BASE default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}. Stops the newer engines
#   (newer-engines.sh down), dockerd, its containerd, a standalone BASE/containerd if one was
#   started, and the three registries; unmounts anything still mounted under BASE.
#   Keeps images, registry data and fixtures unless --purge (rm -rf BASE). The signing tools
#   of signers.sh (BASE/signers) run only inside tests: nothing of theirs to stop.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PURGE=0
BASE=""
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    -*) echo "usage: down.sh [--purge] [BASE]" >&2; exit 2 ;;
    *) BASE="$a" ;;
  esac
done
BASE="${BASE:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
[ -d "$BASE" ] || { echo "[down] $BASE does not exist" >&2; exit 0; }
BASE="$(cd "$BASE" && pwd)"
STOP="$HERE/stop-pidfile.sh"
rc=0

"$HERE/newer-engines.sh" down "$BASE" || rc=1
"$STOP" "$BASE/dockerd/dockerd.pid" 30 "--data-root $BASE/dockerd/data" || rc=1
"$STOP" "$BASE/dockerd/containerd/containerd.pid" 20 "$BASE/dockerd/containerd/config.toml" || rc=1
"$STOP" "$BASE/containerd/containerd.pid" 20 "$BASE/containerd/config.toml" || rc=1
for d in registry-data registry-auth-data registry-tls-data; do
  "$STOP" "$BASE/$d/_ctl/registry.pid" 10 "$BASE/$d/_ctl/config.yml" || rc=1
done

# leftover mounts under BASE (deepest first); mountinfo field 5 is the mount point
while read -r m; do
  m="$(printf '%b' "$m")" # mountinfo escapes space etc. as \040
  echo "[down] umount $m" >&2
  umount "$m" 2>/dev/null || umount -l "$m" || rc=1
done < <(awk -v b="$BASE/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r)

if [ "$PURGE" = 1 ]; then
  echo "[down] removing $BASE" >&2
  rm -rf "$BASE"
fi
exit "$rc"
