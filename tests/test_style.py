"""Style-controlled Bradley–Terry: recovers known strengths and a known style effect from simulated votes,
and without covariates it is the plain board."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.ratings.battles import aggregate
from harness.ratings.bradley_terry import RATING_SCALE, fit
from harness.ratings.style import StyleError, features, fit_style, fit_votes

TRUTH = {"m1": 1150.0, "m2": 1100.0, "m3": 1000.0, "m4": 950.0, "m5": 800.0}
BETA_FILE = 0.8
"""True style effect: log-odds per SD of the (log) file-size difference."""


def simulate(n: int, seed: int, beta: float = BETA_FILE) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Votes between outputs whose file size favours the weaker models (a presentation lead)."""
    rng = np.random.default_rng(seed)
    models = list(TRUTH)
    weakness = {m: i for i, m in enumerate(models)}
    outputs: dict[str, dict[str, float]] = {}
    rows = []
    for k in range(n):
        a, b = rng.choice(len(models), size=2, replace=False)
        ma, mb = models[a], models[b]
        shas = (f"o{k}a", f"o{k}b")
        for sha, m in zip(shas, (ma, mb), strict=True):
            outputs[sha] = features(1024 * 1024, 1.0, math.exp(12 + 0.3 * weakness[m] + rng.normal(0, 0.4)),
                                    math.exp(rng.normal(5, 0.5)), math.exp(rng.normal(8, 0.3)))
        rows.append((shas[0], shas[1], ma, mb))
    frame = pd.DataFrame(rows, columns=["left_sha", "right_sha", "left_model", "right_model"])
    d_file = np.array([outputs[a]["file_size"] - outputs[b]["file_size"] for a, b, _, _ in rows])
    z = d_file / d_file.std()
    theta = np.array([(TRUTH[a] - TRUTH[b]) / RATING_SCALE for _, _, a, b in rows])
    p = 1.0 / (1.0 + np.exp(-(theta + beta * z)))
    p_tie = 0.12 * 4 * p * (1 - p)  # as the simulated panel: the expected score stays p when ties count half
    u = rng.random(n)
    frame["outcome"] = np.where(u < p - p_tie / 2, "left", np.where(u < p + p_tie / 2, "tie", "right"))
    return frame, outputs


def test_a_known_style_effect_and_the_true_strengths_are_recovered_within_their_intervals() -> None:
    covered, estimates = 0, []
    centred = {m: v - np.mean(list(TRUTH.values())) + 1000 for m, v in TRUTH.items()}
    for seed in range(1, 7):
        votes, outputs = simulate(6000, seed=seed)
        result = fit_votes(votes, outputs).as_dict()
        coefficients = {c["covariate"]: c for c in result["coefficients"]}
        file_size = coefficients["file_size"]
        covered += file_size["low"] <= BETA_FILE <= file_size["high"]
        estimates.append(file_size["beta"])
        assert "aspect" not in coefficients and "pixels" not in coefficients, "no variation, no coefficient"
        for name in ("sharpness", "latency"):
            assert abs(coefficients[name]["beta"]) < 4 * (coefficients[name]["high"] - coefficients[name]["low"]) / 3.92
        for row in result["ratings"]:
            assert abs(row["rating"] - centred[row["model"]]) < 4 * (row["high"] - row["low"]) / 3.92, row
    assert covered >= 5, estimates
    assert abs(float(np.mean(estimates)) - BETA_FILE) < 0.05


def test_the_plain_board_credits_presentation_to_the_weaker_models_and_style_control_removes_it() -> None:
    votes, outputs = simulate(12000, seed=2)
    battles = pd.DataFrame({"model_a": votes["left_model"], "model_b": votes["right_model"],
                            "winner": votes["outcome"].map({"left": "model_a", "right": "model_b"}).fillna("tie")})
    plain = fit(aggregate(battles))
    styled = fit_votes(votes, outputs)
    gap_truth = TRUTH["m1"] - TRUTH["m5"]
    gap_plain = plain.rating_of("m1") - plain.rating_of("m5")
    gap_styled = styled.ratings["m1"] - styled.ratings["m5"]
    assert gap_plain < gap_truth - 60
    assert abs(gap_styled - gap_truth) < 40


def test_without_covariates_the_fit_is_the_plain_bradley_terry_board() -> None:
    votes, _ = simulate(3000, seed=3, beta=0.0)
    battles = pd.DataFrame({"model_a": votes["left_model"], "model_b": votes["right_model"],
                            "winner": votes["outcome"].map({"left": "model_a", "right": "model_b"}).fillna("tie")})
    plain = fit(aggregate(battles))
    score = votes["outcome"].map({"left": 1.0, "right": 0.0}).fillna(0.5).tolist()
    styled = fit_style(votes["left_model"].tolist(), votes["right_model"].tolist(), score, {})
    for model in TRUTH:
        assert styled.ratings[model] == pytest.approx(plain.rating_of(model), abs=0.05)
    assert styled.max_gradient < 1e-9 and styled.coefficients == {}


def test_style_control_needs_two_models() -> None:
    with pytest.raises(StyleError, match="two models"):
        fit_style(["a"], ["a"], [1.0], {})


def test_rating_intervals_come_from_the_observed_information_under_the_mean_zero_gauge() -> None:
    rng = np.random.default_rng(0)
    models = list(TRUTH)
    a = rng.integers(0, 5, 4000)
    b = (a + rng.integers(1, 5, 4000)) % 5
    result = fit_style([models[i] for i in a], [models[i] for i in b],
                       (rng.random(4000) < 0.5).astype(float).tolist(), {})
    x = np.zeros((4000, 5))
    x[np.arange(4000), a] += 1.0
    x[np.arange(4000), b] -= 1.0
    theta = np.array([(result.ratings[m] - 1000.0) / RATING_SCALE for m in models])
    p = 1.0 / (1.0 + np.exp(-(x @ theta)))
    laplacian = (x * (p * (1 - p))[:, None]).T @ x
    # on a complete graph the constrained variance is ((m-1)/m)^2 / information-per-model, near 8 points
    expected = RATING_SCALE * np.sqrt(np.diag(np.linalg.pinv(laplacian)))
    for model, se in zip(models, expected, strict=True):
        assert result.rating_se[model] == pytest.approx(float(se), rel=1e-6)
        assert 6.0 < result.rating_se[model] < 8.5
