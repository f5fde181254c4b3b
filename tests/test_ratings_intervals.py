"""Intervals mean what they say: the sandwich matches its closed form, the bootstrap's fast path matches
full refits, the two methods agree on real-sized data, and ranks spread exactly as the rule defines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.ratings import aggregate, fit, rank_spread, sandwich_intervals, validate_battles
from harness.ratings.bradley_terry import RATING_SCALE, RatingError
from harness.ratings.intervals import (
    bootstrap_intervals,
    bootstrap_replicates,
    resampled_cells,
    sandwich_covariance,
)
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel


def battles(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    out = [{"model_a": a, "model_b": b, "winner": w} for a, b, w, n in rows for _ in range(n)]
    return pd.DataFrame(out, columns=["model_a", "model_b", "winner"])


def panel_votes(n: int, seed: int) -> pd.DataFrame:
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=seed)
    return validate_battles(panel.simulate_battles(list(DEFAULT_STRENGTHS), n))


def test_sandwich_for_two_models_matches_the_closed_form() -> None:
    # Two models, A 30 wins, B 12 wins, 8 ties scored ½. d = θ_A − θ_B has H = n p(1−p) and
    # G = Σ votes (score − p)²; var(d) = G / H², and each rating carries half of d: se = RATING_SCALE·√var/2.
    counts = aggregate(battles([("A", "B", "model_a", 30), ("A", "B", "model_b", 12), ("B", "A", "tie", 8)]))
    result = fit(counts)
    p = 34 / 50
    h = 50 * p * (1 - p)
    g = 30 * (1 - p) ** 2 + 12 * p**2 + 8 * (0.5 - p) ** 2
    expected_se = RATING_SCALE * math.sqrt(g / h**2) / 2
    intervals = sandwich_intervals(counts, result)
    np.testing.assert_allclose(intervals.std_error, [expected_se, expected_se], rtol=1e-12)
    z = 1.959963984540054
    np.testing.assert_allclose(intervals.high - intervals.low, 2 * z * intervals.std_error, rtol=1e-12)


def test_sandwich_covariance_describes_sum_zero_ratings() -> None:
    counts = aggregate(panel_votes(3000, seed=1))
    cov = sandwich_covariance(counts, fit(counts))
    np.testing.assert_allclose(cov.sum(axis=1), 0.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(cov)[1:] > 0)


def test_bootstrap_fast_path_equals_full_refits_of_the_same_resamples() -> None:
    counts = aggregate(panel_votes(2000, seed=2))
    point = fit(counts)
    fast = bootstrap_replicates(counts, point, rounds=20, seed=7)
    slow = []
    for block in resampled_cells(counts, 20, seed=7):
        for cells in block:
            slow.append(fit(counts.with_cells(cells)).ratings)
    np.testing.assert_allclose(fast, np.array(slow), atol=1e-6)


def test_resamples_are_multinomial_draws_of_the_votes() -> None:
    counts = aggregate(battles([("A", "B", "model_a", 30), ("A", "B", "model_b", 12), ("B", "A", "tie", 5),
                                ("A", "B", "tie (bothbad)", 3), ("B", "C", "model_a", 10)]))
    draws = np.concatenate(list(resampled_cells(counts, 20_000, seed=0)))
    assert draws.shape == (20_000, counts.n_pairs, 4)
    assert (draws.sum(axis=(1, 2)) == 60).all()
    # Ties and both-bad votes are drawn as one outcome; their pooled share is kept.
    assert (draws[..., 3] == 0).all()
    pooled = counts.cells()
    pooled[:, 2] += pooled[:, 3]
    pooled[:, 3] = 0
    p = pooled.ravel() / 60
    flat = draws.reshape(20_000, -1)
    standard_error = np.sqrt(60 * p * (1 - p) / 20_000)
    assert (np.abs(flat.mean(axis=0) - 60 * p) <= 4 * standard_error + 1e-12).all()
    expected_cov = 60 * (np.diag(p) - np.outer(p, p))
    np.testing.assert_allclose(np.cov(flat, rowvar=False), expected_cov, atol=0.5)


def test_bootstrap_is_deterministic_per_seed_and_reports_the_mle_not_the_median() -> None:
    counts = aggregate(panel_votes(1500, seed=3))
    point = fit(counts)
    first = bootstrap_intervals(counts, point, rounds=50, seed=1)
    again = bootstrap_intervals(counts, point, rounds=50, seed=1)
    other = bootstrap_intervals(counts, point, rounds=50, seed=2)
    np.testing.assert_array_equal(first.low, again.low)
    assert not np.array_equal(first.low, other.low)
    assert first.rounds == 50 and first.degenerate_rounds == 0
    reps = bootstrap_replicates(counts, point, rounds=50, seed=1)
    np.testing.assert_allclose(first.low, np.percentile(reps, 2.5, axis=0))


def test_sandwich_and_bootstrap_agree_within_ten_percent() -> None:
    counts = aggregate(panel_votes(8000, seed=4))
    point = fit(counts)
    sandwich = sandwich_intervals(counts, point)
    boot = bootstrap_intervals(counts, point, rounds=1000, seed=0)
    np.testing.assert_allclose(boot.high - boot.low, sandwich.high - sandwich.low, rtol=0.10)


def test_davidson_sandwich_agrees_with_its_bootstrap() -> None:
    counts = aggregate(panel_votes(6000, seed=5))
    point = fit(counts, ties="davidson")
    sandwich = sandwich_intervals(counts, point)
    boot = bootstrap_intervals(counts, point, rounds=300, seed=0)
    np.testing.assert_allclose(boot.high - boot.low, sandwich.high - sandwich.low, rtol=0.15)


def test_resamples_without_a_finite_mle_are_left_out_and_counted() -> None:
    # A thin cycle: any resample that loses one of the single upset votes has no finite MLE.
    counts = aggregate(battles([("A", "B", "model_a", 6), ("B", "C", "model_a", 6), ("C", "A", "model_a", 1),
                                ("B", "A", "model_a", 1), ("A", "C", "model_a", 5)]))
    point = fit(counts)
    assert point.identified
    boot = bootstrap_intervals(counts, point, rounds=200, seed=0)
    assert 0 < boot.degenerate_rounds < 200
    assert np.isfinite(boot.low).all() and np.isfinite(boot.high).all()


def test_bootstrap_and_intervals_reject_nonsense_settings() -> None:
    counts = aggregate(panel_votes(300, seed=6))
    point = fit(counts)
    with pytest.raises(RatingError, match="at least one round"):
        bootstrap_replicates(counts, point, rounds=0)
    with pytest.raises(RatingError, match="confidence"):
        sandwich_intervals(counts, point, confidence=1.5)


def test_rank_spread_hand_example() -> None:
    low = np.array([10.0, 15.0, 30.0, 30.0])
    high = np.array([20.0, 25.0, 40.0, 40.0])
    best, worst = rank_spread(low, high)
    # Model 2 and 3 overlap each other and are above the rest: ranks 1–2. Model 1: two models' lower bounds
    # (30) beat its upper bound (25): best rank 3; model 0's upper bound (20) beats its lower bound (15): worst 4.
    assert best.tolist() == [3, 3, 1, 1]
    assert worst.tolist() == [4, 4, 2, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-500, 500), st.floats(0.01, 200)), min_size=1, max_size=12))
def test_rank_spread_is_a_consistent_range(bounds: list[tuple[float, float]]) -> None:
    low = np.array([c - w for c, w in bounds])
    high = np.array([c + w for c, w in bounds])
    best, worst = rank_spread(low, high)
    n = len(bounds)
    assert ((best >= 1) & (best <= worst) & (worst <= n)).all()
    # With intervals of positive width, every rank 1..n is within at least one model's range.
    assert all(((best <= r) & (r <= worst)).any() for r in range(1, n + 1))
    # The model with the highest lower bound can always be first.
    assert best[int(np.argmax(low))] == 1
