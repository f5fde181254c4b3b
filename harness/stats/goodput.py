"""Goodput against a latency objective: the share of requests that succeeded within ``slo_ms``.

A request *meets* the objective when it succeeded and its measured time is at most ``slo_ms``; a failure is
always a miss, however fast it failed. Requests recorded as never sent (dead target, spend cap) are left out,
as in every other column of the provider table. The share comes with a Wilson 95 % interval
(:func:`harness.stats.intervals.wilson`), like the success rate.

Which time is measured (:data:`MEASURES`):

* ``time_to_image`` (default): from the first attempt's start to the final image, connection set-up, every
  retry and every Retry-After wait included: what the buyer's own user waits for. A provider that succeeds
  only on its second try pays for the first try here;
* ``latency``: the request's provider time (its attempts' latencies and the waits between them), without
  connection set-up. For runs recorded before time to image existed.

A successful request without the chosen time (a run recorded before that time existed) cannot be judged;
leaving it out would count that target's failures against too small a total, so the figure is then withheld
with the reason (and the other measure suggested).

This goodput is a share of *requests*, as in vLLM's and AIPerf's goodput against SLOs, reported as a share
rather than a rate per second so runs of different lengths compare.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from harness.stats.intervals import CONFIDENCE, wilson
from harness.stats.requests import logical_requests

Measure = Literal["time_to_image", "latency"]
MEASURES: Final[tuple[Measure, ...]] = ("time_to_image", "latency")
MEASURE_COLUMNS: Final[dict[str, str]] = {"time_to_image": "time_to_image_ms", "latency": "latency_ms"}
DEFAULT_MEASURE: Final[Measure] = "time_to_image"

_SLO = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m)\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0}
MAX_SLO_MS: Final = 24 * 3600 * 1000.0
"""Longest objective accepted (one day): anything longer is a typo, not an objective."""


def parse_slo(text: str) -> float:
    """A latency objective (``10s``, ``1500ms``, ``2.5s``, ``1m``) in ms; ``ValueError`` saying what is wrong.

    A unit is required: a bare ``10`` could mean seconds or milliseconds.
    """
    match = _SLO.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write a number and a unit: 10s, 1500ms, 2.5s or 1m")
    value = float(match.group(1)) * _UNIT_MS[match.group(2).lower()]
    if not value > 0:
        raise ValueError(f"{text!r}: the objective must be longer than 0 ms")
    if value > MAX_SLO_MS:
        raise ValueError(f"{text!r}: the objective must be at most 24 h")
    return value


def format_slo(slo_ms: float) -> str:
    """``slo_ms`` the way a person writes it: ``10 s``, ``2.5 s``, ``750 ms``."""
    if slo_ms >= 1000 and math.isclose(slo_ms / 1000, round(slo_ms / 1000, 3)):
        return f"{slo_ms / 1000:.10g} s"
    return f"{slo_ms:.10g} ms"


@dataclass(frozen=True, slots=True)
class GoodputCounts:
    """Requests judged against the objective (``n``) and those that met it (``hits``).

    ``unjudged``: successes without the measured time (left out of ``n``; their presence withholds the share)."""

    hits: int
    n: int
    unjudged: int = 0


@dataclass(frozen=True, slots=True)
class Goodput:
    """One target's goodput: ``share`` = ``hits / n`` with its Wilson interval; ``None``s when ``n`` is 0,
    with the reason in ``withheld``."""

    target: str
    slo_ms: float
    measure: Measure
    hits: int
    n: int
    share: float | None
    low: float | None
    high: float | None
    withheld: str | None = None


def _check(slo_ms: float, measure: str) -> None:
    if not (math.isfinite(slo_ms) and slo_ms > 0):
        raise ValueError(f"the objective must be a positive number of ms, got {slo_ms}")
    if measure not in MEASURES:
        raise ValueError(f"unknown goodput measure {measure!r}; choose from {', '.join(MEASURES)}")


def goodput_counts(requests: pd.DataFrame, slo_ms: float, measure: Measure = DEFAULT_MEASURE) -> GoodputCounts:
    """Counts of the logical requests in ``requests`` (a :func:`logical_requests` frame, never-sent ones
    already removed or marked in ``not_sent``) against ``slo_ms``: what a two-sample check needs."""
    _check(slo_ms, measure)
    if "not_sent" in requests.columns:
        requests = requests[~requests["not_sent"].to_numpy(dtype=bool)]
    ok = requests["ok"].to_numpy(dtype=bool)
    column = MEASURE_COLUMNS[measure]
    if column in requests.columns:
        times: np.ndarray[Any, Any] = pd.to_numeric(requests[column], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan)
    else:
        times = np.full(len(requests), np.nan)
    known = ok & ~np.isnan(times)
    unjudged = int((ok & ~known).sum())
    with np.errstate(invalid="ignore"):
        hits = int((known & (times <= slo_ms)).sum())
    return GoodputCounts(hits=hits, n=int((~ok).sum()) + int(known.sum()), unjudged=unjudged)


def goodput_of(counts: GoodputCounts, target: str, slo_ms: float, measure: Measure = DEFAULT_MEASURE,
               confidence: float = CONFIDENCE) -> Goodput:
    """The :class:`Goodput` of ``counts``, withheld with a reason when a success lacks the measured time or
    no request was sent."""
    if counts.unjudged or counts.n == 0:
        other = ", ".join(m for m in MEASURES if m != measure)
        why = (f"{counts.unjudged} successful request(s) have no recorded {measure.replace('_', ' ')} (a run "
               f"recorded before it was measured); measure goodput by {other} instead" if counts.unjudged
               else "no request was sent")
        return Goodput(target, slo_ms, measure, counts.hits, counts.n, None, None, None, why)
    interval = wilson(counts.hits, counts.n, confidence)
    return Goodput(target, slo_ms, measure, counts.hits, counts.n, interval.estimate, interval.low, interval.high)


def goodput(attempts: pd.DataFrame, slo_ms: float, *, measure: Measure = DEFAULT_MEASURE,
            confidence: float = CONFIDENCE) -> list[Goodput]:
    """Per target (sorted by name), the share of the attempts' logical requests that succeeded within
    ``slo_ms`` (ms), with its Wilson interval. ``attempts`` is an ``attempts_frame`` of one or more runs."""
    _check(slo_ms, measure)
    if attempts.empty:
        return []
    requests = logical_requests(attempts)
    return [goodput_of(goodput_counts(group, slo_ms, measure), str(target), slo_ms, measure, confidence)
            for target, group in requests.groupby("target", sort=True, observed=True)]


def goodput_curve(requests: pd.DataFrame, slos_ms: Sequence[float], measure: Measure = DEFAULT_MEASURE
                  ) -> list[GoodputCounts]:
    """Counts at each objective of ``slos_ms`` (for a goodput-versus-objective chart)."""
    return [goodput_counts(requests, s, measure) for s in slos_ms]
