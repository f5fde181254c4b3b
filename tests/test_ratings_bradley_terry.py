"""Bradley–Terry fits are exact: the published worked example, optimality conditions checked with
independently written gradients, agreement of two unrelated solvers, hand-solved tie cases, and a documented
answer for graphs with no finite MLE."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from harness.ratings import RatingError, aggregate, fit, fit_mm, win_probability
from harness.ratings.bradley_terry import DEFAULT_PRIOR_GAMES, RATING_SCALE

# Wikipedia "Bradley–Terry model", worked example: wins of the row team over the column team (22 games).
WIKIPEDIA_WINS = {("A", "B"): 2, ("A", "D"): 1, ("B", "A"): 3, ("B", "C"): 5, ("C", "B"): 3, ("C", "D"): 1,
                  ("D", "A"): 4, ("D", "C"): 3}
WIKIPEDIA_STRENGTHS = {"A": 0.640, "B": 1.043, "C": 0.660, "D": 2.270}


def battles(rows: Iterable[tuple[str, str, str, int]]) -> pd.DataFrame:
    """``(model_a, model_b, winner, count)`` rows expanded to one vote per row."""
    out = [{"model_a": a, "model_b": b, "winner": w} for a, b, w, n in rows for _ in range(n)]
    return pd.DataFrame(out, columns=["model_a", "model_b", "winner"])


def wins_frame(wins: dict[tuple[str, str], int]) -> pd.DataFrame:
    return battles((w, lo, "model_a", n) for (w, lo), n in wins.items())


def total_gradient(wins: dict[tuple[str, str], float], ties: dict[tuple[str, str], float],
                   theta: dict[str, float]) -> dict[str, float]:
    """d(log-likelihood)/dθ written from the definition, game by game: (score − P(win))."""
    grad = dict.fromkeys(theta, 0.0)
    for (w, lo), n in wins.items():
        p = 1 / (1 + math.exp(theta[lo] - theta[w]))
        grad[w] += n * (1 - p)
        grad[lo] -= n * (1 - p)
    for (a, b), n in ties.items():
        p = 1 / (1 + math.exp(theta[b] - theta[a]))
        grad[a] += n * (0.5 - p)
        grad[b] -= n * (0.5 - p)
    return grad


def test_wikipedia_worked_example_is_reproduced() -> None:
    result = fit(aggregate(wins_frame(WIKIPEDIA_WINS)))
    strengths = np.exp(result.theta)
    for model, expected in WIKIPEDIA_STRENGTHS.items():
        assert strengths[result.models.index(model)] == pytest.approx(expected, rel=1e-3)
    assert result.identified and result.prior_games == 0.0
    assert float(np.mean(result.ratings)) == pytest.approx(1000.0, abs=1e-9)


def test_wikipedia_fit_meets_the_optimality_conditions_to_1e_9() -> None:
    result = fit(aggregate(wins_frame(WIKIPEDIA_WINS)))
    theta = dict(zip(result.models, result.theta.tolist(), strict=True))
    grad = total_gradient({k: float(v) for k, v in WIKIPEDIA_WINS.items()}, {}, theta)
    assert max(abs(g) for g in grad.values()) <= 1e-9
    assert result.max_gradient <= 1e-9


def test_newton_and_minorise_maximise_reach_the_same_optimum_on_the_worked_example() -> None:
    counts = aggregate(wins_frame(WIKIPEDIA_WINS))
    np.testing.assert_allclose(fit(counts).theta, fit_mm(counts), atol=1e-9)


def test_ties_count_half_a_win_by_default_hand_solved() -> None:
    # A beats B 3 times, B beats A once, 2 ties: A scores 3 + 2/2 = 4 of 6, so P(A) = 2/3 and the rating gap is
    # 400·log10(2) points; dropping ties leaves 3 of 4, a gap of 400·log10(3).
    votes = battles([("A", "B", "model_a", 3), ("B", "A", "model_a", 1), ("A", "B", "tie", 1),
                     ("B", "A", "tie (bothbad)", 1)])
    counts = aggregate(votes)
    half = fit(counts)
    assert half.rating_of("A") - half.rating_of("B") == pytest.approx(400 * math.log10(2), abs=1e-9)
    dropped = fit(counts, ties="drop")
    assert dropped.rating_of("A") - dropped.rating_of("B") == pytest.approx(400 * math.log10(3), abs=1e-9)
    assert dropped.n_votes == 4 and half.n_votes == 6


def test_davidson_tie_model_hand_solved_for_two_models() -> None:
    # With two models the Davidson model is saturated, so it reproduces the observed shares exactly:
    # P(A) = e^{d/2}/D = 3/6 and P(B) = e^{-d/2}/D = 1/6 give e^d = 3; P(tie) = ν/D = 2/6 with D = 2e^{d/2} = 2√3
    # gives ν = 2/√3.
    votes = battles([("A", "B", "model_a", 3), ("A", "B", "model_b", 1), ("A", "B", "tie", 2)])
    result = fit(aggregate(votes), ties="davidson")
    assert result.rating_of("A") - result.rating_of("B") == pytest.approx(400 * math.log10(3), abs=1e-8)
    assert result.tie_log_nu is not None
    assert math.exp(result.tie_log_nu) == pytest.approx(2 / math.sqrt(3), rel=1e-9)


def _davidson_nll(params: np.ndarray, pairs: list[tuple[int, int, float, float, float]]) -> float:
    """Davidson (1970) in its original form, P(i) = π_i / (π_i + π_j + ν√(π_i π_j))."""
    pi = np.exp(params[:-1])
    nu = math.exp(params[-1])
    total = 0.0
    for i, j, wi, wj, t in pairs:
        denom = pi[i] + pi[j] + nu * math.sqrt(pi[i] * pi[j])
        total -= wi * math.log(pi[i] / denom) + wj * math.log(pi[j] / denom) + t * math.log(
            nu * math.sqrt(pi[i] * pi[j]) / denom)
    return total


def test_davidson_fit_matches_a_general_purpose_optimiser_on_the_original_formula() -> None:
    rng = np.random.default_rng(5)
    models = ["m0", "m1", "m2", "m3", "m4"]
    rows = []
    for i in range(5):
        for j in range(i + 1, 5):
            rows += [(models[i], models[j], "model_a", int(rng.integers(1, 15))),
                     (models[i], models[j], "model_b", int(rng.integers(1, 15))),
                     (models[i], models[j], "tie", int(rng.integers(0, 6)))]
    counts = aggregate(battles(rows))
    ours = fit(counts, ties="davidson")
    pairs = [(int(f), int(s), float(a), float(b), float(t + bb)) for f, s, a, b, t, bb in zip(
        counts.first, counts.second, counts.wins_first, counts.wins_second, counts.ties, counts.both_bad,
        strict=True)]
    reference = minimize(_davidson_nll, np.zeros(6), args=(pairs,), method="BFGS", options={"gtol": 1e-10})
    theta = reference.x[:-1] - reference.x[:-1].mean()
    np.testing.assert_allclose(ours.theta, theta, atol=2e-5)
    assert ours.tie_log_nu == pytest.approx(reference.x[-1], abs=2e-5)
    assert _davidson_nll(ours.params, pairs) <= reference.fun + 1e-9
    assert ours.max_gradient <= 1e-9


@st.composite
def connected_tables(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str, str, int]]]:
    """Random vote tables whose comparison graph is strongly connected (a cycle of wins is always present)."""
    m = draw(st.integers(3, 7))
    models = [f"model-{i}" for i in range(m)]
    rows = [(models[i], models[(i + 1) % m], "model_a", 1) for i in range(m)]
    for i in range(m):
        for j in range(i + 1, m):
            for winner in ("model_a", "model_b", "tie", "tie (bothbad)"):
                rows.append((models[i], models[j], winner, draw(st.integers(0, 12))))
    return models, rows


@settings(max_examples=40, deadline=None)
@given(connected_tables())
def test_newton_satisfies_the_score_equations_and_agrees_with_mm(table: tuple[list[str], list[tuple[str, str, str, int]]]
                                                                  ) -> None:
    _, rows = table
    counts = aggregate(battles(rows))
    for ties in ("half", "drop"):
        result = fit(counts, ties=ties)  # type: ignore[arg-type]
        wins: dict[tuple[str, str], float] = {}
        tie_counts: dict[tuple[str, str], float] = {}
        for a, b, w, n in rows:
            if w == "model_a":
                wins[(a, b)] = wins.get((a, b), 0) + n
            elif w == "model_b":
                wins[(b, a)] = wins.get((b, a), 0) + n
            elif ties == "half":
                tie_counts[(a, b)] = tie_counts.get((a, b), 0) + n
        theta = dict(zip(result.models, result.theta.tolist(), strict=True))
        grad = total_gradient(wins, tie_counts, theta)
        assert max(abs(g) for g in grad.values()) <= 1e-9 * max(1.0, result.n_votes)
        np.testing.assert_allclose(result.theta, fit_mm(counts, ties=ties), atol=1e-7)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(connected_tables(), st.integers(2, 5))
def test_ratings_ignore_sides_labels_and_vote_multiplicity(table: tuple[list[str], list[tuple[str, str, str, int]]],
                                                           k: int) -> None:
    models, rows = table
    base = fit(aggregate(battles(rows)))
    swapped = [(b, a, {"model_a": "model_b", "model_b": "model_a"}.get(w, w), n) for a, b, w, n in rows]
    renamed = {m: f"z-{len(models) - i:02d}" for i, m in enumerate(models)}
    relabelled = [(renamed[a], renamed[b], w, n) for a, b, w, n in rows]
    repeated = [(a, b, w, n * k) for a, b, w, n in rows]
    for other, names in ((swapped, models), (relabelled, [renamed[m] for m in models]), (repeated, models)):
        result = fit(aggregate(battles(other)))
        got = [result.rating_of(n) for n in names]
        np.testing.assert_allclose(got, [base.rating_of(m) for m in models], atol=1e-7)


def test_a_model_that_won_every_vote_gets_a_finite_rating_from_the_documented_prior() -> None:
    votes = battles([("A", "B", "model_a", 5), ("B", "C", "model_a", 4), ("C", "B", "model_a", 3),
                     ("A", "C", "model_a", 2)])
    counts = aggregate(votes)
    result = fit(counts)
    assert not result.identified
    assert result.prior_games == DEFAULT_PRIOR_GAMES
    assert np.isfinite(result.ratings).all()
    assert result.rating_of("A") > result.rating_of("B")
    assert result.max_gradient <= 1e-9
    # The prior is exactly one virtual drawn game against a 1000-rated reference: an independent solver
    # that knows only that definition lands on the same ratings.
    np.testing.assert_allclose(result.theta, fit_mm(counts, prior_games=DEFAULT_PRIOR_GAMES), atol=1e-8)
    with pytest.raises(RatingError, match="not strongly connected"):
        fit(counts, prior_games=0)


def test_disconnected_groups_are_rated_against_the_common_reference() -> None:
    votes = battles([("A", "B", "model_a", 6), ("B", "A", "model_a", 2), ("C", "D", "model_a", 3),
                     ("D", "C", "model_a", 3)])
    result = fit(aggregate(votes))
    assert not result.identified
    assert len(set(result.components.tolist())) == 2
    # Within each group the order follows the votes; C and D are symmetric, so both sit at the reference.
    assert result.rating_of("A") > 1000 > result.rating_of("B")
    assert result.rating_of("C") == pytest.approx(1000.0, abs=1e-9)
    assert result.rating_of("D") == pytest.approx(1000.0, abs=1e-9)


def test_a_prior_moves_well_measured_models_only_slightly() -> None:
    counts = aggregate(wins_frame({k: v * 50 for k, v in WIKIPEDIA_WINS.items()}))
    exact = fit(counts)
    with_prior = fit(counts, prior_games=1.0)
    assert np.max(np.abs(exact.ratings - with_prior.ratings)) < 2.0


def test_fits_reject_what_they_cannot_estimate() -> None:
    with pytest.raises(RatingError, match="at least two"):
        fit(aggregate(battles([("A", "A", "model_a", 3)])))
    only_ties = aggregate(battles([("A", "B", "tie", 3)]))
    with pytest.raises(RatingError, match="drop"):
        fit(only_ties, ties="drop")
    with pytest.raises(RatingError, match="Davidson"):
        fit(aggregate(battles([("A", "B", "model_a", 3), ("B", "A", "model_a", 2)])), ties="davidson")
    with pytest.raises(RatingError, match="unknown tie"):
        fit(only_ties, ties="thirds")  # type: ignore[arg-type]


def test_win_probability_uses_base_10_and_400_points() -> None:
    assert win_probability(1400.0, 1000.0) == pytest.approx(10 / 11)
    assert win_probability(1000.0, 1000.0) == pytest.approx(0.5)
    assert pytest.approx(400 / math.log(10)) == RATING_SCALE
