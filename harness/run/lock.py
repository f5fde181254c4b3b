"""Run locks: a run being executed is held by exactly one live process, and the hold ends with the process.

Why: two ``harness run --resume RID`` at once would send the same requests twice, and a run whose process
died (``kill -9``, power loss) must read as interrupted, not ``running`` forever. A status column cannot say
either, because a dead process never updates it; a lock the operating system releases when the process dies
can.

:class:`RunLocks` is the interface a store backend provides. The SQLite store uses :class:`FileRunLocks`:
one file ``<db>.run-<id>.lock`` beside the database, locked with ``flock(2)``, which the kernel releases when
the last descriptor closes, including on ``kill -9``. A PostgreSQL store uses :class:`AdvisoryRunLocks`: a
session advisory lock (``pg_try_advisory_lock``) taken on a connection dedicated to the run, which the server
releases when that session ends: when the process exits or dies, its socket closes and the server ends the
session (see https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS). Runs on several
hosts therefore exclude each other through the one database.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import RunLockedError
from harness.store.core import store_write_error

if TYPE_CHECKING:
    from harness.store.core import Store

ACQUIRE_PATIENCE_S = 1.0
"""How long :meth:`FileRunLocks.acquire` retries a busy lock: a reader checking liveness holds a shared lock
for microseconds, a run holds it for its whole life, so a short patience tells them apart."""

_HELD_FDS: set[int] = set()
"""Descriptors of locks this process holds. A forked child closes its copies (see :func:`_close_in_child`)
so a helper process that outlives the run cannot keep the run locked; the kernel keeps the parent's lock."""


def _close_in_child() -> None:
    for fd in list(_HELD_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_FDS.clear()


os.register_at_fork(after_in_child=_close_in_child)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run: process id, host name, and since when (Unix seconds, UTC)."""

    pid: int
    host: str
    since: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"process {self.pid} on {self.host} since {when}"


class HeldRunLock(abc.ABC):
    """A run lock this process holds; release it when the run ends (process death releases it too)."""

    holder: LockHolder

    @abc.abstractmethod
    def release(self) -> None:
        """Give the run up (idempotent)."""

    def __enter__(self) -> HeldRunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunLocks(abc.ABC):
    """The run locks of one store."""

    @abc.abstractmethod
    def acquire(self, run_id: str) -> HeldRunLock:
        """Hold ``run_id`` for this process, or raise :class:`RunLockedError` naming the live holder."""

    @abc.abstractmethod
    def holder(self, run_id: str) -> LockHolder | None:
        """The live process holding ``run_id``, or ``None`` when no live process does."""

    @abc.abstractmethod
    def last_holder(self, run_id: str) -> LockHolder | None:
        """Who held ``run_id`` last, alive or not (``None`` when unknown): says when a dead run started."""


def _lock_name(run_id: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._-]{1,100}", run_id):
        return run_id
    import hashlib

    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def _read_holder(fd: int) -> LockHolder | None:
    try:
        raw = os.pread(fd, 4096, 0)
        data: dict[str, Any] = json.loads(raw.decode())
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]), since=float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _FileLock(HeldRunLock):
    def __init__(self, fd: int, path: Path, holder: LockHolder) -> None:
        self._fd: int | None = fd
        self._path = path
        self.holder = holder

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD_FDS.discard(fd)
        with contextlib.suppress(OSError):
            os.unlink(self._path)
        os.close(fd)


class FileRunLocks(RunLocks):
    """``flock(2)`` on ``<db>.run-<id>.lock`` beside the SQLite file ``db``.

    The file holds the holder as JSON. It is removed on release; a process that died leaves it behind,
    unlocked, and its content then says when that run was last started.
    """

    def __init__(self, db: Path) -> None:
        self.db = db

    def path(self, run_id: str) -> Path:
        return self.db.with_name(f"{self.db.name}.run-{_lock_name(run_id)}.lock")

    def acquire(self, run_id: str) -> HeldRunLock:
        path = self.path(run_id)
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise store_write_error(exc, self.db) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = _read_holder(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                who = held.describe() if held else "another process"
                raise RunLockedError(f"run {run_id} is being run by {who}; wait for it to end or stop it, "
                                     f"then `harness run --resume {run_id}`") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed between our open and our lock: lock the new file instead
                os.close(fd)
                continue
            holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), since=time.time())
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    os.close(fd)
                    raise store_write_error(exc, self.db) from None
            _HELD_FDS.add(fd)
            return _FileLock(fd, path, holder)

    def holder(self, run_id: str) -> LockHolder | None:
        try:
            fd = os.open(self.path(run_id), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(fd) or LockHolder(pid=0, host="?", since=0.0)
            except OSError:
                return None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def last_holder(self, run_id: str) -> LockHolder | None:
        try:
            fd = os.open(self.path(run_id), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)


_ADVISORY_CLASS = 0x68726E72
"""First key of the harness's run locks (``"hrnr"``); the second is 31 bits of the run id's SHA-256. The
holder's row in ``meta`` names the run, so a collision of the second key can only make a run wait, never
let two processes run one run."""


def _advisory_key(run_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class _AdvisoryLock(HeldRunLock):
    def __init__(self, conn: Any, key: int, holder: LockHolder) -> None:
        self._conn: Any = conn
        self._key = key
        self.holder = holder

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        _HELD_FDS.discard(conn.raw.fileno())
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_advisory_unlock(?, ?)", (_ADVISORY_CLASS, self._key))  # at once, not when
        with contextlib.suppress(Exception):                                                # the server notices
            conn.close()  # ending the session releases its advisory locks in any case


class AdvisoryRunLocks(RunLocks):
    """Session advisory locks in the store's PostgreSQL database; the holder (pid, host, since) is written to
    ``meta`` under ``run_lock:<run id>`` when the lock is taken, and is live while the lock is granted."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _granted(self, run_id: str) -> bool:
        row = self.store.conn.execute(
            "SELECT 1 FROM pg_locks WHERE locktype='advisory' AND granted AND objsubid=2"
            " AND database=(SELECT oid FROM pg_database WHERE datname=current_database())"
            " AND classid::bigint=? AND objid::bigint=?", (_ADVISORY_CLASS, _advisory_key(run_id))).fetchone()
        return row is not None

    def acquire(self, run_id: str) -> HeldRunLock:
        from harness.store.backends.postgres import connect

        assert self.store.location is not None
        conn = connect(self.store.location, application_name=f"harness run {run_id}"[:63])
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(?, ?)", (_ADVISORY_CLASS, _advisory_key(run_id))).fetchone()
            if got[0]:
                break
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            conn.close()
            held = self.last_holder(run_id)
            who = held.describe() if held else "another process"
            raise RunLockedError(f"run {run_id} is being run by {who}; wait for it to end or stop it, "
                                 f"then `harness run --resume {run_id}`")
        holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), since=time.time())
        try:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                         (f"run_lock:{run_id}", json.dumps(asdict(holder))))
        except BaseException:
            conn.close()
            raise
        _HELD_FDS.add(conn.raw.fileno())
        return _AdvisoryLock(conn, _advisory_key(run_id), holder)

    def holder(self, run_id: str) -> LockHolder | None:
        if not self._granted(run_id):
            return None
        return self.last_holder(run_id) or LockHolder(pid=0, host="?", since=0.0)

    def last_holder(self, run_id: str) -> LockHolder | None:
        row = self.store.conn.execute("SELECT value FROM meta WHERE key=?", (f"run_lock:{run_id}",)).fetchone()
        if row is None:
            return None
        try:
            data: dict[str, Any] = json.loads(row[0])
            return LockHolder(pid=int(data["pid"]), host=str(data["host"]), since=float(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None


def locks_for(store: Store) -> RunLocks:
    """The run locks of ``store``: file locks beside a SQLite file, advisory locks in a PostgreSQL database."""
    if store.location is not None:
        return AdvisoryRunLocks(store)
    assert isinstance(store.path, Path)
    return FileRunLocks(store.path)
