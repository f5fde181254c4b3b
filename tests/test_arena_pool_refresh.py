"""The arena's pool refreshed from the store without a restart: a run finished while the arena is up is on
offer within one refresh interval (and not before), a failing reload keeps the current pool, and
``--refresh`` reads durations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import httpx
import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.pool import PoolRefresher, load_pool
from harness.cli.arena import parse_refresh
from harness.store import Store
from tests.test_arena_pool import ArenaStore, _sandbox_run, build_arena_store, clone_store


@pytest.fixture(scope="module")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_run_finished_while_serving_is_on_offer_after_one_interval(tmp_path: Path, arena_store: ArenaStore) -> None:
    store_copy = clone_store(arena_store, tmp_path / "store")
    clock = Clock()
    refresher = PoolRefresher(ArenaConfig(db=store_copy.db, pool_refresh_s=30.0), clock)
    with Store.open(store_copy.db) as store:
        before = load_pool(store)
        later = _sandbox_run(tmp_path, store_copy.db, ["gpt-image-1@openai"], "openai: {faults: {}}\n")
        clock.now += 29.0
        assert refresher.poll(store) is None  # not due yet
        clock.now += 1.0
        fresh = refresher.poll(store)
        assert refresher.poll(store) is None  # the next one is a whole interval away
    assert before.run_ids == (arena_store.run_id,)
    assert fresh is not None and set(fresh.run_ids) == {arena_store.run_id, later}
    runs_offered = {e.run_id for m in fresh.matchups for entries in m.entries.values() for e in entries}
    assert later in runs_offered


def test_the_serving_arena_takes_up_a_new_run_within_one_interval(tmp_path: Path, arena_store: ArenaStore) -> None:
    """The app itself (its clock injected): pairs served before the interval has passed come from the old
    run only; once it has, the new run's outputs are served (they are the least served, so chosen first)."""
    store_copy = clone_store(arena_store, tmp_path / "store")
    clock = Clock()
    generous = RateLimit(1e6, 100_000)
    config = ArenaConfig(db=store_copy.db, cache_dir=store_copy.cache_dir, pool_refresh_s=60.0, seed=3,
                         voter_votes=generous, ip_votes=generous, ip_new_voters=generous, max_servings=None,
                         reveal_memory="off")
    app = create_app(config, clock=clock)

    async def serve(n: int) -> None:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://arena.test") as client:
            for _ in range(n):
                (await client.get("/api/pair")).raise_for_status()

    def runs_served() -> set[str]:
        with Store.open(store_copy.db, readonly=True) as store:
            return {str(r[0]) for r in store.conn.execute("SELECT run_id FROM arena_pairs UNION "
                                                          "SELECT right_run_id FROM arena_pairs")}

    try:
        asyncio.run(serve(5))
        later = _sandbox_run(tmp_path, store_copy.db, ["gpt-image-1@openai"], "openai: {faults: {}}\n")
        clock.now += 30.0
        asyncio.run(serve(10))
        assert runs_served() == {arena_store.run_id}
        clock.now += 30.0
        asyncio.run(serve(20))
        assert runs_served() == {arena_store.run_id, later}
    finally:
        app.state.arena.close()


def test_an_arena_limited_to_named_runs_does_not_take_up_others(tmp_path: Path, arena_store: ArenaStore) -> None:
    store_copy = clone_store(arena_store, tmp_path / "store")
    clock = Clock()
    refresher = PoolRefresher(ArenaConfig(db=store_copy.db, run_ids=(arena_store.run_id,), pool_refresh_s=5.0), clock)
    with Store.open(store_copy.db) as store:
        _sandbox_run(tmp_path, store_copy.db, ["gpt-image-1@openai"], "openai: {faults: {}}\n")
        clock.now += 5.0
        fresh = refresher.poll(store)
    assert fresh is not None and fresh.run_ids == (arena_store.run_id,)


def test_a_reload_that_fails_keeps_the_current_pool(tmp_path: Path, arena_store: ArenaStore,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    store_copy = clone_store(arena_store, tmp_path / "store")
    clock = Clock()
    refresher = PoolRefresher(ArenaConfig(db=store_copy.db, targets=("gpt-image-1@openai", "mini@openai"),
                                          pool_refresh_s=5.0), clock)
    with Store.open(store_copy.db) as store:
        store.conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE target = ?)",
                           ("mini@openai",))
        clock.now += 5.0
        assert refresher.poll(store) is None
    assert "pool not refreshed" in caplog.text and "mini@openai" in caplog.text


def test_refreshing_can_be_turned_off(tmp_path: Path, arena_store: ArenaStore) -> None:
    clock = Clock()
    refresher = PoolRefresher(ArenaConfig(db=arena_store.db, pool_refresh_s=None), clock)
    clock.now += 1e9
    with Store.open(arena_store.db, readonly=True) as store:
        assert refresher.poll(store) is None


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("500ms", 0.5), ("45", 45.0),
                                               ("1h", 3600.0), ("off", None), ("0", None)])
def test_refresh_durations(text: str, seconds: float | None) -> None:
    assert parse_refresh(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "10 days", "1.5.2s"])
def test_a_bad_refresh_duration_is_refused_by_name(text: str) -> None:
    with pytest.raises(click.BadParameter, match="duration"):
        parse_refresh(text)
