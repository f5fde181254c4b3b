"""Copy a store whole into another (``harness store migrate``), on any pair of backends, and prove the copy:
per table the row count and a SHA-256 of its rows in key order must match on both sides.

The copy is one transaction on the destination, verified before it commits: a failure or a mismatch leaves
the destination as it was (a new, empty store at most). The source is opened read-only and never written.
The destination must hold no data yet. Image files are copied into the destination's image folder when it
is another folder (each checked against the SHA-256 that names it).

The content hash encodes each value by its declared column type (integers as integers, floats by their
shortest round-trip text, text as UTF-8, bytes as hex, NULL apart from all of them), rows in primary-key
order with text compared byte-wise on both backends, so equal hashes mean equal content, whichever backend
wrote it. Bookkeeping outside the tables the code declares (``meta``: the schema version, run-lock holders)
is not copied; the destination writes its own.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.store.core import Store, StoreError, _schema_statements
from harness.store.images import image_name

BATCH_ROWS = 2000


@dataclass(frozen=True)
class TableLayout:
    name: str
    columns: tuple[tuple[str, str], ...]
    """``(name, declared type)`` in declared order."""
    key: tuple[str, ...]
    copy_order: tuple[str, ...]
    """Stored order (SQLite's ``rowid``, PostgreSQL's ``rowid`` identity), so "in stored order" reads survive."""
    defaults: tuple[str | None, ...]
    """Declared default (SQL) of each column: what an older store that lacks the column reads as."""


@dataclass(frozen=True)
class TableCheck:
    table: str
    rows: int
    sha256: str


@dataclass
class MigrationResult:
    source: str
    destination: str
    tables: list[TableCheck] = field(default_factory=list)
    images_copied: int = 0
    images_missing: list[str] = field(default_factory=list)
    """Image files the source's tables name but its folder lacks (they could not be copied)."""


def layouts() -> list[TableLayout]:
    """Every table the code declares, parents before the tables that reference them."""
    statements = [s for s in _schema_statements() if s.lstrip().upper().startswith("CREATE TABLE")]
    scratch = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            scratch.execute(statement)
        names = [r[0] for r in scratch.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        parents = {n: {r[2] for r in scratch.execute(f"PRAGMA foreign_key_list({n})")} - {n} for n in names}
        found: list[TableLayout] = []
        for name in names:
            info = list(scratch.execute(f"PRAGMA table_info({name})"))
            key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            sql = str(scratch.execute("SELECT sql FROM sqlite_master WHERE name=?", (name,)).fetchone()[0])
            int_pk = len(key) == 1 and str(next(r[2] for r in info if r[1] == key[0])).upper() == "INTEGER"
            without_rowid = "WITHOUT ROWID" in sql.upper()
            found.append(TableLayout(name, tuple((str(r[1]), str(r[2]).upper()) for r in info), key,
                                     key if int_pk or without_rowid else ("rowid",), tuple(r[4] for r in info)))
    finally:
        scratch.close()
    ordered: list[TableLayout] = []
    pending = {t.name: t for t in found}
    while pending:
        ready = sorted(n for n, t in pending.items() if not (parents[n] & set(pending)))
        if not ready:
            raise StoreError(f"tables reference each other in a cycle: {sorted(pending)}")
        ordered.extend(pending.pop(n) for n in ready)
    return ordered


def _encode(value: Any, declared: str) -> bytes:
    if value is None:
        return b"\x00"
    if "INT" in declared and isinstance(value, int):
        return b"i" + str(int(value)).encode()
    if declared in ("REAL", "DOUBLE PRECISION", "FLOAT") or isinstance(value, float):
        return b"f" + repr(float(value)).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"b" + bytes(value).hex().encode()
    return b"s" + str(value).encode("utf-8", "surrogatepass")


def _select_list(store: Store, layout: TableLayout) -> str:
    """The table's declared columns. A SQLite store read without migrating may lack later columns; they read
    as their declared defaults, from the table itself (its read-only views have no ``rowid`` to order by)."""
    if not store.dialect.is_sqlite:
        return f"{', '.join(c for c, _ in layout.columns)} FROM {layout.name}"
    present = {r[1] for r in store.conn.execute(f"PRAGMA main.table_info({layout.name})")}
    columns = [c if c in present else f"{d if d is not None else 'NULL'} AS {c}"
               for (c, _), d in zip(layout.columns, layout.defaults, strict=True)]
    return f"{', '.join(columns)} FROM main.{layout.name}"


def _rows(store: Store, layout: TableLayout, order: tuple[str, ...]) -> Iterator[list[Any]]:
    types = dict(layout.columns)
    order_sql = ", ".join(f"{c}{store.dialect.text_order if types.get(c) == 'TEXT' else ''}" for c in order)
    cursor = store.conn.execute(f"SELECT {_select_list(store, layout)} ORDER BY {order_sql}")
    while batch := cursor.fetchmany(BATCH_ROWS):
        yield [tuple(r) for r in batch]


def fingerprint(store: Store, layout: TableLayout) -> TableCheck:
    """Row count and content hash of one table (see the module docstring)."""
    digest = hashlib.sha256()
    count = 0
    types = [t for _, t in layout.columns]
    for batch in _rows(store, layout, layout.key):
        for row in batch:
            digest.update(b"\x1f".join(_encode(v, t) for v, t in zip(row, types, strict=True)) + b"\x1e")
            count += 1
    return TableCheck(layout.name, count, digest.hexdigest())


def _identity_column(layout: TableLayout) -> str | None:
    """The column PostgreSQL numbers itself (an ``INTEGER PRIMARY KEY`` or the added ``rowid``): after a copy
    with explicit values its sequence must continue past them."""
    if layout.copy_order == ("rowid",):
        return "rowid"
    if len(layout.key) == 1 and layout.copy_order == layout.key and dict(layout.columns)[layout.key[0]] == "INTEGER":
        return layout.key[0]
    return None


def _copy_images(source: Store, destination: Store, result: MigrationResult) -> None:
    if source.images_dir.resolve() == destination.images_dir.resolve():
        return
    for sha, ext in source.conn.execute("SELECT sha256, ext FROM images ORDER BY sha256").fetchall():
        if destination.images.has(sha, ext):
            continue
        if not source.images.has(sha, ext):
            result.images_missing.append(image_name(sha, ext))
            continue
        data = source.images.read(sha, ext)
        if hashlib.sha256(data).hexdigest() != sha:
            raise StoreError(f"image {source.image_path(sha, ext)} does not match the SHA-256 that names it; "
                             "nothing was copied into the destination's tables")
        destination.images.put(data, ext, sha)
        result.images_copied += 1


def migrate(source: Store, destination: Store) -> MigrationResult:
    """Copy every declared table of ``source`` into the empty ``destination`` in one transaction, verify
    counts and hashes before committing, and copy the image files (see the module docstring)."""
    result = MigrationResult(str(source.path), str(destination.path))
    tables = [t for t in layouts() if source.has_table(t.name)]
    for layout in layouts():
        if destination.conn.execute(f"SELECT 1 FROM {layout.name} LIMIT 1").fetchone() is not None:
            raise StoreError(f"the destination {destination.path} already holds data (table {layout.name}); "
                             "migrate into an empty store. Nothing was written")
    expected = [fingerprint(source, t) for t in tables]
    _copy_images(source, destination, result)
    with destination.transaction() as conn:
        for layout in tables:
            names = [c for c, _ in layout.columns]
            insert = f"INSERT INTO {layout.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            for batch in _rows(source, layout, layout.copy_order):
                conn.executemany(insert, batch)
            identity = _identity_column(layout)
            if identity is not None and not destination.dialect.is_sqlite:
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{layout.name}', '{identity}'),"
                             f" COALESCE((SELECT MAX({identity}) FROM {layout.name}), 0) + 1, false)")
        got = [fingerprint(destination, t) for t in tables]
        wrong = [f"{e.table} ({e.rows} rows {e.sha256[:12]} -> {g.rows} rows {g.sha256[:12]})"
                 for e, g in zip(expected, got, strict=True) if e != g]
        if wrong:
            raise StoreError(f"the copy into {destination.path} does not match its source: {'; '.join(wrong)}; "
                             "nothing was committed")
    result.tables = got
    return result
