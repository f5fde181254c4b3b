"""CLIP scores of output images and the embedding cache they are computed from.

Three tables:

* ``scorers`` – one row per distinct scoring set-up (backbone, weights, open_clip version, preprocessing,
  precision). Its ``id`` is a hash of that description, so the same set-up on another day or machine maps to
  the same id, and a changed one never mixes with old numbers.
* ``clip_scores`` – one row per (scorer, output image, metric). ``truncated`` and ``prompt_tokens`` describe
  the text side of CLIP-T metrics (NULL for image–image and pixel metrics).
* ``clip_embeddings`` – L2-normalised embeddings (little-endian float32) keyed by (scorer, kind, key): the key
  of an image is its SHA-256 (plus ``#crop=x0,y0,x1,y1`` for a crop), of a text the SHA-256 of its UTF-8
  bytes. Re-scoring, or scoring a new run that shares prompts and references, reads them instead of running
  the model again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.store.core import Store

DDL = [
    """CREATE TABLE IF NOT EXISTS scorers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        backbone TEXT NOT NULL,
        pretrained TEXT NOT NULL,
        weights_sha256 TEXT,
        open_clip_version TEXT NOT NULL,
        preprocess TEXT NOT NULL,
        precision TEXT NOT NULL,
        context_length INTEGER NOT NULL,
        info_json TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS clip_scores (
        scorer_id TEXT NOT NULL REFERENCES scorers(id),
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        output_idx INTEGER NOT NULL,
        image_sha TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        higher_is_better INTEGER NOT NULL,
        truncated INTEGER,
        prompt_tokens INTEGER,
        scored_at TEXT NOT NULL,
        PRIMARY KEY (scorer_id, attempt_id, output_idx, metric)
    )""",
    "CREATE INDEX IF NOT EXISTS clip_scores_attempt ON clip_scores(attempt_id)",
    """CREATE TABLE IF NOT EXISTS clip_embeddings (
        scorer_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'text')),
        key TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (scorer_id, kind, key)
    ) WITHOUT ROWID""",
]

_LOOKUP_CHUNK = 500
"""Keys per ``IN (...)`` query; stays well under SQLite's bound-parameter limit."""


@dataclass(frozen=True, slots=True)
class ScorerRow:
    """A scoring set-up as stored: ``name`` is the stable human string (``open_clip:BACKBONE:WEIGHTS``)."""

    id: str
    name: str
    backbone: str
    pretrained: str
    weights_sha256: str | None
    open_clip_version: str
    preprocess: str
    precision: str
    context_length: int
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One metric value of one output image under one scorer."""

    attempt_id: int
    output_idx: int
    image_sha: str
    metric: str
    value: float
    higher_is_better: bool
    truncated: bool | None = None
    prompt_tokens: int | None = None


def register_scorer(store: Store, scorer: ScorerRow, created_at: str) -> None:
    """Record a scoring set-up (once; an existing id keeps its first ``created_at``)."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO scorers (id, name, backbone, pretrained, weights_sha256, open_clip_version, preprocess,"
            " precision, context_length, info_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (scorer.id, scorer.name, scorer.backbone, scorer.pretrained, scorer.weights_sha256,
             scorer.open_clip_version, scorer.preprocess, scorer.precision, scorer.context_length,
             json.dumps(scorer.info, sort_keys=True), created_at),
        )


def scored_outputs(store: Store, scorer_id: str, attempt_ids: Iterable[int]) -> set[tuple[int, int]]:
    """``(attempt_id, output_idx)`` pairs among ``attempt_ids`` that already have scores from ``scorer_id``.

    An output's rows are written in one transaction, so presence means all its metrics are there.
    """
    ids = sorted(set(attempt_ids))
    done: set[tuple[int, int]] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start:start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in store.conn.execute(
            f"SELECT DISTINCT attempt_id, output_idx FROM clip_scores WHERE scorer_id=? AND attempt_id IN ({marks})",
            (scorer_id, *chunk),
        ):
            done.add((int(row[0]), int(row[1])))
    return done


def cached_embeddings(store: Store, scorer_id: str, kind: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """Stored embeddings of ``keys`` (those absent are simply missing from the result)."""
    wanted = sorted(set(keys))
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start:start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for key, dim, blob in store.conn.execute(
            f"SELECT key, dim, vector FROM clip_embeddings WHERE scorer_id=? AND kind=? AND key IN ({marks})",
            (scorer_id, kind, *chunk),
        ):
            vector = np.frombuffer(blob, dtype="<f4")
            if vector.size == dim:
                found[key] = vector
    return found


def put_embeddings(store: Store, scorer_id: str, kind: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
    """Store embeddings (one transaction); a key already present is left as it is."""
    rows = [(scorer_id, kind, key, int(vec.size), np.ascontiguousarray(vec, dtype="<f4").tobytes())
            for key, vec in items]
    with store.transaction() as conn:
        conn.executemany("INSERT INTO clip_embeddings (scorer_id, kind, key, dim, vector) VALUES (?, ?, ?, ?, ?)"
                         " ON CONFLICT DO NOTHING", rows)


def insert_scores(store: Store, scorer_id: str, rows: Sequence[ScoreRow], scored_at: str,
                  replace_outputs: Iterable[tuple[int, int]] = ()) -> None:
    """Write score rows in one transaction. Earlier rows of the same (scorer, output, metric) are replaced;
    ``replace_outputs`` lists ``(attempt_id, output_idx)`` outputs whose earlier rows are all removed first
    (a re-score), in the same transaction, so an interruption leaves either the old rows or the new ones."""
    with store.transaction() as conn:
        conn.executemany("DELETE FROM clip_scores WHERE scorer_id=? AND attempt_id=? AND output_idx=?",
                         [(scorer_id, a, i) for a, i in replace_outputs])
        conn.executemany("DELETE FROM clip_scores WHERE scorer_id=? AND attempt_id=? AND output_idx=? AND metric=?",
                         [(scorer_id, r.attempt_id, r.output_idx, r.metric) for r in rows])
        conn.executemany(
            "INSERT INTO clip_scores (scorer_id, attempt_id, output_idx, image_sha, metric, value, higher_is_better,"
            " truncated, prompt_tokens, scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(scorer_id, r.attempt_id, r.output_idx, r.image_sha, r.metric, float(r.value), int(r.higher_is_better),
              None if r.truncated is None else int(r.truncated), r.prompt_tokens, scored_at) for r in rows],
        )


def embedding_count(store: Store, scorer_id: str | None = None) -> dict[str, int]:
    """Number of cached embeddings per kind (``image``, ``text``), for one scorer or all."""
    where, args = ("WHERE scorer_id=?", (scorer_id,)) if scorer_id else ("", ())
    counts = {"image": 0, "text": 0}
    for kind, n in store.conn.execute(f"SELECT kind, COUNT(*) FROM clip_embeddings {where} GROUP BY kind", args):
        counts[str(kind)] = int(n)
    return counts


SCORE_FRAME_COLUMNS = (
    "attempt_id", "run_id", "challenge_id", "variant", "target", "model", "provider", "sample", "kind",
    "category", "output_idx", "image_sha", "metric", "value", "higher_is_better", "truncated", "prompt_tokens",
    "scorer", "scorer_id", "backbone", "pretrained", "weights_sha256", "open_clip_version", "preprocess",
    "precision", "scored_at",
)


def _has_scores_table(store: Store) -> bool:
    return store.has_table("clip_scores")


def latest_scorer(store: Store, run_ids: Sequence[str]) -> str | None:
    """Id of the scorer that most recently wrote scores for ``run_ids`` (``None`` when none has)."""
    if not run_ids or not _has_scores_table(store):
        return None
    marks = ", ".join("?" * len(run_ids))
    row = store.conn.execute(
        "SELECT s.scorer_id FROM clip_scores s JOIN attempts a ON a.id=s.attempt_id"
        f" WHERE a.run_id IN ({marks}) ORDER BY s.scored_at DESC, s.rowid DESC LIMIT 1",
        tuple(run_ids),
    ).fetchone()
    return None if row is None else str(row[0])


def scores_frame(store: Store, run_ids: Sequence[str], scorer: str | None = None) -> pd.DataFrame:
    """Every score of ``run_ids``' outputs, one row per (scorer, output image, metric), with the request key.

    Columns: :data:`SCORE_FRAME_COLUMNS`. ``scorer`` is the stable name (e.g.
    ``open_clip:ViT-B-32-quickgelu:openai``); pass it (or a scorer id) to keep one scorer's rows, since
    values from different backbones are on different scales and must not be pooled. ``truncated`` is a
    nullable boolean, ``higher_is_better`` a boolean. An older store without score tables gives an empty
    frame with these columns.
    """
    if not run_ids or not _has_scores_table(store):
        return pd.DataFrame(columns=list(SCORE_FRAME_COLUMNS))
    marks = ", ".join("?" * len(run_ids))
    args: tuple[Any, ...] = tuple(run_ids)
    where = f"a.run_id IN ({marks})"
    if scorer is not None:
        where += " AND (k.name=? OR k.id=?)"
        args = (*args, scorer, scorer)
    cur = store.conn.execute(
        "SELECT s.attempt_id, a.run_id, a.challenge_id, a.variant, a.target, a.model, a.provider, a.sample,"
        " c.kind, c.category, s.output_idx, s.image_sha, s.metric, s.value, s.higher_is_better, s.truncated,"
        " s.prompt_tokens, k.name AS scorer, k.id AS scorer_id, k.backbone, k.pretrained, k.weights_sha256,"
        " k.open_clip_version, k.preprocess, k.precision, s.scored_at"
        " FROM clip_scores s JOIN attempts a ON a.id=s.attempt_id JOIN scorers k ON k.id=s.scorer_id"
        " LEFT JOIN run_challenges c ON c.run_id=a.run_id AND c.challenge_id=a.challenge_id"
        f" WHERE {where} ORDER BY k.name, s.attempt_id, s.output_idx, s.metric",
        args,
    )
    frame = pd.DataFrame.from_records(cur.fetchall(), columns=[d[0] for d in cur.description])
    if frame.empty:
        return pd.DataFrame(columns=list(SCORE_FRAME_COLUMNS))
    frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
    frame["truncated"] = frame["truncated"].astype("boolean")
    frame["prompt_tokens"] = frame["prompt_tokens"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    return frame
