"""Pairwise differences between the providers of one model, with multiplicity care.

The two-sample statistics are those of ``harness compare`` (:mod:`harness.stats.twosample`); this module adds
what ranking *several* providers needs:

* :func:`holm` – Holm's step-down adjustment of a family of p-values (Holm 1979, "A simple sequentially
  rejective multiple test procedure", Scand. J. Statist. 6:65–70). It controls the family-wise error rate as
  Bonferroni does (``compare``'s correction) and never rejects less;
* :func:`newcombe_p` – the p-value dual to Newcombe's hybrid score interval of a difference of two rates: the
  smallest ``α`` at which the ``1 - α`` interval excludes 0, found by bisection (the interval widens
  monotonically with its confidence);
* :func:`ratio_interval` – a seeded percentile-bootstrap interval of a ratio of sums over requests (cost per
  successful image = Σ cost / Σ images), resampling whole requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.stats.bootstrap import CHUNK_ELEMENTS, percentile_interval
from harness.stats.intervals import CONFIDENCE, newcombe

Array = np.ndarray[Any, Any]

BISECTION_STEPS = 60
"""Bisection steps of :func:`newcombe_p` (the p-value is then exact to about 1e-18)."""


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order: the ``i``-th smallest is multiplied by ``m - i`` (0-based),
    made non-decreasing in that order and capped at 1. A hypothesis is rejected at family-wise level ``α``
    when its adjusted p-value is below ``α``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def newcombe_p(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Two-sided p-value of ``p_B - p_A = 0`` dual to Newcombe's interval (both ``n`` > 0)."""
    if successes_a * n_b == successes_b * n_a:
        return 1.0

    def excludes_zero(confidence: float) -> bool:
        interval = newcombe(successes_a, n_a, successes_b, n_b, confidence)
        return interval.low > 0 or interval.high < 0

    low, high = 0.0, 1.0 - 1e-15
    if excludes_zero(high):
        return 1.0 - high
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        if excludes_zero(mid):
            low = mid
        else:
            high = mid
    return 1.0 - high


def ratio_interval(numerator: Array, denominator: Array, *, resamples: int, seed: int,
                   confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of ``Σ numerator / Σ denominator`` resampling the paired entries (requests);
    ``None`` when the denominator sums to 0. Replicates whose denominator is 0 count as ``+inf``."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    n = int(num.size)
    if n == 0 or den.sum() <= 0:
        return None
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=float)
    rows = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:stop] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.inf)
    low, high = percentile_interval(out, confidence)
    estimate = float(num.sum() / den.sum())
    return min(low, estimate), max(high, estimate)
