"""Runs, their frozen challenges and targets, attempts and output images."""

from __future__ import annotations

import difflib
import json
import operator
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from harness.errors import RunLockedError
from harness.outcomes import RunStatus
from harness.records import AttemptRecord, FinalOutcome, RequestKey, RunInfo
from harness.store.core import SCHEMA_VERSION, Store, StoreError
from harness.timing import CLOCK_VERSION


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a record's table, derived from one field of the record (or of a record it flattens)."""

    name: str
    sql_type: str
    """``INTEGER``, ``REAL`` or ``TEXT`` as SQLite spells them (:mod:`harness.store.dialect` translates)."""
    nullable: bool
    attr: str
    """Where the value sits in the record: an attribute path such as ``key.challenge_id``."""
    encoding: str = "plain"
    """``plain``; ``bool`` (stored 0/1); ``json`` (a mapping as JSON text, NULL when empty)."""

    def ddl(self, constraints: Mapping[str, str]) -> str:
        null = "" if self.nullable else " NOT NULL"
        extra = f" {constraints[self.name]}" if self.name in constraints else ""
        return f"{self.name} {self.sql_type}{null}{extra}"


_SQL_TYPES: Mapping[type, str] = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER"}


def _optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, ``(hint, False)`` otherwise."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


def record_columns(record_type: type, prefix: str = "", nullable: bool = False) -> tuple[Column, ...]:
    """The table columns of a dataclass record, in field order, as its fields' metadata says
    (:data:`harness.records.FLATTENED`, :data:`~harness.records.STORED_AS_JSON`,
    :data:`~harness.records.NOT_STORED`); a plain field's type gives the column's type and ``T | None`` makes
    it nullable. A field of another type is an error here, not a surprise in the database."""
    hints = typing.get_type_hints(record_type)
    out: list[Column] = []
    for f in fields(record_type):
        kind = f.metadata.get("column", "plain")
        attr = f"{prefix}{f.name}"
        if kind is None:
            continue
        if kind == "flatten":
            out.extend(record_columns(hints[f.name], f"{attr}.", nullable or bool(f.metadata.get("nullable"))))
        elif kind == "json":
            out.append(Column(f"{f.name}_json", "TEXT", True, attr, "json"))
        else:
            base, optional = _optional(hints[f.name])
            if base not in _SQL_TYPES:
                raise TypeError(f"{record_type.__name__}.{f.name}: no column type for {base!r}; mark the field "
                                "FLATTENED, STORED_AS_JSON or NOT_STORED")
            out.append(Column(f.name, _SQL_TYPES[base], nullable or optional, attr,
                              "bool" if base is bool else "plain"))
    return tuple(out)


ATTEMPT_COLUMNS = record_columns(AttemptRecord)
"""The ``attempts`` table's columns besides ``id``, derived from :class:`~harness.records.AttemptRecord`: the
table, its insert and the frame reader all follow this one list."""
_ATTEMPT_CONSTRAINTS = {"run_id": "REFERENCES runs(id)"}
_ATTEMPT_COLUMNS = tuple(c.name for c in ATTEMPT_COLUMNS)
_ATTEMPT_VALUES = operator.attrgetter(*(c.attr for c in ATTEMPT_COLUMNS))
_BOOL_AT = tuple(i for i, c in enumerate(ATTEMPT_COLUMNS) if c.encoding == "bool")
_JSON_AT = tuple(i for i, c in enumerate(ATTEMPT_COLUMNS) if c.encoding == "json")
_COLUMN_SEP = ",\n        "

DDL = [
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        schema_version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        harness_version TEXT NOT NULL,
        sandbox INTEGER NOT NULL,
        time_scale REAL,
        label TEXT,
        planned INTEGER NOT NULL DEFAULT 0,
        config_json TEXT NOT NULL,
        clock_version INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE IF NOT EXISTS run_challenges (
        run_id TEXT NOT NULL REFERENCES runs(id),
        challenge_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        kind TEXT NOT NULL,
        category TEXT NOT NULL,
        title TEXT NOT NULL,
        challenge_json TEXT NOT NULL,
        PRIMARY KEY (run_id, challenge_id)
    )""",
    """CREATE TABLE IF NOT EXISTS run_targets (
        run_id TEXT NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        protocol TEXT NOT NULL,
        target_json TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS images (
        sha256 TEXT PRIMARY KEY,
        ext TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        nbytes INTEGER NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS attempts (
        id INTEGER PRIMARY KEY,
        {_COLUMN_SEP.join(c.ddl(_ATTEMPT_CONSTRAINTS) for c in ATTEMPT_COLUMNS)},
        UNIQUE (run_id, challenge_id, variant, target, sample, attempt)
    )""",
    "CREATE INDEX IF NOT EXISTS attempts_run ON attempts(run_id, target)",
    """CREATE TABLE IF NOT EXISTS outputs (
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        idx INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        ext TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        PRIMARY KEY (attempt_id, idx)
    )""",
    "CREATE INDEX IF NOT EXISTS outputs_sha ON outputs(sha256)",
    """CREATE TABLE IF NOT EXISTS run_shards (
        run_id TEXT NOT NULL REFERENCES runs(id),
        shard INTEGER NOT NULL,
        shards INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        config_json TEXT NOT NULL,
        PRIMARY KEY (run_id, shard)
    )""",
]

_INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})"
    " RETURNING id"
)
_INSERT_IMAGE = ("INSERT INTO images (sha256, ext, width, height, nbytes) VALUES (?, ?, ?, ?, ?)"
                 " ON CONFLICT DO NOTHING")


Shard = tuple[int, int]
"""``(i, N)``: shard ``i`` (0-based) of ``N``, as ``harness run --shard i/N`` names it."""


def lock_id(run_id: str, shard: Shard | None) -> str:
    """What a process locks to execute ``run_id`` (or one shard of it): shards of one run are executed by
    several processes at once, each holding its own shard (:mod:`harness.run.lock`)."""
    return run_id if shard is None else f"{run_id}.shard-{shard[0]}-of-{shard[1]}"


def create_run(
    store: Store,
    *,
    run_id: str,
    created_at: str,
    harness_version: str,
    sandbox: bool,
    time_scale: float | None,
    label: str | None,
    planned: int,
    config: dict[str, Any],
    challenges: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]],
    shard: Shard | None = None,
) -> None:
    """Insert a run with its frozen challenges and targets (one transaction).

    With ``shard``, the run is filled by several processes (hosts), one per shard, each starting with the
    same run id: the first creates the run, the others join it. ``planned`` is then every shard's requests
    together. A shard that brings other challenges, targets or a different plan is refused (a
    :class:`StoreError`), and so is a shard already started (resume it instead); ``config`` is kept per
    shard (its region, its shard) so ``--resume`` continues a shard as it was started."""
    challenge_rows = [(run_id, c["id"], c["version"], c["content_hash"], c["kind"], c["category"], c["title"],
                       json.dumps(c, sort_keys=True)) for c in challenges]
    target_rows = [(run_id, t["name"], t["model"], t["provider"], t["protocol"], json.dumps(t, sort_keys=True))
                   for t in targets]
    join = " ON CONFLICT DO NOTHING" if shard is not None else ""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, schema_version, created_at, status, harness_version, sandbox, time_scale,"
            " label, planned, config_json, clock_version) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)" + join,
            (run_id, SCHEMA_VERSION, created_at, harness_version, int(sandbox), time_scale, label, planned,
             json.dumps(config, sort_keys=True), CLOCK_VERSION),
        )
        conn.executemany(
            "INSERT INTO run_challenges (run_id, challenge_id, version, content_hash, kind, category, title,"
            " challenge_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + join, challenge_rows)
        conn.executemany(
            "INSERT INTO run_targets (run_id, name, model, provider, protocol, target_json)"
            " VALUES (?, ?, ?, ?, ?, ?)" + join, target_rows)
        if shard is not None:
            _join_shard(conn, run_id, shard, planned, challenge_rows, target_rows, config, created_at)


def _join_shard(conn: Any, run_id: str, shard: Shard, planned: int, challenge_rows: list[tuple[Any, ...]],
                target_rows: list[tuple[Any, ...]], config: dict[str, Any], started_at: str) -> None:
    """Check that ``shard`` belongs to the stored run ``run_id`` and register it (inside the creating
    transaction)."""
    where = f"shard {shard[0]}/{shard[1]} of run {run_id}"
    stored_planned = conn.execute("SELECT planned FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    challenges = {(r[0], r[1]) for r in conn.execute(
        "SELECT challenge_id, content_hash FROM run_challenges WHERE run_id=?", (run_id,))}
    targets = {r[0]: r[1] for r in conn.execute("SELECT name, target_json FROM run_targets WHERE run_id=?", (run_id,))}
    if challenges != {(r[1], r[3]) for r in challenge_rows}:
        raise StoreError(f"{where}: its challenges differ from the run's; start every shard with the same suite")
    if targets != {r[1]: r[5] for r in target_rows}:
        raise StoreError(f"{where}: its targets differ from the run's ({', '.join(sorted(targets))}); start "
                         "every shard with the same targets")
    if int(stored_planned) != planned:
        raise StoreError(f"{where} plans {planned} requests in all, the run {stored_planned}: start every shard "
                         "with the same options (samples, variants)")
    counts = {int(r[0]) for r in conn.execute("SELECT shards FROM run_shards WHERE run_id=?", (run_id,))}
    if counts - {shard[1]}:
        raise StoreError(f"{where}: the run is split in {min(counts)} shards, not {shard[1]}")
    added = conn.execute(
        "INSERT INTO run_shards (run_id, shard, shards, status, started_at, config_json)"
        " VALUES (?, ?, ?, 'running', ?, ?) ON CONFLICT DO NOTHING RETURNING shard",
        (run_id, shard[0], shard[1], started_at, json.dumps(config, sort_keys=True))).fetchone()
    if added is None:
        raise StoreError(f"{where} was started before; finish it with `harness run --resume {run_id}`")


def set_run_status(store: Store, run_id: str, status: str, finished_at: str | None = None, *,
                   shard: Shard | None = None) -> None:
    """Record how the run (or, with ``shard``, one shard of it) ended. A sharded run becomes ``finished``
    when its last request is done, whichever shard did it; a shard that finished its part leaves the run
    ``running`` (read as interrupted when no shard is held by a live process)."""
    with store.transaction() as conn:
        if shard is None:
            conn.execute("UPDATE runs SET status=?, finished_at=COALESCE(?, finished_at) WHERE id=?",
                         (status, finished_at, run_id))
            return
        conn.execute("UPDATE run_shards SET status=?, finished_at=COALESCE(?, finished_at) WHERE run_id=? AND shard=?",
                     (status, finished_at, run_id, shard[0]))
        if status == RunStatus.FINISHED:
            planned = conn.execute("SELECT planned FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            done = conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM attempts WHERE run_id=? AND final=1"
                " GROUP BY challenge_id, variant, target, sample) AS d", (run_id,)).fetchone()[0]
            if int(done) < int(planned):
                status, finished_at = RunStatus.RUNNING, None
        conn.execute("UPDATE runs SET status=?, finished_at=COALESCE(?, finished_at) WHERE id=?",
                     (status, finished_at, run_id))


def run_shards(store: Store, run_id: str) -> list[tuple[Shard, str, dict[str, Any]]]:
    """The shards of ``run_id`` that were started: ``((i, N), status, configuration)``, by ``i``; empty
    for an unsharded run (or a store from before shards)."""
    if not store.has_table("run_shards"):
        return []
    rows = store.conn.execute(
        "SELECT shard, shards, status, config_json FROM run_shards WHERE run_id=? ORDER BY shard", (run_id,))
    return [((int(r[0]), int(r[1])), str(r[2]), json.loads(r[3])) for r in rows]


def shard_config(store: Store, run_id: str) -> dict[str, Any] | None:
    """For a sharded run, the configuration of the shard ``--resume`` continues: the first one that is not
    finished and that no live process holds (its region and shard as it was started). ``None`` for an
    unsharded run. Refuses (:class:`~harness.errors.RunLockedError`) while every unfinished shard is held."""
    from harness.run.lock import locks_for

    shards = run_shards(store, run_id)
    if not shards:
        return None
    locks = locks_for(store)
    held = []
    for shard, status, config in shards:
        if status == RunStatus.FINISHED:
            continue
        holder = locks.holder(lock_id(run_id, shard))
        if holder is None:
            return config
        held.append(f"shard {shard[0]}/{shard[1]} by {holder.describe()}")
    if not held:
        return shards[0][2]
    raise RunLockedError(f"every unfinished shard of run {run_id} is being run ({'; '.join(held)}); wait for "
                         f"them to end, then `harness run --resume {run_id}`")


def record_images(store: Store, images: Iterable[tuple[str, str, int, int, int]]) -> None:
    """Register image metadata rows ``(sha256, ext, width, height, nbytes)``; duplicates are ignored."""
    with store.transaction() as conn:
        conn.executemany(_INSERT_IMAGE, list(images))


def _attempt_row(a: AttemptRecord) -> tuple[Any, ...]:
    """``a``'s values in :data:`ATTEMPT_COLUMNS` order, encoded as stored."""
    row = list(_ATTEMPT_VALUES(a))
    for i in _BOOL_AT:
        if row[i] is not None:
            row[i] = int(row[i])
    for i in _JSON_AT:
        row[i] = json.dumps(row[i]) if row[i] else None
    return tuple(row)


def insert_attempts(store: Store, attempts: Sequence[AttemptRecord]) -> None:
    """Persist attempts with their outputs in one transaction. Image files must already be written."""
    with store.transaction() as conn:
        for a in attempts:
            attempt_id = conn.execute(_INSERT_ATTEMPT, _attempt_row(a)).fetchone()[0]
            if a.outputs:
                conn.executemany(
                    "INSERT INTO outputs (attempt_id, idx, sha256, ext, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                    [(attempt_id, o.idx, o.sha256, o.ext, o.width, o.height) for o in a.outputs],
                )
                conn.executemany(
                    _INSERT_IMAGE,
                    [(o.sha256, o.ext, o.width, o.height, o.nbytes) for o in a.outputs],
                )


@dataclass(frozen=True, slots=True)
class UnfinishedRequest:
    """Where a logical request without a final attempt stands, so a resume continues it instead of
    starting it over: its retry count, its first start (time to image spans processes) and the wait it was
    told to keep. Times are Unix seconds (UTC)."""

    last_attempt: int
    first_started_at: float
    last_ended_at: float
    """The last attempt's start plus its latency: when its answer (and any Retry-After) arrived."""
    last_retry_after_ms: float | None
    """The wait the provider asked for in the last answer (``Retry-After``), unscaled, ms."""


def request_progress(store: Store, run_id: str) -> tuple[set[RequestKey], dict[RequestKey, UnfinishedRequest]]:
    """Requests already finished (a final attempt exists) and where each unfinished one stands."""
    done: set[RequestKey] = set()
    unfinished: dict[RequestKey, UnfinishedRequest] = {}
    for row in store.conn.execute(
        "SELECT challenge_id, variant, target, sample, MAX(attempt), MAX(final), MIN(started_at) FROM attempts"
        " WHERE run_id=? GROUP BY challenge_id, variant, target, sample",
        (run_id,),
    ):
        key = RequestKey(row[0], row[1], row[2], row[3])
        if row[5]:
            done.add(key)
        else:
            unfinished[key] = UnfinishedRequest(row[4], row[6], row[6], None)
    if unfinished:
        for row in store.conn.execute(
            "SELECT challenge_id, variant, target, sample, started_at, latency_ms, retry_after_ms FROM attempts a"
            " WHERE run_id=? AND final=0 AND attempt=(SELECT MAX(attempt) FROM attempts b WHERE b.run_id=a.run_id"
            " AND b.challenge_id=a.challenge_id AND b.variant=a.variant AND b.target=a.target"
            " AND b.sample=a.sample)",
            (run_id,),
        ):
            key = RequestKey(row[0], row[1], row[2], row[3])
            if key in unfinished:
                ended = row[4] + (row[5] or 0.0) / 1000.0
                unfinished[key] = UnfinishedRequest(unfinished[key].last_attempt, unfinished[key].first_started_at,
                                                    ended, row[6])
    return done, unfinished


def first_finals(store: Store, run_id: str, per_target: int) -> dict[str, list[FinalOutcome]]:
    """The first ``per_target`` final attempts of each target of the run, in the order they were recorded."""
    out: dict[str, list[FinalOutcome]] = {}
    for row in store.conn.execute(
        "SELECT target, challenge_id, ok, error_kind, http_status, provider_code, error_message FROM ("
        " SELECT *, ROW_NUMBER() OVER (PARTITION BY target ORDER BY id) AS n FROM attempts"
        " WHERE run_id=? AND final=1) AS f WHERE n <= ? ORDER BY target, n",
        (run_id, per_target),
    ):
        out.setdefault(row[0], []).append(FinalOutcome(row[1], bool(row[2]), row[3], row[4], row[5], row[6]))
    return out


def last_activity(store: Store, run_id: str) -> float | None:
    """When the run's last recorded attempt ended (Unix seconds), or ``None`` before any attempt."""
    row = store.conn.execute(
        "SELECT MAX(started_at + COALESCE(latency_ms, 0) / 1000.0) FROM attempts WHERE run_id=?", (run_id,)
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _utc_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _run_info(store: Store, row: Any, counts: dict[str, tuple[int, int]]) -> RunInfo:
    """A run as stored, except that a run any live process holds (a shard of it, for a sharded run) is
    ``running``, and a run stored as ``running`` that no live process holds is reported as ``interrupted``
    (its process died without saying so), with when it last did something."""
    attempts, done = counts.get(row["id"], (0, 0))
    status = RunStatus(row["status"])
    interrupted_at: str | None = None
    held_by: str | None = None
    shards = [shard for shard, _, _ in run_shards(store, row["id"])] if status != RunStatus.FINISHED else []
    if status == RunStatus.RUNNING or shards:
        from harness.run.lock import locks_for

        locks = locks_for(store)
        ids = [row["id"], *(lock_id(row["id"], shard) for shard in shards)]
        holders = [(i, h) for i in ids if (h := locks.holder(i)) is not None]
        if holders:
            status = RunStatus.RUNNING
            held_by = "; ".join(h.describe() + (f" (shard {i.rsplit('.shard-', 1)[1]})" if i != row["id"] else "")
                                for i, h in holders)
        elif status == RunStatus.RUNNING:
            status = RunStatus.INTERRUPTED
            last = last_activity(store, row["id"])
            starts = [h.since for h in (locks.last_holder(i) for i in ids) if h is not None]
            when = max([t for t in (last, *starts) if t is not None], default=None)
            interrupted_at = _utc_iso(when) if when is not None else row["created_at"]
    return RunInfo(
        id=row["id"], created_at=row["created_at"], finished_at=row["finished_at"], status=status,
        harness_version=row["harness_version"], sandbox=bool(row["sandbox"]), time_scale=row["time_scale"],
        label=row["label"], config=json.loads(row["config_json"]), attempts=attempts, requests_done=done,
        requests_planned=row["planned"], clock_version=row["clock_version"], interrupted_at=interrupted_at,
        held_by=held_by,
    )


def _counts(store: Store, run_id: str | None = None) -> dict[str, tuple[int, int]]:
    where, args = ("WHERE run_id=?", (run_id,)) if run_id else ("", ())
    return {
        r[0]: (int(r[1]), int(r[2] or 0))
        for r in store.conn.execute(
            f"SELECT run_id, COUNT(*), SUM(final) FROM attempts {where} GROUP BY run_id", args
        )
    }


def list_runs(store: Store) -> list[RunInfo]:
    """All runs, oldest first."""
    counts = _counts(store)
    rows = store.conn.execute("SELECT * FROM runs ORDER BY created_at, id").fetchall()
    return [_run_info(store, r, counts) for r in rows]


def get_run(store: Store, run_id: str) -> RunInfo:
    """The run ``run_id``; ``latest`` names the newest. A clear error with suggestions when unknown."""
    if run_id == "latest":
        row = store.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"store {store.path} has no runs yet")
    else:
        row = store.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
    if row is None:
        ids = [r[0] for r in store.conn.execute("SELECT id FROM runs")]
        close = difflib.get_close_matches(run_id, ids, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else " List runs with `harness runs`."
        raise StoreError(f"no run {run_id!r} in {store.path}.{hint}")
    return _run_info(store, row, _counts(store, row["id"]))


def run_challenges(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's frozen challenges (resolved prompts, reference hashes), in stored order."""
    rows = store.conn.execute(
        "SELECT challenge_json FROM run_challenges WHERE run_id=? ORDER BY rowid", (run_id,)
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


def run_targets(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's frozen targets (no keys are ever stored)."""
    rows = store.conn.execute(
        "SELECT target_json FROM run_targets WHERE run_id=? ORDER BY rowid", (run_id,)
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


ATTEMPT_FRAME_COLUMNS = ("id", *(c for c in _ATTEMPT_COLUMNS if not c.endswith("_json")))


TEXT_COLUMNS = ("run_id", "challenge_id", "variant", "target", "model", "provider", "protocol", "error_kind",
                "cost_source", "kind", "category", "finish_reason", "provider_code", "host", "region")
"""Low-cardinality text columns, read as pandas categoricals (a tenth of the memory of Python strings)."""


def attempts_frame(
    store: Store, run_ids: Sequence[str], columns: Sequence[str] | None = None, *, with_challenge: bool = True,
    chunk_rows: int = 100_000,
) -> pd.DataFrame:
    """Attempts of ``run_ids`` as a DataFrame; adds the challenge's ``kind`` and ``category`` by default.

    Rows are fetched ``chunk_rows`` at a time and low-cardinality text columns become categoricals, so a
    million attempts read in seconds with a peak near the frame's own size.
    """
    cols = list(columns or ATTEMPT_FRAME_COLUMNS)
    unknown = [c for c in cols if c not in ATTEMPT_FRAME_COLUMNS and c not in _ATTEMPT_COLUMNS]
    if unknown:
        raise ValueError(f"unknown attempt columns: {unknown}")
    select = ", ".join(f"a.{c}" for c in cols)
    join = ""
    if with_challenge:
        select += ", c.kind AS kind, c.category AS category"
        join = " LEFT JOIN run_challenges c ON c.run_id=a.run_id AND c.challenge_id=a.challenge_id"
    marks = ", ".join("?" * len(run_ids))
    sql = f"SELECT {select} FROM attempts a{join} WHERE a.run_id IN ({marks}) ORDER BY a.id"
    cur = store.conn.execute(sql, tuple(run_ids))
    names = [d[0] for d in cur.description]
    text = [c for c in names if c in TEXT_COLUMNS]
    frames = []
    while rows := cur.fetchmany(chunk_rows):
        chunk = pd.DataFrame.from_records(rows, columns=names)
        for c in text:
            chunk[c] = chunk[c].astype("category")
        frames.append(chunk)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="category" if c in text else "object") for c in names})
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    for c in text:
        if frame[c].dtype != "category":
            frame[c] = frame[c].astype("category")
    return frame


def outputs_frame(store: Store, run_ids: Sequence[str], *, final_only: bool = True) -> pd.DataFrame:
    """Every output image of successful final attempts of ``run_ids``, with its request key, target and the
    challenge's ``kind`` and ``category``: what the arena pairs, scoring scores and the gallery shows. A
    multi-turn conversation's earlier turns are successful but not final; ``final_only=False`` includes
    them (its turn strip)."""
    marks = ", ".join("?" * len(run_ids))
    final = " AND a.final=1" if final_only else ""
    cur = store.conn.execute(
        "SELECT a.id AS attempt_id, a.run_id, a.challenge_id, a.variant, a.target, a.model, a.provider,"
        " a.sample, o.idx, o.sha256, o.ext, o.width, o.height, c.kind AS kind, c.category AS category"
        " FROM outputs o JOIN attempts a ON a.id=o.attempt_id"
        " LEFT JOIN run_challenges c ON c.run_id=a.run_id AND c.challenge_id=a.challenge_id"
        f" WHERE a.run_id IN ({marks}) AND a.ok=1{final} ORDER BY a.id, o.idx",
        tuple(run_ids),
    )
    names = [d[0] for d in cur.description]
    return pd.DataFrame.from_records(cur.fetchall(), columns=names)


def attempt_columns(store: Store) -> list[str]:
    """The columns the store's ``attempts`` table has (an older store opened read-only may lack later ones)."""
    cursor = store.conn.execute("SELECT * FROM attempts LIMIT 0")
    return [str(d[0]) for d in cursor.description]


def spend_by_target(store: Store, run_id: str) -> dict[str, float]:
    """USD the harness computed for each target's attempts of ``run_id`` (every attempt, retries included)."""
    rows = store.conn.execute(
        "SELECT target, COALESCE(SUM(cost_usd), 0) FROM attempts WHERE run_id=? GROUP BY target", (run_id,)
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows}


def spend_by_run(store: Store) -> dict[str, float]:
    """USD the harness computed for each run's attempts."""
    rows = store.conn.execute("SELECT run_id, COALESCE(SUM(cost_usd), 0) FROM attempts GROUP BY run_id").fetchall()
    return {str(r[0]): float(r[1]) for r in rows}
