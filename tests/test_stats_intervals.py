"""One-sample statistics: checked against scipy/numpy and published values, and by hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from harness.stats.intervals import (
    min_n_for_quantile,
    newcombe,
    order_statistic_ranks,
    percentile,
    quantile_interval,
    wilson,
)

latencies = st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False), min_size=1, max_size=400)
counts = st.integers(min_value=1, max_value=5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(counts)
def test_wilson_matches_scipy_and_contains_the_estimate(kn: tuple[int, int]) -> None:
    k, n = kn
    ours = wilson(k, n)
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours.low == pytest.approx(ref.low, abs=1e-9)
    assert ours.high == pytest.approx(ref.high, abs=1e-9)
    assert 0.0 <= ours.low <= ours.estimate <= ours.high <= 1.0


@given(counts, st.integers(min_value=2, max_value=10))
def test_wilson_narrows_with_more_data_at_the_same_rate(kn: tuple[int, int], factor: int) -> None:
    k, n = kn
    few, many = wilson(k, n), wilson(k * factor, n * factor)
    assert many.high - many.low <= few.high - few.low + 1e-12


@pytest.mark.parametrize(("a", "b", "low", "high"), [
    ((48, 80), (56, 70), 0.0524, 0.3339),
    ((3, 10), (9, 10), 0.1705, 0.8090),
    ((2, 7), (6, 7), 0.0582, 0.8062),
    ((0, 29), (5, 56), -0.0381, 0.1926),
    ((0, 20), (0, 10), -0.1611, 0.2775),
    ((0, 20), (10, 10), 0.6791, 1.0000),
])
def test_newcombe_reproduces_method_10_of_newcombe_1998_table_ii(a: tuple[int, int], b: tuple[int, int], low: float,
                                                                  high: float) -> None:
    ours = newcombe(a[0], a[1], b[0], b[1])
    assert ours.estimate == pytest.approx(b[0] / b[1] - a[0] / a[1])
    assert (round(ours.low, 4), round(ours.high, 4)) == (low, high)


@given(counts, counts)
def test_newcombe_contains_the_difference_and_flips_sign_with_the_sides(a: tuple[int, int], b: tuple[int, int]) -> None:
    forward, backward = newcombe(*a, *b), newcombe(*b, *a)
    assert -1.0 <= forward.low <= forward.estimate <= forward.high <= 1.0
    assert backward.low == pytest.approx(-forward.high) and backward.high == pytest.approx(-forward.low)


@given(latencies, st.floats(min_value=0, max_value=100))
def test_percentile_is_numpys_linear_interpolation(values: list[float], q: float) -> None:
    assert percentile(np.array(values), q) == pytest.approx(float(np.percentile(values, q, method="linear")))


@given(latencies)
def test_percentiles_are_monotone_in_the_level(values: list[float]) -> None:
    x = np.array(values)
    levels = [percentile(x, q) for q in (0, 25, 50, 90, 95, 99, 100)]
    assert levels == sorted(levels)
    assert min(values) <= levels[0] and levels[-1] <= max(values)


def test_minimum_sample_sizes_follow_from_the_binomial_tails() -> None:
    # p95's two-sided 95 % interval needs 0.95**n <= 0.025; the one-sided 95 % upper bound alone needs 59.
    assert [min_n_for_quantile(q) for q in (0.5, 0.9, 0.95, 0.99)] == [6, 36, 72, 368]
    assert min_n_for_quantile(0.95, confidence=0.90) == 59
    for q in (0.5, 0.9, 0.95, 0.99):
        n = min_n_for_quantile(q)
        assert max(q, 1 - q) ** n <= 0.025 < max(q, 1 - q) ** (n - 1)


@settings(max_examples=60)
@given(st.integers(min_value=6, max_value=3000), st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_order_statistic_ranks_are_the_tightest_equal_tailed_ones(n: int, q: float) -> None:
    low, high = order_statistic_ranks(n, q)
    tail = 0.025
    if low is not None:
        assert sps.binom.cdf(low - 1, n, q) <= tail < sps.binom.cdf(low, n, q)
    else:
        assert sps.binom.cdf(0, n, q) > tail
    if high is not None:
        assert sps.binom.sf(high - 1, n, q) <= tail < sps.binom.sf(high - 2, n, q)
    else:
        assert sps.binom.sf(n - 1, n, q) > tail


@settings(max_examples=80)
@given(st.lists(st.floats(min_value=1.0, max_value=1e5, allow_nan=False), min_size=6, max_size=600),
       st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_quantile_interval_is_scipys_quantile_test_interval_or_withheld(values: list[float], q: float) -> None:
    x = np.array(values)
    result = quantile_interval(x, q)
    if x.size < min_n_for_quantile(q):
        assert result.value is None and result.low is None and result.high is None
        assert result.withheld is not None and f"n={x.size}" in result.withheld
        return
    ref = sps.quantile_test(x, q=float(np.median(x)), p=q).confidence_interval(0.95)
    assert result.low == ref.low and result.high == ref.high
    assert result.low is not None and result.high is not None and result.value is not None
    assert result.low <= result.value <= result.high


@settings(max_examples=60)
@given(st.lists(st.floats(min_value=1.0, max_value=1e5, allow_nan=False), min_size=72, max_size=300))
def test_quantile_interval_narrows_when_the_same_distribution_has_more_data(values: list[float]) -> None:
    x = np.array(values)
    once, four_times = quantile_interval(x, 0.95), quantile_interval(np.tile(x, 4), 0.95)
    assert once.low is not None and once.high is not None
    assert four_times.low is not None and four_times.high is not None
    assert once.low <= four_times.low and four_times.high <= once.high


def test_order_statistic_interval_covers_the_true_p95_at_least_nominally() -> None:
    rng = np.random.default_rng(7)
    true_p95 = math.exp(0.5 * sps.norm.ppf(0.95))
    trials, covered = 2000, 0
    for _ in range(trials):
        result = quantile_interval(rng.lognormal(0.0, 0.5, size=120), 0.95)
        assert result.low is not None and result.high is not None
        covered += result.low <= true_p95 <= result.high
    # exact coverage of ranks (l, u) at n=120 is at least 95 %; 2000 trials give a standard error of 0.5 %
    assert covered / trials >= 0.935
