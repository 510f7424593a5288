#!/usr/bin/env bash
# scripts/demo.sh -- imgcache's main job end to end, offline, on a fresh Debian machine.
#   Starts a loopback registry with sample images and a private dockerd (testenv/up.sh), keeps a
#   tarball as a tool's cache would, proves it is the expected image and intact (fast, then
#   deep), shows a damaged copy being caught, and loads the image into dockerd only when the
#   engine lacks that image ID. Stops everything it started on exit.
#   Env: IMGCACHE_DEMO (state dir, default /tmp/imgcache-demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${IMGCACHE_DEMO:-/tmp/imgcache-demo}"
step() { printf '\n== %s\n' "$*"; }
trap '"$ROOT/scripts/testenv/down.sh" "$BASE" </dev/null >/dev/null 2>&1 || true' EXIT

step "build imgcache"
cargo build --release -q -p imgcache-cli --manifest-path "$ROOT/Cargo.toml"
IMGCACHE="$ROOT/target/release/imgcache"

step "start a loopback registry with sample images and a private dockerd (first run installs packages)"
"$ROOT/scripts/testenv/up.sh" "$BASE" </dev/null >/dev/null
# shellcheck source=/dev/null
. "$BASE/env.sh"
REF="$TEST_REGISTRY/busybox:v1"
CACHE="$BASE/demo-cache"
rm -rf "$CACHE" && mkdir -p "$CACHE"

step "keep $REF as a tarball, as minikube/kind keep their base image"
skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$REF" "docker-archive:$CACHE/busybox_v1.tar:$REF"
EXPECT="sha256:$(skopeo inspect --config --raw --tls-verify=false "docker://$REF" | sha256sum | cut -d' ' -f1)"
echo "the registry's config digest (image ID): $EXPECT"

step "imgcache verify --expect (fast: reads headers and the config only)"
"$IMGCACHE" verify --expect "$EXPECT" "$CACHE/busybox_v1.tar"

step "imgcache verify --deep (hashes every layer against the config's diff_ids)"
"$IMGCACHE" verify --deep "$CACHE/busybox_v1.tar"

step "imgcache inspect"
"$IMGCACHE" inspect "$CACHE/busybox_v1.tar"

step "a truncated copy in the same cache directory is caught (exit 1); verify takes the directory"
head -c 1000000 "$CACHE/busybox_v1.tar" >"$CACHE/busybox_v1-partial.tar"
"$IMGCACHE" verify "$CACHE" && exit 1 || echo "exit code $? (1 = a check said no)"

step "load into dockerd only when it lacks image $EXPECT (twice: the second run has nothing to do)"
docker image rm -f "$REF" >/dev/null 2>&1 || true
for _ in 1 2; do
if docker image inspect "$EXPECT" >/dev/null 2>&1; then
  echo "dockerd already has $EXPECT: nothing to do"
else
  docker load -q -i "$CACHE/busybox_v1.tar"
fi
done
GOT="$(docker image inspect -f '{{.Id}}' "$REF")"
echo "dockerd reports $GOT"
[ "$GOT" = "$EXPECT" ] && echo "same image ID: done"
