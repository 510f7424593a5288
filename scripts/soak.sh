#!/usr/bin/env bash
# scripts/soak.sh [KILLS] [IMAGE] : crash-safety soak of the imgcache cache, bounded in count and time.
#
#   KILLS   how many SIGKILLs must land on a running operation (default 10); an operation that
#           finished before its kill does not count, and at most 4 x KILLS rounds are run
#   IMAGE   small (default): the busybox:v1 and multiarch:v1 test images (~1 MB each), the short
#                            CI mode (`scripts/soak.sh 10` takes well under 2 minutes)
#           kicbase:         kicbase:v1 (10 layers, 597 MB gzip) and kicbase:v2 (8 layers shared
#                            with v1, 2 new) of bench/ (BENCH_DIR), the long mode
#
# Registry: with IMAGE=small and $TEST_REGISTRY set (source /tmp/imgcache-testenv/env.sh), the
# test registry is used: busybox:v1 and multiarch:v1 are copied there (skopeo) to the repositories
# soak-busybox and soak-multiarch, so that its access log tells the soak's requests apart.
# Otherwise a private registry is started like bench/pull.sh does (scripts/testenv/start-registry.sh,
# 127.0.0.1:$PORT, data in SOAK_DIR/registry) and stopped on exit: small images are copied from
# the test environment's OCI layout (built by scripts/testenv/make-test-images.sh if missing);
# kicbase images come from BENCH_DIR/registry (hard links, no copy) or are pushed from
# BENCH_DIR/images/oci and BENCH_DIR/pull/oci (run bench/pull.sh once to build them).
#
# Each round:
#   1. picks an operation at random: pull (of an image not fully cached: first, unkilled, half
#      the time every reference is removed and pruned, a quarter of the time the image's own
#      reference and blobs, a quarter of the time only its reference), import (of a tarball saved
#      at setup, prepared the same way), save (-o SOAK_DIR/out/save.tar), prune (with
#      --max-size 1, which evicts every reference; or after an rm of one or of every
#      reference), rm, push (of a cached image, every platform, to a second registry started
#      afresh for the round: nothing there to skip or mount), sync (of both images to that
#      registry's soak-sync/ prefix, half the time from an empty cache);
#   2. starts it with the release binary and SIGKILLs it after a random delay, uniform in
#      [0, T] ms where T is that operation's own duration measured at setup (so kills land
#      mid-download, mid-copy, mid-write; MAX_DELAY_MS overrides T);
#   3. checks the cache is CLEAN:
#        - `imgcache fsck --deep --json`: ok, and missing, corrupt, broken_references and
#          lost_references all empty. Allowed leftovers, not failures: `unreferenced` blobs
#          (complete, verified blobs no reference needs yet: a pull or import killed after
#          storing blobs, before recording its reference; prune removes them), resumable
#          `ingest/*.partial` downloads and `ingest/*.tmp` files of small writes (swept after 24 h);
#        - independently of imgcache: every file in blobs/sha256/ hashes (sha256sum) to its name;
#        - for every cached reference (`ls --json`): its image ID is the one the registry serves
#          (skopeo), its manifest blob names that config and the expected layers, all present and
#          hashing right; and `imgcache verify --deep --json REF` says ok with that image ID.
#          verify saying ok for an image the independent check finds broken is a failure (and so
#          is verify failing an image that is intact);
#        - after a killed save: SOAK_DIR/out/save.tar is absent or a complete archive that verifies
#          (deep, --expect the image ID); temporary `.save.tar.*.partial` files beside it are
#          counted and removed (a SIGKILLed process cannot remove them);
#      after a push or sync: each destination holds either nothing or the source's exact digest
#      with every manifest and blob it names (a registry never shows a manifest whose blobs are
#      missing), and the push cache is fsck --deep clean; then the same push or sync, unkilled,
#      must complete with the source's digest at every destination;
#   4. pulls every soak image: each must succeed with the right image ID, and a download the kill
#      interrupted must resume: the registry's access log must show exactly size - partial bytes
#      sent for each blob that had a partial (bytes really transferred, from the log's
#      http.response.written; the JSON bytes_fetched counts whole blobs). Then fsck must be clean.
#   On a failure the evidence is kept in SOAK_DIR/failures/N/ and the cache is repaired
#   (`fsck --repair`, else started afresh) so the soak goes on.
#
# Output: a summary (kills, per-operation counts, failures, elapsed) on stdout and in
# SOAK_DIR/soak-summary.txt; one line per round in SOAK_DIR/rounds.tsv.
# Exit: 0 no failure, 1 failures found, 3 setup failed.
#
# Env knobs:
#   IMGCACHE=target/release/imgcache   binary (copied to SOAK_DIR/bin first; built with
#                                     `cargo build --release -p imgcache-cli` if missing)
#   SOAK_DIR=/tmp/imgcache-soak        work directory (cache, tarballs, logs; KEEP=1 keeps the cache)
#   TIME_LIMIT=110 (small) / 3600 (kicbase)   seconds: no new round starts after that
#   SEED=$RANDOM                       random seed (printed; rerun with it to replay the choices)
#   MAX_DELAY_MS                       fixed upper bound of the kill delay, instead of measured
#   PORT=5200                          port of the private registry (PORT+1: the push destination)
#   BENCH_DIR=/tmp/imgcache-bench      where the kicbase images are
#   OPS="pull import save prune rm push sync"   operations to draw from (repeat a name to weight it)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$HERE/.." && pwd)"
TESTENV_SCRIPTS="$HERE/testenv"
KILLS="${1:-10}"
IMAGE="${2:-small}"
SOAK_DIR="${SOAK_DIR:-/tmp/imgcache-soak}"
BENCH_DIR="${BENCH_DIR:-/tmp/imgcache-bench}"
PORT="${PORT:-5200}"
SEED="${SEED:-$RANDOM}"
OPS_LIST="${OPS:-pull import save prune rm push sync}"
IMGCACHE_SRC="${IMGCACHE:-$ROOT_DIR/target/release/imgcache}"
case "$IMAGE" in
  small) TIME_LIMIT="${TIME_LIMIT:-110}" ;;
  kicbase) TIME_LIMIT="${TIME_LIMIT:-3600}" ;;
  *) echo "usage: scripts/soak.sh [KILLS] [small|kicbase]" >&2; exit 2 ;;
esac
[[ "$KILLS" =~ ^[0-9]+$ ]] || { echo "usage: scripts/soak.sh [KILLS] [small|kicbase]" >&2; exit 2; }
RANDOM="$SEED"

log() { printf '[soak] %s\n' "$*" >&2; }
die() { printf '[soak] ERROR: %s\n' "$*" >&2; exit 3; }

# shellcheck source-path=SCRIPTDIR source=testenv/lib.sh
. "$TESTENV_SCRIPTS/lib.sh"
need_cmds skopeo:skopeo jq:jq curl:curl docker-registry:docker-registry sha256sum:coreutils ||
  die "could not install the tools"

T_START=$(date +%s)
mkdir -p "$SOAK_DIR" || die "cannot create $SOAK_DIR"
SOAK_DIR="$(cd "$SOAK_DIR" && pwd)"
CACHE="$SOAK_DIR/cache-$IMAGE"
PCACHE="$SOAK_DIR/pushcache-$IMAGE" # the push and sync rounds' own cache: every platform cached
SEEDCACHE="$SOAK_DIR/seed-$IMAGE"
TARS="$SOAK_DIR/tars-$IMAGE"
OUT="$SOAK_DIR/out"
RUN="$SOAK_DIR/run"
FAILDIR="$SOAK_DIR/failures"
rm -rf "$CACHE" "$PCACHE" "$OUT" "$RUN" "$FAILDIR"
mkdir -p "$TARS" "$OUT" "$RUN" "$FAILDIR" "$SOAK_DIR/bin"

# ---- the binary -----------------------------------------------------------------------------------
case "$IMGCACHE_SRC" in /*) ;; *) IMGCACHE_SRC="$ROOT_DIR/$IMGCACHE_SRC" ;; esac
if [ ! -x "$IMGCACHE_SRC" ]; then
  log "no binary at $IMGCACHE_SRC: cargo build --release -p imgcache-cli"
  (cd "$ROOT_DIR" && nice -n 10 cargo build --release -p imgcache-cli >&2) || die "build failed"
fi
# A private copy: a rebuild during the soak must not change the binary under test.
BIN="$SOAK_DIR/bin/imgcache"
if ! { cp -f "$IMGCACHE_SRC" "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN"; }; then die "cannot copy $IMGCACHE_SRC"; fi
"$BIN" fsck --help >/dev/null 2>&1 || die "$BIN has no fsck command"
BIN_ID="$("$BIN" --version 2>/dev/null | head -1), sha256 $(sha256sum "$BIN" | cut -c1-12)"
# Runs of imgcache see no credentials, engines or config of this machine.
export HOME="$SOAK_DIR/home"
mkdir -p "$HOME"
unset DOCKER_CONFIG REGISTRY_AUTH_FILE XDG_RUNTIME_DIR XDG_CONFIG_HOME XDG_CACHE_HOME IMGCACHE_HOME IMGCACHE_LOG
ic() { "$BIN" --root "$CACHE" "$@"; }

# ---- the registry ---------------------------------------------------------------------------------
OWN_REG=0
REGDATA="$SOAK_DIR/registry"
SK=(skopeo --insecure-policy)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ "$OWN_REG" = 1 ]; then "$TESTENV_SCRIPTS/stop-pidfile.sh" "$REGDATA/_ctl/registry.pid" 20 "$REGDATA/_ctl/config.yml" >/dev/null 2>&1 || true; fi
  stop_dest
  # Any operation still running (interrupted soak) is ours: its PID is in $RUN/op.pid.
  if [ -s "$RUN/op.pid" ]; then kill -KILL "$(cat "$RUN/op.pid")" 2>/dev/null || true; fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$CACHE" "$PCACHE" "$SEEDCACHE" "$OUT" "$RUN" "$DEST_DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The push destination: a registry of its own, started afresh for each push or sync round.
DEST_PORT=$((PORT + 1))
DEST="127.0.0.1:$DEST_PORT"
DEST_DATA="$SOAK_DIR/dest-registry"
stop_dest() { [ -s "$DEST_DATA/_ctl/registry.pid" ] && "$TESTENV_SCRIPTS/stop-pidfile.sh" "$DEST_DATA/_ctl/registry.pid" 20 "$DEST_DATA/_ctl/config.yml" >/dev/null 2>&1; return 0; }
fresh_dest() {
  stop_dest
  rm -rf "$DEST_DATA"
  "$TESTENV_SCRIPTS/start-registry.sh" "$DEST_PORT" "$DEST_DATA" plain >/dev/null || die "could not start the push destination on $DEST"
}

start_own_registry() {
  REG="127.0.0.1:$PORT"
  "$TESTENV_SCRIPTS/start-registry.sh" "$PORT" "$REGDATA" plain >/dev/null || die "could not start a registry on $REG"
  OWN_REG=1
  REGLOG="$REGDATA/_ctl/registry.log"
}
has_manifest() { # has_manifest REPO:TAG -> registry $REG serves it
  local repo="${1%%:*}" tag="${1#*:}"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$REG/v2/$repo/manifests/$tag")" = 200 ]
}

if [ "$IMAGE" = small ]; then
  REPOS=(soak-busybox soak-multiarch)
  if [ -n "${TEST_REGISTRY:-}" ]; then
    REG="$TEST_REGISTRY"
    REGLOG="${REGISTRY_LOG:-}"
    tenv="${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}"
    if [ -z "$REGLOG" ] && [ -f "$tenv/env.sh" ] && grep -q "TEST_REGISTRY=$REG\$" "$tenv/env.sh"; then
      REGLOG="$tenv/registry-data/_ctl/registry.log"
    fi
    log "using the test registry $REG (log: ${REGLOG:-none: resume is not measured})"
    for pair in busybox:v1=soak-busybox:v1 multiarch:v1=soak-multiarch:v1; do
      has_manifest "${pair#*=}" && continue
      "${SK[@]}" copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
        "docker://$REG/${pair%%=*}" "docker://$REG/${pair#*=}" >&2 || die "skopeo copy $REG/${pair%%=*} failed"
    done
  else
    start_own_registry
    log "private registry $REG (data $REGDATA)"
    if ! has_manifest soak-busybox:v1 || ! has_manifest soak-multiarch:v1; then
      LAYOUT="${TEST_OCI_LAYOUT:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/images/oci}"
      if ! jq -e 'any(.manifests[]; .annotations["org.opencontainers.image.ref.name"] == "multiarch-v1")' "$LAYOUT/index.json" >/dev/null 2>&1; then
        LAYOUT="$SOAK_DIR/images/oci"
        log "building the small test images in $LAYOUT (scripts/testenv/make-test-images.sh)"
        KICBASE=0 NO_PUSH=1 "$TESTENV_SCRIPTS/make-test-images.sh" "$REG" "$SOAK_DIR/images" >&2 || die "make-test-images.sh failed"
      fi
      "${SK[@]}" copy -q --dest-tls-verify=false --format v2s2 "oci:$LAYOUT:busybox-v1" "docker://$REG/soak-busybox:v1" >&2 ||
        die "pushing busybox failed"
      "${SK[@]}" copy -q --all --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:multiarch-v1" "docker://$REG/soak-multiarch:v1" >&2 ||
        die "pushing multiarch failed"
    fi
  fi
else
  REPOS=(kicbase kicbase)
  start_own_registry
  log "private registry $REG (data $REGDATA)"
  if ! has_manifest kicbase:v1 || ! has_manifest kicbase:v2; then
    BREG="$BENCH_DIR/registry/docker/registry/v2"
    if [ -d "$BREG/repositories/kicbase/_manifests/tags/v1" ] && [ -d "$BREG/repositories/kicbase/_manifests/tags/v2" ]; then
      log "linking kicbase:v1 and :v2 from $BENCH_DIR/registry (hard links)"
      "$TESTENV_SCRIPTS/stop-pidfile.sh" "$REGDATA/_ctl/registry.pid" 20 "$REGDATA/_ctl/config.yml" >/dev/null 2>&1
      mkdir -p "$REGDATA/docker/registry/v2/repositories"
      cp -aln "$BREG/blobs" "$REGDATA/docker/registry/v2/" || die "cannot link $BREG/blobs"
      cp -aln "$BREG/repositories/kicbase" "$REGDATA/docker/registry/v2/repositories/" || die "cannot link $BREG/repositories/kicbase"
      start_own_registry
    elif [ -s "$BENCH_DIR/images/oci/index.json" ] && [ -s "$BENCH_DIR/pull/oci/index.json" ]; then
      log "pushing kicbase:v1 and :v2 from $BENCH_DIR (skopeo)"
      "${SK[@]}" copy -q --dest-tls-verify=false --format v2s2 "oci:$BENCH_DIR/images/oci:kicbase-v1" "docker://$REG/kicbase:v1" >&2 ||
        die "pushing kicbase:v1 failed"
      "${SK[@]}" copy -q --dest-tls-verify=false --format v2s2 "oci:$BENCH_DIR/pull/oci:kicbase-v2" "docker://$REG/kicbase:v2" >&2 ||
        die "pushing kicbase:v2 failed"
    else
      die "no kicbase image in $BENCH_DIR: run bench/pull.sh once (it builds and pushes it)"
    fi
    { has_manifest kicbase:v1 && has_manifest kicbase:v2; } || die "$REG does not serve kicbase:v1 and :v2"
  fi
fi
if [ "$IMAGE" = small ]; then REFS=("$REG/soak-busybox:v1" "$REG/soak-multiarch:v1"); else REFS=("$REG/kicbase:v1" "$REG/kicbase:v2"); fi
[ -n "${REGLOG:-}" ] && [ ! -f "$REGLOG" ] && REGLOG=""

# ---- what the registry serves, by skopeo (not by imgcache) --------------------------------------
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH="$(uname -m)" ;; esac
declare -A WANT_ID BLOB_SIZE
declare -a WANT_TOP  # per image index: the digest the reference resolves to (index or manifest)
declare -a PLATFORMS # per image index: the platforms of its index ("" for a single manifest)
declare -a IMG_BLOBS   # per image index: "digest digest ..." (config and layers)
declare -a EXTRA_BLOBS # per image index: the other platforms' configs, which a pull also stores
N_IMG=${#REFS[@]}
for i in $(seq 0 $((N_IMG - 1))); do
  ref="${REFS[$i]}"
  raw="$("${SK[@]}" inspect --raw --tls-verify=false "docker://$ref")" || die "skopeo inspect $ref"
  WANT_TOP[i]="sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"
  PLATFORMS[i]="$(jq -r '[.manifests[]?.platform | select(.os != "unknown") | [.os, .architecture, .variant // empty] | join("/")] | join(" ")' <<<"$raw")"
  if jq -e '.manifests' <<<"$raw" >/dev/null; then
    child="$(jq -r --arg a "$ARCH" '[.manifests[] | select(.platform.os == "linux" and .platform.architecture == $a)][0].digest' <<<"$raw")"
    for other in $(jq -r --arg c "$child" '.manifests[] | select(.digest != $c) | .digest' <<<"$raw"); do
      oraw="$("${SK[@]}" inspect --raw --tls-verify=false "docker://${ref%:*}@$other")" || die "skopeo inspect $ref@$other"
      EXTRA_BLOBS[i]+=" $(jq -r .config.digest <<<"$oraw")"
      BLOB_SIZE[$(jq -r .config.digest <<<"$oraw")]="$(jq -r .config.size <<<"$oraw")"
    done
    raw="$("${SK[@]}" inspect --raw --tls-verify=false "docker://${ref%:*}@$child")" || die "skopeo inspect $ref@$child"
  fi
  WANT_ID[$ref]="$(jq -r .config.digest <<<"$raw")"
  cfg_sha="sha256:$("${SK[@]}" inspect --config --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)"
  [ "$cfg_sha" = "${WANT_ID[$ref]}" ] || die "$ref: skopeo's config hashes to $cfg_sha, the manifest names ${WANT_ID[$ref]}"
  IMG_BLOBS[i]="$(jq -r '[.config.digest] + [.layers[].digest] | join(" ")' <<<"$raw")"
  while read -r d s; do BLOB_SIZE[$d]=$s; done < <(jq -r '.config, .layers[] | "\(.digest) \(.size)"' <<<"$raw")
done
FULL_BYTES=0
for d in "${!BLOB_SIZE[@]}"; do FULL_BYTES=$((FULL_BYTES + BLOB_SIZE[$d])); done
log "images: $(for r in "${REFS[@]}"; do printf '%s (%s) ' "$r" "${WANT_ID[$r]:7:12}"; done); ${#BLOB_SIZE[@]} distinct blobs, $FULL_BYTES bytes"

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
# Sleeps N ms without starting a process (a read timing out on a FIFO held open read-write):
# kill delays of a few ms stay a few ms.
mkfifo "$RUN/sleep.fifo" || die "cannot make $RUN/sleep.fifo"
exec {SLEEP_FD}<>"$RUN/sleep.fifo"
ms_sleep() { [ "$1" -gt 0 ] && read -r -t "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))" -u "$SLEEP_FD"; return 0; }
# Tarballs for import: pulled into a seed cache and saved once, checked against skopeo's IDs.
rm -rf "$SEEDCACHE"
for i in $(seq 0 $((N_IMG - 1))); do
  ref="${REFS[$i]}"
  got="$("$BIN" --root "$SEEDCACHE" --json pull "$ref" | jq -r .image_id)"
  [ "$got" = "${WANT_ID[$ref]}" ] || die "seed pull of $ref gave image $got, skopeo says ${WANT_ID[$ref]}"
  if [ ! -s "$TARS/$i.tar" ] || [ ! -s "$TARS/$i.id" ] || [ "$(cat "$TARS/$i.id")" != "$got" ]; then
    "$BIN" --root "$SEEDCACHE" save "$ref" -o "$TARS/$i.tar" >/dev/null || die "save $ref"
    echo "$got" >"$TARS/$i.id"
  fi
done

# ---- per-operation timing, for the kill delays ---------------------------------------------------
# The largest image (index 0) in the state each operation meets in the soak.
declare -A T_OP
timed() { local a b; a=$(now_ms); "$@" >/dev/null 2>&1; local rc=$?; b=$(now_ms); echo $((b - a)); return $rc; }
rm -rf "$CACHE"
T_OP[pull]=$(timed ic pull "${REFS[0]}") || die "timing pull failed"
T_OP[save]=$(timed ic save "${REFS[0]}" -o "$OUT/save.tar") || die "timing save failed"
T_OP[rm]=$(timed ic rm "${REFS[0]}") || die "timing rm failed"
T_OP[prune]=$(timed ic prune) || die "timing prune failed"
T_OP[import]=$(timed ic import "$TARS/0.tar") || die "timing import failed"
rm -rf "$CACHE" "$OUT/save.tar"
# push and sync: every platform of both images in the push cache, to a fresh destination.
fill_pcache() {
  local j p
  for j in $(seq 0 $((N_IMG - 1))); do
    "$BIN" --root "$PCACHE" pull "${REFS[$j]}" >/dev/null 2>&1 || return 1
    for p in ${PLATFORMS[$j]}; do "$BIN" --root "$PCACHE" pull --platform "$p" "${REFS[$j]}" >/dev/null 2>&1 || return 1; done
  done
}
fill_pcache || die "filling the push cache failed"
fresh_dest
T_OP[push]=$(timed "$BIN" --root "$PCACHE" push "${REFS[0]}" "$DEST/soak-push/${REPOS[0]}:v1") || die "timing push failed"
fresh_dest
T_OP[sync]=$(timed "$BIN" --root "$PCACHE" sync "${REFS[@]}" --to "$DEST/soak-sync") || die "timing sync failed"
if [ -n "${MAX_DELAY_MS:-}" ]; then for op in "${!T_OP[@]}"; do T_OP[$op]=$MAX_DELAY_MS; done; fi
log "kill delay bounds (ms, measured): $(for op in pull import save prune rm push sync; do printf '%s %s  ' "$op" "${T_OP[$op]}"; done)"

# ---- helpers of a round ---------------------------------------------------------------------------
cached_refs() { ic --json ls 2>/dev/null | jq -r '.images[].reference' | sort -u; }
is_cached() { cached_refs | grep -qxF "$1"; }
rand() { echo $(((RANDOM * 32768 + RANDOM) % ($1 + 1))); } # 0..N
pick_img() { rand $((N_IMG - 1)); }
# drop_image I: makes image I not fully cached, unkilled: half the time every reference is
# removed and pruned (the next pull or import writes every blob), a quarter of the time only I's
# reference and the blobs only it needs, a quarter of the time only its reference.
drop_image() {
  local r
  case "$(rand 3)" in
    0 | 1) for r in $(cached_refs); do ic rm "$r" >/dev/null 2>&1; done; ic prune >/dev/null 2>&1 ;;
    2) is_cached "${REFS[$1]}" && ic rm "${REFS[$1]}" >/dev/null 2>&1; ic prune >/dev/null 2>&1 ;;
    *) is_cached "${REFS[$1]}" && ic rm "${REFS[$1]}" >/dev/null 2>&1 ;;
  esac
  return 0
}

declare -A N_RUN N_KILLED
FAILURES=0; FAIL_LINES=(); ROUND=0; PARTIAL_ROUNDS=0; RESUMED=0; RESUME_SAVED=0; TRANSFERRED=0
declare -A TMP_SEEN=() PEAK=()
# peak CATEGORY CMD...: runs CMD under GNU time (when installed), keeping the largest peak RSS
# (KiB) per category.
peak() {
  local cat="$1" rc kib
  shift
  [ "$1" = ic ] && set -- "$BIN" --root "$CACHE" "${@:2}"
  if [ ! -x /usr/bin/time ]; then "$@"; return; fi
  /usr/bin/time -f %M -o "$RUN/rss.$cat" "$@"; rc=$?
  kib="$(tail -1 "$RUN/rss.$cat" 2>/dev/null)"
  [[ "$kib" =~ ^[0-9]+$ ]] && [ "$kib" -gt "${PEAK[$cat]:-0}" ] && PEAK[$cat]=$kib
  return $rc
}
mib() { [ -n "${1:-}" ] && awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' || echo n/a; }
UNREF_ROUNDS=0; SAVE_TMP_LEFT=0; FSCK_RUNS=0; VERIFY_RUNS=0; BLOBS_HASHED=0; REPAIRS=0
fail() { # fail WHAT DETAIL
  FAILURES=$((FAILURES + 1))
  local d="$FAILDIR/$FAILURES"
  mkdir -p "$d"
  printf 'round %s, op %s, delay %s ms: %s\n%s\n' "$ROUND" "$OP" "$DELAY" "$1" "$2" >"$d/what.txt"
  cp "$RUN"/*.json "$RUN"/*.err "$d/" 2>/dev/null
  FAIL_LINES+=("round $ROUND ($OP killed after ${DELAY} ms): $1")
  log "FAILURE round $ROUND ($OP, ${DELAY} ms): $1"
  printf '%s\n' "$2" | head -20 >&2
}

# check_clean CONTEXT: fsck --deep, blob hashes, every reference; 0 when clean.
check_clean() {
  local ctx="$1" bad=0 f ref
  FSCK_RUNS=$((FSCK_RUNS + 1))
  peak fsck ic --json fsck --deep >"$RUN/fsck.json" 2>"$RUN/fsck.err"
  if ! jq -e '.ok == true and .missing == [] and .corrupt == [] and .broken_references == [] and .lost_references == []' "$RUN/fsck.json" >/dev/null 2>&1; then
    fail "$ctx: fsck --deep is not clean" "$(jq -c '{ok, missing, corrupt, broken_references, lost_references}' "$RUN/fsck.json" 2>/dev/null || cat "$RUN/fsck.err")"
    bad=1
  fi
  [ "$(jq '.unreferenced | length' "$RUN/fsck.json" 2>/dev/null || echo 0)" -gt 0 ] && UNREF_ROUNDS=$((UNREF_ROUNDS + 1))
  # Independently: every blob file hashes to its name.
  declare -gA GOOD=()
  if [ -d "$CACHE/blobs/sha256" ]; then
    while read -r h name; do
      BLOBS_HASHED=$((BLOBS_HASHED + 1))
      if [ "$h" = "$name" ]; then GOOD[sha256:$name]=1; else
        fail "$ctx: blob file $name hashes to $h" "$(ls -l "$CACHE/blobs/sha256/$name")"; bad=1
      fi
    done < <(cd "$CACHE/blobs/sha256" && find . -maxdepth 1 -type f -printf '%f\0' | xargs -0 -r sha256sum | sed 's/  / /')
  fi
  # Every reference: the expected image, intact by our own check, and verify --deep agrees.
  ic --json ls >"$RUN/ls.json" 2>"$RUN/ls.err" || { fail "$ctx: ls failed" "$(cat "$RUN/ls.err")"; return 1; }
  while IFS=$'\t' read -r ref id man; do
    local own_ok=1 why=""
    if [ "${WANT_ID[$ref]:-}" = "" ]; then own_ok=0; why="unknown reference"
    elif [ "$id" != "${WANT_ID[$ref]}" ]; then own_ok=0; why="image $id, the registry's is ${WANT_ID[$ref]}"
    elif [ -z "${GOOD[$man]:-}" ]; then own_ok=0; why="manifest blob $man absent or corrupt"
    else
      local listed want
      listed="$(jq -r '[.config.digest] + [.layers[].digest] | join(" ")' "$CACHE/blobs/sha256/${man#sha256:}" 2>/dev/null)"
      for i in $(seq 0 $((N_IMG - 1))); do [ "${REFS[$i]}" = "$ref" ] && want="${IMG_BLOBS[$i]}"; done
      if [ "$listed" != "$want" ]; then own_ok=0; why="manifest $man names other blobs"
      else for d in $listed; do [ -n "${GOOD[$d]:-}" ] || { own_ok=0; why="blob $d absent or corrupt"; }; done; fi
    fi
    VERIFY_RUNS=$((VERIFY_RUNS + 1))
    peak verify ic --json verify --deep "$ref" >"$RUN/verify.json" 2>"$RUN/verify.err"
    local v_ok v_id
    v_ok="$(jq -r '.ok' "$RUN/verify.json" 2>/dev/null)"; v_id="$(jq -r '.image.image_id' "$RUN/verify.json" 2>/dev/null)"
    if [ "$own_ok" = 0 ] && [ "$v_ok" = true ]; then
      fail "$ctx: verify --deep said ok for the broken image $ref" "$why"; bad=1
    elif [ "$own_ok" = 0 ]; then
      fail "$ctx: cached reference $ref is broken (verify agrees)" "$why"; bad=1
    elif [ "$v_ok" != true ] || [ "$v_id" != "${WANT_ID[$ref]}" ]; then
      fail "$ctx: verify --deep $ref failed an intact image (or gave image $v_id)" "$(jq -c '.image.failures // .error' "$RUN/verify.json" 2>/dev/null; cat "$RUN/verify.err")"; bad=1
    fi
  done < <(jq -r '.images[] | [.reference, .image_id, .manifest_digest] | @tsv' "$RUN/ls.json")
  return $bad
}

# check_dest I DESTREF CONTEXT [required]: the destination holds nothing at DESTREF (unless
# required), or image I's exact digest with every manifest and blob it names.
dest_status() { curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $MANIFEST_TYPES" "http://$DEST/v2/$1"; }
MANIFEST_TYPES='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
check_dest() {
  local i="$1" dref="$2" ctx="$3" required="${4:-}" raw got repo tag m d
  repo="${dref#"$DEST"/}"; tag="${repo##*:}"; repo="${repo%:*}"
  if [ "$(dest_status "$repo/manifests/$tag")" != 200 ]; then
    [ -z "$required" ] && return 0
    fail "$ctx: $dref is missing" ""; return 1
  fi
  raw="$(curl -s -H "Accept: $MANIFEST_TYPES" "http://$DEST/v2/$repo/manifests/$tag")"
  got="sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"
  if [ "$got" != "${WANT_TOP[$i]}" ]; then fail "$ctx: $dref holds $got, the source is ${WANT_TOP[$i]}" ""; return 1; fi
  for m in $(jq -r '.manifests[]?.digest' <<<"$raw") ""; do
    local doc="$raw"
    if [ -n "$m" ]; then
      [ "$(dest_status "$repo/manifests/$m")" = 200 ] || { fail "$ctx: $dref names manifest $m, which the destination lacks" ""; return 1; }
      doc="$(curl -s -H "Accept: $MANIFEST_TYPES" "http://$DEST/v2/$repo/manifests/$m")"
    elif jq -e '.manifests' <<<"$raw" >/dev/null; then continue; fi
    for d in $(jq -r '.config.digest, .layers[].digest' <<<"$doc"); do
      [ "$(dest_status "$repo/blobs/$d")" = 200 ] || { fail "$ctx: $dref names blob $d, which the destination lacks" ""; return 1; }
    done
  done
  return 0
}
# The destinations of a push or sync round.
dests_of() { if [ "$1" = push ]; then echo "$2=$DEST/soak-push/${REPOS[$2]}:v1"; else for j in $(seq 0 $((N_IMG - 1))); do echo "$j=$DEST/soak-sync/${REPOS[$j]}:v1"; done; fi; }

# Blob bytes the registry sent for the soak's repositories since byte offset $1 of its log.
sent_since() {
  [ -n "${REGLOG:-}" ] || { echo 0; return; }
  sleep 0.3 # the registry logs a request once it has sent the response
  local pat
  pat="$(printf '/v2/%s/blobs/|' "${REPOS[@]}")"
  tail -c +"$(($1 + 1))" "$REGLOG" | grep 'msg="response completed"' | grep -E "${pat%|}" |
    grep -E 'http.response.status=20[06]' | sed -n 's/.*http.response.written=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}'
}

# recover: after a failure, make the cache usable for the next round.
recover() {
  REPAIRS=$((REPAIRS + 1))
  ic --json fsck --deep --repair >"$RUN/repair.json" 2>&1
  if ! ic --json fsck --deep 2>/dev/null | jq -e '.ok' >/dev/null; then
    log "fsck --repair did not make the cache clean: starting from an empty cache"
    chmod -R u+w "$CACHE" 2>/dev/null; rm -rf "$CACHE"
  fi
}

# ---- the rounds -----------------------------------------------------------------------------------
read -r -a OPS <<<"$OPS_LIST"
printf 'round\top\tdelay_ms\tkilled\trc\tpartials\tpartial_bytes\tsent_bytes\texpected_bytes\tclean\n' >"$SOAK_DIR/rounds.tsv"
T_LOOP=$(date +%s)
STOPPED_BY_TIME=0
KILLED=0
while [ "$KILLED" -lt "$KILLS" ] && [ "$ROUND" -lt $((4 * KILLS)) ]; do
  if [ $(($(date +%s) - T_START)) -ge "$TIME_LIMIT" ]; then STOPPED_BY_TIME=1; break; fi
  ROUND=$((ROUND + 1))
  OP="${OPS[$(rand $((${#OPS[@]} - 1)))]}"
  i=$(pick_img); ref="${REFS[$i]}"
  args=()
  case "$OP" in
    pull)
      drop_image "$i"
      args=(pull "$ref") ;;
    import)
      drop_image "$i"
      args=(import "$TARS/$i.tar") ;;
    save)
      is_cached "$ref" || ic pull "$ref" >/dev/null 2>&1 || true
      rm -f "$OUT/save.tar"
      args=(save "$ref" -o "$OUT/save.tar") ;;
    prune)
      is_cached "$ref" || ic pull "$ref" >/dev/null 2>&1 || true
      case "$(rand 2)" in
        0) args=(prune --max-size 1) ;;                               # evicts every reference
        1) ic rm "$ref" >/dev/null 2>&1; args=(prune) ;;              # the blobs only it needs
        *) for r in $(cached_refs); do ic rm "$r" >/dev/null 2>&1; done; args=(prune) ;; # all
      esac ;;
    rm)
      is_cached "$ref" || ic pull "$ref" >/dev/null 2>&1 || true
      args=(rm "$ref") ;;
    push)
      fresh_dest
      fill_pcache
      args=(push "$ref" "$DEST/soak-push/${REPOS[$i]}:v1") ;;
    sync)
      fresh_dest
      if [ "$(rand 1)" = 0 ]; then rm -rf "$PCACHE"; else fill_pcache; fi
      args=(sync "${REFS[@]}" --to "$DEST/soak-sync") ;;
  esac
  root="$CACHE"; case "$OP" in push | sync) root="$PCACHE" ;; esac
  OP_IMG=$i # check_clean's loops reuse $i
  DELAY=$(rand "${T_OP[$OP]}")
  N_RUN[$OP]=$((${N_RUN[$OP]:-0} + 1))
  "$BIN" --root "$root" --json "${args[@]}" >"$RUN/op.json" 2>"$RUN/op.err" &
  pid=$!
  echo "$pid" >"$RUN/op.pid"
  ms_sleep "$DELAY"
  # Its peak RSS so far (read with a builtin: no process started before the kill).
  hwm=0
  while read -r k v _; do [ "$k" = VmHWM: ] && hwm=$v; done 2>/dev/null </proc/"$pid"/status
  kill -KILL "$pid" 2>/dev/null
  [ "$hwm" -gt "${PEAK[killed]:-0}" ] && PEAK[killed]=$hwm
  { wait "$pid"; } 2>/dev/null; rc=$?
  rm -f "$RUN/op.pid"
  killed=0
  if [ "$rc" = 137 ]; then killed=1; KILLED=$((KILLED + 1)); N_KILLED[$OP]=$((${N_KILLED[$OP]:-0} + 1))
  elif [ "$rc" != 0 ]; then fail "$OP ${args[*]} exited $rc before the kill" "$(cat "$RUN/op.err")"; fi

  # Leftovers of the kill.
  nparts=0; pbytes=0
  declare -A PART=()
  for f in "$CACHE"/ingest/*.partial; do
    [ -f "$f" ] || continue
    s=$(stat -c %s "$f"); h="$(basename "$f" .partial)"
    PART[sha256:$h]=$s; nparts=$((nparts + 1)); pbytes=$((pbytes + s))
  done
  [ "$pbytes" -gt 0 ] && PARTIAL_ROUNDS=$((PARTIAL_ROUNDS + 1))
  for f in "$CACHE"/ingest/*.tmp; do [ -f "$f" ] && TMP_SEEN[$(basename "$f")]=1; done
  if [ "$OP" = save ]; then
    st=$(find "$OUT" -maxdepth 1 -name '.save.tar.*.partial' | wc -l); SAVE_TMP_LEFT=$((SAVE_TMP_LEFT + st))
    rm -f "$OUT"/.save.tar.*.partial
    if [ -e "$OUT/save.tar" ]; then
      "$BIN" --json verify --deep --no-memo --expect "${WANT_ID[$ref]}" "$OUT/save.tar" >"$RUN/saved.json" 2>"$RUN/saved.err" ||
        fail "save left $OUT/save.tar that does not verify" "$(jq -c '.files[0].error // .files[0].images[0].failures' "$RUN/saved.json" 2>/dev/null)"
    fi
  fi

  clean=1
  check_clean "after the kill" || clean=0
  if [ "$OP" = push ] || [ "$OP" = sync ]; then
    while IFS='=' read -r j dref; do check_dest "$j" "$dref" "after the killed $OP" || clean=0; done < <(dests_of "$OP" "$OP_IMG")
    if ! "$BIN" --root "$PCACHE" --json fsck --deep >"$RUN/pfsck.json" 2>&1 || ! jq -e '.ok and .missing == [] and .corrupt == []' "$RUN/pfsck.json" >/dev/null; then
      fail "the push cache is not clean after the killed $OP" "$(cat "$RUN/pfsck.json")"; clean=0
    fi
    if ! "$BIN" --root "$PCACHE" --json "${args[@]}" >"$RUN/again.json" 2>"$RUN/again.err"; then
      fail "the $OP after the kill failed" "$(cat "$RUN/again.err")"; clean=0
    fi
    while IFS='=' read -r j dref; do check_dest "$j" "$dref" "after the $OP again" required || clean=0; done < <(dests_of "$OP" "$OP_IMG")
  fi

  # A clean pull of every image must succeed and resume what the kill interrupted.
  expected=0
  declare -A SEEN=()
  for j in $(seq 0 $((N_IMG - 1))); do
    for d in ${IMG_BLOBS[$j]} ${EXTRA_BLOBS[$j]:-}; do
      [ -n "${SEEN[$d]:-}" ] && continue; SEEN[$d]=1
      [ -f "$CACHE/blobs/sha256/${d#sha256:}" ] && continue
      expected=$((expected + BLOB_SIZE[$d] - ${PART[$d]:-0}))
    done
  done
  mark=0; [ -n "${REGLOG:-}" ] && mark=$(stat -c %s "$REGLOG")
  for j in $(seq 0 $((N_IMG - 1))); do
    r="${REFS[$j]}"
    if ! peak pull ic --json pull "$r" >"$RUN/pull.json" 2>"$RUN/pull.err"; then
      fail "the clean pull of $r failed" "$(cat "$RUN/pull.err")"; clean=0
    elif [ "$(jq -r .image_id "$RUN/pull.json")" != "${WANT_ID[$r]}" ]; then
      fail "the clean pull of $r gave image $(jq -r .image_id "$RUN/pull.json")" ""; clean=0
    fi
  done
  sent=$(sent_since "$mark"); TRANSFERRED=$((TRANSFERRED + sent))
  if [ -n "${REGLOG:-}" ]; then
    if [ "$sent" != "$expected" ]; then
      fail "the clean pull transferred $sent bytes, expected $expected (blob sizes minus the $pbytes bytes of $nparts partials)" ""; clean=0
    elif [ "$pbytes" -gt 0 ]; then
      RESUMED=$((RESUMED + 1)); RESUME_SAVED=$((RESUME_SAVED + pbytes))
    fi
  fi
  if ! ic --json fsck >"$RUN/fsck2.json" 2>&1 || ! jq -e '.ok' "$RUN/fsck2.json" >/dev/null; then
    fail "fsck after the clean pulls is not clean" "$(cat "$RUN/fsck2.json")"; clean=0
  fi
  [ "$clean" = 1 ] || recover
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$OP" "$DELAY" "$killed" "$rc" "$nparts" "$pbytes" "$sent" "$expected" "$clean" >>"$SOAK_DIR/rounds.tsv"
  log "round $ROUND (kill $KILLED/$KILLS): $OP, kill after $DELAY ms: $([ $killed = 1 ] && echo killed || echo "had exited ($rc)"), $nparts partials ($pbytes B), clean pull sent $sent B (expected $expected)$([ $clean = 1 ] || echo ', FAILED')"
done
T_END=$(date +%s)

# ---- summary ----------------------------------------------------------------------------------------
killed_total=0; for op in "${!N_KILLED[@]}"; do killed_total=$((killed_total + N_KILLED[$op])); done
{
  echo "imgcache soak ($IMAGE): $ROUND rounds, $killed_total SIGKILLs landed mid-operation ($((ROUND - killed_total)) operations had finished before their kill)"
  echo "  binary      $BIN_ID"
  echo "  images      $(for r in "${REFS[@]}"; do printf '%s ' "$r"; done)($FULL_BYTES bytes in ${#BLOB_SIZE[@]} blobs), registry $REG"
  echo "  seed        SEED=$SEED (kill delays uniform in [0, T_op] ms: $(for op in pull import save prune rm push sync; do printf '%s %s ' "$op" "${T_OP[$op]}"; done))"
  printf '  operations '
  for op in pull import save prune rm push sync; do [ -n "${N_RUN[$op]:-}" ] && printf '%s %s/%s killed  ' "$op" "${N_KILLED[$op]:-0}" "${N_RUN[$op]}"; done
  echo
  echo "  leftovers   rounds leaving partial downloads with data: $PARTIAL_ROUNDS; resumed by the clean pull: $RESUMED ($RESUME_SAVED bytes not fetched again); rounds with unreferenced blobs: $UNREF_ROUNDS; ingest/*.tmp files left by kills: ${#TMP_SEEN[@]}; save temp files: $SAVE_TMP_LEFT"
  echo "  checked     fsck --deep $FSCK_RUNS times, $BLOBS_HASHED blob files hashed by sha256sum, verify --deep $VERIFY_RUNS times; clean pulls transferred $TRANSFERRED bytes$([ -n "${REGLOG:-}" ] || echo ' (no registry log: not measured)')"
  echo "  peak RSS    killed operations (VmHWM just before the kill) $(mib "${PEAK[killed]:-}"), clean pulls $(mib "${PEAK[pull]:-}"), fsck --deep $(mib "${PEAK[fsck]:-}"), verify --deep $(mib "${PEAK[verify]:-}")"
  echo "  failures    $FAILURES$([ "$REPAIRS" -gt 0 ] && echo " (cache repaired $REPAIRS times to go on)")"
  for l in "${FAIL_LINES[@]}"; do echo "    - $l"; done
  echo "  elapsed     $((T_END - T_START)) s (setup $((T_LOOP - T_START)) s, rounds $((T_END - T_LOOP)) s)$([ $STOPPED_BY_TIME = 1 ] && echo ", stopped by TIME_LIMIT=$TIME_LIMIT s")$([ "$KILLED" -lt "$KILLS" ] && [ $STOPPED_BY_TIME = 0 ] && echo ", stopped after $ROUND rounds (4 x KILLS)")"
} | tee "$SOAK_DIR/soak-summary.txt"
[ "$FAILURES" = 0 ] || { log "evidence in $FAILDIR"; exit 1; }
exit 0
