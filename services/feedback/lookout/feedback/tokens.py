"""Per-call feedback tokens: an app mints one for a call (API key, scope feedback) and hands
it to the browser, which can then vote on that call only, until it expires, without ever
seeing a key.

A token reads `v1.<payload>.<sig>`: payload is url-safe base64 of
"event_id|app_id|expires|author", sig is HMAC-SHA256 over the payload with the shared
secret (compared in constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from lookout.core.auth import same_secret


class BadToken(Exception):
    """Forged, malformed, expired or for another call: HTTP 401."""


@dataclass(frozen=True)
class TokenClaims:
    event_id: uuid.UUID
    app_id: str
    expires: int
    # The end user the app minted the token for: their vote replaces their earlier one.
    author: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def mint(
    secret: str, event_id: uuid.UUID, app_id: str, author: str, ttl_s: int, now: float | None = None
) -> tuple[str, int]:
    """(token, expiry unix seconds)."""
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(f"{event_id}|{app_id}|{expires}|{author}".encode())
    return f"v1.{payload}.{_sign(secret, payload)}", expires


def verify(secret: str, token: str, now: float | None = None) -> TokenClaims:
    version, _, rest = token.partition(".")
    payload, _, sig = rest.partition(".")
    if version != "v1" or not payload or not sig:
        raise BadToken("malformed feedback token")
    if not same_secret(sig, _sign(secret, payload)):
        raise BadToken("feedback token signature does not verify")
    try:
        event_id, app_id, expires, author = _unb64(payload).decode().split("|", 3)
        claims = TokenClaims(uuid.UUID(event_id), app_id, int(expires), author)
    except ValueError:
        raise BadToken("malformed feedback token") from None
    if claims.expires <= (time.time() if now is None else now):
        raise BadToken("feedback token expired")
    return claims
