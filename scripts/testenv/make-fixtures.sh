#!/usr/bin/env bash
# make-fixtures.sh [BASE]
#   Produces real image tarballs with real tools into BASE/fixtures (BASE default
#   ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}) and writes BASE/fixtures/fixtures.tsv:
#     file  producer  image_ids  tags
#   image_ids: comma-separated sha256:<hex> of the config blobs, in the order the archive lists
#   its images (docker-archive: manifest.json order; oci-archive: index.json order, an index
#   entry expanded to its children in order). tags: RepoTags (docker-archive) or
#   org.opencontainers.image.ref.name annotations (oci-archive), comma-separated, "-" if none.
#   Needs (up.sh starts them): the plain registry $TEST_REGISTRY (default 127.0.0.1:5000) holding
#   make-test-images.sh's images, and the private dockerd at BASE/dockerd/docker.sock.
#   podman runs on the private store BASE/podman.
#   Every ID is computed three ways, none of them the project's Rust code, and must agree:
#     1. tar + jq: the config entry's bytes hashed with sha256sum (and the blob names checked);
#     2. skopeo inspect --config --raw docker-archive:FILE:@N / oci-archive:FILE[:ref];
#     3. an engine reading the file: podman load into a scratch store (docker load for .tar.gz);
#   and is compared with what the producer itself reports (docker/podman inspect, registry
#   manifest): equal where FORMATS says the bytes are kept, logged where the tool re-serializes
#   the config (skopeo/podman writing oci-archive from a Docker v2s2 image).
#   Skips all work when fixtures.tsv is current (FORCE_FIXTURES=1 rebuilds).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
BASE="$(cd "$BASE" && pwd)"
REG="${TEST_REGISTRY:-127.0.0.1:5000}"
OUT="$BASE/fixtures"
NEW="$BASE/fixtures.new"
VERIFY="$BASE/tmp/verify-podman"
FIXTURES_VERSION=1
log() { echo "[make-fixtures] $*" >&2; }
die() { echo "[make-fixtures] FAIL: $*" >&2; exit 1; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds skopeo:skopeo podman:podman dockerd:docker.io jq:jq gzip:gzip tar:tar

export DOCKER_HOST="unix://$BASE/dockerd/docker.sock"
SK=(skopeo --insecure-policy)
POD=(env PODMAN_BASE="$BASE/podman" "$HERE/podman-private.sh")
SCRATCH=(env PODMAN_BASE="$VERIFY" "$HERE/podman-private.sh")

# ---- up to date? --------------------------------------------------------------------------------
images_tsv="$BASE/images/images-$(echo "$REG" | tr ':/' '__').tsv"
[ -s "$images_tsv" ] || die "$images_tsv missing: run make-test-images.sh for $REG first"
stamp="$({
  echo "v$FIXTURES_VERSION"
  cat "$images_tsv"
  skopeo --version
  podman --version
  dockerd --version
  sha256sum <"${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-32)"
if [ "${FORCE_FIXTURES:-0}" != 1 ] && [ -s "$OUT/fixtures.tsv" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  ok=1
  while IFS=$'\t' read -r f _; do [ -s "$OUT/$f" ] || ok=0; done < <(tail -n +2 "$OUT/fixtures.tsv")
  if [ "$ok" = 1 ]; then log "fixtures up to date ($OUT)"; exit 0; fi
fi

rm -rf "$NEW"
mkdir -p "$NEW" "$BASE/tmp"
cd "$NEW"

# ---- produce --------------------------------------------------------------------------------------
log "skopeo copy from $REG"
src=(--src-tls-verify=false)
"${SK[@]}" copy -q "${src[@]}" "docker://$REG/busybox:v1" "docker-archive:$NEW/skopeo-docker-archive.tar:$REG/busybox:v1" >&2
"${SK[@]}" copy -q "${src[@]}" "docker://$REG/busybox:v1" "oci-archive:$NEW/skopeo-oci-archive.tar:busybox:v1" >&2
"${SK[@]}" copy -q "${src[@]}" "docker://$REG/busybox:v1-oci" "oci-archive:$NEW/skopeo-oci-archive-from-oci.tar:busybox:v1-oci" >&2
# skopeo 1.9 writes a whole OCI index (all platforms) into an oci-archive with --all
"${SK[@]}" copy -q --all "${src[@]}" "docker://$REG/multiarch:v1" "oci-archive:$NEW/skopeo-oci-archive-index.tar:multiarch:v1" >&2

log "podman pull + save (store $BASE/podman)"
"${POD[@]}" pull -q --tls-verify=false "$REG/busybox:v1" "$REG/multiarch:v1" >/dev/null
"${POD[@]}" save -q --format docker-archive -o "$NEW/podman-docker-archive.tar" "$REG/busybox:v1"
"${POD[@]}" save -q --format oci-archive -o "$NEW/podman-oci-archive.tar" "$REG/busybox:v1"
# podman 4.3: -m/--multi-image-archive (docker-archive only)
"${POD[@]}" save -q -m --format docker-archive -o "$NEW/podman-docker-archive-multi.tar" "$REG/busybox:v1" "$REG/multiarch:v1"

log "docker pull + save ($DOCKER_HOST)"
docker_cli pull -q "$REG/busybox:v1" >/dev/null
docker_cli pull -q "$REG/multiarch:v1" >/dev/null
by_digest="$(docker_cli image inspect -f '{{index .RepoDigests 0}}' "$REG/busybox:v1")"
[[ "$by_digest" == "$REG/busybox@sha256:"* ]] || die "unexpected RepoDigests[0] '$by_digest'"
docker_cli save -o "$NEW/docker-save-tag.tar" "$REG/busybox:v1"
docker_cli save -o "$NEW/docker-save-digest.tar" "$by_digest" # RepoTags: null
docker_cli save -o "$NEW/docker-save-multi.tar" "$REG/busybox:v1" "$REG/multiarch:v1"
gzip -n -c "$NEW/docker-save-tag.tar" >"$NEW/docker-save-tag.tar.gz"

# ---- independent readers --------------------------------------------------------------------------
# blob FILE MEMBER DIGEST : print the archive member, failing unless its sha256 is DIGEST
blob() {
  local got
  got="sha256:$(tar -xOf "$1" "$2" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$3" ] || die "$1: $2 hashes to $got, expected $3"
  tar -xOf "$1" "$2"
}
# (grep without -q: an early exit would SIGPIPE tar and fail the pipeline under pipefail)
is_docker_archive() { tar -tf "$1" | grep -x 'manifest.json' >/dev/null; }

# images_tar FILE -> lines "ID<TAB>SKOPEO_SELECTOR<TAB>PLATFORM_OVERRIDES<TAB>HOST_PLATFORM(1/0)"
#   (empty fields are "-": read with IFS=tab would merge empty fields)
images_tar() {
  local f="$1" n i cfg id
  if is_docker_archive "$f"; then
    n="$(tar -xOf "$f" manifest.json | jq length)"
    for ((i = 0; i < n; i++)); do
      cfg="$(tar -xOf "$f" manifest.json | jq -r ".[$i].Config")"
      id="sha256:$(tar -xOf "$f" "$cfg" | sha256sum | cut -d' ' -f1)"
      # legacy/podman/skopeo name the config <hex>.json: the name must match the bytes
      if [[ "$cfg" =~ ^([0-9a-f]{64})\.json$ ]] && [ "sha256:${BASH_REMATCH[1]}" != "$id" ]; then
        die "$f: config $cfg hashes to $id"
      fi
      printf '%s\t:@%d\t-\t1\n' "$id" "$i"
    done
  else
    local idx top m mt d ref sel man child plat host
    host="linux/$(dpkg --print-architecture)"
    idx="$(tar -xOf "$f" index.json)"
    top="$(jq '.manifests | length' <<<"$idx")"
    for ((m = 0; m < top; m++)); do
      mt="$(jq -r ".manifests[$m].mediaType" <<<"$idx")"
      d="$(jq -r ".manifests[$m].digest" <<<"$idx")"
      ref="$(jq -r ".manifests[$m].annotations[\"org.opencontainers.image.ref.name\"] // empty" <<<"$idx")"
      sel=""
      if ((top > 1)); then
        [ -n "$ref" ] || die "$f: several index.json entries and #$m has no ref name; skopeo 1.9 cannot select it"
        sel=":$ref"
      fi
      man="$(blob "$f" "blobs/sha256/${d#sha256:}" "$d")"
      if [ "$mt" = application/vnd.oci.image.index.v1+json ] || jq -e .manifests >/dev/null <<<"$man"; then
        while IFS=$'\t' read -r child plat; do
          local cm cd os arch var ov
          cm="$(blob "$f" "blobs/sha256/${child#sha256:}" "$child")"
          cd="$(jq -r .config.digest <<<"$cm")"
          blob "$f" "blobs/sha256/${cd#sha256:}" "$cd" >/dev/null
          IFS=/ read -r os arch var <<<"$plat"
          ov="--override-os=$os --override-arch=$arch"
          [ -n "$var" ] && ov="$ov --override-variant=$var"
          printf '%s\t%s\t%s\t%s\n' "$cd" "${sel:--}" "$ov" "$([ "$os/$arch" = "$host" ] && echo 1 || echo 0)"
        done < <(jq -r '.manifests[] | "\(.digest)\t\(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/" + .platform.variant else "" end)"' <<<"$man")
      else
        id="$(jq -r .config.digest <<<"$man")"
        blob "$f" "blobs/sha256/${id#sha256:}" "$id" >/dev/null
        printf '%s\t%s\t-\t1\n' "$id" "${sel:--}"
      fi
    done
  fi
}
tags_tar() {
  local t
  if is_docker_archive "$1"; then
    t="$(tar -xOf "$1" manifest.json | jq -r '[.[] | (.RepoTags // [])[]] | join(",")')"
  else
    t="$(tar -xOf "$1" index.json | jq -r '[.manifests[] | .annotations["org.opencontainers.image.ref.name"] // empty] | join(",")')"
  fi
  echo "${t:--}"
}
# skopeo_id FILE SELECTOR OVERRIDES
skopeo_id() {
  local transport=oci-archive ov=() sel="$2"
  [ "$sel" != - ] || sel=""
  is_docker_archive "$1" && transport=docker-archive
  [ "$3" = - ] || read -ra ov <<<"$3"
  "${SK[@]}" "${ov[@]}" inspect --config --raw "$transport:$1$sel" >"$BASE/tmp/skopeo-config" ||
    die "skopeo inspect --config --raw ${ov[*]} $transport:$1$sel failed"
  echo "sha256:$(sha256sum <"$BASE/tmp/skopeo-config" | cut -d' ' -f1)"
}
# scratch_load FILE : IDs podman sees after loading FILE into an empty store (sorted)
scratch_load() {
  rm -rf "$VERIFY"
  "${SCRATCH[@]}" load -q -i "$1" >/dev/null
  "${SCRATCH[@]}" images -a --no-trunc --format '{{.ID}}' | sort -u
  rm -rf "$VERIFY"
}
# registry_ids REF : config digests the registry holds for REF (children of an index, in order)
registry_ids() {
  local raw repo="${1%%:*}"
  raw="$("${SK[@]}" inspect --raw --tls-verify=false "docker://$REG/$1")"
  if jq -e .manifests >/dev/null <<<"$raw"; then
    for d in $(jq -r '.manifests[].digest' <<<"$raw"); do
      "${SK[@]}" inspect --raw --tls-verify=false "docker://$REG/$repo@$d" | jq -r .config.digest
    done
  else
    jq -r .config.digest <<<"$raw"
  fi
}
sorted() { tr ',' '\n' <<<"$1" | sort -u; }

# ---- verify + record ------------------------------------------------------------------------------
ROWS=()
# record FILE PRODUCER EXPECT ENGINE REFS...
#   ENGINE docker|podman|registry: what the producer itself reports for REFS;
#   EXPECT same (fail unless its ID set equals the archive's) | any (log only: re-serialized)
record() {
  local file="$1" producer="$2" expect="$3" engine="$4"; shift 4
  local f="$NEW/$file"
  local reader="$f" tmpd="" lines tags ids="" id sel ov host sk_ids="" expect_load="" r eng="" loaded
  if [[ "$file" == *.gz ]]; then
    tmpd="$BASE/tmp/$file.tar"
    gzip -dc "$f" >"$tmpd"
    reader="$tmpd"
  fi
  lines="$(images_tar "$reader")"
  tags="$(tags_tar "$reader")"
  [ -n "$lines" ] || die "$file: no image found"
  while IFS=$'\t' read -r id sel ov host; do
    [[ "$id" =~ ^sha256:[0-9a-f]{64}$ ]] || die "$file: bad id '$id'"
    ids="${ids:+$ids,}$id"
    sk_ids="${sk_ids:+$sk_ids,}$(skopeo_id "$reader" "$sel" "$ov")"
    [ "$host" = 1 ] && expect_load="${expect_load:+$expect_load,}$id"
  done <<<"$lines"
  [ "$sk_ids" = "$ids" ] || die "$file: skopeo inspect --config says $sk_ids, tar+jq says $ids"
  # engine reading the file itself
  if [[ "$file" == *.gz ]]; then
    cmp -s "$tmpd" "$NEW/${file%.gz}" || die "$file: gunzipped bytes differ from ${file%.gz}"
    loaded="$(docker_cli load -q -i "$f" | sed -n 's/^Loaded image\( ID\)\{0,1\}: //p' | while read -r r; do docker_cli image inspect -f '{{.Id}}' "$r"; done | sort -u)"
    [ "$loaded" = "$(sorted "$ids")" ] || die "$file: docker load gives '$loaded', archive has $ids"
  else
    loaded="$(scratch_load "$f")"
    [ "$loaded" = "$(sorted "$expect_load")" ] || die "$file: podman load gives '$loaded', expected $expect_load"
  fi
  if [ -n "$tmpd" ]; then rm -f "$tmpd"; fi
  # what the producer reports
  for r in "$@"; do
    case "$engine" in
      docker) eng="$eng $(docker_cli image inspect -f '{{.Id}}' "$r")" ;;
      podman) eng="$eng $("${POD[@]}" inspect --format '{{.Id}}' "$r" | sed 's/^\([0-9a-f]\{64\}\)$/sha256:\1/')" ;;
      registry) eng="$eng $(registry_ids "$r" | tr '\n' ' ')" ;;
      *) die "bad engine $engine" ;;
    esac
  done
  eng="$(tr ' ' '\n' <<<"$eng" | sed '/^$/d' | sort -u)"
  if [ "$eng" = "$(sorted "$ids")" ]; then
    log "$file: $ids (tar, skopeo, engine load and $engine agree)"
  elif [ "$expect" = same ]; then
    die "$file: $engine reports $(echo "$eng" | tr '\n' ' ')but the archive holds $ids"
  else
    log "$file: $ids (tar, skopeo, engine load agree; $engine reports $(echo "$eng" | tr '\n' ' ')-- config re-serialized by the producer)"
  fi
  ROWS+=("$(printf '%s\t%s\t%s\t%s' "$file" "$producer" "$ids" "$tags")")
}

record skopeo-docker-archive.tar skopeo-docker-archive same registry busybox:v1
record skopeo-oci-archive.tar skopeo-oci-archive any registry busybox:v1
record skopeo-oci-archive-from-oci.tar skopeo-oci-archive-from-oci same registry busybox:v1-oci
record skopeo-oci-archive-index.tar skopeo-oci-archive-index same registry multiarch:v1
record podman-docker-archive.tar podman-docker-archive same podman "$REG/busybox:v1"
record podman-oci-archive.tar podman-oci-archive any podman "$REG/busybox:v1"
record podman-docker-archive-multi.tar podman-docker-archive-multi same podman "$REG/busybox:v1" "$REG/multiarch:v1"
record docker-save-tag.tar docker-save-tag same docker "$REG/busybox:v1"
record docker-save-digest.tar docker-save-digest same docker "$by_digest"
record docker-save-multi.tar docker-save-multi same docker "$REG/busybox:v1" "$REG/multiarch:v1"
record docker-save-tag.tar.gz docker-save-tag-gzip same docker "$REG/busybox:v1"

{
  printf 'file\tproducer\timage_ids\ttags\n'
  printf '%s\n' "${ROWS[@]}"
} >"$NEW/fixtures.tsv"
echo "$stamp" >"$NEW/.stamp"
cd "$BASE"
rm -rf "$OUT" "$BASE/tmp"
mv "$NEW" "$OUT"
log "wrote $OUT/fixtures.tsv (${#ROWS[@]} fixtures)"
