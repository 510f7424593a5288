# shellcheck shell=bash
# bench/lib.sh : helpers shared by bench/run.sh, bench/pull.sh and bench/engine.sh (sourced, not
# executed). Set BENCH_TAG (the prefix of the log lines) before sourcing it; it sources
# scripts/testenv/lib.sh (apt_install, need_cmds, ...) and defines HERE (bench/), ROOT (the
# checkout), TESTENV (scripts/testenv), the associative array NA (row -> why its imgcache cell
# reads n/a) and the flags BAD / UNMEASURED read by finish.
#
# A timed imgcache run must do the work its row names, not answer from a cache: every script
# checks each timed run's --json answer before it reports a figure (hf_docs for hyperfine rows),
# and a failed check turns the cell into "NOT MEASURED: ..." (not_measured) and the exit status
# into 4 (finish).

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TESTENV="$ROOT/scripts/testenv"
TAG=kicbase-v1 # the image's tag in the OCI layout BENCH_DIR/images/oci
# shellcheck source-path=SCRIPTDIR source=../scripts/testenv/lib.sh
. "$TESTENV/lib.sh"

# the knobs all three scripts share (documented in each)
BENCH_DIR="${BENCH_DIR:-/tmp/imgcache-bench}"
RUNS="${RUNS:-5}"
FAST_RUNS="${FAST_RUNS:-50}"
export KICBASE_SYS_MB="${KICBASE_SYS_MB:-200 120 210 150}" # image size, if it must be built
export KICBASE_RND_MB="${KICBASE_RND_MB:-100 110 90 70}"

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 3; }

# ---- setup --------------------------------------------------------------------------------------
# bench_dir : create BENCH_DIR and make it absolute
bench_dir() {
  mkdir -p "$BENCH_DIR" || die "cannot create $BENCH_DIR"
  BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
}
# need_tools CMD:PKG... : install the missing packages (apt) and GNU time, or die
need_tools() {
  need_cmds "$@" || die "could not install the tools"
  [ -x /usr/bin/time ] || apt_install time || die "could not install GNU time"
}
# imgcache_abs : a relative IMGCACHE is relative to the checkout
imgcache_abs() { case "$IMGCACHE" in /*) ;; *) IMGCACHE="$ROOT/$IMGCACHE" ;; esac; }
# need_imgcache LOGDIR: $IMGCACHE, else a release build of this checkout (log in LOGDIR); dies
# when there is no binary.
need_imgcache() {
  if [ -z "${IMGCACHE:-}" ]; then
    log "cargo build --release -p imgcache-cli"
    (cd "$ROOT" && cargo build --release -p imgcache-cli) >"$1/cargo-build.log" 2>&1 ||
      { tail -5 "$1/cargo-build.log" >&2; die "cargo build failed (see $1/cargo-build.log)"; }
    local tdir
    tdir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)"
    IMGCACHE="${tdir:-$ROOT/target}/release/imgcache"
  fi
  imgcache_abs
  [ -x "$IMGCACHE" ] || die "no imgcache binary at $IMGCACHE"
}
SK=(skopeo --insecure-policy)
blob() { printf '%s/blobs/sha256/%s' "$1" "${2#sha256:}"; } # blob LAYOUT DIGEST -> file
# ref_digest LAYOUT TAG : the manifest digest of TAG in an OCI layout's index.json
ref_digest() { jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json"; }
# ensure_layout REGISTRY : builds the OCI layout of bench/run.sh (BENCH_DIR/images/oci, tag
# kicbase-v1) the same way if it is missing or incomplete; sets LAYOUT, V1_OCI_DIGEST, V1_MAN,
# V1_CONFIG_DIGEST (= the image ID), V1_LAYERS and V1_BYTES (config + layers)
# shellcheck disable=SC2034 # the V1_* are for the scripts that source this file
ensure_layout() {
  LAYOUT="$BENCH_DIR/images/oci"
  if ! jq -e --arg t "$TAG" 'any(.manifests[]; .annotations["org.opencontainers.image.ref.name"] == $t)' "$LAYOUT/index.json" >/dev/null 2>&1 ||
    ! compgen -G "$LAYOUT/.complete-*" >/dev/null; then
    log "no complete $LAYOUT: building it like bench/run.sh does"
    KICBASE=1 KICBASE_SOURCE=synthetic NO_PUSH=1 "$TESTENV/make-test-images.sh" "$1" "$BENCH_DIR/images" ||
      die "make-test-images.sh failed"
  fi
  V1_OCI_DIGEST="$(ref_digest "$LAYOUT" "$TAG")"
  [[ "$V1_OCI_DIGEST" == sha256:* ]] || die "no $TAG in $LAYOUT/index.json"
  V1_MAN="$(blob "$LAYOUT" "$V1_OCI_DIGEST")"
  V1_CONFIG_DIGEST="$(jq -r .config.digest "$V1_MAN")"
  V1_LAYERS="$(jq '.layers | length' "$V1_MAN")"
  V1_BYTES="$(jq '[.config.size] + [.layers[].size] | add' "$V1_MAN")"
}

# ---- registry (scripts/testenv/start-registry.sh on 127.0.0.1:PORT) ------------------------------
REG_STARTED=0
# start_registry PORT DATADIR : sets REG (host:port) and REG_PID; stop_registry stops it
start_registry() {
  REG="127.0.0.1:$1"; REG_CTL="$2/_ctl"
  REG_PID="$("$TESTENV/start-registry.sh" "$1" "$2" plain)" || die "could not start the registry on $REG"
  REG_STARTED=1
  log "registry $REG (pid $REG_PID), log $REG_CTL/registry.log"
}
# shellcheck disable=SC2317 # called by the EXIT traps
stop_registry() {
  if [ "$REG_STARTED" = 1 ]; then "$TESTENV/stop-pidfile.sh" "$REG_CTL/registry.pid" 20 "$REG_CTL/config.yml" || true; fi
}
push() { # push SRC DEST_REPO:TAG : skopeo copy SRC to the registry (v2s2, like make-test-images)
  log "skopeo copy $1 -> docker://$REG/$2"
  "${SK[@]}" copy -q --retry-times 2 --dest-tls-verify=false --format v2s2 "$1" "docker://$REG/$2" >&2
}
# reg_digest REPO:TAG : the digest of the manifest the registry serves
reg_digest() { "${SK[@]}" inspect --raw --tls-verify=false "docker://$REG/$1" | sha256sum | sed 's/^/sha256:/; s/ .*//'; }

# ---- measuring ----------------------------------------------------------------------------------
declare -gA NA
BAD=0        # imgcache gave a wrong answer
UNMEASURED=0 # a timed imgcache run did not do the work of its row
# ensure_archive REF FILE TAG STAMP WANT_ID : FILE is skopeo's docker-archive of REF, tagged TAG,
# made once: kept while the STAMP file (named after REF's manifest digest, e.g. DIR/.archive-HEX)
# exists and FILE's tag is TAG; otherwise made again (older stamps of the same prefix removed)
# and checked to hold image WANT_ID.
ensure_archive() {
  local ref="$1" file="$2" tag="$3" stamp="$4" want="$5" a_tag a_id
  a_tag="$(tar -xOf "$file" manifest.json 2>/dev/null | jq -r '.[0].RepoTags[0]' 2>/dev/null)"
  if [ -e "$stamp" ] && [ -s "$file" ] && [ "$a_tag" = "$tag" ]; then return 0; fi
  log "skopeo copy docker://$ref docker-archive:$file:$tag"
  rm -f "$file" "${stamp%-*}"-*
  "${SK[@]}" copy -q --src-tls-verify=false "docker://$ref" "docker-archive:$file:$tag" >&2 || die "skopeo docker-archive of $ref failed"
  a_id="sha256:$("${SK[@]}" inspect --config --raw "docker-archive:$file" | sha256sum | cut -d' ' -f1)"
  [ "$a_id" = "$want" ] || die "the docker-archive of $ref holds image $a_id, expected $want"
  touch "$stamp"
}

warm() { # warm FILE... : read the files into the page cache
  log "warming the page cache: $# files, $(fmt_b "$(du -cb "$@" | tail -1 | cut -f1)")"
  cat "$@" >/dev/null
}
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# hf NAME RUNS WARMUP CMD [SHELL] : hyperfine median in seconds (empty on failure); no shell
# (-N) unless SHELL is given. Raw output in RAW/hf-NAME.{json,txt}.
hf() {
  local name="$1" runs="$2" warmup="$3" cmd="$4" shopt=(-N)
  [ -z "${5:-}" ] || shopt=(--shell "$5")
  log "hyperfine ($runs runs): $cmd"
  if hyperfine "${shopt[@]}" --style basic --runs "$runs" --warmup "$warmup" \
      --export-json "$RAW/hf-$name.json" "$cmd" >"$RAW/hf-$name.txt" 2>&1; then
    jq -r '.results[0].median' "$RAW/hf-$name.json"
  else
    log "hyperfine $name failed:"; tail -3 "$RAW/hf-$name.txt" >&2
    return 1
  fi
}
# hf_docs NAME RUNS WARMUP CMD FILTER [JQ_ARG...] : hf in bash, where every run (warmups
# included) appends its stdout, one JSON document, to RAW/NAME.runs.json. Prints the median only
# if there is one document per run and the jq FILTER (with JQ_ARGs such as --arg id X) is true
# for each of them. Returns 1 if hyperfine failed, 2 if a run's document fails the check.
hf_docs() {
  local name="$1" runs="$2" warmup="$3" cmd="$4" filter="$5" docs="$RAW/$1.runs.json" t n good
  shift 5
  : >"$docs"
  t="$(hf "$name" "$runs" "$warmup" "$cmd >>$(printf %q "$docs")" bash)" || return 1
  n=$((runs + warmup))
  good="$(jq -rn "$@" "[inputs | ($filter) == true] | \"\\(length) \\(map(select(.)) | length)\"" "$docs" 2>"$RAW/$name.check.err")"
  if [ "$good" != "$n $n" ]; then
    log "ERROR: $name: of $n runs, [documents, documents that did the work] = [${good:-unreadable}]; see $docs"
    return 2
  fi
  printf '%s\n' "$t"
}
# hf_failed NAME RC : after t="$(hf_docs NAME ...)" failed with RC, say so in NAME's cell
hf_failed() {
  if [ "$2" = 2 ]; then not_measured "$1" "a timed run did not do the work (answered from a cache?), see raw/$1.runs.json"
  else NA[$1]="${NA[$1]:-hyperfine failed, see raw/hf-$1.txt}"; fi
}
# not_measured NAME WHY : NAME's cell gets no figure; finish exits 4
not_measured() {
  NA[$1]="NOT MEASURED: $2"; UNMEASURED=1
  log "ERROR: $1: NOT MEASURED: $2"
}
# unmeasured NAME : true if not_measured NAME was called: NAME's runs must not give a figure
unmeasured() { [[ "${NA[$1]:-}" == "NOT MEASURED"* ]]; }
# finish : exit 1 if imgcache gave a wrong answer, 4 if a timed run did not do the work, else 0
finish() {
  [ "$BAD" = 0 ] || { log "imgcache gave a wrong answer (see above): exit 1"; exit 1; }
  [ "$UNMEASURED" = 0 ] || { log "NOT MEASURED: a timed imgcache run did not do the work of its row (see above): exit 4"; exit 4; }
  exit 0
}

# VERIFY_WORK: jq, true for an 'imgcache verify --json' answer that did the work of level $level
# on one file: ok, that level, the image $id, not "remembered" (a deep verification answered from
# the memo; the field is absent when false) and at least $min bytes read from the file
# shellcheck disable=SC2016 # jq variables
VERIFY_WORK='.ok == true and .level == $level and (.files | length) == 1 and .files[0].ok == true
  and any(.files[0].images[]; .image_id == $id)
  and ([.. | objects | select(has("remembered")) | .remembered] | all(. == false))
  and .files[0].bytes_read >= $min'
# work_args LEVEL FILE IMAGE_ID : VERIFY_WORK's jq arguments, one a line; deep must read >= 90% of FILE
work_args() {
  local min=0
  [ "$1" = deep ] && min=$(($(stat -c %s "$2") * 9 / 10))
  printf '%s\n' --arg level "$1" --arg id "$3" --argjson min "$min"
}
# did_work LEVEL FILE IMAGE_ID JSON : the verify answer in JSON did the work of LEVEL on FILE
did_work() {
  local wa; mapfile -t wa < <(work_args "$1" "$2" "$3")
  jq -e "${wa[@]}" "$VERIFY_WORK" "$4" >/dev/null 2>&1
}

# ---- numbers ------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{a[NR] = $1} END {if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
range() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {if (NR) printf "%.2f-%.2f s", a, b}'; }
maxof() { printf '%s\n' "$@" | awk 'NF && $1 > m {m = $1} END {if (m != "") print m}'; }
div() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.6g", a / b }'; }
ratio() { [ -n "$1" ] && printf '%.2fx' "$1" || echo n/a; }
f1() { [ -n "$1" ] && printf '%.1f' "$1" || echo n/a; }
fmt_t() { # seconds -> "12.3 ms" / "1.23 s"
  [ -n "$1" ] || { echo n/a; return; }
  awk -v s="$1" 'BEGIN { if (s < 1) printf "%.1f ms", s * 1000; else printf "%.2f s", s }'
}
fmt_b() { # bytes -> human
  [ -n "$1" ] || { echo n/a; return; }
  awk -v b="$1" 'BEGIN { if (b < 10240) printf "%d B", b; else if (b < 10485760) printf "%.1f KiB", b / 1024;
    else if (b < 1e9) printf "%.1f MB", b / 1e6; else printf "%.2f GB", b / 1e9 }'
}
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' || echo n/a; }
yesno() { # yesno VALUE OP LIMIT -> yes/no/n/a; OP is >=, <=, == or <
  [ -n "$1" ] || { echo n/a; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= l : (op == "<=") ? v <= l : (op == "==") ? v == l : v < l; print ok ? "yes" : "no" }'
}

# ---- report -------------------------------------------------------------------------------------
# ROWS holds the TSV rows: id, measurement, imgcache, peer, ratio, target, within_target, note
ROWS=()
tsv_rows() { printf 'id\tmeasurement\timgcache\tpeer\tratio\ttarget\twithin_target\tnote\n'; printf '%s\n' "${ROWS[@]}"; }
# md_table [EMPH] : ROWS as a markdown table; a row's note goes in parentheses, inside EMPH
md_table() {
  echo "| # | measurement | imgcache | peer | ratio | target | within target |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}" | awk -F'\t' -v e="${1:-}" '{
    for (i = 3; i <= 5; i++) if ($i == "") $i = "-"
    for (i = 1; i <= 8; i++) gsub(/\|/, "\\|", $i)
    printf "| %s | %s%s | %s | %s | %s | %s | %s |\n", $1, $2, ($8 != "" ? " (" e $8 e ")" : ""), $3, $4, $5, $6, $7 }'
}
host_line() { # the "- host:" line of a report: cores, CPU, RAM, OS, kernel, file system of BENCH_DIR
  echo "- host: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)$(grep -qw sha_ni /proc/cpuinfo && echo ', SHA-NI')), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), $(df -PT "$BENCH_DIR" | awk 'NR == 2 {print $2}') at $BENCH_DIR"
}
binary_desc() { # "VERSION (PATH, built DATE, sha256 PREFIX)" of IMGCACHE
  local v; v="$("$IMGCACHE" --version 2>/dev/null | head -1)"
  echo "${v:-?} ($IMGCACHE, built $(date -u -r "$IMGCACHE" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null), sha256 $(sha256sum "$IMGCACHE" 2>/dev/null | cut -c1-12))"
}

# ---- private engines (bench/engine.sh) ----------------------------------------------------------
# Each engine lives in its own directory DIR, never in the test environment's: a dockerd has
# DIR/dockerd.pid, --data-root DIR/data, DIR/docker.sock and its own containerd in DIR/containerd;
# a containerd alone has DIR/containerd.pid, DIR/config.toml and DIR/containerd.sock. stop_daemons
# DIR stops all of them by these PID files and unmounts what is left under DIR.

# daemon_paths BASE : BASE/nopigz links every program of the system's PATH directories except pigz
# and unpigz; BASE/pigz links only those two. Sets PATH_NOPIGZ (a daemon PATH that lacks unpigz)
# and PATH_PIGZ (the same with unpigz first), or returns 1.
# shellcheck disable=SC2034 # PATH_NOPIGZ and PATH_PIGZ are for bench/engine.sh
daemon_paths() {
  local b="$1" d u
  rm -rf "$b" && mkdir -p "$b/nopigz" "$b/pigz" || return 1
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [ -d "$d" ] || continue
    # the first directory wins, like a PATH lookup; ln fails (quietly) on names already linked
    find -H "$d" -mindepth 1 -maxdepth 1 ! -type d ! -name pigz ! -name unpigz -print0 |
      xargs -0 -r ln -s -t "$b/nopigz" 2>/dev/null
  done
  PATH_NOPIGZ="$b/nopigz"
  PATH_PIGZ="$b/pigz:$b/nopigz"
  u="$(path_unpigz "$PATH_NOPIGZ:/usr/sbin:/sbin")"
  [ -z "$u" ] || { log "ERROR: $PATH_NOPIGZ still finds $u"; return 1; }
  u="$(path_unpigz /usr/local/bin:/usr/bin:/bin)"
  [ -n "$u" ] || return 0 # pigz is not installed: PATH_PIGZ finds no unpigz either
  ln -s "$u" "$b/pigz/unpigz" && ln -s "$(dirname "$u")/pigz" "$b/pigz/pigz"
}
# path_unpigz PATHVALUE : the unpigz that PATHVALUE finds (empty if none)
path_unpigz() {
  local d IFS=:
  for d in $1; do [ -x "$d/unpigz" ] && { echo "$d/unpigz"; return 0; }; done
  return 0
}
# proc_path PID : the PATH in the environment of process PID
proc_path() { tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^PATH=//p'; }

# start_ctd DIR PREFIX SNAPSHOTTER DPATH : containerd PREFIX/usr/bin/containerd, all its state in
# DIR, with PATH=PREFIX/usr/bin:DPATH (its shims from PREFIX; unpigz if DPATH has it). The config
# is the one of scripts/testenv/newer-engines.sh: CRI, NRI and tracing off, opt dir inside DIR,
# no TCP, and the transfer service unpacks linux/ARCH into SNAPSHOTTER (containerd 2.x's
# 'ctr images import' goes through it). stdout: the PID.
start_ctd() {
  local dir="$1" pfx="$2" snap="$3" dpath="$4" bin="$2/usr/bin/containerd" ctr="$2/usr/bin/ctr"
  local conf="$1/config.toml" sock="$1/containerd.sock" pidf="$1/containerd.pid" pid ver
  [ "${#sock}" -le 100 ] || { log "socket path too long for a unix socket: $sock.ttrpc"; return 1; }
  mkdir -p "$dir/root" "$dir/state" "$dir/opt" || return 1
  if [ -s "$pidf" ] && proc_alive "$(cat "$pidf")" "$conf"; then log "containerd in $dir is already running"; return 1; fi
  ver="$("$bin" --version | awk '{print $3}')" || return 1
  rm -f "$sock" "$sock.ttrpc"
  "$TESTENV/containerd-config.sh" "$bin" "$dir" "$snap" >"$conf" || return 1
  log "starting containerd $ver ($dir, snapshotter $snap)"
  PATH="$pfx/usr/bin:$dpath" setsid nohup "$bin" --config "$conf" >>"$dir/containerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidf"
  for _ in $(seq 1 150); do
    if "$ctr" -a "$sock" version >/dev/null 2>&1; then echo "$pid"; return 0; fi
    pid_running "$pid" || { log "containerd $dir exited:"; tail -20 "$dir/containerd.log" >&2; rm -f "$pidf"; return 1; }
    sleep 0.1
  done
  log "timeout waiting for $sock"; tail -20 "$dir/containerd.log" >&2
  return 1
}

# start_dkd DIR PREFIX STORE DRIVER DPATH : dockerd PREFIX/usr/sbin/dockerd, state in DIR, with
# its own containerd of PREFIX in DIR/containerd (passed with --containerd: a dockerd-managed
# containerd would create /opt/containerd). STORE classic: DRIVER is the graph driver (overlay2);
# STORE containerd: the containerd image store ("features": {"containerd-snapshotter": true}),
# DRIVER is the snapshotter (overlayfs). PATH=PREFIX/usr/bin:PREFIX/usr/sbin:DPATH for both. No
# networking. Namespace bench-NAME (NAME = DIR's basename). stdout: the dockerd PID.
start_dkd() {
  local d="$1" pfx="$2" store="$3" drv="$4" dpath="$5" sock="$1/docker.sock" pidf="$1/dockerd.pid" ns pid feat csnap=native
  ns="bench-$(basename "$d")"
  [ "${#sock}" -le 100 ] || { log "socket path too long for a unix socket: $sock"; return 1; }
  mkdir -p "$d/data" "$d/exec" || return 1
  if [ -s "$pidf" ] && proc_alive "$(cat "$pidf")" "--data-root $d/data"; then log "dockerd in $d is already running"; return 1; fi
  feat=false
  [ "$store" = containerd ] && { feat=true; csnap="$drv"; }
  start_ctd "$d/containerd" "$pfx" "$csnap" "$pfx/usr/sbin:$dpath" >/dev/null || return 1
  printf '{\n  "storage-driver": "%s",\n  "features": {"containerd-snapshotter": %s}\n}\n' "$drv" "$feat" >"$d/daemon.json"
  rm -f "$sock"
  log "starting dockerd ($("$pfx/usr/sbin/dockerd" --version), $store store, driver $drv, $d)"
  PATH="$pfx/usr/bin:$pfx/usr/sbin:$dpath" setsid nohup "$pfx/usr/sbin/dockerd" \
    --config-file "$d/daemon.json" -H "unix://$sock" \
    --data-root "$d/data" --exec-root "$d/exec" --pidfile "$pidf" \
    --containerd "$d/containerd/containerd.sock" \
    --containerd-namespace "$ns" --containerd-plugins-namespace "$ns-plugins" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --userland-proxy=false >>"$d/dockerd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 300); do
    if curl -sf --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
      echo "$pid" >"$pidf"; echo "$pid"; return 0
    fi
    pid_running "$pid" || { log "dockerd $d exited:"; tail -20 "$d/dockerd.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$pid" >"$pidf"
  log "timeout waiting for $sock"; tail -20 "$d/dockerd.log" >&2
  return 1
}

# mounts_under DIR : the mount points under DIR/, deepest first (mountinfo field 5, unescaped)
mounts_under() {
  local m
  awk -v b="$1/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do printf '%b\n' "$m"; done
}
# stop_daemons DIR [KEEP] : stop DIR's dockerd (cleanly, so it unmounts its data root), then the
# containerds (DIR/containerd, DIR), by their PID files; unmount whatever is still mounted under
# DIR; remove DIR unless KEEP is 1. Returns 1 if a mount is left.
stop_daemons() {
  local d="$1" c m
  [ -d "$d" ] || return 0
  [ -e "$d/dockerd.pid" ] && { "$TESTENV/stop-pidfile.sh" "$d/dockerd.pid" 30 "--data-root $d/data" || true; }
  for c in "$d/containerd" "$d"; do
    [ -e "$c/containerd.pid" ] && { "$TESTENV/stop-pidfile.sh" "$c/containerd.pid" 20 "$c/config.toml" || true; }
  done
  while read -r m; do
    [ -n "$m" ] || continue
    log "umount leftover $m"; umount "$m" 2>/dev/null || umount -l "$m" || true
  done < <(mounts_under "$d")
  if [ -n "$(mounts_under "$d")" ]; then log "ERROR: still mounted under $d: $(mounts_under "$d" | tr '\n' ' ')"; return 1; fi
  [ "${2:-0}" = 1 ] || rm -rf "$d"
}
# daemon_cpu PID... : CPU seconds used so far by these processes and their waited-for children
# (unpigz, ...): utime + stime + cutime + cstime of /proc/PID/stat
daemon_cpu() {
  local p clk; clk="$(getconf CLK_TCK)"
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
    awk -v c="$clk" '{ s += $14 + $15 + $16 + $17 } END { printf "%.2f", s / c }'
}
# watch_children OUT NAME PID... : in the background, every 0.3 s, append "PID PPID ARGS" of each
# process NAME whose parent is one of PIDs to OUT; sets WATCH_PID (stop it with unwatch)
watch_children() {
  local out="$1" name="$2" pids; shift 2
  pids="$(IFS=,; echo "$*")"
  : >"$out"
  (while :; do ps -o pid=,ppid=,args= --ppid "$pids" 2>/dev/null | awk -v n="$name" '$3 ~ ("(^|/)" n "$")'; sleep 0.3; done >>"$out") &
  WATCH_PID=$!
}
unwatch() { [ -n "${WATCH_PID:-}" ] && { kill "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; WATCH_PID=""; }; return 0; }
# seen_pids FILE : how many distinct processes a watch_children file names
seen_pids() { awk '{ print $1 }' "$1" 2>/dev/null | sort -u | awk 'END { print NR }'; }
