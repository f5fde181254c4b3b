"""The attempt record is the one definition of the ``attempts`` columns: the table, its insert and the frame
reader follow its fields, a store written by the first release gains the new ones, and a field added to the
record reaches the store without touching the store's code."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest

from harness.records import NOT_STORED, AttemptRecord, RequestKey, run_host
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import Target, load_targets
from harness.timing import AttemptClock

FIXTURE = Path(__file__).parent / "fixtures" / "store_schema1.db"


def _clock() -> AttemptClock:
    values: dict[str, object] = dict.fromkeys(f.name for f in dataclasses.fields(AttemptClock))
    values.update(latency_ms=120.0, http_calls=1, bytes_sent=10, bytes_received=20, conn_reused=True)
    return AttemptClock(**values)  # type: ignore[arg-type]


def _record(**changes: object) -> AttemptRecord:
    record = AttemptRecord(run_id="r1", key=RequestKey("c1", "default", "t@p", 0), attempt=1, final=True,
                           model="m", provider="p", protocol="openai-images", ok=True, started_at=1.0e9,
                           sched_ms=0.0, start_ms=2.0, clock=_clock(), usage={"tokens": 3}, size_as_asked=True)
    return dataclasses.replace(record, **changes)


def _new_run(store: Store, targets: list[dict[str, object]] | None = None) -> None:
    run_store.create_run(
        store, run_id="r1", created_at="2026-01-01T00:00:00+00:00", harness_version="t", sandbox=True,
        time_scale=0.01, label=None, planned=1, config={},
        challenges=[{"id": "c1", "version": 1, "content_hash": "h", "kind": "t2i", "category": "cat", "title": "C"}],
        targets=targets or [{"name": "t@p", "model": "m", "provider": "p", "protocol": "openai-images"}])


def test_every_stored_field_of_the_attempt_record_is_a_column_in_field_order() -> None:
    expected: list[str] = []
    for f in dataclasses.fields(AttemptRecord):
        if f.metadata.get("column", "plain") is None:
            continue
        if f.name == "key":
            expected += [k.name for k in dataclasses.fields(RequestKey)]
        elif f.name == "clock":
            expected += [k.name for k in dataclasses.fields(AttemptClock)]
        elif f.metadata.get("column") == "json":
            expected.append(f"{f.name}_json")
        else:
            expected.append(f.name)
    assert [c.name for c in run_store.ATTEMPT_COLUMNS] == expected
    assert ("id", *(c for c in expected if not c.endswith("_json"))) == run_store.ATTEMPT_FRAME_COLUMNS
    assert {"host", "region"} <= set(expected)
    assert not {"outputs", "image_bytes"} & set(expected)


def test_the_table_a_fresh_store_creates_is_the_one_the_record_declares(tmp_path: Path) -> None:
    with Store.open(tmp_path / "harness.db") as store:
        info = {r[1]: (r[2], bool(r[3])) for r in store.conn.execute("PRAGMA table_info(attempts)")}
    assert info.pop("id") == ("INTEGER", False)
    assert info == {c.name: (c.sql_type, not c.nullable) for c in run_store.ATTEMPT_COLUMNS}
    assert info["started_at"] == ("REAL", True) and info["bytes_sent"] == ("INTEGER", False)
    assert info["ok"] == ("INTEGER", True) and info["size_as_asked"] == ("INTEGER", False)


def test_columns_added_since_the_first_release_are_nullable_so_older_stores_can_gain_them() -> None:
    with sqlite3.connect(FIXTURE) as conn:
        first_release = {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
    added = [c for c in run_store.ATTEMPT_COLUMNS if c.name not in first_release]
    assert {"time_to_image_ms", "host", "region"} <= {c.name for c in added}
    assert all(c.nullable for c in added), [c.name for c in added if not c.nullable]


def test_an_attempt_reads_back_as_it_was_recorded_with_its_host_and_region(store_url: str) -> None:
    record = _record(host="host-b", region="eu-west", usage={}, error_kind=None)
    with Store.open(store_url) as store:
        _new_run(store)
        run_store.insert_attempts(store, [record])
        frame = run_store.attempts_frame(store, ["r1"], [*run_store.ATTEMPT_FRAME_COLUMNS, "usage_json"])
    (row,) = frame.to_dict("records")
    assert (row["host"], row["region"], row["challenge_id"], row["target"]) == ("host-b", "eu-west", "c1", "t@p")
    assert row["latency_ms"] == 120.0 and row["conn_reused"] == 1 and row["size_as_asked"] == 1
    assert row["usage_json"] is None and row["ttfb_ms"] is None


def test_an_attempt_is_recorded_under_this_machine_unless_the_environment_names_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("HARNESS_RUN_HOST", raising=False)
    assert _record().host == socket.gethostname() == run_host()
    monkeypatch.setenv("HARNESS_RUN_HOST", "runner-eu-1")
    assert _record().host == "runner-eu-1"
    assert _record().region is None


def test_a_store_from_the_first_release_gains_host_and_region_as_nulls(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    with Store.open(db, readonly=True) as store:
        assert {"host", "region"} <= set(run_store.attempt_columns(store))  # read-only: shown as nulls
    with Store.open(db) as store:
        (info,) = run_store.list_runs(store)
        frame = run_store.attempts_frame(store, [info.id])
    assert len(frame) and frame["host"].isna().all() and frame["region"].isna().all()


def test_a_record_field_of_a_type_the_store_cannot_hold_is_refused_when_derived() -> None:
    @dataclasses.dataclass
    class Odd:
        name: str
        shape: tuple[int, int]
        skipped: list[int] = dataclasses.field(default_factory=list, metadata=NOT_STORED)

    with pytest.raises(TypeError, match=r"Odd\.shape"):
        run_store.record_columns(Odd)


def test_a_target_keeps_its_names_through_the_store(store_url: str) -> None:
    targets = [t for t in load_targets(None).values() if t.model != t.model_name] or list(load_targets(None).values())
    chosen = targets[:3]
    with Store.open(store_url) as store:
        _new_run(store, [t.frozen() for t in chosen])
        stored = run_store.run_targets(store, "r1")
        columns = store.conn.execute("SELECT name, model FROM run_targets WHERE run_id=? ORDER BY rowid",
                                     ("r1",)).fetchall()
    assert [Target.from_frozen(s) for s in stored] == chosen
    assert [(r[0], r[1]) for r in columns] == [(t.name, t.model_name) for t in chosen]
