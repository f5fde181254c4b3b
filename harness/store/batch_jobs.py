"""Batch jobs a run submitted: written the moment a job is accepted, so a run that stops collects its jobs on
``--resume`` and never submits the same requests twice.

One row per job: its provider id, the target, the requests it carries (``keys_json``: the line key each
request was sent under -> ``[challenge_id, variant, target, sample, attempt]``), the spend bound reserved for
it (USD), when it was submitted (Unix seconds), the provider's last state, and once its results are
recorded, when (``collected_at``) and its turnaround (submit -> all results in hand, ms).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.records import RequestKey
from harness.store.core import Store

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS batch_jobs (
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        target TEXT NOT NULL,
        protocol TEXT NOT NULL,
        submitted_at REAL NOT NULL,
        keys_json TEXT NOT NULL,
        bound_usd REAL NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'submitted',
        collected_at REAL,
        turnaround_ms REAL,
        PRIMARY KEY (run_id, job_id)
    )""",
]


@dataclass(frozen=True)
class BatchJobRow:
    """A submitted job as stored. ``keys`` maps each line key to the request and its attempt number."""

    run_id: str
    job_id: str
    target: str
    protocol: str
    submitted_at: float
    keys: dict[str, tuple[RequestKey, int]]
    bound_usd: float
    state: str
    collected_at: float | None
    turnaround_ms: float | None

    @property
    def collected(self) -> bool:
        return self.collected_at is not None


def _keys_json(keys: Mapping[str, tuple[RequestKey, int]]) -> str:
    return json.dumps({line: [k.challenge_id, k.variant, k.target, k.sample, attempt]
                       for line, (k, attempt) in keys.items()}, sort_keys=True)


def _keys(text: str) -> dict[str, tuple[RequestKey, int]]:
    raw = json.loads(text)
    return {line: (RequestKey(str(v[0]), str(v[1]), str(v[2]), int(v[3])), int(v[4])) for line, v in raw.items()}


def record_submitted(store: Store, run_id: str, job_id: str, target: str, protocol: str, submitted_at: float,
                     keys: Mapping[str, tuple[RequestKey, int]], bound_usd: float) -> None:
    """Persist a job the provider has just accepted (before anything else happens to it)."""
    with store.transaction() as conn:
        conn.execute("INSERT INTO batch_jobs(run_id, job_id, target, protocol, submitted_at, keys_json, bound_usd)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (run_id, job_id, target, protocol, submitted_at, _keys_json(keys), bound_usd))


def set_state(store: Store, run_id: str, job_id: str, state: str) -> None:
    """Remember the provider's latest state of a job (shown by ``harness runs`` and docs; resume re-polls)."""
    with store.transaction() as conn:
        conn.execute("UPDATE batch_jobs SET state=? WHERE run_id=? AND job_id=?", (state, run_id, job_id))


def mark_collected(store: Store, run_id: str, job_id: str, state: str, collected_at: float,
                   turnaround_ms: float) -> None:
    """A job whose every request now has its final attempt in the store."""
    with store.transaction() as conn:
        conn.execute("UPDATE batch_jobs SET state=?, collected_at=?, turnaround_ms=? WHERE run_id=? AND job_id=?",
                     (state, collected_at, turnaround_ms, run_id, job_id))


def _row(r: Sequence[object]) -> BatchJobRow:
    return BatchJobRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]),  # type: ignore[arg-type]
                       _keys(str(r[5])), float(r[6]), str(r[7]),  # type: ignore[arg-type]
                       float(r[8]) if r[8] is not None else None,  # type: ignore[arg-type]
                       float(r[9]) if r[9] is not None else None)  # type: ignore[arg-type]


_COLUMNS = ("run_id, job_id, target, protocol, submitted_at, keys_json, bound_usd, state, collected_at, "
            "turnaround_ms")


def jobs_of(store: Store, run_ids: Sequence[str], *, target: str | None = None) -> list[BatchJobRow]:
    """The jobs of ``run_ids`` (optionally one target's), in submission order. An older store has none."""
    if not run_ids or not store.has_table("batch_jobs"):
        return []
    marks = ", ".join("?" for _ in run_ids)
    sql = f"SELECT {_COLUMNS} FROM batch_jobs WHERE run_id IN ({marks})"
    params: list[object] = list(run_ids)
    if target is not None:
        sql += " AND target=?"
        params.append(target)
    return [_row(r) for r in store.conn.execute(sql + " ORDER BY submitted_at, job_id", params).fetchall()]
