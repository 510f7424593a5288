#!/usr/bin/env bash
# start-registry.sh PORT DATADIR [MODE]
#   Starts Debian's distribution v2 registry ("docker-registry" 2.8) on 127.0.0.1:PORT with
#   filesystem storage under DATADIR. Idempotent: if the registry started by this script for the
#   same DATADIR is running and answering, it just prints its PID.
#   MODE: plain (default) | htpasswd | tls | htpasswd+tls
#     htpasswd: basic auth, user/pass from $REG_USER/$REG_PASS (default testuser/testpass)
#     tls:      a private CA (DATADIR/_ctl/tls/ca.crt, CA:TRUE) signs the server certificate
#               (CN=localhost, SAN IP:127.0.0.1, DNS:localhost, CA:FALSE, serverAuth), so strict
#               verifiers (rustls/webpki) accept it. DATADIR/_ctl/tls holds only ca.crt as *.crt,
#               so it works as skopeo --cert-dir / podman --cert-dir; curl --cacert .../ca.crt.
#   Control files (config.yml, registry.pid, registry.log, htpasswd, tls/) live in DATADIR/_ctl.
#   stdout: only the PID. Progress goes to stderr.
#   Stop: stop-pidfile.sh DATADIR/_ctl/registry.pid
#   Note: registry 2.8 answers a manifest GET without Accept with schema1 (signed, other digest)
#   and hides OCI manifests/indexes unless their media type is in Accept.
set -euo pipefail
PORT="${1:?usage: start-registry.sh PORT DATADIR [plain|htpasswd|tls|htpasswd+tls]}"
DATADIR="${2:?usage: start-registry.sh PORT DATADIR [plain|htpasswd|tls|htpasswd+tls]}"
MODE="${3:-plain}"
REG_USER="${REG_USER:-testuser}"
REG_PASS="${REG_PASS:-testpass}"
log() { echo "[start-registry:$PORT] $*" >&2; }

case "$MODE" in plain | htpasswd | tls | htpasswd+tls) ;; *) log "bad MODE $MODE"; exit 2 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
deps=(docker-registry:docker-registry curl:curl)
[[ "$MODE" == *htpasswd* ]] && deps+=(htpasswd:apache2-utils)
[[ "$MODE" == *tls* ]] && deps+=(openssl:openssl)
need_cmds "${deps[@]}"

mkdir -p "$DATADIR"
DATADIR="$(cd "$DATADIR" && pwd)"
CTL="$DATADIR/_ctl"
mkdir -p "$CTL"
PIDFILE="$CTL/registry.pid"
CONF="$CTL/config.yml"

scheme=http
curl_extra=()
if [[ "$MODE" == *tls* ]]; then scheme=https; curl_extra+=(--cacert "$CTL/tls/ca.crt"); fi
if [[ "$MODE" == *htpasswd* ]]; then curl_extra+=(-u "$REG_USER:$REG_PASS"); fi
URL="$scheme://127.0.0.1:$PORT/v2/"

ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${curl_extra[@]}" "$URL" 2>/dev/null)" = 200 ]; }

# Idempotency: already running for this DATADIR?
if [ -s "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  if proc_alive "$pid" "$CONF"; then
    for _ in $(seq 1 50); do
      if ready; then log "already running (pid $pid) at $URL"; echo "$pid"; exit 0; fi
      sleep 0.2
    done
    log "pid $pid alive but $URL does not answer 200 (other port/mode?); stop it first"; exit 1
  fi
  rm -f "$PIDFILE"
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  log "127.0.0.1:$PORT is already in use by another process"; exit 1
fi

auth_block=""
if [[ "$MODE" == *htpasswd* ]]; then
  htpasswd -Bbc "$CTL/htpasswd" "$REG_USER" "$REG_PASS" 2>/dev/null
  auth_block="auth:
  htpasswd:
    realm: test-registry
    path: $CTL/htpasswd"
fi

tls_block=""
if [[ "$MODE" == *tls* ]]; then
  T="$CTL/tls"
  mkdir -p "$T"
  if [ ! -s "$T/ca.crt" ] || [ ! -s "$T/server.pem" ] || [ ! -s "$T/server-key.pem" ]; then
    log "creating CA and server certificate in $T"
    rm -f "$T"/*
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imgcache test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$T/ca-key.pem" -out "$T/ca.crt" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$T/server-key.pem" -out "$T/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost" "subjectKeyIdentifier=hash" \
      "authorityKeyIdentifier=keyid" >"$T/server.ext"
    openssl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca-key.pem" -CAcreateserial \
      -days 3650 -sha256 -extfile "$T/server.ext" -out "$T/server.pem" 2>/dev/null
    rm -f "$T/server.csr" "$T/server.ext" "$T/ca.srl"
    openssl verify -CAfile "$T/ca.crt" "$T/server.pem" >/dev/null
  fi
  tls_block="  tls:
    certificate: $T/server.pem
    key: $T/server-key.pem"
fi

cat >"$CONF" <<YAML
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $DATADIR
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$PORT
  secret: test-secret-$PORT
  headers:
    X-Content-Type-Options: [nosniff]
$tls_block
$auth_block
YAML

log "starting docker-registry ($MODE) on $URL, data $DATADIR"
setsid nohup docker-registry serve "$CONF" >>"$CTL/registry.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"
for _ in $(seq 1 150); do
  if ready; then log "ready (pid $pid); log $CTL/registry.log"; echo "$pid"; exit 0; fi
  pid_running "$pid" || { log "registry exited; log:"; tail -20 "$CTL/registry.log" >&2; rm -f "$PIDFILE"; exit 1; }
  sleep 0.1
done
log "timeout waiting for $URL"; tail -20 "$CTL/registry.log" >&2
"$HERE/stop-pidfile.sh" "$PIDFILE" 5 "$CONF" || true
exit 1
