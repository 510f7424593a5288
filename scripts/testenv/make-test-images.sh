#!/usr/bin/env bash
# make-test-images.sh [REGISTRY] [WORKDIR]
#   (WORKDIR default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/images)
#
# Builds real OCI images offline (no internet) into an OCI image layout WORKDIR/oci using only
# tar + gzip + sha256sum + jq + openssl (deterministic: fixed mtimes/owners, gzip -n, fixed
# "created" dates, pseudo-random data from AES-CTR with fixed keys), validates them with umoci,
# and pushes them with skopeo to REGISTRY (default 127.0.0.1:5000). Re-running skips the build
# if WORKDIR/oci is complete (REBUILD=1 forces), and re-pushes (cheap: blobs are deduplicated).
#
# Images / tags pushed (REG = REGISTRY):
#   REG/busybox:v1          docker v2s2 manifest, amd64, 2 layers (busybox-static rootfs + hello file)
#   REG/busybox:v1-oci      the same image as an OCI manifest (same config digest / image ID)
#   REG/multiarch:v1        OCI image index: linux/amd64 + linux/arm64/v8 (share the base layer)
#   REG/multiarch:v1-list   the same as a docker manifest list (v2s2)       [if skopeo can convert]
#   REG/kicbase:v1          docker v2s2, amd64, 10 layers, ~600 MB compressed, ~1.2 GB unpacked:
#                           copies of /usr/{bin,lib,share,...} (compressible) + pseudo-random data,
#                           last layer has whiteouts (.wh.file, .wh..wh..opq), symlink, hardlink
#   REG/kicbase:v1-multi    docker manifest list: amd64 -> kicbase:v1 manifest, arm64 -> small image
#                           (like gcr.io/k8s-minikube/kicbase)                 [if skopeo can convert]
# Results: WORKDIR/images-<registry>.tsv  (ref, manifest media type, manifest digest, config digest
#          (=image ID for single-arch), compressed size, layer count) and WORKDIR/images-<registry>.json
#
# Env knobs:
#   KICBASE=0               skip the large image
#   KICBASE_SYS_MB="300 150 250 150"   MB of system files for the 4 compressible layers
#   KICBASE_RND_MB="90 110 70 50"       MB of random data for the 4 incompressible layers
#   KICBASE_SOURCE=synthetic|system     compressible layers from deterministic synthetic text
#                           (default; a/c/g/t, gzip ratio ~0.3: identical digests on every machine
#                           with the same busybox-static/tar/gzip versions) or from copies of this
#                           host's /usr files (digests then depend on the host's installed packages)
#   DEST_CREDS=user:pass    registry basic-auth credentials
#   DEST_CERT_DIR=DIR       dir with ca.crt for a TLS registry (turns on TLS verification);
#                           default is --dest-tls-verify=false (plain http on loopback)
#   REBUILD=1               rebuild the OCI layout even if complete
#   NO_PUSH=1               only build
#   JOBS=N                  parallel tar/gzip jobs (default nproc)
set -euo pipefail
REG="${1:-127.0.0.1:5000}"
WORK="${2:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/images}"
LAYOUT="$WORK/oci"
EPOCH="${SOURCE_DATE_EPOCH:-1704067200}" # 2024-01-01T00:00:00Z
KICBASE="${KICBASE:-1}"
KICBASE_SYS_MB="${KICBASE_SYS_MB:-300 150 250 150}"
KICBASE_RND_MB="${KICBASE_RND_MB:-90 110 70 50}"
KICBASE_SOURCE="${KICBASE_SOURCE:-synthetic}"
case "$KICBASE_SOURCE" in synthetic | system) ;; *) echo "KICBASE_SOURCE must be synthetic or system" >&2; exit 2 ;; esac
JOBS="${JOBS:-$(nproc)}"
REBUILD="${REBUILD:-0}"
log() { echo "[make-test-images] $*" >&2; }

# ---- packages ---------------------------------------------------------------------------------
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
need_cmds skopeo:skopeo jq:jq umoci:umoci openssl:openssl gzip:gzip tar:tar curl:curl sha256sum:coreutils
# busybox-static provides a static /bin/busybox (the dynamic 'busybox' package would not work in the image)
need_pkgs busybox-static

CREATED="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
TMP="$WORK/tmp"
STAMP_FULL="$LAYOUT/.complete-$(echo "v5 $EPOCH $KICBASE_SYS_MB $KICBASE_RND_MB $KICBASE_SOURCE" | sha256sum | cut -c1-16)"
STAMP_SMALL="$LAYOUT/.complete-small-$(echo "v5 $EPOCH" | sha256sum | cut -c1-16)"

# ---- helpers ----------------------------------------------------------------------------------
MT_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json

# put_blob FILE MEDIATYPE -> prints descriptor JSON; moves FILE into the layout
put_blob() {
  local f="$1" mt="$2" d s
  d="$(sha256sum "$f" | cut -d' ' -f1)"
  s="$(stat -c %s "$f")"
  mv -f "$f" "$LAYOUT/blobs/sha256/$d"
  jq -cn --arg mt "$mt" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$mt,digest:$d,size:$s}'
}
# put_json JSON MEDIATYPE -> descriptor (JSON is written compactly, byte-exact)
put_json() {
  local f; f="$(mktemp -p "$TMP")"
  printf '%s' "$1" | jq -cS . | tr -d '\n' >"$f"
  put_blob "$f" "$2"
}
# make_layer SRCDIR NAME : deterministic tar of SRCDIR contents -> gzip -> blob; writes TMP/NAME.layer
make_layer() {
  local src="$1" name="$2" out="$TMP/$2" diffid
  (cd "$src" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) >"$out.list"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu \
      -C "$src" -cf "$out.tar" -T "$out.list"
  diffid="sha256:$(sha256sum "$out.tar" | cut -d' ' -f1)"
  gzip -n -6 -f "$out.tar"
  put_blob "$out.tar.gz" "$MT_LAYER" | jq -c --arg diff "$diffid" --arg n "$name" '. + {diffid:$diff, name:$n}' >"$out.layer.tmp"
  mv "$out.layer.tmp" "$out.layer"
  log "layer $name: $(jq -r '"\(.digest) \(.size) bytes"' "$out.layer")"
}
run_bg() { while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done; "$@" & }

# rand_file PATH MB SEED : deterministic pseudo-random (incompressible) data
rand_file() {
  local key; key="$(printf '%s' "$3" | sha256sum | cut -d' ' -f1)"
  mkdir -p "$(dirname "$1")"
  openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
    head -c "$(($2 * 1024 * 1024))" >"$1" || true
}
# rand_dir DIR MB SEED : MB of random data split into 16 MiB files
rand_dir() {
  local dir="$1" mb="$2" seed="$3" i=0
  mkdir -p "$dir"
  while ((mb > 0)); do
    local n=$((mb > 16 ? 16 : mb))
    rand_file "$dir/chunk-$(printf %03d $i).bin" "$n" "$seed-$i"
    mb=$((mb - n)); i=$((i + 1))
  done
}
# synth_dir DIR MB SEED : MB of deterministic compressible text (random a/c/g/t, 8 MiB files)
synth_dir() {
  local dir="$1" mb="$2" seed="$3" i=0 key
  local map; map="$(printf 'acgt%.0s' $(seq 1 64))"
  mkdir -p "$dir"
  while ((mb > 0)); do
    local n=$((mb > 8 ? 8 : mb))
    key="$(printf '%s' "$seed-$i" | sha256sum | cut -d' ' -f1)"
    openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
      head -c "$((n * 1024 * 1024))" | LC_ALL=C tr '\000-\377' "$map" >"$dir/seq-$(printf %03d $i).txt" || true
    mb=$((mb - n)); i=$((i + 1))
  done
}
# busybox_rootfs DIR : minimal rootfs with busybox-static and applet symlinks
busybox_rootfs() {
  local r="$1"
  mkdir -p "$r"/{bin,sbin,etc,root,tmp,var,usr/bin,usr/sbin,proc,sys,dev}
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf '127.0.0.1 localhost\n' >"$r/etc/hosts"
}
# config_json ARCH VARIANT LAYERFILES... -> config JSON (diff_ids from the .layer files)
config_json() {
  local arch="$1" variant="$2" label="$3"; shift 3
  local diffs hist
  diffs="$(for l in "$@"; do jq -r .diffid "$l"; done | jq -R . | jq -cs .)"
  hist="$(for l in "$@"; do jq -c --arg c "$CREATED" '{created:$c, created_by:("/bin/sh -c #(nop) ADD layer " + .name)}' "$l"; done | jq -cs '. + [{created:"'"$CREATED"'", created_by:"/bin/sh -c #(nop) CMD [\"/bin/sh\"]", empty_layer:true}]')"
  jq -cn --arg a "$arch" --arg v "$variant" --arg c "$CREATED" --arg lbl "$label" \
     --argjson d "$diffs" --argjson h "$hist" '
    {architecture:$a, os:"linux", created:$c,
     config:{Env:["PATH=/bin:/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
             Cmd:["/bin/sh"], WorkingDir:"/", Labels:{"org.example.test-image":$lbl}},
     rootfs:{type:"layers", diff_ids:$d}, history:$h}
    + (if $v != "" then {variant:$v} else {} end)'
}
# make_image TAG ARCH VARIANT LABEL LAYERFILES... -> adds manifest to index.json under TAG, prints manifest descriptor
make_image() {
  local tag="$1" arch="$2" variant="$3" label="$4"; shift 4
  local cfg cdesc layers man mdesc
  cfg="$(config_json "$arch" "$variant" "$label" "$@")"
  cdesc="$(put_json "$cfg" "$MT_CONFIG")"
  layers="$(for l in "$@"; do jq -c '{mediaType, digest, size}' "$l"; done | jq -cs .)"
  man="$(jq -cn --argjson c "$cdesc" --argjson l "$layers" '{schemaVersion:2, mediaType:"'$MT_MANIFEST'", config:$c, layers:$l}')"
  mdesc="$(put_json "$man" "$MT_MANIFEST" | jq -c --arg a "$arch" --arg v "$variant" '. + {platform:({architecture:$a, os:"linux"} + (if $v != "" then {variant:$v} else {} end))}')"
  [ -n "$tag" ] && add_ref "$tag" "$mdesc"
  printf '%s\n' "$mdesc"
}
add_ref() { # add_ref TAG DESCRIPTOR
  local idx="$LAYOUT/index.json"
  jq -c --arg t "$1" --argjson d "$2" '.manifests |= ([.[] | select(.annotations["org.opencontainers.image.ref.name"] != $t)] + [$d + {annotations:{"org.opencontainers.image.ref.name":$t}}])' "$idx" >"$idx.tmp"
  mv "$idx.tmp" "$idx"
}
make_index() { # make_index TAG MANIFEST_DESCRIPTORS...
  local tag="$1"; shift
  local list idx
  list="$(printf '%s\n' "$@" | jq -cs .)"
  idx="$(jq -cn --argjson m "$list" '{schemaVersion:2, mediaType:"'$MT_INDEX'", manifests:$m}')"
  add_ref "$tag" "$(put_json "$idx" "$MT_INDEX")"
}

# ---- build ------------------------------------------------------------------------------------
build() {
  log "building OCI layout in $LAYOUT (created=$CREATED)"
  rm -rf "$LAYOUT" "$TMP"
  mkdir -p "$LAYOUT/blobs/sha256" "$TMP/src"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
  printf '{"schemaVersion":2,"manifests":[]}' >"$LAYOUT/index.json"
  local S="$TMP/src"

  # small layers
  busybox_rootfs "$S/base"
  mkdir -p "$S/hello/etc" && printf 'hello from busybox:v1\n' >"$S/hello/etc/hello.txt"
  for a in amd64 arm64; do
    mkdir -p "$S/arch-$a/etc" && printf '%s\n' "$a" >"$S/arch-$a/etc/image-arch"
  done
  make_layer "$S/base" base
  make_layer "$S/hello" hello
  make_layer "$S/arch-amd64" arch-amd64
  make_layer "$S/arch-arm64" arch-arm64

  make_image busybox-v1 amd64 "" busybox-v1 "$TMP/base.layer" "$TMP/hello.layer" >/dev/null
  local m_amd m_arm
  m_amd="$(make_image "" amd64 "" multiarch-v1 "$TMP/base.layer" "$TMP/arch-amd64.layer")"
  m_arm="$(make_image "" arm64 v8 multiarch-v1 "$TMP/base.layer" "$TMP/arch-arm64.layer")"
  make_index multiarch-v1 "$m_amd" "$m_arm"

  if [ "$KICBASE" = 1 ]; then
    # system files: one sorted list of regular files/symlinks, cut into consecutive chunks
    local sys rnd
    read -ra sys <<<"$KICBASE_SYS_MB"
    read -ra rnd <<<"$KICBASE_RND_MB"
    (cd / && find usr/bin usr/sbin usr/lib usr/libexec usr/share -xdev \( -type f -o -type l \) -printf '%s\t%p\n' 2>/dev/null |
      LC_ALL=C sort -t$'\t' -k2,2) >"$TMP/sysfiles.tsv" || true
    # greedy split of the sorted list into chunks of KICBASE_SYS_MB (files > 64 MiB skipped)
    awk -F'\t' -v lims="${sys[*]}" 'BEGIN { n = split(lims, L, " "); c = 1; rem = L[1] * 1048576 }
      { s = $1; if (s > 67108864) next
        if (s > rem) { c++; if (c > n) exit; rem = L[c] * 1048576 }
        if (s <= rem) { print $2 > (out "kic-sys" c ".files"); rem -= s } }' out="$TMP/" "$TMP/sysfiles.tsv"
    local i
    for i in 1 2 3 4; do
      local d="$S/kic-sys$i"
      mkdir -p "$d"
      touch "$TMP/kic-sys$i.files"
      if [ "$KICBASE_SOURCE" = synthetic ]; then
        synth_dir "$d/usr/share/synthetic-$i" "${sys[i-1]}" "kicbase-sys-$i"
        printf 'usr/share/synthetic-1/seq-000.txt\n' >"$TMP/kic-sys$i.files"
      else
        (cd / && tar -cf - --no-recursion -T "$TMP/kic-sys$i.files" 2>/dev/null) | tar -xf - -C "$d"
      fi
      rand_dir "$S/kic-rnd$i/opt/blob-$i" "${rnd[i-1]}" "kicbase-$i"
    done
    # final layer: metadata, symlink, hardlink, whiteouts
    local f="$S/kic-final"
    mkdir -p "$f/etc" "$f/opt/blob-4" "$f/usr/local/bin"
    printf 'v1\n' >"$f/etc/kicbase-version"
    printf 'kicbase-like test image\n' >"$f/etc/motd"
    ln "$f/etc/motd" "$f/etc/motd.hardlink"
    ln -s ../../../bin/busybox "$f/usr/local/bin/entrypoint"
    : >"$f/opt/blob-4/.wh..wh..opq"                        # opaque dir: hides layer-9 chunks
    printf 'replaced\n' >"$f/opt/blob-4/README"
    : >"$f/opt/.wh.blob-3"                                   # whiteout of a whole dir
    local first; first="$(head -1 "$TMP/kic-sys1.files")"   # whiteout of one file from layer 2
    mkdir -p "$f/$(dirname "$first")" && : >"$f/$(dirname "$first")/.wh.$(basename "$first")"
    local order=(base kic-sys1 kic-rnd1 kic-sys2 kic-rnd2 kic-sys3 kic-rnd3 kic-sys4 kic-rnd4 kic-final)
    for n in "${order[@]:1}"; do run_bg make_layer "$S/$n" "$n"; done
    wait
    local lf=()
    for n in "${order[@]}"; do [ -s "$TMP/$n.layer" ] || { log "layer $n failed"; exit 1; }; lf+=("$TMP/$n.layer"); done
    local k_amd k_arm
    k_amd="$(make_image kicbase-v1 amd64 "" kicbase-v1 "${lf[@]}")"
    k_arm="$(make_image "" arm64 v8 kicbase-v1 "$TMP/base.layer" "$TMP/arch-arm64.layer")"
    make_index kicbase-v1-multi "$k_amd" "$k_arm"
  fi
  rm -rf "$TMP"
  # validate with umoci (parses the layout, manifests, configs)
  local t
  for t in $(jq -r '.manifests[] | select(.mediaType=="'$MT_MANIFEST'") | .annotations["org.opencontainers.image.ref.name"]' "$LAYOUT/index.json"); do
    umoci stat --image "$LAYOUT:$t" >/dev/null
  done
  touch "$STAMP_SMALL"
  if [ "$KICBASE" = 1 ]; then touch "$STAMP_FULL"; fi
  log "build complete: $(du -sh "$LAYOUT" | cut -f1)"
}

# KICBASE=0 is satisfied by any layout whose small images are current (full or small build), so it
# never throws away a complete layout; a full build is needed only when STAMP_FULL is missing.
if [ "$REBUILD" != 1 ] && { [ -e "$STAMP_FULL" ] || { [ "$KICBASE" != 1 ] && [ -e "$STAMP_SMALL" ]; }; }; then
  log "OCI layout up to date ($LAYOUT)"
else
  build
fi
[ "${NO_PUSH:-0}" = 1 ] && exit 0

# ---- push -------------------------------------------------------------------------------------
SK=(skopeo --insecure-policy)
DEST=(--retry-times 2)
INSP=()
if [ -n "${DEST_CERT_DIR:-}" ]; then DEST+=(--dest-tls-verify=true --dest-cert-dir "$DEST_CERT_DIR"); INSP+=(--tls-verify=true --cert-dir "$DEST_CERT_DIR")
else DEST+=(--dest-tls-verify=false); INSP+=(--tls-verify=false); fi
if [ -n "${DEST_CREDS:-}" ]; then DEST+=(--dest-creds "$DEST_CREDS"); INSP+=(--creds "$DEST_CREDS"); fi

push() { # push SRC_TAG DEST_REPO:TAG [extra skopeo args]
  local src="$1" dst="$2"; shift 2
  log "push oci:$LAYOUT:$src -> docker://$REG/$dst $*"
  "${SK[@]}" copy -q "${DEST[@]}" "$@" "oci:$LAYOUT:$src" "docker://$REG/$dst" >&2
}
push busybox-v1 busybox:v1 --format v2s2
push busybox-v1 busybox:v1-oci --format oci
push multiarch-v1 multiarch:v1 --all --preserve-digests
LIST_OK=1
push multiarch-v1 multiarch:v1-list --all --format v2s2 || { LIST_OK=0; log "skopeo could not convert OCI index -> docker manifest list"; }
if [ "$KICBASE" = 1 ]; then
  push kicbase-v1 kicbase:v1 --format v2s2
  if [ "$LIST_OK" = 1 ]; then push kicbase-v1-multi kicbase:v1-multi --all --format v2s2; else push kicbase-v1-multi kicbase:v1-multi --all; fi
fi

# ---- record digests ---------------------------------------------------------------------------
safe="$(echo "$REG" | tr ':/' '__')"
TSV="$WORK/images-$safe.tsv"; JSON="$WORK/images-$safe.json"
refs=(busybox:v1 busybox:v1-oci multiarch:v1)
[ "$LIST_OK" = 1 ] && refs+=(multiarch:v1-list)
[ "$KICBASE" = 1 ] && refs+=(kicbase:v1 kicbase:v1-multi)
printf 'ref\tmediaType\tmanifestDigest\tplatform\tconfigDigest(imageID)\tcompressedBytes\tlayers\n' >"$TSV"
: >"$JSON.tmp"
for r in "${refs[@]}"; do
  raw="$("${SK[@]}" inspect --raw "${INSP[@]}" "docker://$REG/$r")"
  mdig="sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"
  mt="$(jq -r .mediaType <<<"$raw")"
  if jq -e .manifests >/dev/null <<<"$raw"; then
    while read -r cd plat; do
      craw="$("${SK[@]}" inspect --raw "${INSP[@]}" "docker://$REG/${r%%:*}@$cd")"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$mt" "$mdig" "$plat -> $cd" "$(jq -r .config.digest <<<"$craw")" \
        "$(jq '[.layers[].size] | add' <<<"$craw")" "$(jq '.layers | length' <<<"$craw")" >>"$TSV"
      jq -c --arg r "$r" --arg m "$mdig" --arg mt "$mt" --arg p "$plat" --arg cd "$cd" '{ref:$r, indexDigest:$m, indexMediaType:$mt, platform:$p, manifestDigest:$cd, manifestMediaType:.mediaType, configDigest:.config.digest, layers:[.layers[] | {digest, size}]}' <<<"$craw" >>"$JSON.tmp"
    done < <(jq -r '.manifests[] | "\(.digest) \(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/" + .platform.variant else "" end)"' <<<"$raw")
  else
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$mt" "$mdig" "-" "$(jq -r .config.digest <<<"$raw")" \
      "$(jq '[.layers[].size] | add' <<<"$raw")" "$(jq '.layers | length' <<<"$raw")" >>"$TSV"
    jq -c --arg r "$r" --arg m "$mdig" '{ref:$r, manifestDigest:$m, manifestMediaType:.mediaType, configDigest:.config.digest, layers:[.layers[] | {digest, size}]}' <<<"$raw" >>"$JSON.tmp"
  fi
done
jq -s --arg reg "$REG" '{registry:$reg, images:.}' "$JSON.tmp" >"$JSON"; rm -f "$JSON.tmp"
log "wrote $TSV and $JSON"
column -t -s$'\t' "$TSV" 2>/dev/null || cat "$TSV"
