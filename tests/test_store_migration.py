"""A store written by the first release (schema 1) opens with today's code and gains the new columns."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from harness.stats.table import provider_table
from harness.store import SCHEMA_VERSION, Store
from harness.store import runs as run_store

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
