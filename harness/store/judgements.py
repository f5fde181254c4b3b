"""Verdicts of vision-model judges on pairs of outputs: one row per question asked, its raw answer kept.

A row is one ordered pair (``first`` shown as "Image A", ``second`` as "Image B") asked of one ``judge``
(``MODEL@PROVIDER``) under one rubric (``kind/vN``). ``verdict`` is ``first``, ``second``, ``tie``,
``unparseable`` (the answer had no verdict the rubric's parser could read: kept, never guessed) or ``error``
(the request failed; ``error`` says why). The cache key is (judge, rubric, first_sha, second_sha, try_no):
the same two images asked of the same judge under the same rubric are never paid for twice, whichever run
asks; ``try_no`` counts re-asks of an unparseable answer. ``cost_usd`` is what the provider reported (USD),
``latency_ms`` the request's wall time. The table is the judges' own: judge verdicts never enter ``votes``
(so never a human board) unless a user asks for them as votes of the ``judge`` class.

Written in the SQL both backends share (:mod:`harness.store.dialect` turns the DDL into PostgreSQL's words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import pandas as pd

from harness.store.core import Store

VERDICTS = ("first", "second", "tie", "unparseable", "error")

DDL = [
    f"""CREATE TABLE IF NOT EXISTS judgements (
        id INTEGER PRIMARY KEY,
        judge TEXT NOT NULL,
        rubric TEXT NOT NULL,
        first_sha TEXT NOT NULL,
        second_sha TEXT NOT NULL,
        try_no INTEGER NOT NULL DEFAULT 0,
        verdict TEXT NOT NULL CHECK (verdict IN ({", ".join(repr(v) for v in VERDICTS)})),
        run_id TEXT NOT NULL,
        challenge_id TEXT NOT NULL,
        variant TEXT NOT NULL,
        category TEXT,
        kind TEXT,
        first_attempt_id INTEGER,
        second_attempt_id INTEGER,
        first_target TEXT NOT NULL,
        second_target TEXT NOT NULL,
        first_model TEXT NOT NULL,
        second_model TEXT NOT NULL,
        raw_answer TEXT,
        error TEXT,
        cost_usd REAL,
        latency_ms REAL,
        judged_at REAL NOT NULL,
        UNIQUE (judge, rubric, first_sha, second_sha, try_no)
    )""",
    "CREATE INDEX IF NOT EXISTS judgements_run ON judgements(run_id, judge)",
]


@dataclass(frozen=True)
class Judgement:
    """One question asked of a judge and its answer (see the module's docstring for each column)."""

    judge: str
    rubric: str
    first_sha: str
    second_sha: str
    try_no: int
    verdict: str
    run_id: str
    challenge_id: str
    variant: str
    category: str | None
    kind: str | None
    first_attempt_id: int | None
    second_attempt_id: int | None
    first_target: str
    second_target: str
    first_model: str
    second_model: str
    raw_answer: str | None
    error: str | None
    cost_usd: float | None
    latency_ms: float | None
    judged_at: float


_COLUMNS = [f.name for f in fields(Judgement)]
_INSERT = (f"INSERT INTO judgements ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
           "ON CONFLICT DO NOTHING")


def insert_judgements(store: Store, rows: Sequence[Judgement]) -> int:
    """Store judgements in one transaction; returns how many were new (a cached question is not stored
    twice)."""
    with store.transaction() as conn:
        return sum(conn.execute(_INSERT, astuple(r)).rowcount for r in rows)


def cached(store: Store, judge: str, rubric: str) -> dict[tuple[str, str], Judgement]:
    """The latest try of every question already asked of ``judge`` under ``rubric``, by (first, second)
    image hash."""
    cur = store.conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM judgements WHERE judge=? AND rubric=? ORDER BY try_no", (judge, rubric))
    return {(r.first_sha, r.second_sha): r for r in (Judgement(*row) for row in cur.fetchall())}


def spent(store: Store, run_id: str) -> float:
    """USD the judges reported for questions asked on behalf of ``run_id``."""
    row = store.conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM judgements WHERE run_id=?", (run_id,)).fetchone()
    return float(row[0])


def judgements_frame(store: Store, run_ids: Sequence[str] | None = None, judge: str | None = None) -> pd.DataFrame:
    """Every stored judgement (of ``run_ids``, of ``judge``), oldest first, one column per field."""
    where: list[str] = []
    args: list[object] = []
    if run_ids:
        where.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
        args.extend(run_ids)
    if judge:
        where.append("judge=?")
        args.append(judge)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cur = store.conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM judgements{clause} ORDER BY judged_at, id", args)
    return pd.DataFrame.from_records(cur.fetchall(), columns=_COLUMNS)
