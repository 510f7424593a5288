#!/usr/bin/env bash
# bench/pull.sh : imgcache pull and cache operations against a loopback registry, side by side
# with skopeo. See bench/README.md, section "Pull and cache".
#
# Starts its own registry (scripts/testenv/start-registry.sh, 127.0.0.1:$PORT, data in
# BENCH_DIR/registry) and stops it by its PID file on exit. Measures, in one run:
#   1. cold pull of the kicbase-like image (~600 MB gzip, 10 layers): imgcache pull into a fresh
#      cache vs skopeo copy docker:// -> dir: followed by an fsync of every file it wrote; both are
#      durable. Runs alternate (imgcache, skopeo, imgcache, ...); outputs are deleted and 'sync'
#      runs before each; the registry's blobs are kept in the page cache. Median of RUNS.
#   2. pull of the cached, digest-pinned reference (kicbase@sha256:...): hyperfine median, and the
#      number of requests the registry logged during those runs (must be 0)
#   3. pull of kicbase:v2 (8 of 10 layers shared with v1; 2 new small layers, new config) into the
#      cache holding v1: bytes_fetched from --json vs the sizes of the new blobs; blob GETs logged
#   4. peak RSS (GNU time) of the cold pull of a ~60 MB image (kicbase's first 2 layers) and of
#      the ~600 MB kicbase
#   5. a cache holding N_SMALL (1000) tiny images: hyperfine of 'imgcache --json ls' and of
#      'imgcache verify REF' (fast)
# Results: a markdown table on stdout, BENCH_DIR/pull-results.md and BENCH_DIR/pull-results.tsv,
# raw data in BENCH_DIR/pull/raw/. Targets are reported next to the numbers; the exit status does
# not depend on them (0 = ran, 1 = imgcache gave a wrong answer: wrong image ID / bytes / JSON,
# 3 = setup failed, 4 = a timed imgcache run did not do the work of its row).
# Every timed cold pull (rows 1 and 4, into an empty cache) is checked: from_cache false, nothing
# reused, bytes_fetched = the image's bytes. One answered from a cache makes the row
# "NOT MEASURED" (no figure) and the exit status 4. Rows 2 and 5 time cache hits on purpose.
#
# One-time setup (cached in BENCH_DIR, reused by later runs and by bench/run.sh):
#   - the OCI layout BENCH_DIR/images/oci (tag kicbase-v1) of bench/run.sh, built the same way
#     if missing (scripts/testenv/make-test-images.sh, KICBASE_SOURCE=synthetic)
#   - BENCH_DIR/pull/oci: kicbase-v2 and kicbase-small (blobs hard-linked from the layout)
#   - the registry's data (kicbase:v1, :v2, :small and tiny:t0000..), and BENCH_DIR/pull/cache-N,
#     the cache holding the N_SMALL tiny images
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench   shared with bench/run.sh
#   IMGCACHE=target/release/imgcache  binary to test (this script never runs cargo)
#   PORT=5100                       registry port (must be free)
#   RUNS=5                          cold pulls per tool (median / max RSS reported)
#   PIN_RUNS=100 FAST_RUNS=50       hyperfine runs of the pinned pull / of ls and verify
#   N_SMALL=1000                    tiny images for row 5
#   KICBASE_SYS_MB, KICBASE_RND_MB  as in bench/run.sh (only used if the layout must be built)
set -uo pipefail

BENCH_TAG=pull-bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${IMGCACHE:=target/release/imgcache}" "${PORT:=5100}" "${PIN_RUNS:=100}" "${N_SMALL:=1000}"
REG="127.0.0.1:$PORT"
EPOCH=1704067200
MT_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json

bench_dir
PD="$BENCH_DIR/pull"
PLAYOUT="$PD/oci"
RAW="$PD/raw"
REGDATA="$BENCH_DIR/registry"
REGLOG="$REGDATA/_ctl/registry.log"

need_tools skopeo:skopeo jq:jq hyperfine:hyperfine curl:curl docker-registry:docker-registry \
  gzip:gzip tar:tar sha256sum:coreutils python3:python3 openssl:openssl

# ---- imgcache binary ----------------------------------------------------------------------------
imgcache_abs
IMGCACHE_NOTE=""
if [ ! -x "$IMGCACHE" ]; then IMGCACHE_NOTE="no binary at $IMGCACHE"
elif ! "$IMGCACHE" pull --help >/dev/null 2>&1; then IMGCACHE_NOTE="$IMGCACHE has no 'pull' command (stale build?)"; fi
[ -z "$IMGCACHE_NOTE" ] || log "$IMGCACHE_NOTE: imgcache cells will read n/a"

# ---- one-time: the kicbase layout of bench/run.sh -----------------------------------------------
T0=$(date +%s)
ensure_layout "$REG"

# ---- one-time: kicbase-v2 and kicbase-small in BENCH_DIR/pull/oci -------------------------------
# put_blob FILE MEDIATYPE -> descriptor JSON (moves FILE into PLAYOUT)
put_blob() {
  local d s
  d="$(sha256sum "$1" | cut -d' ' -f1)"; s="$(stat -c %s "$1")"
  mv -f "$1" "$PLAYOUT/blobs/sha256/$d"
  jq -cn --arg mt "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$mt,digest:$d,size:$s}'
}
put_json() { # put_json JSON MEDIATYPE -> descriptor (compact, sorted keys, like make-test-images)
  local f="$PD/tmp/json.$$"
  printf '%s' "$1" | jq -cS . | tr -d '\n' >"$f"
  put_blob "$f" "$2"
}
add_ref() { # add_ref TAG DESCRIPTOR
  jq -c --arg t "$1" --argjson d "$2" '.manifests |= ([.[] | select(.annotations["org.opencontainers.image.ref.name"] != $t)] + [$d + {annotations:{"org.opencontainers.image.ref.name":$t}}])' \
    "$PLAYOUT/index.json" >"$PLAYOUT/index.json.tmp" && mv "$PLAYOUT/index.json.tmp" "$PLAYOUT/index.json"
}
link_blob() { ln -f "$(blob "$LAYOUT" "$1")" "$(blob "$PLAYOUT" "$1")" 2>/dev/null || cp "$(blob "$LAYOUT" "$1")" "$(blob "$PLAYOUT" "$1")"; }
# new_layer NAME KIB SEED -> layer descriptor with diffid: a deterministic tar (fixed mtime and
# owner) of KIB KiB of AES-CTR data plus a text file, gzip -n
new_layer() {
  local name="$1" kib="$2" seed="$3" src="$PD/tmp/$1" key diffid
  rm -rf "$src"; mkdir -p "$src/etc/kicbase-v2"
  key="$(printf '%s' "$seed" | sha256sum | cut -d' ' -f1)"
  openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
    head -c "$((kib * 1024))" >"$src/etc/kicbase-v2/$name.bin"
  printf 'kicbase v2, layer %s\n' "$name" >"$src/etc/kicbase-v2/$name.txt"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu -C "$src" -cf "$src.tar" etc
  diffid="sha256:$(sha256sum "$src.tar" | cut -d' ' -f1)"
  gzip -n -6 -f "$src.tar"
  put_blob "$src.tar.gz" "$MT_LAYER" | jq -c --arg d "$diffid" '. + {diffid:$d}'
}
PSTAMP="$PLAYOUT/.complete-v1-${V1_OCI_DIGEST#sha256:}"
if [ ! -e "$PSTAMP" ]; then
  log "building kicbase-v2 and kicbase-small in $PLAYOUT"
  rm -rf "$PLAYOUT" "$PD/tmp"; mkdir -p "$PLAYOUT/blobs/sha256" "$PD/tmp" || die "cannot create $PLAYOUT"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$PLAYOUT/oci-layout"
  printf '{"schemaVersion":2,"manifests":[]}' >"$PLAYOUT/index.json"
  for d in $(jq -r '.layers[].digest' "$V1_MAN"); do link_blob "$d" || die "cannot link $d"; done
  cfg1="$(cat "$(blob "$LAYOUT" "$V1_CONFIG_DIGEST")")"
  # v2: layers 0-7 of v1, two new layers (256 KiB and 128 KiB of random data), new config
  l8="$(new_layer layer-8 256 kicbase-v2-8)" || die "new layer 8 failed"
  l9="$(new_layer layer-9 128 kicbase-v2-9)" || die "new layer 9 failed"
  cfg2="$(jq -c --arg a "$(jq -r .diffid <<<"$l8")" --arg b "$(jq -r .diffid <<<"$l9")" '
    .rootfs.diff_ids[8] = $a | .rootfs.diff_ids[9] = $b
    | .config.Labels["org.example.test-image"] = "kicbase-v2"
    | .history[8].created_by = "/bin/sh -c #(nop) ADD layer v2-8" | .history[9].created_by = "/bin/sh -c #(nop) ADD layer v2-9"' <<<"$cfg1")"
  c2="$(put_json "$cfg2" "$MT_CONFIG")" || die "config v2"
  m2="$(jq -c --argjson c "$c2" --argjson a "$(jq -c '{mediaType,digest,size}' <<<"$l8")" --argjson b "$(jq -c '{mediaType,digest,size}' <<<"$l9")" \
    '.config = $c | .layers[8] = $a | .layers[9] = $b' "$V1_MAN")"
  add_ref kicbase-v2 "$(put_json "$m2" "$MT_MANIFEST")"
  # small: the first 2 layers of v1 (~62 MB)
  cfgs="$(jq -c '.rootfs.diff_ids |= .[0:2] | .history = (.history[0:2] + [.history[-1]]) | .config.Labels["org.example.test-image"] = "kicbase-small"' <<<"$cfg1")"
  cs="$(put_json "$cfgs" "$MT_CONFIG")" || die "config small"
  ms="$(jq -c --argjson c "$cs" '.config = $c | .layers |= .[0:2]' "$V1_MAN")"
  add_ref kicbase-small "$(put_json "$ms" "$MT_MANIFEST")"
  rm -rf "$PD/tmp"
  touch "$PSTAMP"
fi
V2_MAN="$(blob "$PLAYOUT" "$(ref_digest "$PLAYOUT" kicbase-v2)")"
SMALL_MAN="$(blob "$PLAYOUT" "$(ref_digest "$PLAYOUT" kicbase-small)")"
{ [ -s "$V2_MAN" ] && [ -s "$SMALL_MAN" ]; } || die "$PLAYOUT is incomplete (rm -rf $PLAYOUT and rerun)"
V2_CONFIG_DIGEST="$(jq -r .config.digest "$V2_MAN")"
V2_NEW_BYTES="$(jq '.config.size + .layers[8].size + .layers[9].size' "$V2_MAN")"
V2_NEW_DESC="$(jq -r '"layer 8 \(.layers[8].size) B + layer 9 \(.layers[9].size) B + config \(.config.size) B"' "$V2_MAN")"
SMALL_CONFIG_DIGEST="$(jq -r .config.digest "$SMALL_MAN")"
SMALL_BYTES="$(jq '[.config.size] + [.layers[].size] | add' "$SMALL_MAN")"

# ---- registry -----------------------------------------------------------------------------------
trap stop_registry EXIT
trap 'exit 130' INT TERM
start_registry "$PORT" "$REGDATA"
push "oci:$LAYOUT:$TAG" kicbase:v1 || die "push kicbase:v1 failed"
push "oci:$PLAYOUT:kicbase-v2" kicbase:v2 || die "push kicbase:v2 failed"
push "oci:$PLAYOUT:kicbase-small" kicbase:small || die "push kicbase:small failed"
V1_DIGEST="$(reg_digest kicbase:v1)"
[[ "$V1_DIGEST" == sha256:* ]] || die "cannot read the digest of $REG/kicbase:v1"

# tiny images: generated in Python (one layer of one small file + config each) and pushed with
# the registry HTTP API (POST upload, PUT blob, PUT manifest), 8 connections in parallel
TINY_TSV="$REGDATA/_ctl/tiny-$N_SMALL.tsv"
if [ ! -s "$TINY_TSV" ] || [ "$(wc -l <"$TINY_TSV")" != "$N_SMALL" ] ||
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $MT_MANIFEST" "http://$REG/v2/tiny/manifests/$(tail -1 "$TINY_TSV" | cut -f1)")" != 200 ]; then
  log "pushing $N_SMALL tiny images to $REG/tiny"
  t=$(date +%s)
  python3 - "$REG" "$N_SMALL" >"$TINY_TSV.tmp" <<'EOF' || die "pushing the tiny images failed"
import gzip, hashlib, http.client, io, json, sys, tarfile, threading, urllib.parse
from concurrent.futures import ThreadPoolExecutor
reg, n = sys.argv[1], int(sys.argv[2])
host, port = reg.rsplit(":", 1)
MT_L = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_C = "application/vnd.oci.image.config.v1+json"
MT_M = "application/vnd.oci.image.manifest.v1+json"
local = threading.local()

def req(method, path, body=b"", headers=None):
    for attempt in range(3):
        c = getattr(local, "c", None) or http.client.HTTPConnection(host, int(port), timeout=60)
        local.c = c
        try:
            c.request(method, path, body=body, headers=dict(headers or {}, **{"Content-Length": str(len(body))}))
            r = c.getresponse()
            data = r.read()
            return r.status, r.getheader("Location"), data
        except (http.client.HTTPException, OSError):
            c.close(); local.c = None
            if attempt == 2:
                raise

def put_blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    s, loc, body = req("POST", "/v2/tiny/blobs/uploads/")
    if s != 202:
        raise RuntimeError(f"POST upload: {s} {body[:200]}")
    u = urllib.parse.urlsplit(loc)
    q = (u.query + "&" if u.query else "") + "digest=" + urllib.parse.quote(d)
    s, _, body = req("PUT", f"{u.path}?{q}", data, {"Content-Type": "application/octet-stream"})
    if s != 201:
        raise RuntimeError(f"PUT blob: {s} {body[:200]}")
    return d

def image(i):
    tag = f"t{i:04d}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = f"tiny image {i:04d}\n".encode() * 32
        ti = tarfile.TarInfo(f"etc/tiny-{i:04d}.txt")
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = len(data), 1704067200, 0o644, 0, 0
        t.addfile(ti, io.BytesIO(data))
    tar = buf.getvalue()
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                      "config": {"Cmd": ["/bin/sh"], "Labels": {"org.example.test-image": f"tiny-{tag}"}},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
                      "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ADD tiny-{tag}"}]},
                     sort_keys=True, separators=(",", ":")).encode()
    ld, cd = put_blob(gz), put_blob(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": MT_M,
                      "config": {"mediaType": MT_C, "digest": cd, "size": len(cfg)},
                      "layers": [{"mediaType": MT_L, "digest": ld, "size": len(gz)}]},
                     separators=(",", ":")).encode()
    s, _, body = req("PUT", f"/v2/tiny/manifests/{tag}", man, {"Content-Type": MT_M})
    if s != 201:
        raise RuntimeError(f"PUT manifest {tag}: {s} {body[:200]}")
    return f"{tag}\tsha256:{hashlib.sha256(man).hexdigest()}\t{cd}"

with ThreadPoolExecutor(8) as ex:
    for line in ex.map(image, range(n)):
        print(line)
EOF
  mv "$TINY_TSV.tmp" "$TINY_TSV"
  log "pushed $N_SMALL tiny images in $(($(date +%s) - t))s"
fi

# the cache holding the N_SMALL tiny images (kept; rebuilt if 'ls' does not list them all)
C1000="$PD/cache-$N_SMALL"
SMALL_SETUP_NOTE=""
if [ -z "$IMGCACHE_NOTE" ]; then
  have="$("$IMGCACHE" --root "$C1000" --json ls 2>/dev/null | jq '.images | length' 2>/dev/null)"
  if [ "${have:-0}" != "$N_SMALL" ]; then
    log "pulling the $N_SMALL tiny images into $C1000 (xargs -P4)"
    rm -rf "$C1000"; t=$(date +%s)
    cut -f1 "$TINY_TSV" | sed "s|^|$REG/tiny:|" |
      xargs -P4 -n1 "$IMGCACHE" --root "$C1000" --json pull >/dev/null 2>"$PD/cache-$N_SMALL.err"
    have="$("$IMGCACHE" --root "$C1000" --json ls 2>/dev/null | jq '.images | length' 2>/dev/null)"
    log "cache of tiny images: ${have:-?} images, pulled in $(($(date +%s) - t))s"
    [ "${have:-0}" = "$N_SMALL" ] || SMALL_SETUP_NOTE="cache lists ${have:-?} of $N_SMALL images (see $PD/cache-$N_SMALL.err)"
  fi
fi
SETUP_S=$(($(date +%s) - T0))
log "setup done in ${SETUP_S}s; kicbase:v1 = $V1_DIGEST (image $V1_CONFIG_DIGEST)"

# ---- helpers ----------------------------------------------------------------------------------
rm -rf "$RAW"; mkdir -p "$RAW"
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "$IMGCACHE_NOTE" ] && for k in cold pin v2 rss-small c1000; do NA[$k]="$IMGCACHE_NOTE"; done
[ -n "$SMALL_SETUP_NOTE" ] && NA[c1000]="$SMALL_SETUP_NOTE"
# the registry writes its access-log line after the response: wait a little before reading the log
reglines() { sleep 0.3; wc -l <"$REGLOG"; }
reg_since() { sleep 0.3; tail -n +"$(($1 + 1))" "$REGLOG" | grep -E '^[0-9.:a-f]+ - .* "[A-Z]+ /v2/' ; } # access-log lines after line N
# check_pull NAME JSONFILE IMAGE_ID : the pull's JSON names the expected image
check_pull() {
  if ! jq -e --arg id "$3" '.image_id == $id' "$2" >/dev/null 2>&1; then
    NA[$1]="wrong answer"; BAD=1
    log "ERROR: imgcache pull ($1) did not report image $3:"; head -c 600 "$2" >&2; tail -5 "${2%.json}.err" >&2 2>/dev/null
    return 1
  fi
}
# cold_ok NAME JSONFILE BYTES : a pull into an empty cache fetched BYTES (config + layers) from the
# registry and reused nothing. An answer from a cache makes NAME "NOT MEASURED"; another byte
# count is a wrong answer.
cold_ok() {
  if ! jq -e '.from_cache == false and .bytes_reused == 0 and .blobs_reused == 0 and .bytes_fetched > 0' "$2" >/dev/null 2>&1; then
    not_measured "$1" "a pull into an empty cache did not fetch the image: $(jq -c '{from_cache, bytes_fetched, bytes_reused, blobs_reused}' "$2" 2>/dev/null)"
    return 1
  fi
  local f; f="$(jq -r .bytes_fetched "$2")"
  [ "$f" = "$3" ] && return 0
  log "ERROR: cold pull ($1) fetched $f B, the image is $3 B (config + layers)"; BAD=1; NA[$1]="bytes_fetched $f != $3"
  return 1
}
warm_registry() { log "warming the page cache: registry blobs"; find "$REGDATA/docker" -type f -name data -exec cat {} + >/dev/null; }

# ---- 1 + 4b. cold pull of kicbase:v1, imgcache vs skopeo, alternating -------------------------
warm_registry
OUT_IC="$PD/cold-imgcache"; OUT_SK="$PD/cold-skopeo"
t_ic=(); t_sk=(); rss_ic=(); rss_sk=()
for i in $(seq 1 "$RUNS"); do
  if [ -z "${NA[cold]:-}" ]; then
    rm -rf "$OUT_IC"; sync
    log "cold pull $i/$RUNS: imgcache"
    a=$(now)
    /usr/bin/time -f %M -o "$RAW/rss-cold-imgcache-$i.txt" "$IMGCACHE" --root "$OUT_IC" --json pull "$REG/kicbase:v1" \
      >"$RAW/cold-imgcache-$i.json" 2>"$RAW/cold-imgcache-$i.err"; rc=$?
    b=$(now)
    if [ $rc = 0 ] && check_pull cold "$RAW/cold-imgcache-$i.json" "$V1_CONFIG_DIGEST" &&
      cold_ok cold "$RAW/cold-imgcache-$i.json" "$V1_BYTES"; then
      t_ic+=("$(elapsed "$a" "$b")"); rss_ic+=("$(tail -1 "$RAW/rss-cold-imgcache-$i.txt")")
    else
      [ $rc = 0 ] || { NA[cold]="imgcache exit $rc"; tail -5 "$RAW/cold-imgcache-$i.err" >&2; }
    fi
  fi
  rm -rf "$OUT_SK"; sync
  log "cold pull $i/$RUNS: skopeo copy + fsync"
  a=$(now)
  # shellcheck disable=SC2016 # expanded by the inner bash
  /usr/bin/time -f %M -o "$RAW/rss-cold-skopeo-$i.txt" bash -c '"${@:3}" && sync "$1"/* "$1" && ls "$1" | wc -l >"$2"' _ \
    "$OUT_SK" "$RAW/cold-skopeo-$i.files" "${SK[@]}" copy -q --src-tls-verify=false "docker://$REG/kicbase:v1" "dir:$OUT_SK" \
    2>"$RAW/cold-skopeo-$i.err"; rc=$?
  b=$(now)
  if [ $rc = 0 ]; then t_sk+=("$(elapsed "$a" "$b")"); rss_sk+=("$(tail -1 "$RAW/rss-cold-skopeo-$i.txt")")
  else log "skopeo copy failed (exit $rc):"; tail -5 "$RAW/cold-skopeo-$i.err" >&2; fi
done
rm -rf "$OUT_SK"
unmeasured cold && { t_ic=(); rss_ic=(); }
t_cold_ic="$(median "${t_ic[@]}")"; t_cold_sk="$(median "${t_sk[@]}")"
r1="$(div "$t_cold_ic" "$t_cold_sk")"
mbps() { [ -n "$2" ] && awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", b / s / 1e6 }' || echo n/a; }
ROWS+=("$(printf '1\tcold pull kicbase:v1 (%s, %s layers) from %s, durable; median of %s (imgcache %s, skopeo %s)\t%s\t%s\t%s\t<= 0.5x\t%s\t%s' \
  "$(fmt_b "$V1_BYTES")" "$V1_LAYERS" "$REG" "$RUNS" "$(mbps "$V1_BYTES" "$t_cold_ic")" "$(mbps "$V1_BYTES" "$t_cold_sk")" \
  "$(fmt_t "$t_cold_ic")" "$(fmt_t "$t_cold_sk")" "$(ratio "$r1")" "$(yesno "$r1" '<=' 0.5)" "${NA[cold]:-}")")

# ---- 2. pull of the cached digest-pinned reference ----------------------------------------------
PIN="$REG/kicbase@$V1_DIGEST"
t_pin=""; req_pin=""
if [ -z "${NA[cold]:-}" ] && [ -d "$OUT_IC" ]; then
  n0="$(reglines)"
  "$IMGCACHE" --root "$OUT_IC" --json pull "$PIN" >"$RAW/pin.json" 2>"$RAW/pin.err"
  if check_pull pin "$RAW/pin.json" "$V1_CONFIG_DIGEST" && jq -e '.from_cache == true and .bytes_fetched == 0' "$RAW/pin.json" >/dev/null; then
    t_pin="$(hf pin "$PIN_RUNS" 3 "$IMGCACHE --root $OUT_IC pull $PIN")"
  else
    NA[pin]="${NA[pin]:-not answered from the cache}"; head -c 600 "$RAW/pin.json" >&2
  fi
  req_pin="$(reg_since "$n0" | tee "$RAW/pin-requests.log" | wc -l)"
else NA[pin]="${NA[cold]:-no cache}"; fi
ROWS+=("$(printf '2\tpull of the cached pinned kicbase@sha256:%s… (hyperfine, %s runs)\t%s\t\t\t<= 15 ms\t%s\t%s' \
  "${V1_DIGEST:7:12}" "$PIN_RUNS" "$(fmt_t "$t_pin")" "$(yesno "$t_pin" '<=' 0.015)" "${NA[pin]:-}")")
ROWS+=("$(printf '2b\tregistry requests logged during those %s pulls\t%s\t\t\t0\t%s\t%s' \
  "$((PIN_RUNS + 4))" "${req_pin:-n/a}" "$(yesno "$req_pin" '==' 0)" "${NA[pin]:-}")")

# ---- 3. kicbase:v2 (8 of 10 layers shared) into the cache holding v1 ----------------------------
fetched_v2=""; gets_v2=""; req_v2=""; t_v2=""; blobs_v2=""
if [ -z "${NA[cold]:-}" ] && [ -d "$OUT_IC" ]; then
  n0="$(reglines)"
  a=$(now)
  "$IMGCACHE" --root "$OUT_IC" --json pull "$REG/kicbase:v2" >"$RAW/v2.json" 2>"$RAW/v2.err"
  b=$(now); t_v2="$(elapsed "$a" "$b")"
  if check_pull v2 "$RAW/v2.json" "$V2_CONFIG_DIGEST"; then
    fetched_v2="$(jq -r .bytes_fetched "$RAW/v2.json")"; blobs_v2="$(jq -r .blobs_fetched "$RAW/v2.json")"
    [ "$fetched_v2" = "$V2_NEW_BYTES" ] || { BAD=1; log "ERROR: v2 pull fetched $fetched_v2 B, expected $V2_NEW_BYTES B ($V2_NEW_DESC)"; }
  fi
  reg_since "$n0" >"$RAW/v2-requests.log"
  req_v2="$(wc -l <"$RAW/v2-requests.log")"
  gets_v2="$(grep -c '"GET /v2/kicbase/blobs/' "$RAW/v2-requests.log")"
else NA[v2]="${NA[cold]:-no cache}"; fi
ROWS+=("$(printf '3\tpull kicbase:v2 into the cache holding v1: bytes_fetched (--json; %s blobs, %s) vs new blobs (%s)\t%s\t%s\t%s\tequal\t%s\t%s' \
  "${blobs_v2:-?}" "$(fmt_t "$t_v2")" "$V2_NEW_DESC" "$([ -n "$fetched_v2" ] && echo "$fetched_v2 B" || echo n/a)" "$V2_NEW_BYTES B" \
  "$([ -n "$fetched_v2" ] && { [ "$fetched_v2" = "$V2_NEW_BYTES" ] && echo equal || echo "differs by $((fetched_v2 - V2_NEW_BYTES)) B"; } || echo n/a)" \
  "$([ -n "$fetched_v2" ] && { [ "$fetched_v2" = "$V2_NEW_BYTES" ] && echo yes || echo no; } || echo n/a)" "${NA[v2]:-}")")
ROWS+=("$(printf '3b\tblob GETs logged by the registry during the v2 pull (all requests: %s)\t%s\t3 new blobs\t\t3\t%s\t%s' \
  "${req_v2:-n/a}" "${gets_v2:-n/a}" "$(yesno "$gets_v2" '==' 3)" "${NA[v2]:-}")")

# ---- 4. peak RSS: ~60 MB image vs kicbase -------------------------------------------------------
rss_small=(); t_small=()
if [ -z "${NA[rss-small]:-}" ]; then
  OUT_S="$PD/cold-small"
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$OUT_S"; sync
    a=$(now)
    /usr/bin/time -f %M -o "$RAW/rss-small-$i.txt" "$IMGCACHE" --root "$OUT_S" --json pull "$REG/kicbase:small" \
      >"$RAW/small-$i.json" 2>"$RAW/small-$i.err"; rc=$?
    b=$(now)
    if [ $rc = 0 ] && check_pull rss-small "$RAW/small-$i.json" "$SMALL_CONFIG_DIGEST" &&
      cold_ok rss-small "$RAW/small-$i.json" "$SMALL_BYTES"; then
      rss_small+=("$(tail -1 "$RAW/rss-small-$i.txt")"); t_small+=("$(elapsed "$a" "$b")")
    else [ $rc = 0 ] || NA[rss-small]="imgcache exit $rc"; fi
  done
  rm -rf "$OUT_S"
  unmeasured rss-small && { rss_small=(); t_small=(); }
fi
rss_s="$(maxof "${rss_small[@]}")"; rss_k="$(maxof "${rss_ic[@]}")"; rss_sk_max="$(maxof "${rss_sk[@]}")"
r4="$(div "$rss_k" "$rss_s")"
ROWS+=("$(printf '4a\tpeak RSS, cold pull of kicbase:small (%s, 2 layers; median %s), max of %s\t%s\t\t\t<= 48 MiB\t%s\t%s' \
  "$(fmt_b "$SMALL_BYTES")" "$(fmt_t "$(median "${t_small[@]}")")" "$RUNS" "$(mib "$rss_s")" "$(yesno "$rss_s" '<=' 49152)" "${NA[rss-small]:-}")")
ROWS+=("$(printf '4b\tpeak RSS, cold pull of kicbase:v1 (%s), max of %s; peer: skopeo copy\t%s\t%s\t%s of 4a\t<= 48 MiB, about 4a\t%s\t%s' \
  "$(fmt_b "$V1_BYTES")" "$RUNS" "$(mib "$rss_k")" "$(mib "$rss_sk_max")" "$(ratio "$r4")" \
  "$(yesno "$rss_k" '<=' 49152)" "${NA[cold]:-}")")

# ---- 5. a cache of N_SMALL tiny images: ls and verify -------------------------------------------
t_ls=""; t_ver=""; t_pin1000=""
VREF="$REG/tiny:$(sed -n "$((N_SMALL / 2 + 1))p" "$TINY_TSV" | cut -f1)"
VREF_ID="$(sed -n "$((N_SMALL / 2 + 1))p" "$TINY_TSV" | cut -f3)"
VREF_PIN="$REG/tiny@$(sed -n "$((N_SMALL / 2 + 1))p" "$TINY_TSV" | cut -f2)"
if [ -z "${NA[c1000]:-}" ]; then
  "$IMGCACHE" --root "$C1000" --json ls >"$RAW/ls.json" 2>"$RAW/ls.err"
  if [ "$(jq '.images | length' "$RAW/ls.json" 2>/dev/null)" = "$N_SMALL" ]; then
    t_ls="$(hf ls "$FAST_RUNS" 3 "$IMGCACHE --root $C1000 --json ls")"
  else NA[c1000]="ls does not list $N_SMALL images"; BAD=1; fi
  "$IMGCACHE" --root "$C1000" --json verify "$VREF" >"$RAW/verify.json" 2>"$RAW/verify.err"
  if jq -e --arg id "$VREF_ID" '.ok == true and .level == "fast" and .image.image_id == $id' "$RAW/verify.json" >/dev/null 2>&1; then
    t_ver="$(hf verify "$FAST_RUNS" 3 "$IMGCACHE --root $C1000 --json verify $VREF")"
  else NA[c1000-verify]="unexpected verify JSON"; BAD=1; head -c 600 "$RAW/verify.json" >&2; fi
  n0="$(reglines)"
  "$IMGCACHE" --root "$C1000" --json pull "$VREF_PIN" >"$RAW/pin1000.json" 2>"$RAW/pin1000.err"
  if jq -e '.from_cache == true' "$RAW/pin1000.json" >/dev/null 2>&1; then
    t_pin1000="$(hf pin1000 "$FAST_RUNS" 3 "$IMGCACHE --root $C1000 pull $VREF_PIN")"
  fi
  req_pin1000="$(reg_since "$n0" | wc -l)"
fi
ROWS+=("$(printf '5a\timgcache --json ls, cache of %s tiny images (hyperfine, %s runs)\t%s\t\t\t<= 50 ms\t%s\t%s' \
  "$N_SMALL" "$FAST_RUNS" "$(fmt_t "$t_ls")" "$(yesno "$t_ls" '<=' 0.050)" "${NA[c1000]:-}")")
ROWS+=("$(printf '5b\timgcache verify %s (fast), same cache\t%s\t\t\t<= 15 ms\t%s\t%s' \
  "$VREF" "$(fmt_t "$t_ver")" "$(yesno "$t_ver" '<=' 0.015)" "${NA[c1000]:-${NA[c1000-verify]:-}}")")
ROWS+=("$(printf '5c\tpull of a cached pinned tiny@sha256 ref, same cache (registry requests: %s)\t%s\t\t\t<= 15 ms (as 2)\t%s\t%s' \
  "${req_pin1000:-n/a}" "$(fmt_t "$t_pin1000")" "$(yesno "$t_pin1000" '<=' 0.015)" "${NA[c1000]:-}")")
BENCH_S=$(($(date +%s) - TB))

# ---- report -----------------------------------------------------------------------------------
TSV="$BENCH_DIR/pull-results.tsv"; MD="$BENCH_DIR/pull-results.md"
{
  tsv_rows
  printf '# raw\tt_cold_imgcache_s=%s\tt_cold_skopeo_s=%s\tt_pin_s=%s\treq_pin=%s\tbytes_fetched_v2=%s\texpected_v2=%s\tblob_gets_v2=%s\trss_small_kib=%s\trss_kicbase_kib=%s\trss_skopeo_kib=%s\tt_ls_s=%s\tt_verify_s=%s\tt_pin1000_s=%s\n' \
    "$t_cold_ic" "$t_cold_sk" "$t_pin" "$req_pin" "$fetched_v2" "$V2_NEW_BYTES" "$gets_v2" "$rss_s" "$rss_k" "$rss_sk_max" "$t_ls" "$t_ver" "$t_pin1000"
  printf '# raw\tcold_imgcache_s=%s\tcold_skopeo_s=%s\trss_imgcache_kib=%s\trss_skopeo_kib=%s\n' "${t_ic[*]}" "${t_sk[*]}" "${rss_ic[*]}" "${rss_sk[*]}"
} >"$TSV"
{
  echo "## imgcache pull bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)${IMGCACHE_NOTE:+ — **$IMGCACHE_NOTE**}"
  echo "- registry: docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') at $REG (filesystem storage, plain http); $(skopeo --version), hyperfine $(hyperfine --version | cut -d' ' -f2)"
  echo "- images: kicbase:v1 $V1_DIGEST (image $V1_CONFIG_DIGEST, $V1_BYTES B); kicbase:v2 shares layers 0-7; kicbase:small = layers 0-1 ($SMALL_BYTES B); $N_SMALL tiny images $REG/tiny:t0000.."
  echo "- method: row 1 alternates imgcache / skopeo, $RUNS runs each, outputs deleted and 'sync' before each run, registry blobs in the page cache; every cold imgcache pull (rows 1 and 4) checked: from_cache false, nothing reused, all bytes fetched; skopeo's time includes 'sync FILES DIR' (an fsync of each file it wrote and of the directory), imgcache fsyncs each blob before its rename. Rows 2 and 5: hyperfine medians. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  md_table ""
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
finish
