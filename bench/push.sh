#!/usr/bin/env bash
# shellcheck disable=SC2016 # awk and jq programs, and sh -c scripts, in single quotes
# bench/push.sh : imgcache push and imgcache sync side by side with skopeo, against Debian's
# distribution registry ("docker-registry" 2.8) on loopback. See bench/README.md, section
# "Push and sync".
#
# Starts two registries (scripts/testenv/start-registry.sh, plain http):
#   - the destination, 127.0.0.1:$PORT (lib.sh start_registry), data in BENCH_DIR/push/registry,
#     emptied at the start of every run; every figure is about requests to it
#   - an origin, 127.0.0.1:$ORIGIN_PORT, data in BENCH_DIR/push/origin (kept): kicbase:v1 from
#     bench/run.sh's OCI layout (built the same way if missing) and N_SYNC small images
#     sync-00:v1 .. for row 3. imgcache pulls from it, so its cache knows no repository of the
#     destination (a known location would make the first push a mount)
# and stops both by their PID files at exit. Measures, in one run:
#   1. first push of kicbase:v1 (597 MB, 10 layers + config) into a fresh repository:
#      'imgcache --root CACHE --json push ORIGIN/kicbase:v1 DEST/first/ic-N:v1' vs
#      'skopeo copy dir:KDIR docker://DEST/first/sk-N:v1' (KDIR: skopeo's dir: copy of the same
#      image, made once). Alternating, median of RUNS. CACHE is a fresh copy of a cache that only
#      pulled the image (blobs hard-linked), so it knows no destination repository; skopeo runs in
#      a private mount namespace with an empty blob-info cache bound over
#      /var/lib/containers/cache, so it knows none either (and the host's cache is left alone).
#      Peak RSS and CPU of each run with GNU time.
#   2. a second push, hyperfine, QUICK_RUNS runs each: (a) the same image to the same repository
#      again; (b) to another, new repository of the same registry each run (a mount for both
#      tools: each uses what its row-1 run left, imgcache's cache and skopeo's blob-info cache).
#      Ratio: imgcache's median / row 1's imgcache median. skopeo's figures for comparison.
#   3. sync of N_SYNC (20) images to DEST/mirror, of which all but N_NEW (2) are there already
#      (synced beforehand): 'imgcache --root CACHE --json sync LIST --to DEST/mirror' vs
#      'skopeo sync --src yaml --dest docker YAML DEST/mirror' (the peer: one process for the
#      list, the same REGISTRY/PREFIX/PATH:TAG mapping, and it also skips an image whose digest
#      the destination holds) and, for information, a loop of N_SYNC 'skopeo copy'. Before each
#      run the N_NEW images are deleted from the destination (manifest and blob links, checked to
#      answer 404), CACHE is a fresh copy of the cache that synced the others (it lacks the new
#      images, as after an earlier sync), skopeo's blob-info cache is empty. Alternating, median
#      of SYNC_RUNS. 3b: the destination's requests for the images already there, per run.
#   4. peak RSS of imgcache push: the max over row 1's runs (skopeo's for comparison)
# Checks, before a figure is printed:
#   - row 1, imgcache: exit 0; --json blobs_uploaded = 11, blobs_mounted = blobs_present = 0,
#     bytes_uploaded = the image's bytes (up to 25% more allowed: a resent chunk counts twice),
#     already_present false, digest = the origin's manifest digest; both tools: the registry's
#     access log shows one finished blob upload (PUT .../blobs/uploads/...?digest=, 201) per blob
#     for the run's repository and no mount; 'skopeo inspect --raw' of the new tag hashes to the
#     origin's digest
#   - row 2: (a) every imgcache run says already_present and sent nothing, (b) every run says
#     blobs_mounted = 11 and bytes_uploaded = 0; for both tools, no blob upload (PATCH, or PUT on
#     an upload) in the access log for those repositories, and every new tag has the digest
#   - row 3: exit 0; imgcache's JSON lists N_SYNC - N_NEW images skipped, N_NEW pushed with
#     bytes_uploaded = their bytes, none failed; for every tool, each new image's tag at the
#     destination has the origin's digest, and the access log shows its blobs uploaded; for
#     imgcache, the requests for the images already there are manifest requests only (no blob
#     GET, HEAD, PUT, PATCH or POST)
# A failed check turns the row's cell into "NOT MEASURED: reason" (exit status 4; a wrong digest
# from imgcache gives 1). Results: a markdown table on stdout and in BENCH_DIR/push/results.md,
# the same rows in BENCH_DIR/push/results.tsv, raw data in BENCH_DIR/push/raw/. Targets are
# shown next to the figures; the exit status does not depend on them (0 = ran, 1 = imgcache gave
# a wrong answer, 3 = setup failed, 4 = a check failed: a row has no figure).
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench   shared with bench/run.sh, pull.sh, engine.sh and serve.sh
#   IMGCACHE=...                    binary to test; unset: cargo build --release -p imgcache-cli
#   PORT=5103 ORIGIN_PORT=5104      the registries' ports (must be free)
#   RUNS=5                          runs per tool in row 1 (medians)
#   QUICK_RUNS=10                   hyperfine runs per command in row 2
#   SYNC_RUNS=7                     runs per tool in row 3 (medians; a run takes about 1 s)
#   N_SYNC=20 N_NEW=2               images in row 3's list, and how many of them are new
#   SMALL_KIB=512                   the random data in each small image's one layer
set -uo pipefail

BENCH_TAG=push-bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${PORT:=5103}" "${ORIGIN_PORT:=5104}" "${QUICK_RUNS:=10}" "${SYNC_RUNS:=7}" "${N_SYNC:=20}" "${N_NEW:=2}" "${SMALL_KIB:=512}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS: a positive number, not '$RUNS'"
[[ "$QUICK_RUNS" =~ ^[1-9][0-9]*$ ]] || die "QUICK_RUNS: a positive number, not '$QUICK_RUNS'"
[[ "$SYNC_RUNS" =~ ^[1-9][0-9]*$ ]] || die "SYNC_RUNS: a positive number, not '$SYNC_RUNS'"
if ! [[ "$N_SYNC" =~ ^[1-9][0-9]*$ && "$N_NEW" =~ ^[1-9][0-9]*$ ]] || [ "$N_NEW" -ge "$N_SYNC" ]; then
  die "N_SYNC and N_NEW: 1 <= N_NEW < N_SYNC, not '$N_SYNC' / '$N_NEW'"
fi
[ "$N_SYNC" -le 100 ] || die "N_SYNC: at most 100"
[ "$PORT" != "$ORIGIN_PORT" ] || die "PORT and ORIGIN_PORT must differ"
EPOCH=1704067200
MT_V2S2=application/vnd.docker.distribution.manifest.v2+json
ACCEPT="$MT_V2S2, application/vnd.oci.image.manifest.v1+json"
BIC_DIR=/var/lib/containers/cache # where skopeo (c/image) keeps its blob-info cache when run as root

bench_dir
PD="$BENCH_DIR/push"
RAW="$PD/raw"
ORIG_DATA="$PD/origin"
REGDATA="$PD/registry"
ORIG="127.0.0.1:$ORIGIN_PORT"
KDIR="$PD/kicbase-dir"             # skopeo's dir: copy of kicbase:v1
T_KIC="$PD/cache-kicbase"          # imgcache's cache that pulled kicbase:v1 (never pushes)
T_SYNC="$PD/cache-sync"            # imgcache's cache that synced the images already there
RC="$PD/run-cache"                 # the cache of one run (a copy of a template)
BIC="$PD/bic"                      # skopeo's blob-info caches, one directory per use
mkdir -p "$PD" || die "cannot create $PD"

need_tools skopeo:skopeo jq:jq hyperfine:hyperfine curl:curl docker-registry:docker-registry \
  openssl:openssl gzip:gzip tar:tar sha256sum:coreutils unshare:util-linux

# ---- imgcache binary (serve.sh's way) -----------------------------------------------------------
need_imgcache "$PD"
if ! "$IMGCACHE" push --help >/dev/null 2>&1 || ! "$IMGCACHE" sync --help >/dev/null 2>&1; then
  die "$IMGCACHE has no 'push' or 'sync' command (stale build?)"
fi

# skopeo in a private mount namespace whose blob-info cache is the directory $1 (created empty if
# missing): skopeo learns nothing from earlier runs or other users of this host, and they learn
# nothing from it
[ -d "$BIC_DIR" ] || mkdir -p "$BIC_DIR" || die "cannot create $BIC_DIR"
unshare -m --propagation private true 2>/dev/null || die "unshare -m does not work here (root needed)"
skw() {
  local d="$1"; shift
  mkdir -p "$d" || return 1
  unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$d" "$BIC_DIR" "${SK[@]}" "$@"
}
# skw_cmd DIR ARGS... : the same as one shell-quoted command line (for hyperfine)
skw_cmd() {
  local d="$1"; shift
  printf 'unshare -m --propagation private sh -c %q sh %q %q' 'mount --bind "$1" "$2" && shift 2 && exec "$@"' "$d" "$BIC_DIR"
  printf ' %q' "${SK[@]}" "$@"
}

# ---- cleanup: every process this script starts, by its PID file ---------------------------------
ORIG_STARTED=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  stop_registry
  if [ "$ORIG_STARTED" = 1 ]; then "$TESTENV/stop-pidfile.sh" "$ORIG_DATA/_ctl/registry.pid" 20 "$ORIG_DATA/_ctl/config.yml" || true; fi
  rm -rf "$RC" "$PD/tmp" "$PD/tmp-counter-ic" "$PD/tmp-counter-sk"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)
# ---- the origin: kicbase:v1 and the small images ------------------------------------------------
ensure_layout "$ORIG"
ORIG_PID="$("$TESTENV/start-registry.sh" "$ORIGIN_PORT" "$ORIG_DATA" plain)" || die "could not start the origin registry on $ORIG"
ORIG_STARTED=1
log "origin registry $ORIG (pid $ORIG_PID)"
log "skopeo copy oci:$LAYOUT:$TAG -> docker://$ORIG/kicbase:v1"
"${SK[@]}" copy -q --retry-times 2 --dest-tls-verify=false --format v2s2 "oci:$LAYOUT:$TAG" "docker://$ORIG/kicbase:v1" >&2 ||
  die "push of kicbase:v1 to the origin failed"
mkdir -p "$RAW.new"
"${SK[@]}" inspect --raw --tls-verify=false "docker://$ORIG/kicbase:v1" >"$RAW.new/origin-manifest.json" || die "cannot read $ORIG/kicbase:v1"
V1_DIGEST="sha256:$(sha256sum "$RAW.new/origin-manifest.json" | cut -d' ' -f1)"
ORIGIN_MAN="$PD/origin-manifest.json"
cp "$RAW.new/origin-manifest.json" "$ORIGIN_MAN"
IMAGE_ID="$(jq -r .config.digest "$ORIGIN_MAN")"
[ "$IMAGE_ID" = "$V1_CONFIG_DIGEST" ] || die "$ORIG/kicbase:v1's config is $IMAGE_ID, the layout's $V1_CONFIG_DIGEST"
mapfile -t BLOBS < <(jq -r '.config, .layers[] | "\(.digest) \(.size)"' "$ORIGIN_MAN")
NBLOBS="${#BLOBS[@]}"
IMG_BYTES="$(printf '%s\n' "${BLOBS[@]}" | awk '{s += $2} END {print s}')"
BIG_BLOBS="$(printf '%s\n' "${BLOBS[@]}" | awk '$2 > 16777216 {n++} END {print n + 0}')"

# small images: one layer (a tar of SMALL_KIB KiB of AES-CTR data, fixed mtime and owner, gzip -n)
# and a config each, all distinct, pushed to the origin with curl as NAME:v1 (docker v2s2)
# origin_blob REPO FILE : POST an upload, PUT the file with ?digest=; prints the digest
origin_blob() {
  local dg loc
  dg="sha256:$(sha256sum <"$2" | cut -d' ' -f1)"
  loc="$(curl -sf -X POST -o /dev/null -D - "http://$ORIG/v2/$1/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')"
  [ -n "$loc" ] || return 1
  case "$loc" in /*) loc="http://$ORIG$loc" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$dg" ;; *) loc="$loc?digest=$dg" ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$2" -o /dev/null "$loc" || return 1
  echo "$dg"
}
# make_small NAME : builds and pushes NAME:v1; prints "NAME MANIFEST_DIGEST BYTES CONFIG LAYER"
make_small() {
  local n="$1" d="$PD/tmp/$1" key diffid ld cd ls cs
  rm -rf "$d" && mkdir -p "$d/root/opt/$n" || return 1
  key="$(printf 'imgcache push bench %s' "$n" | sha256sum | cut -d' ' -f1)"
  openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
    head -c "$((SMALL_KIB * 1024))" >"$d/root/opt/$n/data.bin"
  printf '%s\n' "$n" >"$d/root/opt/$n/name"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu -C "$d/root" -cf "$d/layer.tar" opt || return 1
  diffid="sha256:$(sha256sum <"$d/layer.tar" | cut -d' ' -f1)"
  gzip -n -6 "$d/layer.tar" || return 1
  jq -cnS --arg id "$diffid" --arg n "$n" '{architecture: "amd64", os: "linux", created: "2024-01-01T00:00:00Z",
    config: {Cmd: ["/bin/sh"], Labels: {"org.example.test-image": $n}}, rootfs: {type: "layers", diff_ids: [$id]},
    history: [{created: "2024-01-01T00:00:00Z", created_by: ("ADD " + $n)}]}' | tr -d '\n' >"$d/config.json"
  ld="$(origin_blob "$n" "$d/layer.tar.gz")" && cd="$(origin_blob "$n" "$d/config.json")" || return 1
  ls="$(stat -c %s "$d/layer.tar.gz")"; cs="$(stat -c %s "$d/config.json")"
  jq -cn --arg mt "$MT_V2S2" --arg cd "$cd" --argjson cs "$cs" --arg ld "$ld" --argjson ls "$ls" '{schemaVersion: 2, mediaType: $mt,
    config: {mediaType: "application/vnd.docker.container.image.v1+json", size: $cs, digest: $cd},
    layers: [{mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: $ls, digest: $ld}]}' | tr -d '\n' >"$d/manifest.json"
  curl -sf -X PUT -H "Content-Type: $MT_V2S2" --data-binary @"$d/manifest.json" -o /dev/null "http://$ORIG/v2/$n/manifests/v1" || return 1
  printf '%s sha256:%s %s %s %s\n' "$n" "$(sha256sum <"$d/manifest.json" | cut -d' ' -f1)" "$((cs + ls))" "$cd" "$ld"
}
# man_digest HOST REPO TAG : sha256 of the manifest bytes HOST serves (empty if none)
man_digest() {
  local f="$PD/tmp/man.$$"
  mkdir -p "$PD/tmp"
  curl -sf -H "Accept: $ACCEPT" -o "$f" "http://$1/v2/$2/manifests/$3" && echo "sha256:$(sha256sum <"$f" | cut -d' ' -f1)"
  rm -f "$f"
}
SMALL_TSV="$ORIG_DATA/_ctl/small-$N_SYNC-$SMALL_KIB.tsv"
if [ ! -s "$SMALL_TSV" ] || [ "$(wc -l <"$SMALL_TSV")" != "$N_SYNC" ] ||
  [ "$(man_digest "$ORIG" "$(tail -1 "$SMALL_TSV" | cut -d' ' -f1)" v1)" != "$(tail -1 "$SMALL_TSV" | cut -d' ' -f2)" ]; then
  log "pushing $N_SYNC small images ($SMALL_KIB KiB of data each) to $ORIG"
  : >"$SMALL_TSV.tmp"
  for k in $(seq 0 $((N_SYNC - 1))); do
    make_small "$(printf 'sync-%02d' "$k")" >>"$SMALL_TSV.tmp" || die "pushing small image $k to $ORIG failed"
  done
  mv "$SMALL_TSV.tmp" "$SMALL_TSV"
fi
declare -A S_DIG S_BYTES S_BLOBS
SMALL_NAMES=()
while read -r n dg by cd ld; do SMALL_NAMES+=("$n"); S_DIG[$n]="$dg"; S_BYTES[$n]="$by"; S_BLOBS[$n]="$cd $ld"; done <"$SMALL_TSV"
OLD=("${SMALL_NAMES[@]:0:N_SYNC-N_NEW}"); NEW=("${SMALL_NAMES[@]:N_SYNC-N_NEW}")
NEW_BYTES=0; for n in "${NEW[@]}"; do NEW_BYTES=$((NEW_BYTES + S_BYTES[$n])); done
LIST="$PD/sync-list.txt"; LIST_OLD="$PD/sync-list-present.txt"; YAML="$PD/sync.yml"
printf "$ORIG/%s:v1\n" "${SMALL_NAMES[@]}" >"$LIST"
printf "$ORIG/%s:v1\n" "${OLD[@]}" >"$LIST_OLD"
{ echo "$ORIG:"; echo "  tls-verify: false"; echo "  images:"; printf '    %s: ["v1"]\n' "${SMALL_NAMES[@]}"; } >"$YAML"
for n in "${SMALL_NAMES[@]}"; do
  [ "$(man_digest "$ORIG" "$n" v1)" = "${S_DIG[$n]}" ] || die "$ORIG/$n:v1 does not have digest ${S_DIG[$n]}"
done

# ---- imgcache's cache of kicbase:v1 and skopeo's dir: copy (made once) ---------------------------
kic_ok() {
  "$IMGCACHE" --root "$T_KIC" --json ls >"$RAW.new/kic-ls.json" 2>"$RAW.new/kic-ls.err" &&
    jq -e --arg r "$ORIG/kicbase:v1" --arg d "$V1_DIGEST" --arg id "$IMAGE_ID" \
      '[.images[] | select(.reference == $r and .manifest_digest == $d and .image_id == $id)] | length == 1' "$RAW.new/kic-ls.json" >/dev/null &&
    "$IMGCACHE" --root "$T_KIC" --json verify "$ORIG/kicbase:v1" >"$RAW.new/kic-verify.json" 2>"$RAW.new/kic-verify.err" &&
    jq -e --arg id "$IMAGE_ID" '.ok == true and .image.image_id == $id' "$RAW.new/kic-verify.json" >/dev/null
}
if ! kic_ok; then
  log "imgcache pull $ORIG/kicbase:v1 into a fresh $T_KIC"
  rm -rf "$T_KIC"
  "$IMGCACHE" --root "$T_KIC" --json pull "$ORIG/kicbase:v1" >"$RAW.new/kic-pull.json" 2>"$RAW.new/kic-pull.err" ||
    { tail -5 "$RAW.new/kic-pull.err" >&2; die "imgcache pull $ORIG/kicbase:v1 failed"; }
  kic_ok || { log "ERROR: $T_KIC does not hold $ORIG/kicbase:v1 $V1_DIGEST after the pull (see $RAW.new/kic-*)"; exit 1; }
fi
# kdir_ok : KDIR holds the manifest and every blob with its size
kdir_ok() {
  local l dg
  [ -s "$KDIR/manifest.json" ] && [ "$(sha256sum <"$KDIR/manifest.json" | cut -d' ' -f1)" = "${V1_DIGEST#sha256:}" ] || return 1
  for l in "${BLOBS[@]}"; do dg="${l%% *}"; [ "$(stat -c %s "$KDIR/${dg#sha256:}" 2>/dev/null)" = "${l##* }" ] || return 1; done
}
if ! kdir_ok; then
  log "skopeo copy docker://$ORIG/kicbase:v1 dir:$KDIR"
  rm -rf "$KDIR"
  skw "$PD/tmp/bic-kdir" copy -q --src-tls-verify=false "docker://$ORIG/kicbase:v1" "dir:$KDIR" >&2 || die "skopeo dir: copy failed"
  kdir_ok || die "$KDIR does not hold $ORIG/kicbase:v1 $V1_DIGEST"
fi
# fresh_cache TEMPLATE : RC becomes a copy of TEMPLATE: blobs hard-linked, everything else copied
fresh_cache() {
  local e
  rm -rf "$RC" && mkdir -p "$RC" || return 1
  for e in "$1"/* "$1"/.[!.]*; do
    [ -e "$e" ] || continue
    if [ "$(basename "$e")" = blobs ]; then cp -al "$e" "$RC/blobs" || return 1; else cp -a "$e" "$RC/" || return 1; fi
  done
}
KIC_BLOB_FILES=(); while IFS= read -r f; do KIC_BLOB_FILES+=("$f"); done < <(find "$T_KIC/blobs" -type f)
KDIR_FILES=(); while IFS= read -r f; do KDIR_FILES+=("$f"); done < <(find "$KDIR" -type f)

# ---- the destination: empty at the start of every run ---------------------------------------------
if [ -s "$REGDATA/_ctl/registry.pid" ]; then "$TESTENV/stop-pidfile.sh" "$REGDATA/_ctl/registry.pid" 20 "$REGDATA/_ctl/config.yml" || true; fi
rm -rf "$REGDATA"
start_registry "$PORT" "$REGDATA"
DEST="$REG"
REGLOG="$REG_CTL/registry.log"
REG_SERVER_PID="$REG_PID"
# the registry's global blob store gets kicbase's blobs once, untimed, so that every timed first
# push finds the same state: the blobs are in another repository, which neither tool knows
log "warm-up: skopeo copy dir:$KDIR docker://$DEST/warmup/kicbase:v1"
skw "$PD/tmp/bic-warmup" copy -q --dest-tls-verify=false "dir:$KDIR" "docker://$DEST/warmup/kicbase:v1" >&2 || die "the warm-up copy failed"
[ "$(reg_digest warmup/kicbase:v1)" = "$V1_DIGEST" ] || die "the warm-up copy has another digest than $V1_DIGEST"

# row 3's starting point: the images but the N_NEW new ones synced by imgcache into T_SYNC
log "sync of the ${#OLD[@]} images already there: imgcache sync -> $DEST/mirror"
rm -rf "$T_SYNC"
"$IMGCACHE" --root "$T_SYNC" --json sync "$LIST_OLD" --to "$DEST/mirror" >"$RAW.new/presync.json" 2>"$RAW.new/presync.err" ||
  { tail -5 "$RAW.new/presync.err" >&2; die "the sync of the images already there failed"; }
jq -e --argjson n "${#OLD[@]}" '.pushed == $n and .failed == 0' "$RAW.new/presync.json" >/dev/null || die "the pre-sync did not push ${#OLD[@]} images (see $RAW.new/presync.json)"
for n in "${OLD[@]}"; do [ "$(man_digest "$DEST" "mirror/$n" v1)" = "${S_DIG[$n]}" ] || die "$DEST/mirror/$n:v1 does not have the origin's digest after the pre-sync"; done
rm -rf "$RAW" "$BIC"; mv "$RAW.new" "$RAW"
SETUP_S=$(($(date +%s) - T0))
log "setup done in ${SETUP_S}s; kicbase:v1 = $V1_DIGEST ($NBLOBS blobs, $IMG_BYTES B)"

# ---- helpers ---------------------------------------------------------------------------------------
# the access log: the registry writes a line after its response, so wait before reading it
logmark() { sleep 0.4; wc -l <"$1"; }
# reqs LOG MARK : the access-log lines after MARK as "REPO METHOD KIND STATUS [DIGEST]", KIND one of
# manifest, blob, upload (POST without mount, PATCH, PUT, GET of an upload session), mount (POST
# ?mount=), base; DIGEST: the ?digest= of a PUT that finishes an upload
reqs() {
  sleep 0.4
  tail -n +"$(($2 + 1))" "$1" | awk '$1 == "127.0.0.1" && $2 == "-" && $6 ~ /^"[A-Z]+$/ && $7 ~ /^\/v2\// {
    m = substr($6, 2); p = substr($7, 5); s = $9
    if ((i = index(p, "/manifests/")) > 0) k = "manifest"
    else if ((i = index(p, "/blobs/uploads/")) > 0) k = (m == "POST" && p ~ /[?&]mount=/) ? "mount" : "upload"
    else if ((i = index(p, "/blobs/")) > 0) k = "blob"
    else { i = 0; k = "base" }
    d = ""
    if (k == "upload" && m == "PUT" && match(p, /[?&]digest=sha256(%3A|%3a|:)[0-9a-f]+/)) { d = substr(p, RSTART, RLENGTH); sub(/.*(%3A|%3a|:)/, "sha256:", d) }
    print (i ? substr(p, 1, i - 1) : "-"), m, k, s, d }'
}
# count FILE AWK_CONDITION : how many lines of a reqs output match ($1 repo, $2 method, $3 kind, $4 status)
count() { awk "$2 { n++ } END { print n + 0 }" "$1"; }
# summary FILE : "N requests: 11 HEAD blob, 11 PUT upload, ..." of a reqs output
summary() {
  awk '{ c[$2 " " $3]++; n++ } END { s = ""; for (k in c) s = s (s ? ", " : "") c[k] " " k; printf "%d requests%s", n, (n ? ": " s : "") }' "$1"
}
fail() { # fail ROW WHY [BAD] : a check of ROW failed; BAD=1 also means imgcache gave a wrong answer
  unmeasured "$1" || not_measured "$1" "$2"
  [ "${3:-0}" = 1 ] && BAD=1
  return 0
}
cell() { if unmeasured "$1"; then echo "NOT MEASURED"; else echo "$2"; fi; }
rng() { local r; r="$(range "$@")"; echo "${r:-n/a}"; }
mbs() { [ -n "$2" ] && awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", b / s / 1e6 }' || echo n/a; }
note_of() { printf '%s' "${NA[$1]:-}${NA[$1]:+; }${NA[$1-peer]:+skopeo: }${NA[$1-peer]:-}"; }
# gt FILE : GNU time -f '%e %U %S %M' output -> "elapsed user sys maxrss_kib" (last line)
gt() { tail -1 "$1" 2>/dev/null; }
ROWS=(); RAWLINES=()
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
SKOPEO_V="$(skopeo --version | awk '{print $3}')"

# ==== 1. first push into a fresh repository ==============================================================
t_ic=(); t_sk=(); u_ic=(); u_sk=(); m_ic=(); m_sk=(); c_reg_ic=(); c_reg_sk=()
warm "${KIC_BLOB_FILES[@]}" "${KDIR_FILES[@]}"
for i in $(seq 1 "$RUNS"); do
  for who in imgcache skopeo; do
    f="$RAW/first-$who-$i"
    if [ "$who" = imgcache ]; then
      row=1; repo="first/ic-$i"
      fresh_cache "$T_KIC" || die "cannot copy $T_KIC"
    else
      row=1-peer; repo="first/sk-$i"
      rm -rf "$BIC/first-$i"; mkdir -p "$BIC/first-$i"
    fi
    sync
    n0="$(logmark "$REGLOG")"; s0="$(daemon_cpu "$REG_SERVER_PID")"
    log "1: first push $i/$RUNS: $who -> $DEST/$repo:v1"
    a=$(now)
    if [ "$who" = imgcache ]; then
      /usr/bin/time -f '%e %U %S %M' -o "$f.time" "$IMGCACHE" --root "$RC" --json push "$ORIG/kicbase:v1" "$DEST/$repo:v1" >"$f.json" 2>"$f.err"; rc=$?
    else
      /usr/bin/time -f '%e %U %S %M' -o "$f.time" unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
        sh "$BIC/first-$i" "$BIC_DIR" "${SK[@]}" copy -q --dest-tls-verify=false "dir:$KDIR" "docker://$DEST/$repo:v1" >"$f.out" 2>"$f.err"; rc=$?
    fi
    b=$(now)
    s1="$(daemon_cpu "$REG_SERVER_PID")"
    reqs "$REGLOG" "$n0" >"$f.reqs"
    if [ "$rc" != 0 ]; then fail "$row" "run $i: $who exit $rc: $(tail -1 "$f.err")" "$([ "$who" = imgcache ] && echo 1)"; continue; fi
    if [ "$who" = imgcache ] && ! jq -e --argjson n "$NBLOBS" --argjson b "$IMG_BYTES" --arg d "$V1_DIGEST" \
      '.blobs_uploaded == $n and .blobs_mounted == 0 and .blobs_present == 0 and .already_present == false
       and .bytes_uploaded >= $b and .bytes_uploaded <= $b * 1.25 and .digest == $d' "$f.json" >/dev/null 2>&1; then
      fail "$row" "run $i: the JSON says $(jq -c '{blobs_uploaded, blobs_mounted, blobs_present, bytes_uploaded, already_present}' "$f.json" 2>/dev/null), not a full upload of $NBLOBS blobs, $IMG_BYTES B"
      continue
    fi
    puts="$(count "$f.reqs" "\$1 == \"$repo\" && \$2 == \"PUT\" && \$3 == \"upload\" && \$4 == 201")"
    mounts="$(count "$f.reqs" "\$1 == \"$repo\" && \$3 == \"mount\"")"
    if [ "$puts" != "$NBLOBS" ] || [ "$mounts" != 0 ]; then
      fail "$row" "run $i: the access log shows $puts finished blob uploads and $mounts mounts for $repo, not $NBLOBS and 0"; continue
    fi
    got="$(reg_digest "$repo:v1")"
    if [ "$got" != "$V1_DIGEST" ]; then fail "$row" "run $i: $DEST/$repo:v1 has digest ${got:-none}, not $V1_DIGEST" "$([ "$who" = imgcache ] && echo 1)"; continue; fi
    read -r _ us sy mx <<<"$(gt "$f.time")"
    if [ "$who" = imgcache ]; then
      t_ic+=("$(elapsed "$a" "$b")"); u_ic+=("$(awk -v u="$us" -v s="$sy" 'BEGIN { print u + s }')"); m_ic+=("$mx"); c_reg_ic+=("$(elapsed "$s0" "$s1")")
    else
      t_sk+=("$(elapsed "$a" "$b")"); u_sk+=("$(awk -v u="$us" -v s="$sy" 'BEGIN { print u + s }')"); m_sk+=("$mx"); c_reg_sk+=("$(elapsed "$s0" "$s1")")
    fi
  done
done
LAST_IC_REPO="first/ic-$RUNS"; LAST_SK_REPO="first/sk-$RUNS"; LAST_SK_BIC="$BIC/first-$RUNS"
unmeasured 1 && { t_ic=(); m_ic=(); }; unmeasured 1-peer && { t_sk=(); m_sk=(); }
T1_IC="$(median "${t_ic[@]}")"; T1_SK="$(median "${t_sk[@]}")"; r1="$(div "$T1_IC" "$T1_SK")"
ic_json1="$RAW/first-imgcache-1.json"
patches="$(count "$RAW/first-imgcache-1.reqs" '$2 == "PATCH"')"; sk_patches="$(count "$RAW/first-skopeo-1.reqs" '$2 == "PATCH"')"
ROWS+=("$(printf '1\tfirst push of kicbase:v1 (%s, %s blobs, %s over 16 MiB) to a fresh repository: imgcache push (from its cache) vs skopeo copy dir: docker://; median of %s, alternating (imgcache %s, %s, CPU %s s, registry CPU %s s, %s PATCH; skopeo %s, %s, CPU %s s, registry CPU %s s, %s PATCH; every run: %s blob uploads finished in the access log, no mount, the digest at the destination = the digest at the origin)\t%s\t%s\t%s\t<= 0.5x\t%s\t%s' \
  "$(fmt_b "$IMG_BYTES")" "$NBLOBS" "$BIG_BLOBS" "$RUNS" "$(rng "${t_ic[@]}")" "$(mbs "$IMG_BYTES" "$T1_IC")" "$(f1 "$(median "${u_ic[@]}")")" "$(f1 "$(median "${c_reg_ic[@]}")")" "$patches" \
  "$(rng "${t_sk[@]}")" "$(mbs "$IMG_BYTES" "$T1_SK")" "$(f1 "$(median "${u_sk[@]}")")" "$(f1 "$(median "${c_reg_sk[@]}")")" "$sk_patches" "$NBLOBS" \
  "$(cell 1 "$(fmt_t "$T1_IC")")" "$(cell 1-peer "$(fmt_t "$T1_SK")")" "$(ratio "$r1")" "$(yesno "$r1" '<=' 0.5)" "$(note_of 1)")")
RAWLINES+=("$(printf '# raw\trow=1\timgcache_s=%s\tskopeo_s=%s\timgcache_cpu_s=%s\tskopeo_cpu_s=%s\timgcache_rss_kib=%s\tskopeo_rss_kib=%s\tregistry_cpu_imgcache_s=%s\tregistry_cpu_skopeo_s=%s\tbytes_uploaded=%s' \
  "${t_ic[*]}" "${t_sk[*]}" "${u_ic[*]}" "${u_sk[*]}" "${m_ic[*]}" "${m_sk[*]}" "${c_reg_ic[*]}" "${c_reg_sk[*]}" "$(jq -r .bytes_uploaded "$ic_json1" 2>/dev/null)")")

# ==== 2. a second push: the same repository again, and another repository ================================
# RC is the cache of row 1's last imgcache run (it knows first/ic-RUNS); LAST_SK_BIC skopeo's
declare -A T2 REQ2 UP2
mounts_sk=""
# label_of DIGEST : "the config, N B" or "layer K, N B" of kicbase:v1
label_of() {
  jq -r --arg d "$1" '(.config | select(.digest == $d) | "the config, \(.size) B"), (.layers | to_entries[] | select(.value.digest == $d) | "layer \(.key), \(.value.size) B")' "$ORIGIN_MAN" | head -1
}
if unmeasured 1 || unmeasured 1-peer; then
  log "row 1 failed: row 2 has nothing to push again"
  for r in 2a 2b; do NA[$r]="row 1 failed"; done
else
  # quick NAME WHO REPOFMT CMD JQFILTER : hyperfine of CMD (imgcache: every answer checked with
  # JQFILTER); the access log of those runs must show no blob upload for the repositories
  quick() {
    local name="$1" who="$2" pat="$3" cmd="$4" filt="$5" n0 t rc uploads runs=$((QUICK_RUNS + 1)) bad=0 r
    n0="$(logmark "$REGLOG")"
    if [ "$who" = imgcache ]; then
      t="$(hf_docs "$name" "$QUICK_RUNS" 1 "$cmd" "$filt" --argjson n "$NBLOBS" --arg d "$V1_DIGEST")"; rc=$?
      [ "$rc" = 0 ] || { hf_failed "$name" "$rc"; return 0; }
    else
      t="$(hf "$name" "$QUICK_RUNS" 1 "$cmd" bash)" || { NA[$name]="hyperfine failed, see raw/hf-$name.txt"; return 0; }
    fi
    reqs "$REGLOG" "$n0" | awk -v p="$pat" '$1 ~ p' >"$RAW/$name.reqs"
    uploads="$(count "$RAW/$name.reqs" '$3 == "upload"')"
    if [ "$who" = imgcache ] && [ "$uploads" != 0 ]; then
      fail "$name" "the access log shows $uploads blob upload requests (POST, PATCH or PUT) during the runs"; return 0
    fi
    # what the peer uploaded: "N blobs uploaded per run (the config, ...)"
    UP2[$name]="$(awk '$5 != "" { print $5 }' "$RAW/$name.reqs" | sort | uniq -c | while read -r c d; do
      echo "$c $(label_of "$d")"; done | awk -v r="$runs" '{ n += $1; $1 = ""; l = l (l ? ";" : "") $0 } END { printf "%.3g blob(s) uploaded per run%s", n / r, (n ? " (" substr(l, 2) ")" : "") }')"
    # the tags the runs pushed have the image's digest
    while read -r r; do
      [ "$(reg_digest "$r:v1")" = "$V1_DIGEST" ] || { bad=1; fail "$name" "$DEST/$r:v1 does not have digest $V1_DIGEST" "$([ "$who" = imgcache ] && echo 1)"; break; }
    done < <(awk '$2 == "PUT" && $3 == "manifest" {print $1}' "$RAW/$name.reqs" | sort -u)
    [ "$bad" = 0 ] || return 0
    T2[$name]="$t"
    REQ2[$name]="$(awk -v r="$runs" '{ c[$2 " " $3]++ } END { s = ""; for (k in c) s = s (s ? ", " : "") sprintf("%.3g", c[k] / r) " " k; print s }' "$RAW/$name.reqs")"
  }
  # 2a: the same repository again
  quick 2a imgcache "^$LAST_IC_REPO\$" "$(printf '%q ' "$IMGCACHE" --root "$RC" --json push "$ORIG/kicbase:v1" "$DEST/$LAST_IC_REPO:v1")" \
    '.already_present == true and .bytes_uploaded == 0 and .blobs_uploaded == 0 and .blobs_mounted == 0 and .manifests_pushed == 0 and .digest == $d'
  quick 2a-peer skopeo "^$LAST_SK_REPO\$" "$(skw_cmd "$LAST_SK_BIC" copy -q --dest-tls-verify=false "dir:$KDIR" "docker://$DEST/$LAST_SK_REPO:v1")" ''
  # 2b: another repository each run (a counter file names it)
  echo 1 >"$PD/tmp-counter-ic"; echo 1 >"$PD/tmp-counter-sk"
  quick 2b imgcache '^other/ic-' "read -r n <$(printf %q "$PD/tmp-counter-ic"); echo \$((n + 1)) >$(printf %q "$PD/tmp-counter-ic"); $(printf '%q ' "$IMGCACHE" --root "$RC" --json push "$ORIG/kicbase:v1")$(printf %q "$DEST/other/ic-")\$n:v1" \
    '.blobs_mounted == $n and .blobs_uploaded == 0 and .bytes_uploaded == 0 and .already_present == false and .digest == $d'
  quick 2b-peer skopeo '^other/sk-' "read -r n <$(printf %q "$PD/tmp-counter-sk"); echo \$((n + 1)) >$(printf %q "$PD/tmp-counter-sk"); $(skw_cmd "$LAST_SK_BIC" copy -q --dest-tls-verify=false "dir:$KDIR") docker://$DEST/other/sk-\$n:v1" ''
  rm -f "$PD/tmp-counter-ic" "$PD/tmp-counter-sk"
  [ -s "$RAW/2b-peer.reqs" ] && mounts_sk="$(count "$RAW/2b-peer.reqs" '$3 == "mount" && $4 == 201')"
fi
for r in 2a 2b; do
  t="${T2[$r]:-}"; tp="${T2[$r-peer]:-}"
  unmeasured "$r" && t=""; unmeasured "$r-peer" && tp=""
  rr="$(div "$t" "$T1_IC")"; rp="$(div "$tp" "$T1_SK")"; rx="$(div "$t" "$tp")"
  if [ "$r" = 2a ]; then what="push the same image again to the same repository ($LAST_IC_REPO, $LAST_SK_REPO)"; else what="push it to another, new repository of the same registry each run (a mount; skopeo mounted ${mounts_sk:-?} blobs in $((QUICK_RUNS + 1)) runs)"; fi
  ROWS+=("$(printf '%s\t%s; hyperfine, %s runs; ratio: imgcache / row 1 imgcache (skopeo / row 1 skopeo: %s; imgcache / skopeo: %s); requests per run: imgcache %s; skopeo %s; imgcache: no blob upload in the access log, skopeo: %s\t%s\t%s\t%s\t<= 0.1x of row 1\t%s\t%s' \
    "$r" "$what" "$QUICK_RUNS" "$(ratio "$rp")" "$(ratio "$rx")" "${REQ2[$r]:-n/a}" "${REQ2[$r-peer]:-n/a}" "${UP2[$r-peer]:-n/a}" \
    "$(cell "$r" "$(fmt_t "$t")")" "$(cell "$r-peer" "$(fmt_t "$tp")")" "$(ratio "$rr")" "$(yesno "$rr" '<=' 0.1)" "$(note_of "$r")")")
done
RAWLINES+=("$(printf '# raw\trow=2\tsame_repo_imgcache_s=%s\tsame_repo_skopeo_s=%s\tother_repo_imgcache_s=%s\tother_repo_skopeo_s=%s' \
  "${T2[2a]:-}" "${T2[2a-peer]:-}" "${T2[2b]:-}" "${T2[2b-peer]:-}")")

# ==== 3. sync of N_SYNC images, N_NEW of them new at the destination =======================================
DEL_LOG="$RAW/reset.log"
# reset_new : the N_NEW images leave the destination (manifest, then the blob links); checked 404
reset_new() {
  local n b c
  for n in "${NEW[@]}"; do
    c="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$DEST/v2/mirror/$n/manifests/${S_DIG[$n]}")"
    echo "DELETE mirror/$n manifest: $c" >>"$DEL_LOG"
    for b in ${S_BLOBS[$n]}; do
      c="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$DEST/v2/mirror/$n/blobs/$b")"
      echo "DELETE mirror/$n blob $b: $c" >>"$DEL_LOG"
      [ "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$DEST/v2/mirror/$n/blobs/$b")" = 404 ] || return 1
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $ACCEPT" "http://$DEST/v2/mirror/$n/manifests/v1")" = 404 ] || return 1
  done
}
old_re="^mirror/($(IFS='|'; echo "${OLD[*]}"))\$"
NEW_JSON="$(printf "$ORIG/%s:v1\n" "${NEW[@]}" | jq -R . | jq -sc .)"
t_ic=(); t_sy=(); t_lp=(); R3=(); m3=()
declare -A Q3 O3
for i in $(seq 1 "$SYNC_RUNS"); do
  for who in imgcache skopeo-sync skopeo-copy; do
    case "$who" in imgcache) row=3a ;; skopeo-sync) row=3a-peer ;; *) row=3c-peer ;; esac
    f="$RAW/sync-$who-$i"
    reset_new || { fail "$row" "run $i: the new images could not be removed from the destination (see raw/reset.log)"; continue; }
    if [ "$who" = imgcache ]; then fresh_cache "$T_SYNC" || die "cannot copy $T_SYNC"; else rm -rf "$BIC/sync-$i-$who"; mkdir -p "$BIC/sync-$i-$who"; fi
    sync
    n0="$(logmark "$REGLOG")"; o0="$(logmark "$ORIG_DATA/_ctl/registry.log")"
    log "3: sync of ${#SMALL_NAMES[@]} images ($N_NEW new) $i/$SYNC_RUNS: $who"
    a=$(now)
    case "$who" in
      imgcache) /usr/bin/time -f '%e %U %S %M' -o "$f.time" "$IMGCACHE" --root "$RC" --json sync "$LIST" --to "$DEST/mirror" >"$f.json" 2>"$f.err"; rc=$? ;;
      skopeo-sync) skw "$BIC/sync-$i-$who" sync --src yaml --dest docker --dest-tls-verify=false "$YAML" "$DEST/mirror" >"$f.out" 2>"$f.err"; rc=$? ;;
      *)
        rc=0
        for n in "${SMALL_NAMES[@]}"; do
          skw "$BIC/sync-$i-$who" copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$ORIG/$n:v1" "docker://$DEST/mirror/$n:v1" >>"$f.out" 2>>"$f.err" || { rc=$?; break; }
        done ;;
    esac
    b=$(now)
    reqs "$REGLOG" "$n0" >"$f.reqs"; reqs "$ORIG_DATA/_ctl/registry.log" "$o0" >"$f.origin-reqs"
    if [ "$rc" != 0 ]; then fail "$row" "run $i: $who exit $rc: $(tail -1 "$f.err")" "$([ "$who" = imgcache ] && echo 1)"; continue; fi
    if [ "$who" = imgcache ] && ! jq -e --argjson old "${#OLD[@]}" --argjson new "$N_NEW" --argjson b "$NEW_BYTES" \
      '.skipped == $old and .pushed == $new and .failed == 0 and .bytes_uploaded == $b' "$f.json" >/dev/null 2>&1; then
      fail "$row" "run $i: the JSON says $(jq -c '{pushed, skipped, failed, bytes_uploaded}' "$f.json" 2>/dev/null), not $N_NEW pushed ($NEW_BYTES B) and ${#OLD[@]} skipped"; continue
    fi
    bad=""
    for n in "${NEW[@]}"; do
      [ "$(man_digest "$DEST" "mirror/$n" v1)" = "${S_DIG[$n]}" ] || { bad="$DEST/mirror/$n:v1 does not have the origin's digest ${S_DIG[$n]}"; break; }
      up="$(count "$f.reqs" "\$1 == \"mirror/$n\" && \$2 == \"PUT\" && \$3 == \"upload\" && \$4 == 201")"
      [ "$up" = 2 ] || { bad="the access log shows $up finished blob uploads for mirror/$n, not 2"; break; }
    done
    if [ "$who" = imgcache ] && [ -z "$bad" ]; then
      jq -e --argjson new "$NEW_JSON" '[.images[] | select(.status == "pushed") | .source] | sort == ($new | sort)' "$f.json" >/dev/null 2>&1 ||
        bad="the images pushed are not the new ones"
    fi
    [ -z "$bad" ] || { fail "$row" "run $i: $bad" "$([ "$who" = imgcache ] && echo 1)"; continue; }
    awk -v re="$old_re" '$1 ~ re' "$f.reqs" >"$f.old-reqs"
    awk -v re="^($(IFS='|'; echo "${OLD[*]}"))\$" '$1 ~ re' "$f.origin-reqs" >"$f.old-origin-reqs"
    Q3[$who]="$(summary "$f.old-reqs")"; O3[$who]="$(summary "$f.old-origin-reqs")"
    if [ "$who" = imgcache ]; then
      nonman="$(count "$f.old-reqs" '$3 != "manifest" || ($2 != "HEAD" && $2 != "GET")')"
      R3+=("$(wc -l <"$f.old-reqs") $nonman")
      [ "$nonman" = 0 ] || { fail 3b "run $i: $nonman requests other than a manifest HEAD or GET for the images already there ($(summary "$f.old-reqs"))"; }
      t_ic+=("$(elapsed "$a" "$b")"); m3+=("$(gt "$f.time" | awk '{print $4}')")
    elif [ "$who" = skopeo-sync ]; then t_sy+=("$(elapsed "$a" "$b")"); R3P="$(wc -l <"$f.old-reqs")"
    else t_lp+=("$(elapsed "$a" "$b")"); fi
  done
done
reset_new || log "the new images could not be removed at the end"
for n in "${OLD[@]}"; do
  [ "$(man_digest "$DEST" "mirror/$n" v1)" = "${S_DIG[$n]}" ] || { fail 3a "after the runs, $DEST/mirror/$n:v1 does not have the origin's digest" 1; break; }
done
unmeasured 3a && t_ic=(); unmeasured 3a-peer && t_sy=(); unmeasured 3c-peer && t_lp=()
T3_IC="$(median "${t_ic[@]}")"; T3_SY="$(median "${t_sy[@]}")"; T3_LP="$(median "${t_lp[@]}")"
r3="$(div "$T3_IC" "$T3_SY")"; r3l="$(div "$T3_IC" "$T3_LP")"
ROWS+=("$(printf '3a\tsync of %s small images (1 layer of %s KiB each) to DEST/mirror, %s of them new (%s) and %s already there: imgcache sync (its cache holds the %s, not the new ones) vs skopeo sync --src yaml (the fairer peer: one process, the same REGISTRY/PREFIX/PATH:TAG, it skips an image already there); median of %s, alternating, the new images deleted before each run (imgcache %s, peak RSS %s; skopeo sync %s)\t%s\t%s\t%s\t-\t-\t%s' \
  "$N_SYNC" "$SMALL_KIB" "$N_NEW" "$(fmt_b "$NEW_BYTES")" "${#OLD[@]}" "${#OLD[@]}" "$SYNC_RUNS" "$(rng "${t_ic[@]}")" "$(mib "$(maxof "${m3[@]}")")" "$(rng "${t_sy[@]}")" \
  "$(cell 3a "$(fmt_t "$T3_IC")")" "$(cell 3a-peer "$(fmt_t "$T3_SY")")" "$(ratio "$r3")" "$(note_of 3a)")")
r3b_ic="$(printf '%s\n' "${R3[@]}" | awk 'NF { print $1; exit }')"
r3b_ok=""; [ "${#R3[@]}" -gt 0 ] && ! unmeasured 3b && r3b_ok=yes; unmeasured 3b && r3b_ok=no
ROWS+=("$(printf '3b\trequests at the destination for the %s images already there, per sync (imgcache: %s; skopeo sync: %s; the loop of 3c: %s); at the origin: imgcache %s; skopeo sync %s\t%s\t%s\t-\tmanifest HEAD/GET only\t%s\t%s' \
  "${#OLD[@]}" "${Q3[imgcache]:-n/a}" "${Q3[skopeo-sync]:-n/a}" "${Q3[skopeo-copy]:-n/a}" "${O3[imgcache]:-n/a}" "${O3[skopeo-sync]:-n/a}" \
  "$(cell 3b "${r3b_ic:-n/a}")" "${R3P:-n/a}" "${r3b_ok:-n/a}" "$(note_of 3b)")")
ROWS+=("$(printf '3c\tthe same sync as a loop of %s skopeo copy docker:// docker://, for information (%s); ratio: imgcache sync / the loop\t%s\t%s\t%s\t-\t-\t%s' \
  "$N_SYNC" "$(rng "${t_lp[@]}")" "$(cell 3a "$(fmt_t "$T3_IC")")" "$(cell 3c-peer "$(fmt_t "$T3_LP")")" "$(ratio "$r3l")" "$(note_of 3c)")")
RAWLINES+=("$(printf '# raw\trow=3\timgcache_s=%s\tskopeo_sync_s=%s\tskopeo_copy_loop_s=%s\timgcache_requests_old_total_nonmanifest=%s\timgcache_rss_kib=%s' \
  "${t_ic[*]}" "${t_sy[*]}" "${t_lp[*]}" "$(printf '%s,' "${R3[@]}")" "${m3[*]}")")

# ==== 4. peak RSS of imgcache push ===========================================================================
mx_ic="$(maxof "${m_ic[@]}")"; mx_sk="$(maxof "${m_sk[@]}")"
ROWS+=("$(printf '4\tpeak RSS (GNU time) of the first push of row 1, max of %s runs (imgcache push vs skopeo copy)\t%s\t%s\t%s\t-\t-\t%s' \
  "$RUNS" "$(cell 1 "$(mib "$mx_ic")")" "$(cell 1-peer "$(mib "$mx_sk")")" "$(ratio "$(div "$mx_ic" "$mx_sk")")" "$(note_of 1)")")
BENCH_S=$(($(date +%s) - TB))

# ---- report ----------------------------------------------------------------------------------------------
rm -rf "$RC"
TSV="$PD/results.tsv"; MD="$PD/results.md"
{ tsv_rows; printf '%s\n' "${RAWLINES[@]}"; } >"$TSV"
{
  echo "## imgcache push bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)"
  echo "- registries: docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null), destination http://$DEST (pid $REG_SERVER_PID, $REGDATA, emptied at the start), origin http://$ORIG ($ORIG_DATA); skopeo $SKOPEO_V (in a private mount namespace, its blob-info cache bound to a directory of $BIC), hyperfine $(hyperfine --version | cut -d' ' -f2)"
  echo "- image: kicbase:v1 $V1_DIGEST (image $IMAGE_ID, $NBLOBS blobs, $IMG_BYTES B); imgcache pushes from a copy of $T_KIC (pulled from the origin), skopeo from $KDIR; $N_SYNC small images $ORIG/sync-00:v1.. ($SMALL_KIB KiB of data each; $N_NEW new: ${NEW[*]})"
  echo "- method: rows 1 and 3 alternate the tools, $RUNS and $SYNC_RUNS runs each, medians; row 2 hyperfine ($QUICK_RUNS runs + 1 warmup); page cache warm (the cache's blobs and the dir: copy); sync before each run. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  md_table '**'
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
finish
