"""The assembled board: an anchor pins one model (zero-width interval, the others relative to it, as FastChat
does) or, when asked, only shifts point estimates; ranks come from the intervals, small models are
flagged, tie handling and methods are what was asked for, and an empty vote set is an empty board."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.ratings import RatingError, RatingOptions, leaderboard, validate_battles
from harness.ratings.leaderboard import ROW_FIELDS
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel


def panel_votes(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=seed)
    return validate_battles(panel.simulate_battles(list(DEFAULT_STRENGTHS), n))


@pytest.mark.parametrize("ci", ["sandwich", "bootstrap"])
def test_a_centred_anchor_shifts_every_point_and_bound_by_one_constant(ci: str) -> None:
    frame = panel_votes()
    plain = leaderboard(frame, RatingOptions(ci=ci, rounds=100))  # type: ignore[arg-type]
    anchored = leaderboard(frame, RatingOptions(ci=ci, rounds=100, anchor=("sd-3.5-large", 940.0),  # type: ignore[arg-type]
                                                anchor_intervals="centred"))
    assert anchored.row("sd-3.5-large").rating == pytest.approx(940.0, abs=1e-9)
    shift = 940.0 - plain.row("sd-3.5-large").rating
    for before, after in zip(plain.rows, anchored.rows, strict=True):
        assert after.model == before.model
        assert after.rating - before.rating == pytest.approx(shift, abs=1e-9)
        assert after.ci_high - after.ci_low == pytest.approx(before.ci_high - before.ci_low, abs=1e-9)
        assert after.std_error == before.std_error
        assert (after.rank_best, after.rank_worst) == (before.rank_best, before.rank_worst)
    # The anchor model keeps its own uncertainty (LMArena's image board: dall-e-3 = 978 with a CI).
    assert anchored.row("sd-3.5-large").ci_high > 940.0 > anchored.row("sd-3.5-large").ci_low
    assert anchored.row("sd-3.5-large").elo == pytest.approx(940.0, abs=1e-9)


def test_rows_carry_counts_ranks_and_elo_and_serialise_to_json() -> None:
    frame = panel_votes()
    board = leaderboard(frame)
    records = board.to_records()
    json.dumps(records, allow_nan=False)
    assert list(records[0]) == list(ROW_FIELDS)
    assert [r["rating"] for r in records] == sorted((r["rating"] for r in records), reverse=True)
    for r in board.rows:
        assert r.votes == r.wins + r.losses + r.ties
        assert r.win_rate == pytest.approx((r.wins + r.ties / 2) / r.votes)
        assert r.ci_low < r.rating < r.ci_high
        assert r.rank_best >= 1 and r.rank_best <= r.rank_worst <= len(board.rows)
        assert math.isfinite(r.elo)
    assert sum(r.votes for r in board.rows) == 2 * len(frame)
    assert np.mean([r.rating for r in board.rows]) == pytest.approx(1000.0)


def test_models_below_the_vote_minimum_are_flagged_provisional() -> None:
    frame = panel_votes(600)
    board = leaderboard(frame, RatingOptions(min_votes=175))
    for row in board.rows:
        assert row.provisional == (row.votes < 175)
    assert any(r.provisional for r in board.rows) and not all(r.provisional for r in board.rows)
    assert any(note.startswith("provisional") for note in board.notes)


def test_tie_handling_changes_the_fit_but_never_the_counts() -> None:
    frame = panel_votes(3000)
    boards = {t: leaderboard(frame, RatingOptions(ties=t)) for t in ("half", "drop", "davidson")}  # type: ignore[misc]
    counts = {t: [(r.model, r.wins, r.ties, r.losses) for r in sorted(b.rows, key=lambda r: r.model)]
              for t, b in boards.items()}
    assert counts["half"] == counts["drop"] == counts["davidson"]
    assert boards["davidson"].tie_nu is not None and boards["half"].tie_nu is None
    assert boards["half"].ratings() != boards["drop"].ratings()
    assert boards["half"].models[0] == boards["drop"].models[0] == boards["davidson"].models[0]


def test_elo_method_puts_online_elo_in_the_rating_column() -> None:
    frame = panel_votes(1500)
    board = leaderboard(frame, RatingOptions(method="elo", rounds=50))
    for row in board.rows:
        assert row.rating == row.elo
        assert row.ci_low <= row.ci_high
    assert any("online Elo" in note for note in board.notes)


def test_empty_and_self_only_vote_sets_give_empty_boards_with_a_note() -> None:
    empty = leaderboard(validate_battles(pd.DataFrame(columns=["model_a", "model_b", "winner"])))
    assert empty.rows == () and empty.notes == ("no votes",)
    same = leaderboard(validate_battles(pd.DataFrame({"model_a": ["A"], "model_b": ["A"], "winner": ["tie"]})))
    assert same.rows == () and same.self_votes == 1


def test_an_unidentified_board_says_it_used_the_prior() -> None:
    frame = validate_battles(pd.DataFrame({"model_a": ["A"] * 3 + ["B"], "model_b": ["B"] * 3 + ["C"],
                                           "winner": ["model_a"] * 4}))
    board = leaderboard(frame)
    assert not board.identified and board.prior_games == 1.0
    assert any("virtual draw" in note for note in board.notes)
    assert board.models == ("A", "B", "C")


def test_options_reject_nonsense_with_a_clear_message() -> None:
    with pytest.raises(RatingError, match="unknown rating method"):
        RatingOptions(method="glicko")  # type: ignore[arg-type]
    with pytest.raises(RatingError, match="rounds"):
        RatingOptions(rounds=0)
    with pytest.raises(RatingError, match="anchor model 'nobody' has no votes"):
        leaderboard(panel_votes(200), RatingOptions(anchor=("nobody", 1000.0)))
