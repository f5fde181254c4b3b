"""The provider performance table: one row per target (or per target and challenge, kind, category, variant).

Every column of a row comes from the same logical requests (:mod:`harness.stats.requests`). Keys of a row
(``None`` where a value does not exist or is withheld; ``*_ms`` in milliseconds, ``*_usd`` in US dollars):

=============================== ==========================================================================
``target, model, provider``     who served the requests (plus the ``by`` keys, e.g. ``challenge_id``)
``n``                           logical requests attempted (final attempt recorded)
``attempts``                    HTTP attempts, retries included; ``attempts_per_request`` = attempts / n
``successes``, ``success_rate`` eventual success (final attempt ok) with ``success_ci_low/high``
                                (Wilson 95 %)
``first_attempt_success_rate``  share of requests whose first attempt succeeded
``rate_limited_share``          429 (``rate_limited``) attempts / all attempts
``errors``                      failed requests by error class (``{kind: count}``)
``p50/p90/p95/p99_ms``          latency percentiles of successful requests (type 7) with
                                ``*_ci_low_ms``/``*_ci_high_ms`` (distribution-free order-statistic 95 %)
``withheld``                    ``{column: reason}`` for every percentile withheld for lack of data
``p95_with_failures_ms``        p95 over all requests with failures counted at the run's timeout;
                                ``p95_with_failures_censored`` is true when failures exceed 5 %, i.e.
                                the p95 lies beyond the timeout (shown as "> timeout")
``timeout_ms``                  the run's effective per-attempt timeout
``ttfb_p50_ms, ttfb_p95_ms``    time to first byte of successful requests
``submit/queue/run/fetch/``     queue APIs only: phase medians, ``queue_p95_ms`` and the status poll
``download_p50_ms``             interval ``poll_interval_ms`` that bounds their precision
``images``, ``window_s``        successful images; last request end − first request scheduled (wall clock)
``images_per_min``              throughput: images / window
``cost_total_usd``              everything billed, failures included; ``billed_failures`` counts them
``cost_per_image_usd``          cost_total_usd / images
``invariant_violations``        attempts breaking 0 <= TTFB <= latency or queue + run <= latency;
                                ``invariant_attempt_ids`` lists up to five of them
=============================== ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.stats.intervals import CONFIDENCE, quantile_interval, wilson
from harness.stats.requests import PHASE_COLUMNS, logical_requests

Array = np.ndarray[Any, Any]

STATS_COLUMNS = ("target", "model", "provider", "n", "success_rate", "p50_ms", "p95_ms", "ttfb_p50_ms",
                 "cost_per_image_usd")
"""The columns every consumer can rely on (DESIGN.md contract)."""

LATENCY_PERCENTILES = (50, 90, 95, 99)
FAILURE_TAIL = 0.05
"""Failure share above which the failure-inclusive p95 lies beyond the timeout."""

BY_ALIASES = {"target": "target", "challenge": "challenge_id", "challenge_id": "challenge_id", "kind": "kind",
              "category": "category", "variant": "variant", "model": "model", "provider": "provider",
              "run": "run_id", "run_id": "run_id"}
"""Names accepted by ``--by`` and the attempt column each groups on."""


def _column(group: pd.DataFrame, name: str, mask: Array | None = None) -> Array:
    """Finite values of a numeric column (of the rows in ``mask``); empty when the column is absent."""
    if name not in group.columns:
        return np.empty(0)
    arr: Array = group[name].to_numpy(dtype=float, na_value=np.nan)
    if mask is not None:
        arr = arr[mask]
    return arr[~np.isnan(arr)]


def _percentiles(row: dict[str, Any], prefix: str, values: Array, qs: Sequence[int], what: str,
                 confidence: float) -> None:
    x = np.sort(values)
    for p in qs:
        col = f"{prefix}p{p}_ms"
        qi = quantile_interval(x, p / 100, confidence, sorted_=True, what=what)
        row[col] = qi.value
        row[f"{col[:-3]}_ci_low_ms"] = qi.low
        row[f"{col[:-3]}_ci_high_ms"] = qi.high
        if qi.withheld:
            row["withheld"][col] = qi.withheld


def _failure_inclusive(row: dict[str, Any], ok_latency: Array, failures: int, timeout_ms: float | None,
                       confidence: float) -> None:
    n = ok_latency.size + failures
    row["timeout_ms"] = timeout_ms
    row["p95_with_failures_censored"] = None
    row["p95_with_failures_ms"] = None
    if timeout_ms is None:
        row["withheld"]["p95_with_failures_ms"] = "the run's timeout is unknown"
        return
    values = np.concatenate([np.minimum(ok_latency, timeout_ms), np.full(failures, timeout_ms)])
    qi = quantile_interval(values, 0.95, confidence, what="requests")
    if qi.withheld:
        row["withheld"]["p95_with_failures_ms"] = qi.withheld
        return
    censored = failures / n > FAILURE_TAIL
    row["p95_with_failures_censored"] = censored
    row["p95_with_failures_ms"] = timeout_ms if censored else qi.value


def _phases(row: dict[str, Any], group: pd.DataFrame, ok: Array, confidence: float) -> None:
    for c in PHASE_COLUMNS:
        if c != "poll_interval_ms":
            row[f"{c[:-3]}_p50_ms"] = None
    row["queue_p95_ms"] = None
    row["poll_interval_ms"] = None
    if _column(group, "queue_ms", ok).size == 0:
        return
    for c in PHASE_COLUMNS:
        if c not in group.columns:
            continue
        values = _column(group, c, ok)
        if c == "poll_interval_ms":
            row[c] = float(np.max(values)) if values.size else None
            continue
        qi = quantile_interval(values, 0.5, confidence, what=f"{c[:-3]} phases")
        row[f"{c[:-3]}_p50_ms"] = qi.value
        if qi.withheld:
            row["withheld"][f"{c[:-3]}_p50_ms"] = qi.withheld
        if c == "queue_ms":
            q95 = quantile_interval(values, 0.95, confidence, what="queue phases")
            row["queue_p95_ms"] = q95.value
            if q95.withheld:
                row["withheld"]["queue_p95_ms"] = q95.withheld


def _error_counts(kinds: pd.Series) -> dict[str, int]:
    """Failed requests per error class, sorted by class name (classes without failures left out)."""
    counts = kinds.astype(object).fillna("unknown").value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items()) if v}


def _label(group: pd.DataFrame, column: str) -> str:
    values = group[column].unique()
    return str(values[0]) if len(values) == 1 else ", ".join(sorted(map(str, values)))


def group_row(group: pd.DataFrame, keys: dict[str, Any], *, timeout_ms: float | None = None,
              confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The table row of one group of logical requests (a frame from :func:`logical_requests`)."""
    ok_mask = group["ok"].to_numpy(dtype=bool)
    n = len(group)
    successes = int(ok_mask.sum())
    attempts = int(group["attempts"].sum())
    interval = wilson(successes, n, confidence)
    row: dict[str, Any] = {"target": _label(group, "target"), "model": _label(group, "model"),
                           "provider": _label(group, "provider")}
    row.update(keys)
    row.update(
        n=n, attempts=attempts, attempts_per_request=attempts / n, successes=successes,
        success_rate=successes / n, success_ci_low=interval.low, success_ci_high=interval.high,
        first_attempt_success_rate=float(group["first_ok"].astype(bool).mean()),
        rate_limited_share=float(group["rate_limited"].sum()) / attempts,
        errors=_error_counts(group.loc[~ok_mask, "error_kind"]),
        withheld={},
    )
    latency = _column(group, "latency_ms", ok_mask)
    _percentiles(row, "", latency, LATENCY_PERCENTILES, "successful requests", confidence)
    _failure_inclusive(row, latency, n - successes, timeout_ms, confidence)
    ttfb = _column(group, "ttfb_ms", ok_mask)
    row["ttfb_n"] = int(ttfb.size)
    _percentiles(row, "ttfb_", ttfb, (50, 95), "successful requests with a TTFB", confidence)
    _phases(row, group, ok_mask, confidence)
    images = int(group["n_images"].to_numpy()[ok_mask].sum())
    window_s = float(group["ready_at"].max() - group["sched_at"].min()) if n else math.nan
    has_window = math.isfinite(window_s) and window_s > 0
    cost = math.fsum(group["cost_usd"].to_numpy(dtype=float))
    bad = group["invariant_violations"].to_numpy() > 0
    row.update(
        images=images, window_s=window_s if has_window else None,
        images_per_min=60.0 * images / window_s if has_window else None,
        cost_total_usd=cost, billed_failures=int(group["billed_failure"].sum()),
        cost_per_image_usd=cost / images if images else None,
        invariant_violations=int(group["invariant_violations"].sum()),
        invariant_attempt_ids=[int(i) for i in group["id"].to_numpy()[bad][:5]] if "id" in group.columns else [],
    )
    return row


def resolve_by(by: Sequence[str]) -> tuple[str, ...]:
    """Map ``--by`` names (``challenge``, ``kind`` …) to attempt columns; raises ``ValueError`` on unknown ones."""
    unknown = [b for b in by if b not in BY_ALIASES]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(sorted(BY_ALIASES))}")
    return tuple(dict.fromkeys(BY_ALIASES[b] for b in by))


def provider_table(attempts: pd.DataFrame, by: Sequence[str] = ("target",), *, timeout_ms: float | None = None,
                   confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """One row per ``by`` group (default: per target) of the attempts of one or more runs.

    ``timeout_ms`` is the run's effective per-attempt timeout, needed for the failure-inclusive p95.
    """
    if attempts.empty:
        return []
    columns = resolve_by(by)
    missing = [c for c in columns if c not in attempts.columns]
    if missing:
        raise ValueError(f"attempts frame lacks grouping column(s) {', '.join(missing)}")
    requests = logical_requests(attempts, extra=columns)
    rows: list[dict[str, Any]] = []
    for keys, group in requests.groupby(list(columns), sort=True, observed=True, dropna=False):
        key_tuple = keys if isinstance(keys, tuple) else (keys,)
        key_map = {c: (None if isinstance(v, float) and math.isnan(v) else v)
                   for c, v in zip(columns, key_tuple, strict=True)}
        rows.append(group_row(group, key_map, timeout_ms=timeout_ms, confidence=confidence))
    return rows
