#!/usr/bin/env bash
# bench/serve.sh : imgcache serve (the read-only registry over the cache) side by side with
# Debian's distribution registry ("docker-registry" 2.8, filesystem storage) holding the same
# image. See bench/README.md, section "Serve".
#
# Starts its own registry (scripts/testenv/start-registry.sh, 127.0.0.1:$PORT, data in
# BENCH_DIR/serve/registry) holding kicbase:v1 (pushed from bench/run.sh's OCI layout, built the
# same way if missing), pulls it into its own cache (BENCH_DIR/serve/cache), restarts the registry
# (so that its peak RSS counts only what it serves), and starts 'imgcache --root CACHE serve
# --offline --listen 127.0.0.1:0'. Both serve plain http on 127.0.0.1. Measures, in one run:
#   1. one client: skopeo copy --src-tls-verify=false docker://HOST/kicbase:v1 dir:OUT from serve
#      vs from the registry; alternating, median of RUNS; OUT removed (and sync) before each run
#   2. CLIENTS (8) clients at once: CLIENTS skopeo copies into CLIENTS dirs; wall time from the
#      start of the first to the end of the last, and the aggregate throughput (the image's bytes
#      x CLIENTS / wall time); alternating, median of RUNS
#   3. peak RSS of each server during row 2's runs: VmHWM of /proc/PID/status, reset before every
#      run (echo 5 >/proc/PID/clear_refs), the max over the runs; VmRSS is also polled every 0.1 s
#   4. docker pull 127.0.0.1:SERVEPORT/kicbase:v1 from serve into an empty private dockerd 20.10
#      (overlay2; engine.sh's d20) vs docker load -i of a skopeo docker-archive of the same image
#      into the same empty engine; alternating, median of RUNS; no target (it says which load path
#      is faster). The engine is emptied (docker rmi, docker image prune -af) and checked empty
#      (docker image ls, docker system df, overlay2/ and layerdb/ directories) before each run.
# Checks, before a figure is printed:
#   - serve runs with --offline (its /proc/PID/cmdline), the cache holds the image (imgcache ls
#     and verify), and serve answers the origin's manifest digest for kicbase:v1; the registry's
#     access log must not grow during any serve run (nothing was pulled through)
#   - every skopeo copy exits 0 and its dir: output holds the image: manifest.json's sha256 is the
#     origin's manifest digest, one file per blob of the manifest (config + layers) with its
#     size, and nothing else but 'version' (file count and total bytes equal to the image's)
#   - after docker pull: docker image inspect's Id is the image ID (the config digest), its
#     RepoDigests name the manifest digest, and the layers are unpacked (as many overlay2
#     directories as layers); after docker load: the Id, and the layers
# A failed check on serve's side turns the row's imgcache cell into "NOT MEASURED: reason" (and
# sets exit status 4; a wrong manifest digest or a failed copy from serve sets 1); a failed check
# on the registry's or docker load's side does the same to the peer cell.
# Results: a markdown table on stdout and in BENCH_DIR/serve/results.md, the same rows in
# BENCH_DIR/serve/results.tsv, raw data in BENCH_DIR/serve/raw/. Targets are shown next to the
# numbers; the exit status does not depend on them (0 = ran, 1 = imgcache gave a wrong answer,
# 3 = setup failed, 4 = a check failed: a row has no figure).
#
# One-time setup (kept in BENCH_DIR): the OCI layout BENCH_DIR/images/oci, the registry's data,
# the cache BENCH_DIR/serve/cache and BENCH_DIR/serve/kicbase-docker-archive.tar (made again if
# the registry's manifest digest changes).
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench  shared with bench/run.sh, pull.sh and engine.sh
#   IMGCACHE=...                   binary to test; unset: cargo build --release -p imgcache-cli
#   PORT=5102                      registry port (must be free)
#   RUNS=5                         runs per server in rows 1, 2 and 4 (medians)
#   CLIENTS=8                      clients at once in rows 2 and 3
#   MEASURE="1 2 3 4"              the rows to measure (2 and 3 share their runs)
#   PIGZ=no                        yes: the dockerd of row 4 finds unpigz on its PATH
#   OUT_DIR=/dev/shm/imgcache-serve-out  where the copies go (removed at exit); default there
#                                  when /dev/shm has 6 GB free, else BENCH_DIR/serve/out
#   KEEP=0                         1: keep the engine's directory (the daemons are stopped)
set -uo pipefail

BENCH_TAG=serve-bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${PORT:=5102}" "${KEEP:=0}" "${CLIENTS:=8}"
PZ="${PIGZ:-no}"
export -n PIGZ # pigz and unpigz read options from $PIGZ (see engine.sh)
MEASURE="${MEASURE-1 2 3 4}"
REG="127.0.0.1:$PORT"
REF="$REG/kicbase:v1"
# As skopeo writes it in RepoTags (it normalizes a bare name), so the archive is reused between runs.
ARCHIVE_TAG=docker.io/library/kicbase:v1
DOCKER=/usr/bin/docker
RSS_TARGET_KIB=65536

for r in $MEASURE; do case "$r" in 1 | 2 | 3 | 4) ;; *) die "MEASURE: rows 1 2 3 4, not '$r'" ;; esac; done
[ -n "${MEASURE// /}" ] || die "MEASURE must name at least one row (1 2 3 4)"
want() { case " $MEASURE " in *" $1 "*) return 0 ;; esac; return 1; }
case "$PZ" in no | yes) ;; *) die "PIGZ: no or yes, not '$PZ'" ;; esac
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "CLIENTS: a positive number, not '$CLIENTS'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS: a positive number, not '$RUNS'"

bench_dir
SD="$BENCH_DIR/serve"
RAW="$SD/raw"
REGDATA="$SD/registry"
CACHE="$SD/cache"
ARCHIVE="$SD/kicbase-docker-archive.tar"
E_DIR="$SD/daemons/d20"
# The clients' disk writes (4.8 GB in row 2) are not what is measured: they go to /dev/shm when
# it has room (writeback throttling made row 2 vary by a fifth between runs), else to BENCH_DIR.
shm_free_kb() { df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }'; }
if [ -z "${OUT_DIR:-}" ] && [ "$(shm_free_kb || echo 0)" -gt $((6 * 1024 * 1024)) ]; then
  OUT_DIR=/dev/shm/imgcache-serve-out
fi
OUT="${OUT_DIR:-$SD/out}"
mkdir -p "$SD" || die "cannot create $SD"

tools=(skopeo:skopeo jq:jq curl:curl docker-registry:docker-registry sha256sum:coreutils)
want 4 && tools+=(dockerd:docker.io containerd:containerd runc:runc)
[ "$PZ" = yes ] && tools+=(unpigz:pigz)
need_tools "${tools[@]}"
if want 4; then [ -x "$DOCKER" ] || apt_install docker.io || die "no $DOCKER (Debian docker.io)"; fi

# ---- imgcache binary (bench/run.sh's way) -------------------------------------------------------
need_imgcache "$SD"
"$IMGCACHE" serve --help 2>/dev/null | grep -q -- --offline || die "$IMGCACHE has no 'serve --offline' (stale build?)"

# ---- cleanup: every process this script starts, by its PID ----------------------------------------
SERVE_PID=""; POLL_PID=""; CLIENT_PIDS=(); ENGINE_UP=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  stop_poll
  stop_serve
  if [ "$ENGINE_UP" = 1 ]; then stop_daemons "$E_DIR" "$KEEP" || true; fi
  stop_registry
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)
# ---- the registry with kicbase:v1 and the cache -----------------------------------------------------
ensure_layout "$REG"
IMAGE_ID="$V1_CONFIG_DIGEST"
start_registry "$PORT" "$REGDATA"
REGLOG="$REG_CTL/registry.log"
push "oci:$LAYOUT:$TAG" kicbase:v1 || die "push $REF failed"
mkdir -p "$RAW.new"
"${SK[@]}" inspect --raw --tls-verify=false "docker://$REF" >"$RAW.new/origin-manifest.json" || die "cannot read $REF's manifest"
V1_DIGEST="sha256:$(sha256sum "$RAW.new/origin-manifest.json" | cut -d' ' -f1)"
ORIGIN_MAN="$SD/origin-manifest.json"
cp "$RAW.new/origin-manifest.json" "$ORIGIN_MAN"
[ "$(jq -r .config.digest "$ORIGIN_MAN")" = "$IMAGE_ID" ] || die "$REF's config is not $IMAGE_ID"
# BLOBS: "DIGEST SIZE" of every blob of the manifest (config + layers); IMG_BYTES: their sum
mapfile -t BLOBS < <(jq -r '.config, .layers[] | "\(.digest) \(.size)"' "$ORIGIN_MAN")
IMG_BYTES="$(printf '%s\n' "${BLOBS[@]}" | awk '{s += $2} END {print s}')"
NBLOBS="${#BLOBS[@]}"
NLAYERS=$((NBLOBS - 1))

# the cache: holds REF (and no other registry's kicbase, so the bare name is unambiguous)
cache_ok() {
  "$IMGCACHE" --root "$CACHE" --json ls >"$RAW.new/cache-ls.json" 2>"$RAW.new/cache-ls.err" || return 1
  jq -e --arg r "$REF" --arg d "$V1_DIGEST" --arg id "$IMAGE_ID" \
    '[.images[] | select(.reference == $r and .manifest_digest == $d and .image_id == $id)] | length == 1' "$RAW.new/cache-ls.json" >/dev/null || return 1
  jq -e --arg reg "$REG" '[.images[].reference | select(test("^[^/]+/kicbase[:@]")) | sub("/kicbase[:@].*$"; "")] | unique == [$reg]' \
    "$RAW.new/cache-ls.json" >/dev/null || return 1
  "$IMGCACHE" --root "$CACHE" --json verify "$REF" >"$RAW.new/cache-verify.json" 2>"$RAW.new/cache-verify.err" &&
    jq -e --arg id "$IMAGE_ID" '.ok == true and .image.image_id == $id' "$RAW.new/cache-verify.json" >/dev/null
}
if ! cache_ok; then
  log "imgcache pull $REF into a fresh $CACHE"
  rm -rf "$CACHE"
  "$IMGCACHE" --root "$CACHE" --json pull "$REF" >"$RAW.new/pull.json" 2>"$RAW.new/pull.err" ||
    { tail -5 "$RAW.new/pull.err" >&2; die "imgcache pull $REF failed"; }
  cache_ok || { log "ERROR: the cache does not hold $REF $V1_DIGEST after the pull (see $RAW.new/cache-*)"; exit 1; }
fi
CACHE_BLOBS=()
while IFS= read -r f; do CACHE_BLOBS+=("$f"); done < <(find "$CACHE/blobs" -type f)
REG_BLOBS=()
while IFS= read -r f; do REG_BLOBS+=("$f"); done < <(find "$REGDATA/docker/registry/v2/blobs" -type f -name data)

# the docker-archive of row 4 (tag kicbase:v1)
if want 4; then
  ensure_archive "$REF" "$ARCHIVE" "$ARCHIVE_TAG" "$SD/.archive-${V1_DIGEST#sha256:}" "$IMAGE_ID"
  ARCHIVE_BYTES="$(stat -c %s "$ARCHIVE")"
fi

# a fresh registry process: its peak RSS is then that of serving, not of the push
stop_registry
start_registry "$PORT" "$REGDATA"
REG_SERVER_PID="$REG_PID"
pid_running "$REG_SERVER_PID" || die "no registry process $REG_SERVER_PID"

# ---- imgcache serve --offline ------------------------------------------------------------------------
SERVE_OUT="$SD/serve.stdout"; SERVE_LOG="$SD/serve.stderr"
start_serve() {
  local line _
  : >"$SERVE_OUT"
  log "starting $IMGCACHE --root $CACHE serve --offline --listen 127.0.0.1:0"
  "$IMGCACHE" --root "$CACHE" serve --offline --listen 127.0.0.1:0 >"$SERVE_OUT" 2>"$SERVE_LOG" </dev/null &
  SERVE_PID=$!
  for _ in $(seq 1 200); do
    read -r line <"$SERVE_OUT" 2>/dev/null
    if [[ "${line:-}" =~ ^listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]]; then
      SERVE_PORT="${BASH_REMATCH[1]}"; SERVE="127.0.0.1:$SERVE_PORT"
      return 0
    fi
    pid_running "$SERVE_PID" || { log "serve exited:"; tail -5 "$SERVE_LOG" >&2; SERVE_PID=""; return 1; }
    sleep 0.05
  done
  log "serve printed no 'listening on http://127.0.0.1:PORT' line in 10 s: '$(head -c 200 "$SERVE_OUT")'"
  return 1
}
SERVE_RC=""
# shellcheck disable=SC2317 # called by cleanup
stop_serve() {
  [ -n "$SERVE_PID" ] || return 0
  kill -TERM "$SERVE_PID" 2>/dev/null
  wait "$SERVE_PID"; SERVE_RC=$?
  log "serve (pid $SERVE_PID) stopped by SIGTERM, exit status $SERVE_RC"
  SERVE_PID=""
}
start_serve || die "imgcache serve did not start (see $SERVE_LOG)"
SERVE_CMD="$(tr '\0' ' ' <"/proc/$SERVE_PID/cmdline")"; SERVE_CMD="${SERVE_CMD% }"
[[ " $SERVE_CMD " == *" serve --offline "* ]] || die "the serve process does not run with --offline: $SERVE_CMD"
log "serve pid $SERVE_PID on http://$SERVE ($SERVE_CMD)"
"${SK[@]}" inspect --raw --tls-verify=false "docker://$SERVE/kicbase:v1" >"$RAW.new/serve-manifest.json" ||
  die "serve does not answer docker://$SERVE/kicbase:v1"
got="sha256:$(sha256sum "$RAW.new/serve-manifest.json" | cut -d' ' -f1)"
[ "$got" = "$V1_DIGEST" ] || { log "ERROR: serve answers manifest $got for kicbase:v1, the origin $V1_DIGEST"; exit 1; }
"${SK[@]}" inspect --raw --tls-verify=false "docker://$SERVE/${REG/:/__}/kicbase:v1" | cmp -s - "$RAW.new/serve-manifest.json" ||
  die "serve does not answer docker://$SERVE/${REG/:/__}/kicbase:v1 with the same manifest"
rm -rf "$RAW"; mv "$RAW.new" "$RAW"
SETUP_S=$(($(date +%s) - T0))

# ---- helpers ---------------------------------------------------------------------------------------
# reg_requests : requests in the registry's access log, after 0.5 s (the registry writes a line
# after its response)
reg_requests() { sleep 0.5; grep -c '^127\.0\.0\.1 - - \[' "$REGLOG"; }
# check_dir DIR : DIR (a skopeo dir: output) holds the image; else WHY says what is wrong and the
# return status is 2 for a wrong manifest, 1 for missing or extra files
check_dir() {
  local d="$1" m n b l dg sz got
  WHY=""
  [ -s "$d/manifest.json" ] || { WHY="no $d/manifest.json"; return 1; }
  m="sha256:$(sha256sum "$d/manifest.json" | cut -d' ' -f1)"
  [ "$m" = "$V1_DIGEST" ] || { WHY="$(basename "$d")/manifest.json is $m, the origin's $V1_DIGEST"; return 2; }
  n="$(find "$d" -type f ! -name manifest.json ! -name version | wc -l)"
  b="$(find "$d" -type f ! -name manifest.json ! -name version -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
  if [ "$n" != "$NBLOBS" ] || [ "$b" != "$IMG_BYTES" ]; then
    WHY="$(basename "$d"): $n blob files, $b bytes; the image has $NBLOBS, $IMG_BYTES"; return 1
  fi
  for l in "${BLOBS[@]}"; do
    dg="${l%% *}"; sz="${l##* }"
    got="$(stat -c %s "$d/${dg#sha256:}" 2>/dev/null)"
    [ "$got" = "$sz" ] || { WHY="$(basename "$d"): blob $dg has ${got:-no file}, expected $sz bytes"; return 1; }
  done
}
# fail ROW WHY STATUS : a check of ROW failed (STATUS 2: a wrong answer from serve, exit 1)
fail() {
  unmeasured "$1" || not_measured "$1" "$2"
  case "$1" in *-peer) ;; *) [ "$3" = 2 ] && BAD=1 ;; esac
  return 0
}
clear_out() { rm -rf "$OUT"; mkdir -p "$OUT"; sync; }
# host_of WHO : the HOST:PORT a client pulls from
host_of() { if [ "$1" = imgcache ]; then echo "$SERVE"; else echo "$REG"; fi; }
pid_of() { if [ "$1" = imgcache ]; then echo "$SERVE_PID"; else echo "$REG_SERVER_PID"; fi; }
row_of() { if [ "$1" = imgcache ]; then echo "$2"; else echo "$2-peer"; fi; }
# status_kib PID FIELD : VmHWM / VmRSS of PID in KiB (no fork)
status_kib() {
  local k v _
  while read -r k v _; do [ "$k" = "$2:" ] && { echo "$v"; return 0; }; done <"/proc/$1/status"
}
# poll_rss OUT PID : in the background, VmRSS of PID every 0.1 s into OUT; sets POLL_PID
poll_rss() {
  local out="$1" p="$2"
  (while :; do status_kib "$p" VmRSS; sleep 0.1; done >"$out" 2>/dev/null) &
  POLL_PID=$!
}
# shellcheck disable=SC2317 # also called by cleanup
stop_poll() { [ -n "$POLL_PID" ] && { kill "$POLL_PID" 2>/dev/null; wait "$POLL_PID" 2>/dev/null; POLL_PID=""; }; return 0; }
# shell_cpu : CPU seconds of this script's shell and its reaped children (the skopeo clients;
# $$, not $BASHPID: it runs in a command substitution)
shell_cpu() { daemon_cpu "$$"; }
# shell_sys : the system part of shell_cpu (stime + cstime)
shell_sys() { awk -v c="$(getconf CLK_TCK)" '{ printf "%.2f", ($15 + $17) / c }' "/proc/$$/stat"; }
warm_all() { warm "${CACHE_BLOBS[@]}" "${REG_BLOBS[@]}"; }
# cell ROW TEXT : TEXT, or NOT MEASURED if a check of ROW failed (the reason is in the note)
cell() { if unmeasured "$1"; then echo "NOT MEASURED"; else echo "$2"; fi; }
rng() { local r; r="$(range "$@")"; echo "${r:-n/a}"; }

ROWS=(); RAWLINES=()
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
SKOPEO_V="$(skopeo --version | awk '{print $3}')"

# ==== 1. one client ====================================================================================
if want 1; then
  t_ic=(); t_pe=(); s_ic=(); s_pe=(); k_ic=(); k_pe=(); y_ic=(); y_pe=(); q_pe=()
  warm_all
  for i in $(seq 1 "$RUNS"); do
    for who in imgcache peer; do
      row="$(row_of "$who" 1)"
      clear_out
      f="$RAW/one-$who-$i"; host="$(host_of "$who")"; spid="$(pid_of "$who")"
      log "1: one client $i/$RUNS: skopeo copy docker://$host/kicbase:v1 dir: ($who)"
      q0="$(reg_requests)"; s0="$(daemon_cpu "$spid")"; k0="$(shell_cpu)"; y0="$(shell_sys)"
      a=$(now)
      "${SK[@]}" copy -q --src-tls-verify=false "docker://$host/kicbase:v1" "dir:$OUT/c1" >"$f.out" 2>&1; rc=$?
      b=$(now)
      k1="$(shell_cpu)"; y1="$(shell_sys)"; s1="$(daemon_cpu "$spid")"; q1="$(reg_requests)"
      if [ "$rc" != 0 ]; then fail "$row" "skopeo copy from $host exit $rc: $(tail -1 "$f.out")" 2; continue; fi
      check_dir "$OUT/c1"; crc=$?
      if [ "$crc" != 0 ]; then fail "$row" "run $i: $WHY" "$crc"; continue; fi
      if [ "$who" = imgcache ] && [ "$q1" != "$q0" ]; then fail "$row" "run $i: the origin registry got $((q1 - q0)) requests (pulled through?)" 1; continue; fi
      if [ "$who" = peer ] && [ "$q1" = "$q0" ]; then fail "$row" "run $i: the registry logged no request" 1; continue; fi
      if [ "$who" = imgcache ]; then t_ic+=("$(elapsed "$a" "$b")"); s_ic+=("$(elapsed "$s0" "$s1")"); k_ic+=("$(elapsed "$k0" "$k1")"); y_ic+=("$(elapsed "$y0" "$y1")")
      else t_pe+=("$(elapsed "$a" "$b")"); s_pe+=("$(elapsed "$s0" "$s1")"); k_pe+=("$(elapsed "$k0" "$k1")"); y_pe+=("$(elapsed "$y0" "$y1")"); q_pe+=("$((q1 - q0))"); fi
    done
  done
  clear_out
  unmeasured 1 && t_ic=(); unmeasured 1-peer && t_pe=()
  m_ic="$(median "${t_ic[@]}")"; m_pe="$(median "${t_pe[@]}")"; r1="$(div "$m_ic" "$m_pe")"
  note="$(printf '%s' "${NA[1]:-}${NA[1]:+; }${NA[1-peer]:+distribution: }${NA[1-peer]:-}")"
  ROWS+=("$(printf '1\tone client: skopeo copy docker://HOST/kicbase:v1 dir: (%s, %s blobs), imgcache serve --offline vs docker-registry; median of %s, alternating (imgcache %s, distribution %s; server CPU per copy %s s vs %s s; skopeo CPU %s s (sys %s) vs %s s (sys %s))\t%s\t%s\t%s\t<= 0.8x\t%s\t%s' \
    "$(fmt_b "$IMG_BYTES")" "$NBLOBS" "$RUNS" "$(rng "${t_ic[@]}")" "$(rng "${t_pe[@]}")" \
    "$(f1 "$(median "${s_ic[@]}")")" "$(f1 "$(median "${s_pe[@]}")")" "$(f1 "$(median "${k_ic[@]}")")" "$(f1 "$(median "${y_ic[@]}")")" \
    "$(f1 "$(median "${k_pe[@]}")")" "$(f1 "$(median "${y_pe[@]}")")" \
    "$(cell 1 "$(fmt_t "$m_ic")")" "$(cell 1-peer "$(fmt_t "$m_pe")")" "$(ratio "$r1")" "$(yesno "$r1" '<=' 0.8)" "$note")")
  RAWLINES+=("$(printf '# raw\trow=1\timgcache_s=%s\tpeer_s=%s\tserver_cpu_imgcache_s=%s\tserver_cpu_peer_s=%s\tclient_cpu_imgcache_s=%s\tclient_cpu_peer_s=%s\tclient_sys_imgcache_s=%s\tclient_sys_peer_s=%s\tregistry_requests_peer=%s' \
    "${t_ic[*]}" "${t_pe[*]}" "${s_ic[*]}" "${s_pe[*]}" "${k_ic[*]}" "${k_pe[*]}" "${y_ic[*]}" "${y_pe[*]}" "${q_pe[*]}")")
fi

# ==== 2 and 3. CLIENTS clients at once ===================================================================
if want 2 || want 3; then
  t_ic=(); t_pe=(); s_ic=(); s_pe=(); k_ic=(); k_pe=(); y_ic=(); y_pe=(); h_ic=(); h_pe=(); p_ic=(); p_pe=()
  warm_all
  for i in $(seq 1 "$RUNS"); do
    for who in imgcache peer; do
      row="$(row_of "$who" 2)"
      clear_out
      f="$RAW/many-$who-$i"; host="$(host_of "$who")"; spid="$(pid_of "$who")"
      log "2: $CLIENTS clients at once $i/$RUNS: skopeo copy docker://$host/kicbase:v1 dir: ($who)"
      # reset the peak RSS of the server to its current RSS (Linux >= 4.0)
      hw_ok=1; echo 5 >"/proc/$spid/clear_refs" 2>/dev/null || hw_ok=0
      poll_rss "$f.rss" "$spid"
      q0="$(reg_requests)"; s0="$(daemon_cpu "$spid")"; k0="$(shell_cpu)"; y0="$(shell_sys)"
      CLIENT_PIDS=()
      a=$(now)
      for c in $(seq 1 "$CLIENTS"); do
        "${SK[@]}" copy -q --src-tls-verify=false "docker://$host/kicbase:v1" "dir:$OUT/c$c" >"$f-c$c.out" 2>&1 &
        CLIENT_PIDS+=("$!")
      done
      fails=()
      for c in $(seq 1 "$CLIENTS"); do wait "${CLIENT_PIDS[c - 1]}" || fails+=("$c"); done
      b=$(now)
      CLIENT_PIDS=()
      k1="$(shell_cpu)"; y1="$(shell_sys)"; s1="$(daemon_cpu "$spid")"
      stop_poll
      q1="$(reg_requests)"
      hwm="$(status_kib "$spid" VmHWM)"; [ "$hw_ok" = 1 ] || hwm=""
      pmax="$(awk '$1 > m {m = $1} END {if (m != "") print m}' "$f.rss")"
      if [ "${#fails[@]}" -gt 0 ]; then fail "$row" "run $i: ${#fails[@]} of $CLIENTS skopeo copies from $host failed: $(tail -1 "$f-c${fails[0]}.out")" 2; continue; fi
      bad=0
      for c in $(seq 1 "$CLIENTS"); do
        check_dir "$OUT/c$c"; crc=$?
        [ "$crc" = 0 ] || { fail "$row" "run $i: $WHY" "$crc"; bad=1; break; }
      done
      [ "$bad" = 0 ] || continue
      if [ "$who" = imgcache ] && [ "$q1" != "$q0" ]; then fail "$row" "run $i: the origin registry got $((q1 - q0)) requests (pulled through?)" 1; continue; fi
      if [ "$who" = peer ] && [ "$q1" = "$q0" ]; then fail "$row" "run $i: the registry logged no request" 1; continue; fi
      if [ "$who" = imgcache ]; then
        t_ic+=("$(elapsed "$a" "$b")"); s_ic+=("$(elapsed "$s0" "$s1")"); k_ic+=("$(elapsed "$k0" "$k1")"); y_ic+=("$(elapsed "$y0" "$y1")"); h_ic+=("$hwm"); p_ic+=("$pmax")
      else
        t_pe+=("$(elapsed "$a" "$b")"); s_pe+=("$(elapsed "$s0" "$s1")"); k_pe+=("$(elapsed "$k0" "$k1")"); y_pe+=("$(elapsed "$y0" "$y1")"); h_pe+=("$hwm"); p_pe+=("$pmax")
      fi
    done
  done
  clear_out
  unmeasured 2 && { t_ic=(); h_ic=(); p_ic=(); }
  unmeasured 2-peer && { t_pe=(); h_pe=(); p_pe=(); }
  m_ic="$(median "${t_ic[@]}")"; m_pe="$(median "${t_pe[@]}")"
  r2="$(div "$m_ic" "$m_pe")"
  tp_ic="$(div "$((IMG_BYTES * CLIENTS))" "$m_ic")"; tp_pe="$(div "$((IMG_BYTES * CLIENTS))" "$m_pe")"
  r2b="$(div "$tp_ic" "$tp_pe")"
  mbs() { [ -n "$1" ] && awk -v b="$1" 'BEGIN { printf "%.0f MB/s", b / 1e6 }' || echo n/a; }
  note="$(printf '%s' "${NA[2]:-}${NA[2]:+; }${NA[2-peer]:+distribution: }${NA[2-peer]:-}")"
  if want 2; then
    ROWS+=("$(printf '2a\t%s clients at once: %s skopeo copy to %s dirs, wall time from the first start to the last end; median of %s, alternating (imgcache %s, distribution %s; server CPU per run %s s vs %s s; skopeo CPU, all clients, %s s (sys %s) vs %s s (sys %s))\t%s\t%s\t%s\t-\t-\t%s' \
      "$CLIENTS" "$CLIENTS" "$CLIENTS" "$RUNS" "$(rng "${t_ic[@]}")" "$(rng "${t_pe[@]}")" \
      "$(f1 "$(median "${s_ic[@]}")")" "$(f1 "$(median "${s_pe[@]}")")" "$(f1 "$(median "${k_ic[@]}")")" "$(f1 "$(median "${y_ic[@]}")")" \
      "$(f1 "$(median "${k_pe[@]}")")" "$(f1 "$(median "${y_pe[@]}")")" \
      "$(cell 2 "$(fmt_t "$m_ic")")" "$(cell 2-peer "$(fmt_t "$m_pe")")" "$(ratio "$r2")" "$note")")
    ROWS+=("$(printf '2b\t%s clients at once: aggregate throughput, %s x %s / median wall time (ratio: imgcache / distribution)\t%s\t%s\t%s\t>= 1.0x\t%s\t%s' \
      "$CLIENTS" "$CLIENTS" "$(fmt_b "$IMG_BYTES")" "$(cell 2 "$(mbs "$tp_ic")")" "$(cell 2-peer "$(mbs "$tp_pe")")" "$(ratio "$r2b")" "$(yesno "$r2b" '>=' 1.0)" "$note")")
  fi
  if want 3; then
    pk_ic="$(maxof "${h_ic[@]}")"; pk_pe="$(maxof "${h_pe[@]}")"
    hw_note="VmHWM reset before each run"
    if [ -z "$pk_ic" ]; then pk_ic="$(maxof "${p_ic[@]}")"; pk_pe="$(maxof "${p_pe[@]}")"; hw_note="clear_refs refused: VmRSS polled"; fi
    r3="$(div "$pk_ic" "$pk_pe")"
    ROWS+=("$(printf '3\tpeak RSS of the server while %s clients pull (max over the %s runs of row 2; %s; VmRSS polled every 0.1 s: max %s vs %s)\t%s\t%s\t%s\t<= 64 MiB\t%s\t%s' \
      "$CLIENTS" "$RUNS" "$hw_note" "$(mib "$(maxof "${p_ic[@]}")")" "$(mib "$(maxof "${p_pe[@]}")")" \
      "$(cell 2 "$(mib "$pk_ic")")" "$(cell 2-peer "$(mib "$pk_pe")")" "$(ratio "$r3")" "$(yesno "$pk_ic" '<=' "$RSS_TARGET_KIB")" "$note")")
  fi
  RAWLINES+=("$(printf '# raw\trow=2\tclients=%s\timgcache_s=%s\tpeer_s=%s\tserver_cpu_imgcache_s=%s\tserver_cpu_peer_s=%s\tclient_cpu_imgcache_s=%s\tclient_cpu_peer_s=%s\tclient_sys_imgcache_s=%s\tclient_sys_peer_s=%s\tvmhwm_imgcache_kib=%s\tvmhwm_peer_kib=%s\tpolled_rss_imgcache_kib=%s\tpolled_rss_peer_kib=%s' \
    "$CLIENTS" "${t_ic[*]}" "${t_pe[*]}" "${s_ic[*]}" "${s_pe[*]}" "${k_ic[*]}" "${k_pe[*]}" "${y_ic[*]}" "${y_pe[*]}" "${h_ic[*]}" "${h_pe[*]}" "${p_ic[*]}" "${p_pe[*]}")")
fi

# ==== 4. docker pull from serve vs docker load -i, into an empty dockerd 20.10 =============================
ENG_LINE=""
if want 4; then
  dk() { DOCKER_HOST="unix://$E_DIR/docker.sock" "$DOCKER" "$@"; }
  PULL_REF="$SERVE/kicbase:v1"
  daemon_paths "$SD/path" || die "cannot build the daemon PATHs in $SD/path"
  dpath="$PATH_NOPIGZ"; [ "$PZ" = yes ] && dpath="$PATH_PIGZ"
  stop_daemons "$E_DIR" 0 || die "mounts left in $E_DIR from an earlier run"
  mkdir -p "$E_DIR" || die "cannot create $E_DIR"
  ENGINE_UP=1
  E_FAIL=""
  if ! dpid="$(PATH="$dpath" DOCKERD_EXTRA_ARGS="" "$TESTENV/start-dockerd.sh" "$E_DIR" overlay2)"; then
    E_FAIL="dockerd 20.10 did not start (see $E_DIR/dockerd.log)"
  else
    E_PIDS=("$dpid" "$(cat "$E_DIR/containerd/containerd.pid" 2>/dev/null)")
    drv="$(dk info -f '{{.Driver}}' 2>/dev/null)"
    [ "$drv" = overlay2 ] || E_FAIL="dockerd runs driver '${drv:-?}', not overlay2"
    E_UNPIGZ=""
    for p in "${E_PIDS[@]}"; do
      if [ -z "$p" ] || [ ! -e "/proc/$p/environ" ]; then E_FAIL="cannot read the environment of daemon pid '$p'"; break; fi
      u="$(path_unpigz "$(proc_path "$p")")"
      if [ "$PZ" = yes ] && [ -z "$u" ]; then E_FAIL="daemon pid $p has no unpigz on its PATH"; fi
      if [ "$PZ" = no ] && [ -n "$u" ]; then E_FAIL="daemon pid $p finds $u on its PATH"; fi
      E_UNPIGZ="${E_UNPIGZ:-$u}"
    done
  fi
  [ -z "$E_FAIL" ] || die "$E_FAIL"
  E_DESC="dockerd $(dk version -f '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null), classic store, overlay2, ${E_UNPIGZ:+unpigz $E_UNPIGZ on its PATH}${E_UNPIGZ:-no unpigz on its PATH}"
  log "engine: $E_DESC; daemons ${E_PIDS[*]}"
  overlay_dirs() { find "$E_DIR/data/overlay2" -mindepth 1 -maxdepth 1 ! -name l 2>/dev/null | wc -l; }
  # empty_engine : engine.sh's emptying and checks for the classic store; one line in RAW/empty.log
  empty_engine() {
    local n sz l ldb st
    dk rmi -f "$PULL_REF" "$ARCHIVE_TAG" >/dev/null 2>&1
    dk rmi -f "$IMAGE_ID" >/dev/null 2>&1
    dk image prune -af >/dev/null 2>&1
    n="$(dk image ls -aq | wc -l)"
    sz="$(dk system df --format '{{.Type}} {{.Size}}' | awk '$1 == "Images" {print $2}')"
    l="$(overlay_dirs)"
    ldb="$(find "$E_DIR/data/image/overlay2/layerdb/sha256" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    st="docker image ls -aq: $n, system df images: $sz, overlay2 dirs: $l, layerdb: $ldb"
    sync
    echo "$st" >>"$RAW/empty.log"
    [ "$n" = 0 ] && [ "$sz" = 0B ] && [ "$l" = 0 ] && [ "$ldb" = 0 ] && return 0
    log "ERROR: the engine is not empty after docker rmi + prune: $st"
    return 1
  }
  t_ic=(); t_pe=(); d_ic=(); d_pe=(); s_ic=()
  warm "${CACHE_BLOBS[@]}" "$ARCHIVE"
  for i in $(seq 1 "$RUNS"); do
    for who in imgcache peer; do
      row="$(row_of "$who" 4)"
      empty_engine || { fail "$row" "the engine could not be emptied before run $i ($(tail -1 "$RAW/empty.log"))" 1; break 2; }
      f="$RAW/engine-$who-$i"
      q0=0; [ "$who" = imgcache ] && q0="$(reg_requests)"
      c0="$(daemon_cpu "${E_PIDS[@]}")"; s0="$(daemon_cpu "$SERVE_PID")"
      if [ "$who" = imgcache ]; then
        log "4: docker pull $PULL_REF $i/$RUNS"
        a=$(now); dk pull -q "$PULL_REF" >"$f.out" 2>&1; rc=$?; b=$(now)
      else
        log "4: docker load -i $(basename "$ARCHIVE") $i/$RUNS"
        a=$(now); dk load -q -i "$ARCHIVE" >"$f.out" 2>&1; rc=$?; b=$(now)
      fi
      c1="$(daemon_cpu "${E_PIDS[@]}")"; s1="$(daemon_cpu "$SERVE_PID")"
      q1="$q0"; [ "$who" = imgcache ] && q1="$(reg_requests)"
      name="$ARCHIVE_TAG"; [ "$who" = imgcache ] && name="$PULL_REF"
      dk image inspect "$name" >"$f.inspect.json" 2>/dev/null
      id="$(jq -r '.[0].Id // empty' "$f.inspect.json" 2>/dev/null)"
      lay="$(overlay_dirs)"
      tool="docker load"; [ "$who" = imgcache ] && tool="docker pull"
      if [ "$rc" != 0 ]; then fail "$row" "run $i: $tool exit $rc: $(tail -1 "$f.out")" 2; continue; fi
      if [ "$id" != "$IMAGE_ID" ]; then fail "$row" "run $i: the engine's $name is ${id:-missing}, expected $IMAGE_ID" 2; continue; fi
      if [ "$lay" -lt "$NLAYERS" ]; then fail "$row" "run $i: $lay overlay2 layer directories, expected $NLAYERS" 1; continue; fi
      if [ "$who" = imgcache ]; then
        if ! jq -e --arg d "${PULL_REF%:*}@$V1_DIGEST" '.[0].RepoDigests | index($d) != null' "$f.inspect.json" >/dev/null 2>&1; then
          fail "$row" "run $i: RepoDigests $(jq -c '.[0].RepoDigests' "$f.inspect.json" 2>/dev/null) lack ${PULL_REF%:*}@$V1_DIGEST" 2; continue
        fi
        if [ "$q1" != "$q0" ]; then fail "$row" "run $i: the origin registry got $((q1 - q0)) requests (pulled through?)" 1; continue; fi
        t_ic+=("$(elapsed "$a" "$b")"); d_ic+=("$(elapsed "$c0" "$c1")"); s_ic+=("$(elapsed "$s0" "$s1")")
      else
        t_pe+=("$(elapsed "$a" "$b")"); d_pe+=("$(elapsed "$c0" "$c1")")
      fi
    done
  done
  empty_engine >/dev/null 2>&1 || true
  unmeasured 4 && t_ic=(); unmeasured 4-peer && t_pe=()
  m_ic="$(median "${t_ic[@]}")"; m_pe="$(median "${t_pe[@]}")"; r4="$(div "$m_ic" "$m_pe")"
  note="$(printf '%s' "${NA[4]:-}${NA[4]:+; }${NA[4-peer]:+docker load: }${NA[4-peer]:-}")"
  ROWS+=("$(printf '4\tinto an empty engine (%s): docker pull 127.0.0.1:SERVEPORT/kicbase:v1 from serve (%s gzip) vs docker load -i of the skopeo docker-archive (%s, layers uncompressed); median of %s, alternating, emptied and checked before each run (pull %s, load %s; CPU of dockerd + containerd + children %s s vs %s s; serve CPU per pull %s s)\t%s\t%s\t%s\tnone (informs)\t-\t%s' \
    "$E_DESC" "$(fmt_b "$IMG_BYTES")" "$(fmt_b "$ARCHIVE_BYTES")" "$RUNS" "$(rng "${t_ic[@]}")" "$(rng "${t_pe[@]}")" \
    "$(f1 "$(median "${d_ic[@]}")")" "$(f1 "$(median "${d_pe[@]}")")" "$(f1 "$(median "${s_ic[@]}")")" \
    "$(cell 4 "$(fmt_t "$m_ic")")" "$(cell 4-peer "$(fmt_t "$m_pe")")" "$(ratio "$r4")" "$note")")
  RAWLINES+=("$(printf '# raw\trow=4\tpull_s=%s\tload_s=%s\tdaemon_cpu_pull_s=%s\tdaemon_cpu_load_s=%s\tserve_cpu_pull_s=%s' \
    "${t_ic[*]}" "${t_pe[*]}" "${d_ic[*]}" "${d_pe[*]}" "${s_ic[*]}")")
  ENG_LINE="- engine (row 4): $E_DESC, in $E_DIR (started for row 4, stopped after it); daemons' PATH: $(proc_path "${E_PIDS[0]}")"
  stop_daemons "$E_DIR" "$KEEP" || log "ERROR: mounts left under $E_DIR"
  ENGINE_UP=0
fi
BENCH_S=$(($(date +%s) - TB))

# ---- report ------------------------------------------------------------------------------------------
SERVE_HWM_ALL="$(status_kib "$SERVE_PID" VmHWM)"
SERVE_DESC="pid $SERVE_PID, http://$SERVE"
stop_serve # the contract: SIGTERM stops it, exit status 0
if [ "$SERVE_RC" != 0 ]; then log "ERROR: imgcache serve exited $SERVE_RC on SIGTERM, not 0"; BAD=1; fi
TSV="$SD/results.tsv"; MD="$SD/results.md"
{ tsv_rows; printf '%s\n' "${RAWLINES[@]}"; } >"$TSV"
{
  echo "## imgcache serve bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)"
  echo "- servers: \`$SERVE_CMD\` ($SERVE_DESC, cache $CACHE, exit status $SERVE_RC on SIGTERM) vs docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null) (pid $REG_SERVER_PID, http://$REG, filesystem storage $REGDATA, restarted after the push); both on 127.0.0.1, plain http"
  [ -n "$ENG_LINE" ] && echo "$ENG_LINE"
  echo "- image: $REF $V1_DIGEST (image $IMAGE_ID, $NLAYERS layers, $(fmt_b "$IMG_BYTES") gzip); clients: skopeo $SKOPEO_V, dir: outputs in $OUT (removed and sync before each run)"
  echo "- checks: serve --offline, the cache holds the image (ls, verify), every copy's dir: holds $NBLOBS blob files of the manifest's sizes ($IMG_BYTES bytes) and a manifest.json of sha256 $V1_DIGEST, the registry's access log did not grow during a serve run; docker pull: Id $IMAGE_ID, RepoDigests name $V1_DIGEST, $NLAYERS layers unpacked"
  echo "- method: page cache warm (cache blobs, registry blobs, docker-archive); runs alternate imgcache / distribution; CPU = utime + stime (+ reaped children) from /proc/PID/stat. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg); serve's VmHWM over the whole bench: $(mib "$SERVE_HWM_ALL")"
  echo
  md_table '**'
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
finish
