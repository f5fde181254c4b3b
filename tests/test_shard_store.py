"""Shards of one run in the store: the first shard creates the run, the others join it; a shard with another
plan is refused; the run is finished only when its last request is; ``--resume`` continues a shard that no
live process holds, with the configuration it was started with."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.errors import RunLockedError
from harness.records import AttemptRecord, RequestKey
from harness.run.lock import locks_for
from harness.store import Store, StoreError
from harness.store import runs as run_store
from harness.timing import AttemptClock

CHALLENGES = [{"id": "c1", "version": 1, "content_hash": "h1", "kind": "t2i", "category": "cat", "title": "C1"}]
TARGETS = [{"name": "t@p", "model": "m", "provider": "p", "protocol": "openai-images"}]


def _join(store: Store, shard: tuple[int, int], *, planned: int = 2, region: str = "r",
          targets: list[dict[str, Any]] = TARGETS) -> None:
    run_store.create_run(store, run_id="R", created_at=f"2026-01-01T00:00:0{shard[0]}+00:00", harness_version="t",
                         sandbox=True, time_scale=0.01, label=None, planned=planned,
                         config={"shard": list(shard), "region": region}, challenges=CHALLENGES, targets=targets,
                         shard=shard)


def _final(sample: int) -> AttemptRecord:
    values: dict[str, object] = dict.fromkeys(f.name for f in dataclasses.fields(AttemptClock))
    values.update(http_calls=1, bytes_sent=0, bytes_received=0)
    return AttemptRecord(run_id="R", key=RequestKey("c1", "default", "t@p", sample), attempt=1, final=True,
                         model="m", provider="p", protocol="openai-images", ok=True, started_at=1.0, sched_ms=0.0,
                         start_ms=0.0, clock=AttemptClock(**values))  # type: ignore[arg-type]


def test_shards_join_one_run_and_it_finishes_with_its_last_request(store_url: str) -> None:
    with Store.open(store_url) as store:
        _join(store, (0, 2), region="eu")
        _join(store, (1, 2), region="us")
        assert [(s, c["region"]) for s, _, c in run_store.run_shards(store, "R")] == [((0, 2), "eu"), ((1, 2), "us")]
        assert len(run_store.list_runs(store)) == 1
        run_store.insert_attempts(store, [_final(0)])
        run_store.set_run_status(store, "R", "finished", "2026-01-01T00:01:00+00:00", shard=(0, 2))
        info = run_store.get_run(store, "R")
        assert info.status == "interrupted" and info.finished_at is None  # shard 1 is neither done nor held
        assert run_store.shard_config(store, "R") == {"shard": [1, 2], "region": "us"}
        run_store.insert_attempts(store, [_final(1)])
        run_store.set_run_status(store, "R", "finished", "2026-01-01T00:02:00+00:00", shard=(1, 2))
        info = run_store.get_run(store, "R")
        assert (info.status, info.requests_done, info.requests_planned) == ("finished", 2, 2)


def test_a_shard_with_another_plan_or_started_twice_is_refused_and_nothing_is_written(store_url: str) -> None:
    with Store.open(store_url) as store:
        _join(store, (0, 3))
        with pytest.raises(StoreError, match="plans 5 requests"):
            _join(store, (1, 3), planned=5)
        with pytest.raises(StoreError, match="targets differ"):
            _join(store, (1, 3), targets=[{**TARGETS[0], "model": "other"}])
        with pytest.raises(StoreError, match="split in 3 shards, not 2"):
            _join(store, (1, 2))
        with pytest.raises(StoreError, match=r"shard 0/3 of run R was started before.*--resume R"):
            _join(store, (0, 3))
        assert [s for s, _, _ in run_store.run_shards(store, "R")] == [(0, 3)]


def test_a_run_is_running_while_any_shard_is_held_and_resume_skips_held_shards(store_url: str) -> None:
    with Store.open(store_url) as store:
        _join(store, (0, 2), region="eu")
        _join(store, (1, 2), region="us")
        locks = locks_for(store)
        with locks.acquire(run_store.lock_id("R", (0, 2))):
            info = run_store.get_run(store, "R")
            assert info.status == "running" and "(shard 0-of-2)" in str(info.held_by)
            assert run_store.shard_config(store, "R") == {"shard": [1, 2], "region": "us"}
            with locks.acquire(run_store.lock_id("R", (1, 2))), pytest.raises(RunLockedError, match="every unfinished"):
                run_store.shard_config(store, "R")
        assert run_store.get_run(store, "R").status == "interrupted"
        assert run_store.lock_id("R", None) == "R"
