"""Token-bucket rate limits per key (a voter id or a client IP): in the memory of one server process
(:class:`TokenBuckets`), or in the store (:mod:`harness.store.ratelimits`) so that they hold across every
worker and host serving one store. :class:`ArenaLimits` is the arena's set of buckets over either.

Several workers with in-memory buckets would each grant the full limit (N workers, N times the votes), so
the CLI keeps the buckets in the store whenever more than one process may serve (``--workers`` above 1, or
a PostgreSQL store that other hosts may serve too).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness.arena.config import ArenaConfig, RateLimit
from harness.store import Store
from harness.store import ratelimits as bucket_store


class TokenBuckets:
    """One bucket per key, each holding up to ``limit.burst`` tokens refilled at ``limit.per_minute``.

    ``max_keys`` bounds memory: beyond it, buckets that have refilled completely (idle clients, which
    lose nothing by being forgotten) are dropped, then the least recently used ones.
    """

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self._rate = limit.per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds until a token is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self._max_keys:
                    self._evict(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate

    def _evict(self, now: float) -> None:
        full = [k for k, (tokens, last) in self._buckets.items()
                if tokens + (now - last) * self._rate >= self.limit.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


PRUNE_EVERY_S = 60.0
"""Seconds between deletions of refilled buckets from the store (each worker prunes; it is idempotent)."""


class ArenaLimits:
    """The arena's buckets: pairs and votes per voter cookie and per client address, and new voter cookies
    per address (pair limits are twice the vote limits; see :class:`~harness.arena.config.ArenaConfig`).
    Each method spends one token from every bucket the request counts against and answers the seconds to
    wait (0.0: allowed). In memory, the spend is immediate; in the store, it is one statement on a thread
    and connection of its own, so the event loop never waits on the database."""

    def __init__(self, config: ArenaConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.shared = config.shared_rate_limits
        self._clock = clock
        self._limits = {"voter_votes": config.voter_votes, "ip_votes": config.ip_votes,
                        "voter_pairs": config.voter_pairs, "ip_pairs": config.ip_pairs,
                        "ip_new_voters": config.ip_new_voters}
        self._memory = {name: TokenBuckets(limit, clock=time.monotonic) for name, limit in self._limits.items()}
        self._thread: ThreadPoolExecutor | None = None
        self._store: Store | None = None
        self._pruned_at = 0.0
        if self.shared:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-limits")
            self._store = self._thread.submit(Store.open, config.db).result()

    @classmethod
    def for_config(cls, config: ArenaConfig) -> ArenaLimits:
        return cls(config)

    async def pairs(self, voter: str | None, ip: str, *, new_voter: bool = False) -> float:
        """Seconds to wait before this pair may be served (0.0: serve it now; a token is spent)."""
        spends = [("ip_pairs", f"ip:{ip}")]
        if voter:
            spends.append(("voter_pairs", f"voter:{voter}"))
        if new_voter:
            spends.append(("ip_new_voters", f"ip:{ip}"))
        return await self._take(spends)

    async def votes(self, voter: str | None, ip: str) -> float:
        """Seconds to wait before this vote may be cast (0.0: cast it now; a token is spent)."""
        spends = [("ip_votes", f"ip:{ip}")]
        if voter:
            spends.append(("voter_votes", f"voter:{voter}"))
        return await self._take(spends)

    async def _take(self, spends: list[tuple[str, str]]) -> float:
        if not self.shared:
            return max(self._memory[name].take(key) for name, key in spends)
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._take_stored, spends)

    def _take_stored(self, spends: list[tuple[str, str]]) -> float:
        assert self._store is not None
        now = self._clock()
        taken = bucket_store.take(self._store, [bucket_store.Spend(f"{name}:{key}", self._limits[name].per_minute,
                                                                   self._limits[name].burst)
                                                for name, key in spends], now)
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            bucket_store.prune(self._store, now)
        return max((t.wait_s for t in taken), default=0.0)

    def close(self) -> None:
        """Close the store connection (shared mode); safe to call twice."""
        if self._thread is None:
            return
        store, self._store = self._store, None
        if store is not None:
            self._thread.submit(store.close).result()
        self._thread.shutdown(wait=True)
