"""Signed pair tokens and voter ids: what lets the server trust a vote without trusting the client.

A pair token is ``<pair_id>.<expires_ms>.<mac>``: the served pair's random id (32 hex characters), its
expiry in Unix milliseconds, and an HMAC-SHA256 (base64url) over both and the voter id it was served to. A
token is therefore unforgeable without the secret, bound to one voter cookie, and dated; single use is
enforced by the store (a pair is voted once). A voter cookie is ``<voter_id>.<mac>``, so only ids this
server issued are accepted and per-voter rate limits cannot be dodged by inventing ids (dropping the
cookie still works, which is why there is a per-IP limit too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from harness.errors import HarnessError

_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9]{1,15})\.([A-Za-z0-9_-]{43})$")
_COOKIE = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$")


class TokenError(HarnessError):
    """A pair token that cannot be accepted; ``expired`` tells a stale token from a forged one."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class PairClaims:
    """What a valid token vouches for: the served pair and its expiry (Unix seconds)."""

    pair_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_pair_id() -> str:
    return secrets.token_hex(16)


def new_image_id() -> str:
    """A public image id: 32 url-safe characters (192 random bits)."""
    return secrets.token_urlsafe(24)


class Signer:
    """Issues and checks tokens and voter cookies with one HMAC key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("signing key must have at least 16 bytes")
        self._key = key

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest()

    def pair_token(self, pair_id: str, voter: str, expires_at: float) -> str:
        expires_ms = str(int(expires_at * 1000))
        return f"{pair_id}.{expires_ms}.{_b64(self._mac('pair', pair_id, expires_ms, voter))}"

    def verify_pair_token(self, token: str, voter: str, now: float) -> PairClaims:
        """The token's claims; raises :class:`TokenError` when it is malformed, forged, meant for another
        voter, or expired (checked in that order, so an expired forgery still reads as forged)."""
        match = _TOKEN.match(token)
        if match is None:
            raise TokenError("malformed pair token")
        pair_id, expires_ms, mac = match.groups()
        if not hmac.compare_digest(mac, _b64(self._mac("pair", pair_id, expires_ms, voter))):
            raise TokenError("invalid pair token: not issued by this arena to this voter")
        expires_at = int(expires_ms) / 1000
        if now > expires_at:
            raise TokenError("pair token expired: load a new pair", expired=True)
        return PairClaims(pair_id, expires_at)

    def new_voter_cookie(self) -> tuple[str, str]:
        """A fresh ``(voter_id, cookie_value)``."""
        voter = secrets.token_urlsafe(16)
        return voter, f"{voter}.{_b64(self._mac('voter', voter)[:16])}"

    def voter_from_cookie(self, value: str | None) -> str | None:
        """The voter id in a cookie this arena issued, or None."""
        match = _COOKIE.match(value or "")
        if match is None:
            return None
        voter, mac = match.groups()
        return voter if hmac.compare_digest(mac, _b64(self._mac("voter", voter)[:16])) else None
