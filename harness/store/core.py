"""The store: runs, attempts, votes and scores in SQLite (default) or PostgreSQL, images in a folder.

:meth:`Store.open` takes a location (:mod:`harness.store.url`): a SQLite file (a path or ``sqlite:///PATH``)
or ``postgresql://user:pass@host:port/db`` (images in the folder ``?images=DIR`` names). Above this package
nothing knows which: the store's modules write their SQL once (:mod:`harness.store.dialect` lists the
differences) and :class:`Store` hands them a connection that speaks it.

SQLite layout (default ``results/``)::

    results/harness.db            runs, challenges and targets of each run, attempts, outputs, votes, scores
    results/images/<sha256>.<ext> every reference and output image, named by the SHA-256 of its bytes

WAL mode lets the arena app write votes while a report reads, and makes every committed transaction survive
a ``kill -9`` of the writer. Each module of this package that defines ``DDL`` (a list of statements) owns
its tables; :meth:`Store.open` applies them all, so a new stage adds tables without touching this file.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import pkgutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, StoreWriteError
from harness.store.dialect import POSTGRES, SQLITE, Dialect
from harness.store.images import ImageFolder, default_images_dir
from harness.store.url import DEFAULT_DB, PostgresLocation, StoreUrlError, parse_location, redact_url

SCHEMA_VERSION = 3
"""Version of the store's table layout; every change to it bumps this number.

History: 1, the first release; 2, attempts gain size conformance, time to image and the measurement
columns of clock version 2 (client time, intended delay), runs gain ``clock_version``; 3, attempts gain
``host`` and ``region`` (which machine and region made each attempt of a sharded run), votes gain ``anony``,
and new tables hold the shards of a run filled by several processes (``run_shards``), batch jobs
(``batch_jobs``), judge verdicts (``judgements``), arena skips (``arena_skips``) and rate-limit buckets shared
by arena workers (``arena_ratelimits``).

Migration is additive: :func:`_migrate` creates missing tables and adds every column the code declares
that an older store lacks (``ALTER TABLE ... ADD COLUMN``), so a column added later must be nullable or
carry a ``DEFAULT``. A store whose version is newer than the code's is refused, never written.
"""

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Store", "StoreError", "StoreUrlError"]

Connection = Any
"""A ``sqlite3.Connection`` or a :class:`~harness.store.postgres.PgConnection`: both take the store's SQL
(``?`` placeholders) and give rows readable by index and by column name."""


class StoreError(HarnessError):
    """The store cannot be opened or was written by an incompatible version."""


def _schema_statements() -> list[str]:
    import harness.store as package

    statements: list[str] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"harness.store.{info.name}")
        statements.extend(getattr(module, "DDL", []))
    return statements


class Store:
    """A connection to one store. Not shared between threads: open one per thread.

    ``path`` is the SQLite file, or the PostgreSQL URL with its password hidden (what messages name);
    ``images`` the image folder (``images/`` next to a SQLite file by default)."""

    def __init__(self, conn: Connection, path: Path | str, images_dir: Path, *, dialect: Dialect = SQLITE,
                 location: PostgresLocation | None = None) -> None:
        self.conn = conn
        self.path = path
        self.images = ImageFolder(images_dir)
        self.dialect = dialect
        self.location = location

    @property
    def images_dir(self) -> Path:
        return self.images.root

    @property
    def home(self) -> Path:
        """The folder derived files go in (exports, thumbnails, caches): the SQLite file's folder, or the one
        holding a PostgreSQL store's image folder. Without opening a store: ``parse_location(db).home``."""
        return self.location.home if self.location is not None else Path(self.path).parent

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, images_dir: Path | None = None,
             readonly: bool = False) -> Store:
        """Open (creating when absent, unless ``readonly``) the store at ``path``: a file path,
        ``sqlite:///PATH`` or ``postgresql://...`` (see :mod:`harness.store.url`).

        Errors are one :class:`StoreError` each: a location that names no store, not a store, a schema newer
        than this code, a read-only store opened for writing (:class:`~harness.errors.StoreWriteError`), a
        full disk; for PostgreSQL also a server that cannot be reached, wrong credentials and a database of
        another application, each before anything is written. A store on read-only media opens for reading."""
        location = parse_location(path, images_dir)
        if isinstance(location, PostgresLocation):
            return cls._open_postgres(location, readonly)
        return cls._open_sqlite(location.path, location.images, readonly)

    @classmethod
    def _open_postgres(cls, location: PostgresLocation, readonly: bool) -> Store:
        try:
            from harness.store.backends import postgres
        except ImportError as exc:
            raise StoreError(f"the store {location.display} is PostgreSQL, which needs the psycopg driver "
                             f"({exc}): pip install 'harness[postgres]'") from None
        conn = postgres.connect(location)
        try:
            postgres.check_and_migrate(conn, location, readonly=readonly)
        except BaseException:
            conn.close()
            raise
        return cls(conn, location.display, location.images, dialect=POSTGRES, location=location)

    @classmethod
    def _open_sqlite(cls, db: Path, images_dir: Path | None, readonly: bool) -> Store:
        if readonly:
            if not db.exists():
                raise StoreError(f"store {db} does not exist (pass --db PATH or run `harness run` first)")
            conn = _open_readonly(db)
        else:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(db, check_same_thread=False, timeout=30.0, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                raise store_write_error(exc, db) from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            if not readonly:
                _refuse_newer(conn, db)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                _migrate(conn, db)
            else:
                _check_version(conn, db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _code(exc) in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
                raise StoreError(f"{db} is not a harness store: {exc}") from None
            raise store_write_error(exc, db) if not readonly else StoreError(f"cannot read {db}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, db, images_dir or default_images_dir(db))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, committed on success and rolled back on error (whole: SQLite may already have
        rolled it back itself, e.g. on a full disk, and the original error is what the caller sees). SQLite
        takes its one writer's lock at once (``BEGIN IMMEDIATE``); PostgreSQL locks the rows a statement
        writes, so a read-check-write must be one conditional statement (see ``votes.cast_vote``)."""
        self.conn.execute(self.dialect.begin)
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            _rollback(self.conn)
            raise

    def has_table(self, name: str) -> bool:
        """Whether the store's database has table ``name`` (an older store may lack later tables)."""
        if self.dialect.is_sqlite:
            row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
            return row is not None
        from harness.store.backends.postgres import table_names

        return name in table_names(self.conn)

    def image_path(self, sha256: str, ext: str) -> Path:
        return self.images.path(sha256, ext)

    def put_image(self, data: bytes, ext: str, sha256: str | None = None) -> str:
        """Write image bytes under their SHA-256 (once; the write is atomic). Returns the hash."""
        return self.images.put(data, ext, sha256)


_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26
_STORAGE_CODES = frozenset({_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL,
                            _SQLITE_CANTOPEN, _SQLITE_NOTADB})
"""Result codes that say the file or its medium is the problem, not the migration's statements."""


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of ``exc`` (0 when unknown)."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _rollback(conn: Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")


def display_location(db: Path | str) -> str:
    """How a message names the store ``db``: its path, or its URL without the password."""
    text = os.fspath(db)
    try:
        location = parse_location(db)
    except HarnessError:
        return redact_url(text) if "://" in text else text
    return location.display


def store_write_error(exc: BaseException, db: Path | str, run_id: str | None = None) -> StoreWriteError:
    """One clear error for a failed write to the store at ``db`` (its database or image files), saying what
    happened, that what was committed is kept and, for a run (``run_id``), how to finish it."""
    if isinstance(exc, StoreWriteError):
        return exc
    code = _code(exc) if isinstance(exc, sqlite3.Error) else 0
    errno_ = exc.errno if isinstance(exc, OSError) else None
    if code == _SQLITE_FULL or errno_ in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = "the disk is full (or a file size limit was reached)"
    elif code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN) or errno_ in (errno.EROFS, errno.EACCES,
                                                                                   errno.EPERM):
        what = "the store is read-only (its file or folder cannot be written)"
    elif code == _SQLITE_IOERR or errno_ == errno.EIO:
        what = "an I/O error (the disk may be full or failing)"
    else:
        what = "the write failed"
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    then = (f"finish the run with `harness run --resume {run_id}`" if run_id else "try again")
    return StoreWriteError(f"cannot write to the store {display_location(db)}: {what} ({detail}). Nothing committed was lost; "
                           f"once the store can be written, {then}")


def _open_readonly(db: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL store on read-only media cannot create its shared-memory file; when it
    has no write-ahead log to replay it is opened as immutable instead (the same data)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _code(exc) not in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
            if _code(exc) in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
                raise StoreError(f"{db} is not a harness store: {exc}") from None
            raise StoreError(f"cannot read {db}: {exc}") from None
        wal = db.with_name(db.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"cannot read {db}: it is on read-only media and its write-ahead log {wal} holds "
                             "changes that need a writable folder to read; copy the store (all its files) to a "
                             "writable place") from None
    return sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True, check_same_thread=False,
                           isolation_level=None)


def _refuse_newer(conn: sqlite3.Connection, db: Path) -> None:
    """Refuse a store from a newer harness before anything (even the journal mode) is written to it."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{db} has store schema {row[0]}, newer than this harness understands ({SCHEMA_VERSION}); upgrade"
        )


def _check_version(conn: sqlite3.Connection, db: Path) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        raise StoreError(f"{db} has no schema version; it was not written by the harness")
    if int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{db} has store schema {row[0]}, newer than this harness understands ({SCHEMA_VERSION}); upgrade"
        )
    _shim_missing_columns(conn)


def _shim_missing_columns(conn: sqlite3.Connection) -> None:
    """Let a read-only connection read an older store as if it were migrated, without writing to it: a
    temporary view per table that lacks columns adds them with their declared default (or NULL). Unqualified
    names find the ``temp`` schema first, so every query of the package reads the view. Checked on every
    read-only open, not only for older schema versions: a store written earlier under the same version may
    lack a column added since (the migration adds it on the next write)."""
    statements = [st for st in _schema_statements() if st.lstrip().upper().startswith("CREATE TABLE")]
    for table, columns in _declared_columns(statements).items():
        present = {r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")}
        if not present:
            continue
        missing = [(name, default) for name, _, default in columns if name not in present]
        if missing:
            added = ", ".join(f"{default if default is not None else 'NULL'} AS {name}" for name, default in missing)
            conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {added} FROM main.{table}")


def _migrate(conn: sqlite3.Connection, db: Path) -> None:
    """Bring the store to :data:`SCHEMA_VERSION` in one transaction: every step or none (SQLite's DDL is
    transactional), so a failed migration leaves the store as it was. A newer store is refused unchanged."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        found = int(row[0]) if row is not None else None
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"{db} has store schema {found}, newer than this harness understands ({SCHEMA_VERSION}); upgrade"
            )
        statements = _schema_statements()
        for statement in statements:
            conn.execute(statement)
        _add_missing_columns(conn, statements)
        if found != SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(SCHEMA_VERSION),),
            )
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        _rollback(conn)
        if _code(exc) in _STORAGE_CODES:
            raise
        raise StoreError(f"{db}: migrating the store to schema {SCHEMA_VERSION} failed ({exc}); the store is "
                         "unchanged") from None
    except BaseException:
        _rollback(conn)
        raise


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
