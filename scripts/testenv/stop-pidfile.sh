#!/usr/bin/env bash
# stop-pidfile.sh PIDFILE [TIMEOUT_S] [PATTERN]
#   Sends SIGTERM to the process whose PID is in PIDFILE (only if it is alive and, when PATTERN is
#   given, its cmdline contains PATTERN, so a recycled PID is never hit), waits until it has exited
#   (a zombie left behind by a reaper-less PID 1 counts as exited), SIGKILLs it after TIMEOUT_S
#   (default 20), removes PIDFILE. Used for everything the start-*.sh scripts start.
set -euo pipefail
PF="${1:?usage: stop-pidfile.sh PIDFILE [TIMEOUT_S] [PATTERN]}"
TO="${2:-20}"
PAT="${3:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
[ -s "$PF" ] || { echo "[stop] no pidfile $PF" >&2; exit 0; }
pid="$(tr -dc '0-9' <"$PF")"
alive() { proc_alive "$pid" "$PAT"; }
if alive; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((TO * 10))); do alive || break; sleep 0.1; done
  if alive; then
    echo "[stop] pid $pid did not exit after ${TO}s, SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive || break; sleep 0.1; done
  fi
  echo "[stop] stopped pid $pid ($PF)" >&2
else
  echo "[stop] pid $pid from $PF not running" >&2
fi
rm -f "$PF"
