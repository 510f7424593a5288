#!/usr/bin/env bash
# start-registry.sh PORT DATADIR [MODE]
#   Starts Debian's distribution v2 registry ("docker-registry" 2.8) on 127.0.0.1:PORT with
#   filesystem storage under DATADIR. Idempotent: if the registry started by this script for the
#   same DATADIR is running and answering, it just prints its PID.
#   MODE: plain (default) | htpasswd | tls | htpasswd+tls | selfsigned | htpasswd+selfsigned |
#         mtls | htpasswd+mtls | proxy
#     htpasswd: basic auth, user/pass from $REG_USER/$REG_PASS (default testuser/testpass)
#     tls:      a private CA (DATADIR/_ctl/tls/ca.crt, CA:TRUE) signs the server certificate
#               (CN=localhost, SAN IP:127.0.0.1, DNS:localhost, CA:FALSE, serverAuth), so strict
#               verifiers (rustls/webpki) accept it. DATADIR/_ctl/tls holds only ca.crt as *.crt,
#               so it works as skopeo --cert-dir / podman --cert-dir; curl --cacert .../ca.crt.
#     selfsigned: the certificate Docker's docs make ("openssl req -newkey rsa:4096 -nodes
#               -sha256 -keyout domain.key -x509 -days 365 -out domain.crt"): one self-signed
#               certificate that is its own CA (basicConstraints CA:TRUE) and the server's,
#               DATADIR/_ctl/tls/domain.crt + domain.key. Also other.crt + other.key: the same
#               kind of certificate for another host only (SAN DNS:other.example), never served.
#     mtls:     tls, and the registry requires a client certificate signed by its client CA
#               (http.tls.clientcas: DATADIR/_ctl/tls/client-ca.pem). client.cert + client.key
#               are signed by it (clientAuth); wrong-client.cert + wrong-client.key by an
#               unrelated CA. Docker's certs.d names: ca.crt, client.cert, client.key.
#     token:    plain http, Docker's token auth (what Docker Hub, GHCR and Harbor speak): the
#               registry sends clients to $TOKEN_REALM (required, e.g. http://127.0.0.1:PORT/token)
#               and checks the tokens' signature against DATADIR/_ctl/token/token.crt, which this
#               script makes with its key (token.key). Run token-server.py PORT DATADIR/_ctl/token
#               as that realm; it may start after the registry.
#     proxy:    plain http, a pull-through cache (distribution's proxy mode) of $REMOTE_URL
#               (required, e.g. http://127.0.0.1:5000), with $REMOTE_USER/$REMOTE_PASS as its
#               username/password when set (distribution 2.8 uses them for a token-auth remote
#               only: an htpasswd remote, whose Basic realm is no URL, answers it 401). The
#               remote must answer when it starts.
#   $REG_TLS_SAN: the subjectAltName of the server certificate of the tls, selfsigned and mtls
#               modes (default IP:127.0.0.1,DNS:localhost), e.g. to add a name only a test proxy
#               resolves.
#   Control files (config.yml, registry.pid, registry.log, htpasswd, tls/) live in DATADIR/_ctl.
#   stdout: only the PID. Progress goes to stderr.
#   Stop: stop-pidfile.sh DATADIR/_ctl/registry.pid
#   Note: registry 2.8 answers a manifest GET without Accept with schema1 (signed, other digest)
#   and hides OCI manifests/indexes unless their media type is in Accept.
set -euo pipefail
USAGE="usage: start-registry.sh PORT DATADIR [[htpasswd+](plain|tls|selfsigned|mtls)|htpasswd|token|proxy]"
PORT="${1:?$USAGE}"
DATADIR="${2:?$USAGE}"
MODE="${3:-plain}"
REG_USER="${REG_USER:-testuser}"
REG_PASS="${REG_PASS:-testpass}"
log() { echo "[start-registry:$PORT] $*" >&2; }

case "$MODE" in
  plain | htpasswd | tls | htpasswd+tls | selfsigned | htpasswd+selfsigned | mtls | htpasswd+mtls | token | proxy) ;;
  *) log "bad MODE $MODE"; exit 2 ;;
esac
SAN="${REG_TLS_SAN:-IP:127.0.0.1,DNS:localhost}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
deps=(docker-registry:docker-registry curl:curl)
[[ "$MODE" == *htpasswd* ]] && deps+=(htpasswd:apache2-utils)
[[ "$MODE" == *tls* || "$MODE" == *selfsigned* || "$MODE" == token ]] && deps+=(openssl:openssl)
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
if [[ "$MODE" == *mtls* ]]; then curl_extra+=(--cert "$CTL/tls/client.cert" --key "$CTL/tls/client.key"); fi
if [[ "$MODE" == *selfsigned* ]]; then
  scheme=https
  # curl (OpenSSL) trusts a self-signed server certificate given as --cacert; a certificate
  # made for other names than 127.0.0.1 can only be probed without verification.
  case ",$SAN," in *,IP:127.0.0.1,*) curl_extra+=(--cacert "$CTL/tls/domain.crt") ;; *) curl_extra+=(-k) ;; esac
fi
if [[ "$MODE" == *htpasswd* ]]; then curl_extra+=(-u "$REG_USER:$REG_PASS"); fi
URL="$scheme://127.0.0.1:$PORT/v2/"

# A token registry answers /v2/ 401 (with its Bearer challenge) to anyone without a token.
want_code=200
if [ "$MODE" = token ]; then want_code=401; fi
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${curl_extra[@]}" "$URL" 2>/dev/null)" = "$want_code" ]; }

# Idempotency: already running for this DATADIR?
if [ -s "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  if proc_alive "$pid" "$CONF"; then
    for _ in $(seq 1 50); do
      if pid_listens "$pid" "$PORT" && ready; then log "already running (pid $pid) at $URL"; echo "$pid"; exit 0; fi
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
      "subjectAltName=$SAN" "subjectKeyIdentifier=hash" \
      "authorityKeyIdentifier=keyid" >"$T/server.ext"
    openssl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca-key.pem" -CAcreateserial \
      -days 3650 -sha256 -extfile "$T/server.ext" -out "$T/server.pem" 2>/dev/null
    rm -f "$T/server.csr" "$T/server.ext" "$T/ca.srl"
    openssl verify -CAfile "$T/ca.crt" "$T/server.pem" >/dev/null
  fi
  tls_block="  tls:
    certificate: $T/server.pem
    key: $T/server-key.pem"
  if [[ "$MODE" == *mtls* ]]; then
    if [ ! -s "$T/client-ca.pem" ] || [ ! -s "$T/client.cert" ] || [ ! -s "$T/wrong-client.cert" ]; then
      log "creating the client CA and client certificates in $T"
      # client_cert NAME CA: NAME.cert + NAME.key, signed by CA (CA.pem + CA-key.pem), clientAuth.
      client_cert() {
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=imgcache test $1" \
          -keyout "$T/$1.key" -out "$T/$1.csr" 2>/dev/null
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
          "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" \
          >"$T/$1.ext"
        openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2-key.pem" -CAcreateserial \
          -days 3650 -sha256 -extfile "$T/$1.ext" -out "$T/$1.cert" 2>/dev/null
        rm -f "$T/$1.csr" "$T/$1.ext" "$T/$2.srl"
        openssl verify -CAfile "$T/$2.pem" -purpose sslclient "$T/$1.cert" >/dev/null
      }
      for ca in client-ca wrong-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imgcache test $ca" \
          -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
          -keyout "$T/$ca-key.pem" -out "$T/$ca.pem" 2>/dev/null
      done
      client_cert client client-ca
      client_cert wrong-client wrong-ca
    fi
    tls_block="$tls_block
    clientcas:
      - $T/client-ca.pem"
  fi
fi

if [[ "$MODE" == *selfsigned* ]]; then
  T="$CTL/tls"
  mkdir -p "$T"
  if [ ! -s "$T/domain.crt" ] || [ ! -s "$T/domain.key" ] || [ ! -s "$T/other.crt" ]; then
    log "creating self-signed certificates in $T"
    rm -f "$T"/*
    # self_signed NAME SAN: NAME.crt + NAME.key as Docker's docs make them (openssl.cnf's v3_ca
    # extensions: basicConstraints CA:TRUE), checked below.
    self_signed() {
      openssl req -newkey rsa:4096 -nodes -sha256 -keyout "$T/$1.key" -x509 -days 365 \
        -subj "/CN=${3:-localhost}" -addext "subjectAltName=$2" -out "$T/$1.crt" 2>/dev/null
      openssl x509 -in "$T/$1.crt" -noout -ext basicConstraints | grep -q 'CA:TRUE' ||
        { log "openssl made $1.crt without basicConstraints CA:TRUE (openssl.cnf v3_ca?)"; exit 1; }
    }
    self_signed domain "$SAN"
    self_signed other "DNS:other.example" other.example
  fi
  tls_block="  tls:
    certificate: $T/domain.crt
    key: $T/domain.key"
fi

if [ "$MODE" = token ]; then
  : "${TOKEN_REALM:?token mode needs TOKEN_REALM (the token server URL, e.g. http://127.0.0.1:5002/token)}"
  T="$CTL/token"
  mkdir -p "$T"
  if [ ! -s "$T/token.key" ] || [ ! -s "$T/token.crt" ]; then
    log "creating the token signing key and certificate in $T"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imgcache test token issuer" \
      -keyout "$T/token.key" -out "$T/token.crt" 2>/dev/null
  fi
  auth_block="auth:
  token:
    realm: $TOKEN_REALM
    service: imgcache-test-registry
    issuer: imgcache-test-issuer
    rootcertbundle: $T/token.crt"
fi

proxy_block=""
if [ "$MODE" = proxy ]; then
  : "${REMOTE_URL:?proxy mode needs REMOTE_URL (the registry to cache, e.g. http://127.0.0.1:5000)}"
  proxy_block="proxy:
  remoteurl: $REMOTE_URL"
  if [ -n "${REMOTE_USER:-}" ]; then proxy_block="$proxy_block
  username: $REMOTE_USER
  password: ${REMOTE_PASS:-}"; fi
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
# Appended, so that the other modes' config.yml stays as it was.
if [ -n "$proxy_block" ]; then printf '%s\n' "$proxy_block" >>"$CONF"; fi

log "starting docker-registry ($MODE) on $URL, data $DATADIR"
setsid nohup docker-registry serve "$CONF" >>"$CTL/registry.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"
for _ in $(seq 1 150); do
  # Ready only when the answer comes from this registry: a port taken between the check above
  # and the bind answers too (regression: a test's stopped registry "still answered").
  if pid_listens "$pid" "$PORT" && ready; then log "ready (pid $pid); log $CTL/registry.log"; echo "$pid"; exit 0; fi
  pid_running "$pid" || { log "registry exited; log:"; tail -20 "$CTL/registry.log" >&2; rm -f "$PIDFILE"; exit 1; }
  sleep 0.1
done
log "timeout waiting for $URL"; tail -20 "$CTL/registry.log" >&2
"$HERE/stop-pidfile.sh" "$PIDFILE" 5 "$CONF" || true
exit 1
