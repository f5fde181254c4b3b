"""What the arena remembers to stay blind against recognition: which outputs each voter (cookie) and each
client address has seen revealed, and a perceptual hash of every output it has shown.

A vote reveals the names behind both images; an image shown again later is then recognisable by anyone who
kept its hash. The arena therefore never shows an identity an output revealed to it before (see
:mod:`harness.arena.recognition`). Client addresses are not stored: an identity is ``ip:`` plus a salted
SHA-256 of the address, the salt drawn once per store (pseudonymous; the IPv4 space is small enough that
whoever holds the store could still test an address).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.store.core import Store

DDL = [
    """CREATE TABLE IF NOT EXISTS arena_seen (
        identity TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (identity, sha256)
    )""",
    # dHash (64 bits, stored signed as SQLite integers are) of each output's blind image, by source SHA-256.
    """CREATE TABLE IF NOT EXISTS arena_output_hashes (
        sha256 TEXT PRIMARY KEY,
        dhash INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS arena_salt (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        salt TEXT NOT NULL
    )""",
]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def address_identity(store: Store, address: str) -> str:
    """The identity of a client address: ``ip:`` and 32 hex characters of a salted SHA-256."""
    row = store.conn.execute("SELECT salt FROM arena_salt WHERE id=1").fetchone()
    if row is None:
        with store.transaction() as conn:
            conn.execute("INSERT INTO arena_salt (id, salt) VALUES (1, ?) ON CONFLICT DO NOTHING",
                         (secrets.token_hex(16),))
        row = store.conn.execute("SELECT salt FROM arena_salt WHERE id=1").fetchone()
    digest = hashlib.sha256(f"{row[0]}\x00{address}".encode()).hexdigest()[:32]
    return f"ip:{digest}"


def remember_revealed(store: Store, identities: Sequence[str], shas: Sequence[str], at: float) -> None:
    """Note that ``shas`` were revealed to every one of ``identities`` (Unix seconds ``at``)."""
    with store.transaction() as conn:
        conn.executemany("INSERT INTO arena_seen (identity, sha256, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                         [(i, s, at) for i in identities for s in shas])


def revealed_to(store: Store, identities: Sequence[str]) -> set[str]:
    """SHA-256s of the outputs revealed to any of ``identities``."""
    if not identities:
        return set()
    marks = ", ".join("?" * len(identities))
    rows = store.conn.execute(f"SELECT DISTINCT sha256 FROM arena_seen WHERE identity IN ({marks})", tuple(identities))
    return {str(r[0]) for r in rows}


@dataclass(frozen=True, slots=True)
class PairSides:
    """Who a served pair went to, whether it is still open, and its two outputs."""

    voter: str
    open: bool
    left_sha: str
    right_sha: str


def pair_sides(store: Store, pair_id: str) -> PairSides | None:
    row = store.conn.execute("SELECT voter, state, left_sha, right_sha FROM arena_pairs WHERE pair_id=?",
                             (pair_id,)).fetchone()
    if row is None:
        return None
    return PairSides(str(row[0]), row[1] == "open", str(row[2]), str(row[3]))


def serving_counts(store: Store) -> Counter[str]:
    """How often each output (by SHA-256) was served on either side of a pair."""
    counts: Counter[str] = Counter()
    for column in ("left_sha", "right_sha"):
        for sha, n in store.conn.execute(f"SELECT {column}, COUNT(*) FROM arena_pairs GROUP BY {column}"):
            counts[str(sha)] += int(n)
    return counts


def output_hashes(store: Store) -> dict[str, int]:
    """Every stored perceptual hash, as unsigned 64-bit integers by SHA-256."""
    return {str(s): _unsigned(int(h)) for s, h in store.conn.execute("SELECT sha256, dhash FROM arena_output_hashes")}


def save_output_hashes(store: Store, hashes: Iterable[tuple[str, int]]) -> None:
    with store.transaction() as conn:
        conn.executemany("INSERT INTO arena_output_hashes (sha256, dhash) VALUES (?, ?)"
                         " ON CONFLICT (sha256) DO UPDATE SET dhash=excluded.dhash",
                         [(s, _signed(h)) for s, h in hashes])
