"""Rate limits that hold across app servers: the arena's token buckets kept in the store, on both backends.
Two limiters over one store stand for two workers; four processes racing over one bucket stand for four
servers at once. A voter gets the burst once in all, not once per worker."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.ratelimit import ArenaLimits, TokenBuckets
from harness.store import Store
from harness.store import ratelimits as bucket_store


def config(url: str, *, shared: bool = True) -> ArenaConfig:
    return ArenaConfig(db=Path(url), voter_votes=RateLimit(6.0, 3),
                       ip_votes=RateLimit(600.0, 100), shared_rate_limits=shared)


def test_two_workers_share_one_voters_burst(store_url: str) -> None:
    clock = [1000.0]
    workers = [ArenaLimits(config(store_url), clock=lambda: clock[0]) for _ in range(2)]
    try:
        waits = [asyncio.run(workers[i % 2].votes("alice", "10.0.0.1")) for i in range(6)]
        assert [w == 0.0 for w in waits] == [True, True, True, False, False, False]
        assert waits[3] == 10.0  # 6 per minute: one token every 10 s
        clock[0] += 10.0
        assert asyncio.run(workers[1].votes("alice", "10.0.0.1")) == 0.0
        assert asyncio.run(workers[0].votes("alice", "10.0.0.1")) > 0.0
        assert asyncio.run(workers[0].votes("bob", "10.0.0.1")) == 0.0  # another voter has a bucket of its own
    finally:
        for w in workers:
            w.close()


def test_in_memory_limits_are_per_process_as_before(tmp_path: Path) -> None:
    """Without shared limits (one process on SQLite) each limiter counts alone: what two workers must avoid."""
    workers = [ArenaLimits(config(str(tmp_path / "h.db"), shared=False)) for _ in range(2)]
    granted = sum(asyncio.run(workers[i % 2].votes("alice", "10.0.0.1")) == 0.0 for i in range(8))
    assert granted == 6


def _hammer(url: str, start_at: float) -> int:
    granted = 0
    with Store.open(url) as store:
        while time.time() < start_at:
            time.sleep(0.001)
        for _ in range(25):
            taken = bucket_store.take(store, [bucket_store.Spend("votes:ip:1.2.3.4", 0.001, 20)], time.time())
            granted += taken[0].granted
    return granted


def test_a_bucket_is_spent_atomically_by_concurrent_processes(store_url: str) -> None:
    """Four processes take 100 tokens from a bucket of 20 that barely refills: exactly 20 are granted."""
    with Store.open(store_url):
        pass
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    with context.Pool(4) as pool:
        granted = pool.starmap(_hammer, [(store_url, start_at)] * 4)
    assert sum(granted) == 20


def test_refilled_buckets_are_pruned_and_start_full_again(store_url: str) -> None:
    spend = [bucket_store.Spend("a", 60.0, 2)]
    with Store.open(store_url) as store:
        assert [t.granted for t in bucket_store.take(store, spend * 1, 0.0)] == [True]
        assert bucket_store.prune(store, 0.5) == 0  # not full yet: 1.5 of 2 tokens
        assert bucket_store.prune(store, 1.0) == 1 and bucket_store.count(store) == 0
        assert [bucket_store.take(store, spend, 1.0)[0].granted for _ in range(3)] == [True, True, False]


@settings(max_examples=40, deadline=None)
@given(per_minute=st.floats(1.0, 600.0), burst=st.integers(1, 20),
       steps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=40))
def test_stored_buckets_grant_what_in_memory_buckets_grant(per_minute: float, burst: int,
                                                           steps: list[float]) -> None:
    """The store's SQL bucket and the in-memory one agree, take for take, on any sequence of times."""
    now = [0.0]
    memory = TokenBuckets(RateLimit(per_minute, burst), clock=lambda: now[0])
    with Store.open(":memory:") as store:
        for step in steps:
            now[0] += step
            stored = bucket_store.take(store, [bucket_store.Spend("k", per_minute, burst)], now[0])[0]
            wait = memory.take("k")
            assert stored.granted == (wait == 0.0)
            assert abs(stored.wait_s - wait) < 1e-6
