"""Token buckets in the store, so a rate limit holds across every app server that shares it.

One row per bucket: the tokens it held at ``updated_at`` (Unix seconds, the app servers' clocks) and the
limit it was last spent under. A take is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` over all the
buckets a request spends from, so it is atomic on both backends without an explicit transaction: PostgreSQL
locks each row for the statement (the rows are named in sorted order, so two requests sharing buckets
cannot deadlock), SQLite has one writer. A new bucket starts full, as in memory; a refill never counts time
backwards (a host whose clock lags another's adds nothing, it does not drain the bucket).

A bucket that has refilled completely says nothing a new row would not, so :func:`prune` deletes those:
the table holds only clients active within about one burst's refill time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.store.core import Store

DDL = [
    """CREATE TABLE IF NOT EXISTS arena_ratelimits (
        bucket TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated_at REAL NOT NULL,
        per_minute REAL NOT NULL,
        burst INTEGER NOT NULL,
        granted INTEGER NOT NULL DEFAULT 1
    )""",
]


@dataclass(frozen=True, slots=True)
class Spend:
    """One token to take from ``bucket`` (a name such as ``ip_votes:ip:127.0.0.1``) under a limit of
    ``per_minute`` tokens refilled per minute and at most ``burst`` held."""

    bucket: str
    per_minute: float
    burst: int


@dataclass(frozen=True, slots=True)
class Taken:
    """What a take did to one bucket: ``granted`` a token, or not; ``wait_s`` until one is available."""

    bucket: str
    granted: bool
    wait_s: float


_OLD, _NEW = "arena_ratelimits", "excluded"
_ELAPSED = f"(CASE WHEN {_NEW}.updated_at > {_OLD}.updated_at THEN {_NEW}.updated_at - {_OLD}.updated_at ELSE 0 END)"
_RAW = f"({_OLD}.tokens + {_ELAPSED} * {_NEW}.per_minute / 60.0)"
_REFILL = f"(CASE WHEN {_RAW} < {_NEW}.burst THEN {_RAW} ELSE {_NEW}.burst END)"
_TAKE_HEAD = "INSERT INTO arena_ratelimits (bucket, tokens, updated_at, per_minute, burst, granted) VALUES "
_TAKE_TAIL = (
    f" ON CONFLICT (bucket) DO UPDATE SET"
    f" tokens = CASE WHEN {_REFILL} >= 1 THEN {_REFILL} - 1 ELSE {_REFILL} END,"
    f" granted = CASE WHEN {_REFILL} >= 1 THEN 1 ELSE 0 END,"
    f" updated_at = CASE WHEN {_NEW}.updated_at > {_OLD}.updated_at THEN {_NEW}.updated_at ELSE {_OLD}.updated_at END,"
    f" per_minute = {_NEW}.per_minute, burst = {_NEW}.burst"
    " RETURNING bucket, granted, tokens, per_minute"
)


def take(store: Store, spends: Sequence[Spend], now: float) -> list[Taken]:
    """Take one token from each bucket of ``spends`` at ``now`` (Unix seconds), each independently (a
    bucket that is empty does not stop the others from being spent, as with in-memory buckets)."""
    unique = sorted({s.bucket: s for s in spends}.values(), key=lambda s: s.bucket)
    if not unique:
        return []
    sql = _TAKE_HEAD + ", ".join(["(?, ?, ?, ?, ?, 1)"] * len(unique)) + _TAKE_TAIL
    params: list[object] = []
    for s in unique:
        params.extend((s.bucket, float(s.burst - 1), now, float(s.per_minute), s.burst))
    rows = store.conn.execute(sql, params).fetchall()
    out = []
    for bucket, granted, tokens, per_minute in rows:
        wait = 0.0 if granted else (1.0 - float(tokens)) / (float(per_minute) / 60.0)
        out.append(Taken(str(bucket), bool(granted), max(0.0, wait)))
    return out


def prune(store: Store, now: float) -> int:
    """Delete the buckets that have refilled completely by ``now``; returns how many."""
    cur = store.conn.execute("DELETE FROM arena_ratelimits WHERE tokens + (? - updated_at) * per_minute / 60.0 >= burst",
                             (now,))
    return max(0, int(cur.rowcount))


def count(store: Store) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM arena_ratelimits").fetchone()[0])
