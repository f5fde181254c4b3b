"""`harness stats --by region`: one provider table per region, each request counted once, in the region
(and host) where its final attempt was made, with every attempt it took."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.records import AttemptRecord, RequestKey
from harness.stats.byregion import NO_REGION, REGION_VIEW_SCHEMA_VERSION, run_region_views
from harness.store import Store
from harness.store import runs as run_store
from harness.timing import AttemptClock


def _attempt(sample: int, attempt: int, *, final: bool, ok: bool, host: str | None, region: str | None,
             latency_ms: float = 100.0) -> AttemptRecord:
    values: dict[str, object] = dict.fromkeys(f.name for f in dataclasses.fields(AttemptClock))
    values.update(latency_ms=latency_ms, http_calls=1, bytes_sent=0, bytes_received=0)
    return AttemptRecord(run_id="R", key=RequestKey("c1", "default", "t@p", sample), attempt=attempt, final=final,
                         model="m", provider="p", protocol="openai-images", ok=ok, started_at=1.0e9 + sample,
                         sched_ms=0.0, start_ms=0.0, clock=AttemptClock(**values),  # type: ignore[arg-type]
                         error_kind=None if ok else "server_error", n_images=int(ok), host=host, region=region)


def test_each_region_gets_its_own_table_and_a_request_counts_where_it_ended(tmp_path: Path) -> None:
    with Store.open(tmp_path / "harness.db") as store:
        run_store.create_run(store, run_id="R", created_at="2026-01-01T00:00:00+00:00", harness_version="t",
                             sandbox=False, time_scale=None, label=None, planned=5, config={"timeout_s": 60},
                             challenges=[{"id": "c1", "version": 1, "content_hash": "h", "kind": "t2i",
                                          "category": "cat", "title": "C"}],
                             targets=[{"name": "t@p", "model": "m", "provider": "p", "protocol": "openai-images"}])
        run_store.insert_attempts(store, [
            _attempt(0, 1, final=True, ok=True, host="a1", region="eu"),
            _attempt(1, 1, final=True, ok=False, host="a2", region="eu"),
            _attempt(2, 1, final=False, ok=False, host="b1", region="us"),  # retried after a resume in eu
            _attempt(2, 2, final=True, ok=True, host="a1", region="eu", latency_ms=300.0),
            _attempt(3, 1, final=True, ok=True, host="b1", region="us"),
            _attempt(4, 1, final=True, ok=True, host="old", region=None),
        ])
        views, warning = run_region_views(store, run_store.get_run(store, "R"))
    assert warning is None
    assert [(v.region, v.hosts, v.requests) for v in views] == [("eu", ["a1", "a2"], 3), ("us", ["b1"], 1),
                                                                 (None, ["old"], 1)]
    eu, us, unlabelled = views
    assert unlabelled.label == NO_REGION and eu.label == "eu"
    (row,) = eu.rows
    assert (row.n, row.attempts, row.successes) == (3, 4, 2)
    assert us.rows[0].n == 1 and us.rows[0].attempts == 1
    doc = eu.to_json()
    assert doc["schema_version"] == REGION_VIEW_SCHEMA_VERSION and doc["rows"][0]["target"] == "t@p"


def test_a_store_without_regions_is_one_unlabelled_table(tmp_path: Path) -> None:
    import shutil

    db = tmp_path / "harness.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "store_schema1.db", db)
    with Store.open(db, readonly=True) as store:
        (info,) = run_store.list_runs(store)
        views, _ = run_region_views(store, info)
    (view,) = views
    assert view.region is None and view.hosts == [] and view.requests == sum(r.n for r in view.rows) > 0
