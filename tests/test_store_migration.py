"""A store written by the first release (schema 1) opens with today's code, gains the new columns in one
transaction or not at all, and its runs list, stat and resume; a store from a newer harness is refused."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.run import resume_run, store_references
from harness.stats.table import provider_table
from harness.store import SCHEMA_VERSION, Store, StoreError, core
from harness.store import runs as run_store
from harness.targets import resolve_keys

FIXTURE = Path(__file__).parent / "fixtures" / "store_schema1.db"


def test_store_from_first_release_opens_and_gains_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    before = sqlite3.connect(db)
    old_rows = before.execute("SELECT * FROM attempts ORDER BY id").fetchall()
    old_cols = [r[1] for r in before.execute("PRAGMA table_info(attempts)")]
    before.close()
    assert "time_to_image_ms" not in old_cols
    with Store.open(db) as store:
        version = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
        cols = [r[1] for r in store.conn.execute("PRAGMA table_info(attempts)")]
        assert {"size_requested", "size_as_asked", "time_to_image_ms"} <= set(cols)
        rows = store.conn.execute(f"SELECT {', '.join(old_cols)} FROM attempts ORDER BY id").fetchall()
        assert [tuple(r) for r in rows] == old_rows
        (info,) = run_store.list_runs(store)
        assert info.clock_version == 1
        frame = run_store.attempts_frame(store, [info.id])
        assert len(frame) == len(old_rows)
        assert frame["time_to_image_ms"].isna().all()
        assert provider_table(frame)


def test_a_migration_that_fails_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    with sqlite3.connect(db) as conn:
        schema_before = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    added = core._add_missing_columns

    def add_then_fail(conn: sqlite3.Connection, statements: list[str]) -> None:
        added(conn, statements)
        assert "time_to_image_ms" in {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
        raise sqlite3.OperationalError("simulated failure after the columns were added")

    monkeypatch.setattr(core, "_add_missing_columns", add_then_fail)
    with pytest.raises(StoreError, match=r"migrating the store to schema .* failed .* the store is unchanged"):
        Store.open(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    monkeypatch.undo()
    Store.open(db).close()


def test_a_newer_store_is_refused_for_reading_and_writing_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"store schema {SCHEMA_VERSION + 1}, newer than this harness"):
            Store.open(db, readonly=readonly)
    assert db.read_bytes() == before


def test_a_run_from_the_first_release_lists_stats_and_resumes(tmp_path: Path) -> None:
    """The first release's interrupted run (four requests never finished) resumes with today's code: its
    stored options and targets read back, and exactly the missing requests are sent."""
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
        gone = conn.execute("SELECT id FROM attempts ORDER BY id DESC LIMIT 4").fetchall()
        conn.executemany("DELETE FROM outputs WHERE attempt_id=?", gone)
        conn.executemany("DELETE FROM attempts WHERE id=?", gone)
        conn.execute("UPDATE runs SET status='running', finished_at=NULL")
    with Store.open(db) as store:
        store_references(store, load(Path(__file__).parent.parent / "challenges" / "starter"))
        info = run_store.get_run(store, run_id)
    assert info.status == "interrupted" and info.interrupted_at is not None
    assert info.requests_done == info.requests_planned - 4

    result = resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))
    assert result.status == "finished" and result.requests == 4
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [run_id])
        targets = {t["name"]: t for t in run_store.run_targets(store, run_id)}
    assert info.status == "finished" and info.requests_done == info.requests_planned
    assert frame.groupby(["challenge_id", "variant", "target", "sample"])["final"].sum().eq(1).all()
    resumed = frame.tail(4)
    assert resumed["time_to_image_ms"].notna().all()
    assert set(resumed["model"]) <= {t["model"] for t in targets.values()}
    assert provider_table(frame)
    listed = CliRunner().invoke(cli, ["stats", run_id, "--json", "--db", str(db)])
    assert listed.exit_code == 0, listed.output


def test_a_first_release_store_reads_without_being_written(tmp_path: Path) -> None:
    """Reading commands open stores read-only: an old store reads as if migrated, and stays as it was."""
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    before = db.read_bytes()
    with Store.open(db, readonly=True) as store:
        (info,) = run_store.list_runs(store)
        frame = run_store.attempts_frame(store, [info.id])
    assert info.clock_version == 1 and info.status == "finished"
    assert frame["time_to_image_ms"].isna().all() and frame["size_as_asked"].isna().all()
    assert provider_table(frame)
    listed = CliRunner().invoke(cli, ["runs", "--db", str(db)])
    assert listed.exit_code == 0 and info.id in listed.output
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["harness.db"]
