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
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pandas as pd

from harness.store.core import Store

OUTCOMES = ("left", "right", "tie", "both_bad")
OUTCOME_TO_WINNER = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}
WINNER_TO_OUTCOME = {v: k for k, v in OUTCOME_TO_WINNER.items()}

DDL: list[str] = [
    "<votes table: generated from Vote below>",
    "CREATE INDEX IF NOT EXISTS votes_time ON votes(voted_at)",
    # The arena counts a voter's votes on every page (harness.store.skips.voter_tally).
    "CREATE INDEX IF NOT EXISTS votes_voter ON votes(voter)",
    # Pairs the arena served: the server-side half of every blind pair (which output is on which side, who
    # it was served to, until when it may be voted on). A pair is voted at most once (``state``).
    """CREATE TABLE IF NOT EXISTS arena_pairs (
        pair_id TEXT PRIMARY KEY,
        voter TEXT NOT NULL,
        matchup TEXT NOT NULL,
        run_id TEXT NOT NULL,
        right_run_id TEXT NOT NULL,
        challenge_id TEXT NOT NULL,
        variant TEXT NOT NULL,
        category TEXT NOT NULL,
        kind TEXT NOT NULL,
        left_target TEXT NOT NULL,
        right_target TEXT NOT NULL,
        left_model TEXT NOT NULL,
        right_model TEXT NOT NULL,
        left_provider TEXT NOT NULL,
        right_provider TEXT NOT NULL,
        left_attempt_id INTEGER NOT NULL,
        right_attempt_id INTEGER NOT NULL,
        left_sha TEXT NOT NULL,
        right_sha TEXT NOT NULL,
        served_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'voted')),
        voted_at REAL,
        client_ms REAL
    )""",
    "CREATE INDEX IF NOT EXISTS arena_pairs_targets ON arena_pairs(left_target, right_target)",
    # Random, unguessable image ids of served pairs (and their reference images), mapped to stored images
    # and the canvas (pixels) the two images of a pair share; NULL canvas: the image's own blind size.
    """CREATE TABLE IF NOT EXISTS arena_images (
        image_id TEXT PRIMARY KEY,
        pair_id TEXT NOT NULL REFERENCES arena_pairs(pair_id),
        role TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        ext TEXT NOT NULL,
        canvas_width INTEGER,
        canvas_height INTEGER
    )""",
]


def _column(sql: str, default: Any = None, *, frame: str | None = None) -> Any:
    """A :class:`Vote` field that is a ``votes`` column declared ``sql`` (SQLite's words; the PostgreSQL
    backend translates them), read into battle frames as ``frame`` when given."""
    return field(default=default, metadata={"sql": sql, "frame": frame})


@dataclass(frozen=True, slots=True)
class Vote:
    """One pairwise judgement, and the one declaration of the ``votes`` table: each field is a column (its
    SQL type in the field's metadata), so the DDL, the insert and the battle frame are all derived from it.

    ``pair_id`` is the id of the served pair (unique: a pair is voted once); ``source`` is ``arena``,
    ``simulated`` or ``import``. Its three times: ``voted_at`` and ``shown_at`` are Unix seconds,
    ``decision_ms`` the milliseconds from the pair being shown to the vote (:meth:`for_pair` derives it).
    ``run_id`` is the run of the left output (an arena pair may take its right output from another run of
    the same challenge; ``arena_pairs`` records that run). ``anony``: 1 when the voter could not know the
    models (a blind arena vote; FastChat's ``anony``), 0 when they could, None unknown (an import without
    the field, or an arena vote stored before the column existed: frames read those as 1)."""

    vote_uid: str = _column("TEXT NOT NULL UNIQUE")
    left_target: str = _column("TEXT NOT NULL")
    right_target: str = _column("TEXT NOT NULL")
    left_model: str = _column("TEXT NOT NULL", frame="model_a")
    right_model: str = _column("TEXT NOT NULL", frame="model_b")
    outcome: str = _column(f"TEXT NOT NULL CHECK (outcome IN ({', '.join(repr(o) for o in OUTCOMES)}))")
    voted_at: float = _column("REAL NOT NULL", frame="tstamp")
    source: str = _column("TEXT NOT NULL", frame="source")
    pair_id: str | None = _column("TEXT UNIQUE")
    run_id: str | None = _column("TEXT")
    challenge_id: str | None = _column("TEXT", frame="challenge")
    variant: str | None = _column("TEXT")
    category: str | None = _column("TEXT", frame="category")
    kind: str | None = _column("TEXT", frame="kind")
    left_attempt_id: int | None = _column("INTEGER")
    right_attempt_id: int | None = _column("INTEGER")
    left_sha: str | None = _column("TEXT")
    right_sha: str | None = _column("TEXT")
    voter: str | None = _column("TEXT", frame="voter")
    shown_at: float | None = _column("REAL")
    decision_ms: float | None = _column("REAL", frame="decision_ms")
    anony: int | None = _column("INTEGER CHECK (anony IN (0, 1))", frame="anony")

    @classmethod
    def for_pair(cls, pair: ServedPair, *, vote_uid: str, outcome: str, voted_at: float) -> Vote:
        """The blind arena vote on a served ``pair``: sides, outputs and times all come from the pair."""
        return cls(
            vote_uid=vote_uid, pair_id=pair.pair_id, left_target=pair.left.target, right_target=pair.right.target,
            left_model=pair.left.model, right_model=pair.right.model, outcome=outcome, voted_at=voted_at,
            source="arena", run_id=pair.left.run_id, challenge_id=pair.challenge_id, variant=pair.variant,
            category=pair.category, kind=pair.kind, left_attempt_id=pair.left.attempt_id,
            right_attempt_id=pair.right.attempt_id, left_sha=pair.left.sha256, right_sha=pair.right.sha256,
            voter=pair.voter, shown_at=pair.served_at, decision_ms=max(0.0, (voted_at - pair.served_at) * 1000.0),
            anony=1,
        )


_FIELDS = fields(Vote)
_COLUMNS = tuple(f.name for f in _FIELDS)
DDL[0] = ("CREATE TABLE IF NOT EXISTS votes (\n        id INTEGER PRIMARY KEY,\n        "
          + ",\n        ".join(f"{f.name} {f.metadata['sql']}" for f in _FIELDS) + "\n    )")
_INSERT = (f"INSERT INTO votes ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
           " ON CONFLICT DO NOTHING")
_ANONY = "COALESCE(v.anony, CASE WHEN v.source = 'arena' THEN 1 END)"
"""An arena vote stored before the ``anony`` column existed was blind all the same."""
_FRAME = tuple((f.name, str(f.metadata["frame"])) for f in _FIELDS if f.metadata["frame"])
"""``(column, battle-frame name)`` of the columns a battle frame carries besides the two sides and winner."""


def _row(v: Vote) -> tuple[object, ...]:
    if v.outcome not in OUTCOMES:
        raise ValueError(f"vote outcome must be one of {OUTCOMES}, not {v.outcome!r}")
    return tuple(getattr(v, c) for c in _COLUMNS)


def insert_vote(store: Store, vote: Vote) -> bool:
    """Store one vote; False when its ``vote_uid`` or ``pair_id`` was already stored (nothing written)."""
    with store.transaction() as conn:
        cur = conn.execute(_INSERT, _row(vote))
        return bool(cur.rowcount == 1)


def insert_votes(store: Store, votes: Sequence[Vote]) -> int:
    """Store many votes in one transaction; returns how many were new."""
    rows = [_row(v) for v in votes]
    with store.transaction() as conn:
        return sum(conn.execute(_INSERT, row).rowcount for row in rows)


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

    Columns: ``model_a``, ``model_b``, ``winner`` and the :class:`Vote` fields named for frames (``tstamp``,
    ``source``, ``challenge``, ``category``, ``kind``, ``voter``, ``decision_ms``, ``anony``: 1, 0 or None). ``by="target"`` rates targets (model@provider) instead of models.
    ``run_ids`` keeps the votes whose two outputs both come from those runs (an arena pair's right output
    may come from another run of the same challenge, as recorded in ``arena_pairs``).
    """
    if by not in ("model", "target"):
        raise ValueError("by must be 'model' or 'target'")
    a, b = (("left_model", "right_model") if by == "model" else ("left_target", "right_target"))
    where: list[str] = []
    args: list[object] = []
    if category is not None:
        where.append("v.category = ?")
        args.append(category)
    if run_ids:
        marks = ", ".join("?" * len(run_ids))
        where.append(f"v.run_id IN ({marks}) AND COALESCE(p.right_run_id, v.run_id) IN ({marks})")
        args.extend([*run_ids, *run_ids])
    if sources:
        where.append(f"v.source IN ({', '.join('?' * len(sources))})")
        args.extend(sources)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    carried = [(column, name) for column, name in _FRAME if name not in ("model_a", "model_b")]
    selected = ", ".join(_ANONY if column == "anony" else f"v.{column}" for column, _ in carried)
    cur = store.conn.execute(
        f"SELECT v.{a}, v.{b}, v.outcome, {selected} FROM votes v LEFT JOIN arena_pairs p ON p.pair_id = v.pair_id"
        f"{clause} ORDER BY v.voted_at, v.id",
        args,
    )
    frame = pd.DataFrame.from_records(cur.fetchall(),
                                      columns=["model_a", "model_b", "outcome", *(name for _, name in carried)])
    frame["anony"] = frame["anony"].astype("object").where(frame["anony"].notna(), None)
    frame["winner"] = frame.pop("outcome").map(OUTCOME_TO_WINNER)
    return frame


@dataclass(frozen=True, slots=True)
class ServedSide:
    """One output of a served pair, as only the server knows it."""

    run_id: str
    target: str
    model: str
    provider: str
    attempt_id: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ServedPair:
    """A blind pair the arena showed to ``voter``; votable once until ``expires_at`` (Unix seconds).
    ``matchup`` names the challenge variant the two outputs answer (``challenge/variant/content-hash``)."""

    pair_id: str
    voter: str
    matchup: str
    challenge_id: str
    variant: str
    category: str
    kind: str
    left: ServedSide
    right: ServedSide
    served_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ServedImage:
    """A random public image id standing for a stored image; ``role`` is ``left``, ``right`` or
    ``reference-<n>``/``mask``; ``canvas`` the (width, height) in pixels it is shown at, when shared."""

    image_id: str
    role: str
    sha256: str
    ext: str
    canvas: tuple[int, int] | None = None


CastStatus = Literal["accepted", "unknown", "wrong_voter", "used", "expired"]


@dataclass(frozen=True, slots=True)
class CastResult:
    """What happened to a vote on a served pair. ``accepted``: ``vote`` was stored now; otherwise nothing
    was written: ``unknown`` pair, served to another voter (``wrong_voter``), already voted (``used``), or
    past its expiry (``expired``)."""

    status: CastStatus
    pair: ServedPair | None = None
    vote: Vote | None = None


_PAIR_COLUMNS = (
    "pair_id", "voter", "matchup", "run_id", "right_run_id", "challenge_id", "variant", "category", "kind",
    "left_target", "right_target", "left_model", "right_model", "left_provider", "right_provider",
    "left_attempt_id", "right_attempt_id", "left_sha", "right_sha", "served_at", "expires_at",
)
_INSERT_PAIR = (
    f"INSERT INTO arena_pairs ({', '.join(_PAIR_COLUMNS)}) VALUES ({', '.join('?' * len(_PAIR_COLUMNS))})"
)


def record_served_pair(store: Store, pair: ServedPair, images: Sequence[ServedImage]) -> None:
    """Remember a served pair and the public ids of its images (one transaction)."""
    row = (pair.pair_id, pair.voter, pair.matchup, pair.left.run_id, pair.right.run_id, pair.challenge_id,
           pair.variant, pair.category, pair.kind, pair.left.target, pair.right.target, pair.left.model,
           pair.right.model, pair.left.provider, pair.right.provider, pair.left.attempt_id,
           pair.right.attempt_id, pair.left.sha256, pair.right.sha256, pair.served_at, pair.expires_at)
    with store.transaction() as conn:
        conn.execute(_INSERT_PAIR, row)
        conn.executemany(
            "INSERT INTO arena_images (image_id, pair_id, role, sha256, ext, canvas_width, canvas_height)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i.image_id, pair.pair_id, i.role, i.sha256, i.ext, *(i.canvas or (None, None))) for i in images],
        )


def served_image(store: Store, image_id: str) -> tuple[str, str, tuple[int, int] | None] | None:
    """``(sha256, ext, canvas)`` of the stored image behind a public image id, or None when unknown."""
    row = store.conn.execute("SELECT sha256, ext, canvas_width, canvas_height FROM arena_images WHERE image_id=?",
                             (image_id,)).fetchone()
    if row is None:
        return None
    canvas = None if row[2] is None else (int(row[2]), int(row[3]))
    return str(row[0]), str(row[1]), canvas


def _served_pair(row: Any) -> ServedPair:
    def side(s: str, run_column: str) -> ServedSide:
        return ServedSide(run_id=row[run_column], target=row[f"{s}_target"], model=row[f"{s}_model"],
                          provider=row[f"{s}_provider"], attempt_id=row[f"{s}_attempt_id"],
                          sha256=row[f"{s}_sha"])

    return ServedPair(
        pair_id=row["pair_id"], voter=row["voter"], matchup=row["matchup"], challenge_id=row["challenge_id"],
        variant=row["variant"], category=row["category"], kind=row["kind"], left=side("left", "run_id"),
        right=side("right", "right_run_id"), served_at=row["served_at"], expires_at=row["expires_at"],
    )


def cast_vote(store: Store, *, pair_id: str, voter: str, outcome: str, voted_at: float, vote_uid: str,
              client_ms: float | None = None) -> CastResult:
    """Record ``voter``'s vote on a served pair, atomically: one conditional ``UPDATE`` consumes the pair
    (exists, served to this voter, still open, not expired) and the vote is inserted in the same transaction,
    so a pair can never yield two votes even under concurrent requests or several app servers on one
    database (a second consumer's ``UPDATE`` waits for the first's row lock, then finds the pair voted).
    When nothing was consumed, the pair is read to say why."""
    if outcome not in OUTCOMES:
        raise ValueError(f"vote outcome must be one of {OUTCOMES}, not {outcome!r}")
    with store.transaction() as conn:
        row = conn.execute(
            f"UPDATE arena_pairs SET state='voted', voted_at=?, client_ms=? WHERE pair_id=? AND voter=?"
            f" AND state='open' AND expires_at >= ? RETURNING {', '.join(_PAIR_COLUMNS)}",
            (voted_at, client_ms, pair_id, voter, voted_at),
        ).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM arena_pairs WHERE pair_id=?", (pair_id,)).fetchone()
            if row is None:
                return CastResult("unknown")
            pair = _served_pair(row)
            if row["voter"] != voter:
                return CastResult("wrong_voter", pair)
            if row["state"] != "open":
                return CastResult("used", pair)
            return CastResult("expired", pair)
        pair = _served_pair(row)
        vote = Vote.for_pair(pair, vote_uid=vote_uid, outcome=outcome, voted_at=voted_at)
        conn.execute(_INSERT, _row(vote))
    return CastResult("accepted", pair, vote)


def served_counts(store: Store) -> list[tuple[str, str, str, int]]:
    """How often each ``(matchup, left_target, right_target)`` was served, voted or not."""
    rows = store.conn.execute(
        "SELECT matchup, left_target, right_target, COUNT(*) FROM arena_pairs"
        " GROUP BY matchup, left_target, right_target"
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


def vote_tallies(store: Store) -> list[tuple[str, str, str, int]]:
    """Vote counts per ``(left_target, right_target, outcome)`` over every source."""
    rows = store.conn.execute(
        "SELECT left_target, right_target, outcome, COUNT(*) FROM votes GROUP BY left_target, right_target, outcome"
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
