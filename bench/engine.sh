#!/usr/bin/env bash
# bench/engine.sh : imgcache load and save against private container engines, side by side with
# each engine's own loader, skopeo and cp. See bench/README.md, section "Engines: load and save".
#
# Starts its own registry (scripts/testenv/start-registry.sh, 127.0.0.1:$PORT, data in
# BENCH_DIR/engine/registry) holding kicbase:v1, then, one after the other, its own engines, each
# in BENCH_DIR/engine/daemons/CONFIG (never the test environment's daemons), started fresh for
# every configuration and stopped by their PID files when it is done (dockerd first, cleanly, so
# it unmounts; then its containerd; leftover mounts are unmounted; the directory is removed
# unless KEEP=1). ENGINES selects them:
#   d20    Debian 12's dockerd 20.10, classic store, overlay2 (scripts/testenv/start-dockerd.sh;
#          its containerd is Debian's 1.6); CLI /usr/bin/docker 20.10
#   d28    dockerd 28 (Debian sid, unpacked by scripts/testenv/newer-engines.sh), classic store,
#          overlay2, with its own sid containerd 2.1 (--containerd); CLI: sid's docker 28
#   d28c   the same dockerd 28 with the containerd image store
#          ({"features": {"containerd-snapshotter": true}}, snapshotter overlayfs)
#   ctd21  sid's containerd 2.1 alone (snapshotter overlayfs, transfer unpack_config for
#          linux/ARCH), namespace "bench"; imgcache load --engine containerd with
#          CONTAINERD_ADDRESS / CONTAINERD_NAMESPACE and sid's ctr first on the PATH
# PIGZ selects the daemons' PATH: "no" = a PATH without unpigz (links to every program of the
# system's PATH directories but pigz and unpigz), "yes" = the same with unpigz first (dockerd and
# containerd decompress gzip layers with unpigz when they find it). Checked in /proc/PID/environ
# of every daemon; the unpigz processes the daemons start are counted during every load.
# Measures, for every PIGZ x ENGINES configuration, in one run:
#   1. imgcache load REF when the engine already has the image: hyperfine median (FAST_RUNS);
#      peer: the engine's loader (docker load -i, or ctr images import) of a docker-archive of
#      the same image, also already loaded (hyperfine, RUNS)
#   2. load when the engine lacks the image: imgcache load (image cached) vs the engine's loader
#      of the skopeo docker-archive (layers uncompressed); alternating, median of RUNS. Before
#      each run the engine is emptied and checked empty (classic store: docker image ls, docker
#      system df, overlay2/ and layerdb/ directories; containerd: images, content, snapshots,
#      leases in every namespace and the blobs and snapshot directories on disk); if it cannot
#      be emptied, the row is NOT MEASURED.
#   4. upgrade: load of the next version, REF2 = kicbase:v2 (its first 8 layers are v1's, the
#      last 2 new), into an engine that holds exactly REF: imgcache load REF2 (image cached) vs
#      the engine's loader of v2's skopeo docker-archive; alternating, median of RUNS. Before each
#      run the engine is emptied and checked as in row 2, then REF is loaded with imgcache
#      (untimed) and the engine must hold REF, no REF2 and exactly REF's unpacked layers. Also
#      shows the bytes imgcache read per timed run (rchar of this shell's /proc/PID/io, which
#      counts its reaped children) and, for the Docker engines, the bytes of the POST
#      /images/load request body imgcache sends, counted in one more, untimed, load under strace
#      (from the same state: v2 removed with docker rmi, or emptied and v1 loaded again).
# and once (it does not depend on the engine; SAVE=0 skips it):
#   3. imgcache save REF -o FILE (cache warm) vs skopeo copy docker://REF docker-archive:FILE2:REF,
#      and vs cp of a file with as many bytes as imgcache's output; alternating, median of RUNS,
#      outputs deleted (and sync) before each run, all files in BENCH_DIR/engine/out
# Checks: after each load the engine's REF is the image ID (classic store: docker image inspect;
# containerd: the config digest of REF's manifest, read with ctr) and the layers are unpacked (as
# many overlay2 directories or snapshots as layers); imgcache's --json answer names the image ID
# and the expected action. A timed load into the empty engine must answer action "loaded" and
# leave the layers unpacked, or the row gets no figure ("NOT MEASURED") and the exit status is 4.
# Row 4 the same for REF2: action "loaded", image ID v2's, the engine's REF2 is v2's ID, v1's and
# v2's layers unpacked (REF's layers + 2), and on the classic store REF2's RootFS.Layers are v2's
# diff_ids.
# The saved file passes imgcache verify --deep --no-memo --expect ID and is identical across runs.
# Results: markdown tables on stdout, BENCH_DIR/engine-results.md and .tsv, raw data in
# BENCH_DIR/engine/raw/ (one directory per configuration). Targets are shown next to the
# numbers; the exit status does not depend on them (0 = ran, 1 = imgcache gave a wrong answer,
# 3 = setup failed or an engine did not start, 4 = a timed imgcache run did not do the work of its
# row).
#
# One-time setup (kept in BENCH_DIR): the OCI layout BENCH_DIR/images/oci of bench/run.sh (built
# the same way if missing), the registry data, BENCH_DIR/engine/kicbase-docker-archive.tar
# (skopeo copy docker://REF docker-archive:...:REF, made again if its tag is not REF) and the
# cache BENCH_DIR/engine/cache. For row 4 also (deterministic, made again if v1's layout
# changes): the OCI layout BENCH_DIR/engine/kicbase-v2-oci (v1's first 8 layer blobs hard-linked,
# the last 2 rebuilt: every file of v1's layer with the same name, mode and size, its bytes new
# pseudo-random data; config = v1's with the new diff_ids), pushed as REF2, its docker-archive
# BENCH_DIR/engine/kicbase-v2-docker-archive.tar, and REF2 pulled into the cache. Debian sid's
# engines are taken from NEWER/sid; if they are not unpacked there, newer-engines.sh fetch sid
# unpacks them into BENCH_DIR/engine/newer/sid.
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench     shared with bench/run.sh and bench/pull.sh
#   IMGCACHE=target/release/imgcache  binary to test (this script never runs cargo)
#   ENGINES="d20 d28 d28c ctd21"      engines, in this order
#   PIGZ="no yes"                     daemon PATH without / with unpigz (outer loop)
#   PORT=5101                         registry port (must be free)
#   RUNS=5                            runs per tool in rows 2, 3 and 4, and of the peer in row 1
#   FAST_RUNS=50                      hyperfine runs of imgcache load in row 1
#   MEASURE="1 2 3 4"                 the rows to measure (e.g. MEASURE=4: only the upgrade row)
#   SAVE=1                            0: skip row 3 (as if 3 were not in MEASURE)
#   NEWER=${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/newer   where sid's engines are unpacked
#   KEEP=0                            1: keep the engines' directories (the daemons are stopped)
set -uo pipefail

BENCH_TAG=engine-bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${IMGCACHE:=target/release/imgcache}" "${PORT:=5101}" "${KEEP:=0}" "${SAVE:=1}"
ENGINES="${ENGINES:-d20 d28 d28c ctd21}"
PIGZ="${PIGZ:-no yes}"
# pigz and unpigz read options from $PIGZ: a PIGZ=yes in the environment makes every unpigz the
# daemons start fail ("unpigz: abort: cannot provide files in PIGZ environment variable")
export -n PIGZ
NEWER="${NEWER:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/newer}"
REG="127.0.0.1:$PORT"
REF="$REG/kicbase:v1"
REF2="$REG/kicbase:v2"
MEASURE="${MEASURE-1 2 3 4}"
DOCKER=/usr/bin/docker
ARCH="$(dpkg --print-architecture)"

bench_dir
ED="$BENCH_DIR/engine"
RAWROOT="$ED/raw"
RAW="$RAWROOT"
OUT="$ED/out"
REGDATA="$ED/registry"
CACHE="$ED/cache"
ARCHIVE="$ED/kicbase-docker-archive.tar"
DAEMONS="$ED/daemons"
mkdir -p "$ED" || die "cannot create $ED"

need_sid=0
for e in $ENGINES; do
  case "$e" in
    d20) ;;
    d28 | d28c | ctd21) need_sid=1 ;;
    *) die "ENGINES: unknown engine '$e' (known: d20 d28 d28c ctd21)" ;;
  esac
done
for p in $PIGZ; do case "$p" in no | yes) ;; *) die "PIGZ: 'no' and/or 'yes', not '$p'" ;; esac; done
if [ -z "$ENGINES" ] || [ -z "$PIGZ" ]; then die "ENGINES and PIGZ must not be empty"; fi
for r in $MEASURE; do case "$r" in 1 | 2 | 3 | 4) ;; *) die "MEASURE: rows 1 2 3 4, not '$r'" ;; esac; done
[ -n "${MEASURE// /}" ] || die "MEASURE must name at least one row (1 2 3 4)"
want() { case " $MEASURE " in *" $1 "*) return 0 ;; esac; return 1; } # want ROW : ROW is measured
[ "$SAVE" = 1 ] || MEASURE="$(for r in $MEASURE; do [ "$r" = 3 ] || printf '%s ' "$r"; done)"

tools=(skopeo:skopeo jq:jq hyperfine:hyperfine curl:curl docker-registry:docker-registry
  dockerd:docker.io containerd:containerd runc:runc strace:strace sha256sum:coreutils)
case " $PIGZ " in *" yes "*) tools+=(unpigz:pigz) ;; esac
want 4 && tools+=(openssl:openssl gzip:gzip tar:tar)
need_tools "${tools[@]}"
[ -x "$DOCKER" ] || apt_install docker.io || die "no $DOCKER (Debian docker.io)"

# ---- Debian sid's engines (dockerd 28, containerd 2.1, ctr, docker CLI), unpacked ----------------
SID="$NEWER/sid"
sid_ok() { [ -x "$SID/usr/sbin/dockerd" ] && [ -x "$SID/usr/bin/containerd" ] && [ -x "$SID/usr/bin/ctr" ] && [ -x "$SID/usr/bin/docker" ]; }
if [ "$need_sid" = 1 ] && ! sid_ok; then
  log "no unpacked sid engines in $SID: newer-engines.sh fetch sid $ED"
  SID="$ED/newer/sid"
  sid_ok || "$TESTENV/newer-engines.sh" fetch sid "$ED" >&2 || die "could not unpack Debian sid's engines into $SID"
fi

# ---- imgcache binary ----------------------------------------------------------------------------
imgcache_abs
[ -x "$IMGCACHE" ] || die "no imgcache binary at $IMGCACHE (cargo build --release -p imgcache-cli, or set IMGCACHE)"
"$IMGCACHE" load --help >/dev/null 2>&1 || die "$IMGCACHE has no 'load' command (stale build?)"
"$IMGCACHE" save --help >/dev/null 2>&1 || die "$IMGCACHE has no 'save' command (stale build?)"

# ---- one-time: the kicbase layout of bench/run.sh -----------------------------------------------
T0=$(date +%s)
ensure_layout "$REG"
IMAGE_ID="$V1_CONFIG_DIGEST"

# ---- cleanup: the engine running now, then the registry -----------------------------------------
CUR_DIR=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  unwatch
  if [ -n "$CUR_DIR" ]; then stop_daemons "$CUR_DIR" "$KEEP" || true; fi
  rm -rf "$OUT"
  stop_registry
  local left; left="$(mounts_under "$BENCH_DIR")"
  [ -z "$left" ] || log "ERROR: still mounted under $BENCH_DIR: $left"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- registry with kicbase:v1 -------------------------------------------------------------------
start_registry "$PORT" "$REGDATA"
push "oci:$LAYOUT:$TAG" kicbase:v1 || die "push $REF failed"
V1_DIGEST="$(reg_digest kicbase:v1)"
[[ "$V1_DIGEST" == sha256:* ]] || die "cannot read the digest of $REF"

# ---- one-time: the skopeo docker-archive of the same image, tagged REF ---------------------------
ensure_archive "$REF" "$ARCHIVE" "$REF" "$ED/.archive-${V1_DIGEST#sha256:}" "$IMAGE_ID"
ARCHIVE_BYTES="$(stat -c %s "$ARCHIVE")"

# ---- one-time (row 4): kicbase:v2, the next version of v1 ------------------------------------------
# The first V2_KEEP layers are v1's (their blobs hard-linked from v1's layout); each later layer is
# v1's layer rebuilt: the same entries (names, modes, links, whiteouts), every regular file of it
# refilled with as many bytes of new pseudo-random data (AES-CTR keyed by the recipe, the layer
# and the path), tarred and gzipped the way make-test-images.sh does (sorted, mtime EPOCH, owner
# 0, gzip -n -6). The config is v1's with the new diff_ids, label and history; the manifest v1's
# with the new config and layers.
V2_LAYOUT="$ED/kicbase-v2-oci"
V2_TAG=kicbase-v2
V2_KEEP=8
ARCHIVE2="$ED/kicbase-v2-docker-archive.tar"
V2_EPOCH=1704067200 # make-test-images.sh's SOURCE_DATE_EPOCH (2024-01-01)
# v2_refill DIR SEED : every regular file under DIR (by name, C order) gets new bytes, same size
v2_refill() {
  local f sz key
  while IFS= read -r -d '' f; do
    sz="$(stat -c %s "$1/$f")" || return 1
    [ "$sz" -gt 0 ] || continue # whiteouts and other empty files stay as they are
    key="$(printf '%s %s' "$2" "$f" | sha256sum | cut -d' ' -f1)"
    openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
      head -c "$sz" >"$DIR_TMP/refill" || true
    [ "$(stat -c %s "$DIR_TMP/refill")" = "$sz" ] || return 1
    cat "$DIR_TMP/refill" >"$1/$f" || return 1 # in place: a hard link keeps sharing the inode
  done < <(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z)
}
# build_v2 : writes V2_LAYOUT (through V2_LAYOUT.tmp); returns 1 on failure
build_v2() {
  local tmp="$V2_LAYOUT.tmp" n d i src lay diffs=() descs=() cfg cdesc man mdesc
  DIR_TMP="$tmp/work"
  rm -rf "$V2_LAYOUT" "$tmp"
  mkdir -p "$tmp/blobs/sha256" "$DIR_TMP" || return 1
  printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"
  n="$V1_LAYERS"
  [ "$n" -gt "$V2_KEEP" ] || { log "v1 has $n layers, v2 keeps $V2_KEEP"; return 1; }
  for d in $(jq -r ".layers[:$V2_KEEP][].digest" "$V1_MAN"); do
    ln -f "$(blob "$LAYOUT" "$d")" "$(blob "$tmp" "$d")" 2>/dev/null || cp "$(blob "$LAYOUT" "$d")" "$(blob "$tmp" "$d")" || return 1
  done
  for ((i = V2_KEEP; i < n; i++)); do
    d="$(jq -r ".layers[$i].digest" "$V1_MAN")"
    src="$DIR_TMP/layer-$i"
    rm -rf "$src"; mkdir -p "$src"
    tar -xzpf "$(blob "$LAYOUT" "$d")" --same-owner --numeric-owner -C "$src" || return 1
    v2_refill "$src" "kicbase-v2 layer $((i + 1))" || return 1
    (cd "$src" && find . -mindepth 1 -maxdepth 1 -printf '%P
' | LC_ALL=C sort) >"$DIR_TMP/list-$i"
    tar --sort=name --mtime="@$V2_EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu \
      -C "$src" -cf "$DIR_TMP/layer-$i.tar" -T "$DIR_TMP/list-$i" || return 1
    diffs+=("sha256:$(sha256sum "$DIR_TMP/layer-$i.tar" | cut -d' ' -f1)")
    gzip -n -6 -f "$DIR_TMP/layer-$i.tar" || return 1
    lay="$DIR_TMP/layer-$i.tar.gz"
    d="sha256:$(sha256sum "$lay" | cut -d' ' -f1)"
    descs+=("$(jq -cn --arg mt "$(jq -r ".layers[$i].mediaType" "$V1_MAN")" --arg d "$d" --argjson s "$(stat -c %s "$lay")" '{mediaType: $mt, digest: $d, size: $s}')")
    mv -f "$lay" "$(blob "$tmp" "$d")" || return 1
    log "kicbase:v2 layer $((i + 1)): $d $(fmt_b "$(stat -c %s "$(blob "$tmp" "$d")")") (v1's: $(jq -r ".layers[$i].size" "$V1_MAN") bytes)"
  done
  # config: v1's, with the new diff_ids, label, and " (v2)" on the history of the new layers
  cfg="$(jq -cS --argjson k "$V2_KEEP" --argjson d "$(printf '%s
' "${diffs[@]}" | jq -R . | jq -cs .)" '
    .rootfs.diff_ids = (.rootfs.diff_ids[:$k] + $d)
    | .config.Labels["org.example.test-image"] = "kicbase-v2"
    | .history = (reduce .history[] as $h ({n: 0, out: []};
        if ($h.empty_layer // false) then .out += [$h]
        else .out += [if .n >= $k then $h + {created_by: ($h.created_by + " (v2)")} else $h end] | .n += 1 end) | .out)' \
    "$(blob "$LAYOUT" "$V1_CONFIG_DIGEST")")" || return 1
  printf '%s' "$cfg" >"$DIR_TMP/config"
  d="sha256:$(sha256sum "$DIR_TMP/config" | cut -d' ' -f1)"
  cdesc="$(jq -c --arg d "$d" --argjson s "$(stat -c %s "$DIR_TMP/config")" '.config + {digest: $d, size: $s}' "$V1_MAN")"
  mv -f "$DIR_TMP/config" "$(blob "$tmp" "$d")" || return 1
  man="$(jq -cS --argjson k "$V2_KEEP" --argjson c "$cdesc" --argjson l "$(printf '%s
' "${descs[@]}" | jq -cs .)" \
    '.config = $c | .layers = (.layers[:$k] + $l)' "$V1_MAN")" || return 1
  printf '%s' "$man" >"$DIR_TMP/manifest"
  d="sha256:$(sha256sum "$DIR_TMP/manifest" | cut -d' ' -f1)"
  mdesc="$(jq -cn --arg mt "$(jq -r '.mediaType // "application/vnd.oci.image.manifest.v1+json"' "$V1_MAN")" --arg d "$d" \
    --argjson s "$(stat -c %s "$DIR_TMP/manifest")" --arg t "$V2_TAG" \
    '{mediaType: $mt, digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": $t}}')"
  mv -f "$DIR_TMP/manifest" "$(blob "$tmp" "$d")" || return 1
  jq -cn --argjson m "$mdesc" '{schemaVersion: 2, manifests: [$m]}' >"$tmp/index.json" || return 1
  rm -rf "$DIR_TMP"
  mv "$tmp" "$V2_LAYOUT"
}
if want 4; then
  V2_STAMP="$V2_LAYOUT/.complete-$(printf 'recipe 1 keep %s v1 %s' "$V2_KEEP" "$V1_OCI_DIGEST" | sha256sum | cut -c1-16)"
  if [ ! -e "$V2_STAMP" ]; then
    log "building kicbase:v2 in $V2_LAYOUT (v1's first $V2_KEEP layers, the rest new)"
    build_v2 || die "could not build kicbase:v2 in $V2_LAYOUT"
    touch "$V2_STAMP"
  fi
  V2_MAN="$(blob "$V2_LAYOUT" "$(ref_digest "$V2_LAYOUT" "$V2_TAG")")"
  V2_ID="$(jq -r .config.digest "$V2_MAN")"
  V2_LAYERS="$(jq '.layers | length' "$V2_MAN")"
  V2_NEW=$((V2_LAYERS - V2_KEEP))
  V2_BYTES="$(jq '[.config.size] + [.layers[].size] | add' "$V2_MAN")"
  V2_NEW_BYTES="$(jq --argjson k "$V2_KEEP" '[.config.size] + [.layers[$k:][].size] | add' "$V2_MAN")"
  V2_DIFFS="$(jq -c .rootfs.diff_ids "$(blob "$V2_LAYOUT" "$V2_ID")")"
  [ "$(jq -c --argjson k "$V2_KEEP" '.layers[:$k]' "$V2_MAN")" = "$(jq -c --argjson k "$V2_KEEP" '.layers[:$k]' "$V1_MAN")" ] ||
    die "$V2_LAYOUT does not share v1's first $V2_KEEP layers"
  push "oci:$V2_LAYOUT:$V2_TAG" kicbase:v2 || die "push $REF2 failed"
  V2_DIGEST="$(reg_digest kicbase:v2)"
  [[ "$V2_DIGEST" == sha256:* ]] || die "cannot read the digest of $REF2"
  ensure_archive "$REF2" "$ARCHIVE2" "$REF2" "$ED/.archive2-${V2_DIGEST#sha256:}" "$V2_ID"
  ARCHIVE2_BYTES="$(stat -c %s "$ARCHIVE2")"
fi

# ---- the imgcache cache holding kicbase:v1 -------------------------------------------------------
mkdir -p "$RAW.setup"
"$IMGCACHE" --root "$CACHE" --json pull "$REF" >"$RAW.setup/pull.json" 2>"$RAW.setup/pull.err" ||
  { tail -5 "$RAW.setup/pull.err" >&2; die "imgcache pull $REF failed"; }
jq -e --arg id "$IMAGE_ID" '.image_id == $id' "$RAW.setup/pull.json" >/dev/null ||
  { log "ERROR: imgcache pull did not report $IMAGE_ID"; exit 1; }
if want 4; then
  "$IMGCACHE" --root "$CACHE" --json pull "$REF2" >"$RAW.setup/pull2.json" 2>"$RAW.setup/pull2.err" ||
    { tail -5 "$RAW.setup/pull2.err" >&2; die "imgcache pull $REF2 failed"; }
  jq -e --arg id "$V2_ID" '.image_id == $id' "$RAW.setup/pull2.json" >/dev/null ||
    { log "ERROR: imgcache pull $REF2 did not report $V2_ID"; exit 1; }
fi
CACHE_BLOBS=()
while IFS= read -r f; do CACHE_BLOBS+=("$f"); done < <(find "$CACHE" -type f -path '*sha256*' -size +1k)

# ---- the daemons' PATHs: without and with unpigz ---------------------------------------------------
daemon_paths "$ED/path" || die "cannot build the daemon PATHs in $ED/path"
case " $PIGZ " in *" yes "*) [ -n "$(path_unpigz "$PATH_PIGZ")" ] || die "PIGZ=yes but no unpigz on $PATH_PIGZ (apt-get install pigz)" ;; esac
BASE_PATH="$PATH"
SETUP_S=$(($(date +%s) - T0))
rm -rf "$RAWROOT" "$OUT"; mv "$RAW.setup" "$RAWROOT"; mkdir -p "$OUT"
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"

# ==== engines ======================================================================================
dk() { "$E_CLI" "$@"; }                          # the engine's docker CLI
cr() { "$E_CTR" -a "$E_CSOCK" "$@"; }            # ctr on the engine's containerd
ctr_on() { "$E_CTR" -a "$E_CSOCK" -n "$E_CNS" "$@"; }

# engine_up E PZ NAME : start engine E, its daemons' PATH with unpigz if PZ is yes, in DAEMONS/NAME
# (NAME is also in its containerd namespace: letters, digits, '.', '_', '-');
# sets E_* and the client environment. Returns 1 (with E_FAIL set) if it cannot.
engine_up() {
  local e="$1" pz="$2" dpath p u drv ds
  E_DIR="$DAEMONS/$3"; E_FAIL=""; E_PIDS=(); E_CSOCK=""; E_CNS=""; E_CROOT=""; E_SNAP=overlayfs
  dpath="$PATH_NOPIGZ"; [ "$pz" = yes ] && dpath="$PATH_PIGZ"
  stop_daemons "$E_DIR" 0 || { E_FAIL="mounts left in $E_DIR from an earlier run"; return 1; }
  mkdir -p "$E_DIR/bin" || { E_FAIL="cannot create $E_DIR"; return 1; }
  CUR_DIR="$E_DIR"
  case "$e" in
    d20)
      E_KIND=docker E_STORE=classic E_CLI="$DOCKER" E_CTR=/usr/bin/ctr
      E_CSOCK="$E_DIR/containerd/containerd.sock" E_CNS=moby E_CROOT="$E_DIR/containerd/root"
      p="$(PATH="$dpath" DOCKERD_EXTRA_ARGS="" "$TESTENV/start-dockerd.sh" "$E_DIR" overlay2)" ||
        { E_FAIL="dockerd 20.10 did not start (see $E_DIR/dockerd.log)"; return 1; } ;;
    d28 | d28c)
      E_KIND=docker E_CLI="$SID/usr/bin/docker" E_CTR="$SID/usr/bin/ctr"
      E_CSOCK="$E_DIR/containerd/containerd.sock" E_CNS="bench-$(basename "$E_DIR")" E_CROOT="$E_DIR/containerd/root"
      if [ "$e" = d28 ]; then E_STORE=classic; p="$(start_dkd "$E_DIR" "$SID" classic overlay2 "$dpath")"
      else E_STORE=containerd; p="$(start_dkd "$E_DIR" "$SID" containerd "$E_SNAP" "$dpath")"; fi ||
        { E_FAIL="dockerd 28 did not start (see $E_DIR/dockerd.log, $E_DIR/containerd/containerd.log)"; return 1; } ;;
    ctd21)
      E_KIND=containerd E_STORE=containerd E_CLI="$SID/usr/bin/ctr" E_CTR="$SID/usr/bin/ctr"
      E_CSOCK="$E_DIR/containerd.sock" E_CNS=bench E_CROOT="$E_DIR/root"
      p="$(start_ctd "$E_DIR" "$SID" "$E_SNAP" "$dpath")" ||
        { E_FAIL="containerd 2.1 did not start (see $E_DIR/containerd.log)"; return 1; } ;;
  esac
  E_PIDS=("$p")
  if [ "$E_KIND" = docker ]; then
    E_PIDS+=("$(cat "$E_DIR/containerd/containerd.pid" 2>/dev/null)")
    ln -sfn "$E_CLI" "$E_DIR/bin/docker"
  fi
  ln -sfn "$E_CTR" "$E_DIR/bin/ctr"
  # the clients: the engine's docker / ctr first, then the daemons' PATH of this configuration
  export PATH="$E_DIR/bin:$dpath"
  unset DOCKER_CONTEXT DOCKER_CONFIG CONTAINERD_SNAPSHOTTER
  if [ "$E_KIND" = docker ]; then
    export DOCKER_HOST="unix://$E_DIR/docker.sock"; unset CONTAINERD_ADDRESS CONTAINERD_NAMESPACE
    drv="$(dk info -f '{{.Driver}}' 2>/dev/null)"
    ds="$(dk info -f '{{json .DriverStatus}}' 2>/dev/null)"
    E_VER="dockerd $(dk version -f '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
    if [ "$E_STORE" = classic ]; then
      if [ "$drv" != overlay2 ] || [[ "$ds" == *io.containerd.snapshotter* ]]; then
        E_FAIL="dockerd runs driver '${drv:-?}' ($ds), not the classic overlay2"; return 1
      fi
      E_DESC="$E_VER, classic store, overlay2"
    else
      if [ "$drv" != "$E_SNAP" ] || [[ "$ds" != *io.containerd.snapshotter* ]]; then
        E_FAIL="dockerd runs driver '${drv:-?}' ($ds), not the containerd store with $E_SNAP"; return 1
      fi
      E_DESC="$E_VER, containerd image store, $E_SNAP"
    fi
    E_DESC="$E_DESC; its containerd $(cr version 2>/dev/null | awk '/^Server:/ {s = 1} s && $1 == "Version:" {print $2; exit}')"
    E_PEER="$(basename "$E_CLI") load -i"
    E_PEER_CMD=("$E_CLI" load -q -i "$ARCHIVE")
    E_PEER2_CMD=("$E_CLI" load -q -i "$ARCHIVE2")
  else
    unset DOCKER_HOST
    export CONTAINERD_ADDRESS="$E_CSOCK" CONTAINERD_NAMESPACE="$E_CNS"
    E_VER="containerd $(cr version 2>/dev/null | awk '/^Server:/ {s = 1} s && $1 == "Version:" {print $2; exit}')"
    cr plugins ls 2>/dev/null | awk -v s="$E_SNAP" '$2 == s && $NF == "ok" {f = 1} END {exit !f}' ||
      { E_FAIL="containerd's $E_SNAP snapshotter is not ok: $(cr plugins ls 2>&1 | grep -w "$E_SNAP")"; return 1; }
    E_DESC="$E_VER alone, $E_SNAP, namespace $E_CNS; $("$E_CTR" --version | awk '{print $1, $3}') first on imgcache's PATH"
    E_PEER="ctr images import"
    E_PEER_CMD=("$E_CTR" -a "$E_CSOCK" -n "$E_CNS" images import "$ARCHIVE")
    E_PEER2_CMD=("$E_CTR" -a "$E_CSOCK" -n "$E_CNS" images import "$ARCHIVE2")
  fi
  # the daemons' PATH: unpigz there or not, as asked
  E_UNPIGZ=""
  for p in "${E_PIDS[@]}"; do
    if [ -z "$p" ] || [ ! -e "/proc/$p/environ" ]; then E_FAIL="cannot read the environment of daemon pid '$p'"; return 1; fi
    u="$(path_unpigz "$(proc_path "$p")")"
    if [ "$pz" = yes ] && [ -z "$u" ]; then E_FAIL="daemon pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-60)) has no unpigz on its PATH"; return 1; fi
    if [ "$pz" = no ] && [ -n "$u" ]; then E_FAIL="daemon pid $p finds $u on its PATH"; return 1; fi
    E_UNPIGZ="${E_UNPIGZ:-$u}"
  done
  log "$3: $E_DESC; daemons ${E_PIDS[*]}, unpigz on their PATH: ${E_UNPIGZ:-none}"
}
# engine_down : stop the engine's daemons, leave no mount, restore the environment
engine_down() {
  unwatch
  export PATH="$BASE_PATH"
  unset DOCKER_HOST CONTAINERD_ADDRESS CONTAINERD_NAMESPACE
  [ -n "$CUR_DIR" ] || return 0
  stop_daemons "$CUR_DIR" "$KEEP" || E_FAIL="${E_FAIL:-mounts left under $CUR_DIR}"
  CUR_DIR=""
}

# ctd_config_of NS NAME : the config digest of image NAME in containerd namespace NS (for an
# index: of its linux/ARCH manifest); empty if there is no such image
ctd_config_of() {
  local t j
  t="$(cr -n "$1" images ls 2>/dev/null | awk -v n="$2" 'NR > 1 && $1 == n { print $3; exit }')"
  [ -n "$t" ] || return 0
  j="$(cr -n "$1" content get "$t" 2>/dev/null)" || return 0
  if ! jq -e '.config' >/dev/null 2>&1 <<<"$j"; then
    t="$(jq -r --arg a "$ARCH" '[.manifests[]? | select(.platform.os == "linux" and .platform.architecture == $a)][0].digest // empty' <<<"$j")"
    [ -n "$t" ] || return 0
    j="$(cr -n "$1" content get "$t" 2>/dev/null)" || return 0
  fi
  jq -r '.config.digest // empty' <<<"$j"
}
# engine_id_of NAME : the image ID the engine's NAME points at (empty if none); engine_id: of REF
engine_id_of() {
  if [ "$E_STORE" = classic ]; then dk image inspect -f '{{.Id}}' "$1" 2>/dev/null
  else ctd_config_of "$E_CNS" "$1"; fi
}
engine_id() { engine_id_of "$REF"; }
# engine_images : how many images the engine lists (docker image ls -aq, or ctr images ls -q)
engine_images() {
  if [ "$E_KIND" = docker ]; then dk image ls -aq 2>/dev/null | sort -u | wc -l
  else ctr_on images ls -q 2>/dev/null | wc -l; fi
}
# stored_layers : layers the engine holds unpacked: overlay2 layer directories (classic store) or
# snapshot directories on disk (containerd)
overlay_dirs() { find "$E_DIR/data/overlay2" -mindepth 1 -maxdepth 1 ! -name l 2>/dev/null | wc -l; }
snap_dirs() { find "$E_CROOT/io.containerd.snapshotter.v1.$E_SNAP/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
stored_layers() { if [ "$E_STORE" = classic ]; then overlay_dirs; else snap_dirs; fi; }
# ctd_state : "images=N content=N snapshots=N leases=N blobs=N snapdirs=N", summed over every
# namespace of the engine's containerd; the last two are counted on disk
ctd_state() {
  local ns i=0 c=0 s=0 l=0
  for ns in $(cr namespaces ls -q 2>/dev/null); do
    i=$((i + $(cr -n "$ns" images ls -q 2>/dev/null | wc -l)))
    c=$((c + $(cr -n "$ns" content ls -q 2>/dev/null | wc -l)))
    s=$((s + $(cr -n "$ns" snapshots --snapshotter "$E_SNAP" ls 2>/dev/null | awk 'NR > 1' | wc -l)))
    l=$((l + $(cr -n "$ns" leases ls -q 2>/dev/null | wc -l)))
  done
  printf 'images=%s content=%s snapshots=%s leases=%s blobs=%s snapdirs=%s' "$i" "$c" "$s" "$l" \
    "$(find "$E_CROOT/io.containerd.content.v1.content/blobs/sha256" -type f 2>/dev/null | wc -l)" "$(snap_dirs)"
}
ctd_is_empty() { [[ "$1" =~ ^images=0\ content=0\ snapshots=0\ leases=0\ blobs=0\ snapdirs=0$ ]]; }
# ctd_wait_empty SECONDS : poll ctd_state until it is empty (containerd collects garbage after a
# delete, not always at once); sets CTD_STATE
ctd_wait_empty() {
  local end=$((SECONDS + $1))
  while :; do
    CTD_STATE="$(ctd_state)"
    ctd_is_empty "$CTD_STATE" && return 0
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.5
  done
}
# ctd_force_empty : remove what is left in every namespace: images (--sync), leases, content,
# then snapshots, leaves first (a parent cannot go before its children)
ctd_force_empty() {
  local ns k
  for ns in $(cr namespaces ls -q 2>/dev/null); do
    for k in $(cr -n "$ns" images ls -q 2>/dev/null); do cr -n "$ns" images rm --sync "$k" >/dev/null 2>&1; done
    for k in $(cr -n "$ns" leases ls -q 2>/dev/null); do cr -n "$ns" leases rm --sync "$k" >/dev/null 2>&1; done
    for k in $(cr -n "$ns" content ls -q 2>/dev/null); do cr -n "$ns" content rm "$k" >/dev/null 2>&1; done
    for _ in $(seq 1 $((V1_LAYERS + 5))); do
      k="$(cr -n "$ns" snapshots --snapshotter "$E_SNAP" ls 2>/dev/null | awk 'NR > 1 {print $1}')"
      [ -n "$k" ] || break
      # shellcheck disable=SC2086 # one key a word
      cr -n "$ns" snapshots --snapshotter "$E_SNAP" rm $k >/dev/null 2>&1
    done
  done
}
FORCED=0
# empty_engine LOG : remove the image the way the engine's users do, then check that the engine
# is empty; containerd: if garbage collection left something after 30 s, ctd_force_empty and
# check again. One line per call in LOG. Returns 1 if the engine is not empty.
empty_engine() {
  local n sz l ldb st how
  case "$E_KIND/$E_STORE" in
    docker/classic)
      dk rmi -f "$REF" >/dev/null 2>&1
      dk rmi -f "$IMAGE_ID" >/dev/null 2>&1
      if want 4; then dk rmi -f "$REF2" >/dev/null 2>&1; dk rmi -f "$V2_ID" >/dev/null 2>&1; fi
      dk image prune -af >/dev/null 2>&1
      n="$(dk image ls -aq | wc -l)"
      sz="$(dk system df --format '{{.Type}} {{.Size}}' | awk '$1 == "Images" {print $2}')"
      l="$(overlay_dirs)"
      ldb="$(find "$E_DIR/data/image/overlay2/layerdb/sha256" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
      st="docker image ls -aq: $n, system df images: $sz, overlay2 dirs: $l, layerdb: $ldb"
      sync
      echo "$st" >>"$1"
      [ "$n" = 0 ] && [ "$sz" = 0B ] && [ "$l" = 0 ] && [ "$ldb" = 0 ] && return 0
      log "ERROR: the engine is not empty after docker rmi + prune: $st"
      return 1 ;;
    docker/containerd)
      how="docker rmi + docker image prune -af"
      dk rmi -f "$REF" >/dev/null 2>&1
      want 4 && dk rmi -f "$REF2" >/dev/null 2>&1
      dk image prune -af >/dev/null 2>&1
      n="$(dk image ls -aq | wc -l)" ;;
    containerd/*)
      how="ctr images rm --sync"
      n=0
      for l in $(ctr_on images ls -q 2>/dev/null); do ctr_on images rm --sync "$l" >/dev/null 2>&1; done ;;
  esac
  local t0=$SECONDS
  if ! ctd_wait_empty 30; then
    log "after $how: $CTD_STATE; removing the rest with ctr (leases, content, snapshots)"
    echo "after $how: $CTD_STATE (not empty after 30 s: forced)" >>"$1"
    FORCED=$((FORCED + 1))
    ctd_force_empty
    ctd_wait_empty 10
  fi
  st="docker image ls -aq: $n, $CTD_STATE"
  [ "$E_KIND" = containerd ] && st="$CTD_STATE"
  st="$st (after $how, $((SECONDS - t0)) s of waiting)"
  sync
  echo "$st" >>"$1"
  [ "$n" = 0 ] && ctd_is_empty "$CTD_STATE" && return 0
  log "ERROR: the engine is not empty after $how: $st"
  return 1
}
# check_engine ROW WHO : the engine's REF is the image ID
check_engine() {
  local got; got="$(engine_id)"
  [ "$got" = "$IMAGE_ID" ] && return 0
  log "ERROR: after $2, the engine's $REF is '${got:-nothing}', expected $IMAGE_ID"
  NA[$1]="after $2 the engine's $REF is ${got:-missing}"
  [ "$2" = imgcache ] && BAD=1
  return 1
}
# check_load ROW JSONFILE ACTION : imgcache load --json answered the image ID and the action. A
# load into the empty engine (ACTION loaded) that answers "already-present" did not do the work
# of its row: NOT MEASURED; any other answer is wrong.
check_load() {
  jq -e --arg id "$IMAGE_ID" --arg a "$3" '.image_id == $id and .action == $a' "$2" >/dev/null 2>&1 && return 0
  log "ERROR: imgcache load ($1) did not answer image $IMAGE_ID, action $3:"; head -c 600 "$2" >&2; tail -5 "${2%.json}.err" >&2 2>/dev/null
  local got; got="$(jq -rc '[.action, .image_id] | join(" ")' "$2" 2>/dev/null || echo '?')"
  if [ "$3" = loaded ] && jq -e '.action == "already-present"' "$2" >/dev/null 2>&1; then
    not_measured "$1" "a load into the empty engine answered $got"
  else NA[$1]="imgcache load answered ${got:-nothing}"; BAD=1; fi
  return 1
}
cpu_of() { awk 'END { printf "%.2f", $1 + $2 }' "$1"; } # GNU time '%U %S' file -> seconds

# measure CFG : rows 2, 1 and 4 (those in MEASURE) on the running engine; appends to ROWS, SUMMARY
# and RAWLINES
measure() {
  local cfg="$1" i who a b c0 rc f lay ups
  local t_ic=() t_pe=() cd_ic=() cd_pe=() cc_ic=() cc_pe=() up_ic=() up_pe=() ly_ic=() ly_pe=()
  local t_abs_ic t_abs_pe r2 t_pres="" t_pres_pe="" r1 progs="" conns=""
  RAW="$RAWROOT/$cfg"; mkdir -p "$RAW"
  if want 1 || want 2; then warm "${CACHE_BLOBS[@]}" "$ARCHIVE"; fi
  # ---- 2. load into an engine that lacks the image, alternating
  want 2 && for i in $(seq 1 "$RUNS"); do
    for who in imgcache peer; do
      empty_engine "$RAW/empty.log" || { not_measured "$cfg/absent" "the engine could not be emptied before run $i ($(tail -1 "$RAW/empty.log"))"; break 2; }
      log "$cfg: load into the empty engine $i/$RUNS: $who"
      f="$RAW/absent-$who-$i"
      c0="$(daemon_cpu "${E_PIDS[@]}")"
      watch_children "$f.unpigz" unpigz "${E_PIDS[@]}"
      a=$(now)
      if [ $who = imgcache ]; then
        /usr/bin/time -f '%U %S' -o "$f.time" "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine "$E_KIND" >"$f.json" 2>"$f.err"; rc=$?
      else
        /usr/bin/time -f '%U %S' -o "$f.time" "${E_PEER_CMD[@]}" >"$f.out" 2>&1; rc=$?
      fi
      b=$(now)
      unwatch
      lay="$(stored_layers)"; ups="$(seen_pids "$f.unpigz")"
      if [ $who = imgcache ]; then
        if [ $rc != 0 ]; then NA[$cfg/absent]="imgcache load exit $rc: $(tail -1 "$f.err")"; BAD=1; tail -5 "$f.err" >&2
        elif check_load "$cfg/absent" "$f.json" loaded && check_engine "$cfg/absent" imgcache; then
          if [ "$lay" -lt "$V1_LAYERS" ]; then
            not_measured "$cfg/absent" "imgcache's load left $lay unpacked layers of $V1_LAYERS"
          else
            t_ic+=("$(elapsed "$a" "$b")"); cd_ic+=("$(elapsed "$c0" "$(daemon_cpu "${E_PIDS[@]}")")")
            cc_ic+=("$(cpu_of "$f.time")"); up_ic+=("$ups"); ly_ic+=("$lay")
          fi
        fi
      else
        if [ $rc != 0 ]; then log "$E_PEER failed (exit $rc):"; tail -5 "$f.out" >&2; NA[$cfg/absent-peer]="$E_PEER exit $rc: $(tail -1 "$f.out")"
        elif check_engine "$cfg/absent-peer" "$E_PEER"; then
          [ "$lay" -ge "$V1_LAYERS" ] || NA[$cfg/absent-peer]="$E_PEER left $lay unpacked layers of $V1_LAYERS"
          t_pe+=("$(elapsed "$a" "$b")"); cd_pe+=("$(elapsed "$c0" "$(daemon_cpu "${E_PIDS[@]}")")")
          cc_pe+=("$(cpu_of "$f.time")"); up_pe+=("$ups"); ly_pe+=("$lay")
        fi
      fi
    done
  done
  unmeasured "$cfg/absent" && { t_ic=(); cd_ic=(); cc_ic=(); }
  t_abs_ic="$(median "${t_ic[@]}")"; t_abs_pe="$(median "${t_pe[@]}")"
  r2="$(div "$t_abs_ic" "$t_abs_pe")"

  # ---- 1. load when the engine already has the image
  if want 1; then
    # The engine must hold the image as imgcache loads it: on containerd and Docker's containerd
    # store, the peer's load of the docker-archive (the last of row 2) records a manifest digest
    # of its own making, and imgcache loads again so that the registry's digest is recorded.
    log "$cfg: imgcache load $REF once for row 1 (untimed)"
    "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine "$E_KIND" >"$RAW/present-setup.json" 2>"$RAW/present-setup.err"
  fi
  if want 1 && check_engine "$cfg/present" "$E_PEER"; then
    "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine "$E_KIND" >"$RAW/present.json" 2>"$RAW/present.err"
    if check_load "$cfg/present" "$RAW/present.json" already-present; then
      t_pres="$(hf present "$FAST_RUNS" 3 "$IMGCACHE --root $CACHE load $REF --engine $E_KIND")"
      # cheap profile: the programs it starts and its connections to the engine's sockets
      strace -f -qq -tt -e trace=execve,connect -e signal=none -o "$RAW/present-strace.txt" \
        "$IMGCACHE" --root "$CACHE" load "$REF" --engine "$E_KIND" >/dev/null 2>&1
      progs="$(grep -o 'execve("[^"]*"' "$RAW/present-strace.txt" | sed 1d | sed 's/.*\///; s/"$//' | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')"
      conns="$(grep -c "connect(.*sun_path=\"$E_DIR/" "$RAW/present-strace.txt")"
      IMGCACHE_LOG=debug "$IMGCACHE" --root "$CACHE" load "$REF" --engine "$E_KIND" >/dev/null 2>"$RAW/present-debug.log"
      check_engine "$cfg/present" imgcache
    fi
    t_pres_pe="$(hf present-peer "$RUNS" 1 "${E_PEER_CMD[*]}")"
    check_engine "$cfg/present-peer" "$E_PEER"
  fi
  r1="$(div "$t_pres_pe" "$t_pres")"

  # ---- rows
  local lbl="$cfg: $E_DESC; unpigz on the daemons' PATH: ${E_UNPIGZ:-no}"
  want 1 && ROWS+=("$(printf '%s 1a\t%s. imgcache load, engine already has the image (hyperfine, %s runs; per run: programs started: %s, connections to the engine'"'"'s sockets: %s)\t%s\t\t\t<= 50 ms\t%s\t%s' \
    "$cfg" "$lbl" "$FAST_RUNS" "${progs:-none}" "${conns:-?}" "$(fmt_t "$t_pres")" "$(yesno "$t_pres" '<=' 0.050)" "${NA[$cfg/present]:-}")")
  want 1 && ROWS+=("$(printf '%s 1b\t%s: same vs %s of the docker-archive (%s), engine already has the image (hyperfine, %s runs, median)\t%s\t%s\t%s\t>= 20x faster\t%s\t%s' \
    "$cfg" "$cfg" "$E_PEER" "$(fmt_b "$ARCHIVE_BYTES")" "$RUNS" "$(fmt_t "$t_pres")" "$(fmt_t "$t_pres_pe")" "$([ -n "$r1" ] && printf '%.0fx faster' "$r1" || echo n/a)" \
    "$(yesno "$r1" '>=' 20)" "${NA[$cfg/present]:-${NA[$cfg/present-peer]:-}}")")
  want 2 && ROWS+=("$(printf '%s 2\t%s: load into the empty engine (%s layers unpacked): imgcache load vs %s of the docker-archive; median of %s, alternating (imgcache %s, peer %s; CPU of the daemons + children: %s s vs %s s, of the client: %s s vs %s s; unpigz processes per run: %s vs %s)\t%s\t%s\t%s\t<= 1.05x\t%s\t%s' \
    "$cfg" "$cfg" "$(maxof "${ly_ic[@]}" "${ly_pe[@]}")" "$E_PEER" "$RUNS" "$(range "${t_ic[@]}")" "$(range "${t_pe[@]}")" \
    "$(f1 "$(median "${cd_ic[@]}")")" "$(f1 "$(median "${cd_pe[@]}")")" "$(f1 "$(median "${cc_ic[@]}")")" "$(f1 "$(median "${cc_pe[@]}")")" \
    "${up_ic[*]:-?}" "${up_pe[*]:-?}" \
    "$(fmt_t "$t_abs_ic")" "$(fmt_t "$t_abs_pe")" "$(ratio "$r2")" "$(yesno "$r2" '<=' 1.05)" "${NA[$cfg/absent]:-${NA[$cfg/absent-peer]:-}}")")
  # ---- 4. upgrade: load v2 into the engine holding exactly v1, alternating (its row follows 2's)
  want 4 && measure_upgrade "$cfg"
  local s1a s1b r1s s2 r2s s2cpu s2up s4="-" r4s="-" s4w="-"
  s1a="$(fmt_t "$t_pres")"; s1b="$(fmt_t "$t_pres_pe")"; r1s="$([ -n "$r1" ] && printf '%.0fx faster' "$r1" || echo n/a)"
  s2="$(fmt_t "$t_abs_ic") / $(fmt_t "$t_abs_pe")"; r2s="$(ratio "$r2")$(unmeasured "$cfg/absent" && echo ' NOT MEASURED')"
  s2cpu="$(f1 "$(median "${cd_ic[@]}")") s / $(f1 "$(median "${cd_pe[@]}")") s"; s2up="${up_ic[*]:-?} / ${up_pe[*]:-?}"
  want 1 || { s1a=-; s1b=-; r1s=-; }
  want 2 || { s2=-; r2s=-; s2cpu=-; s2up=-; }
  if want 4; then
    s4="$(fmt_t "$U_T_IC") / $(fmt_t "$U_T_PE")"; r4s="$(ratio "$U_R")$(unmeasured "$cfg/upgrade" && echo ' NOT MEASURED')"
    s4w="$(fmt_b "$U_SENT")"
  fi
  SUMMARY+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
    "$cfg" "$E_DESC" "$([ -n "$E_UNPIGZ" ] && echo yes || echo no)" "$E_PEER" "$s1a" "$s1b" "$r1s" "$s2" "$r2s" "$s2cpu" "$s2up" "$s4" "$r4s" "$s4w")")
  want 1 || want 2 && RAWLINES+=("$(printf '# raw\tconfig=%s\tt_present_s=%s\tt_present_peer_s=%s\tabsent_imgcache_s=%s\tabsent_peer_s=%s\tdaemon_cpu_imgcache_s=%s\tdaemon_cpu_peer_s=%s\tclient_cpu_imgcache_s=%s\tclient_cpu_peer_s=%s\tunpigz_imgcache=%s\tunpigz_peer=%s\tlayers_imgcache=%s\tlayers_peer=%s' \
    "$cfg" "$t_pres" "$t_pres_pe" "${t_ic[*]}" "${t_pe[*]}" "${cd_ic[*]}" "${cd_pe[*]}" "${cc_ic[*]}" "${cc_pe[*]}" "${up_ic[*]}" "${up_pe[*]}" "${ly_ic[*]}" "${ly_pe[*]}")")
  RAW="$RAWROOT"
}

# io_rchar : IO_R = rchar of this shell's /proc/PID/io, which includes that of its reaped children
# and theirs (no fork: the read builtin). Not wchar: imgcache sends on sockets with sendto(2),
# which /proc/PID/io does not count.
io_rchar() {
  local k v
  IO_R=""
  while read -r k v; do [ "$k" = rchar: ] && IO_R="$v"; done <"/proc/$BASHPID/io"
}
# v1_only : the engine holds exactly REF (v1's ID, no REF2, one image, V1_LAYERS unpacked layers);
# else UP_WHY says what it holds
v1_only() {
  local id1 id2 lay n
  id1="$(engine_id)"; id2="$(engine_id_of "$REF2")"; lay="$(stored_layers)"; n="$(engine_images)"
  [ "$id1" = "$IMAGE_ID" ] && [ -z "$id2" ] && [ "$lay" = "$V1_LAYERS" ] && [ "$n" = 1 ] && return 0
  UP_WHY="REF's ID ${id1:-none}, $REF2 ${id2:-absent}, $n images, $lay layers unpacked (expected $V1_LAYERS)"
  return 1
}
# sent_bytes STRACE : the bytes imgcache sent in the bodies of its POST /images/load requests:
# the return values of sendto/sendmsg/write/writev on a descriptor from the send that starts the
# request to its close, in processes that did not execve (the ctr runs are left out)
sent_bytes() {
  awk '
    function ret(s) { sub(/.*\) += /, "", s); return s + 0 } # the return value: after the last ") = "
    { pid = $1; l = substr($0, length($1) + 2) }
    l ~ /^execve\(/ { if (main != "" && pid != main) other[pid] = 1; if (main == "") main = pid; next }
    other[pid] { next }
    l ~ /^<\.\.\. (sendto|sendmsg|write|writev) resumed>/ {
      if ((pid, "p") in fd) { f = fd[pid, "p"]; delete fd[pid, "p"]; if (on[f] && ret(l) > 0) sum += ret(l) }
      next }
    l ~ /^(sendto|sendmsg|write|writev)\(/ {
      f = l; sub(/^[a-z]+\(/, "", f); sub(/,.*/, "", f)
      if (l ~ /"POST \/[^"]*images\/load/) on[f] = 1
      if (l ~ /<unfinished \.\.\.>$/) { fd[pid, "p"] = f; next }
      if (on[f] && ret(l) > 0) sum += ret(l); next }
    l ~ /^close\(/ { f = l; sub(/^close\(/, "", f); sub(/[ )].*/, "", f); delete on[f] }
    END { if (sum > 0) print sum }' "$1"
}
# upgrade_base F : empty the engine (as in row 2), load REF with imgcache (untimed, answer in
# F.base.json), and check the engine holds exactly REF: REF is v1's ID, no REF2, one image and
# V1_LAYERS unpacked layers. Sets UP_WHY and returns 1 if not.
upgrade_base() {
  local rc
  UP_WHY=""
  empty_engine "$RAW/empty.log" || { UP_WHY="not empty: $(tail -1 "$RAW/empty.log")"; return 1; }
  "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine "$E_KIND" >"$1.base.json" 2>"$1.base.err"; rc=$?
  [ "$rc" = 0 ] || { UP_WHY="imgcache load $REF exit $rc: $(tail -1 "$1.base.err")"; return 1; }
  jq -e --arg id "$IMAGE_ID" '.image_id == $id and .action == "loaded"' "$1.base.json" >/dev/null 2>&1 ||
    { UP_WHY="imgcache load $REF answered $(jq -rc '[.action, .image_id] | join(" ")' "$1.base.json" 2>/dev/null)"; return 1; }
  v1_only || { UP_WHY="after loading $REF: $UP_WHY"; return 1; }
  echo "holds exactly $REF: 1 image, $V1_LAYERS layers unpacked" >>"$RAW/empty.log"
  sync
}
# v2_layers_ok : the engine holds REF2's layers: V1_LAYERS + V2_NEW unpacked layers (overlay2
# directories or snapshots); on the classic store also REF2's RootFS.Layers = v2's diff_ids
v2_layers_ok() {
  local lay; lay="$(stored_layers)"
  [ "$lay" -ge $((V1_LAYERS + V2_NEW)) ] || { UP_WHY="$lay unpacked layers, expected $((V1_LAYERS + V2_NEW))"; return 1; }
  [ "$E_STORE" = classic ] || return 0
  [ "$(dk image inspect -f '{{json .RootFS.Layers}}' "$REF2" 2>/dev/null | jq -c . 2>/dev/null)" = "$V2_DIFFS" ] ||
    { UP_WHY="the engine's $REF2 RootFS.Layers are not v2's diff_ids"; return 1; }
}
# measure_upgrade CFG : row 4 on the running engine; sets U_T_IC, U_T_PE, U_R (median seconds,
# ratio), U_SENT (bytes imgcache sent, Docker engines) and appends to ROWS and RAWLINES
measure_upgrade() {
  local cfg="$1" i who a b c0 rc f r0 got ans sent_note
  local t_ic=() t_pe=() cd_ic=() cd_pe=() cc_ic=() cc_pe=() r_ic=() ly_ic=() ly_pe=()
  U_T_IC=""; U_T_PE=""; U_R=""; U_SENT=""
  warm "${CACHE_BLOBS[@]}" "$ARCHIVE2"
  for i in $(seq 1 "$RUNS"); do
    for who in imgcache peer; do
      f="$RAW/upgrade-$who-$i"
      upgrade_base "$f" || { not_measured "$cfg/upgrade" "before run $i ($who) the engine could not be made to hold exactly $REF: $UP_WHY"; break 2; }
      log "$cfg: upgrade $REF -> $REF2 $i/$RUNS: $who"
      c0="$(daemon_cpu "${E_PIDS[@]}")"
      a=$(now)
      io_rchar; r0="$IO_R"
      if [ $who = imgcache ]; then
        /usr/bin/time -f '%U %S' -o "$f.time" "$IMGCACHE" --root "$CACHE" --json load "$REF2" --engine "$E_KIND" >"$f.json" 2>"$f.err"; rc=$?
      else
        /usr/bin/time -f '%U %S' -o "$f.time" "${E_PEER2_CMD[@]}" >"$f.out" 2>&1; rc=$?
      fi
      io_rchar
      b=$(now)
      got="$(engine_id_of "$REF2")"
      if [ $who = imgcache ]; then
        if [ $rc != 0 ]; then NA[$cfg/upgrade]="imgcache load $REF2 exit $rc: $(tail -1 "$f.err")"; BAD=1; tail -5 "$f.err" >&2
        elif ! jq -e --arg id "$V2_ID" '.image_id == $id and .action == "loaded"' "$f.json" >/dev/null 2>&1; then
          log "ERROR: imgcache load $REF2 did not answer image $V2_ID, action loaded:"; head -c 600 "$f.json" >&2
          ans="$(jq -rc '[.action, .image_id] | join(" ")' "$f.json" 2>/dev/null)"
          if jq -e --arg id "$V2_ID" '.image_id == $id and (.action == "already-present" or .action == "tagged")' "$f.json" >/dev/null 2>&1; then
            not_measured "$cfg/upgrade" "a load into the engine holding only $REF answered $ans"
          else NA[$cfg/upgrade]="imgcache load $REF2 answered ${ans:-nothing}"; BAD=1; fi
        elif [ "$got" != "$V2_ID" ]; then
          log "ERROR: after imgcache, the engine's $REF2 is '${got:-nothing}', expected $V2_ID"
          NA[$cfg/upgrade]="after imgcache the engine's $REF2 is ${got:-missing}"; BAD=1
        elif ! v2_layers_ok; then
          not_measured "$cfg/upgrade" "after imgcache's load of $REF2: $UP_WHY"
        else
          t_ic+=("$(elapsed "$a" "$b")"); cd_ic+=("$(elapsed "$c0" "$(daemon_cpu "${E_PIDS[@]}")")")
          cc_ic+=("$(cpu_of "$f.time")"); r_ic+=("$((IO_R - r0))"); ly_ic+=("$(stored_layers)")
        fi
      else
        if [ $rc != 0 ]; then log "$E_PEER failed (exit $rc):"; tail -5 "$f.out" >&2; NA[$cfg/upgrade-peer]="$E_PEER exit $rc: $(tail -1 "$f.out")"
        elif [ "$got" != "$V2_ID" ]; then NA[$cfg/upgrade-peer]="after $E_PEER the engine's $REF2 is ${got:-missing}"; log "ERROR: ${NA[$cfg/upgrade-peer]}"
        else
          v2_layers_ok || NA[$cfg/upgrade-peer]="after $E_PEER: $UP_WHY"
          t_pe+=("$(elapsed "$a" "$b")"); cd_pe+=("$(elapsed "$c0" "$(daemon_cpu "${E_PIDS[@]}")")")
          cc_pe+=("$(cpu_of "$f.time")"); ly_pe+=("$(stored_layers)")
        fi
      fi
    done
  done
  unmeasured "$cfg/upgrade" && { t_ic=(); cd_ic=(); cc_ic=(); r_ic=(); }
  U_T_IC="$(median "${t_ic[@]}")"; U_T_PE="$(median "${t_pe[@]}")"; U_R="$(div "$U_T_IC" "$U_T_PE")"
  # the bytes imgcache sends: one more load of REF2, untimed, under strace, from the same state
  sent_note="bytes sent by imgcache: not counted (the tarball goes to containerd through ctr)"
  if [ "$E_KIND" = docker ] && [ ${#t_ic[@]} -gt 0 ]; then
    f="$RAW/upgrade-bytes"
    dk rmi -f "$REF2" >/dev/null 2>&1; [ "$E_STORE" = classic ] && dk rmi -f "$V2_ID" >/dev/null 2>&1
    for _ in $(seq 1 60); do v1_only && break; sleep 0.5; done
    if v1_only; then echo "before the strace run, after docker rmi $REF2: holds exactly $REF" >>"$RAW/empty.log"
    else log "$cfg: after docker rmi $REF2: $UP_WHY; emptying the engine and loading $REF again"; fi
    if v1_only || upgrade_base "$f"; then
      strace -f -qq -e trace=execve,sendto,sendmsg,write,writev,close -e signal=none -o "$f.strace" \
        "$IMGCACHE" --root "$CACHE" --json load "$REF2" --engine "$E_KIND" >"$f.json" 2>"$f.err"
      if jq -e --arg id "$V2_ID" '.image_id == $id and .action == "loaded"' "$f.json" >/dev/null 2>&1; then
        U_SENT="$(sent_bytes "$f.strace")"
        sent_note="sent by imgcache (the POST /images/load body, HTTP chunking included; one more run under strace): $(fmt_b "$U_SENT")"
      else sent_note="bytes sent by imgcache: the strace run answered $(jq -rc '[.action, .image_id] | join(" ")' "$f.json" 2>/dev/null)"; fi
    else sent_note="bytes sent by imgcache: not counted (could not return the engine to holding exactly $REF: $UP_WHY)"; fi
  fi
  ROWS+=("$(printf '%s 4\t%s: upgrade: load of %s (shares %s of %s layers with v1, %s to unpack) into the engine holding exactly %s (emptied, then %s loaded by imgcache, untimed, before each run): imgcache load vs %s of v2'"'"'s docker-archive (%s); median of %s, alternating (imgcache %s, peer %s; %s; v2'"'"'s new gzip layers + config are %s, all of v2 %s; read by imgcache per run: %s; CPU of the daemons + children: %s s vs %s s, of the client: %s s vs %s s; layers unpacked after: %s vs %s)\t%s\t%s\t%s\t<= 0.3x\t%s\t%s' \
    "$cfg" "$cfg" "$REF2" "$V2_KEEP" "$V2_LAYERS" "$V2_NEW" "$REF" "$REF" "$E_PEER" "$(fmt_b "$ARCHIVE2_BYTES")" "$RUNS" \
    "$(range "${t_ic[@]}")" "$(range "${t_pe[@]}")" "$sent_note" "$(fmt_b "$V2_NEW_BYTES")" "$(fmt_b "$V2_BYTES")" "$(fmt_b "$(median "${r_ic[@]}")")" \
    "$(f1 "$(median "${cd_ic[@]}")")" "$(f1 "$(median "${cd_pe[@]}")")" "$(f1 "$(median "${cc_ic[@]}")")" "$(f1 "$(median "${cc_pe[@]}")")" \
    "$(maxof "${ly_ic[@]}")" "$(maxof "${ly_pe[@]}")" \
    "$(fmt_t "$U_T_IC")" "$(fmt_t "$U_T_PE")" "$(ratio "$U_R")" "$(yesno "$U_R" '<=' 0.3)" "${NA[$cfg/upgrade]:-${NA[$cfg/upgrade-peer]:-}}")")
  RAWLINES+=("$(printf '# raw\tconfig=%s\trow=4\tupgrade_imgcache_s=%s\tupgrade_peer_s=%s\tdaemon_cpu_imgcache_s=%s\tdaemon_cpu_peer_s=%s\tclient_cpu_imgcache_s=%s\tclient_cpu_peer_s=%s\tsent_imgcache=%s\trchar_imgcache=%s\tlayers_imgcache=%s\tlayers_peer=%s' \
    "$cfg" "${t_ic[*]}" "${t_pe[*]}" "${cd_ic[*]}" "${cd_pe[*]}" "${cc_ic[*]}" "${cc_pe[*]}" "$U_SENT" "${r_ic[*]}" "${ly_ic[*]}" "${ly_pe[*]}")")
}

ROWS=(); SUMMARY=(); RAWLINES=(); ENG_LINES=(); ENGINE_FAIL=0
want 1 || want 2 || want 4 || PIGZ="" # only row 3: no engine to start
for pz in $PIGZ; do
  for e in $ENGINES; do
    cfg="$e"; [ "$pz" = yes ] && cfg="$e+pigz"
    tc=$(date +%s)
    if engine_up "$e" "$pz" "${cfg//+/-}"; then
      measure "$cfg"
      ENG_LINES+=("- $cfg: $E_DESC; daemons' PATH: $(proc_path "${E_PIDS[0]}") (unpigz: ${E_UNPIGZ:-none}); peer: ${E_PEER_CMD[*]}")
      engine_down
      ENG_LINES[-1]="${ENG_LINES[-1]}; $(($(date +%s) - tc)) s"
    else
      log "ERROR: $cfg: $E_FAIL"
      ENGINE_FAIL=1
      engine_down
      ROWS+=("$(printf '%s\t%s: the engine did not start\tn/a\tn/a\tn/a\t-\tn/a\t%s' "$cfg" "$cfg" "$E_FAIL")")
      SUMMARY+=("| $cfg | did not start: $E_FAIL | | | | | | | | | | | | |")
      ENG_LINES+=("- $cfg: did not start: $E_FAIL")
    fi
  done
done

# ---- 3. save: imgcache save vs skopeo docker-archive vs cp of as many bytes ----------------------
t_sv=(); t_sk=(); t_cp=(); cpu_sv=(); SAVED_BYTES=""; SKOPEO_BYTES=""
t_save=""; t_skopeo=""; t_cpm=""; r3a=""; r3b=""; verify_note=""
SAVED="$OUT/imgcache-save.tar"; SKOUT="$OUT/skopeo-docker-archive.tar"; CPSRC="$OUT/cp-source.tar"; CPDST="$OUT/cp-copy.tar"
clear_out() { rm -f "$SAVED" "$SKOUT" "$CPDST"; sync; }
warm_registry() { find "$REGDATA/docker" -type f -name data -exec cat {} + >/dev/null; }
if want 3; then
  log "warming the page cache: registry blobs"; warm_registry
  for i in $(seq 1 "$RUNS"); do
    clear_out
    log "save $i/$RUNS: imgcache save"
    warm "${CACHE_BLOBS[@]}"
    a=$(now)
    /usr/bin/time -f '%U %S' -o "$RAW/save-$i.time" \
      "$IMGCACHE" --root "$CACHE" --json save "$REF" -o "$SAVED" >"$RAW/save-$i.json" 2>"$RAW/save-$i.err"; rc=$?
    b=$(now)
    if [ $rc = 0 ] && jq -e --arg id "$IMAGE_ID" '.image_id == $id' "$RAW/save-$i.json" >/dev/null 2>&1; then
      t_sv+=("$(elapsed "$a" "$b")"); cpu_sv+=("$(cpu_of "$RAW/save-$i.time")")
      if [ "$i" = 1 ]; then
        SAVED_BYTES="$(stat -c %s "$SAVED")"
        cp "$SAVED" "$CPSRC" # the cp peer's source: as many bytes as imgcache wrote
        log "imgcache save: deep verify of the output"
        "$IMGCACHE" --json verify --deep --no-memo --expect "$IMAGE_ID" "$SAVED" >"$RAW/save-verify.json" 2>"$RAW/save-verify.err" ||
          { NA[save]="imgcache verify --deep of the saved file failed"; BAD=1; head -c 600 "$RAW/save-verify.json" >&2; }
      elif ! cmp -s "$SAVED" "$CPSRC"; then
        NA[save]="run $i wrote other bytes than run 1"; BAD=1; log "ERROR: ${NA[save]}"
      fi
    else
      NA[save]="imgcache save exit $rc"; BAD=1; tail -5 "$RAW/save-$i.err" >&2; head -c 300 "$RAW/save-$i.json" >&2
    fi
    clear_out
    log "save $i/$RUNS: skopeo copy docker:// docker-archive:"
    a=$(now)
    "${SK[@]}" copy -q --src-tls-verify=false "docker://$REF" "docker-archive:$SKOUT:$REF" >"$RAW/skopeo-$i.out" 2>&1; rc=$?
    b=$(now)
    if [ $rc = 0 ]; then t_sk+=("$(elapsed "$a" "$b")"); SKOPEO_BYTES="$(stat -c %s "$SKOUT")"
    else log "skopeo copy failed (exit $rc):"; tail -5 "$RAW/skopeo-$i.out" >&2; fi
    if [ -s "$CPSRC" ]; then
      clear_out
      log "save $i/$RUNS: cp of $(fmt_b "$SAVED_BYTES")"
      warm "$CPSRC"
      a=$(now)
      cp "$CPSRC" "$CPDST"; rc=$?
      b=$(now)
      [ $rc = 0 ] && t_cp+=("$(elapsed "$a" "$b")")
    fi
  done
  # cheap profile of one more save (outside the timing): system calls
  if [ ${#t_sv[@]} -gt 0 ]; then
    clear_out
    strace -f -c -o "$RAW/save-strace-c.txt" "$IMGCACHE" --root "$CACHE" save "$REF" -o "$SAVED" >/dev/null 2>&1
    clear_out
  fi
  t_save="$(median "${t_sv[@]}")"; t_skopeo="$(median "${t_sk[@]}")"; t_cpm="$(median "${t_cp[@]}")"
  r3a="$(div "$t_save" "$t_skopeo")"; r3b="$(div "$t_save" "$t_cpm")"
  if [ -n "$SAVED_BYTES" ] && did_work deep "$CPSRC" "$IMAGE_ID" "$RAW/save-verify.json"; then verify_note="verify --deep --no-memo ok"
  elif [ -e "$RAW/save-verify.json" ]; then NA[save]="${NA[save]:-verify --deep of the saved file: not ok}"; BAD=1; fi
  ROWS+=("$(printf '3a\timgcache save -o FILE (%s, %s) vs skopeo copy docker:// docker-archive: (%s); median of %s\t%s\t%s\t%s\t<= 0.5x\t%s\t%s' \
    "$(fmt_b "$SAVED_BYTES")" "${verify_note:-not verified}" "$(fmt_b "$SKOPEO_BYTES")" "$RUNS" \
    "$(fmt_t "$t_save")" "$(fmt_t "$t_skopeo")" "$(ratio "$r3a")" "$(yesno "$r3a" '<=' 0.5)" "${NA[save]:-}")")
  ROWS+=("$(printf '3b\tsame vs cp of a file of the same size (%s), page cache warm (imgcache CPU user+sys %s s; coreutils cp uses copy_file_range)\t%s\t%s\t%s\t<= 1.2x\t%s\t%s' \
    "$(fmt_b "$SAVED_BYTES")" "$(f1 "$(median "${cpu_sv[@]}")")" "$(fmt_t "$t_save")" "$(fmt_t "$t_cpm")" "$(ratio "$r3b")" "$(yesno "$r3b" '<=' 1.2)" "${NA[save]:-}")")
fi
BENCH_S=$(($(date +%s) - TB))

# ---- report -------------------------------------------------------------------------------------
TSV="$BENCH_DIR/engine-results.tsv"; MD="$BENCH_DIR/engine-results.md"
{
  tsv_rows
  printf '%s\n' "${RAWLINES[@]}"
  printf '# raw\tt_save_s=%s\tt_skopeo_s=%s\tt_cp_s=%s\tsaved_bytes=%s\tarchive_bytes=%s\tsave_s=%s\tskopeo_s=%s\tcp_s=%s\tsave_cpu_s=%s\n' \
    "$t_save" "$t_skopeo" "$t_cpm" "$SAVED_BYTES" "$ARCHIVE_BYTES" "${t_sv[*]}" "${t_sk[*]}" "${t_cp[*]}" "${cpu_sv[*]}"
} >"$TSV"
{
  echo "## imgcache engine bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)"
  echo "- engines (ENGINES=\"$ENGINES\", PIGZ=\"$PIGZ\"; each started fresh in $DAEMONS/CONFIG and stopped after its rows):"
  printf '  %s\n' "${ENG_LINES[@]}"
  u="$(path_unpigz "$PATH_PIGZ")"
  echo "- tools: $(skopeo --version); hyperfine $(hyperfine --version | cut -d' ' -f2); unpigz of PIGZ=yes: ${u:-none}${u:+ ($("$u" --version 2>&1 | head -1))}"
  echo "- image: $REF $V1_DIGEST (image $IMAGE_ID, $V1_LAYERS layers, $(fmt_b "$V1_BYTES") gzip); docker-archive $(fmt_b "$ARCHIVE_BYTES") (skopeo, layers uncompressed)"
  want 4 && echo "- row 4: $REF2 $V2_DIGEST (image $V2_ID, $V2_LAYERS layers, the first $V2_KEEP v1's; the $V2_NEW new ones + config $(fmt_b "$V2_NEW_BYTES") gzip, all $(fmt_b "$V2_BYTES")); docker-archive $(fmt_b "$ARCHIVE2_BYTES")"
  echo "- method: page cache warm for every input; row 2 empties the engine (classic: docker rmi, docker image prune -af; containerd store: the same, then containerd checked; containerd: ctr images rm --sync) and checks it empty, then runs sync, before each run; forced emptyings (garbage left after 30 s): $FORCED; every imgcache load must answer action loaded and leave $V1_LAYERS layers unpacked; row 4 empties and checks the engine the same way, then loads $REF with imgcache and checks the engine holds exactly it (1 image, $V1_LAYERS layers), before each run; row 3 deletes the outputs and runs sync before each run, nothing is fsynced. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| config | engine | unpigz | peer | 1a imgcache, image present | 1b peer, image present | 1b ratio | 2 imgcache / peer, engine empty | 2 ratio | 2 daemon CPU imgcache / peer | 2 unpigz per run imgcache / peer | 4 imgcache / peer, upgrade v1 -> v2 | 4 ratio | 4 sent by imgcache |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"
  echo
  md_table '**'
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAWROOT)"
if [ "$ENGINE_FAIL" = 1 ] && [ "$BAD" = 0 ] && [ "$UNMEASURED" = 0 ]; then
  log "an engine did not start (see above): exit 3"; exit 3
fi
finish
