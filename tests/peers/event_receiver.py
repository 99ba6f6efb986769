"""An event endpoint for the tests: every batch is verified with the `standardwebhooks` library
(PyPI, the Standard Webhooks project's own verifier, not Sprayer's HMAC code) against each secret
it was given, before it is counted.

Usage: event_receiver.py PORT LOG_FILE
  POST /control {"secrets": [...], "mode": "ok" | "down"}  sets the secrets and the answer
  POST /events  a batch: 401 when no secret verifies it, 503 while "down", else 200
Each batch is appended to LOG_FILE as a JSON line: {"kind": "batch" | "refused" | "unverified",
"webhook_id", "verified_by": [indexes of the secrets that verify it], "body"}.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

STATE = {"secrets": [], "mode": "ok"}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/control":
            with LOCK:
                STATE.update(json.loads(body))
            return self.answer(200)
        headers = {key: value for key, value in self.headers.items()}
        verified_by = []
        for index, secret in enumerate(STATE["secrets"]):
            try:
                Webhook(secret).verify(body, headers)
                verified_by.append(index)
            except WebhookVerificationError:
                pass
        kind = "batch"
        status = 200
        if not verified_by:
            kind, status = "unverified", 401
        elif STATE["mode"] == "down":
            kind, status = "refused", 503
        entry = {
            "kind": kind,
            "webhook_id": self.headers.get("webhook-id"),
            "verified_by": verified_by,
            "body": json.loads(body) if kind == "batch" else None,
        }
        with LOCK:
            with open(sys.argv[2], "a") as log:
                log.write(json.dumps(entry) + "\n")
        self.answer(status)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
