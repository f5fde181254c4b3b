"""Point estimates and confidence intervals for one sample: proportions and quantiles.

* **Percentiles** use linear interpolation between order statistics (Hyndman–Fan type 7, numpy's
  ``method="linear"``, the convention of vLLM, AIPerf, genai-perf and k6), never bucketed.
* **Quantile intervals** are distribution-free order-statistic intervals: with ``B ~ Binomial(n, q)`` counting
  observations below the true quantile, ``[x(l), x(u)]`` covers it with probability ``P(l <= B <= u-1)``.
  ``l`` and ``u`` are chosen equal-tailed (at most ``α/2`` on each side), so coverage is at least ``1 - α``
  whatever the latency distribution. This is the interval of ``scipy.stats.quantile_test``.
* **Withholding rule**: a percentile is reported only when both ends of that interval are sample values,
  i.e. ``q**n <= α/2`` and ``(1-q)**n <= α/2``. At 95 % confidence: p50 needs n >= 6, p90 n >= 36, p95
  n >= 72, p99 n >= 368 (a one-sided 95 % upper bound alone would need 59 for p95 and 299 for p99). Below
  that, the data cannot bound the tail, and printing a number would pretend it can.
* **Proportions** use the Wilson score interval (no continuity correction), which keeps sensible coverage near
  0 and 1 where the Wald interval collapses; differences of proportions use Newcombe's hybrid score interval
  (method 10 of Newcombe 1998), built from the two Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy import special
from scipy import stats as sps

Array = np.ndarray[Any, Any]

CONFIDENCE = 0.95
"""Default two-sided confidence level of every interval the harness reports."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with a two-sided interval ``[low, high]`` at ``confidence``."""

    estimate: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval."""
        return value < self.low or value > self.high


class SuccessLatencyFigures(BaseModel):
    """The success rate (Wilson interval) and the p50 and p95 latencies of successful requests (ms, with their
    order-statistic intervals) as a typed row carries them; null where a figure does not exist or is withheld.

    A row that declares fields before these lists this class *after* the base holding them: pydantic orders
    inherited fields from the last base to the first, so ``class Row(SuccessLatencyFigures, _RowHead)`` keeps
    the head's fields first in the JSON form."""

    successes: int
    success_rate: float | None
    success_ci_low: float | None
    success_ci_high: float | None
    p50_ms: float | None
    p50_ci_low_ms: float | None
    p50_ci_high_ms: float | None
    p95_ms: float | None
    p95_ci_low_ms: float | None
    p95_ci_high_ms: float | None


def _z(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2))


def wilson(successes: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of a proportion ``successes / n`` (``n > 0``). ``successes`` may be fractional
    (a tie counted as half a win): the score interval's formula holds for any observed share."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else min(p, centre - half)
    high = 1.0 if successes == n else max(p, centre + half)
    return Interval(p, low, high, confidence)


def newcombe(successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = CONFIDENCE) -> Interval:
    """Newcombe's hybrid score interval (method 10) of the difference ``p_b - p_a``.

    Positive means B succeeds more often than A.
    """
    a = wilson(successes_a, n_a, confidence)
    b = wilson(successes_b, n_b, confidence)
    d = b.estimate - a.estimate
    low = d - math.sqrt((b.estimate - b.low) ** 2 + (a.high - a.estimate) ** 2)
    high = d + math.sqrt((b.high - b.estimate) ** 2 + (a.estimate - a.low) ** 2)
    return Interval(d, max(-1.0, low), min(1.0, high), confidence)


def percentile(values: Array, q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation (type 7); ``values`` must be non-empty."""
    return float(np.percentile(values, q, method="linear"))


def min_n_for_quantile(q: float, confidence: float = CONFIDENCE) -> int:
    """Smallest sample size whose order-statistic interval for quantile ``q`` (0–1) has both ends in the data."""
    if not 0 < q < 1:
        raise ValueError(f"quantile must be strictly between 0 and 1, got {q}")
    tail = (1 - confidence) / 2
    worst = max(q, 1 - q)
    n = math.ceil(math.log(tail) / math.log(worst))
    while worst**n > tail:
        n += 1
    while n > 1 and worst ** (n - 1) <= tail:
        n -= 1
    return n


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks ``(l, u)`` of the equal-tailed distribution-free interval for quantile ``q`` (0–1).

    ``l`` is the largest rank with ``P(B <= l-1) <= α/2`` and ``u`` the smallest with ``P(B >= u) <= α/2``,
    ``B ~ Binomial(n, q)``; an end is ``None`` when no rank in ``1..n`` satisfies it. The binomial tails are
    evaluated on a window of ±8 standard deviations around ``n q`` (outside it both tails are far below any
    usable ``α/2``), with an exhaustive fallback should the window miss.
    """
    tail = (1 - confidence) / 2
    sd = math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - 8 * sd - 10))
    hi = min(n, math.ceil(n * q + 8 * sd + 10))
    ks = np.arange(lo, hi + 1)
    cdf = special.bdtr(ks, n, q)
    sf = special.bdtrc(ks, n, q)
    below = ks[cdf <= tail]
    above = ks[sf <= tail]
    if (below.size == 0 and lo > 0) or (above.size == 0 and hi < n):
        ks = np.arange(0, n + 1)
        below, above = ks[special.bdtr(ks, n, q) <= tail], ks[special.bdtrc(ks, n, q) <= tail]
    low = int(below.max()) + 1 if below.size else None
    high = int(above.min()) + 1 if above.size and int(above.min()) + 1 <= n else None
    return low, high


@dataclass(frozen=True, slots=True)
class Quantile:
    """A percentile of a sample with its distribution-free interval, or the reason it is withheld.

    ``value``/``low``/``high`` are in the sample's unit (ms for latencies); all three are ``None`` when
    ``withheld`` names why (too few observations for the interval to exist).
    """

    q: float
    n: int
    value: float | None
    low: float | None
    high: float | None
    withheld: str | None = None


def quantile_interval(values: Array, q: float, confidence: float = CONFIDENCE, *, sorted_: bool = False,
                      what: str = "values") -> Quantile:
    """The ``q`` quantile (0–1) of ``values`` with its order-statistic interval, withheld below the minimum n.

    ``what`` names the observations in the withholding reason (e.g. "successful requests").
    """
    x = values if sorted_ else np.sort(values)
    n = int(x.size)
    need = min_n_for_quantile(q, confidence)
    if n < need:
        label = f"p{100 * q:g}"
        reason = (f"{label} withheld: n={n} {what} < {need} needed for a distribution-free "
                  f"{100 * confidence:g} % interval")
        return Quantile(q, n, None, None, None, reason)
    low, high = order_statistic_ranks(n, q, confidence)
    assert low is not None and high is not None
    return Quantile(q, n, percentile(x, 100 * q), float(x[low - 1]), float(x[high - 1]))
