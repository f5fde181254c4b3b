"""Online Elo follows FastChat's update rule step by step, replays votes in time order, and visibly depends
on that order (which is why it is only the secondary column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.ratings import EloSettings, RatingError, elo_bootstrap, online_elo


def votes(rows: list[tuple[str, str, str]], tstamps: list[float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    if tstamps is not None:
        frame["tstamp"] = tstamps
    return frame


def expected(r_a: float, r_b: float) -> float:
    return 1 / (1 + 10 ** ((r_b - r_a) / 400))


def test_two_votes_by_hand_with_k_4() -> None:
    ratings = online_elo(votes([("A", "B", "model_a"), ("A", "B", "model_b")]))
    # Vote 1: equal ratings, A wins: A += 4·(1 − ½) = +2. Vote 2: B wins from 998 against 1002.
    a, b = 1002.0, 998.0
    delta = 4 * (1 - expected(b, a))
    assert ratings["A"] == pytest.approx(a - delta, abs=1e-12)
    assert ratings["B"] == pytest.approx(b + delta, abs=1e-12)


def test_ties_score_half_or_are_skipped() -> None:
    rows = [("A", "B", "model_a"), ("A", "B", "tie (bothbad)")]
    half = online_elo(votes(rows))
    assert half["A"] == pytest.approx(1002 + 4 * (0.5 - expected(1002, 998)), abs=1e-12)
    dropped = online_elo(votes(rows), EloSettings(ties="drop"))
    assert dropped["A"] == pytest.approx(1002.0)


def test_the_same_votes_in_another_order_give_other_ratings() -> None:
    rows = [("A", "B", "model_a")] * 20 + [("A", "B", "model_b")] * 20
    forward = online_elo(votes(rows), ordered=True)
    backward = online_elo(votes(rows[::-1]), ordered=True)
    assert forward["A"] < 1000 < backward["A"]
    assert forward["A"] + forward["B"] == pytest.approx(2000.0)


def test_votes_are_replayed_by_timestamp_whatever_the_row_order() -> None:
    rng = np.random.default_rng(0)
    rows = [("A", "B", "model_a"), ("B", "C", "model_a"), ("C", "A", "tie"), ("A", "C", "model_b")] * 10
    stamps = list(range(len(rows)))
    shuffled = rng.permutation(len(rows))
    in_order = online_elo(votes(rows, [float(s) for s in stamps]))
    mixed = online_elo(votes([rows[i] for i in shuffled], [float(stamps[i]) for i in shuffled]))
    pd.testing.assert_series_equal(in_order, mixed)


def test_votes_without_a_timestamp_follow_the_timed_ones_in_file_order() -> None:
    frame = votes([("A", "B", "model_a"), ("A", "B", "model_b")], [float("nan"), 5.0])
    replayed = online_elo(frame)
    b_first = online_elo(votes([("A", "B", "model_b"), ("A", "B", "model_a")]), ordered=True)
    pd.testing.assert_series_equal(replayed, b_first)


def test_bootstrap_is_seeded_and_keeps_total_rating_constant() -> None:
    rows = [("A", "B", "model_a"), ("B", "C", "model_a"), ("C", "A", "tie")] * 30
    reps = elo_bootstrap(votes(rows), rounds=25, seed=3)
    assert reps.shape == (25, 3)
    np.testing.assert_allclose(reps.sum(axis=1), 3000.0)
    pd.testing.assert_frame_equal(reps, elo_bootstrap(votes(rows), rounds=25, seed=3))
    # One replicate replayed by hand with the scalar implementation agrees.
    rng = np.random.default_rng(3)
    picks = np.stack([rng.integers(0, len(rows), size=25) for _ in rows], axis=1)
    first = online_elo(votes([rows[i] for i in picks[0]]), ordered=True)
    np.testing.assert_allclose(reps.iloc[0][first.index].to_numpy(), first.to_numpy(), atol=1e-9)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(RatingError, match="k"):
        EloSettings(k=-1)
    with pytest.raises(RatingError, match="base"):
        EloSettings(base=1.0)
