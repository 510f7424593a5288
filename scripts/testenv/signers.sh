#!/usr/bin/env bash
# signers.sh [BASE]
#   The image signing tools users run, for the signature tests: cosign 2.5 of Debian trixie
#   and cosign 3.1 + notation 1.3 of sid, unpacked from their debs (fetch-debs.sh: private apt
#   configuration, the system's apt sources are not touched) into G=BASE/signers (BASE default
#   ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}):
#     G/trixie/usr/bin/cosign   cosign 2.5  (debs cached in G/debs/trixie)
#     G/sid/usr/bin/cosign      cosign 3.1  (debs cached in G/debs/sid)
#     G/sid/usr/bin/notation    notation 1.3
#   Each binary must run here ('cosign version', 'notation version'; HOME=G/home, so nothing
#   lands in the caller's HOME). Nothing is started: nothing to stop (down.sh leaves G alone).
#   For cosign 3 also, made offline by cosign 3 itself:
#     G/cosign3-signing-config.json  'signing-config create --no-default-{fulcio,oidc,rekor,tsa}':
#                                    no service to upload to (cosign 3 'sign' otherwise fetches
#                                    the signing config from Sigstore's TUF repository)
#     G/cosign3-trusted-root.json    'trusted-root create --no-default-{ctfe,fulcio,rekor,tsa}':
#                                    an empty trusted root; with it 'sign'/'verify' do not try
#                                    TUF at all (no network, no HOME/.sigstore)
#   Writes G/env.sh, export lines: TEST_COSIGN2, TEST_COSIGN3, TEST_NOTATION (paths), their
#   Debian package versions TEST_COSIGN2_VERSION, ... ('cosign version' says "devel"),
#   TEST_COSIGN3_SIGNING_CONFIG, TEST_COSIGN3_TRUSTED_ROOT, and TEST_SIGNERS_SKIP="component:
#   reason; ..." (components cosign3, notation) when a sid tool could not be fetched or does
#   not run: that tool's exports are then absent and a "SKIP" line goes to stderr (exit 0),
#   unless SIGNERS_STRICT=1 (then exit 1). Trixie's cosign failing is an error (exit 1).
#   Idempotent and quick once fetched (no network then). Progress goes to stderr; stdout gets
#   only the env.sh path.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
mkdir -p "$BASE/signers"
BASE="$(cd "$BASE" && pwd)"
G="$BASE/signers"
STRICT="${SIGNERS_STRICT:-0}"
t0=$SECONDS
log() { echo "[signers +$((SECONDS - t0))s] $*" >&2; }
SKIPS=""

# one_line TEXT : TEXT on one line without ';' (TEST_SIGNERS_SKIP separates its entries by '; ')
one_line() { printf '%s' "$1" | tr '\n\t;' '  ,' | tr -d '\r' | cut -c1-300; }

# skip_sid COMPONENT REASON : record a sid SKIP (or die when SIGNERS_STRICT=1)
skip_sid() {
  if [ "$STRICT" = 1 ]; then log "ERROR (SIGNERS_STRICT=1): $1: $2"; exit 1; fi
  SKIPS="${SKIPS:+$SKIPS; }$1: $(one_line "$2")"
  log "SKIP $1: $2"
}

# fetch SUITE PKG... : unpack the PKGs of SUITE into G/SUITE. Sets WHY[PKG] to the failure line
# of each package that fetch-debs.sh could not unpack.
declare -A WHY=()
fetch() {
  local s="$1" flog="$G/debs/$1.fetch.log" rc=0 line p ps
  shift
  mkdir -p "$G/debs"
  "$HERE/fetch-debs.sh" "$s" "$G/$s" "$G/debs/$s" "$@" 2>&1 | tee "$flog" >&2 || rc=$?
  while read -r line; do
    ps="${line#fetch-debs: "$s": }"
    for p in ${ps%%: *}; do WHY[$s/$p]="${line#fetch-debs: }"; done # "PKG PKG: why" too
  done < <(grep '^fetch-debs: ' "$flog" || true)
  if [ "$rc" != 0 ]; then
    for p in "$@"; do
      grep -q "^$p " "$G/$s/.fetched" 2>/dev/null ||
        : "${WHY[$s/$p]:=$s: $p: fetch-debs.sh exited $rc (see $flog)}"
    done
  fi
}

# runs SUITE PKG BIN : does G/SUITE/usr/bin/BIN run ('BIN version')? Otherwise sets WHY[SUITE/PKG]
# and forgets the package in G/SUITE/.fetched, so that the next run unpacks it again.
runs() {
  local s="$1" p="$2" b="$G/$1/usr/bin/$3" out rc=0
  [ -z "${WHY[$s/$p]:-}" ] || return 1
  out="$(HOME="$G/home" "$b" version 2>&1)" || rc=$?
  if [ "$rc" != 0 ]; then
    WHY[$s/$p]="$s: $p: '$b version' does not run here (exit $rc): $(echo "$out" | grep -v '^\s*$' | head -1)"
    sed -i "/^$p /d" "$G/$s/.fetched"
    return 1
  fi
}

# pkg_version SUITE PKG : version recorded by fetch-debs.sh
pkg_version() { awk -v p="$2" '$1 == p {print $2}' "$G/$1/.fetched" 2>/dev/null; }

# major_is SUITE PKG MAJOR : warn when the suite has moved on to another major version
major_is() {
  local v
  v="$(pkg_version "$1" "$2")"
  v="${v#*:}"
  [ "${v%%.*}" = "$3" ] || log "WARNING: $1's $2 is $v now (variables still say ${2^^}$3)"
}

log "BASE=$BASE"
mkdir -p "$G/home"

fetch trixie cosign
if ! runs trixie cosign cosign; then
  log "ERROR: ${WHY[trixie/cosign]}"
  exit 1
fi
C2="$G/trixie/usr/bin/cosign"
major_is trixie cosign 2
log "cosign $(pkg_version trixie cosign) (trixie) runs: $C2"

fetch sid cosign notation
C3=""
if runs sid cosign cosign; then
  C3="$G/sid/usr/bin/cosign"
  major_is sid cosign 3
  log "cosign $(pkg_version sid cosign) (sid) runs: $C3"
else
  skip_sid cosign3 "${WHY[sid/cosign]}"
fi
NOTATION=""
if runs sid notation notation; then
  NOTATION="$G/sid/usr/bin/notation"
  major_is sid notation 1
  log "notation $(pkg_version sid notation) (sid) runs: $NOTATION"
else
  skip_sid notation "${WHY[sid/notation]}"
fi

# cosign3_make KIND FILE FLAGS... : 'cosign KIND create FLAGS --out FILE' by cosign 3 (written
# next to FILE first, then renamed)
cosign3_make() {
  local kind="$1" f="$2" out
  shift 2
  rm -f "$f.tmp"
  if out="$(HOME="$G/home" "$C3" "$kind" create "$@" --out "$f.tmp" 2>&1)" && [ -s "$f.tmp" ]; then
    mv "$f.tmp" "$f"
    return 0
  fi
  rm -f "$f.tmp"
  skip_sid cosign3 "cosign $kind create failed: $(echo "$out" | grep -v '^\s*$' | tail -1)"
  C3=""
  return 1
}
SC3="$G/cosign3-signing-config.json"
TR3="$G/cosign3-trusted-root.json"
if [ -n "$C3" ] &&
  cosign3_make signing-config "$SC3" --no-default-fulcio --no-default-oidc --no-default-rekor --no-default-tsa &&
  cosign3_make trusted-root "$TR3" --no-default-ctfe --no-default-fulcio --no-default-rekor --no-default-tsa; then
  log "cosign 3 signing config $SC3, trusted root $TR3"
fi

{
  echo "# written by scripts/testenv/signers.sh; source it: . $G/env.sh"
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q TEST_SIGNERS_BASE "$G"
  q TEST_COSIGN2 "$C2"
  q TEST_COSIGN2_VERSION "$(pkg_version trixie cosign)"
  if [ -n "$C3" ]; then
    q TEST_COSIGN3 "$C3"
    q TEST_COSIGN3_VERSION "$(pkg_version sid cosign)"
    q TEST_COSIGN3_SIGNING_CONFIG "$SC3"
    q TEST_COSIGN3_TRUSTED_ROOT "$TR3"
  fi
  if [ -n "$NOTATION" ]; then
    q TEST_NOTATION "$NOTATION"
    q TEST_NOTATION_VERSION "$(pkg_version sid notation)"
  fi
  if [ -n "$SKIPS" ]; then q TEST_SIGNERS_SKIP "$SKIPS"; fi
} >"$G/env.sh.tmp"
mv "$G/env.sh.tmp" "$G/env.sh"
[ -z "$SKIPS" ] || log "SKIP: $SKIPS"
log "done; . $G/env.sh"
echo "$G/env.sh"
