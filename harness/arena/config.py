"""How an arena is set up: which runs and targets it shows, its signing secret, token lifetime, image size
class and rate limits. One immutable value, built by the CLI (or a test) and handed to the app factory."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import Literal

from harness.arena.sampling import PAIR_BY, PairBy
from harness.errors import ConfigError
from harness.store.url import parse_location

SECRET_ENV = "HARNESS_ARENA_SECRET"
"""Environment variable holding the signing secret; without it each process draws a random one, so pair
tokens and voter cookies do not survive a restart (the voters just get new ids and pairs)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``per_minute`` requests sustained, bursts of up to ``burst`` at once."""

    per_minute: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_minute > 0 or self.burst < 1:
            raise ConfigError(f"rate limit needs a positive rate and a burst of at least 1, not {self.describe()}")

    def describe(self) -> str:
        return f"{self.per_minute:g}/{self.burst}"

    def scaled(self, factor: float) -> RateLimit:
        return RateLimit(self.per_minute * factor, max(1, round(self.burst * factor)))


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+/?$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+)\s*)?$")


def parse_rate(text: str, option: str = "rate limit") -> RateLimit:
    """``"30"`` (30 per minute, burst 10 = a third of it, at least 1) or ``"30/5"`` (burst 5)."""
    match = _RATE.match(text)
    if not match:
        raise ConfigError(f"{option}: {text!r} is not PER_MINUTE or PER_MINUTE/BURST (e.g. 30 or 30/5)")
    per_minute = float(match.group(1))
    burst = int(match.group(2)) if match.group(2) else max(1, round(per_minute / 3))
    try:
        return RateLimit(per_minute, burst)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def secret_bytes(text: str) -> bytes:
    """The HMAC key derived from a user-given secret (at least 16 characters)."""
    if len(text) < 16:
        raise ConfigError(f"the arena secret (--secret or {SECRET_ENV}) must have at least 16 characters")
    return hashlib.sha256(b"harness-arena-v1\x00" + text.encode()).digest()


RevealMemory = Literal["voter+address", "voter", "off"]
"""Whom an output revealed by a vote is never shown again: the voter cookie and the client address (the
default), the cookie only (voters behind one shared address, at the price that a fresh cookie forgets),
or nobody (load tests only: a voter may then recognise outputs)."""
REVEAL_MEMORIES: tuple[RevealMemory, ...] = ("voter+address", "voter", "off")
MAX_BODY_BYTES = 16 * 1024
"""Largest request body the arena reads (a vote is about 150 bytes); larger ones get 413 before parsing."""
DEFAULT_MAX_SERVINGS = 50
"""Times one output may be served in all (both sides, every voter) before it leaves pairing."""
DEFAULT_POOL_REFRESH_S = 30.0
"""Seconds between reloads of the arena's pool from the store (new runs appear within this)."""


def check_forwarded_allow_ips(values: tuple[str, ...]) -> tuple[str, ...]:
    """Proxy addresses or networks (``10.0.0.1``, ``10.0.0.0/8``) whose ``X-Forwarded-For`` is believed."""
    for value in values:
        try:
            ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"forwarded-allow-ips: {value!r} is not an IP address or network (e.g. 10.0.0.1 "
                              "or 10.0.0.0/8)") from None
    return values


@dataclass(frozen=True, slots=True)
class ArenaConfig:
    """Everything the arena app needs.

    ``run_ids`` empty means every run in the store; ``targets`` are names or shell globs (empty: all).
    ``secret`` is the HMAC key (None: random per process). ``token_ttl_s``: seconds a served pair may be
    voted on. ``image_side``: the longest side, in pixels, every image is resampled to (one size class).
    Vote limits apply per voter cookie and per client IP; pair limits are twice the vote limits, as a
    voter may reload. ``ip_new_voters``: voter cookies issued per client IP (so a fresh cookie cannot reset
    the per-voter limit faster than this). ``min_exposure``: shows per target before active sampling takes
    over. ``seed`` makes pair choice and sides reproducible (tests and simulations only: it makes sides
    predictable). ``forwarded_allow_ips``: proxies whose ``X-Forwarded-For`` names the client (none: the
    connecting address is the client). ``max_body_bytes``: largest request body read (413 beyond).
    ``max_servings``: times one output may be served in all (None: no cap). ``reveal_memory``: see
    :data:`RevealMemory`. ``pool_refresh_s``: seconds between reloads of the pool from the store, so new
    runs appear without a restart (None: read once at start). ``shared_rate_limits``: keep the token
    buckets in the store (table ``arena_ratelimits``) so they hold across every worker and host serving
    this store, instead of in each process's memory. ``pair_by``: pair models (two providers of one model
    never meet; the default) or targets (provider-quality studies). ``leaderboard_refresh_s``: seconds
    between refits of the public leaderboard (at least 1).
    """

    db: Path
    run_ids: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    secret: bytes | None = None
    token_ttl_s: float = 900.0
    image_side: int = 1024
    voter_votes: RateLimit = field(default_factory=lambda: RateLimit(30.0, 10))
    ip_votes: RateLimit = field(default_factory=lambda: RateLimit(240.0, 60))
    allowed_origins: tuple[str, ...] = ()
    min_exposure: int = 10
    seed: int | None = None
    cache_dir: Path | None = None
    ip_new_voters: RateLimit = field(default_factory=lambda: RateLimit(10.0, 10))
    forwarded_allow_ips: tuple[str, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    max_servings: int | None = DEFAULT_MAX_SERVINGS
    reveal_memory: RevealMemory = "voter+address"
    pool_refresh_s: float | None = DEFAULT_POOL_REFRESH_S
    shared_rate_limits: bool = False
    pair_by: PairBy = "model"
    leaderboard_refresh_s: float = 300.0

    def __post_init__(self) -> None:
        check_forwarded_allow_ips(self.forwarded_allow_ips)
        if self.max_body_bytes < 256:
            raise ConfigError(f"max body size must be at least 256 bytes, not {self.max_body_bytes}")
        if self.max_servings is not None and self.max_servings < 1:
            raise ConfigError(f"max servings per output must be at least 1 (or no cap), not {self.max_servings}")
        if self.reveal_memory not in REVEAL_MEMORIES:
            raise ConfigError(f"reveal memory must be one of {', '.join(REVEAL_MEMORIES)}, not {self.reveal_memory!r}")
        if self.pair_by not in PAIR_BY:
            raise ConfigError(f"pair by must be one of {', '.join(PAIR_BY)}, not {self.pair_by!r}")
        if not self.leaderboard_refresh_s >= 1:
            raise ConfigError(f"leaderboard refresh must be at least 1 s, not {self.leaderboard_refresh_s}")
        if self.pool_refresh_s is not None and not self.pool_refresh_s > 0:
            raise ConfigError(f"pool refresh interval must be positive (or off), not {self.pool_refresh_s} s")
        if not self.token_ttl_s > 0:
            raise ConfigError(f"token lifetime must be positive, not {self.token_ttl_s} s")
        if not 64 <= self.image_side <= 4096:
            raise ConfigError(f"image side must be between 64 and 4096 pixels, not {self.image_side}")
        if self.min_exposure < 0:
            raise ConfigError(f"min exposure must be 0 or more, not {self.min_exposure}")
        for origin in self.allowed_origins:
            if not _ORIGIN.match(origin):
                raise ConfigError(f"allowed origin {origin!r} is not scheme://host[:port] (e.g. https://vote.example.org)")

    @property
    def voter_pairs(self) -> RateLimit:
        return self.voter_votes.scaled(2)

    @property
    def ip_pairs(self) -> RateLimit:
        return self.ip_votes.scaled(2)

    @property
    def image_cache(self) -> Path:
        """Where re-encoded images are kept: ``arena-cache/`` beside the store file unless set."""
        return self.cache_dir or parse_location(self.db).home / "arena-cache"
