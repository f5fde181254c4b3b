"""Pairwise votes: written by the arena app (and by simulated voters or imports), read by the ratings.

A vote records which side each output was shown on, so position bias can be measured, and converts to the
field's battle format (``model_a`` is the left output, ``model_b`` the right)::

    outcome    winner
    left       model_a
    right      model_b
    tie        tie
    both_bad   tie (bothbad)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.store.core import Store

OUTCOMES = ("left", "right", "tie", "both_bad")
OUTCOME_TO_WINNER = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}
WINNER_TO_OUTCOME = {v: k for k, v in OUTCOME_TO_WINNER.items()}

DDL = [
    """CREATE TABLE IF NOT EXISTS votes (
        id INTEGER PRIMARY KEY,
        vote_uid TEXT NOT NULL UNIQUE,
        pair_id TEXT UNIQUE,
        run_id TEXT,
        challenge_id TEXT,
        variant TEXT,
        category TEXT,
        kind TEXT,
        left_target TEXT NOT NULL,
        right_target TEXT NOT NULL,
        left_model TEXT NOT NULL,
        right_model TEXT NOT NULL,
        left_attempt_id INTEGER,
        right_attempt_id INTEGER,
        left_sha TEXT,
        right_sha TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('left', 'right', 'tie', 'both_bad')),
        voter TEXT,
        source TEXT NOT NULL,
        shown_at REAL,
        voted_at REAL NOT NULL,
        decision_ms REAL
    )""",
    "CREATE INDEX IF NOT EXISTS votes_time ON votes(voted_at)",
]


@dataclass(frozen=True, slots=True)
class Vote:
    """One pairwise judgement. ``pair_id`` is the id of the served pair (unique: a pair is voted once);
    ``source`` is ``arena``, ``simulated`` or ``import``. Times are Unix seconds; ``decision_ms`` is the time
    from the pair being shown to the vote."""

    vote_uid: str
    left_target: str
    right_target: str
    left_model: str
    right_model: str
    outcome: str
    voted_at: float
    source: str
    pair_id: str | None = None
    run_id: str | None = None
    challenge_id: str | None = None
    variant: str | None = None
    category: str | None = None
    kind: str | None = None
    left_attempt_id: int | None = None
    right_attempt_id: int | None = None
    left_sha: str | None = None
    right_sha: str | None = None
    voter: str | None = None
    shown_at: float | None = None
    decision_ms: float | None = None


_COLUMNS = (
    "vote_uid", "pair_id", "run_id", "challenge_id", "variant", "category", "kind", "left_target",
    "right_target", "left_model", "right_model", "left_attempt_id", "right_attempt_id", "left_sha",
    "right_sha", "outcome", "voter", "source", "shown_at", "voted_at", "decision_ms",
)
_INSERT = f"INSERT OR IGNORE INTO votes ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def _row(v: Vote) -> tuple[object, ...]:
    if v.outcome not in OUTCOMES:
        raise ValueError(f"vote outcome must be one of {OUTCOMES}, not {v.outcome!r}")
    return tuple(getattr(v, c) for c in _COLUMNS)


def insert_vote(store: Store, vote: Vote) -> bool:
    """Store one vote; False when its ``vote_uid`` or ``pair_id`` was already stored (nothing written)."""
    with store.transaction() as conn:
        cur = conn.execute(_INSERT, _row(vote))
        return cur.rowcount == 1


def insert_votes(store: Store, votes: Sequence[Vote]) -> int:
    """Store many votes in one transaction; returns how many were new."""
    with store.transaction() as conn:
        before = conn.total_changes
        conn.executemany(_INSERT, [_row(v) for v in votes])
        return conn.total_changes - before


def count_votes(store: Store) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0])


def battles_frame(
    store: Store,
    *,
    by: str = "model",
    category: str | None = None,
    run_ids: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Votes in battle format, oldest first.

    Columns: ``model_a``, ``model_b``, ``winner``, ``category``, ``kind``, ``challenge``, ``voter``,
    ``tstamp``, ``source``, ``decision_ms``. ``by="target"`` rates targets (model@provider) instead of models.
    """
    if by not in ("model", "target"):
        raise ValueError("by must be 'model' or 'target'")
    a, b = (("left_model", "right_model") if by == "model" else ("left_target", "right_target"))
    where: list[str] = []
    args: list[object] = []
    if category is not None:
        where.append("category = ?")
        args.append(category)
    if run_ids:
        where.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
        args.extend(run_ids)
    if sources:
        where.append(f"source IN ({', '.join('?' * len(sources))})")
        args.extend(sources)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cur = store.conn.execute(
        f"SELECT {a}, {b}, outcome, category, kind, challenge_id, voter, voted_at, source, decision_ms"
        f" FROM votes{clause} ORDER BY voted_at, id",
        args,
    )
    frame = pd.DataFrame.from_records(
        cur.fetchall(),
        columns=["model_a", "model_b", "outcome", "category", "kind", "challenge", "voter", "tstamp", "source",
                 "decision_ms"],
    )
    frame["winner"] = frame.pop("outcome").map(OUTCOME_TO_WINNER)
    return frame
