"""Votes simulated from known strengths give back those strengths: intervals cover the truth at close to
their nominal rate over many simulated arenas, large arenas recover the order, category effects show up in
category boards, and the voter statistics find the voters who ignore the images."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.ratings import (
    RatingOptions,
    best_for,
    leaderboard,
    leaderboards_by,
    position_bias,
    validate_battles,
    voter_agreement,
)
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel

MODELS = list(DEFAULT_STRENGTHS)
HONEST = PanelSettings(position_bias=0.0, noisy_fraction=0.0)


def coverage(method: str, simulations: int, votes: int, rounds: int = 0) -> tuple[int, int]:
    """How many (simulation, model) intervals contained the true rating, out of how many."""
    covered = total = 0
    for seed in range(simulations):
        panel = VoterPanel(HONEST, seed=seed)
        frame = validate_battles(panel.simulate_battles(MODELS, votes))
        options = RatingOptions(ci=method, rounds=max(rounds, 1), seed=seed)  # type: ignore[arg-type]
        board = leaderboard(frame, options)
        truth = panel.truth(board.models)
        for row in board.rows:
            covered += row.ci_low <= truth[row.model] <= row.ci_high
            total += 1
    return covered, total


def binomial_band(n: int, p: float = 0.95, alpha: float = 0.001) -> tuple[float, float]:
    """Range of coverage shares that an exactly nominal interval stays inside with probability 1 − alpha."""
    low, high = sps.binom.ppf([alpha / 2, 1 - alpha / 2], n, p)
    return low / n, high / n


def test_sandwich_intervals_cover_the_truth_at_the_nominal_rate_over_200_arenas() -> None:
    covered, total = coverage("sandwich", simulations=200, votes=1500)
    low, high = binomial_band(total)
    assert low <= covered / total <= high, f"coverage {covered}/{total} outside [{low:.3f}, {high:.3f}]"


def test_bootstrap_intervals_cover_the_truth_at_the_nominal_rate_over_200_arenas() -> None:
    covered, total = coverage("bootstrap", simulations=200, votes=1500, rounds=200)
    low, high = binomial_band(total)
    assert low <= covered / total <= high, f"coverage {covered}/{total} outside [{low:.3f}, {high:.3f}]"


def test_a_large_arena_recovers_every_strength_and_the_true_order() -> None:
    panel = VoterPanel(HONEST, seed=11)
    board = leaderboard(validate_battles(panel.simulate_battles(MODELS, 60_000)))
    truth = panel.truth(board.models)
    assert list(board.models) == sorted(MODELS, key=lambda m: -DEFAULT_STRENGTHS[m])
    for row in board.rows:
        assert abs(row.rating - truth[row.model]) < 4 * row.std_error
        assert row.std_error < 5.0
    assert all(r.rank_best == r.rank_worst for r in board.rows)


def test_category_boards_recover_category_specific_strengths() -> None:
    offsets = {"typography": {"gpt-image-1": 200.0}, "portraiture": {"gpt-image-1": -150.0}}
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0, category_offsets=offsets), seed=3)
    frames = [panel.simulate_battles(MODELS, 20_000, category=c) for c in ("typography", "portraiture")]
    boards = leaderboards_by(validate_battles(pd.concat(frames, ignore_index=True)), "category")
    for category, board in boards.items():
        truth = panel.truth(board.models, category)
        row = board.row("gpt-image-1")
        assert row.ci_low - 5 < truth["gpt-image-1"] < row.ci_high + 5
    places = best_for(boards, "gpt-image-1")
    assert [p.group for p in places] == ["typography", "portraiture"]
    assert places[0].rank == 1 and places[0].win_rate > 0.6


def test_voter_statistics_single_out_the_noisy_voters_and_the_side_bias() -> None:
    panel = VoterPanel(PanelSettings(noisy_fraction=0.15, position_bias=40.0, voters=20), seed=8)
    frame = validate_battles(panel.simulate_battles(MODELS, 30_000))
    board = leaderboard(frame)
    table = voter_agreement(frame, board.ratings())
    flagged = set(table[table["agreement_z"] < -4]["voter"])
    assert flagged == set(panel.noisy_voters)
    bias = position_bias(frame)
    assert bias.left_share is not None and bias.p_value is not None
    assert bias.left_share.low > 0.5 and bias.p_value < 1e-6


def test_noisy_voters_pull_ratings_together_and_honest_panels_do_not() -> None:
    honest = VoterPanel(HONEST, seed=4)
    noisy = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.5), seed=4)
    spread = {}
    for name, panel in (("honest", honest), ("noisy", noisy)):
        board = leaderboard(validate_battles(panel.simulate_battles(MODELS, 20_000)))
        ratings = np.array(list(board.ratings().values()))
        spread[name] = ratings.max() - ratings.min()
    truth = max(DEFAULT_STRENGTHS.values()) - min(DEFAULT_STRENGTHS.values())
    assert abs(spread["honest"] - truth) < 30
    assert spread["noisy"] < 0.8 * truth
