"""From attempts to logical requests: the one set of rows every statistic of a table is computed from.

A logical request is one ``(run, challenge, variant, target, sample)``. It counts when it has a final attempt
(an interrupted run's unfinished requests are left out of every column alike). Per request:

* ``ok``, ``error_kind``, ``n_images``, ``ttfb_ms`` and the queue phases are those of the final attempt;
* ``latency_ms`` is the time from the first attempt's start to the final attempt's end: the attempts'
  latencies plus the waits between them (``retry_wait_ms``, recorded on the attempt that followed the wait).
  Without retries it is the attempt's latency. For a failure it is the time until the failure was known;
* ``attempts``, ``rate_limited`` (429 attempts), ``cost_usd`` (everything billed, failures included) and
  ``billed_failures`` add up over the request's attempts; ``first_ok`` is whether its first attempt succeeded;
* ``invariant_violations`` counts attempts breaking ``0 <= ttfb <= latency`` or ``queue + run <= latency``;
* ``sched_at`` (Unix s) is when the request was scheduled, ``ready_at`` when its final attempt ended;
* ``not_sent`` marks a request recorded as never sent (``error_kind = "not_sent"``: a dead target stopped
  early, a spend cap); the table counts these apart and leaves them out of every other column;
* the final attempt's ``time_to_image_ms``, ``latency_with_connect_ms``, ``client_ms``, ``size_as_asked`` and
  ``intended_ms`` are carried when the attempts have them (:data:`OPTIONAL_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.outcomes import NOT_SENT, ErrorKind

Array = np.ndarray[Any, Any]

KEY_COLUMNS = ("run_id", "challenge_id", "variant", "target", "sample")
"""Columns identifying a logical request."""

INPUT_COLUMNS = (
    "id", *KEY_COLUMNS, "attempt", "final", "model", "provider", "ok", "error_kind", "started_at", "sched_ms",
    "start_ms", "latency_ms", "ttfb_ms", "submit_ms", "queue_ms", "run_ms", "fetch_ms", "download_ms",
    "poll_interval_ms", "retry_wait_ms", "n_images", "cost_usd", "billed",
)
"""Attempt columns the statistics read (pass as ``columns=`` to ``attempts_frame`` to read no more)."""

OPTIONAL_COLUMNS = ("time_to_image_ms", "latency_with_connect_ms", "client_ms", "size_as_asked", "intended_ms")
"""Newer attempt columns the statistics read when a store has them (older stores and clocks lack some); a
figure built on one that is absent or all null is withheld with a reason."""

REQUIRED_COLUMNS = (*KEY_COLUMNS, "attempt", "final", "model", "provider", "ok", "error_kind", "latency_ms",
                    "n_images", "cost_usd")
PHASE_COLUMNS = ("submit_ms", "queue_ms", "run_ms", "fetch_ms", "download_ms", "poll_interval_ms")
TOLERANCE_MS = 1e-6
"""Slack for the invariant check: clock values are differences of integer nanoseconds."""

CATEGORIZE_ROWS = 50_000
"""From this many attempts on, text columns become categoricals: grouping and slicing then move integer
codes instead of strings (a fixed cost that only pays off on large frames)."""


def _num(frame: pd.DataFrame, name: str, default: float = np.nan) -> Array:
    """A numeric column as floats (``default`` where the column is absent; missing values are NaN)."""
    if name in frame.columns:
        values: Array = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return values
    return np.full(len(frame), default, dtype=float)


def _violations(frame: pd.DataFrame) -> Array:
    latency = _num(frame, "latency_ms")
    ttfb = _num(frame, "ttfb_ms")
    phases = _num(frame, "queue_ms") + _num(frame, "run_ms")
    with np.errstate(invalid="ignore"):
        bad = (ttfb < -TOLERANCE_MS) | (ttfb > latency + TOLERANCE_MS) | (phases > latency + TOLERANCE_MS)
    return bad.astype(np.int64)


def stats_columns(available: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The attempt columns to read for the statistics: :data:`INPUT_COLUMNS`, those of
    :data:`OPTIONAL_COLUMNS` in ``available`` (a store's readable columns), then ``extra``."""
    have = set(available)
    return list(dict.fromkeys([*INPUT_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in have), *extra]))


def check_columns(attempts: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the attempt columns the statistics need but ``attempts`` lacks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in attempts.columns]
    if missing:
        raise ValueError(f"attempts frame lacks column(s) {', '.join(missing)}")


def logical_requests(attempts: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per logical request with a final attempt (see the module docstring for each column).

    ``extra`` names further attempt columns to carry from the final attempt (grouping keys such as ``kind``).
    """
    check_columns(attempts)
    carry = [c for c in ("id", "model", "provider", "error_kind", "ttfb_ms", *PHASE_COLUMNS, *OPTIONAL_COLUMNS,
                         *extra) if c in attempts.columns and c not in KEY_COLUMNS]
    carry = list(dict.fromkeys(carry))
    ok = attempts["ok"].to_numpy(dtype=bool)
    latency = _num(attempts, "latency_ms")
    started = _num(attempts, "started_at")
    billed = _num(attempts, "billed", 0.0)
    wait = np.nan_to_num(_num(attempts, "retry_wait_ms", 0.0))
    columns: dict[str, Any] = {
        "ok": ok,
        "n_images": np.nan_to_num(_num(attempts, "n_images", 0.0)).astype(np.int64),
        "latency_ms": latency + wait,
        "cost_usd": np.nan_to_num(_num(attempts, "cost_usd", 0.0)),
        "billed_failure": (~ok & (np.nan_to_num(billed) != 0)).astype(np.int64),
        "rate_limited": (attempts["error_kind"] == ErrorKind.RATE_LIMITED.value).to_numpy(dtype=bool).astype(np.int64),
        "invariant_violations": _violations(attempts),
        "sched_at": started - (_num(attempts, "start_ms", 0.0) - _num(attempts, "sched_ms", 0.0)) / 1000.0,
        "ready_at": started + latency / 1000.0,
        "attempts": np.ones(len(attempts), dtype=np.int64),
        "first_ok": ok,
        "not_sent": (attempts["error_kind"] == NOT_SENT).to_numpy(dtype=bool),
    }
    categorize = len(attempts) >= CATEGORIZE_ROWS
    for c in (*KEY_COLUMNS, *carry):
        column = attempts[c]
        is_text = not (pd.api.types.is_numeric_dtype(column) or isinstance(column.dtype, pd.CategoricalDtype))
        columns[c] = column.astype("category") if categorize and is_text else column
    per_attempt = pd.DataFrame(columns, index=attempts.index)
    final = attempts["final"].to_numpy(dtype=bool)
    if final.all():
        return per_attempt.reset_index(drop=True)
    out = per_attempt[final]
    _fold_retries(out, per_attempt[~final], attempts.loc[final, "attempt"], attempts.loc[~final, "attempt"])
    return out.reset_index(drop=True)


def _fold_retries(out: pd.DataFrame, prior: pd.DataFrame, final_attempt: pd.Series, prior_attempt: pd.Series) -> None:
    """Add the earlier attempts of retried requests into their final rows (in place).

    Only final rows with ``attempt > 1`` can have earlier attempts, so the (costly) join on the request key
    touches retried requests alone. Each attempt's ``latency_ms`` already includes the wait before it.
    """
    keys = list(KEY_COLUMNS)
    retried = out.index[final_attempt.to_numpy() > 1]
    if len(retried) == 0 or prior.empty:
        return
    earlier = prior.assign(attempt=prior_attempt.to_numpy()).sort_values("attempt", kind="stable")
    sums: Any = earlier.groupby(keys, sort=False, observed=True, dropna=False).agg(
        latency_sum=("latency_ms", "sum"), cost_sum=("cost_usd", "sum"),
        billed_sum=("billed_failure", "sum"), rl_sum=("rate_limited", "sum"), bad_sum=("invariant_violations", "sum"),
        sched_min=("sched_at", "min"), count=("attempt", "size"), first=("ok", "first"),
    ).reset_index()
    rows = out.loc[retried, keys].rename_axis("_row").reset_index()
    target = rows.merge(sums, on=keys, how="inner").set_index("_row")
    idx = target.index
    out.loc[idx, "latency_ms"] = out.loc[idx, "latency_ms"] + target["latency_sum"]
    out.loc[idx, "cost_usd"] = out.loc[idx, "cost_usd"] + target["cost_sum"]
    out.loc[idx, "billed_failure"] = out.loc[idx, "billed_failure"] + target["billed_sum"]
    out.loc[idx, "rate_limited"] = out.loc[idx, "rate_limited"] + target["rl_sum"]
    out.loc[idx, "invariant_violations"] = out.loc[idx, "invariant_violations"] + target["bad_sum"]
    out.loc[idx, "sched_at"] = np.fmin(out.loc[idx, "sched_at"].to_numpy(), target["sched_min"].to_numpy())
    out.loc[idx, "attempts"] = 1 + target["count"]
    out.loc[idx, "first_ok"] = target["first"].astype(bool)
