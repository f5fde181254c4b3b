"""Pair choice: balanced exposure first, then pairs with the most uncertain, least observed outcome."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from harness.arena.sampling import PairSampler, active_weight, ordered, win_probability

TARGETS = ("a@x", "b@x", "c@y", "d@z")
ALL = {"m1": TARGETS, "m2": TARGETS, "m3": TARGETS[:3]}


def sampler(min_exposure: int, seed: int = 7) -> PairSampler:
    return PairSampler(ALL, min_exposure=min_exposure, rng=random.Random(seed))


def test_warmup_shows_every_target_equally_often() -> None:
    s = sampler(min_exposure=50)
    for n in range(1, 101):
        c = s.choose()
        s.note_served(c.matchup, c.left, c.right)
        assert max(s.shown.values()) - min(s.shown.values()) <= 1, f"after {n} pairs: {s.shown}"
    assert set(s.shown.values()) == {50}
    # and the pairs and challenges are spread too: every pair of targets met, on more than one challenge
    assert len(s.served) == 6
    assert all(len({m for (p, m) in s.served_on if p == pair}) >= 2 for pair in s.served)


def test_warmup_brings_a_newcomer_up_to_the_others_first() -> None:
    s = sampler(min_exposure=10)
    for _ in range(30):
        s.note_served("m1", "a@x", "b@x")
        s.note_served("m1", "c@y", "b@x")
    # d@z was never shown: it appears in every pair until it reaches min_exposure
    for _ in range(10):
        c = s.choose()
        assert "d@z" in (c.left, c.right)
        s.note_served(c.matchup, c.left, c.right)
    assert not s.in_warmup()


def test_active_phase_draws_pairs_in_proportion_to_uncertainty_over_observations() -> None:
    """Goodness of fit: 6,000 draws with counts held fixed match the documented weights (chi-square), and
    the even, rarely voted pair is drawn far more often than the lopsided, much voted one."""
    s = sampler(min_exposure=0)
    for _ in range(60):
        s.note_vote("a@x", "b@x", "left")  # a beats b 60-0: outcome nearly certain
    for outcome in ("left", "right", "tie", "both_bad"):
        s.note_vote("c@y", "d@z", outcome)  # 2-2: uncertain, few votes
    weights = s.weights()
    assert weights[ordered("c@y", "d@z")] > 10 * weights[ordered("a@x", "b@x")]
    draws = Counter(ordered(c.left, c.right) for c in (s.choose() for _ in range(6000)))
    pairs = sorted(weights)
    expected = np.array([weights[p] for p in pairs]) / sum(weights.values()) * 6000
    observed = np.array([draws[p] for p in pairs])
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert draws[ordered("c@y", "d@z")] > 5 * draws[ordered("a@x", "b@x")]


def test_left_and_right_are_a_fair_coin() -> None:
    s = sampler(min_exposure=0)
    picks = [s.choose() for _ in range(4000)]
    for target in TARGETS:
        shown = [c for c in picks if target in (c.left, c.right)]
        on_left = sum(c.left == target for c in shown)
        assert len(shown) > 1000
        assert stats.binomtest(on_left, len(shown), 0.5).pvalue > 1e-3


def test_served_but_unvoted_pairs_count_as_observed() -> None:
    """Many pairs handed out at once must not all go to the same "least voted" pair."""
    s = sampler(min_exposure=0)
    before = s.weights()[ordered("a@x", "b@x")]
    for _ in range(20):
        s.note_served("m1", "a@x", "b@x")
    assert s.weights()[ordered("a@x", "b@x")] < before / 10


def test_votes_between_targets_outside_the_arena_are_ignored() -> None:
    s = sampler(min_exposure=0)
    s.note_vote("a@x", "zzz@elsewhere", "left")
    s.note_served("m9", "a@x", "zzz@elsewhere")
    assert sum(s.votes.values()) == 0 and sum(s.served.values()) == 0


@given(wins=st.floats(0, 1e6), extra=st.floats(0, 1e6), served=st.floats(0, 1e6))
def test_weights_are_positive_bounded_and_shrink_with_observations(wins: float, extra: float, served: float) -> None:
    votes = wins + extra
    w = active_weight(wins, votes, served)
    assert 0 < w <= 0.25
    assert 0 < win_probability(wins, votes) < 1
    assert active_weight(wins, votes, served + votes + 1) <= w


@given(points=st.lists(st.sampled_from(["left", "right", "tie", "both_bad"]), max_size=60))
def test_vote_points_are_symmetric_in_side(points: list[str]) -> None:
    """The same votes counted with sides swapped give the same smoothed win probability."""
    swap = {"left": "right", "right": "left", "tie": "tie", "both_bad": "both_bad"}
    one, two = sampler(0), sampler(0)
    for outcome in points:
        one.note_vote("a@x", "b@x", outcome)
        two.note_vote("b@x", "a@x", swap[outcome])
    pair = ordered("a@x", "b@x")
    assert one.votes[pair] == two.votes[pair] == len(points)
    assert abs(one.points[pair] - two.points[pair]) < 1e-9
