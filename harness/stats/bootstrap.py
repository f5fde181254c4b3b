"""Seeded nonparametric bootstrap replicates of quantiles and means.

Every interval built from these replicates is a **percentile** bootstrap interval (not BCa): the
``α/2`` and ``1-α/2`` quantiles of the replicates, taken as order statistics of the replicates (the
``⌈B·p⌉``-th smallest, no interpolation, so a replicate of ``inf`` cannot turn a bound into ``nan``). Resampling draws ``n`` indices with replacement; because the
sample is sorted first, the resample's order statistics are the order statistics of the drawn indices, so a
replicate quantile needs a partial sort of integers and no copy of the data. Replicates are computed in
chunks of at most :data:`CHUNK_ELEMENTS` draws, so memory stays bounded for any sample size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

DEFAULT_RESAMPLES = 2000
"""Bootstrap replicates per statistic: at the top of the 1,000–2,000 that Efron & Tibshirani, *An Introduction to
the Bootstrap* (1993), recommend for percentile intervals, whose tails need many more replicates than a standard
error does."""

CHUNK_ELEMENTS = 2_000_000
"""Largest number of resampled indices held at once (16 MB of int64)."""


def quantile_replicates(sorted_values: Array, q: float, resamples: int, rng: np.random.Generator) -> Array:
    """``resamples`` bootstrap replicates of the type-7 ``q`` quantile (0–1) of an ascending sample."""
    x = np.asarray(sorted_values, dtype=float)
    n = int(x.size)
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    frac = h - lo
    out = np.empty(resamples, dtype=float)
    rows = max(1, CHUNK_ELEMENTS // n)
    kth = sorted({lo, hi})
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        idx.partition(kth, axis=1)
        below = x[idx[:, lo]]
        above = x[idx[:, hi]]
        out[start:stop] = below + frac * (above - below)
    return out


def mean_replicates(values: Array, resamples: int, rng: np.random.Generator) -> Array:
    """``resamples`` bootstrap replicates of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    out = np.empty(resamples, dtype=float)
    rows = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def replicate_quantile(replicates: Array, p: float) -> float:
    """The ``p`` quantile (0–1) of bootstrap replicates: an order statistic, never interpolated."""
    return float(np.quantile(replicates, p, method="inverted_cdf"))


def percentile_interval(replicates: Array, confidence: float) -> tuple[float, float]:
    """Two-sided percentile-bootstrap interval of the replicates at ``confidence``."""
    tail = (1 - confidence) / 2
    return replicate_quantile(replicates, tail), replicate_quantile(replicates, 1 - tail)
