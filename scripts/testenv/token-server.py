#!/usr/bin/env python3
"""token-server.py PORT DIR: the token service of a registry in start-registry.sh's token mode.

Docker's registry token protocol, as Docker Hub, GHCR and Harbor speak it, so that imgcache's
Bearer path meets a real distribution registry (which checks every token it is given) rather
than a mock:

  GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...][&account=U]
      Basic auth $REG_USER:$REG_PASS (default testuser/testpass): every action asked.
      Anonymous: "pull" on repositories under public/ only; nothing else (the registry then
      answers 401 insufficient_scope). Wrong credentials: 401.

Tokens are JWTs signed RS256 by DIR/token.key with `openssl dgst`; their x5c header carries
DIR/token.crt, the registry's rootcertbundle. Standard library only: no pip, no apt.

Every request is one line of DIR/token.log: method, the decoded scopes, account, the user
authenticated (never the password), and the status. stdout: "listening on PORT", then nothing.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1])
DIR = sys.argv[2]
USER = os.environ.get("REG_USER", "testuser")
PASS = os.environ.get("REG_PASS", "testpass")
SERVICE = os.environ.get("TOKEN_SERVICE", "imgcache-test-registry")
ISSUER = os.environ.get("TOKEN_ISSUER", "imgcache-test-issuer")
KEY = os.path.join(DIR, "token.key")
LOG = os.path.join(DIR, "token.log")
LOCK = threading.Lock()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der_b64() -> str:
    pem = open(os.path.join(DIR, "token.crt")).read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return "".join(body.split())  # x5c is standard base64 of the DER, which the PEM body is


X5C = cert_der_b64()


def sign(claims: dict) -> str:
    header = {"typ": "JWT", "alg": "RS256", "x5c": [X5C]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", KEY],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return signing_input + "." + b64url(sig)


def granted(scope: str, user) -> dict:
    """The access a scope `repository:NAME:a,b` gets; NAME may hold ':' (a registry port)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    asked = [a for a in actions.split(",") if a]
    if user is not None:
        allowed = asked
    elif name.startswith("public/"):
        allowed = [a for a in asked if a == "pull"]
    else:
        allowed = []
    return {"type": kind, "name": name, "actions": allowed}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the access log is token.log, written below
        pass

    def answer(self, status: int, body: dict, line: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        line["status"] = status
        with LOCK, open(LOG, "a") as f:
            f.write(json.dumps(line) + "\n")

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        line = {
            "method": "GET",
            "path": url.path,
            "service": query.get("service", [""])[0],
            "scopes": query.get("scope", []),
            "account": query.get("account", [None])[0],
            "user": None,
            "agent": self.headers.get("User-Agent", ""),
        }
        if url.path != "/token":
            return self.answer(404, {"errors": [{"code": "NOT_FOUND"}]}, line)
        user = None
        auth = self.headers.get("Authorization")
        if auth:
            try:
                kind, value = auth.split(" ", 1)
                name, _, password = base64.b64decode(value).decode().partition(":")
            except Exception:
                return self.answer(400, {"errors": [{"code": "BAD_AUTH"}]}, line)
            if kind != "Basic" or name != USER or password != PASS:
                line["user"] = name if kind == "Basic" else kind
                return self.answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, line)
            user = name
        line["user"] = user
        now = int(time.time())
        access = [granted(s, user) for s in line["scopes"]]
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": line["service"] or SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = sign(claims)
        line["granted"] = access
        self.answer(200, {"token": token, "access_token": token, "expires_in": 300}, line)

    def do_POST(self):
        # The OAuth2 form (identity tokens): not offered, as by registries without it.
        self.answer(404, {"errors": [{"code": "NOT_FOUND"}]}, {"method": "POST", "path": self.path})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
