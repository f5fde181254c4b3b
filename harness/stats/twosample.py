"""Two-sample comparisons of a baseline A and a candidate B: latency quantiles, success rates, paired scores.

Sign convention everywhere: a *difference* is ``B - A`` and a *relative change* is ``B / A - 1``, so a slower
candidate has a positive latency difference and a less reliable one a negative success difference.

* Quantile differences (median, p95 …): independent percentile bootstrap of each sample (seeded), the
  difference and the ratio taken replicate by replicate. In the rare small, skewed samples where the point
  estimate falls outside the percentile interval, the interval is widened to include it. Alongside, the Mann–Whitney U test
  (``scipy.stats.mannwhitneyu``, two-sided) and its effect size ``P(B > A) + ½ P(B = A)``.
* Success rates: Newcombe's hybrid score interval of ``p_B - p_A``.
* Paired scores (CLIP …): per challenge, the candidate's mean minus the baseline's mean; a bootstrap over
  challenges of the mean paired difference and the Wilcoxon signed-rank test.

Each result keeps what a gate needs to decide at a level other than the displayed 95 %: the bootstrap
replicates, or the counts for the proportion interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.stats.bootstrap import (
    mean_replicates,
    percentile_interval,
    quantile_replicates,
    replicate_quantile,
)
from harness.stats.intervals import CONFIDENCE, Interval, newcombe, percentile

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class QuantileShift:
    """How quantile ``q`` (0–1) moved from A to B, in the samples' unit (ms for latency).

    ``difference``: ``B - A`` with its percentile-bootstrap interval; ``relative``: ``B / A - 1`` from the
    same replicates. ``mw_p``: two-sided Mann–Whitney p-value; ``prob_b_greater``: ``P(B > A) + ½ P(B = A)``
    (0.5 when the samples are exchangeable).
    """

    q: float
    n_a: int
    n_b: int
    a: float
    b: float
    difference: Interval
    relative: Interval
    mw_p: float
    prob_b_greater: float
    replicates_a: Array = field(repr=False)
    replicates_b: Array = field(repr=False)

    def lower_bound(self, alpha: float) -> float:
        """One-sided ``1 - alpha`` lower bound of the difference (the ``alpha`` quantile of the replicates)."""
        return replicate_quantile(self.replicates_b - self.replicates_a, alpha)

    def upper_bound(self, alpha: float) -> float:
        """One-sided ``1 - alpha`` upper bound of the difference."""
        return replicate_quantile(self.replicates_b - self.replicates_a, 1 - alpha)

    def relative_bounds(self, alpha: float) -> tuple[float, float]:
        """One-sided ``1 - alpha`` lower and upper bounds of the relative change ``B / A - 1``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.replicates_b / self.replicates_a - 1
            return replicate_quantile(ratio, alpha), replicate_quantile(ratio, 1 - alpha)


def _around(estimate: float, interval: tuple[float, float]) -> tuple[float, float]:
    return min(interval[0], estimate), max(interval[1], estimate)


def quantile_shift(a: Array, b: Array, q: float, *, resamples: int, seed: int,
                   confidence: float = CONFIDENCE) -> QuantileShift:
    """Compare quantile ``q`` (0–1) of two independent, non-empty samples."""
    xa = np.sort(np.asarray(a, dtype=float))
    xb = np.sort(np.asarray(b, dtype=float))
    if xa.size == 0 or xb.size == 0:
        raise ValueError("both samples must be non-empty")
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ra = quantile_replicates(xa, q, resamples, rng_a)
    rb = quantile_replicates(xb, q, resamples, rng_b)
    diff = rb - ra
    qa, qb = percentile(xa, 100 * q), percentile(xb, 100 * q)
    rel_estimate = qb / qa - 1 if qa > 0 else float("nan")
    d_low, d_high = _around(qb - qa, percentile_interval(diff, confidence))
    r_low, r_high = float("nan"), float("nan")
    if qa > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = rb / ra - 1
        r_low, r_high = _around(rel_estimate, percentile_interval(ratio, confidence))
    test = sps.mannwhitneyu(xb, xa, alternative="two-sided")
    return QuantileShift(
        q=q, n_a=int(xa.size), n_b=int(xb.size), a=qa, b=qb,
        difference=Interval(qb - qa, d_low, d_high, confidence),
        relative=Interval(rel_estimate, r_low, r_high, confidence),
        mw_p=float(test.pvalue), prob_b_greater=float(test.statistic) / (xa.size * xb.size), replicates_a=ra,
        replicates_b=rb,
    )


@dataclass(frozen=True)
class RateShift:
    """How a success rate moved from A to B: ``difference`` is ``p_B - p_A`` (Newcombe interval)."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    difference: Interval

    @property
    def a(self) -> float:
        return self.successes_a / self.n_a

    @property
    def b(self) -> float:
        return self.successes_b / self.n_b

    def upper_bound(self, alpha: float) -> float:
        """One-sided ``1 - alpha`` upper bound of ``p_B - p_A`` (the upper end of the ``1 - 2 alpha`` interval)."""
        return newcombe(self.successes_a, self.n_a, self.successes_b, self.n_b, 1 - 2 * alpha).high

    def lower_bound(self, alpha: float) -> float:
        """One-sided ``1 - alpha`` lower bound of ``p_B - p_A``."""
        return newcombe(self.successes_a, self.n_a, self.successes_b, self.n_b, 1 - 2 * alpha).low


def rate_shift(successes_a: int, n_a: int, successes_b: int, n_b: int,
               confidence: float = CONFIDENCE) -> RateShift:
    """Compare two success rates (``n_a``, ``n_b`` > 0)."""
    return RateShift(successes_a, n_a, successes_b, n_b,
                     newcombe(successes_a, n_a, successes_b, n_b, confidence))


@dataclass(frozen=True)
class PairedShift:
    """Mean paired difference ``B - A`` over ``pairs`` matched units (challenges), in the score's unit.

    ``relative`` divides by the baseline's mean over the same units. ``wilcoxon_p``: two-sided signed-rank
    p-value (1.0 when every difference is zero).
    """

    pairs: int
    a: float
    b: float
    difference: Interval
    relative: Interval
    wilcoxon_p: float
    replicates: Array = field(repr=False)

    def lower_bound(self, alpha: float) -> float:
        return replicate_quantile(self.replicates, alpha)

    def upper_bound(self, alpha: float) -> float:
        return replicate_quantile(self.replicates, 1 - alpha)


def paired_shift(a: Array, b: Array, *, resamples: int, seed: int, confidence: float = CONFIDENCE) -> PairedShift:
    """Compare matched values ``a[i]`` and ``b[i]`` (e.g. per-challenge mean CLIP scores)."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.size == 0:
        raise ValueError("paired samples must be non-empty and of equal length")
    d = xb - xa
    reps = mean_replicates(d, resamples, np.random.default_rng(seed))
    low, high = _around(float(d.mean()), percentile_interval(reps, confidence))
    base = float(xa.mean())
    rel = (Interval(float(d.mean()) / base, low / base, high / base, confidence) if base > 0
           else Interval(float("nan"), float("nan"), float("nan"), confidence))
    nonzero = d[d != 0]
    p = float(sps.wilcoxon(nonzero).pvalue) if nonzero.size else 1.0
    return PairedShift(int(d.size), base, float(xb.mean()), Interval(float(d.mean()), low, high, confidence), rel,
                       p, reps)
