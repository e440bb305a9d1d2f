"""A small OpenID issuer for the JWT authorizer tests, on PyJWT and cryptography (PyPI).

Serves OIDC discovery and a JWKS on 127.0.0.1:<port>, counts the requests for each, and mints
tokens with PyJWT on request. Control endpoints (POST):
  /mint    {"kid": ..., "claims": {...}, "alg": "RS256"}  -> the token (text)
  /rotate  {"kid": ...}   publish a new RSA key under this kid (the old ones stay)
  /down    {"down": true|false}   answer 503 to discovery and JWKS while down
  /counts  -> {"discovery": n, "jwks": n}
Keys minted under a kid that is not published (e.g. "unpublished") are signed by a key the
JWKS does not hold. Attack tokens are made here too: /forge {"kind": "none"|"hs256-pubkey"|
"tampered", "kid": ...}.
"""
import base64, hashlib, hmac, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

port = int(sys.argv[1])
# With a certificate and key (argv 2 and 3): https, as https://localhost:<port>.
tls = len(sys.argv) > 3
issuer = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
lock = threading.Lock()
keys = {}        # kid -> private key, published
hidden = {}      # kid -> private key, not published
counts = {"discovery": 0, "jwks": 0}
state = {"down": False}


def new_rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


keys["k1"] = new_rsa()
keys["ec1"] = ec.generate_private_key(ec.SECP256R1())
hidden["unpublished"] = new_rsa()


def jwk(kid, key):
    pub = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
        d["alg"] = "RS256"
    else:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
        d["alg"] = "ES256"
    d["kid"] = kid
    d["use"] = "sig"
    return d


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(kid, claims, alg):
    key = keys.get(kid) or hidden.get(kid)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def forge(kind, kid, claims):
    if kind == "none":
        header = {"alg": "none", "typ": "JWT", "kid": kid}
        return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "."
    if kind == "hs256-pubkey":
        # The classic confusion: HMAC with the issuer's public key (PEM) as the secret.
        pem = keys[kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        msg = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        return msg + "." + b64(hmac.new(pem, msg.encode(), hashlib.sha256).digest())
    if kind == "tampered":
        good = mint(kid, claims, "RS256")
        h, _, s = good.split(".")
        changed = dict(claims, sub="someone-else")
        return h + "." + b64(json.dumps(changed).encode()) + "." + s
    raise ValueError(kind)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json", extra=None):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            if self.path == "/.well-known/openid-configuration":
                counts["discovery"] += 1
                if state["down"]:
                    return self.reply(503, "{}")
                return self.reply(200, json.dumps({"issuer": issuer, "jwks_uri": issuer + "/keys"}))
            if self.path == "/keys":
                counts["jwks"] += 1
                if state["down"]:
                    return self.reply(503, "{}")
                doc = {"keys": [jwk(k, v) for k, v in keys.items()]}
                return self.reply(200, json.dumps(doc), extra={"cache-control": "max-age=3600"})
            if self.path == "/counts":
                return self.reply(200, json.dumps(counts))
        self.reply(404, "{}")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with lock:
            if self.path == "/mint":
                return self.reply(200, mint(body["kid"], body["claims"], body.get("alg", "RS256")), "text/plain")
            if self.path == "/forge":
                return self.reply(200, forge(body["kind"], body["kid"], body["claims"]), "text/plain")
            if self.path == "/rotate":
                keys[body["kid"]] = new_rsa()
                return self.reply(200, "{}")
            if self.path == "/down":
                state["down"] = bool(body["down"])
                return self.reply(200, "{}")
        self.reply(404, "{}")


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
if tls:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
