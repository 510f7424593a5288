#!/usr/bin/env bash
# bench/run.sh : imgcache verify vs. peer tools on a ~600 MB (gzip) / ~1.1 GB (uncompressed),
# 10-layer "kicbase-like" image. See bench/README.md.
#
# One-time setup (cached in BENCH_DIR, reused by later runs):
#   - builds the image offline and deterministically with scripts/testenv/make-test-images.sh
#     (KICBASE_SOURCE=synthetic) into the OCI layout BENCH_DIR/images/oci, tag kicbase-v1
#   - skopeo copies it to BENCH_DIR/kicbase-docker.tar (docker-archive, uncompressed layers) and
#     BENCH_DIR/kicbase-oci.tar (oci-archive, gzip layers, same image ID), and extracts the gzip
#     layer blobs of the oci-archive to BENCH_DIR/oci-layers/
# Every run (a few minutes at most): page cache warmed, then hyperfine medians of
#   1. imgcache verify --json (fast) of the docker-archive  vs  sha256sum of the file
#      + bytes the fast verify reads from the file (its JSON, strace, /proc/PID/io rchar)
#   2. imgcache verify --deep --no-memo of the docker-archive     vs  openssl dgst -sha256 of the file
#   3. imgcache verify --deep --no-memo of the oci-archive (gzip) vs  gzip -dc LAYER | sha256sum, layer by layer
#   4. peak RSS (GNU time) of imgcache fast and deep
# imgcache remembers a successful 'verify --deep FILE' by the file's identity and then answers
# from that memo, so every deep run passes --no-memo, and the bench checks the --json answer of
# every timed deep run (warmups included): ok, level deep, the image ID, "remembered" false (the
# field is absent when false) and bytes_read at least 90% of the file. If one fails, the row gets
# no figure ("NOT MEASURED") and the exit status is 4. The fast level has no memo.
# Results: a markdown table on stdout, BENCH_DIR/results.md, BENCH_DIR/results.tsv, raw data in
# BENCH_DIR/raw/. Targets are reported as ratios; the exit status does not depend on them
# (0 = benchmark ran, even if imgcache could not be built/run and its cells read n/a; 1 = imgcache
# gave a wrong answer for the valid image: wrong image ID, "invalid", or unexpected JSON; 3 = setup
# failed; 4 = a timed imgcache run did not do the work, e.g. a deep verify answered from the memo).
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench   cache + results directory (about 3.5 GB; 4.5 GB during the build)
#   IMGCACHE=PATH                   imgcache binary to test (absolute, or relative to the current
#                                   directory), e.g. one built elsewhere; if unset, runs
#                                   'cargo build --release -p imgcache-cli' and uses target/release/imgcache
#   RUNS=5                          timed runs per slow command (median reported)
#   FAST_RUNS=50                    timed runs of the fast verify (median reported)
#   KICBASE_SYS_MB="200 120 210 150" / KICBASE_RND_MB="100 110 90 70"   image size knobs
#                                   (synthetic text gzips to ~0.29; random data does not compress)
#   REBUILD=1                       rebuild the image and the archives
set -uo pipefail

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REBUILD="${REBUILD:-0}"
MAKE_IMAGES="$TESTENV/make-test-images.sh"
REF=example.test/kicbase:v1

bench_dir
RAW="$BENCH_DIR/raw"
LAYOUT="$BENCH_DIR/images/oci"
DOCKER_TAR="$BENCH_DIR/kicbase-docker.tar"
OCI_TAR="$BENCH_DIR/kicbase-oci.tar"
LAYERS_DIR="$BENCH_DIR/oci-layers"

# ---- tools ------------------------------------------------------------------------------------
[ -x "$MAKE_IMAGES" ] || die "$MAKE_IMAGES not found (it builds the test image)"
need_tools skopeo:skopeo jq:jq umoci:umoci hyperfine:hyperfine strace:strace openssl:openssl \
  gzip:gzip tar:tar sha256sum:coreutils python3:python3

# ---- one-time: image, archives, layer blobs ---------------------------------------------------
T0=$(date +%s)
log "image: $MAKE_IMAGES (KICBASE_SYS_MB='$KICBASE_SYS_MB' KICBASE_RND_MB='$KICBASE_RND_MB')"
KICBASE=1 KICBASE_SOURCE=synthetic NO_PUSH=1 REBUILD="$REBUILD" \
  "$MAKE_IMAGES" 127.0.0.1:5000 "$BENCH_DIR/images" || die "make-test-images.sh failed"
MAN_DIGEST="$(ref_digest "$LAYOUT" "$TAG")"
[[ "$MAN_DIGEST" == sha256:* ]] || die "no $TAG in $LAYOUT/index.json"
STAMP="$BENCH_DIR/.archives-${MAN_DIGEST#sha256:}"
if [ "$REBUILD" = 1 ] || [ ! -e "$STAMP" ] || [ ! -s "$DOCKER_TAR" ] || [ ! -s "$OCI_TAR" ]; then
  rm -rf "$BENCH_DIR"/.archives-* "$DOCKER_TAR" "$OCI_TAR" "$LAYERS_DIR" "$BENCH_DIR/image-id"
  log "skopeo copy -> $DOCKER_TAR (uncompressed layers)"
  "${SK[@]}" copy -q "oci:$LAYOUT:$TAG" "docker-archive:$DOCKER_TAR.tmp:$REF" || die "skopeo copy docker-archive failed"
  log "skopeo copy -> $OCI_TAR (gzip layers)"
  "${SK[@]}" copy -q "oci:$LAYOUT:$TAG" "oci-archive:$OCI_TAR.tmp:$REF" || die "skopeo copy oci-archive failed"
  # the layer blobs of the oci-archive, in manifest order, for the gzip -dc | sha256sum peer
  x="$BENCH_DIR/oci-extract"; rm -rf "$x"; mkdir -p "$x" "$LAYERS_DIR"
  tar -xf "$OCI_TAR.tmp" -C "$x" || die "cannot extract $OCI_TAR.tmp"
  m="$(jq -r '.manifests[0].digest' "$x/index.json")"
  i=0
  for d in $(jq -r '.layers[].digest' "$x/blobs/sha256/${m#sha256:}"); do
    mv "$x/blobs/sha256/${d#sha256:}" "$LAYERS_DIR/layer-$(printf %02d $i).gz" || die "layer $d missing"
    i=$((i + 1))
  done
  rm -rf "$x"
  # both archives must carry the same image ID (= sha256 of the config bytes)
  id_d="sha256:$("${SK[@]}" inspect --config --raw "docker-archive:$DOCKER_TAR.tmp" | sha256sum | cut -d' ' -f1)"
  id_o="sha256:$("${SK[@]}" inspect --config --raw "oci-archive:$OCI_TAR.tmp" | sha256sum | cut -d' ' -f1)"
  [ "$id_d" = "$id_o" ] || die "image IDs differ: docker-archive $id_d, oci-archive $id_o"
  "${SK[@]}" inspect --config --raw "docker-archive:$DOCKER_TAR.tmp" >"$BENCH_DIR/image-config.json"
  printf '%s\n' "$id_d" >"$BENCH_DIR/image-id"
  # the peer loop of row 3 must reproduce the config's diff_ids
  for l in "$LAYERS_DIR"/layer-*.gz; do gzip -dc "$l" | sha256sum | sed 's/^/sha256:/; s/ .*//'; done >"$BENCH_DIR/peer-diffids.txt"
  jq -r '.rootfs.diff_ids[]' "$BENCH_DIR/image-config.json" | cmp -s - "$BENCH_DIR/peer-diffids.txt" ||
    die "gzip -dc | sha256sum of the extracted layers does not match the config's diff_ids"
  mv "$DOCKER_TAR.tmp" "$DOCKER_TAR" && mv "$OCI_TAR.tmp" "$OCI_TAR" && touch "$STAMP"
fi
IMAGE_ID="$(cat "$BENCH_DIR/image-id")"
CONFIG_BYTES="$(stat -c %s "$BENCH_DIR/image-config.json")"
DOCKER_BYTES="$(stat -c %s "$DOCKER_TAR")"
OCI_BYTES="$(stat -c %s "$OCI_TAR")"
LAYERS=("$LAYERS_DIR"/layer-*.gz)
GZ_BYTES="$(cat "${LAYERS[@]}" | wc -c)"
NLAYERS="${#LAYERS[@]}"
SETUP_S=$(($(date +%s) - T0))
log "setup done in ${SETUP_S}s: image $IMAGE_ID, $NLAYERS layers, docker-archive $DOCKER_BYTES B, oci-archive $OCI_BYTES B"

# ---- imgcache binary --------------------------------------------------------------------------
IMGCACHE_NOTE=""; BUILT_HERE=0
if [ -z "${IMGCACHE:-}" ]; then
  BUILT_HERE=1
  log "cargo build --release -p imgcache-cli"
  if (cd "$ROOT" && cargo build --release -p imgcache-cli) >"$BENCH_DIR/cargo-build.log" 2>&1; then
    tdir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)"
    IMGCACHE="${tdir:-$ROOT/target}/release/imgcache"
  else
    IMGCACHE="$ROOT/target/release/imgcache"
    IMGCACHE_NOTE="cargo build failed (see $BENCH_DIR/cargo-build.log)"
    log "$IMGCACHE_NOTE"; tail -5 "$BENCH_DIR/cargo-build.log" >&2
  fi
fi
if [ -z "$IMGCACHE_NOTE" ] && [ ! -x "$IMGCACHE" ]; then IMGCACHE_NOTE="no binary at $IMGCACHE"; fi
[ -n "$IMGCACHE_NOTE" ] || IMGCACHE="$(cd "$(dirname "$IMGCACHE")" && pwd)/$(basename "$IMGCACHE")"

# ---- helpers ----------------------------------------------------------------------------------
rm -rf "$RAW"; mkdir -p "$RAW"
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
# rss NAME CMD... : peak RSS in KiB of one run (GNU time), stdout in RAW/rss-NAME.json; empty if
# the command fails
rss() {
  local name="$1"; shift
  if /usr/bin/time -f '%M' -o "$RAW/rss-$name.txt" "$@" >"$RAW/rss-$name.json" 2>"$RAW/rss-$name.err"; then
    tail -1 "$RAW/rss-$name.txt"
  fi
}
# check_imgcache NAME LEVEL FILE ARGS... : run 'imgcache verify --json ARGS FILE' once; returns 0 if it
# exits 0 with ok=true, the expected level and IMAGE_ID, and did the work (did_work); else sets
# NA[NAME] (reason) and returns 1
check_imgcache() {
  local name="$1" level="$2" file="$3" rc ids; shift 3
  if [ -n "$IMGCACHE_NOTE" ]; then NA[$name]="$IMGCACHE_NOTE"; return 1; fi
  "$IMGCACHE" verify --json "$@" "$file" >"$RAW/$name.json" 2>"$RAW/$name.err"; rc=$?
  if [ $rc != 0 ]; then
    NA[$name]="imgcache exit $rc"; [ $rc = 1 ] && BAD=1
    log "imgcache verify $* $file: exit $rc"; tail -5 "$RAW/$name.err" >&2; head -c 600 "$RAW/$name.json" >&2
    return 1
  fi
  if ! jq -e --arg l "$level" '.ok == true and .level == $l and .files[0].ok == true' "$RAW/$name.json" >/dev/null 2>&1; then
    NA[$name]="unexpected JSON"; BAD=1; log "imgcache verify $* $file: unexpected JSON:"; head -c 600 "$RAW/$name.json" >&2
    return 1
  fi
  ids="$(jq -r '[.files[0].images[].image_id] | join(" ")' "$RAW/$name.json")"
  if [[ " $ids " != *" $IMAGE_ID "* ]]; then
    NA[$name]="image ID mismatch"; BAD=1
    printf '[bench] ERROR: IMAGE ID MISMATCH: imgcache reports [%s] for %s, skopeo says %s\n' "$ids" "$file" "$IMAGE_ID" >&2
    return 1
  fi
  if ! did_work "$level" "$file" "$IMAGE_ID" "$RAW/$name.json"; then
    not_measured "$name" "verify $* answered from the memo (remembered) or read less than the file, see raw/$name.json"
    return 1
  fi
  return 0
}
# hf_verify NAME LEVEL FILE ARGS... : hyperfine median of 'imgcache verify --json ARGS FILE', every
# run (and the warmup) checked with did_work's filter (hf_docs): HF_T = the median, or empty and
# NA[NAME] says why. Not in $(...), so that it can set NA.
hf_verify() {
  local name="$1" level="$2" file="$3" wa rc; shift 3
  mapfile -t wa < <(work_args "$level" "$file" "$IMAGE_ID")
  HF_T="$(hf_docs "$name" "$RUNS" 1 "$IMGCACHE verify $* --json $file" "$VERIFY_WORK" "${wa[@]}")"; rc=$?
  [ $rc = 0 ] || hf_failed "$name" "$rc"
}
# bytes_via_strace FILE CMD... : bytes read from FILE (read/pread64/readv/preadv*), per strace;
# prints "BYTES MMAPS"
bytes_via_strace() {
  local file="$1"; shift
  rm -f "$RAW"/strace.*
  strace -f -ff -qq -y -s 0 -e trace=read,pread64,readv,preadv,preadv2,mmap,sendfile,copy_file_range,splice \
    -o "$RAW/strace" "$@" >/dev/null 2>&1 || return 1
  cat "$RAW"/strace.* | awk -v f="<$file>" '
    index($0, f) == 0 { next }
    /^(read|pread64|readv|preadv|preadv2|sendfile|copy_file_range|splice)\(/ { if (match($0, /= [0-9]+$/)) b += substr($0, RSTART + 2) }
    /^mmap\(/ { m++ }
    END { printf "%d %d\n", b, m }'
}
# rchar CMD... : /proc/PID/io rchar (bytes read via read-like syscalls, all files) of one run
rchar() {
  python3 - "$@" <<'PY'
import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDWR); os.dup2(fd, 1); os.dup2(fd, 2)
    os.execvp(sys.argv[1], sys.argv[1:])
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)   # zombie keeps its io counters until reaped
io = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().split("\n") if l)
_, st = os.waitpid(pid, 0)
print(io["rchar"].strip() if os.waitstatus_to_exitcode(st) == 0 else "")
PY
}
# checked_note T BYTES_READ : what the check of every timed deep run found, if it passed (T set)
checked_note() { [ -z "$1" ] || echo "every run: remembered false, bytes_read $(fmt_b "$2")"; }
gbps() { [ -n "$2" ] && awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f GB/s", b / s / 1e9 }'; }

# ---- measurements -----------------------------------------------------------------------------
# 1. fast verify vs sha256sum (the fast level has no memo: plain hyperfine)
warm "$DOCKER_TAR"
t_fast=""; br_json=""; br_strace=""; br_mmaps=""; br_rchar=""
if check_imgcache fast fast "$DOCKER_TAR"; then
  br_json="$(jq -r '.files[0].bytes_read // empty' "$RAW/fast.json")"
  t_fast="$(hf fast "$FAST_RUNS" 3 "$IMGCACHE verify --json $DOCKER_TAR")"
  read -r br_strace br_mmaps < <(bytes_via_strace "$DOCKER_TAR" "$IMGCACHE" verify --json "$DOCKER_TAR") || true
  br_rchar="$(rchar "$IMGCACHE" verify --json "$DOCKER_TAR")"
fi
t_sha="$(hf sha256sum "$RUNS" 1 "sha256sum $DOCKER_TAR")"
speedup="$(div "$t_sha" "$t_fast")"
ROWS+=("$(printf '1\tfast verify vs sha256sum, docker-archive %s\t%s\t%s\t%s\t>= 300x faster\t%s\t%s' \
  "$(fmt_b "$DOCKER_BYTES")" "$(fmt_t "$t_fast")" "$(fmt_t "$t_sha")" \
  "$([ -n "$speedup" ] && awk -v r="$speedup" 'BEGIN { printf "%.0fx faster", r }' || echo n/a)" \
  "$(yesno "$speedup" '>=' 300)" "${NA[fast]:-}")")
over=""; [ -n "$br_strace" ] && over=$((br_strace - CONFIG_BYTES))
ROWS+=("$(printf '1b\tbytes read from the file by fast verify (strace; JSON bytes_read %s; rchar all files %s)\t%s\tconfig %s\t%s over config\t< 1 MiB + config\t%s\t%s' \
  "$(fmt_b "$br_json")" "$(fmt_b "$br_rchar")" "$(fmt_b "$br_strace")" "$(fmt_b "$CONFIG_BYTES")" "$(fmt_b "$over")" \
  "$(yesno "$over" '<' 1048576)" "$([ "${br_mmaps:-0}" -gt 0 ] && echo "file mmapped ${br_mmaps}x: strace undercounts")${NA[fast]:-}")")

# 2. deep verify of the docker-archive vs openssl; every timed run checked: not remembered
warm "$DOCKER_TAR"
t_deep_d=""; br_deep_d=""
if check_imgcache deep-docker deep "$DOCKER_TAR" --deep --no-memo; then
  br_deep_d="$(jq -r '.files[0].bytes_read' "$RAW/deep-docker.json")"
  hf_verify deep-docker deep "$DOCKER_TAR" --deep --no-memo; t_deep_d="$HF_T"
fi
t_ossl="$(hf openssl "$RUNS" 1 "openssl dgst -sha256 $DOCKER_TAR")"
r2="$(div "$t_deep_d" "$t_ossl")"; chk_d="$(checked_note "$t_deep_d" "$br_deep_d")"
ROWS+=("$(printf '2\tdeep verify --no-memo vs openssl dgst -sha256, docker-archive (%s vs %s%s)\t%s\t%s\t%s\t<= 1.0x\t%s\t%s' \
  "$(gbps "$DOCKER_BYTES" "$t_deep_d" || echo n/a)" "$(gbps "$DOCKER_BYTES" "$t_ossl")" "${chk_d:+; $chk_d}" \
  "$(fmt_t "$t_deep_d")" "$(fmt_t "$t_ossl")" "$(ratio "$r2")" "$(yesno "$r2" '<=' 1.0)" "${NA[deep-docker]:-}")")

# 3. deep verify of the gzip oci-archive vs sequential gzip -dc | sha256sum of its layers
warm "$OCI_TAR" "${LAYERS[@]}"
t_deep_o=""; br_deep_o=""
if check_imgcache deep-oci deep "$OCI_TAR" --deep --no-memo; then
  br_deep_o="$(jq -r '.files[0].bytes_read' "$RAW/deep-oci.json")"
  hf_verify deep-oci deep "$OCI_TAR" --deep --no-memo; t_deep_o="$HF_T"
fi
t_gz="$(hf gunzip-sha256sum "$RUNS" 0 "for l in $LAYERS_DIR/layer-*.gz; do gzip -dc \"\$l\" | sha256sum; done" bash)"
r3="$(div "$t_deep_o" "$t_gz")"; chk_o="$(checked_note "$t_deep_o" "$br_deep_o")"
ROWS+=("$(printf '3\tdeep verify --no-memo vs gzip -dc LAYER | sha256sum (sequential), oci-archive %s gzip, %s layers%s\t%s\t%s\t%s\t<= 0.5x\t%s\t%s' \
  "$(fmt_b "$OCI_BYTES")" "$NLAYERS" "${chk_o:+ ($chk_o)}" "$(fmt_t "$t_deep_o")" "$(fmt_t "$t_gz")" \
  "$(ratio "$r3")" "$(yesno "$r3" '<=' 0.5)" "${NA[deep-oci]:-}")")

# 4. peak RSS (the deep runs with --no-memo, checked like the timed runs)
rss_fast=""; rss_deep=""
if [ -z "${NA[fast]:-}" ]; then
  rss_fast="$(maxof "$(rss fast1 "$IMGCACHE" verify --json "$DOCKER_TAR")" "$(rss fast2 "$IMGCACHE" verify --json "$DOCKER_TAR")" "$(rss fast3 "$IMGCACHE" verify --json "$DOCKER_TAR")")"
fi
rss_dd=""; rss_do=""
# rss_deep NAME FILE : RSS_K = peak RSS (KiB) of one deep verify of FILE; empty if it failed or
# did not do the work (then NA[rss-NAME] says why)
rss_deep() {
  RSS_K="$(rss "$1" "$IMGCACHE" verify --deep --no-memo --json "$2")"
  if [ -z "$RSS_K" ]; then NA[rss-$1]="imgcache failed, see raw/rss-$1.err"
  elif ! did_work deep "$2" "$IMAGE_ID" "$RAW/rss-$1.json"; then
    RSS_K=""; not_measured "rss-$1" "the deep verify did not do the work, see raw/rss-$1.json"
  fi
}
[ -z "${NA[deep-docker]:-}" ] && { rss_deep deep-docker "$DOCKER_TAR"; rss_dd="$RSS_K"; }
[ -z "${NA[deep-oci]:-}" ] && { rss_deep deep-oci "$OCI_TAR"; rss_do="$RSS_K"; }
rss_deep="$(maxof "$rss_dd" "$rss_do")"
ROWS+=("$(printf '4a\tpeak RSS, fast verify (max of 3 runs)\t%s\t\t\t<= 32 MiB\t%s\t%s' \
  "$(mib "$rss_fast")" "$(yesno "$rss_fast" '<=' 32768)" "${NA[fast]:-}")")
na_dd="${NA[deep-docker]:-${NA[rss-deep-docker]:-}}"; na_do="${NA[deep-oci]:-${NA[rss-deep-oci]:-}}"
ROWS+=("$(printf '4b\tpeak RSS, deep verify --no-memo (max of docker-archive %s, oci-archive %s)\t%s\t\t\t<= 32 MiB\t%s\t%s' \
  "$(mib "$rss_dd")" "$(mib "$rss_do")" "$(mib "$rss_deep")" "$(yesno "$rss_deep" '<=' 32768)" \
  "$([ "$na_dd" = "$na_do" ] && echo "$na_do" || echo "docker: ${na_dd:-ok}, oci: ${na_do:-ok}")")")
BENCH_S=$(($(date +%s) - TB))

# ---- report -----------------------------------------------------------------------------------
TSV="$BENCH_DIR/results.tsv"; MD="$BENCH_DIR/results.md"
{
  tsv_rows
  # raw numbers (seconds, bytes, KiB) for scripts
  printf '# raw\tt_fast_s=%s\tt_sha256sum_s=%s\tt_deep_docker_s=%s\tt_openssl_s=%s\tt_deep_oci_s=%s\tt_gunzip_sha256sum_s=%s\n' \
    "$t_fast" "$t_sha" "$t_deep_d" "$t_ossl" "$t_deep_o" "$t_gz"
  printf '# raw\tbytes_read_json=%s\tbytes_read_strace=%s\trchar=%s\tconfig_bytes=%s\trss_fast_kib=%s\trss_deep_docker_kib=%s\trss_deep_oci_kib=%s\tbytes_read_deep_docker=%s\tbytes_read_deep_oci=%s\n' \
    "$br_json" "$br_strace" "$br_rchar" "$CONFIG_BYTES" "$rss_fast" "$rss_dd" "$rss_do" "$br_deep_d" "$br_deep_o"
} >"$TSV"
rev="given binary"
[ "$BUILT_HERE" = 1 ] && rev="built from tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no commit)')"
{
  echo "## imgcache bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $([ -z "$IMGCACHE_NOTE" ] && binary_desc || echo "? ($IMGCACHE)"), $rev${IMGCACHE_NOTE:+ — **$IMGCACHE_NOTE**}"
  echo "- image: $IMAGE_ID, $NLAYERS layers, gzip layers $(fmt_b "$GZ_BYTES") ($GZ_BYTES B), docker-archive (uncompressed) $(fmt_b "$DOCKER_BYTES") ($DOCKER_BYTES B), oci-archive $(fmt_b "$OCI_BYTES"), config $CONFIG_BYTES B"
  echo "- peers: $(sha256sum --version | head -1), $(openssl version | cut -d' ' -f1-2), $(gzip --version | head -1), hyperfine $(hyperfine --version | cut -d' ' -f2)"
  echo "- method: hyperfine medians ($FAST_RUNS runs fast verify, $RUNS runs otherwise); deep verifies with --no-memo, the --json answer of every timed run checked (not remembered, level deep, bytes_read >= 90% of the file); page cache warmed (cat FILE >/dev/null) before each row, so every tool reads from a hot cache; peak RSS from GNU time; bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  md_table ""
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
for k in "${!NA[@]}"; do log "n/a: $k: ${NA[$k]}"; done
finish
