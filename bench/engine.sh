#!/usr/bin/env bash
# bench/engine.sh : imgcache load and save against a private Docker daemon (overlay2), side by
# side with docker load, skopeo and cp. See bench/README.md, section "Engines: load and save".
#
# Starts its own registry (scripts/testenv/start-registry.sh, 127.0.0.1:$PORT, data in
# BENCH_DIR/engine/registry) holding kicbase:v1, and its own dockerd with the overlay2 storage
# driver (scripts/testenv/start-dockerd.sh BENCH_DIR/dockerd-overlay2 overlay2). Both are stopped
# by their PID files on exit (dockerd first, cleanly, so it unmounts); the dockerd directory is
# then removed unless KEEP=1. DOCKER_HOST = that daemon's socket; the docker CLI is Debian's
# 20.10 /usr/bin/docker, for the peer, the checks, and imgcache if its adapter runs `docker`
# (a PATH shim in BENCH_DIR/engine/bin; the unix-socket adapter speaks the API itself).
# Measures, in one run:
#   1. imgcache load REF --engine docker when the engine already has the image: hyperfine
#      median (FAST_RUNS); peer: docker load -i of a docker-archive of the same image, also
#      already loaded (hyperfine, RUNS)
#   2. load when the engine lacks the image (docker rmi + docker image prune -f before each run,
#      checked empty with docker image ls / docker system df / the overlay2 directory):
#      imgcache load (image cached) vs docker load -i of the skopeo docker-archive; alternating,
#      median of RUNS
#   3. imgcache save REF -o FILE (cache warm) vs skopeo copy docker://REF docker-archive:FILE2:REF,
#      and vs cp of a file with as many bytes as imgcache's output; alternating, median of RUNS,
#      outputs deleted (and sync) before each run, all files in BENCH_DIR/engine/out
# Checks: after each load docker image inspect -f {{.Id}} REF is the image ID (and imgcache's
# --json answer names it, with the expected action); the saved file passes
# imgcache verify --deep --no-memo --expect ID (not "remembered", every byte read) and is
# identical across runs. A timed load into the empty engine must answer action "loaded" (not
# "already-present"), or the row gets no figure ("NOT MEASURED") and the exit status is 4.
# Results: a markdown table on stdout, BENCH_DIR/engine-results.md and .tsv, raw data in
# BENCH_DIR/engine/raw/. Targets are shown next to the numbers; the exit status does not depend
# on them (0 = ran, 1 = imgcache gave a wrong answer, 3 = setup failed, 4 = a timed imgcache run
# did not do the work of its row).
#
# One-time setup (kept in BENCH_DIR): the OCI layout BENCH_DIR/images/oci of bench/run.sh (built
# the same way if missing), the registry data, BENCH_DIR/engine/kicbase-docker-archive.tar
# (skopeo copy docker://REF docker-archive:...:REF) and the cache BENCH_DIR/engine/cache.
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench     shared with bench/run.sh and bench/pull.sh
#   IMGCACHE=target/release/imgcache  binary to test (this script never runs cargo)
#   PORT=5101                         registry port (must be free)
#   RUNS=5                            runs per tool in rows 2 and 3, and of docker load in row 1
#   FAST_RUNS=50                      hyperfine runs of imgcache load in row 1
#   KEEP=0                            1: keep BENCH_DIR/dockerd-overlay2 (the daemon is still stopped)
set -uo pipefail

BENCH_TAG=engine-bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${IMGCACHE:=target/release/imgcache}" "${PORT:=5101}" "${KEEP:=0}"
REG="127.0.0.1:$PORT"
REF="$REG/kicbase:v1"
DOCKER=/usr/bin/docker

bench_dir
ED="$BENCH_DIR/engine"
RAW="$ED/raw"
OUT="$ED/out"
REGDATA="$ED/registry"
CACHE="$ED/cache"
ARCHIVE="$ED/kicbase-docker-archive.tar"
DD="$BENCH_DIR/dockerd-overlay2"
mkdir -p "$ED" || die "cannot create $ED"

need_tools skopeo:skopeo jq:jq hyperfine:hyperfine curl:curl docker-registry:docker-registry \
  dockerd:docker.io containerd:containerd runc:runc strace:strace sha256sum:coreutils
[ -x "$DOCKER" ] || apt_install docker.io || die "no $DOCKER (Debian docker.io)"

# ---- imgcache binary ----------------------------------------------------------------------------
imgcache_abs
[ -x "$IMGCACHE" ] || die "no imgcache binary at $IMGCACHE (cargo build --release -p imgcache-cli, or set IMGCACHE)"
"$IMGCACHE" load --help >/dev/null 2>&1 || die "$IMGCACHE has no 'load' command (stale build?)"
"$IMGCACHE" save --help >/dev/null 2>&1 || die "$IMGCACHE has no 'save' command (stale build?)"

# ---- one-time: the kicbase layout of bench/run.sh -----------------------------------------------
T0=$(date +%s)
ensure_layout "$REG"
IMAGE_ID="$V1_CONFIG_DIGEST"

# ---- cleanup: dockerd (cleanly, then leftover mounts), its containerd, the registry -------------
DD_STARTED=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ "$DD_STARTED" = 1 ]; then
    "$TESTENV/stop-pidfile.sh" "$DD/dockerd.pid" 30 "--data-root $DD/data" || true
    "$TESTENV/stop-pidfile.sh" "$DD/containerd/containerd.pid" 20 "$DD/containerd/config.toml" || true
    local m
    while read -r m; do
      m="$(printf '%b' "$m")"
      log "umount leftover $m"; umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(awk -v b="$DD/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    if [ "$KEEP" != 1 ]; then
      if awk -v b="$DD/" 'index($5, b) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        log "something is still mounted under $DD: not removing it"
      else rm -rf "$DD"; fi
    fi
  fi
  rm -rf "$OUT"
  stop_registry
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- registry with kicbase:v1 -------------------------------------------------------------------
start_registry "$PORT" "$REGDATA"
push "oci:$LAYOUT:$TAG" kicbase:v1 || die "push $REF failed"
V1_DIGEST="$(reg_digest kicbase:v1)"
[[ "$V1_DIGEST" == sha256:* ]] || die "cannot read the digest of $REF"

# ---- one-time: the skopeo docker-archive of the same image --------------------------------------
ASTAMP="$ED/.archive-${V1_DIGEST#sha256:}"
if [ ! -e "$ASTAMP" ] || [ ! -s "$ARCHIVE" ]; then
  log "skopeo copy docker://$REF docker-archive:$ARCHIVE:$REF"
  rm -f "$ARCHIVE" "$ED"/.archive-*
  "${SK[@]}" copy -q --src-tls-verify=false "docker://$REF" "docker-archive:$ARCHIVE:$REF" >&2 || die "skopeo docker-archive failed"
  a_id="sha256:$("${SK[@]}" inspect --config --raw "docker-archive:$ARCHIVE" | sha256sum | cut -d' ' -f1)"
  [ "$a_id" = "$IMAGE_ID" ] || die "the docker-archive holds image $a_id, expected $IMAGE_ID"
  touch "$ASTAMP"
fi
ARCHIVE_BYTES="$(stat -c %s "$ARCHIVE")"

# ---- the imgcache cache holding kicbase:v1 -------------------------------------------------------
mkdir -p "$RAW.setup"
"$IMGCACHE" --root "$CACHE" --json pull "$REF" >"$RAW.setup/pull.json" 2>"$RAW.setup/pull.err" ||
  { tail -5 "$RAW.setup/pull.err" >&2; die "imgcache pull $REF failed"; }
jq -e --arg id "$IMAGE_ID" '.image_id == $id' "$RAW.setup/pull.json" >/dev/null ||
  { log "ERROR: imgcache pull did not report $IMAGE_ID"; exit 1; }

# ---- dockerd (overlay2), private; the docker CLI for everyone is /usr/bin/docker -----------------
[ -e "$DD/dockerd.pid" ] && log "reusing $DD (KEEP=1 earlier?)"
DD_STARTED=1
DD_PID="$(DOCKERD_EXTRA_ARGS="" "$TESTENV/start-dockerd.sh" "$DD" overlay2)" || die "could not start dockerd (overlay2) in $DD"
export DOCKER_HOST="unix://$DD/docker.sock"
unset DOCKER_CONTEXT DOCKER_CONFIG
{ mkdir -p "$ED/bin" && ln -sfn "$DOCKER" "$ED/bin/docker"; } || die "cannot create $ED/bin/docker"
export PATH="$ED/bin:$PATH" # imgcache runs `docker` from the PATH: the same 20.10 CLI as the peer
dk() { "$DOCKER" "$@"; }
DRIVER="$(dk info -f '{{.Driver}}' 2>/dev/null)"
[ "$DRIVER" = overlay2 ] || die "dockerd in $DD runs storage driver '${DRIVER:-?}', not overlay2"
DOCKERD_VER="$(dk version -f '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
log "dockerd $DOCKERD_VER pid $DD_PID, overlay2, DOCKER_HOST=$DOCKER_HOST"
SETUP_S=$(($(date +%s) - T0))

# ---- helpers ------------------------------------------------------------------------------------
rm -rf "$RAW" "$OUT"; mv "$RAW.setup" "$RAW"; mkdir -p "$OUT"
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
engine_id() { dk image inspect -f '{{.Id}}' "$REF" 2>/dev/null; }
# check_engine ROW WHO : the engine's REF is the image ID
check_engine() {
  local got; got="$(engine_id)"
  [ "$got" = "$IMAGE_ID" ] && return 0
  log "ERROR: after $2, docker image inspect $REF gives '${got:-nothing}', expected $IMAGE_ID"
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
  else NA[$1]="imgcache load answered $got"; BAD=1; fi
  return 1
}
overlay_dirs() { find "$DD/data/overlay2" -mindepth 1 -maxdepth 1 ! -name l 2>/dev/null | wc -l; }
# empty_engine : docker rmi + docker image prune -f; then no image, 0 B of images, no overlay2 layer
empty_engine() {
  dk rmi -f "$REF" >/dev/null 2>&1
  dk rmi -f "$IMAGE_ID" >/dev/null 2>&1
  dk image prune -f >/dev/null 2>&1
  local n sz l
  n="$(dk image ls -aq | wc -l)"
  sz="$(dk system df --format '{{.Type}} {{.Size}}' | awk '$1 == "Images" {print $2}')"
  l="$(overlay_dirs)"
  sync
  [ "$n" = 0 ] && [ "$sz" = 0B ] && [ "$l" = 0 ] && return 0
  log "ERROR: the engine is not empty after rmi + prune: $n images, $sz, $l overlay2 layer directories"
  return 1
}
CLK="$(getconf CLK_TCK)"
# CPU seconds used so far by dockerd and its waited-for children (unpigz, ...)
dockerd_cpu() { awk -v c="$CLK" '{ printf "%.2f", ($14 + $15 + $16 + $17) / c }' "/proc/$DD_PID/stat" 2>/dev/null; }
CACHE_BLOBS=()
while IFS= read -r f; do CACHE_BLOBS+=("$f"); done < <(find "$CACHE" -type f -path '*sha256*' -size +1k)

# ---- 2. load into an engine that lacks the image: imgcache load vs docker load -i, alternating --
warm "${CACHE_BLOBS[@]}" "$ARCHIVE"
t_ic=(); t_dk=(); cpu_d_ic=(); cpu_d_dk=(); cpu_ic=(); cpu_dk=()
for i in $(seq 1 "$RUNS"); do
  for who in imgcache docker; do
    empty_engine || { NA[absent]="engine not empty before a run"; break 2; }
    log "load into the empty engine $i/$RUNS: $who"
    c0="$(dockerd_cpu)"
    if [ $who = imgcache ]; then
      a=$(now)
      /usr/bin/time -f '%U %S' -o "$RAW/absent-imgcache-$i.time" \
        "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine docker >"$RAW/absent-imgcache-$i.json" 2>"$RAW/absent-imgcache-$i.err"; rc=$?
      b=$(now)
      if [ $rc != 0 ]; then NA[absent]="imgcache load exit $rc"; BAD=1; tail -5 "$RAW/absent-imgcache-$i.err" >&2
      elif check_load absent "$RAW/absent-imgcache-$i.json" loaded && check_engine absent imgcache; then
        t_ic+=("$(elapsed "$a" "$b")"); cpu_d_ic+=("$(elapsed "$c0" "$(dockerd_cpu)")")
        cpu_ic+=("$(awk 'END { printf "%.2f", $1 + $2 }' "$RAW/absent-imgcache-$i.time")")
      fi
    else
      a=$(now)
      /usr/bin/time -f '%U %S' -o "$RAW/absent-docker-$i.time" "$DOCKER" load -q -i "$ARCHIVE" >"$RAW/absent-docker-$i.out" 2>&1; rc=$?
      b=$(now)
      if [ $rc != 0 ]; then log "docker load failed (exit $rc):"; tail -5 "$RAW/absent-docker-$i.out" >&2
      elif check_engine absent-docker docker; then
        t_dk+=("$(elapsed "$a" "$b")"); cpu_d_dk+=("$(elapsed "$c0" "$(dockerd_cpu)")")
        cpu_dk+=("$(awk 'END { printf "%.2f", $1 + $2 }' "$RAW/absent-docker-$i.time")")
      fi
    fi
  done
done
unmeasured absent && { t_ic=(); cpu_d_ic=(); cpu_ic=(); }
t_abs_ic="$(median "${t_ic[@]}")"; t_abs_dk="$(median "${t_dk[@]}")"
r2="$(div "$t_abs_ic" "$t_abs_dk")"
layers_loaded="$(overlay_dirs)"

# ---- 1. load when the engine already has the image -----------------------------------------------
t_pres=""; t_pres_dk=""; execs=""; conns=""
if [ "$(engine_id)" != "$IMAGE_ID" ]; then
  log "loading $REF once (docker load) for row 1"
  dk load -q -i "$ARCHIVE" >"$RAW/present-setup.out" 2>&1
fi
if check_engine present docker; then
  "$IMGCACHE" --root "$CACHE" --json load "$REF" --engine docker >"$RAW/present.json" 2>"$RAW/present.err"
  if check_load present "$RAW/present.json" already-present; then
    t_pres="$(hf present "$FAST_RUNS" 3 "$IMGCACHE --root $CACHE load $REF --engine docker")"
    # cheap profile: the processes it starts, and its debug log with timestamps
    strace -f -qq -tt -e trace=execve,connect -e signal=none -o "$RAW/present-strace.txt" \
      "$IMGCACHE" --root "$CACHE" load "$REF" --engine docker >/dev/null 2>&1
    execs="$(grep -c 'execve("[^"]*/docker"' "$RAW/present-strace.txt")"
    conns="$(grep -c "connect(.*sun_path=\"$DD/docker.sock\"" "$RAW/present-strace.txt")"
    IMGCACHE_LOG=debug "$IMGCACHE" --root "$CACHE" load "$REF" --engine docker >/dev/null 2>"$RAW/present-debug.log"
    check_engine present imgcache
  fi
  t_pres_dk="$(hf present-docker "$RUNS" 1 "$DOCKER load -q -i $ARCHIVE")"
  check_engine present-docker docker
fi
r1="$(div "$t_pres_dk" "$t_pres")"

# ---- 3. save: imgcache save vs skopeo docker-archive vs cp of as many bytes ----------------------
t_sv=(); t_sk=(); t_cp=(); cpu_sv=(); SAVED_BYTES=""; SKOPEO_BYTES=""
SAVED="$OUT/imgcache-save.tar"; SKOUT="$OUT/skopeo-docker-archive.tar"; CPSRC="$OUT/cp-source.tar"; CPDST="$OUT/cp-copy.tar"
clear_out() { rm -f "$SAVED" "$SKOUT" "$CPDST"; sync; }
warm_registry() { find "$REGDATA/docker" -type f -name data -exec cat {} + >/dev/null; }
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
    t_sv+=("$(elapsed "$a" "$b")"); cpu_sv+=("$(awk 'END { printf "%.2f", $1 + $2 }' "$RAW/save-$i.time")")
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
verify_note=""
if [ -n "$SAVED_BYTES" ] && did_work deep "$CPSRC" "$IMAGE_ID" "$RAW/save-verify.json"; then verify_note="verify --deep --no-memo ok"
elif [ -e "$RAW/save-verify.json" ]; then NA[save]="${NA[save]:-verify --deep of the saved file: not ok}"; BAD=1; fi
BENCH_S=$(($(date +%s) - TB))

# ---- report -------------------------------------------------------------------------------------
ROWS+=("$(printf '1a\timgcache load, engine already has the image (hyperfine, %s runs; per run: %s docker commands, %s connections to the socket)\t%s\t\t\t<= 50 ms\t%s\t%s' \
  "$FAST_RUNS" "${execs:-?}" "${conns:-?}" "$(fmt_t "$t_pres")" "$(yesno "$t_pres" '<=' 0.050)" "${NA[present]:-}")")
ROWS+=("$(printf '1b\tsame vs docker load -i of the docker-archive (%s), engine already has the image (hyperfine, %s runs, median)\t%s\t%s\t%s\t>= 20x faster\t%s\t%s' \
  "$(fmt_b "$ARCHIVE_BYTES")" "$RUNS" "$(fmt_t "$t_pres")" "$(fmt_t "$t_pres_dk")" "$([ -n "$r1" ] && printf '%.0fx faster' "$r1" || echo n/a)" \
  "$(yesno "$r1" '>=' 20)" "${NA[present]:-${NA[present-docker]:-}}")")
ROWS+=("$(printf '2\tload into the empty engine (overlay2; %s layers): imgcache load vs docker load -i of the docker-archive; median of %s, alternating (imgcache %s, docker %s; CPU of dockerd + children: %s s vs %s s, of the client: %s s vs %s s)\t%s\t%s\t%s\t<= 1.05x\t%s\t%s' \
  "${layers_loaded:-?}" "$RUNS" "$(range "${t_ic[@]}")" "$(range "${t_dk[@]}")" \
  "$(f1 "$(median "${cpu_d_ic[@]}")")" "$(f1 "$(median "${cpu_d_dk[@]}")")" "$(f1 "$(median "${cpu_ic[@]}")")" "$(f1 "$(median "${cpu_dk[@]}")")" \
  "$(fmt_t "$t_abs_ic")" "$(fmt_t "$t_abs_dk")" "$(ratio "$r2")" "$(yesno "$r2" '<=' 1.05)" "${NA[absent]:-${NA[absent-docker]:-}}")")
ROWS+=("$(printf '3a\timgcache save -o FILE (%s, %s) vs skopeo copy docker:// docker-archive: (%s); median of %s\t%s\t%s\t%s\t<= 0.5x\t%s\t%s' \
  "$(fmt_b "$SAVED_BYTES")" "${verify_note:-not verified}" "$(fmt_b "$SKOPEO_BYTES")" "$RUNS" \
  "$(fmt_t "$t_save")" "$(fmt_t "$t_skopeo")" "$(ratio "$r3a")" "$(yesno "$r3a" '<=' 0.5)" "${NA[save]:-}")")
ROWS+=("$(printf '3b\tsame vs cp of a file of the same size (%s), page cache warm (imgcache CPU user+sys %s s; coreutils cp uses copy_file_range)\t%s\t%s\t%s\t<= 1.2x\t%s\t%s' \
  "$(fmt_b "$SAVED_BYTES")" "$(f1 "$(median "${cpu_sv[@]}")")" "$(fmt_t "$t_save")" "$(fmt_t "$t_cpm")" "$(ratio "$r3b")" "$(yesno "$r3b" '<=' 1.2)" "${NA[save]:-}")")

TSV="$BENCH_DIR/engine-results.tsv"; MD="$BENCH_DIR/engine-results.md"
{
  tsv_rows
  printf '# raw\tt_present_s=%s\tt_present_docker_s=%s\tt_absent_imgcache_s=%s\tt_absent_docker_s=%s\tt_save_s=%s\tt_skopeo_s=%s\tt_cp_s=%s\tsaved_bytes=%s\tarchive_bytes=%s\tdocker_execs=%s\tsocket_connects=%s\n' \
    "$t_pres" "$t_pres_dk" "$t_abs_ic" "$t_abs_dk" "$t_save" "$t_skopeo" "$t_cpm" "$SAVED_BYTES" "$ARCHIVE_BYTES" "$execs" "$conns"
  printf '# raw\tabsent_imgcache_s=%s\tabsent_docker_s=%s\tsave_s=%s\tskopeo_s=%s\tcp_s=%s\tdockerd_cpu_imgcache_s=%s\tdockerd_cpu_docker_s=%s\tclient_cpu_imgcache_s=%s\tclient_cpu_docker_s=%s\tsave_cpu_s=%s\n' \
    "${t_ic[*]}" "${t_dk[*]}" "${t_sv[*]}" "${t_sk[*]}" "${t_cp[*]}" "${cpu_d_ic[*]}" "${cpu_d_dk[*]}" "${cpu_ic[*]}" "${cpu_dk[*]}" "${cpu_sv[*]}"
} >"$TSV"
{
  echo "## imgcache engine bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)"
  echo "- engine: dockerd $DOCKERD_VER, storage driver overlay2, private ($DD); CLI $("$DOCKER" --version) for the peer and the checks (and first on imgcache's PATH); $(skopeo --version); hyperfine $(hyperfine --version | cut -d' ' -f2)"
  echo "- image: $REF $V1_DIGEST (image $IMAGE_ID, $V1_LAYERS layers, $(fmt_b "$V1_BYTES") gzip); docker-archive $(fmt_b "$ARCHIVE_BYTES") (skopeo, layers uncompressed)"
  echo "- method: page cache warm for every input; row 2 empties the engine (docker rmi, docker image prune -f, checked) and runs sync before each run, and every imgcache load must answer action loaded; row 3 deletes the outputs and runs sync before each run, nothing is fsynced. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  md_table '**'
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
finish
