"""The SQLite store: one file in WAL mode plus content-addressed images beside it.

Layout (default ``results/``)::

    results/harness.db            runs, challenges and targets of each run, attempts, outputs, votes, scores
    results/images/<sha256>.<ext> every reference and output image, named by the SHA-256 of its bytes

WAL mode lets the arena app write votes while a report reads, and makes every committed transaction survive
a ``kill -9`` of the writer. Each module of this package that defines ``DDL`` (a list of statements) owns
its tables; :meth:`Store.open` applies them all, so a new stage adds tables without touching this file.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessError

SCHEMA_VERSION = 2
"""Version of the store's table layout; every change to it bumps this number.

History: 1, the first release; 2, attempts gain size conformance, time to image and the measurement
columns of clock version 2 (client time, intended delay), runs gain ``clock_version``.

Migration is additive: :func:`_migrate` creates missing tables and adds every column the code declares
that an older store lacks (``ALTER TABLE ... ADD COLUMN``), so a column added later must be nullable or
carry a ``DEFAULT``. A store whose version is newer than the code's is refused, never written.
"""

DEFAULT_DB = Path("results") / "harness.db"


class StoreError(HarnessError):
    """The store file cannot be opened or was written by an incompatible version."""


def _schema_statements() -> list[str]:
    import harness.store as package

    statements: list[str] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"harness.store.{info.name}")
        statements.extend(getattr(module, "DDL", []))
    return statements


class Store:
    """A connection to one store file. Not shared between threads: open one per thread.

    ``images_dir`` defaults to ``images/`` next to the database file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, images_dir: Path) -> None:
        self.conn = conn
        self.path = path
        self.images_dir = images_dir

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, images_dir: Path | None = None,
             readonly: bool = False) -> Store:
        """Open (creating when absent, unless ``readonly``) the store at ``path``."""
        db = Path(path) if path is not None else DEFAULT_DB
        if readonly:
            if not db.exists():
                raise StoreError(f"store {db} does not exist (pass --db PATH or run `harness run` first)")
            conn = sqlite3.connect(
                f"file:{db}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
        else:
            db.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db, check_same_thread=False, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                _migrate(conn, db)
            else:
                _check_version(conn, db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{db} is not a harness store: {exc}") from exc
        store = cls(conn, db, images_dir or db.parent / "images")
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on success and rolled back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def image_path(self, sha256: str, ext: str) -> Path:
        return self.images_dir / f"{sha256}.{ext}"

    def put_image(self, data: bytes, ext: str, sha256: str | None = None) -> str:
        """Write image bytes under their SHA-256 (once; the write is atomic). Returns the hash."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        target = self.image_path(digest, ext)
        if not target.exists():
            self.images_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return digest


def _check_version(conn: sqlite3.Connection, db: Path) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        raise StoreError(f"{db} has no schema version; it was not written by the harness")
    if int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{db} has store schema {row[0]}, newer than this harness understands ({SCHEMA_VERSION}); upgrade"
        )


def _migrate(conn: sqlite3.Connection, db: Path) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{db} has store schema {row[0]}, newer than this harness understands ({SCHEMA_VERSION}); upgrade"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        statements = _schema_statements()
        for statement in statements:
            conn.execute(statement)
        _add_missing_columns(conn, statements)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(SCHEMA_VERSION),),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _declared_columns(statements: list[str]) -> dict[str, list[tuple[str, str, str | None]]]:
    """``table -> [(column, declared type, default SQL)]`` as the code declares them (built in memory)."""
    scratch = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            scratch.execute(statement)
        tables = [r[0] for r in scratch.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [(r[1], r[2], r[4]) for r in scratch.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        scratch.close()


def _add_missing_columns(conn: sqlite3.Connection, statements: list[str]) -> None:
    """Give tables written by an older release the columns added since (each nullable or defaulted)."""
    for table, columns in _declared_columns(statements).items():
        present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl, default in columns:
            if name not in present:
                default_sql = f" DEFAULT {default}" if default is not None else ""
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}{default_sql}")
