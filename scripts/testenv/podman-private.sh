#!/usr/bin/env bash
# podman-private.sh [podman args...]
#   Runs Debian's podman 4.3 (daemonless) on a private store, so tests never touch
#   /var/lib/containers or /run/libpod: root=$PODMAN_BASE/root, runroot=$PODMAN_BASE/run,
#   tmpdir=$PODMAN_BASE/tmp, no events, storage driver $PODMAN_DRIVER (vfs default).
#   Defaults: PODMAN_BASE=${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/podman, PODMAN_DRIVER=vfs.
#   Examples:
#     podman-private.sh pull --tls-verify=false 127.0.0.1:5000/busybox:v1
#     podman-private.sh load -i out.tar
#     podman-private.sh images --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}'
#   'podman run' here needs PODMAN_RUN_COMPAT=1 podman-private.sh run --rm --network=none IMAGE CMD
#   (adds --runtime runc and --ulimit nofile/nproc=1024:1024).
#   Reset the store: rm -rf "$PODMAN_BASE" (no daemon; vfs leaves no mounts after pull/load/save).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds podman:podman
BASE="${PODMAN_BASE:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/podman}"
DRV="${PODMAN_DRIVER:-vfs}"
mkdir -p "$BASE/tmp"
G=(--root "$BASE/root" --runroot "$BASE/run" --tmpdir "$BASE/tmp" --storage-driver="$DRV"
  --events-backend=none --cgroup-manager=cgroupfs)
if [ "${PODMAN_RUN_COMPAT:-0}" = 1 ]; then
  G+=(--runtime runc)
  if [ "${1:-}" = run ]; then shift; set -- run --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@"; fi
fi
exec podman "${G[@]}" "$@"
