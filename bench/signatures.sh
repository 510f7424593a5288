#!/usr/bin/env bash
# bench/signatures.sh : what a signature policy costs imgcache, side by side with what it costs
# skopeo, against a loopback registry and a private dockerd. See bench/README.md, section
# "Signatures".
#
# Starts its own registry (scripts/testenv/start-registry.sh, 127.0.0.1:$PORT, data in
# BENCH_DIR/sig/registry) and its own dockerd 20.10 (scripts/testenv/start-dockerd.sh, overlay2,
# all state in BENCH_DIR/sig/dockerd), and stops both by their PID files on exit. The image
# (SIG_LAYERS_MB, default 4 layers, about 46 MB gzip) is signed once with cosign 2 (a key pair
# made once, empty password, no transparency log: the `sha256-<hex>.sig` tag). The policy
# requires sigstoreSigned with that key (signedIdentity matchRepository) for the image's
# repository; the same policy.json is given to imgcache (--policy) and to skopeo (--policy,
# with a registries.d that turns on use-sigstore-attachments for the registry). The skopeo of
# the peer is trixie's 1.18 (unpacked once with its libraries, run through trixie's loader):
# Debian 12's 1.9.3 is built without sigstore. Measures:
#   1. imgcache load REF when the engine already has the image: with the policy (the kept
#      signatures judged offline) vs without; LOAD_RUNS alternating pairs (after WARMUP pairs),
#      median of each and of the paired differences. Each answer must say action
#      already-present; under the policy it must list signed_by (format cosign), without it none;
#      the registry must log no request during those runs.
#   2. imgcache pull REF into an empty cache with the policy vs without it, and skopeo copy
#      docker://REF dir:DIR (+ an fsync of every file it wrote) with the sigstoreSigned policy vs
#      insecureAcceptAnything (and no use-sigstore-attachments: no signature read, as imgcache
#      without a policy); RUNS rounds of the four, alternating (the order within each pair
#      swapped every other round), outputs deleted and 'sync' before each run, the registry's
#      blobs in the page cache. Every imgcache pull must report the image ID, from_cache false,
#      nothing reused, and exactly the image's blobs and bytes fetched; under the policy
#      signed_by (format cosign). Every skopeo copy must leave exactly the image's blobs, and
#      the signature (signature-1) under sigstoreSigned only.
# Once, untimed: cosign verify accepts the signature; imgcache and skopeo both refuse the image
# under a policy naming another key, and skopeo refuses it without the registries.d (no
# signature found), so a passing run is one where the signature was checked.
# Results: a markdown table on stdout, BENCH_DIR/sig-results.md and BENCH_DIR/sig-results.tsv,
# raw data in BENCH_DIR/sig/raw/. Exit status: 0 = ran, 1 = imgcache gave a wrong answer
# (wrong image ID or bytes, a refused good signature, an accepted wrong key), 3 = setup failed,
# 4 = a timed imgcache run did not do the work of its row (answered from a cache, or no
# signed_by under the policy). Targets are shown next to the numbers; they do not change the
# exit status.
#
# One-time setup (kept in BENCH_DIR/sig): the OCI layout oci/ (deterministic: tar with fixed
# mtime and owner of AES-CTR data, gzip -n), trixie's skopeo (newer/), the key pairs keys/cosign.{key,pub} and
# keys/other.{key,pub}, the registry's data with the signature. New keys empty the registry's data.
#
# Env knobs:
#   BENCH_DIR=/tmp/imgcache-bench     shared with the other scripts (this one uses BENCH_DIR/sig)
#   IMGCACHE=target/release/imgcache  binary to test (this script never runs cargo)
#   COSIGN=                           cosign 2 binary; default $TEST_COSIGN2 of
#                                     ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}/env.sh, else cosign on PATH
#   SKOPEO_SIG=                       the peer's skopeo (must support sigstoreSigned); default
#                                     trixie's, unpacked into BENCH_DIR/sig/newer/trixie
#   PORT=5106                         registry port (must be free)
#   RUNS=15                           rounds of row 2 (each: 2 imgcache pulls, 2 skopeo copies)
#   LOAD_RUNS=30 WARMUP=3             timed and untimed pairs of row 1
#   SIG_LAYERS_MB="20 12 8 4"         the image's layers (MiB of random data each)
set -uo pipefail

BENCH_TAG=sig-bench
: "${RUNS:=15}" # rounds of row 2: a pull here takes about 0.2 s (lib.sh would default to 5)
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${IMGCACHE:=target/release/imgcache}" "${PORT:=5106}" "${LOAD_RUNS:=30}" "${WARMUP:=3}"
SIG_LAYERS_MB="${SIG_LAYERS_MB:-20 12 8 4}"
TESTENV_DIR="${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}"
REG="127.0.0.1:$PORT"
REPO=sig/app
REF="$REG/$REPO:v1"
EPOCH=1704067200
TOOL_PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
MT_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_V2S2=application/vnd.docker.distribution.manifest.v2+json
DOCKER=/usr/bin/docker # Debian docker.io 20.10, the CLI of start-dockerd.sh's dockerd

bench_dir
SD="$BENCH_DIR/sig"
RAW="$SD/raw"
SLAYOUT="$SD/oci"
REGDATA="$SD/registry"
REGLOG="$REGDATA/_ctl/registry.log"
KEYS="$SD/keys"
DDIR="$SD/dockerd"
OUT_IC="$SD/out-imgcache"
OUT_SK="$SD/out-skopeo"
CACHE_L="$SD/cache-load"
mkdir -p "$SD" || die "cannot create $SD"

need_tools skopeo:skopeo jq:jq curl:curl docker-registry:docker-registry dockerd:docker.io \
  containerd:containerd runc:runc gzip:gzip tar:tar sha256sum:coreutils openssl:openssl

# ---- no policy unless asked: the runs without --policy must not read one -------------------------
unset IMGCACHE_POLICY
[ ! -e /etc/imgcache/policy.json ] || die "/etc/imgcache/policy.json exists: the runs without --policy would read it"

# ---- imgcache and cosign -----------------------------------------------------------------------
imgcache_abs
[ -x "$IMGCACHE" ] || die "no imgcache binary at $IMGCACHE (cargo build --release -p imgcache-cli, or set IMGCACHE)"
for c in pull load; do
  [[ "$("$IMGCACHE" "$c" --help 2>/dev/null)" == *--policy* ]] || die "$IMGCACHE $c has no --policy (stale build?)"
done
COSIGN_VERSION=""
if [ -z "${COSIGN:-}" ] && [ -r "$TESTENV_DIR/env.sh" ]; then
  # shellcheck disable=SC1091 # the test environment's env.sh, written by scripts/testenv/up.sh
  read -r COSIGN COSIGN_VERSION < <(set -a; . "$TESTENV_DIR/env.sh" >/dev/null 2>&1; printf '%s %s\n' "${TEST_COSIGN2:-}" "${TEST_COSIGN2_VERSION:-}")
fi
[ -n "${COSIGN:-}" ] || COSIGN="$(command -v cosign || true)"
{ [ -n "$COSIGN" ] && [ -x "$COSIGN" ]; } || die "no cosign 2: set COSIGN, or start the test environment (scripts/testenv/up.sh writes TEST_COSIGN2 into $TESTENV_DIR/env.sh)"
# The peer: a skopeo that checks sigstoreSigned. Debian 12's skopeo 1.9.3 cannot ("Source image
# rejected: Debian-local change: sigstore disabled"), so by default trixie's skopeo is unpacked
# (fetch-debs.sh, private apt configuration) into BENCH_DIR/sig/newer/trixie with the trixie
# libraries it needs (libc6 2.41 among them) and run through trixie's own dynamic loader.
# SKOPEO_SIG=PATH takes another skopeo instead.
if [ -n "${SKOPEO_SIG:-}" ]; then
  SKS=("$SKOPEO_SIG")
else
  TX="$SD/newer/trixie"
  "$TESTENV/fetch-debs.sh" trixie "$TX" "$SD/newer/debs/trixie" skopeo libc6 libgpgme11t64 libsqlite3-0 libassuan9 libgpg-error0 ||
    die "could not unpack trixie's skopeo into $TX (or set SKOPEO_SIG to a skopeo with sigstore support)"
  TX_LD="$(find "$TX/usr/lib" -maxdepth 2 -name 'ld-linux*.so.*' | head -1)"
  [ -n "$TX_LD" ] || die "no dynamic loader in $TX/usr/lib"
  SKS=("$TX_LD" --library-path "$(dirname "$TX_LD")" "$TX/usr/bin/skopeo")
fi
SKS_VER="$("${SKS[@]}" --version 2>&1)" || die "the peer skopeo does not run: $SKS_VER"
# cosign_run ARG... : cosign with a cleared environment (PATH, HOME in KEYS, empty key password)
cosign_run() { env -i PATH="$TOOL_PATH" HOME="$KEYS/home" COSIGN_PASSWORD= "$COSIGN" "$@"; }

# ---- one-time: the image, an OCI layout in BENCH_DIR/sig/oci --------------------------------------
T0=$(date +%s)
put_blob() { # put_blob FILE MEDIATYPE -> descriptor JSON (moves FILE into the layout being built)
  local d s
  d="$(sha256sum "$1" | cut -d' ' -f1)"; s="$(stat -c %s "$1")"
  mv -f "$1" "$SLAYOUT.tmp/blobs/sha256/$d"
  jq -cn --arg mt "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType: $mt, digest: $d, size: $s}'
}
# new_layer I MIB -> layer descriptor + diffid: a tar (sorted, fixed mtime and owner) of MIB MiB
# of AES-CTR data keyed by I, and a text file, gzip -n
new_layer() {
  local src="$SLAYOUT.tmp/work/layer-$1" key diffid
  mkdir -p "$src/opt/app/$1"
  key="$(printf 'imgcache sig bench layer %s' "$1" | sha256sum | cut -d' ' -f1)"
  openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
    head -c "$(($2 * 1048576))" >"$src/opt/app/$1/data.bin"
  printf 'signature bench, layer %s\n' "$1" >"$src/opt/app/$1/README"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu -C "$src" -cf "$src.tar" opt || return 1
  diffid="sha256:$(sha256sum "$src.tar" | cut -d' ' -f1)"
  gzip -n -6 -f "$src.tar" || return 1
  rm -rf "$src"
  put_blob "$src.tar.gz" "$MT_LAYER" | jq -c --arg d "$diffid" '. + {diffid: $d}'
}
build_layout() {
  local i=0 mb descs=() diffs=() l cfg cdesc man mdesc arch
  rm -rf "$SLAYOUT" "$SLAYOUT.tmp"
  mkdir -p "$SLAYOUT.tmp/blobs/sha256" "$SLAYOUT.tmp/work" || return 1
  printf '{"imageLayoutVersion":"1.0.0"}' >"$SLAYOUT.tmp/oci-layout"
  for mb in $SIG_LAYERS_MB; do
    l="$(new_layer "$i" "$mb")" || return 1
    descs+=("$(jq -c '{mediaType, digest, size}' <<<"$l")"); diffs+=("$(jq -r .diffid <<<"$l")")
    i=$((i + 1))
  done
  arch="$(dpkg --print-architecture)"
  cfg="$(jq -cnS --arg a "$arch" --argjson d "$(printf '%s\n' "${diffs[@]}" | jq -R . | jq -cs .)" '{
    architecture: $a, os: "linux", created: "2024-01-01T00:00:00Z",
    config: {Cmd: ["/bin/sh"], Labels: {"org.example.test-image": "sig-bench"}},
    rootfs: {type: "layers", diff_ids: $d},
    history: [$d[] | {created: "2024-01-01T00:00:00Z", created_by: "ADD layer"}]}')" || return 1
  printf '%s' "$cfg" >"$SLAYOUT.tmp/work/config"
  cdesc="$(put_blob "$SLAYOUT.tmp/work/config" "$MT_CONFIG")" || return 1
  man="$(jq -cn --argjson c "$cdesc" --argjson l "$(printf '%s\n' "${descs[@]}" | jq -cs .)" --arg mt "$MT_MANIFEST" \
    '{schemaVersion: 2, mediaType: $mt, config: $c, layers: $l}')" || return 1
  printf '%s' "$man" >"$SLAYOUT.tmp/work/manifest"
  mdesc="$(put_blob "$SLAYOUT.tmp/work/manifest" "$MT_MANIFEST")" || return 1
  jq -cn --argjson m "$mdesc" '{schemaVersion: 2, manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": "v1"}}]}' \
    >"$SLAYOUT.tmp/index.json" || return 1
  rm -rf "$SLAYOUT.tmp/work"
  mv "$SLAYOUT.tmp" "$SLAYOUT"
}
LSTAMP="$SLAYOUT/.complete-$(printf 'recipe 1 layers %s' "$SIG_LAYERS_MB" | sha256sum | cut -c1-16)"
if [ ! -e "$LSTAMP" ]; then
  log "building the image in $SLAYOUT (layers of $SIG_LAYERS_MB MiB)"
  build_layout || die "could not build $SLAYOUT"
  touch "$LSTAMP"
fi

# ---- one-time: the key pairs (a new pair empties the registry: its signature would be stale) -------
if [ ! -s "$KEYS/cosign.key" ] || [ ! -s "$KEYS/cosign.pub" ] || [ ! -s "$KEYS/other.pub" ]; then
  log "cosign generate-key-pair: $KEYS/cosign and $KEYS/other"
  rm -rf "$KEYS" "$REGDATA"; mkdir -p "$KEYS/home"
  for k in cosign other; do
    cosign_run generate-key-pair --output-key-prefix "$KEYS/$k" >"$KEYS/$k.log" 2>&1 ||
      { tail -5 "$KEYS/$k.log" >&2; die "cosign generate-key-pair failed"; }
  done
fi
PUB="$KEYS/cosign.pub"

# ---- policies and the registries.d of skopeo -------------------------------------------------------
POLICY="$SD/policy-signed.json"; POLICY_ANY="$SD/policy-any.json"; POLICY_WRONG="$SD/policy-wrong-key.json"
sig_policy() { # sig_policy PUBKEY : the sigstoreSigned policy for REG/REPO
  jq -n --arg scope "$REG/$REPO" --arg k "$1" '{default: [{type: "insecureAcceptAnything"}],
    transports: {docker: {($scope): [{type: "sigstoreSigned", keyPath: $k, signedIdentity: {type: "matchRepository"}}]}}}'
}
sig_policy "$PUB" >"$POLICY"
sig_policy "$KEYS/other.pub" >"$POLICY_WRONG"
jq -n '{default: [{type: "insecureAcceptAnything"}]}' >"$POLICY_ANY"
RD="$SD/registries.d"; mkdir -p "$RD"
printf 'docker:\n  %s:\n    use-sigstore-attachments: true\n' "$REG" >"$RD/sig-bench.yaml"
RD_NONE="$SD/registries.d-none"; mkdir -p "$RD_NONE"
# shellcheck disable=SC2317 # called through refuse
skp() { "${SKS[@]}" --policy "$1" --registries.d "$2" "${@:3}"; } # skp POLICY REGISTRIES.D ARG... : the peer

# ---- cleanup: the dockerd, the registry ----------------------------------------------------------
D_STARTED=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ "$D_STARTED" = 1 ] && { stop_daemons "$DDIR" || true; }
  rm -rf "$OUT_IC" "$OUT_SK"
  stop_registry
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- registry, push, sign ------------------------------------------------------------------------
start_registry "$PORT" "$REGDATA"
push "oci:$SLAYOUT:v1" "$REPO:v1" || die "push $REF failed"
MAN_JSON="$(curl -sf -H "Accept: $MT_V2S2" "http://$REG/v2/$REPO/manifests/v1")" || die "cannot GET the manifest of $REF"
DIGEST="sha256:$(printf '%s' "$MAN_JSON" | sha256sum | cut -d' ' -f1)"
[ "$DIGEST" = "$(reg_digest "$REPO:v1")" ] || die "the registry's manifest of $REF is not the one skopeo reads"
IMAGE_ID="$(jq -r .config.digest <<<"$MAN_JSON")"
NLAYERS="$(jq '.layers | length' <<<"$MAN_JSON")"
IMG_BYTES="$(jq '[.config.size] + [.layers[].size] | add' <<<"$MAN_JSON")"
NBLOBS=$((NLAYERS + 1))
PINNED="$REG/$REPO@$DIGEST"
SIGTAG="${DIGEST/:/-}.sig"
sig_layers() { curl -sf -H "Accept: $MT_MANIFEST" "http://$REG/v2/$REPO/manifests/$SIGTAG" | jq '.layers | length' 2>/dev/null; }
cosign_verify() { # cosign_verify PUBKEY : cosign 2 verifies a signature of PINNED with PUBKEY
  cosign_run verify --key "$1" --insecure-ignore-tlog=true --allow-http-registry --allow-insecure-registry "$PINNED" >"$RAW.setup/cosign-verify.out" 2>&1
}
mkdir -p "$RAW.setup"
if ! cosign_verify "$PUB"; then
  log "cosign sign $PINNED (key $KEYS/cosign.key, no transparency log)"
  cosign_run sign --key "$KEYS/cosign.key" --allow-http-registry --allow-insecure-registry --yes --tlog-upload=false "$PINNED" \
    >"$RAW.setup/cosign-sign.log" 2>&1 || { tail -5 "$RAW.setup/cosign-sign.log" >&2; die "cosign sign failed"; }
  cosign_verify "$PUB" || { tail -5 "$RAW.setup/cosign-verify.out" >&2; die "cosign verify does not accept the signature just made"; }
fi
cosign_verify "$KEYS/other.pub" && die "cosign verify accepts the signature with another key"
NSIG="$(sig_layers)"
[ "$NSIG" = 1 ] || die "the signature manifest $REPO:$SIGTAG holds ${NSIG:-no} signatures, not 1 (rm -rf $REGDATA and rerun)"
log "$REF = $DIGEST (image $IMAGE_ID, $NLAYERS layers, $IMG_BYTES B); signature $REPO:$SIGTAG, cosign verify: ok"

# ---- the refusals: each tool checks the signature under the policy ----------------------------------
REFUSALS=()
refuse() { # refuse NAME EXPECT CMD... : CMD must fail (a refusal), or the policy was not checked
  if "${@:3}" >"$RAW.setup/refuse-$1.out" 2>&1; then
    log "ERROR: $1 succeeded: $2"; return 1
  fi
  REFUSALS+=("$1: $(grep -v '^\s*$' "$RAW.setup/refuse-$1.out" | tail -1 | cut -c1-160)")
}
rm -rf "$SD/refuse"
refuse imgcache-wrong-key "imgcache pulled the image under a policy naming another key" \
  "$IMGCACHE" --root "$SD/refuse/cache" --json pull --policy "$POLICY_WRONG" "$REF" || BAD=1
refuse skopeo-wrong-key "skopeo copied the image under a policy naming another key" \
  skp "$POLICY_WRONG" "$RD" copy -q --src-tls-verify=false "docker://$REF" "dir:$SD/refuse/sk1" || die "the skopeo peer does not check the signature"
refuse skopeo-no-attachments "skopeo copied the image without reading sigstore attachments: it did not check the signature" \
  skp "$POLICY" "$RD_NONE" copy -q --src-tls-verify=false "docker://$REF" "dir:$SD/refuse/sk2" || die "the skopeo peer does not check the signature"
rm -rf "$SD/refuse"
for r in "${REFUSALS[@]}"; do log "refused, as it must be: $r"; done

# ---- dockerd, holding the image (loaded once, from a cache pulled under the policy) ------------------
stop_daemons "$DDIR" || die "mounts left in $DDIR from an earlier run"
D_STARTED=1
DPID="$(DOCKERD_EXTRA_ARGS="" "$TESTENV/start-dockerd.sh" "$DDIR" overlay2)" || die "dockerd did not start (see $DDIR/dockerd.log)"
export DOCKER_HOST="unix://$DDIR/docker.sock"
unset DOCKER_CONTEXT DOCKER_CONFIG
D_VER="dockerd $("$DOCKER" version -f '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null), $("$DOCKER" info -f '{{.Driver}}' 2>/dev/null)"
log "dockerd pid $DPID: $D_VER, $DOCKER_HOST"
rm -rf "$CACHE_L"
"$IMGCACHE" --root "$CACHE_L" --json pull --policy "$POLICY" "$REF" >"$RAW.setup/load-pull.json" 2>"$RAW.setup/load-pull.err" ||
  { tail -5 "$RAW.setup/load-pull.err" >&2; BAD=1; die "imgcache pull --policy $REF failed (the signature is good)"; }
jq -e --arg id "$IMAGE_ID" '.image_id == $id and (.signed_by | length) >= 1' "$RAW.setup/load-pull.json" >/dev/null ||
  { head -c 600 "$RAW.setup/load-pull.json" >&2; BAD=1; die "imgcache pull --policy did not report image $IMAGE_ID with signed_by"; }
"$IMGCACHE" --root "$CACHE_L" --json load --engine docker "$REF" >"$RAW.setup/load-first.json" 2>"$RAW.setup/load-first.err" ||
  { tail -5 "$RAW.setup/load-first.err" >&2; die "imgcache load $REF into the new dockerd failed"; }
jq -e --arg id "$IMAGE_ID" '.image_id == $id and .action == "loaded"' "$RAW.setup/load-first.json" >/dev/null ||
  { head -c 600 "$RAW.setup/load-first.json" >&2; die "the first load into the new dockerd did not answer action loaded"; }
[ "$("$DOCKER" image inspect -f '{{.Id}}' "$REF" 2>/dev/null)" = "$IMAGE_ID" ] || { BAD=1; die "dockerd's $REF is not image $IMAGE_ID after the load"; }
SETUP_S=$(($(date +%s) - T0))
rm -rf "$RAW"; mv "$RAW.setup" "$RAW"
TB=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"

reglines() { sleep 0.3; wc -l <"$REGLOG"; }
reg_since() { sleep 0.3; tail -n +"$(($1 + 1))" "$REGLOG" | grep -E '^[0-9.:a-f]+ - .* "[A-Z]+ /v2/'; } # access-log lines after line N
range_ms() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {if (NR) printf "%.1f-%.1f ms", a * 1000, b * 1000}'; }
ms() { [ -n "$1" ] && awk -v s="$1" 'BEGIN { printf "%+.1f ms", s * 1000 }' || echo n/a; }

# ---- 1. load, the engine already has the image: with the policy vs without --------------------------
# load_once KIND I : one timed 'imgcache load' (KIND none or policy); appends its time to T_LOAD_KIND
# unless it is a warmup; a wrong answer makes row 1 NOT MEASURED (or a wrong answer: BAD)
# shellcheck disable=SC2034 # T_LOAD_none / T_LOAD_policy are read through the nameref
load_once() {
  local kind="$1" i="$2" f="$RAW/load-$1-$2" a b rc args=() filter
  local -n acc_l="T_LOAD_$1"
  [ "$kind" = policy ] && args=(--policy "$POLICY")
  a=$EPOCHREALTIME
  "$IMGCACHE" --root "$CACHE_L" --json load "${args[@]}" --engine docker "$REF" >"$f.json" 2>"$f.err"; rc=$?
  b=$EPOCHREALTIME
  if [ $rc != 0 ]; then
    NA[load]="imgcache load exit $rc, see raw/load-$kind-$i.err"; [ $rc = 1 ] && BAD=1
    log "ERROR: imgcache load ($kind, run $i): exit $rc"; tail -3 "$f.err" >&2; return 1
  fi
  if ! jq -e --arg id "$IMAGE_ID" '.image_id == $id' "$f.json" >/dev/null 2>&1; then
    NA[load]="wrong image, see raw/load-$kind-$i.json"; BAD=1; head -c 600 "$f.json" >&2; return 1
  fi
  filter='.action == "already-present" and .pulled == false'
  if [ "$kind" = policy ]; then filter="$filter and (.signed_by | length) >= 1 and all(.signed_by[]; .format == \"cosign\")"
  else filter="$filter and (.signed_by // [] | length) == 0"; fi
  if ! jq -e "$filter" "$f.json" >/dev/null 2>&1; then
    not_measured load "run $i ($kind) answered $(jq -c '{action, pulled, signed_by: [.signed_by[]?.format]}' "$f.json" 2>/dev/null), not already-present$([ "$kind" = policy ] && echo ' with signed_by')"
    return 1
  fi
  [ "$i" -gt "$WARMUP" ] && acc_l+=("$(elapsed "$a" "$b")")
  return 0
}
T_LOAD_none=(); T_LOAD_policy=(); D_LOAD=()
log "row 1: $((WARMUP + LOAD_RUNS)) pairs of imgcache load (engine has the image), with and without the policy"
n0="$(reglines)"
for i in $(seq 1 $((WARMUP + LOAD_RUNS))); do
  if [ $((i % 2)) = 1 ]; then load_once none "$i" && load_once policy "$i"
  else load_once policy "$i" && load_once none "$i"; fi || break
done
req_load="$(reg_since "$n0" | tee "$RAW/load-requests.log" | wc -l)"
[ "$req_load" = 0 ] || not_measured load "the registry logged $req_load requests during the loads (see raw/load-requests.log)"
unmeasured load && { T_LOAD_none=(); T_LOAD_policy=(); }
[ -n "${NA[load]:-}" ] && { T_LOAD_none=(); T_LOAD_policy=(); }
for k in "${!T_LOAD_none[@]}"; do D_LOAD+=("$(elapsed "${T_LOAD_none[$k]}" "${T_LOAD_policy[$k]:-}")"); done
[ "$("$DOCKER" image inspect -f '{{.Id}}' "$REF" 2>/dev/null)" = "$IMAGE_ID" ] || { BAD=1; NA[load]="dockerd's $REF is no longer image $IMAGE_ID"; }
t_ln="$(median "${T_LOAD_none[@]}")"; t_lp="$(median "${T_LOAD_policy[@]}")"
d_l=""; [ -n "$t_ln" ] && [ -n "$t_lp" ] && d_l="$(elapsed "$t_ln" "$t_lp")"
d_pair="$(median "${D_LOAD[@]}")"
r_l="$(div "$t_lp" "$t_ln")"
n_l="${#T_LOAD_none[@]}"
ROWS+=("$(printf '1\timgcache load, dockerd already has the image: with the policy (sigstoreSigned, the kept cosign signature judged offline) vs without; median of %s alternating pairs (with %s, without %s; every answer already-present, signed_by cosign with the policy and none without; registry requests during the runs: %s)\t%s\t%s\t%s\t-\t-\t%s' \
  "$n_l" "$(range_ms "${T_LOAD_policy[@]}")" "$(range_ms "${T_LOAD_none[@]}")" "${req_load:-n/a}" \
  "$(fmt_t "$t_lp")" "$(fmt_t "$t_ln")" "$(ratio "$r_l")" "${NA[load]:-}")")
ROWS+=("$(printf '1b\tthe same: time the policy adds to a load (difference of the medians; median of the paired differences %s)\t%s\t\t\t<= +5 ms\t%s\t%s' \
  "$(ms "$d_pair")" "$(ms "$d_l")" "$(yesno "$d_l" '<=' 0.005)" "${NA[load]:-}")")

# ---- 2. pull into an empty cache, signed with the policy vs without; skopeo the same --------------------
warm_registry() { log "warming the page cache: registry blobs"; find "$REGDATA/docker" -type f -name data -exec cat {} + >/dev/null; }
# ic_pull KIND I : one timed imgcache pull of REF into an empty cache (KIND none or policy)
# shellcheck disable=SC2034 # T_IC_* / REQ_IC_* are read through the namerefs
ic_pull() {
  local kind="$1" i="$2" f="$RAW/pull-imgcache-$1-$2" a b rc args=() n0 filter
  local -n acc_i="T_IC_$1" req_i="REQ_IC_$1"
  [ -z "${NA[pull]:-}" ] || return 0
  [ "$kind" = policy ] && args=(--policy "$POLICY")
  rm -rf "$OUT_IC"; sync
  n0="$(reglines)"
  log "round $i: imgcache pull ($kind)"
  a=$(now)
  "$IMGCACHE" --root "$OUT_IC" --json pull "${args[@]}" "$REF" >"$f.json" 2>"$f.err"; rc=$?
  b=$(now)
  req_i+=("$(reg_since "$n0" | tee "$f.requests.log" | wc -l)")
  if [ $rc != 0 ]; then
    NA[pull]="imgcache exit $rc, see raw/${f##*/}.err"; [ $rc = 1 ] && BAD=1
    log "ERROR: imgcache pull ($kind): exit $rc"; tail -3 "$f.err" >&2; return 1
  fi
  if ! jq -e --arg id "$IMAGE_ID" '.image_id == $id' "$f.json" >/dev/null 2>&1; then
    NA[pull]="wrong image, see raw/${f##*/}.json"; BAD=1; head -c 600 "$f.json" >&2; return 1
  fi
  filter='.from_cache == false and .bytes_reused == 0 and .blobs_reused == 0 and .bytes_fetched > 0'
  if [ "$kind" = policy ]; then filter="$filter and (.signed_by | length) >= 1 and all(.signed_by[]; .format == \"cosign\")"
  else filter="$filter and (.signed_by // [] | length) == 0"; fi
  if ! jq -e "$filter" "$f.json" >/dev/null 2>&1; then
    not_measured pull "a pull ($kind) into an empty cache answered $(jq -c '{from_cache, bytes_fetched, bytes_reused, blobs_reused, signed_by: [.signed_by[]?.format]}' "$f.json" 2>/dev/null)"
    return 1
  fi
  if ! jq -e --argjson b "$IMG_BYTES" --argjson n "$NBLOBS" '.bytes_fetched == $b and .blobs_fetched == $n' "$f.json" >/dev/null; then
    NA[pull]="fetched $(jq -c '[.bytes_fetched, .blobs_fetched]' "$f.json"), the image is [$IMG_BYTES, $NBLOBS]"; BAD=1
    log "ERROR: imgcache pull ($kind): ${NA[pull]}"; return 1
  fi
  acc_i+=("$(elapsed "$a" "$b")")
}
# sk_pull KIND I : one timed skopeo copy docker://REF dir: + fsync (KIND any or signed)
# shellcheck disable=SC2034 # T_SK_* / REQ_SK_* are read through the namerefs
sk_pull() {
  local kind="$1" i="$2" f="$RAW/pull-skopeo-$1-$2" a b rc p="$POLICY_ANY" rd="$RD_NONE" n0 got nsig
  local -n acc_s="T_SK_$1" req_s="REQ_SK_$1"
  [ -z "${NA[pull-sk]:-}" ] || return 0
  [ "$kind" = signed ] && { p="$POLICY"; rd="$RD"; }
  rm -rf "$OUT_SK"; sync
  n0="$(reglines)"
  log "round $i: skopeo copy ($kind)"
  a=$(now)
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c '"${@:2}" && sync "$1"/* "$1"' _ "$OUT_SK" \
    "${SKS[@]}" --policy "$p" --registries.d "$rd" copy -q --src-tls-verify=false "docker://$REF" "dir:$OUT_SK" 2>"$f.err"; rc=$?
  b=$(now)
  req_s+=("$(reg_since "$n0" | tee "$f.requests.log" | wc -l)")
  ls -l "$OUT_SK" >"$f.files" 2>&1
  if [ $rc != 0 ]; then NA[pull-sk]="skopeo exit $rc, see raw/${f##*/}.err"; log "ERROR: skopeo copy ($kind): exit $rc"; tail -3 "$f.err" >&2; return 1; fi
  # the image's blobs, named by their hex digests, with all their bytes
  got="$(find "$OUT_SK" -maxdepth 1 -type f -regextype egrep -regex '.*/[0-9a-f]{64}' -printf '%s\n' | awk '{n++; s += $1} END {print n + 0, s + 0}')"
  if [ "$got" != "$NBLOBS $IMG_BYTES" ]; then NA[pull-sk]="skopeo wrote [$got] (blobs, bytes), the image is [$NBLOBS $IMG_BYTES]"; log "ERROR: ${NA[pull-sk]}"; return 1; fi
  # sigstoreSigned: the signature it checked is copied (signature-1); insecureAcceptAnything reads none
  nsig="$(find "$OUT_SK" -maxdepth 1 -name 'signature-*' | wc -l)"
  if [ "$nsig" != "$([ "$kind" = signed ] && echo 1 || echo 0)" ]; then NA[pull-sk]="skopeo ($kind) copied $nsig signatures"; log "ERROR: ${NA[pull-sk]}"; return 1; fi
  acc_s+=("$(elapsed "$a" "$b")")
}
T_IC_none=(); T_IC_policy=(); T_SK_any=(); T_SK_signed=()
REQ_IC_none=(); REQ_IC_policy=(); REQ_SK_any=(); REQ_SK_signed=()
warm_registry
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then ic_pull none "$i"; ic_pull policy "$i"; sk_pull any "$i"; sk_pull signed "$i"
  else ic_pull policy "$i"; ic_pull none "$i"; sk_pull signed "$i"; sk_pull any "$i"; fi
done
rm -rf "$OUT_IC" "$OUT_SK"
{ unmeasured pull || [ -n "${NA[pull]:-}" ]; } && { T_IC_none=(); T_IC_policy=(); }
[ -n "${NA[pull-sk]:-}" ] && { T_SK_any=(); T_SK_signed=(); }
t_in="$(median "${T_IC_none[@]}")"; t_ip="$(median "${T_IC_policy[@]}")"
t_sa="$(median "${T_SK_any[@]}")"; t_ss="$(median "${T_SK_signed[@]}")"
r_i="$(div "$t_ip" "$t_in")"; r_s="$(div "$t_ss" "$t_sa")"; r_is="$(div "$t_ip" "$t_ss")"
# paired_ms A_NAME B_NAME : median of B[k] - A[k] over the rounds (the runs of one round are paired)
paired_ms() {
  local -n pa="$1" pb="$2"; local k d=()
  [ "${#pa[@]}" = "${#pb[@]}" ] || { echo n/a; return; }
  for k in "${!pa[@]}"; do d+=("$(elapsed "${pa[$k]}" "${pb[$k]}")"); done
  ms "$(median "${d[@]}")"
}
p_i="$(paired_ms T_IC_none T_IC_policy)"; p_s="$(paired_ms T_SK_any T_SK_signed)"
mbps() { [ -n "$2" ] && awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", b / s / 1e6 }' || echo n/a; }
reqs() { [ $# -gt 0 ] && median "$@" || echo n/a; }
IMG_DESC="$(fmt_b "$IMG_BYTES"), $NLAYERS layers"
ROWS+=("$(printf '2a\timgcache pull of the signed %s (%s) into an empty cache, durable: with the policy vs without; median of %s, alternating (with %s, without %s; median of the paired differences %s; every pull: from_cache false, nothing reused, %s blobs and %s B fetched, signed_by cosign with the policy; registry requests per pull: %s with, %s without)\t%s\t%s\t%s\t<= 1.1x\t%s\t%s' \
  "$REF" "$IMG_DESC" "$RUNS" "$(range "${T_IC_policy[@]}")" "$(range "${T_IC_none[@]}")" "$p_i" "$NBLOBS" "$IMG_BYTES" \
  "$(reqs "${REQ_IC_policy[@]}")" "$(reqs "${REQ_IC_none[@]}")" \
  "$(fmt_t "$t_ip")" "$(fmt_t "$t_in")" "$(ratio "$r_i")" "$(yesno "$r_i" '<=' 1.1)" "${NA[pull]:-}")")
ROWS+=("$(printf '2b\tthe peer: skopeo copy docker:// dir: + fsync, sigstoreSigned (the same policy.json; registries.d use-sigstore-attachments) vs insecureAcceptAnything (no registries.d: reads no signature); median of %s (sigstoreSigned %s, %s; insecureAcceptAnything %s, %s; median of the paired differences %s; registry requests per copy: %s, %s; every copy left the %s blobs); imgcache: its ratio of 2a, peer: skopeo'"'"'s\t%s\t%s\t\t-\t-\t%s' \
  "$RUNS" "$(fmt_t "$t_ss")" "$(range "${T_SK_signed[@]}")" "$(fmt_t "$t_sa")" "$(range "${T_SK_any[@]}")" "$p_s" \
  "$(reqs "${REQ_SK_signed[@]}")" "$(reqs "${REQ_SK_any[@]}")" "$NBLOBS" \
  "$(ratio "$r_i")" "$(ratio "$r_s")" "${NA[pull-sk]:-${NA[pull]:-}}")")
ROWS+=("$(printf '2c\tsigned pull under the policy, imgcache vs skopeo (%s vs %s)\t%s\t%s\t%s\t-\t-\t%s' \
  "$(mbps "$IMG_BYTES" "$t_ip")" "$(mbps "$IMG_BYTES" "$t_ss")" "$(fmt_t "$t_ip")" "$(fmt_t "$t_ss")" "$(ratio "$r_is")" \
  "${NA[pull]:-${NA[pull-sk]:-}}")")
BENCH_S=$(($(date +%s) - TB))

# ---- report -----------------------------------------------------------------------------------
TSV="$BENCH_DIR/sig-results.tsv"; MD="$BENCH_DIR/sig-results.md"
{
  tsv_rows
  printf '# raw\tt_load_policy_s=%s\tt_load_none_s=%s\td_load_s=%s\td_load_paired_s=%s\tt_pull_policy_s=%s\tt_pull_none_s=%s\tt_skopeo_signed_s=%s\tt_skopeo_any_s=%s\n' \
    "$t_lp" "$t_ln" "$d_l" "$d_pair" "$t_ip" "$t_in" "$t_ss" "$t_sa"
  printf '# raw\tload_policy_s=%s\tload_none_s=%s\n' "${T_LOAD_policy[*]}" "${T_LOAD_none[*]}"
  printf '# raw\tpull_policy_s=%s\tpull_none_s=%s\tskopeo_signed_s=%s\tskopeo_any_s=%s\n' "${T_IC_policy[*]}" "${T_IC_none[*]}" "${T_SK_signed[*]}" "${T_SK_any[*]}"
} >"$TSV"
{
  echo "## imgcache signature bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  host_line
  echo "- imgcache: $(binary_desc)"
  echo "- tools: cosign ${COSIGN_VERSION:-?} ($COSIGN), peer $SKS_VER (${SKS[*]: -1}), docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') at $REG, $D_VER (private, $DDIR)"
  echo "- image: $REF = $DIGEST (image $IMAGE_ID, $NLAYERS layers of $SIG_LAYERS_MB MiB random data, $IMG_BYTES B), signed by cosign 2 with $PUB (tag $SIGTAG, $NSIG signature, no transparency log); policy $POLICY: sigstoreSigned, keyPath, signedIdentity matchRepository"
  echo "- checks: refused under a policy naming another key: imgcache and skopeo; skopeo without use-sigstore-attachments: refused (no signature)"
  echo "- method: row 1 alternates with / without the policy ($WARMUP warmup pairs), the order swapped every pair; row 2 runs rounds of imgcache with / without and skopeo sigstoreSigned / insecureAcceptAnything, the order within each pair swapped every round, outputs deleted and 'sync' before each run, registry blobs in the page cache, skopeo's time includes 'sync FILES DIR'. Bench time ${BENCH_S}s (setup ${SETUP_S}s); load average before / after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  md_table ""
} >"$MD"
cat "$MD"
log "results: $MD, $TSV (raw data in $RAW)"
for k in "${!NA[@]}"; do log "n/a: $k: ${NA[$k]}"; done
finish
