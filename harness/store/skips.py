"""Pairs a voter skipped in the arena: recorded (how often a matchup is passed over says something about
it), never a vote. Nothing here is read by the ratings; a skipped pair cannot be voted on afterwards.

A skip is accepted only for a pair that was served to that voter, is still open (not voted) and has not
expired; it is one ``INSERT ... SELECT`` conditioned on exactly that, so a pair is skipped at most once.
The arena refuses a vote on a skipped pair (checked on its store thread, which serialises both in one
process; across app servers only the pair's own voter could race a skip against a vote, and the vote
would then count as a vote).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.store.core import Store

DDL = [
    """CREATE TABLE IF NOT EXISTS arena_skips (
        pair_id TEXT PRIMARY KEY,
        voter TEXT NOT NULL,
        matchup TEXT NOT NULL,
        category TEXT NOT NULL,
        left_target TEXT NOT NULL,
        right_target TEXT NOT NULL,
        served_at REAL NOT NULL,
        skipped_at REAL NOT NULL,
        client_ms REAL
    )""",
    "CREATE INDEX IF NOT EXISTS arena_skips_voter ON arena_skips(voter)",
]

SkipStatus = Literal["skipped", "unknown", "wrong_voter", "used", "expired"]


@dataclass(frozen=True, slots=True)
class VoterTally:
    """What one voter cookie has done in the arena: votes cast and pairs skipped."""

    votes: int
    skips: int


def record_skip(store: Store, *, pair_id: str, voter: str, skipped_at: float,
                client_ms: float | None = None) -> SkipStatus:
    """Record that ``voter`` skipped the served pair ``pair_id`` (Unix seconds ``skipped_at``; ``client_ms``:
    time the page showed the pair, when it said). ``skipped`` when recorded now; otherwise nothing was
    written and the status says why: ``unknown`` pair, served to another voter (``wrong_voter``), already
    voted or skipped (``used``), or past its expiry (``expired``)."""
    with store.transaction() as conn:
        row = conn.execute(
            "INSERT INTO arena_skips (pair_id, voter, matchup, category, left_target, right_target, served_at,"
            " skipped_at, client_ms) SELECT pair_id, voter, matchup, category, left_target, right_target,"
            " served_at, ?, ? FROM arena_pairs WHERE pair_id=? AND voter=? AND state='open' AND expires_at >= ?"
            " ON CONFLICT DO NOTHING RETURNING pair_id",
            (skipped_at, client_ms, pair_id, voter, skipped_at),
        ).fetchone()
    if row is not None:
        return "skipped"
    pair = store.conn.execute("SELECT voter, state, expires_at FROM arena_pairs WHERE pair_id=?",
                              (pair_id,)).fetchone()
    if pair is None:
        return "unknown"
    if pair[0] != voter:
        return "wrong_voter"
    if pair[1] != "open" or is_skipped(store, pair_id):
        return "used"
    return "expired"


def is_skipped(store: Store, pair_id: str) -> bool:
    return store.conn.execute("SELECT 1 FROM arena_skips WHERE pair_id=?", (pair_id,)).fetchone() is not None


def count_skips(store: Store) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM arena_skips").fetchone()[0])


def voter_tally(store: Store, voter: str) -> VoterTally:
    """Votes and skips of one voter cookie (the page's counter)."""
    votes = store.conn.execute("SELECT COUNT(*) FROM votes WHERE voter=?", (voter,)).fetchone()[0]
    skips = store.conn.execute("SELECT COUNT(*) FROM arena_skips WHERE voter=?", (voter,)).fetchone()[0]
    return VoterTally(int(votes), int(skips))
