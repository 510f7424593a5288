#!/usr/bin/env bash
# fetch-debs.sh SUITE DEST CACHE PKG...
#   Downloads the Debian packages PKG... of suite SUITE (trixie, sid, ...) with a PRIVATE apt
#   configuration (own sources.list, lists, cache and pinning under CACHE/.apt; the system's apt
#   sources, lists and caches are not touched; the system's apt.conf.d still applies) and unpacks
#   each with 'dpkg-deb -x' into DEST (e.g. DEST/usr/bin/ctr). Dependencies are NOT resolved and
#   no maintainer scripts run: only PKG... themselves are unpacked. Debs are kept in CACHE.
#   Per package and idempotent: a package listed in DEST/.fetched ("PKG VERSION") is skipped; a
#   package whose deb is already in CACHE is unpacked again without network. Each deb is unpacked
#   into a temporary directory first and recorded in DEST/.fetched only once copied completely.
#   On failure prints ONE line per failed package on stderr,
#     fetch-debs: SUITE: PKG: reason
#   still unpacks the packages that did download, and exits 1. apt's own output goes to
#   CACHE/.apt/apt.log. Progress lines ("[fetch-debs SUITE] ...") go to stderr; stdout: nothing.
set -euo pipefail
usage="usage: fetch-debs.sh SUITE DEST CACHE PKG..."
SUITE="${1:?$usage}"
DEST="${2:?$usage}"
CACHE="${3:?$usage}"
shift 3
(($#)) || { echo "$usage" >&2; exit 2; }
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
log() { echo "[fetch-debs $SUITE] $*" >&2; }
rc=0
FAILED=" "
failed() { echo "fetch-debs: $SUITE: $1: $2" >&2; rc=1; FAILED="$FAILED$1 "; }

mkdir -p "$DEST" "$CACHE"
DEST="$(cd -P "$DEST" && pwd)"
CACHE="$(cd -P "$CACHE" && pwd)" # physical: find(1) does not descend into a symlinked start dir
touch "$DEST/.fetched"
todo=()
for p in "$@"; do grep -q "^$p " "$DEST/.fetched" || todo+=("$p"); done
if ((${#todo[@]} == 0)); then log "already unpacked in $DEST: $(tr '\n' ' ' <"$DEST/.fetched")"; exit 0; fi
for c in apt-get dpkg-deb; do
  command -v "$c" >/dev/null || { failed "${todo[*]}" "$c not found"; exit 1; }
done

APT="$CACHE/.apt"
APTLOG="$APT/apt.log"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/preferences.d" "$APT/dl"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main" >"$APT/sources.list"
# Own sources, lists, cache and (empty) pinning. Sandbox user root: the _apt user cannot write
# into a root-only CACHE, so apt would warn about an unsandboxed download on every run.
apt_priv=(apt-get -q
  -o "Dir::Etc::sourcelist=$APT/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
  -o "Dir::Etc::preferences=$APT/preferences" -o "Dir::Etc::preferencesparts=$APT/preferences.d"
  -o APT::Sandbox::User=root)

# deb_of PKG : file name of the newest cached deb of PKG (empty if none)
deb_of() { find "$CACHE" -maxdepth 1 -name "${1}_*.deb" -printf '%f\n' | sort -V | tail -1; }

need=()
for p in "${todo[@]}"; do [ -n "$(deb_of "$p")" ] || need+=("$p"); done
if ((${#need[@]})); then
  [ -r "$KEYRING" ] || { failed "${need[*]}" "$KEYRING missing (package debian-archive-keyring)"; exit 1; }
  log "apt-get update (private lists in $APT)"
  : >"$APTLOG"
  if ! "${apt_priv[@]}" update >>"$APTLOG" 2>&1; then
    failed "${need[*]}" "apt-get update failed (see $APTLOG)"; exit 1
  fi
  # 'apt-get update' exits 0 even when an index could not be fetched: check it is there
  if ! compgen -G "$APT/lists/*_dists_${SUITE}_main_binary-*_Packages*" >/dev/null; then
    failed "${need[*]}" "no Packages index for '$SUITE' after apt-get update (see $APTLOG)"; exit 1
  fi
  for p in "${need[@]}"; do
    find "$APT/dl" -maxdepth 1 -name '*.deb' -delete
    log "apt-get download $p"
    if ! (cd "$APT/dl" && "${apt_priv[@]}" download "$p" >>"$APTLOG" 2>&1); then
      failed "$p" "apt-get download failed: $(grep -E '^E: ' "$APTLOG" | tail -1) (see $APTLOG)"; continue
    fi
    if ! compgen -G "$APT/dl/${p}_*.deb" >/dev/null; then
      failed "$p" "apt-get download produced no .deb (see $APTLOG)"; continue
    fi
    find "$CACHE" -maxdepth 1 -name "${p}_*.deb" -delete
    mv "$APT/dl/${p}"_*.deb "$CACHE/"
  done
fi

tmp="$DEST.partial.$$"
trap 'rm -rf "$tmp"' EXIT
for p in "${todo[@]}"; do
  d="$(deb_of "$p")"
  if [ -z "$d" ]; then
    case "$FAILED" in *" $p "*) ;; *) failed "$p" "no ${p}_*.deb in $CACHE" ;; esac
    continue
  fi
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! dpkg-deb -x "$CACHE/$d" "$tmp" 2>>"$APTLOG" || ! cp -a "$tmp/." "$DEST/"; then
    failed "$p" "unpacking $CACHE/$d into $DEST failed (see $APTLOG)"; continue
  fi
  printf '%s %s\n' "$p" "$(dpkg-deb -f "$CACHE/$d" Version)" >>"$DEST/.fetched"
  log "unpacked $d"
done
rm -rf "$tmp"
if [ "$rc" = 0 ]; then log "unpacked in $DEST: $(tr '\n' ' ' <"$DEST/.fetched")"; fi
exit "$rc"
