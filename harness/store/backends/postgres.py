"""The PostgreSQL backend: a connection that speaks the store's SQL, and opening (checking, migrating) a
database for the store.

A :class:`PgConnection` offers what the store modules use of a ``sqlite3`` connection (``execute``,
``executemany``, rows readable by index and by name, ``in_transaction``), translating placeholders on the
way (:func:`~harness.store.dialect.postgres_sql`). It runs in autocommit mode with explicit ``BEGIN`` /
``COMMIT`` from :meth:`~harness.store.core.Store.transaction`, like the SQLite store, so a write is one
transaction on either backend.

Losing the server (a network cut, a restart, a full disk on its side) surfaces as one
:class:`~harness.errors.StoreWriteError` naming the store (its password hidden), which the runner and the
CLI already report as "nothing committed was lost; resume".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq

from harness.errors import StoreWriteError
from harness.store.dialect import postgres_sql, postgres_type
from harness.store.url import PostgresLocation

CONNECT_TIMEOUT_S = 10
"""How long opening a connection may take before the store says the server cannot be reached."""


class Row(tuple[Any, ...]):
    """A result row readable by position and by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    index = {c.name: i for i, c in enumerate(description)} if description else {}

    def make(values: Sequence[Any]) -> Row:
        return Row(values, index)

    return make


class PgCursor:
    """The part of a DB-API cursor the store reads."""

    def __init__(self, cursor: psycopg.Cursor[Any], location: str) -> None:
        self._cursor = cursor
        self._location = location

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        with _server_errors(self._location):
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with _server_errors(self._location):
            return self._cursor.fetchall()

    def fetchmany(self, size: int) -> list[Any]:
        with _server_errors(self._location):
            return self._cursor.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _server_errors:
    """Turn a lost or failing server into one clear :class:`StoreWriteError`."""

    def __init__(self, location: str) -> None:
        self.location = location

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, psycopg.OperationalError):
            raise StoreWriteError(
                f"the PostgreSQL store {self.location} failed: {_reason(exc)}. Nothing committed was lost; "
                "once the server is reachable, try again (a run: `harness run --resume RUN_ID`)") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _plain(params: Sequence[Any]) -> tuple[Any, ...]:
    """Parameters as the store's columns hold them: a bool is an integer 0/1 (SQLite has no booleans, so the
    store's flags are ``INTEGER`` columns on both backends; psycopg would send a PostgreSQL ``boolean``). A
    NUL character, which PostgreSQL's text cannot hold, becomes U+FFFD (a provider's error body may carry
    one), so recording an attempt never fails on it."""
    return tuple(int(v) if isinstance(v, bool) else v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v
                 else v for v in params)


class PgConnection:
    """A psycopg connection in autocommit mode that takes the store's ``?`` SQL."""

    def __init__(self, raw: psycopg.Connection[Any], location: str) -> None:
        self.raw = raw
        self.location = location

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        cursor = self.raw.cursor()
        with _server_errors(self.location):
            if params:
                cursor.execute(postgres_sql(sql), _plain(params))
            else:  # no placeholders: the text goes as written (a literal % stays single)
                cursor.execute(sql.encode())
        return PgCursor(cursor, self.location)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        cursor = self.raw.cursor()
        batch = list(rows)
        with _server_errors(self.location):
            if batch:
                cursor.executemany(postgres_sql(sql), [_plain(r) for r in batch])
        return PgCursor(cursor, self.location)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)

    def close(self) -> None:
        self.raw.close()


def connect(location: PostgresLocation, *, application_name: str = "harness") -> PgConnection:
    """A connection to the store's database, or one clear :class:`StoreError` (cannot connect, wrong
    credentials, no such database) that never shows the password."""
    from harness.store.core import StoreError

    try:
        raw = psycopg.connect(location.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name=application_name, row_factory=_row_factory)
    except psycopg.Error as exc:
        reason = _reason(exc)
        if "password authentication failed" in reason or "no password supplied" in reason:
            hint = "check the user and password in the URL (or PGPASSWORD / ~/.pgpass)"
        elif "does not exist" in reason:
            hint = "create the database first (createdb) or name an existing one"
        else:
            hint = "check the host, port and that the server is running and accepts connections"
        raise StoreError(f"cannot connect to the PostgreSQL store {location.display}: {reason}; {hint}. Nothing "
                         "was written") from None
    return PgConnection(raw, location.display)


def table_names(conn: PgConnection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                        " AND table_type IN ('BASE TABLE', 'VIEW')").fetchall()
    return {str(r[0]) for r in rows}


def column_names(conn: PgConnection, table: str) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                        " AND table_name = ? ORDER BY ordinal_position", (table,)).fetchall()
    return [str(r[0]) for r in rows]


def columns_by_table(conn: PgConnection) -> dict[str, set[str]]:
    """Every table's columns in the current schema, in one query (opening a current store costs three)."""
    present: dict[str, set[str]] = {}
    for table, column in conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                                      " WHERE table_schema = current_schema()").fetchall():
        present.setdefault(str(table), set()).add(str(column))
    return present


MIGRATION_LOCK = (0x68726E73, 0)
"""Advisory lock key (``"hrns"``, 0) that serialises migrations: several app servers starting at once."""


def check_and_migrate(conn: PgConnection, location: PostgresLocation, *, readonly: bool) -> None:
    """Refuse a database the store cannot use, before writing anything; then (unless ``readonly``) bring it
    to the code's schema in one transaction (PostgreSQL's DDL is transactional)."""
    from harness.store.core import SCHEMA_VERSION, StoreError, _declared_columns, _schema_statements
    from harness.store.dialect import postgres_ddl

    def refuse_if_unusable() -> int | None:
        tables = table_names(conn)
        if "meta" not in tables:
            if tables:
                shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                raise StoreError(f"the PostgreSQL database {location.display} holds tables of another application "
                                 f"({shown}) and no harness store; name an empty database (or schema) or one "
                                 "the harness created. Nothing was written")
            if readonly:
                raise StoreError(f"the PostgreSQL database {location.display} holds no harness store yet "
                                 "(run `harness run --db URL` or `harness store migrate --to URL` first)")
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise StoreError(f"the PostgreSQL database {location.display} has a meta table without a harness "
                             "schema version: it was not written by the harness. Nothing was written")
        found = int(row[0])
        if found > SCHEMA_VERSION:
            raise StoreError(f"{location.display} has store schema {found}, newer than this harness understands "
                             f"({SCHEMA_VERSION}); upgrade. Nothing was written")
        return found

    found = refuse_if_unusable()
    statements = _schema_statements()
    declared = _declared_columns([s for s in statements if s.lstrip().upper().startswith("CREATE TABLE")])
    if readonly:
        _shim_missing_columns(conn, declared)
        conn.execute("SET default_transaction_read_only = on")  # as SQLite's mode=ro: a write is refused
        return
    if found == SCHEMA_VERSION:
        present = columns_by_table(conn)
        if all({name for name, _, _ in columns} <= present.get(table, set()) for table, columns in declared.items()):
            return
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", MIGRATION_LOCK)
        found = refuse_if_unusable()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in statements:
            conn.execute(postgres_ddl(statement))
        for table, columns in declared.items():
            have = set(column_names(conn, table))
            for name, decl, default in columns:
                if name not in have:
                    default_sql = f" DEFAULT {default}" if default is not None else ""
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {postgres_type(decl)}{default_sql}")
        if found != SCHEMA_VERSION:
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"{location.display}: migrating the store to schema {SCHEMA_VERSION} failed "
                         f"({_reason(exc)}); the store is unchanged") from None
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _shim_missing_columns(conn: PgConnection, declared: dict[str, list[tuple[str, str, str | None]]]) -> None:
    """Read an older store as if migrated without writing to it: a temporary view per table that lacks
    columns (PostgreSQL searches the session's temporary schema first). Each added column carries its
    declared type, so a bare ``NULL`` is not read as text (``COALESCE`` with an integer would fail)."""
    tables = table_names(conn)
    schema = str(conn.execute("SELECT current_schema()").fetchone()[0])
    for table, columns in declared.items():
        if table not in tables:
            continue
        present = set(column_names(conn, table))
        missing = [(name, decl, default) for name, decl, default in columns if name not in present]
        if missing:
            added = ", ".join(f"CAST({default if default is not None else 'NULL'} AS {postgres_type(decl)}) AS {name}"
                              for name, decl, default in missing)
            conn.execute(f'CREATE TEMP VIEW {table} AS SELECT *, {added} FROM "{schema}".{table}')
