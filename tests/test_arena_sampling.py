"""Pair choice: balanced exposure first, then pairs with the most uncertain, least observed outcome."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from harness.arena.sampling import (
    MIN_RELEVANCE,
    PairSampler,
    StrengthFit,
    active_weight,
    ordered,
    ordering_gains,
    rank_relevance,
    win_probability,
)

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
    s = PairSampler(ALL, min_exposure=0, rng=random.Random(7), policy="uncertainty")
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


# -- contenders: by model (default in the arena) or by target -------------------------------------------

TWO_PROVIDERS = {"m1": ("gem@openrouter", "gem@google", "flux@fal", "sd@replicate"),
                 "m2": ("gem@openrouter", "gem@google", "flux@fal")}
MODEL_OF = {"gem@openrouter": "gem", "gem@google": "gem", "flux@fal": "flux", "sd@replicate": "sd"}


def test_pairing_by_model_never_puts_one_model_against_itself() -> None:
    """Two providers of one model never meet, and both still get about half of their model's showings."""
    s = PairSampler(TWO_PROVIDERS, min_exposure=20, rng=random.Random(3), unit_of=MODEL_OF)
    assert set(s.pairs) == {("flux", "gem"), ("flux", "sd"), ("gem", "sd")}
    for _ in range(600):
        c = s.choose()
        assert MODEL_OF[c.left] != MODEL_OF[c.right], c
        assert c.left in TWO_PROVIDERS[c.matchup] and c.right in TWO_PROVIDERS[c.matchup]
        s.note_served(c.matchup, c.left, c.right)
        s.note_vote(c.left, c.right, "left")
    assert abs(s.target_shown["gem@openrouter"] - s.target_shown["gem@google"]) <= 2
    # a vote between the two providers (cast elsewhere, e.g. imported) is not counted for the model pair
    before = dict(s.votes)
    s.note_vote("gem@openrouter", "gem@google", "left")
    assert dict(s.votes) == before


def test_pairing_by_target_lets_two_providers_of_one_model_meet() -> None:
    s = PairSampler(TWO_PROVIDERS, min_exposure=0, rng=random.Random(3))
    met = Counter(ordered(c.left, c.right) for c in (s.choose() for _ in range(400)))
    assert met[ordered("gem@openrouter", "gem@google")] > 0


def test_a_model_with_one_target_only_in_some_challenges_is_paired_where_it_has_outputs() -> None:
    s = PairSampler({"m1": ("gem@google", "flux@fal"), "m2": ("gem@openrouter", "gem@google")},
                    min_exposure=0, rng=random.Random(1), unit_of=MODEL_OF)
    assert s.pairs == (("flux", "gem"),)
    assert all(s.choose().matchup == "m1" for _ in range(50))
    with pytest.raises(ValueError, match="no matchup has two contenders"):
        PairSampler({"m2": ("gem@openrouter", "gem@google")}, min_exposure=0, rng=random.Random(1),
                    unit_of=MODEL_OF)


# -- rank policy ---------------------------------------------------------------------------------------


def _cast(s: PairSampler, a: str, b: str, wins_a: int, wins_b: int) -> None:
    for _ in range(wins_a):
        s.note_vote(a, b, "left")
    for _ in range(wins_b):
        s.note_vote(a, b, "right")


def test_rank_policy_spends_votes_on_neighbours_whose_order_is_still_open() -> None:
    """Four models: a far above b, b far above the close pair c ~ d. Equal vote counts everywhere, yet the
    c-d pair (order unsettled) outweighs a settled neighbour pair and, far more, the pair at the ends."""
    names = ("a", "b", "c", "d")
    s = PairSampler({"m": names}, min_exposure=0, rng=random.Random(2), policy="rank")
    for x, y, wx, wy in (("a", "b", 36, 4), ("b", "c", 36, 4), ("c", "d", 21, 19), ("a", "c", 39, 1),
                         ("b", "d", 38, 2), ("a", "d", 40, 0)):
        _cast(s, x, y, wx, wy)
    rank = s.weights()
    plain = PairSampler({"m": names}, min_exposure=0, rng=random.Random(2), policy="uncertainty")
    for (x, y), n in s.votes.items():
        _cast(plain, x, y, int(s.points[(x, y)]), n - int(s.points[(x, y)]))
    assert rank[("c", "d")] > 20 * rank[("a", "b")]
    assert rank[("c", "d")] > 1000 * rank[("a", "d")]
    # the earlier rule cares about the outcome's variance only: far less sharp
    assert plain.weights()[("c", "d")] < 10 * plain.weights()[("a", "b")]
    assert all(w > 0 for w in rank.values())


def test_rank_policy_weights_are_the_cubed_gains_and_count_pending_pairs_as_observed() -> None:
    """The default policy's weight is its documented formula: the cube of the pair's gain relative to the
    best pair's (floored), discounted by servings not yet voted on; the draw follows those weights."""
    s = sampler(min_exposure=0)
    for _ in range(60):
        s.note_vote("a@x", "b@x", "left")
    for outcome in ("left", "right", "tie", "both_bad"):
        s.note_vote("c@y", "d@z", outcome)
    fit = s.strengths()
    assert fit is not None
    gains = ordering_gains(fit, s.pairs)
    relevance = np.maximum(gains / gains.max(), MIN_RELEVANCE) ** 3
    expected = dict(zip(s.pairs, relevance, strict=True))
    assert s.weights() == pytest.approx(expected)
    assert s.weights()[ordered("c@y", "d@z")] > 100 * s.weights()[ordered("a@x", "b@x")]
    for _ in range(9):
        s.note_served("m1", "c@y", "d@z")  # 9 pages open on the pair, 4 votes: (4 + 1) / (9 + 1) of its weight
    assert s.weights()[ordered("c@y", "d@z")] == pytest.approx(expected[ordered("c@y", "d@z")] / 2)


def test_a_contender_without_votes_keeps_full_relevance_with_everyone() -> None:
    """The fit knows only its prior about a newcomer, so nothing says the newcomer's order is settled: its
    pairs weigh as much as the most open pair of the board, and the settled pair stays near zero."""
    s = sampler(min_exposure=0)
    _cast(s, "a@x", "b@x", 60, 0)
    _cast(s, "b@x", "c@y", 10, 10)
    w = s.weights()
    assert w[ordered("a@x", "d@z")] == w[ordered("b@x", "d@z")] == w[ordered("c@y", "d@z")] == max(w.values())
    assert w[ordered("a@x", "b@x")] < 1e-3 * max(w.values())


def test_gain_of_a_vote_is_the_expected_drop_in_misordered_pairs() -> None:
    """Check of the closed form by numerical integration: one vote on (a, b) moves the fitted strengths along
    ``cov @ u`` by a normal amount (the information it adds, by Sherman–Morrison); the expected number of
    wrongly ordered pairs afterwards, judged with the shrunken intervals, is lower than now by the gain."""
    names = ("a", "b", "c", "d")
    theta = np.array([0.5, 0.1, 0.0, -0.4])
    root = np.array([[0.5, 0.1, 0.0, 0.1], [0.1, 0.4, 0.1, 0.0], [0.0, 0.1, 0.6, 0.2], [0.1, 0.0, 0.2, 0.5]])
    cov = root @ root.T
    pairs = [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    gains = ordering_gains(StrengthFit(names, theta, cov), pairs)
    assert np.all(gains >= 0)
    i, j = np.triu_indices(4, 1)
    z = np.linspace(-9.0, 9.0, 40_001)[:, None]
    density = stats.norm.pdf(z[:, 0]) * (z[1, 0] - z[0, 0])

    def misordered(mean: np.ndarray, c: np.ndarray) -> np.ndarray:
        sd = np.sqrt(c[i, i] + c[j, j] - 2 * c[i, j])
        return np.asarray(stats.norm.cdf(-np.abs(mean[..., i] - mean[..., j]) / sd).sum(axis=-1))

    for k, (a, b) in enumerate(pairs):
        u = np.zeros(4)
        u[names.index(a)], u[names.index(b)] = 1.0, -1.0
        p = 1.0 / (1.0 + np.exp(-(u @ theta)))
        along = cov @ u
        scale = p * (1 - p) / (1 + p * (1 - p) * (u @ along))
        after = cov - scale * np.outer(along, along)
        expected_drop = misordered(theta, cov) - misordered(theta + z * along * np.sqrt(scale), after) @ density
        assert gains[k] == pytest.approx(expected_drop, abs=1e-6, rel=1e-3), (a, b)
    # a pair whose order is settled gains least; the close, uncertain pair (b, c) the most
    assert gains[pairs.index(("b", "c"))] == gains.max()


def test_rank_policy_refits_on_a_schedule_not_per_draw() -> None:
    s = PairSampler({"m": TARGETS}, min_exposure=0, rng=random.Random(4), refit_every=25)
    rng = random.Random(9)
    for n in range(1, 501):
        c = s.choose()
        s.note_served(c.matchup, c.left, c.right)
        s.note_vote(c.left, c.right, rng.choice(["left", "right", "tie"]))
        s.choose()  # a page view that is not voted on
        assert s.fits <= n // 25 + 1
    assert s.fits >= 500 // 25 - 1


def test_uniform_policy_weighs_every_pair_alike() -> None:
    s = PairSampler(ALL, min_exposure=0, rng=random.Random(4), policy="uniform")
    _cast(s, "a@x", "b@x", 50, 0)
    assert set(s.weights().values()) == {1.0}
    with pytest.raises(ValueError, match="unknown sampling policy"):
        PairSampler(ALL, min_exposure=0, rng=random.Random(4), policy="best")  # type: ignore[arg-type]


@given(gap=st.floats(-50, 50), sd=st.floats(0, 100))
def test_rank_relevance_is_a_probability_floored_above_zero(gap: float, sd: float) -> None:
    r = rank_relevance(gap, sd)
    assert MIN_RELEVANCE <= r <= 1.0
    if sd > 0:
        assert rank_relevance(gap / 2, sd) >= r  # closer ratings: more relevant


def test_only_allowed_targets_are_chosen_when_pairing_by_model() -> None:
    """The arena narrows each matchup to the outputs this voter may see: a model whose only allowed target
    in a challenge is one provider is shown through that provider there, and nowhere it has none."""
    s = PairSampler(TWO_PROVIDERS, min_exposure=0, rng=random.Random(8), unit_of=MODEL_OF)
    allowed = {"m1": {"gem@openrouter", "flux@fal", "sd@replicate"}, "m2": {"flux@fal"}}
    for _ in range(300):
        c = s.choose_among(allowed)
        assert c is not None and c.matchup == "m1"
        assert {c.left, c.right} <= allowed["m1"]
        s.note_served(c.matchup, c.left, c.right)
    assert s.choose_among({"m1": {"gem@openrouter", "gem@google"}, "m2": {"flux@fal"}}) is None
