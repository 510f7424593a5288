#!/usr/bin/env bash
# scripts/demo.sh -- imgcache's main job end to end, offline, on a fresh Debian machine.
#   Starts a loopback registry with sample images and a private dockerd (testenv/up.sh), then:
#   pull into a fresh cache, verify (fast and deep), save a tarball every engine loads, catch a
#   damaged copy of it, load the image into dockerd only when the engine lacks its image ID, and
#   serve the cache as a registry that dockerd pulls from.
#   Stops everything it started on exit. Env: IMGCACHE_DEMO (state dir, default /tmp/imgcache-demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${IMGCACHE_DEMO:-/tmp/imgcache-demo}"
step() { printf '\n== %s\n' "$*"; }
trap '"$ROOT/scripts/testenv/down.sh" "$BASE" </dev/null >/dev/null 2>&1 || true' EXIT

step "build imgcache"
cargo build --release -q -p imgcache-cli --manifest-path "$ROOT/Cargo.toml"
IMGCACHE="$ROOT/target/release/imgcache"

step "start a loopback registry with sample images and a private dockerd (first run installs packages)"
NEWER_ENGINES=0 "$ROOT/scripts/testenv/up.sh" "$BASE" </dev/null >/dev/null
# shellcheck source=/dev/null
. "$BASE/env.sh"
REF="$TEST_REGISTRY/busybox:v1"
export IMGCACHE_HOME="$BASE/demo-cache"
rm -rf "$IMGCACHE_HOME" "$BASE/demo-out" && mkdir -p "$BASE/demo-out"
EXPECT="sha256:$(skopeo inspect --config --raw --tls-verify=false "docker://$REF" | sha256sum | cut -d' ' -f1)"
echo "the registry's config digest (the image ID) of $REF: $EXPECT"

step "imgcache pull (twice: the second fetches no blob)"
"$IMGCACHE" pull "$REF"
"$IMGCACHE" pull "$REF"

step "imgcache verify (fast: headers and JSON only) and verify --deep (every layer hashed)"
"$IMGCACHE" verify "$REF"
"$IMGCACHE" verify --deep "$REF"
"$IMGCACHE" ls

step "imgcache save: a tarball every engine loads, checked against the expected image ID"
"$IMGCACHE" save "$REF" -o "$BASE/demo-out/busybox_v1.tar"
"$IMGCACHE" verify --expect "$EXPECT" "$BASE/demo-out/busybox_v1.tar"

step "a truncated copy beside it is caught (exit 1); verify takes the whole directory"
head -c 500000 "$BASE/demo-out/busybox_v1.tar" >"$BASE/demo-out/busybox_v1-partial.tar"
if "$IMGCACHE" verify "$BASE/demo-out"; then exit 1; else echo "exit code $? (1 = a check said no)"; fi

step "imgcache load into dockerd: only when it lacks $EXPECT (the second run sends nothing)"
docker image rm -f "$REF" >/dev/null 2>&1 || true
"$IMGCACHE" status "$REF" --engine docker || true
"$IMGCACHE" load "$REF" --engine docker
"$IMGCACHE" load "$REF" --engine docker
GOT="$(docker image inspect -f '{{.Id}}' "$REF")"
echo "dockerd reports $GOT"
[ "$GOT" = "$EXPECT" ] || { echo "dockerd holds $GOT, not $EXPECT"; exit 1; }
echo "same image ID"

step "imgcache serve: dockerd pulls the cached image over the registry protocol, with its registry digest"
"$IMGCACHE" serve --offline --listen 127.0.0.1:0 >"$BASE/demo-out/serve.out" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true; "$ROOT/scripts/testenv/down.sh" "$BASE" </dev/null >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$BASE/demo-out/serve.out" && break; sleep 0.1; done
SERVE="$(sed -n 's|^listening on http://||p' "$BASE/demo-out/serve.out")"
echo "serving on $SERVE"
docker pull "$SERVE/busybox:v1"
docker image inspect -f '{{.Id}} {{.RepoDigests}}' "$SERVE/busybox:v1"
docker image rm "$SERVE/busybox:v1" >/dev/null
kill -TERM "$SERVE_PID" && wait "$SERVE_PID" && echo "serve stopped (exit 0): done"
