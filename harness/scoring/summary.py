"""Mean score per target and metric with a 95 % interval, for ``harness stats``, ``score`` and the report.

Images of the same prompt are not independent (a model draws several samples of one challenge, and prompt
difficulty moves them together), so the interval is a **cluster percentile bootstrap**: each replicate
draws the (challenge, variant) prompts of the group with replacement, keeps all their images, and takes the
mean over those images. The estimate is the plain mean over images. With one prompt only the data cannot
bound the mean and the interval is absent (NaN). Replicates are seeded, so a table is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.scoring.metrics import METRICS

CONFIDENCE = 0.95
RESAMPLES = 2000
"""Bootstrap replicates per (target, metric)."""

SUMMARY_COLUMNS = ("scorer", "target", "metric", "higher_is_better", "n_images", "n_prompts", "mean", "low",
                   "high", "truncated_share")


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


def summary_columns(summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per target, flat columns ``<metric>_mean``, ``<metric>_low``, ``<metric>_high`` and ``<metric>_n``
    (NaN as ``None``), to extend the rows of the provider table. ``summary`` must hold one scorer's rows."""
    scorers = set(summary["scorer"]) if not summary.empty else set()
    if len(scorers) > 1:
        raise ValueError(f"summary mixes scorers {sorted(scorers)}; pick one (scores_frame(..., scorer=...))")
    out: dict[str, dict[str, Any]] = {}
    for row in summary_records(summary):
        cols = out.setdefault(str(row["target"]), {"score_scorer": row["scorer"]})
        metric = row["metric"]
        cols.update({f"{metric}_mean": row["mean"], f"{metric}_low": row["low"], f"{metric}_high": row["high"],
                     f"{metric}_n": row["n_images"]})
    return out
