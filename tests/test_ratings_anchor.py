"""Anchoring as FastChat does it: ``--anchor X=940`` pins X at 940 with a zero-width interval and gives every
other model the interval of its difference to X; without an anchor the intervals stay centred. Every output
says which, and the widths follow the covariance exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from harness.cli import cli
from harness.ratings import (
    Leaderboard,
    RatingBoard,
    RatingError,
    RatingOptions,
    RatingRow,
    aggregate,
    fit,
    leaderboard,
    leaderboards_by,
    validate_battles,
)
from harness.ratings.bradley_terry import RATING_SCALE
from harness.ratings.intervals import bootstrap_intervals, bootstrap_replicates, sandwich_covariance
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel

ANCHOR = "sd-3.5-large"
Z95 = 1.959963984540054


def panel_votes(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=seed)
    return validate_battles(panel.simulate_battles(list(DEFAULT_STRENGTHS), n))


def votes(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    out = [{"model_a": a, "model_b": b, "winner": w} for a, b, w, n in rows for _ in range(n)]
    return validate_battles(pd.DataFrame(out, columns=["model_a", "model_b", "winner"]))


@pytest.mark.parametrize(("method", "ci"), [("bt", "sandwich"), ("bt", "bootstrap"), ("elo", "sandwich")])
def test_the_anchor_sits_at_its_value_with_a_zero_width_interval_and_differences_are_kept(
        method: str, ci: str) -> None:
    frame = panel_votes(1500 if method == "elo" else 3000)
    settings = {"method": method, "ci": ci, "rounds": 60}
    plain = leaderboard(frame, RatingOptions(**settings))  # type: ignore[arg-type]
    pinned = leaderboard(frame, RatingOptions(**settings, anchor=(ANCHOR, 940.0)))  # type: ignore[arg-type]
    anchor = pinned.row(ANCHOR)
    assert anchor.rating == anchor.ci_low == anchor.ci_high == 940.0
    assert anchor.std_error == 0.0
    for row in pinned.rows:
        before = plain.row(row.model)
        assert row.rating - anchor.rating == pytest.approx(before.rating - plain.row(ANCHOR).rating, abs=1e-9)
        assert row.ci_low <= row.rating <= row.ci_high
        if row.model != ANCHOR:
            assert row.ci_high > row.ci_low
    assert [r.model for r in pinned.rows] == [r.model for r in plain.rows]


def test_sandwich_widths_are_those_of_the_difference_to_the_anchor() -> None:
    frame = panel_votes()
    counts = aggregate(frame)
    cov = sandwich_covariance(counts, fit(counts))
    a = counts.models.index(ANCHOR)
    board = leaderboard(frame, RatingOptions(anchor=(ANCHOR, 940.0)))
    for i, model in enumerate(counts.models):
        expected = Z95 * RATING_SCALE * math.sqrt(max(cov[i, i] + cov[a, a] - 2 * cov[i, a], 0.0))
        row = board.row(model)
        assert row.ci_high - row.rating == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert row.rating - row.ci_low == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_in_a_balanced_design_anchored_intervals_are_sqrt_2m_over_m_minus_1_times_wider() -> None:
    # m equal models, every pair 10 wins each way: the sandwich is H⁺ = 4/(n m) (I − J/m), so the centred
    # variance is 4/(n m)·(1 − 1/m) and the variance of a difference to the anchor 8/(n m).
    models = ["A", "B", "C", "D"]
    m = len(models)
    frame = votes([(x, y, w, 10) for i, x in enumerate(models) for y in models[i + 1:]
                   for w in ("model_a", "model_b")])
    centred = leaderboard(frame)
    pinned = leaderboard(frame, RatingOptions(anchor=("A", 1000.0)))
    for model in models[1:]:
        ratio = (pinned.row(model).ci_high - pinned.row(model).ci_low) / \
            (centred.row(model).ci_high - centred.row(model).ci_low)
        assert ratio == pytest.approx(math.sqrt(2 * m / (m - 1)), rel=1e-9)


def test_a_model_tied_closely_to_the_anchor_gets_narrower_and_a_far_one_wider() -> None:
    # A and B meet 1000 times, C meets each only 20 times: B's difference to A is known far better than B's
    # place against the mean (which carries C's uncertainty), and C's difference to A is known worse than
    # C's place against the mean (which carries A's and B's certainty).
    frame = votes([("A", "B", "model_a", 520), ("A", "B", "model_b", 480), ("A", "C", "model_a", 12),
                   ("A", "C", "model_b", 8), ("B", "C", "model_a", 11), ("B", "C", "model_b", 9)])
    centred = leaderboard(frame)
    pinned = leaderboard(frame, RatingOptions(anchor=("A", 1000.0)))

    def width(board: Leaderboard, model: str) -> float:
        return board.row(model).ci_high - board.row(model).ci_low

    assert width(pinned, "B") < width(centred, "B")
    assert width(pinned, "C") > width(centred, "C")


def test_anchored_bootstrap_is_the_percentiles_of_each_replicates_difference_to_the_anchor() -> None:
    frame = panel_votes(2000, seed=3)
    counts = aggregate(frame)
    point = fit(counts)
    a = counts.models.index(ANCHOR)
    reps = bootstrap_replicates(counts, point, rounds=80, seed=5)
    diff = reps - reps[:, [a]]
    low, high = np.percentile(diff, [2.5, 97.5], axis=0)
    anchored = bootstrap_intervals(counts, point, rounds=80, seed=5, reference=a)
    np.testing.assert_allclose(anchored.low, low + point.ratings[a], rtol=0, atol=1e-9)
    np.testing.assert_allclose(anchored.high, high + point.ratings[a], rtol=0, atol=1e-9)
    assert anchored.low[a] == anchored.high[a] == point.ratings[a]


def test_category_boards_are_anchored_only_where_the_anchor_voted() -> None:
    frame = panel_votes(2000)
    frame["category"] = ["portraiture" if i % 2 else "typography" for i in range(len(frame))]
    boards = leaderboards_by(frame, "category", RatingOptions(anchor=(ANCHOR, 940.0)))
    for board in boards.values():
        assert board.row(ANCHOR).ci_low == board.row(ANCHOR).ci_high == 940.0
        assert board.intervals == f"anchored at {ANCHOR}=940"


def test_an_unknown_anchor_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RatingError, match="anchor model 'nobody' has no votes"):
        leaderboard(panel_votes(300), RatingOptions(anchor=("nobody", 1000.0)))
    path = tmp_path / "votes.csv"
    panel_votes(300).to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["ratings", "--votes", str(path), "--anchor", "nobody=1000"])
    assert result.exit_code == 2 and "anchor model 'nobody' has no votes" in result.stderr


def test_every_output_says_what_the_intervals_are_relative_to(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    panel_votes(1000).to_csv(path, index=False)
    runner = CliRunner()
    table = runner.invoke(cli, ["ratings", "--votes", str(path)])
    assert table.exit_code == 0 and "intervals: centred" in table.stdout
    table = runner.invoke(cli, ["ratings", "--votes", str(path), "--anchor", f"{ANCHOR}=940"])
    assert table.exit_code == 0 and f"intervals: anchored at {ANCHOR}=940" in table.stdout
    rows = json.loads(runner.invoke(cli, ["ratings", "--votes", str(path), "--json", "--anchor",
                                          f"{ANCHOR}=940"]).stdout)
    assert {r["intervals"] for r in rows} == {f"anchored at {ANCHOR}=940"}
    assert {r["schema_version"] for r in rows} == {1}
    assert all(RatingRow.model_validate(r) for r in rows)
    plain = json.loads(runner.invoke(cli, ["ratings", "--votes", str(path), "--json"]).stdout)
    assert {r["intervals"] for r in plain} == {"centred"}
    board = leaderboard(panel_votes(1000), RatingOptions(anchor=(ANCHOR, 940.0))).board()
    assert board.interval_reference == "anchored" and board.anchor is not None and board.anchor.rating == 940.0
    assert leaderboard(panel_votes(1000)).board().interval_reference == "centred"


def test_the_schema_is_written_from_the_type_and_a_mistyped_field_is_an_error() -> None:
    runner = CliRunner()
    schema = json.loads(runner.invoke(cli, ["ratings", "--schema"]).stdout)
    assert schema["$id"].endswith("rating-row:v1") and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(RatingRow.model_fields)
    assert "schema_version" in schema["required"] and "intervals" in schema["required"]
    board_schema = json.loads(runner.invoke(cli, ["ratings", "--schema", "board"]).stdout)
    assert set(board_schema["properties"]) == set(RatingBoard.model_fields)
    row = leaderboard(panel_votes(500)).rows[0].as_dict()
    with pytest.raises(ValidationError):
        RatingRow.model_validate({**row, "ratng": row["rating"]})
    with pytest.raises(ValidationError):
        RatingRow.model_validate({**row, "votes": "many"})


def test_a_centred_anchor_from_the_cli_keeps_the_anchor_models_own_interval(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    panel_votes(1000).to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["ratings", "--votes", str(path), "--json", "--anchor", f"{ANCHOR}=940",
                                      "--anchor-intervals", "centred"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.stdout) if r["model"] == ANCHOR)
    assert row["rating"] == pytest.approx(940.0) and row["ci_low"] < 940.0 < row["ci_high"]
    assert row["intervals"] == f"centred (ratings shifted so {ANCHOR}=940)"


@settings(max_examples=25, deadline=None)
@given(wins=st.lists(st.integers(min_value=1, max_value=30), min_size=6, max_size=6),
       anchor=st.sampled_from(["A", "B", "C"]), value=st.floats(min_value=-5000, max_value=5000),
       ci=st.sampled_from(["sandwich", "bootstrap"]))
def test_any_connected_vote_set_anchors_exactly(wins: list[int], anchor: str, value: float, ci: str) -> None:
    pairs = [("A", "B"), ("B", "C"), ("A", "C")]
    frame = votes([(a, b, w, n) for (a, b), (n_a, n_b) in zip(pairs, zip(wins[::2], wins[1::2], strict=True),
                                                                strict=True)
                   for w, n in (("model_a", n_a), ("model_b", n_b))])
    plain = leaderboard(frame, RatingOptions(ci=ci, rounds=30))  # type: ignore[arg-type]
    pinned = leaderboard(frame, RatingOptions(ci=ci, rounds=30, anchor=(anchor, value)))  # type: ignore[arg-type]
    assert pinned.row(anchor).rating == pinned.row(anchor).ci_low == pinned.row(anchor).ci_high == value
    for model in ("A", "B", "C"):
        row = pinned.row(model)
        assert row.ci_low <= row.ci_high
        if ci == "sandwich":  # a percentile interval need not contain the MLE on a handful of votes
            assert row.ci_low <= row.rating + 1e-9 and row.rating <= row.ci_high + 1e-9
        assert row.rating - value == pytest.approx(plain.row(model).rating - plain.row(anchor).rating, abs=1e-7)
        assert 1 <= row.rank_best <= row.rank_worst <= 3
