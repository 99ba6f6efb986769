"""The Python SDK of Sprayer, the self-hosted multichannel push platform.

    from sprayer import Client
    with Client("http://127.0.0.1:8080", key) as sprayer:
        sent = sprayer.send({"to": {"user": "u1"}, "content": {"title": "Hi", "body": "Hello"}})
        print(sprayer.get_message(sent["id"])["summary"])

`AsyncClient` has the same methods, awaited. A refusal raises `SprayerError` with the
server's problem (`status`, `type`, `detail`, `field`). `sprayer.webhooks.verify` checks the
signature of webhooks and event batches.
"""

from ._core import QuotaExhausted, RateLimited, SprayerError
from ._routes import ROUTES
from .client import AsyncClient, Client
from .webhooks import InvalidSignature, verify

__all__ = [
    "ROUTES",
    "AsyncClient",
    "Client",
    "InvalidSignature",
    "QuotaExhausted",
    "RateLimited",
    "SprayerError",
    "verify",
]
__version__ = "0.1.0"
