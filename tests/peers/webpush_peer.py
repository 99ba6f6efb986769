"""A web push service for the tests: hands out subscriptions, checks the VAPID token of each push
(ES256 signature with the key in `k`, audience, expiry, subject) and decrypts the aes128gcm body
(RFC 8291) with the subscription's private key, as a browser would.

Names choose the answer: "gone..." 410, "missing..." 404, "busy..." 429 once, else 201.
GET /subscribe/NAME returns a PushSubscription; GET /received lists what was decrypted.
Usage: webpush_peer.py PORT
"""
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PORT = int(sys.argv[1])
ORIGIN = f"http://127.0.0.1:{PORT}"
LOCK = threading.Lock()
SUBSCRIPTIONS = {}
RECEIVED = []
COUNTS = {}


def b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_problem(authorization):
    """None when the VAPID token is valid, else what is wrong with it."""
    if not authorization or not authorization.startswith("vapid "):
        return "no vapid authorization", None
    fields = dict(part.strip().split("=", 1) for part in authorization[6:].split(","))
    token, key = fields.get("t", ""), fields.get("k", "")
    try:
        header, claims, signature = token.split(".")
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64decode(key))
        raw = b64decode(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public_key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(b64decode(claims))
    except (ValueError, InvalidSignature) as error:
        return f"bad vapid token: {error!r}", None
    now = time.time()
    if claims.get("aud") not in (ORIGIN, "http://127.0.0.1"):
        return f"bad audience {claims.get('aud')}", None
    if not now < claims.get("exp", 0) <= now + 24 * 3600 + 60:
        return "bad expiry", None
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        return "bad subject", None
    return None, {"sub": claims["sub"], "k": key}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/subscribe/"):
            name = self.path.rsplit("/", 1)[-1]
            key = ec.generate_private_key(ec.SECP256R1())
            auth = os.urandom(16)
            public = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            with LOCK:
                SUBSCRIPTIONS[name] = (key, auth)
            return self.reply(200, {"endpoint": f"{ORIGIN}/push/{name}",
                                    "keys": {"p256dh": b64encode(public), "auth": b64encode(auth)}})
        if self.path == "/received":
            with LOCK:
                return self.reply(200, list(RECEIVED))
        return self.reply(404, {"error": "no such path"})

    def do_POST(self):
        name = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with LOCK:
            COUNTS[name] = COUNTS.get(name, 0) + 1
            count = COUNTS[name]
            subscription = SUBSCRIPTIONS.get(name)
        problem, vapid = vapid_problem(self.headers.get("authorization"))
        if problem:
            return self.reply(403, {"error": problem})
        if self.headers.get("content-encoding") != "aes128gcm" or subscription is None:
            return self.reply(400, {"error": "not an aes128gcm push to a known subscription"})
        if name.startswith("gone"):
            return self.reply(410, {"error": "subscription expired"})
        if name.startswith("missing"):
            return self.reply(404, {"error": "no such subscription"})
        if name.startswith("busy") and count == 1:
            return self.reply(429, {"error": "slow down"}, {"retry-after": "1"})
        key, auth = subscription
        try:
            plaintext = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
        except Exception as error:  # noqa: BLE001 - any decryption failure is the sender's fault
            return self.reply(400, {"error": f"cannot decrypt: {error!r}"})
        with LOCK:
            RECEIVED.append({"name": name, "payload": json.loads(plaintext), "ttl": self.headers.get("ttl"),
                             "urgency": self.headers.get("urgency"), "topic": self.headers.get("topic"),
                             "vapid": vapid, "attempt": count})
        return self.reply(201, None, {"location": f"{ORIGIN}/messages/{name}/{count}"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print("ready", flush=True)
    server.serve_forever()
