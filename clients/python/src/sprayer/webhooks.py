"""Checking what Sprayer signs (Standard Webhooks): message webhooks and event batches carry
`webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,<base64>`, space-separated
when a rotated secret still signs too); the signature is HMAC-SHA256 of
`<id>.<timestamp>.<body>` with the secret's bytes (`whsec_<base64>`)."""

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Optional, Union


class InvalidSignature(Exception):
    """The request was not signed with the secret, or too long ago."""


def _key(secret: str) -> bytes:
    encoded = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: Union[bytes, str]) -> str:
    """The `webhook-signature` value Sprayer sends for this body."""
    payload = body.encode() if isinstance(body, str) else body
    signed = f"{webhook_id}.{timestamp}.".encode() + payload
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: Union[bytes, str],
    *,
    tolerance: int = 300,
    now: Optional[int] = None,
) -> Any:
    """Checks a signed request and returns its JSON body; raises `InvalidSignature` when no
    signature matches or the timestamp is more than `tolerance` seconds off."""
    lower = {key.lower(): value for key, value in headers.items()}
    try:
        webhook_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        signatures = lower["webhook-signature"].split()
    except (KeyError, ValueError) as error:
        raise InvalidSignature(f"missing or bad webhook headers: {error}") from None
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("the timestamp is too far from now")
    expected = sign(secret, webhook_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidSignature("no signature matches the secret")
    return json.loads(body)
