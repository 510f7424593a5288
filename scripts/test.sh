#!/usr/bin/env bash
# scripts/test.sh -- the project's single test command (developers and CI).
#   Starts the loopback test environment (testenv/up.sh: installs missing packages, registries,
#   dockerd, fixtures), exports IMGCACHE_TESTENV and everything in BASE/env.sh, then runs
#     cargo fmt --all -- --check ; cargo clippy --all-targets -- -D warnings ; cargo test --workspace ;
#     scripts/soak.sh 10 (a short crash soak)
#   (all three run; the exit status is the first failing step's, 0 if all pass), and always runs
#   testenv/down.sh on exit. Needs no terminal and no stdin.
#   Env: IMGCACHE_TESTENV (state dir, default /tmp/imgcache-testenv); KEEP_TESTENV=1 skips down.sh;
#   extra arguments are passed to cargo test (e.g. scripts/test.sh -- --nocapture).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

# Make this shell a child subreaper (prctl PR_SET_CHILD_SUBREAPER, kept across exec), so the
# daemons up.sh starts are reparented to it and reaped when down.sh stops them: this machine's
# PID 1 does not reap, and would otherwise keep them as zombies.
if [ -z "${IMGCACHE_TEST_SUBREAPER:-}" ] && command -v perl >/dev/null 2>&1; then
  export IMGCACHE_TEST_SUBREAPER=1
  exec perl -e 'syscall(157, 36, 1, 0, 0, 0) == 0 or warn "prctl(PR_SET_CHILD_SUBREAPER): $!\n"; exec @ARGV or die "exec: $!\n"' \
    bash "${BASH_SOURCE[0]}" "$@"
fi

BASE="${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}"
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
export IMGCACHE_TESTENV="$BASE"
t0=$SECONDS
log() { echo "[test.sh +$((SECONDS - t0))s] $*" >&2; }

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${KEEP_TESTENV:-0}" = 1 ]; then
    log "KEEP_TESTENV=1: leaving the test environment running (stop: $HERE/testenv/down.sh $BASE)"
  else
    log "stopping the test environment"
    "$HERE/testenv/down.sh" "$BASE" </dev/null || log "down.sh failed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting the test environment in $BASE"
"$HERE/testenv/up.sh" "$BASE" </dev/null >/dev/null
# shellcheck source=/dev/null
. "$BASE/env.sh"
log "test environment up"

cd "$ROOT"
rc=0
failed=()
step() {
  local name="$1" s
  shift
  log "$name: $*"
  s=0
  "$@" </dev/null || s=$?
  if [ "$s" != 0 ]; then
    log "$name FAILED (exit $s)"
    failed+=("$name")
    if [ "$rc" = 0 ]; then rc=$s; fi
  fi
}
step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets -- -D warnings
step test cargo test --workspace "$@"
# A short crash soak: 10 SIGKILLs at random moments on the small images (the long one:
# scripts/soak.sh 50 kicbase). Uses the debug binary the tests just built.
rm -rf "$BASE/soak"
step soak env SOAK_DIR="$BASE/soak" IMGCACHE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/imgcache" bash "$HERE/soak.sh" 10

if [ "$rc" = 0 ]; then log "all steps passed"; else log "failed steps: ${failed[*]}"; fi
exit "$rc"
