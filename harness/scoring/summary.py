"""Mean score per target and metric with a 95 % interval, for ``harness stats``, ``score`` and the report.

Images of the same prompt are not independent (a model draws several samples of one challenge, and prompt
difficulty moves them together), so the interval is a **cluster percentile bootstrap**: each replicate
draws the (challenge, variant) prompts of the group with replacement, keeps all their images, and takes the
mean over those images. The estimate is the plain mean over images. With one prompt only the data cannot
bound the mean and the interval is absent (NaN). Replicates are seeded, so a table is reproducible.

:class:`ScoreSummaryRow` is the typed row every consumer reads (``harness score --json``, ``harness stats``'
score table, the report); its JSON schema is written from the type (``harness score --schema``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.scoring.metrics import METRICS

CONFIDENCE = 0.95
RESAMPLES = 2000
"""Bootstrap replicates per (target, metric)."""

SUMMARY_COLUMNS = ("scorer", "target", "metric", "higher_is_better", "n_images", "n_prompts", "mean", "low",
                   "high", "truncated_share")
SCORE_SCHEMA_VERSION: Final = 1
"""Version of the score summary's JSON forms (:class:`ScoreSummaryRow`, :class:`ScoreOutput`). Bump it when a
key is removed or changes meaning; added keys keep the version."""
GROUP_KEYS = ("target", "run_id", "challenge_id", "variant", "kind", "category", "model", "provider")
"""Columns a summary may be split by (``harness stats --by``); a row carries those it was split by."""


BootstrapClusters = Annotated[int, Field(description="distinct (challenge, variant) prompts: the bootstrap's clusters")]
"""How many prompts a cluster-bootstrap interval resampled: the clusters behind ``low`` and ``high``."""
BootstrapLow = Annotated[float | None, Field(description="lower end of the 95 % cluster-bootstrap interval (null "
                                                         "with one prompt)")]
BootstrapHigh = Annotated[float | None, Field(description="upper end of the 95 % cluster-bootstrap interval (null "
                                                          "with one prompt)")]


def _group(doc: str) -> Any:
    return Field(None, description=f"{doc} (present when the summary was split by it)")


class ScoreSummaryRow(BaseModel):
    """Mean score of one metric over one group's images (a target, or a target and a split) with its
    cluster-bootstrap interval. ``as_dict()`` is the plain form (:func:`summary_records`' rows), ``to_json()``
    the versioned JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCORE_SCHEMA_VERSION, description="version of this row's JSON form")
    scorer: str = Field(description="the scorer's id (backbone and weights); scores of different scorers never mix")
    target: str | None = _group("the target (model@provider)")
    run_id: str | None = _group("the run")
    challenge_id: str | None = _group("the challenge")
    variant: str | None = _group("the prompt variant")
    kind: str | None = _group("the challenge kind")
    category: str | None = _group("the challenge category")
    model: str | None = _group("the target's model")
    provider: str | None = _group("the target's provider")
    metric: str = Field(description="the metric (e.g. clip_t_cos, clipscore)")
    higher_is_better: bool = Field(description="direction of the metric")
    n_images: int = Field(description="images scored")
    n_prompts: BootstrapClusters
    mean: float = Field(description="plain mean over the images")
    low: BootstrapLow
    high: BootstrapHigh
    truncated_share: float | None = Field(description="share of images whose text was truncated (null for "
                                                       "metrics without text)")

    def as_dict(self) -> dict[str, Any]:
        """The plain-dict form: every key but ``schema_version``; split keys only when split by them."""
        return self.model_dump(exclude={"schema_version", *(k for k in GROUP_KEYS if k not in self.model_fields_set)})

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON object (``schema_version`` first)."""
        return {"schema_version": self.schema_version, **self.as_dict()}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> ScoreSummaryRow:
        """A row from a :func:`summary_records` dict (NaN already ``None``); unknown keys are an error."""
        return cls.model_validate({k: (str(v) if k in GROUP_KEYS and v is not None else v) for k, v in row.items()})

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of one summary row."""
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:score-summary-row:v{SCORE_SCHEMA_VERSION}"
        schema["title"] = "ScoreSummaryRow"
        schema["required"] = sorted({*schema.get("required", []), "schema_version"} - set(GROUP_KEYS))
        schema["additionalProperties"] = False
        return schema


ConsistencyMetric = Literal["clip_i_first", "clip_i_prev", "clip_t_turn", "l1_prev", "psnr_prev"]
"""Per-turn consistency metrics of a multi-turn conversation (:mod:`harness.scoring.consistency`)."""
SequenceAggregate = Literal["mean", "worst", "last", "change"]
"""How a conversation's per-turn values become one number: ``mean`` over its scored turns, ``worst`` turn,
value at its ``last`` turn, ``change`` from its first scored turn to its last (last − first)."""


class _ConsistencyRow(BaseModel):
    """What every consistency row begins with: its JSON form's version, the scorer and the target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCORE_SCHEMA_VERSION, description="version of this row's JSON form")
    scorer: str = Field(description="the scorer's id (backbone and weights)")
    target: str = Field(description="the target (model@provider)")


class ConsistencyTurnRow(_ConsistencyRow):
    """Mean of one consistency metric over one target's conversations at one turn index, with the
    cluster-bootstrap interval of the score summaries (clusters: the (challenge, variant) prompts)."""

    turn: int = Field(description="1-based turn index")
    metric: ConsistencyMetric = Field(description="the consistency metric (see docs/consistency.md)")
    higher_is_better: bool = Field(description="direction of the metric")
    n_images: int = Field(description="turn images scored (conversations that completed this turn)")
    n_prompts: BootstrapClusters
    mean: float = Field(description="plain mean over the turn images")
    low: BootstrapLow
    high: BootstrapHigh


class ConsistencySequenceRow(_ConsistencyRow):
    """One target's conversations summarised per conversation and then averaged: each conversation's
    ``aggregate`` of ``metric`` over its scored turns, mean over conversations with the cluster-bootstrap
    interval. ``mean`` and ``worst`` count incomplete conversations (their completed turns); ``last`` and
    ``change`` only complete ones, so a conversation that stopped early never looks steadier for it."""

    metric: ConsistencyMetric = Field(description="the consistency metric (see docs/consistency.md)")
    aggregate: SequenceAggregate = Field(description="mean over turns, worst turn, last turn, or last − first")
    higher_is_better: bool = Field(description="direction of the metric (and of its change)")
    n_sequences: int = Field(description="conversations that give this aggregate")
    n_incomplete: int = Field(description="of those, conversations that failed before their last turn")
    n_prompts: BootstrapClusters
    mean: float = Field(description="mean over the conversations")
    low: BootstrapLow
    high: BootstrapHigh


class TurnConsistency(BaseModel):
    """One completed turn of one conversation: its image and its consistency values (null where the turn has
    nothing to compare with: ``clip_i_first`` on turn 1, ``clip_i_prev`` on a turn 1 without starting images,
    the pixel metrics on a turn whose challenge names nothing to ``preserve``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    turn: int = Field(description="1-based turn index")
    image_sha256: str = Field(description="the turn's output in the image store")
    image_ext: str = Field(description="its file extension there")
    preserve: list[str] = Field(default_factory=list, description="what the turn had to keep")
    clip_i_first: float | None = Field(description="CLIP image cosine to the first turn's output")
    clip_i_prev: float | None = Field(description="CLIP image cosine to the previous turn's output (turn 1: to the "
                                                  "first starting image)")
    clip_t_turn: float | None = Field(description="CLIP image cosine to the turn's own instruction")
    l1_prev: float | None = Field(description="mean |Δ| in [0, 1] against the previous image, where the turn "
                                              "names what to preserve")
    psnr_prev: float | None = Field(description="PSNR (dB, capped at 100) against the previous image, where the "
                                                "turn names what to preserve")


class ConversationConsistency(BaseModel):
    """One conversation's consistency, turn by turn; only completed turns are scored, and ``note`` says so
    when the conversation stopped early."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCORE_SCHEMA_VERSION, description="version of this row's JSON form")
    run_id: str
    challenge_id: str
    variant: str
    target: str
    sample: int
    turns: int = Field(description="turns the challenge has")
    scored_turns: int = Field(description="turns scored: the completed ones")
    completed: bool = Field(description="whether every turn succeeded")
    failed_at_turn: int | None = Field(description="the turn that failed (null when complete)")
    note: str | None = Field(description="why fewer turns than the challenge has were scored")
    steps: list[TurnConsistency]


class ConsistencyOutput(BaseModel):
    """Consistency of a run's multi-turn conversations under one scorer: per turn index, per conversation
    aggregated per target, and each conversation. ``problems`` lists turns that could not be scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCORE_SCHEMA_VERSION, description="version of this JSON form")
    scorer: str
    turns: list[ConsistencyTurnRow] = Field(default_factory=list)
    sequences: list[ConsistencySequenceRow] = Field(default_factory=list)
    conversations: list[ConversationConsistency] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ScoreOutput(BaseModel):
    """What ``harness score --json`` prints: the scoring pass's counters, the summary rows and, when the runs
    hold multi-turn conversations, their consistency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCORE_SCHEMA_VERSION, description="version of this JSON form")
    report: dict[str, Any] = Field(description="the scoring pass's counters: outputs scored, skipped and failed, "
                                               "images and texts embedded or cached, seconds, problems")
    summary: list[ScoreSummaryRow] = Field(description="mean and interval per target and metric")
    consistency: ConsistencyOutput | None = Field(
        None, description="multi-turn consistency (CLIP-I to the first and previous turn, CLIP-T per turn, pixel "
                          "preservation); null when the runs hold no conversation")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": self.schema_version, "report": self.report,
                               "summary": [r.to_json() for r in self.summary]}
        if self.consistency is not None:
            out["consistency"] = self.consistency.to_json()
        return out

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of ``harness score --json`` (``harness score --schema``)."""
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:score-output:v{SCORE_SCHEMA_VERSION}"
        schema["title"] = "ScoreOutput"
        return schema


def cluster_bootstrap_mean(values: np.ndarray[Any, Any], clusters: np.ndarray[Any, Any], *,
                           resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                           seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap interval resampling whole ``clusters``.

    ``clusters`` labels each value. Returns ``(mean, low, high)``; ``low``/``high`` are NaN with fewer than
    two clusters.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("cannot summarise an empty sample")
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=x)
    counts = np.bincount(inverse).astype(float)
    mean = float(x.mean())
    k = labels.size
    if k < 2:
        return mean, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, k, size=(resamples, k))
    replicates = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return mean, float(low), float(high)


def summarise_scores(scores: pd.DataFrame, by: Sequence[str] = ("target",), *, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """One row per (scorer, ``by`` columns, metric) of a :func:`harness.store.scores.scores_frame`.

    Columns: :data:`SUMMARY_COLUMNS` (with ``by`` in place of ``target``). ``truncated_share`` is the
    fraction of images whose text was truncated (NaN for metrics without text).
    """
    keys = ["scorer", *by, "metric"]
    columns = [c for c in SUMMARY_COLUMNS if c != "target"]
    columns[1:1] = list(by)
    if scores.empty:
        return pd.DataFrame(columns=columns)
    out: list[dict[str, Any]] = []
    for group, frame in scores.groupby(keys, sort=True, observed=True):
        key = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        clusters = (frame["challenge_id"].astype(str) + "\x00" + frame["variant"].astype(str)).to_numpy()
        mean, low, high = cluster_bootstrap_mean(frame["value"].to_numpy(dtype=float), clusters,
                                                 resamples=resamples, confidence=confidence, seed=seed)
        truncated = frame["truncated"].dropna()
        info = METRICS.get(str(key["metric"]))
        out.append({
            **key,
            "higher_is_better": bool(frame["higher_is_better"].iloc[0]) if info is None else info.higher_is_better,
            "n_images": len(frame), "n_prompts": len(np.unique(clusters)), "mean": mean, "low": low,
            "high": high, "truncated_share": float(truncated.astype(bool).mean()) if len(truncated) else float("nan"),
        })
    return pd.DataFrame(out, columns=columns)


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows of a summary (NaN becomes ``None``)."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in summary.to_dict("records")]


def summary_rows(summary: pd.DataFrame) -> list[ScoreSummaryRow]:
    """The typed rows of a summary (:func:`summarise_scores`)."""
    return [ScoreSummaryRow.from_dict(r) for r in summary_records(summary)]


def summary_columns(summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per target, flat columns ``<metric>_mean``, ``<metric>_low``, ``<metric>_high`` and ``<metric>_n``
    (NaN as ``None``), to extend the rows of the provider table. ``summary`` must hold one scorer's rows."""
    scorers = set(summary["scorer"]) if not summary.empty else set()
    if len(scorers) > 1:
        raise ValueError(f"summary mixes scorers {sorted(scorers)}; pick one (scores_frame(..., scorer=...))")
    out: dict[str, dict[str, Any]] = {}
    for row in summary_rows(summary):
        cols = out.setdefault(str(row.target), {"score_scorer": row.scorer})
        metric = row.metric
        cols.update({f"{metric}_mean": row.mean, f"{metric}_low": row.low, f"{metric}_high": row.high,
                     f"{metric}_n": row.n_images})
    return out
