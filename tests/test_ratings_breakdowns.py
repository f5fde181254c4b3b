"""Breakdowns on hand-built votes: category and kind boards, "best for", win-rate and predicted win-rate
matrices, matchups per challenge with W/L/T percentages, position bias and voter agreement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.ratings import (
    RatingOptions,
    average_win_rate,
    battle_count_matrix,
    best_for,
    leaderboard,
    leaderboards_by,
    matchups,
    panel_agreement,
    position_bias,
    predicted_win_rate,
    validate_battles,
    voter_agreement,
    win_rate_matrix,
)


def votes(rows: list[tuple[str, str, str, str, str, str]]) -> pd.DataFrame:
    """``(model_a, model_b, winner, challenge, category, voter)`` rows."""
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "challenge", "category", "voter"])
    return validate_battles(frame)


# The "Top Matchups" of the seed's model page, rebuilt vote by vote for Nano Banana (NB):
# vs GPT Image 1.5 on "smile": 33 % W · 33 % L · 33 % T; vs SD 3.5 on "apollo": 20 % W · 80 % L;
# vs Nano Banana Pro on "bald": 25 % W · 25 % L · 50 % T.
MATCHUP_VOTES = [
    ("NB", "GPT-1.5", "model_a", "smile", "portraiture", "v1"),
    ("GPT-1.5", "NB", "model_a", "smile", "portraiture", "v2"),
    ("NB", "GPT-1.5", "tie", "smile", "portraiture", "v3"),
    ("SD-3.5", "NB", "model_b", "apollo", "infographic", "v1"),
    *[("NB", "SD-3.5", "model_b", "apollo", "infographic", f"v{i}") for i in range(2, 6)],
    ("NB", "NB-Pro", "model_a", "bald", "portraiture", "v1"),
    ("NB-Pro", "NB", "model_a", "bald", "portraiture", "v2"),
    ("NB", "NB-Pro", "tie", "bald", "portraiture", "v3"),
    ("NB-Pro", "NB", "tie (bothbad)", "bald", "portraiture", "v4"),
]


def test_matchups_per_challenge_reproduce_the_seed_percentages() -> None:
    table = matchups(votes(MATCHUP_VOTES), model="NB")
    rows = {(r.opponent, r.group): r for r in table.itertuples()}
    smile = rows[("GPT-1.5", "smile")]
    assert (smile.votes, smile.wins, smile.losses, smile.ties) == (3, 1, 1, 1)
    assert smile.win_pct == pytest.approx(100 / 3) and smile.tie_pct == pytest.approx(100 / 3)
    apollo = rows[("SD-3.5", "apollo")]
    assert (apollo.win_pct, apollo.loss_pct, apollo.tie_pct) == (20.0, 80.0, 0.0)
    bald = rows[("NB-Pro", "bald")]
    assert (bald.win_pct, bald.loss_pct, bald.tie_pct) == (25.0, 25.0, 50.0)
    assert table["votes"].tolist() == sorted(table["votes"], reverse=True)


def test_matchups_show_every_vote_from_both_sides() -> None:
    table = matchups(votes(MATCHUP_VOTES))
    assert int(table["votes"].sum()) == 2 * len(MATCHUP_VOTES)
    sd = table[(table["model"] == "SD-3.5") & (table["opponent"] == "NB")].iloc[0]
    assert (sd["wins"], sd["losses"]) == (4, 1)


def test_win_rate_matrix_counts_ties_half_and_pools_sides() -> None:
    frame = votes(MATCHUP_VOTES)
    matrix = win_rate_matrix(frame)
    assert matrix.loc["NB", "GPT-1.5"] == pytest.approx(0.5)
    assert matrix.loc["NB", "SD-3.5"] == pytest.approx(0.2)
    assert matrix.loc["SD-3.5", "NB"] == pytest.approx(0.8)
    assert math.isnan(matrix.loc["SD-3.5", "GPT-1.5"])
    decisive = win_rate_matrix(frame, ties="exclude")
    assert decisive.loc["NB", "NB-Pro"] == pytest.approx(0.5)
    counts = battle_count_matrix(frame)
    assert counts.loc["NB", "NB-Pro"] == counts.loc["NB-Pro", "NB"] == 4
    assert int(np.trace(counts.to_numpy())) == 0
    average = average_win_rate(matrix)
    assert average["SD-3.5"] == pytest.approx(0.8)
    assert average["NB"] == pytest.approx((0.5 + 0.2 + 0.5) / 3)


def test_predicted_win_rate_follows_the_ratings() -> None:
    table = predicted_win_rate({"A": 1400.0, "B": 1000.0, "C": 1000.0})
    assert table.loc["A", "B"] == pytest.approx(10 / 11)
    assert table.loc["B", "A"] == pytest.approx(1 / 11)
    assert table.loc["B", "C"] == pytest.approx(0.5)
    assert math.isnan(table.loc["A", "A"])


def test_predicted_and_observed_win_rates_agree_on_a_fitted_board() -> None:
    # With two models the half-tie MLE reproduces the observed score share exactly.
    frame = votes([("A", "B", "model_a", "c", "x", "v")] * 7 + [("B", "A", "model_a", "c", "x", "v")] * 2
                  + [("A", "B", "tie", "c", "x", "v")])
    board = leaderboard(frame)
    assert predicted_win_rate(board.ratings()).loc["A", "B"] == pytest.approx(win_rate_matrix(frame).loc["A", "B"])


def test_category_boards_and_best_for() -> None:
    rows = ([("A", "B", "model_a", "c1", "typography", "v")] * 8 + [("A", "B", "model_b", "c1", "typography", "v")] * 2
            + [("A", "B", "model_b", "c2", "portraiture", "v")] * 6 + [("A", "B", "model_a", "c2", "portraiture", "v")] * 4)
    boards = leaderboards_by(votes(rows), "category")
    assert sorted(boards) == ["portraiture", "typography"]
    assert boards["typography"].models == ("A", "B")
    assert boards["portraiture"].models == ("B", "A")
    places = best_for(boards, "A")
    assert [(p.group, p.rank, p.win_rate, p.votes) for p in places] == [("typography", 1, 0.8, 10),
                                                                         ("portraiture", 2, 0.4, 10)]
    by_challenge = leaderboards_by(votes(rows), "challenge")
    assert sorted(by_challenge) == ["c1", "c2"]


def test_category_boards_keep_the_anchor_where_the_anchor_model_voted() -> None:
    rows = ([("A", "B", "model_a", "c1", "typography", "v")] * 6 + [("A", "B", "model_b", "c1", "typography", "v")] * 3
            + [("C", "D", "model_a", "c2", "portraiture", "v")] * 5 + [("C", "D", "model_b", "c2", "portraiture", "v")] * 4)
    boards = leaderboards_by(votes(rows), "category", RatingOptions(anchor=("A", 1200.0)))
    assert boards["typography"].row("A").rating == pytest.approx(1200.0)
    assert boards["portraiture"].options.anchor is None
    assert np.mean(list(boards["portraiture"].ratings().values())) == pytest.approx(1000.0)


def test_position_bias_counts_left_wins_among_decisive_votes() -> None:
    frame = votes([("A", "B", "model_a", "c", "x", "v")] * 70 + [("B", "A", "model_b", "c", "x", "v")] * 30
                  + [("A", "B", "tie", "c", "x", "v")] * 10)
    bias = position_bias(frame)
    assert (bias.votes, bias.left_wins, bias.right_wins, bias.ties) == (110, 70, 30, 10)
    assert bias.left_share is not None and bias.left_share.estimate == pytest.approx(0.7)
    assert bias.left_share.low > 0.6
    assert bias.p_value is not None and bias.p_value < 1e-4
    only_ties = position_bias(votes([("A", "B", "tie", "c", "x", "v")]))
    assert only_ties.left_share is None and only_ties.p_value is None


def test_voter_agreement_by_hand() -> None:
    # Ratings say A > B. Voter "good" picks A three times, "contrarian" picks B three times, "tied" only ties.
    rows = ([("A", "B", "model_a", "c", "x", "good")] * 3 + [("B", "A", "model_a", "c", "x", "contrarian")] * 3
            + [("A", "B", "tie", "c", "x", "tied")])
    table = voter_agreement(votes(rows), {"A": 1100.0, "B": 1000.0}).set_index("voter")
    p = 1 / (1 + 10 ** (-100 / 400))
    assert table.loc["good", "agree_with_ratings"] == 1.0
    assert table.loc["contrarian", "agree_with_ratings"] == 0.0
    assert table.loc["good", "expected_agreement"] == pytest.approx(p)
    assert table.loc["contrarian", "agreement_z"] == pytest.approx((0 - 3 * p) / math.sqrt(3 * p * (1 - p)))
    # Peers: each of good's votes is compared with contrarian's 3 decisive votes on the same challenge and pair.
    assert table.loc["good", "peer_votes"] == 9 and table.loc["good", "agree_with_peers"] == 0.0
    assert table.loc["contrarian", "left_share"] == 1.0
    assert table.loc["tied", "tie_rate"] == 1.0 and math.isnan(table.loc["tied", "agree_with_ratings"])
    assert voter_agreement(votes(rows), {"A": 1100.0, "B": 1000.0})["voter"].iloc[0] == "contrarian"


def test_panel_agreement_is_the_share_of_agreeing_vote_pairs() -> None:
    # Same challenge and pair: voters 1 and 2 pick A, voter 3 picks B: of 6 ordered voter pairs, 2 agree.
    rows = [("A", "B", "model_a", "c", "x", "1"), ("B", "A", "model_b", "c", "x", "2"),
            ("A", "B", "model_b", "c", "x", "3"), ("A", "B", "model_a", "other", "x", "1")]
    assert panel_agreement(votes(rows)) == pytest.approx(2 / 6)
