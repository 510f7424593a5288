#!/usr/bin/env bash
# make-newer-fixtures.sh [BASE]
#   Real `docker save` output of the newer engines (newer-engines.sh up: dockerd 26.1 with the
#   classic store, dockerd 28.x with the containerd image store) into BASE/newer-fixtures (BASE
#   default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}), listed in
#   BASE/newer-fixtures/newer-fixtures.tsv:
#     file  producer  image_ids  tags  engine
#   as in make-fixtures.sh's fixtures.tsv: image_ids comma-separated sha256:<hex> config digests
#   in the order the archive lists its images (index.json order, an index or manifest list
#   expanded to those of its children whose manifest is in the archive, an image named twice
#   listed once; dockerd 26 may order a multi-image save differently from one run to the next,
#   so compare them as sets); tags the manifest.json RepoTags as docker wrote them, sorted, "-"
#   if none (RepoTags null: saved by digest); engine "dockerd=VERSION store=classic|containerd driver=DRIVER".
#   When newer-engines.sh could not provide dockerd 28 (NEWER_SKIP_DOCKERD28=reason in
#   BASE/newer/env.sh), no dockerd 28 fixture is written and BASE/newer-fixtures/skipped.tsv
#   says so ("engine<TAB>reason" lines, always written, header only when nothing is skipped).
#
#   Needs: the plain registry $TEST_REGISTRY (default 127.0.0.1:5000) with make-test-images.sh's
#   images, and the newer engines running (BASE/newer/env.sh). Uses the docker CLI 28 of sid
#   ($NEWER_DOCKER_CLI) for both daemons.
#
#   Every image ID is computed four ways, none of them the project's Rust code, and all must
#   agree:
#     1. tar + jq: index.json -> (nested index ->) manifest -> config blob hashed with
#        sha256sum; every blob on the way must hash to its name; manifest.json's Config entries
#        must be among them;
#     2. skopeo reading the archive: inspect --config --raw oci-archive:FILE[:ref] (with the
#        platform overrides of each index child) and docker-archive:FILE:@N for every
#        manifest.json entry, hashed with sha256sum;
#     3. the engine: dockerd 26 (classic store): `docker image inspect .Id`, which is the config
#        digest there. dockerd 28 (containerd store): `.Id` is the digest of the index or
#        manifest the image record points at, not the config; the config digest is read from
#        the engine's own containerd content store (ctr content get of that index/manifest, of
#        the platform manifests whose content is present, then .config.digest, and the config
#        blob from the content store re-hashed);
#     4. the registry: skopeo inspect --config --raw docker://REG/REPO@PLATFORM_MANIFEST hashed
#        with sha256sum, for the platforms the case expects (this host's / all / one).
#
#   Engine hygiene (the daemons are shared with other tests): images are pulled by digest and
#   saved under tags of their own (repository imgcache-newer-fixtures/...). At the end (also on
#   failure) the script removes those tags and the by-digest references its pulls created, and
#   nothing else: a reference that existed before is left alone. dockerd 26 removes a
#   REPO@DIGEST reference exactly (docker rmi); dockerd 28 (containerd store) `docker rmi
#   REPO@DIGEST` also removes every tag of REPO pointing at the same digest (seen with 28.5.2:
#   it untagged a 127.0.0.1:5000/busybox:v1 another test had pulled), so on dockerd 28 the
#   created REPO@DIGEST records are removed exactly by name with ctr images rm --sync in the
#   engine's namespace. What is to be removed is written to BASE/newer-fixtures.created before
#   it is created, so a run that was killed is cleaned up by the next one.
#   Skips all work when newer-fixtures.tsv is complete and current (FORCE_FIXTURES=1 rebuilds).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
BASE="$(cd "$BASE" && pwd)"
REG="${TEST_REGISTRY:-127.0.0.1:5000}"
OUT="$BASE/newer-fixtures"
NEW="$BASE/newer-fixtures.new"
WORK="$BASE/tmp-newer-fixtures"
CREATED="$BASE/newer-fixtures.created"
FIXTURES_VERSION=1
T=imgcache-newer-fixtures # the repository prefix of every tag this script creates
t0=$SECONDS
log() { echo "[make-newer-fixtures +$((SECONDS - t0))s] $*" >&2; }
die() { echo "[make-newer-fixtures] FAIL: $*" >&2; exit 1; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds skopeo:skopeo jq:jq tar:tar flock:util-linux

[ -s "$BASE/newer/env.sh" ] || die "$BASE/newer/env.sh missing: run newer-engines.sh up $BASE first"
# the file alone says what runs (not NEWER_* variables inherited from an older env.sh)
unset "${!NEWER_@}"
# shellcheck disable=SC1091
. "$BASE/newer/env.sh"
if [ -z "${NEWER_DOCKER_CLI:-}" ] || [ -z "${NEWER_DOCKERD26_HOST:-}" ]; then
  die "$BASE/newer/env.sh has no NEWER_DOCKER_CLI / NEWER_DOCKERD26_HOST"
fi
HAVE28=1
SKIP28="${NEWER_SKIP_DOCKERD28:-}"
if [ -n "$SKIP28" ] || [ -z "${NEWER_DOCKERD28_HOST:-}" ]; then
  HAVE28=0
  SKIP28="${SKIP28:-no NEWER_DOCKERD28_HOST in $BASE/newer/env.sh}"
fi
SK=(skopeo --insecure-policy)
HOST_ARCH="$(dpkg --print-architecture)"

d26() { "$NEWER_DOCKER_CLI" -H "$NEWER_DOCKERD26_HOST" "$@"; }
d28() { "$NEWER_DOCKER_CLI" -H "$NEWER_DOCKERD28_HOST" "$@"; }
ctr28() {
  "${NEWER_CTR21:-$NEWER_BASE/sid/usr/bin/ctr}" -a "$NEWER_DOCKERD28_CONTAINERD_ADDRESS" \
    -n "$NEWER_DOCKERD28_NAMESPACE" "$@"
}
# dk 26|28 ARGS... : the docker CLI against dockerd 26 or 28
dk() {
  local e="$1"
  shift
  if [ "$e" = 26 ]; then d26 "$@"; else d28 "$@"; fi
}

# one run at a time (up.sh and a developer may start it together)
exec 9>"$BASE/.newer-fixtures.lock"
flock 9

# ---- up to date? --------------------------------------------------------------------------------
images_tsv="$BASE/images/images-$(echo "$REG" | tr ':/' '__').tsv"
[ -s "$images_tsv" ] || die "$images_tsv missing: run make-test-images.sh for $REG first"
stamp="$({
  echo "v$FIXTURES_VERSION"
  cat "$images_tsv"
  skopeo --version
  "$NEWER_DOCKER_CLI" --version
  echo "26 ${NEWER_DOCKERD26_VERSION:-} ${NEWER_DOCKERD26_STORAGE_DRIVER:-}"
  if [ "$HAVE28" = 1 ]; then echo "28 ${NEWER_DOCKERD28_VERSION:-} ${NEWER_DOCKERD28_SNAPSHOTTER:-}"; else echo "28 skipped: $SKIP28"; fi
  sha256sum <"${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-32)"
if [ "${FORCE_FIXTURES:-0}" != 1 ] && [ -s "$OUT/newer-fixtures.tsv" ] && [ -f "$OUT/skipped.tsv" ] &&
  [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  ok=1
  while IFS=$'\t' read -r f _; do [ -s "$OUT/$f" ] || ok=0; done < <(tail -n +2 "$OUT/newer-fixtures.tsv")
  if [ "$ok" = 1 ]; then log "newer fixtures up to date ($OUT)"; exit 0; fi
fi

# ---- engine hygiene -----------------------------------------------------------------------------
# CREATED lines: "26|28<TAB>tag|ref<TAB>NAME": tag = one of our tags (docker rmi), ref = a
# REPO@DIGEST reference a pull of ours created (26: docker rmi, exact there; 28: ctr images rm).
cleanup() {
  local e kind name pass
  [ -s "$CREATED" ] || return 0
  # tags first: dockerd deletes what nothing else references (containerd store: GC'd now)
  for pass in tag ref; do
    while IFS=$'\t' read -r e kind name; do
      [ "$kind" = "$pass" ] || continue
      [ "$e" = 26 ] || [ "$HAVE28" = 1 ] || continue
      if [ "$e" = 28 ] && [ "$kind" = ref ]; then
        if ctr28 images ls -q | grep -Fx -- "$name" >/dev/null; then
          ctr28 images rm --sync "$name" >/dev/null || log "WARNING: ctr images rm $name failed"
        fi
      elif dk "$e" image inspect "$name" >/dev/null 2>&1; then
        dk "$e" rmi "$name" >/dev/null || log "WARNING: dockerd $e: docker rmi $name failed"
      fi
    done <"$CREATED"
  done
  rm -f "$CREATED"
}
# created 26|28 tag|ref NAME : note NAME for removal (before creating it)
created() { printf '%s\t%s\t%s\n' "$@" >>"$CREATED"; }
# exists28 NAME : dockerd 28 has an image record of exactly this name
exists28() { ctr28 images ls -q | grep -Fx -- "$1" >/dev/null; }
# pull_digest 26|28 REPO@DIGEST [--platform P] : pull, noting the reference for removal unless it
# existed before (26: the reference store resolves REPO@DIGEST exactly; 28: the record name)
pull_digest() {
  local e="$1" ref="$2" pre=1
  shift 2
  if [ "$e" = 26 ]; then
    d26 image inspect "$ref" >/dev/null 2>&1 || pre=0
  else
    exists28 "$ref" || pre=0
  fi
  if [ "$pre" = 0 ] && ! grep -F "$(printf '%s\tref\t%s' "$e" "$ref")" "$CREATED" >/dev/null 2>&1; then
    created "$e" ref "$ref"
  fi
  dk "$e" pull -q "$@" "$ref" >/dev/null
}
# tag 26|28 SRC TAG
tag() {
  created "$1" tag "$3"
  dk "$1" tag "$2" "$3"
}
# leftovers of a run that was killed before its cleanup: CREATED, and any of our tags
cleanup
for e in 26 28; do
  [ "$e" = 26 ] || [ "$HAVE28" = 1 ] || continue
  while read -r name; do
    log "dockerd $e: removing leftover $name"
    dk "$e" rmi "$name" >/dev/null
  done < <(dk "$e" image ls --format '{{.Repository}}:{{.Tag}}' | grep "^$T/" || true)
done
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$NEW" "$WORK"
mkdir -p "$NEW" "$WORK"
cd "$NEW"

# ---- the registry's images ------------------------------------------------------------------------
# raw_digest REPO:TAG : digest of the manifest or index the registry serves
raw_digest() {
  echo "sha256:$("${SK[@]}" inspect --raw --tls-verify=false "docker://$REG/$1" | sha256sum | cut -d' ' -f1)"
}
BUSYBOX="$REG/busybox@$(raw_digest busybox:v1)"
MULTI="$REG/multiarch@$(raw_digest multiarch:v1)"
MLIST="$REG/multiarch@$(raw_digest multiarch:v1-list)"
# the platform of multiarch that is not this host's (linux/arm64/v8 on amd64)
OTHER="$("${SK[@]}" inspect --raw --tls-verify=false "docker://$MULTI" |
  jq -r --arg a "$HOST_ARCH" '[.manifests[].platform | select(.architecture != $a)
    | "\(.os)/\(.architecture)\(if .variant then "/" + .variant else "" end)"][0] // empty')"
[ -n "$OTHER" ] || die "$MULTI has no platform other than linux/$HOST_ARCH"

# registry_ids REPO@DIGEST host|all|OS/ARCH[/VARIANT] : config digests of the registry's platform
# manifests that match, each the sha256 of the config bytes skopeo fetches, one per line
registry_ids() {
  local ref="$1" want="$2" raw repo="${1%@*}" d p
  raw="$("${SK[@]}" inspect --raw --tls-verify=false "docker://$ref")"
  if jq -e .manifests >/dev/null <<<"$raw"; then
    while IFS=$'\t' read -r d p; do
      case "$want" in
        all) ;;
        host) [[ "$p" == "linux/$HOST_ARCH" || "$p" == "linux/$HOST_ARCH/"* ]] || continue ;;
        *) [ "$p" = "$want" ] || continue ;;
      esac
      echo "sha256:$("${SK[@]}" inspect --config --raw --tls-verify=false "docker://$repo@$d" | sha256sum | cut -d' ' -f1)"
    done < <(jq -r '.manifests[] | "\(.digest)\t\(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/" + .platform.variant else "" end)"' <<<"$raw")
  else
    echo "sha256:$("${SK[@]}" inspect --config --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)"
  fi
}

# ---- what the engines hold ------------------------------------------------------------------------
# engine_ids 26|28 REF [OS/ARCH[/VARIANT]] : the config digests the engine holds for REF, one per
# line (see the header: 26 .Id; 28 from its content store, platforms whose content is present)
CONTENT28=""
content_present() { grep -Fx -- "$1" <<<"$CONTENT28" >/dev/null; }
engine_ids() {
  local e="$1" ref="$2" want="${3:-}" top doc d p cfg l ok
  if [ "$e" = 26 ]; then
    d26 image inspect -f '{{.Id}}' "$ref"
    return
  fi
  top="$(d28 image inspect -f '{{.Id}}' "$ref")"
  CONTENT28="$(ctr28 content ls -q)"
  [ "sha256:$(ctr28 content get "$top" | sha256sum | cut -d' ' -f1)" = "$top" ] ||
    die "dockerd 28 content store: $top ($ref) does not hash to its digest"
  doc="$(ctr28 content get "$top")"
  local mans=()
  if jq -e .manifests >/dev/null <<<"$doc"; then
    while IFS=$'\t' read -r d p; do
      if [ -n "$want" ] && [ "$p" != "$want" ]; then continue; fi
      mans+=("$d")
    done < <(jq -r '.manifests[] | "\(.digest)\t\(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/" + .platform.variant else "" end)"' <<<"$doc")
  else
    mans=("$top")
  fi
  for d in "${mans[@]}"; do
    content_present "$d" || continue
    doc="$(ctr28 content get "$d")"
    cfg="$(jq -r .config.digest <<<"$doc")"
    ok=1
    content_present "$cfg" || ok=0
    for l in $(jq -r '.layers[].digest' <<<"$doc"); do content_present "$l" || ok=0; done
    [ "$ok" = 1 ] || continue
    [ "sha256:$(ctr28 content get "$cfg" | sha256sum | cut -d' ' -f1)" = "$cfg" ] ||
      die "dockerd 28 content store: config $cfg of $ref does not hash to its digest"
    echo "$cfg"
  done
}

# ---- archive readers ------------------------------------------------------------------------------
# blob FILE MEMBER DIGEST : print the archive member, failing unless its sha256 is DIGEST
blob() {
  local got
  got="sha256:$(tar -xOf "$1" "$2" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$3" ] || die "$1: $2 hashes to $got, expected $3"
  tar -xOf "$1" "$2"
}
plat_jq='"\(.platform.os // "-")/\(.platform.architecture // "-")\(if .platform.variant then "/" + .platform.variant else "" end)"'
# images_tar FILE -> lines "ID<TAB>SKOPEO_SELECTOR<TAB>PLATFORM" (PLATFORM "-" for a top-level
#   manifest), index.json order, an index expanded to the children whose manifest is present;
#   the number of those that are not goes to $WORK/absent (this runs in a command substitution).
images_tar() {
  local f="$1" names idx top m mt d ref sel man child plat cm cfg seen=" " absent=0
  names="$(tar -tf "$f")"
  idx="$(tar -xOf "$f" index.json)"
  top="$(jq '.manifests | length' <<<"$idx")"
  for ((m = 0; m < top; m++)); do
    mt="$(jq -r ".manifests[$m].mediaType" <<<"$idx")"
    d="$(jq -r ".manifests[$m].digest" <<<"$idx")"
    ref="$(jq -r ".manifests[$m].annotations[\"org.opencontainers.image.ref.name\"] // empty" <<<"$idx")"
    sel=""
    if ((top > 1)); then
      [ -n "$ref" ] || die "$f: several index.json entries and #$m has no ref name; skopeo cannot select it"
      sel=":$ref"
    fi
    man="$(blob "$f" "blobs/sha256/${d#sha256:}" "$d")"
    if [[ "$mt" == *index* || "$mt" == *manifest.list* ]] || jq -e .manifests >/dev/null <<<"$man"; then
      while IFS=$'\t' read -r child plat; do
        if ! grep -Fx "blobs/sha256/${child#sha256:}" <<<"$names" >/dev/null; then
          absent=$((absent + 1))
          continue
        fi
        cm="$(blob "$f" "blobs/sha256/${child#sha256:}" "$child")"
        cfg="$(jq -r .config.digest <<<"$cm")"
        blob "$f" "blobs/sha256/${cfg#sha256:}" "$cfg" >/dev/null
        case "$seen" in *" $child "*) continue ;; esac
        seen="$seen$child "
        printf '%s\t%s\t%s\n' "$cfg" "${sel:--}" "$plat"
      done < <(jq -r ".manifests[] | \"\(.digest)\t\" + $plat_jq" <<<"$man")
    else
      cfg="$(jq -r .config.digest <<<"$man")"
      blob "$f" "blobs/sha256/${cfg#sha256:}" "$cfg" >/dev/null
      case "$seen" in *" $d "*) continue ;; esac
      seen="$seen$d "
      printf '%s\t%s\t-\n' "$cfg" "${sel:--}"
    fi
  done
  echo "$absent" >"$WORK/absent"
}
# tags_tar FILE : manifest.json's RepoTags, sorted (dockerd 26 writes manifest.json's entries in
# no fixed order: the same save gave busybox first in one run, multiarch first in the next)
tags_tar() {
  local t
  t="$(tar -xOf "$1" manifest.json | jq -r '[.[] | (.RepoTags // [])[]] | sort | unique | join(",")')"
  echo "${t:--}"
}
# skopeo_oci FILE SELECTOR PLATFORM : config digest skopeo reads through oci-archive: (fails,
# printing skopeo's message, when skopeo cannot select the entry: skopeo 1.9 finds an index.json
# entry by its ref name only when its mediaType is an OCI one, not a Docker v2 manifest's)
skopeo_oci() {
  local sel="$2" ov=() os arch var
  [ "$sel" != - ] || sel=""
  if [ "$3" != - ]; then
    IFS=/ read -r os arch var <<<"$3"
    ov=(--override-os "$os" --override-arch "$arch")
    [ -z "$var" ] || ov+=(--override-variant "$var")
  fi
  if ! "${SK[@]}" "${ov[@]}" inspect --config --raw "oci-archive:$1$sel" >"$WORK/skopeo-config" 2>"$WORK/skopeo-err"; then
    log "skopeo ${ov[*]} inspect --config --raw oci-archive:$1$sel: $(tail -1 "$WORK/skopeo-err")"
    return 1
  fi
  echo "sha256:$(sha256sum <"$WORK/skopeo-config" | cut -d' ' -f1)"
}
sorted() { tr ' ,' '\n' <<<"$1" | sed '/^$/d' | sort -u; }

# ---- record ---------------------------------------------------------------------------------------
ROWS=()
# record FILE ENGINE(26|28) SAVED_TAGS(,-sep or -) PLATFORMS ABSENT ITEM...
#   PLATFORMS host|all|OS/ARCH[/VARIANT]: which platforms of the registry images the archive must
#   hold; ABSENT: how many index children must be missing from the archive; ITEM "REF|REPO@DIGEST":
#   an engine reference saved and the registry image it was pulled from.
record() {
  local file="$1" e="$2" want_tags="$3" plats="$4" absent="$5"
  shift 5
  local f="$NEW/$file" lines ids="" id sel plat got covered=" " mj n i cfg eng="" reg="" item eref rref tags engine
  lines="$(images_tar "$f")"
  [ -n "$lines" ] || die "$file: no image found"
  [ "$(cat "$WORK/absent")" = "$absent" ] ||
    die "$file: $(cat "$WORK/absent") platform manifests of an index are missing from the archive, expected $absent"
  while IFS=$'\t' read -r id sel plat; do
    [[ "$id" =~ ^sha256:[0-9a-f]{64}$ ]] || die "$file: bad id '$id'"
    ids="${ids:+$ids,}$id"
    if got="$(skopeo_oci "$f" "$sel" "$plat")"; then
      [ "$got" = "$id" ] || die "$file: skopeo oci-archive$sel ($plat) says $got, tar+jq says $id"
      covered="$covered$id "
    fi
  done <<<"$lines"
  # manifest.json (the docker-archive half of the combined layout)
  mj="$(tar -xOf "$f" manifest.json)"
  n="$(jq length <<<"$mj")"
  for ((i = 0; i < n; i++)); do
    cfg="$(jq -r ".[$i].Config" <<<"$mj")"
    [[ "$cfg" =~ ^blobs/sha256/([0-9a-f]{64})$ ]] || die "$file: manifest.json #$i Config is '$cfg'"
    id="sha256:$(tar -xOf "$f" "$cfg" | sha256sum | cut -d' ' -f1)"
    [ "$id" = "sha256:${BASH_REMATCH[1]}" ] || die "$file: $cfg hashes to $id"
    grep -Fx "$id" < <(sorted "$ids") >/dev/null || die "$file: manifest.json #$i ($id) is not in index.json's images $ids"
    [ "$("${SK[@]}" inspect --config --raw "docker-archive:$f:@$i" | sha256sum | cut -d' ' -f1)" = "${id#sha256:}" ] ||
      die "$file: skopeo docker-archive:@$i does not give $id"
    covered="$covered$id "
  done
  for id in $(sorted "$ids"); do
    case "$covered" in *" $id "*) ;; *) die "$file: no skopeo reading confirms $id" ;; esac
  done
  tags="$(tags_tar "$f")"
  [ "$tags" = "$want_tags" ] || die "$file: RepoTags are '$tags', expected '$want_tags'"
  for item in "$@"; do
    eref="${item%%|*}"
    rref="${item#*|}"
    case "$plats" in
      host | all) eng="$eng $(engine_ids "$e" "$eref" | tr '\n' ' ')" ;;
      *) eng="$eng $(engine_ids "$e" "$eref" "$plats" | tr '\n' ' ')" ;;
    esac
    reg="$reg $(registry_ids "$rref" "$plats" | tr '\n' ' ')"
  done
  [ "$(sorted "$eng")" = "$(sorted "$ids")" ] ||
    die "$file: dockerd $e holds $(sorted "$eng" | tr '\n' ' ')for $*, the archive has $ids"
  [ "$(sorted "$reg")" = "$(sorted "$ids")" ] ||
    die "$file: the registry's configs ($plats) are $(sorted "$reg" | tr '\n' ' ')but the archive has $ids"
  if [ "$e" = 26 ]; then
    engine="dockerd=$(d26 version -f '{{.Server.Version}}') store=classic driver=$(d26 info -f '{{.Driver}}')"
  else
    engine="dockerd=$(d28 version -f '{{.Server.Version}}') store=containerd driver=$(d28 info -f '{{.Driver}}')"
  fi
  log "$file: $ids (tar+jq, skopeo oci-archive/docker-archive, dockerd $e and the registry agree)"
  ROWS+=("$(printf '%s\t%s\t%s\t%s\t%s' "$file" "${file%.tar}" "$ids" "$tags" "$engine")")
}

# ---- dockerd 26, classic store: uncompressed layers ----------------------------------------------------
log "dockerd 26 ($NEWER_DOCKERD26_HOST): pull by digest, tag, save"
pull_digest 26 "$BUSYBOX"
pull_digest 26 "$MULTI" # the classic store keeps this host's platform only
tag 26 "$BUSYBOX" "$T/busybox:d26-tag"
tag 26 "$BUSYBOX" "$T/busybox:d26-multi-a"
tag 26 "$BUSYBOX" "$T/busybox:d26-multi-b"
tag 26 "$MULTI" "$T/multiarch:d26-multi-c"
d26 save -o "$NEW/dockerd26-save-tag.tar" "$T/busybox:d26-tag"
d26 save -o "$NEW/dockerd26-save-digest.tar" "$BUSYBOX" # RepoTags: null
# several images, one of them under two tags
d26 save -o "$NEW/dockerd26-save-multi.tar" "$T/busybox:d26-multi-a" "$T/busybox:d26-multi-b" "$T/multiarch:d26-multi-c"

record dockerd26-save-tag.tar 26 "$T/busybox:d26-tag" host 0 "$T/busybox:d26-tag|$BUSYBOX"
record dockerd26-save-digest.tar 26 - host 0 "$BUSYBOX|$BUSYBOX"
record dockerd26-save-multi.tar 26 "$T/busybox:d26-multi-a,$T/busybox:d26-multi-b,$T/multiarch:d26-multi-c" host 0 \
  "$T/busybox:d26-multi-a|$BUSYBOX" "$T/multiarch:d26-multi-c|$MULTI"

# ---- dockerd 28, containerd store: layers as pulled (gzip), index.json -> index ----------------------
if [ "$HAVE28" = 1 ]; then
  log "dockerd 28 ($NEWER_DOCKERD28_HOST): pull by digest, tag, save"
  pull_digest 28 "$BUSYBOX"
  tag 28 "$BUSYBOX" "$T/busybox:d28-tag"
  d28 save -o "$NEW/dockerd28-save-tag.tar" "$T/busybox:d28-tag"
  d28 save -o "$NEW/dockerd28-save-digest.tar" "$BUSYBOX" # RepoTags: null
  record dockerd28-save-tag.tar 28 "$T/busybox:d28-tag" host 0 "$T/busybox:d28-tag|$BUSYBOX"
  record dockerd28-save-digest.tar 28 - host 0 "$BUSYBOX|$BUSYBOX"

  # the usual case: a plain pull of a multi-platform image fetches this host's platform only;
  # docker save writes the whole index, of which only this platform's manifest is in the file
  pull_digest 28 "$MULTI"
  tag 28 "$MULTI" "$T/multiarch:d28-host-only"
  d28 save -o "$NEW/dockerd28-save-index-host-only.tar" "$T/multiarch:d28-host-only"
  record dockerd28-save-index-host-only.tar 28 "$T/multiarch:d28-host-only" host 1 "$T/multiarch:d28-host-only|$MULTI"
  # the same with a Docker manifest list (multiarch:v1-list)
  pull_digest 28 "$MLIST"
  tag 28 "$MLIST" "$T/multiarch-list:d28-host-only"
  d28 save -o "$NEW/dockerd28-save-list-host-only.tar" "$T/multiarch-list:d28-host-only"
  record dockerd28-save-list-host-only.tar 28 "$T/multiarch-list:d28-host-only" host 1 "$T/multiarch-list:d28-host-only|$MLIST"

  # several platforms present: docker 28 has no `pull --all-platforms`; `pull --platform` of the
  # other platform adds its content to the same image (ls --tree then lists both)
  pull_digest 28 "$MULTI" --platform "$OTHER"
  tag 28 "$MULTI" "$T/multiarch:d28-all"
  d28 save -o "$NEW/dockerd28-save-index-all.tar" "$T/multiarch:d28-all"
  record dockerd28-save-index-all.tar 28 "$T/multiarch:d28-all" all 0 "$T/multiarch:d28-all|$MULTI"
  # docker save --platform (API 1.48): index.json points at that platform's manifest directly
  d28 save --platform "$OTHER" -o "$NEW/dockerd28-save-platform-other.tar" "$T/multiarch:d28-all"
  record dockerd28-save-platform-other.tar 28 "$T/multiarch:d28-all" "$OTHER" 0 "$T/multiarch:d28-all|$MULTI"

  # several images: a single-platform one and the two-platform index
  tag 28 "$BUSYBOX" "$T/busybox:d28-multi-a"
  tag 28 "$MULTI" "$T/multiarch:d28-multi-b"
  d28 save -o "$NEW/dockerd28-save-multi.tar" "$T/busybox:d28-multi-a" "$T/multiarch:d28-multi-b"
  record dockerd28-save-multi.tar 28 "$T/busybox:d28-multi-a,$T/multiarch:d28-multi-b" all 0 \
    "$T/busybox:d28-multi-a|$BUSYBOX" "$T/multiarch:d28-multi-b|$MULTI"
else
  log "SKIP dockerd 28 fixtures: $SKIP28"
fi

# ---- write ----------------------------------------------------------------------------------------
{
  printf 'file\tproducer\timage_ids\ttags\tengine\n'
  printf '%s\n' "${ROWS[@]}"
} >"$NEW/newer-fixtures.tsv"
{
  printf 'engine\treason\n'
  if [ "$HAVE28" = 0 ]; then printf 'dockerd28\t%s\n' "$SKIP28"; fi
} >"$NEW/skipped.tsv"
chmod 0644 "$NEW"/*.tar
echo "$stamp" >"$NEW/.stamp"
cd "$BASE"
rm -rf "$OUT" "$WORK"
mv "$NEW" "$OUT"
log "wrote $OUT/newer-fixtures.tsv (${#ROWS[@]} fixtures)"
