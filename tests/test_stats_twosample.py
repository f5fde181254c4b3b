"""Two-sample comparisons: bootstrap intervals against scipy.stats.bootstrap, tests against scipy, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from harness.stats.bootstrap import mean_replicates, percentile_interval, quantile_replicates
from harness.stats.twosample import paired_shift, quantile_shift, rate_shift

RNG = np.random.default_rng(11)
BASE = RNG.lognormal(np.log(8000), 0.5, size=300)
SLOWER = RNG.lognormal(np.log(9500), 0.5, size=260)


def test_one_sample_quantile_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    ours = percentile_interval(quantile_replicates(np.sort(BASE), 0.95, 20_000, np.random.default_rng(1)), 0.95)
    ref = sps.bootstrap((BASE,), lambda x, axis: np.percentile(x, 95, axis=axis), n_resamples=20_000,
                        method="percentile", random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert ours[0] == pytest.approx(ref.low, abs=0.05 * width)
    assert ours[1] == pytest.approx(ref.high, abs=0.05 * width)


def test_difference_of_medians_matches_scipys_independent_two_sample_bootstrap() -> None:
    shift = quantile_shift(BASE, SLOWER, 0.5, resamples=20_000, seed=3)

    def stat(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        diff: np.ndarray = np.median(b, axis=axis) - np.median(a, axis=axis)
        return diff

    ref = sps.bootstrap((BASE, SLOWER), stat, n_resamples=20_000, method="percentile", paired=False,
                        random_state=np.random.default_rng(4)).confidence_interval
    width = ref.high - ref.low
    assert shift.difference.estimate == pytest.approx(np.median(SLOWER) - np.median(BASE))
    assert shift.difference.low == pytest.approx(ref.low, abs=0.05 * width)
    assert shift.difference.high == pytest.approx(ref.high, abs=0.05 * width)


def test_mann_whitney_and_effect_size_are_scipys() -> None:
    shift = quantile_shift(BASE, SLOWER, 0.95, resamples=500, seed=0)
    ref = sps.mannwhitneyu(SLOWER, BASE, alternative="two-sided")
    assert shift.mw_p == pytest.approx(ref.pvalue)
    assert shift.prob_b_greater == pytest.approx(ref.statistic / (BASE.size * SLOWER.size))
    assert shift.prob_b_greater > 0.5


def test_bootstrap_is_reproducible_by_seed_and_varies_across_seeds() -> None:
    one = quantile_shift(BASE, SLOWER, 0.95, resamples=1000, seed=5)
    again = quantile_shift(BASE, SLOWER, 0.95, resamples=1000, seed=5)
    other = quantile_shift(BASE, SLOWER, 0.95, resamples=1000, seed=6)
    assert one.difference == again.difference
    assert one.difference != other.difference


def test_bootstrap_memory_is_chunked_for_large_samples() -> None:
    big = np.sort(RNG.lognormal(0, 1, size=500_000))
    reps = quantile_replicates(big, 0.95, 50, np.random.default_rng(0))
    assert reps.shape == (50,)
    assert np.all((reps >= big[0]) & (reps <= big[-1]))


samples = st.lists(st.floats(min_value=1.0, max_value=1e5, allow_nan=False), min_size=3, max_size=80)
"""Latencies in ms; small and tied samples are where percentile intervals can miss their own estimate."""


@settings(max_examples=150, deadline=None)
@given(samples, samples, st.sampled_from([0.5, 0.9, 0.95]))
def test_quantile_shift_interval_contains_its_estimate_and_relative_change_agrees_in_sign(
        a: list[float], b: list[float], q: float) -> None:
    shift = quantile_shift(np.array(a), np.array(b), q, resamples=400, seed=0)
    d, r = shift.difference, shift.relative
    assert d.low <= d.estimate <= d.high
    assert r.low <= r.estimate <= r.high
    low, high = shift.relative_bounds(0.05)
    assert (low > 0) == (shift.lower_bound(0.05) > 0)
    assert (high < 0) == (shift.upper_bound(0.05) < 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=20, max_value=200))
def test_quantile_shift_interval_widens_with_less_data(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.lognormal(0, 0.5, size=4 * n), rng.lognormal(0, 0.5, size=4 * n)
    small = quantile_shift(a[:n], b[:n], 0.5, resamples=1000, seed=1).difference
    large = quantile_shift(a, b, 0.5, resamples=1000, seed=1).difference
    assert large.high - large.low < small.high - small.low


@given(st.integers(1, 400), st.integers(1, 400), st.integers(0, 400), st.integers(0, 400))
def test_rate_shift_bounds_nest_inside_the_two_sided_interval(na: int, nb: int, ka: int, kb: int) -> None:
    ka, kb = min(ka, na), min(kb, nb)
    shift = rate_shift(ka, na, kb, nb)
    assert shift.difference.estimate == pytest.approx(kb / nb - ka / na)
    # a one-sided 97.5 % bound is the end of the two-sided 95 % interval; at 99 % it lies further out
    assert shift.upper_bound(0.025) == pytest.approx(shift.difference.high)
    assert shift.upper_bound(0.01) >= shift.difference.high - 1e-12
    assert shift.lower_bound(0.01) <= shift.difference.low + 1e-12


def test_paired_shift_uses_the_pairing_and_wilcoxon_from_scipy() -> None:
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0.30, 0.05, size=40)
    a = difficulty + rng.normal(0, 0.005, size=40)
    b = difficulty - 0.01 + rng.normal(0, 0.005, size=40)
    shift = paired_shift(a, b, resamples=4000, seed=0)
    assert shift.difference.estimate == pytest.approx(float(np.mean(b - a)))
    assert shift.difference.high < 0, "pairing removes the per-challenge spread, so a 0.01 drop is clear"
    assert shift.wilcoxon_p == pytest.approx(sps.wilcoxon(b - a).pvalue)
    unpaired = mean_replicates(b, 4000, np.random.default_rng(0)) - mean_replicates(a, 4000, np.random.default_rng(1))
    assert np.quantile(unpaired, 0.975) > 0, "without pairing the same drop is lost in the spread"
