"""The store: WAL, versioned schema, content-addressed images, clear errors, and the commands that read it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.run import RunOptions, start_run
from harness.store import SCHEMA_VERSION, Store, StoreError
from harness.targets import load_targets, resolve_keys, select


def test_new_store_is_wal_with_its_schema_version(tmp_path: Path) -> None:
    with Store.open(tmp_path / "h.db") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert int(version) == SCHEMA_VERSION
    assert {"runs", "run_challenges", "run_targets", "attempts", "outputs", "images", "votes"} <= tables


def test_reading_a_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"does not exist .* run `harness run` first"):
        Store.open(tmp_path / "nope.db", readonly=True)
    assert not (tmp_path / "nope.db").exists()


def test_a_store_from_a_newer_harness_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store.open(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer than this harness"):
        Store.open(db)
    with pytest.raises(StoreError, match="newer than this harness"):
        Store.open(db, readonly=True)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="is not a harness store"):
        Store.open(junk)


def test_images_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    with Store.open(tmp_path / "h.db") as store:
        digest = store.put_image(b"png-bytes", "png")
        again = store.put_image(b"png-bytes", "png")
        path = store.image_path(digest, "png")
    assert digest == again == hashlib.sha256(b"png-bytes").hexdigest()
    assert path.read_bytes() == b"png-bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.fixture
def two_runs(tmp_path: Path, tiny_suite: Path) -> tuple[Path, list[str]]:
    db = tmp_path / "r" / "harness.db"
    chosen = select(load_targets(), ["gpt-image-1@openai"])
    ids = []
    for label in ("first", "second"):
        result = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                           RunOptions(sandbox=True, time_scale=0.002, label=label, variants=("default",)))
        ids.append(result.run_id)
    return db, ids


def test_runs_lists_oldest_first_with_ids_and_progress(two_runs: tuple[Path, list[str]]) -> None:
    db, ids = two_runs
    result = CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == ids
    assert [r["label"] for r in rows] == ["first", "second"]
    assert all(r["status"] == "finished" and r["requests_done"] == r["requests_planned"] == 4 for r in rows)
    assert rows[0]["sandbox"] is True


def test_stats_json_has_the_contract_columns(two_runs: tuple[Path, list[str]]) -> None:
    db, ids = two_runs
    result = CliRunner().invoke(cli, ["stats", ids[1], "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 1
    assert {"target", "model", "provider", "n", "success_rate", "p50_ms", "p95_ms", "ttfb_p50_ms",
            "cost_per_image_usd"} <= set(rows[0])
    assert rows[0]["target"] == "gpt-image-1@openai" and rows[0]["n"] == 4


def test_unknown_run_id_suggests_the_close_one(two_runs: tuple[Path, list[str]]) -> None:
    db, ids = two_runs
    typo = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    result = CliRunner().invoke(cli, ["stats", typo, "--db", str(db)])
    assert result.exit_code == 2
    assert f"no run {typo!r}" in result.output and "Did you mean" in result.output


def test_an_image_is_stored_once_under_the_one_name_convention(tmp_path: Path) -> None:
    from harness.store.images import image_label, image_name

    data = b"\x89PNG\r\n\x1a\n" + b"pixels"
    digest = hashlib.sha256(data).hexdigest()
    with Store.open(tmp_path / "h.db") as store:
        assert store.put_image(data, "png") == store.put_image(data, "png") == digest
        path = store.image_path(digest, "png")
    assert path == tmp_path / "images" / image_name(digest, "png") == tmp_path / "images" / f"{digest}.png"
    assert path.read_bytes() == data and [p.name for p in (tmp_path / "images").iterdir()] == [path.name]
    assert image_label(digest, "png") == f"images/{digest}.png"
