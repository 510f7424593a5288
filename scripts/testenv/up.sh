#!/usr/bin/env bash
# up.sh [BASE]  -- start the loopback test environment (idempotent)
#   BASE default ${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}. Installs missing Debian packages, then:
#     registries   127.0.0.1:5000 plain            data BASE/registry-data
#                  127.0.0.1:5001 htpasswd         data BASE/registry-auth-data ($REG_USER/$REG_PASS,
#                                                  default testuser/testpass)
#                  127.0.0.1:5443 TLS, private CA  BASE/registry-tls-data/_ctl/tls/ca.crt
#     test images  built offline (make-test-images.sh, KICBASE=0) into BASE/images/oci, pushed to
#                  all three; digests in BASE/images-<registry>.tsv/.json
#     dockerd      20.10, vfs, own containerd, socket BASE/dockerd/docker.sock (stays running)
#     fixtures     real tarballs from skopeo/podman/docker in BASE/fixtures + fixtures.tsv
#     newer        dockerd 26/28, containerd 1.7/2.1 (newer-engines.sh up; BASE/newer/env.sh), and
#                  their docker save output (make-newer-fixtures.sh: BASE/newer-fixtures);
#                  NEWER_ENGINES=0 skips both
#     signers      cosign 2.5 (trixie), cosign 3.1 and notation 1.3 (sid) for the signing tests
#                  (signers.sh: BASE/signers/env.sh, sid ones may be SKIPs); SIGNERS=0 skips them
#     BASE/env.sh  export lines (TEST_REGISTRY*, TEST_OCI_LAYOUT, TEST_FIXTURES, DOCKER_HOST, PIDs,
#                  NEWER_* of newer-engines.sh, TEST_COSIGN*/TEST_NOTATION*/TEST_SIGNERS_SKIP of signers.sh)
#   Stop with down.sh [BASE]. Progress goes to stderr; stdout gets only the env.sh path.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:-${IMGCACHE_TESTENV:-/tmp/imgcache-testenv}}"
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
export IMGCACHE_TESTENV="$BASE"
REG_USER="${REG_USER:-testuser}"
REG_PASS="${REG_PASS:-testpass}"
export REG_USER REG_PASS
t0=$SECONDS
log() { echo "[up +$((SECONDS - t0))s] $*" >&2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
log "BASE=$BASE"
need_cmds docker-registry:docker-registry skopeo:skopeo podman:podman dockerd:docker.io \
  containerd:containerd runc:runc umoci:umoci htpasswd:apache2-utils jq:jq openssl:openssl \
  curl:curl gzip:gzip python3:python3
need_pkgs busybox-static time
log "packages ok"

R0="$("$HERE/start-registry.sh" 5000 "$BASE/registry-data" plain)"
R1="$("$HERE/start-registry.sh" 5001 "$BASE/registry-auth-data" htpasswd)"
R2="$("$HERE/start-registry.sh" 5443 "$BASE/registry-tls-data" tls)"
TLS_DIR="$BASE/registry-tls-data/_ctl/tls"
log "registries up"

IMG="$BASE/images"
KICBASE=0 "$HERE/make-test-images.sh" 127.0.0.1:5000 "$IMG" >/dev/null
KICBASE=0 DEST_CREDS="$REG_USER:$REG_PASS" "$HERE/make-test-images.sh" 127.0.0.1:5001 "$IMG" >/dev/null
KICBASE=0 DEST_CERT_DIR="$TLS_DIR" "$HERE/make-test-images.sh" 127.0.0.1:5443 "$IMG" >/dev/null
for f in "$IMG"/images-*.tsv "$IMG"/images-*.json; do ln -sfn "images/${f##*/}" "$BASE/${f##*/}"; done
log "test images built and pushed"

D="$("$HERE/start-dockerd.sh" "$BASE/dockerd" vfs)"
DC="$(cat "$BASE/dockerd/containerd/containerd.pid")"
log "dockerd up"

TEST_REGISTRY=127.0.0.1:5000 "$HERE/make-fixtures.sh" "$BASE"
log "fixtures ready"

# dockerd 26/28 and containerd 1.7/2.1 from Debian's newer suites (sid ones may be SKIPs), and
# their own `docker save` output; NEWER_ENGINES=0 (the demo) leaves them out
if [ "${NEWER_ENGINES:-1}" = 1 ]; then
  "$HERE/newer-engines.sh" up "$BASE" >/dev/null
  log "newer engines up"
  "$HERE/make-newer-fixtures.sh" "$BASE"
  log "newer fixtures ready"
fi

# the signing tools (nothing runs: only unpacked and checked); SIGNERS=0 leaves them out
if [ "${SIGNERS:-1}" = 1 ]; then
  "$HERE/signers.sh" "$BASE" >/dev/null
  log "signers ready"
fi

{
  echo "# written by scripts/testenv/up.sh; source it: . $BASE/env.sh"
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q IMGCACHE_TESTENV "$BASE"
  q TEST_REGISTRY 127.0.0.1:5000
  q TEST_REGISTRY_PID "$R0"
  q TEST_REGISTRY_AUTH 127.0.0.1:5001
  q TEST_REGISTRY_USER "$REG_USER"
  q TEST_REGISTRY_PASS "$REG_PASS"
  q TEST_REGISTRY_AUTH_PID "$R1"
  q TEST_REGISTRY_TLS 127.0.0.1:5443
  q TEST_REGISTRY_TLS_CA "$TLS_DIR/ca.crt"
  q TEST_REGISTRY_TLS_CERT_DIR "$TLS_DIR"
  q TEST_REGISTRY_TLS_PID "$R2"
  q TEST_OCI_LAYOUT "$IMG/oci"
  q TEST_IMAGES_TSV "$IMG/images-127.0.0.1_5000.tsv"
  q TEST_IMAGES_JSON "$IMG/images-127.0.0.1_5000.json"
  q TEST_FIXTURES "$BASE/fixtures"
  q TEST_FIXTURES_TSV "$BASE/fixtures/fixtures.tsv"
  q DOCKER_HOST "unix://$BASE/dockerd/docker.sock"
  q TEST_DOCKER_CLI "$(if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi)"
  q TEST_DOCKERD_PID "$D"
  q TEST_DOCKERD_CONTAINERD_PID "$DC"
  q TEST_PODMAN_BASE "$BASE/podman"
  q TEST_PODMAN "$HERE/podman-private.sh"
  if [ "${NEWER_ENGINES:-1}" = 1 ]; then
    grep '^export ' "$BASE/newer/env.sh" # NEWER_*: the newer engines, or NEWER_SKIP_* reasons
  fi
  if [ "${SIGNERS:-1}" = 1 ]; then
    grep '^export ' "$BASE/signers/env.sh" # TEST_COSIGN2/3, TEST_NOTATION, or TEST_SIGNERS_SKIP
  fi
} >"$BASE/env.sh.tmp"
mv "$BASE/env.sh.tmp" "$BASE/env.sh"
log "done; . $BASE/env.sh"
echo "$BASE/env.sh"
