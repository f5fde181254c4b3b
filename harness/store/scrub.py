"""Removes given API keys (every encoding :mod:`harness.redaction` knows) from a store and from folders of
files written from it (exports, reports), for data written before keys were redacted at the source.

What is scrubbed:

* the store: every text value of every column of every table (JSON columns included: they are text), and
  blobs that are UTF-8 text; then the freed pages are overwritten (``secure_delete``), the write-ahead log is
  emptied and the file rebuilt (``VACUUM``), so the old text does not linger in free pages, and the file's raw
  bytes are searched once more;
* folders: text files (CSV, JSONL, JSON, HTML, JS, CSS, SVG, Markdown, YAML, plain text) are rewritten in
  place (atomically) without the keys; Parquet files are rewritten column by column.

What cannot be scrubbed is counted and reported, never silently passed: a key inside an image file (a
provider could hide one in its metadata; the file's name is its hash, so it cannot be edited, only deleted)
or inside any other binary file.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.redaction import Redactor
from harness.store.images import default_images_dir

if TYPE_CHECKING:
    from harness.store.core import Store

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".html", ".htm", ".js", ".mjs", ".css",
                           ".svg", ".md", ".txt", ".yaml", ".yml", ".xml", ".log"})
PARQUET_SUFFIXES = frozenset({".parquet"})


@dataclass
class ScrubReport:
    """How many key occurrences were removed per place (``removed``), and where keys were found that could not
    be removed (``remaining``: image or other binary files, constraint clashes). Places are ``table.column``
    for the store and paths for files."""

    removed: dict[str, int] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, place: str, count: int, *, removable: bool = True) -> None:
        if count:
            book = self.removed if removable else self.remaining
            book[place] = book.get(place, 0) + count

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def total_remaining(self) -> int:
        return sum(self.remaining.values())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(conn: sqlite3.Connection) -> Iterator[tuple[str, list[str]]]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    for name in names:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(name)})")]
        yield name, columns


def scrub_store(db: Path, redactor: Redactor, report: ScrubReport, *, dry_run: bool = False) -> None:
    """Remove the keys from every text value in ``db`` (see the module docstring); count in ``report``."""
    label = db.name
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        for table, columns in _tables(conn):
            for column in columns:
                _scrub_column(conn, table, column, redactor, report, f"{label} {table}.{column}", dry_run)
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
        if not dry_run and report.removed:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    if not dry_run:
        for path in (db, db.with_name(db.name + "-wal")):
            if path.is_file() and redactor.contains(path.read_bytes()):
                report.add(f"{path} (raw bytes)", 1, removable=False)


def _scrub_column(conn: sqlite3.Connection, table: str, column: str, redactor: Redactor, report: ScrubReport,
                  place: str, dry_run: bool) -> None:
    t, c = _quote(table), _quote(column)
    values = conn.execute(f"SELECT DISTINCT {c} FROM {t} WHERE typeof({c}) IN ('text', 'blob')").fetchall()
    for (value,) in values:
        if isinstance(value, bytes):
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                if redactor.contains(value):
                    report.add(place + " (binary)", 1, removable=False)
                continue
            new_text, n = redactor.text_counted(text)
            new: str | bytes = new_text.encode("utf-8")
        else:
            new, n = redactor.text_counted(value)
        if not n:
            continue
        rows = conn.execute(f"SELECT COUNT(*) FROM {t} WHERE {c} = ?", (value,)).fetchone()[0]
        if dry_run:
            report.add(place, n * rows)
            continue
        try:
            conn.execute(f"UPDATE {t} SET {c} = ? WHERE {c} = ?", (new, value))
        except sqlite3.IntegrityError as exc:
            report.add(place, n * rows, removable=False)
            report.notes.append(f"{place}: a redacted value clashes with another row ({exc}); delete that row")
            continue
        report.add(place, n * rows)


def scrub_folder(folder: Path, redactor: Redactor, report: ScrubReport, *, dry_run: bool = False) -> None:
    """Remove the keys from every text and Parquet file under ``folder``; count keys in other files."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            _scrub_text_file(path, redactor, report, dry_run)
        elif suffix in PARQUET_SUFFIXES:
            _scrub_parquet(path, redactor, report, dry_run)
        elif redactor.contains(path.read_bytes()):
            report.add(str(path), 1, removable=False)


def _scrub_text_file(path: Path, redactor: Redactor, report: ScrubReport, dry_run: bool) -> None:
    data = path.read_bytes()
    text = data.decode("utf-8", "surrogateescape")
    new, n = redactor.text_counted(text)
    if n and not dry_run:
        _replace(path, new.encode("utf-8", "surrogateescape"))
    report.add(str(path), n)


def _scrub_parquet(path: Path, redactor: Redactor, report: ScrubReport, dry_run: bool) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        if redactor.contains(path.read_bytes()):
            report.add(str(path), 1, removable=False)
        report.notes.append(f"{path}: pyarrow is not installed, so Parquet files can only be searched, not "
                            "rewritten (pip install 'harness[parquet]' or delete and re-export)")
        return
    table = pq.read_table(path)
    total = 0
    columns = []
    for column in table.columns:
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            counted = [redactor.text_counted(v) if isinstance(v, str) else (v, 0) for v in column.to_pylist()]
            n = sum(c for _, c in counted)
            if n:
                column = pa.chunked_array([pa.array([v for v, _ in counted], type=column.type)])
                total += n
        columns.append(column)
    if total and not dry_run:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
        os.close(fd)
        pq.write_table(pa.table(columns, names=table.column_names, metadata=table.schema.metadata), tmp)
        os.replace(tmp, path)
    report.add(str(path), total)
    if not dry_run and redactor.contains(path.read_bytes()):
        report.add(str(path), 1, removable=False)
        report.notes.append(f"{path}: a key is left in a column that is not plain text; delete and re-export it")


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scrub_server_store(store: Store, redactor: Redactor, report: ScrubReport, *, dry_run: bool = False) -> None:
    """Remove the keys from every text and byte value of a PostgreSQL store, in one transaction (each update
    in a savepoint, so a clash is counted and the rest goes on), then ``VACUUM FULL`` each changed table so
    the old row versions do not linger in its files. Copies PostgreSQL keeps elsewhere (its write-ahead log,
    replicas, backups) are beyond the store's reach: the report's notes say so."""
    import psycopg

    conn = store.conn
    columns = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND data_type IN ('text', 'bytea') ORDER BY table_name, ordinal_position").fetchall()
    changed: set[str] = set()
    conn.execute("BEGIN")
    try:
        for table, column in columns:
            t, c = _quote(str(table)), _quote(str(column))
            for (value,) in conn.execute(f"SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL").fetchall():
                new, n = _redacted(value, redactor, report, f"{store.path} {table}.{column}")
                if not n:
                    continue
                rows = int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE {c} = ?", (value,)).fetchone()[0])
                place = f"{store.path} {table}.{column}"
                if dry_run:
                    report.add(place, n * rows)
                    continue
                conn.execute("SAVEPOINT scrub")
                try:
                    conn.execute(f"UPDATE {t} SET {c} = ? WHERE {c} = ?", (new, value))
                except psycopg.IntegrityError as exc:
                    conn.execute("ROLLBACK TO SAVEPOINT scrub")
                    report.add(place, n * rows, removable=False)
                    report.notes.append(f"{place}: a redacted value clashes with another row ({exc}); delete that row")
                    continue
                conn.execute("RELEASE SAVEPOINT scrub")
                report.add(place, n * rows)
                changed.add(str(table))
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for table in sorted(changed):
        conn.execute(f"VACUUM FULL {_quote(table)}")
    if changed:
        report.notes.append(f"{store.path}: the old values may remain in PostgreSQL's write-ahead log, replicas and "
                            "backups until those are rotated")


def _redacted(value: Any, redactor: Redactor, report: ScrubReport, place: str) -> tuple[str | bytes, int]:
    """``value`` without the keys and how many were removed (a binary value is only searched)."""
    if isinstance(value, (bytes, memoryview)):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if redactor.contains(raw):
                report.add(place + " (binary)", 1, removable=False)
            return raw, 0
        new_text, n = redactor.text_counted(text)
        return new_text.encode("utf-8"), n
    return redactor.text_counted(str(value))


def scrub_images(images: Path, redactor: Redactor, report: ScrubReport) -> None:
    """Count keys found in image files (named by their hash, so they cannot be edited, only deleted)."""
    if images.is_dir():
        for path in sorted(p for p in images.iterdir() if p.is_file()):
            if redactor.contains(path.read_bytes()):
                report.add(str(path), 1, removable=False)


def scrub(db: Path | None, folders: Iterable[Path], redactor: Redactor, *, dry_run: bool = False) -> ScrubReport:
    """Scrub a store (when given and present) and folders; the store's ``images`` folder is searched only."""
    report = ScrubReport()
    if db is not None:
        scrub_store(db, redactor, report, dry_run=dry_run)
        scrub_images(default_images_dir(db), redactor, report)
    for folder in folders:
        scrub_folder(folder, redactor, report, dry_run=dry_run)
    return report
