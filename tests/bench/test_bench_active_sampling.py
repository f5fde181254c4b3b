"""Votes spent where they count (issue 18 item 6): how many votes an arena needs before its board orders the
models right, with uniform pairs against the arena's active sampling.

Each simulated arena has 10 models with fixed true ratings, neighbours 40-60 Elo points apart (drawn per
arena, shuffled names), and voters who follow the Bradley–Terry model exactly: 10 % ties, otherwise the
left side wins with probability ``1 / (1 + 10^((R_right - R_left) / 400))``. Every policy faces the same 60
arenas (same seeds, same true ratings), driven through :class:`~harness.arena.sampling.PairSampler` as the
arena drives it (warm-up of ``min_exposure`` = 10 showings each, then the policy; the voter answers at
once). Every 20 votes the board's Bradley–Terry fit (:func:`harness.ratings.fit`, half-point ties) is
compared with the true order by Kendall's τ. **Votes needed** = the checkpoint after which τ stays ≥ 0.9
up to the cap of 3,000 votes (reached *and held*: a lucky early checkpoint does not count); an arena that
never holds it counts as the cap.

Policies: ``uniform`` (every pair equally likely: the baseline), ``uncertainty`` (the arena's earlier rule,
outcome variance over observations) and ``rank`` (the default: the cube of each pair's expected drop in
misordered pairs from one more vote, from a refit every 10 votes). Goal: ``rank`` needs ≤ 60 % of uniform's
votes, both by the mean and by the median over arenas (the median arena is the typical one; the mean also
weighs the slow ones). A second benchmark times one pair choice (a page view) with 10 and 100 contenders.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from scipy.special import expit

from harness.arena.sampling import PairSampler, Policy
from harness.ratings import PairCounts, RatingError, fit
from harness.ratings.bradley_terry import RATING_SCALE

N_MODELS = 10
N_ARENAS = 60
CAP = 3000
CHECK_EVERY = 20
TAU = 0.9
TIE_RATE = 0.1
POLICIES: tuple[Policy, ...] = ("uniform", "uncertainty", "rank")


@dataclass(frozen=True)
class Outcome:
    """One simulated arena under one policy: votes to reach and hold τ ≥ 0.9, the first checkpoint that
    reached it, the final τ, refits made by the sampler and seconds spent."""

    votes: int
    first: int
    final_tau: float
    fits: int
    seconds: float


def kendall_tau(estimate: np.ndarray, truth: np.ndarray) -> float:
    i, j = np.triu_indices(len(truth), 1)
    agree = np.sign(estimate[i] - estimate[j]) * np.sign(truth[i] - truth[j])
    return float(agree.mean())


def board_order(names: tuple[str, ...], sampler: PairSampler) -> np.ndarray | None:
    """Ratings from the board's Bradley–Terry fit of the votes so far (None while it cannot fit)."""
    index = {n: k for k, n in enumerate(names)}
    pairs = [p for p, n in sampler.votes.items() if n > 0]
    if not pairs:
        return None
    first = np.array([index[a] for a, _ in pairs], dtype=np.intp)
    second = np.array([index[b] for _, b in pairs], dtype=np.intp)
    n = np.array([sampler.votes[p] for p in pairs], dtype=np.float64)
    y = np.array([sampler.points[p] for p in pairs], dtype=np.float64)
    zero = np.zeros(len(pairs))
    try:
        return fit(PairCounts(names, first, second, y, n - y, zero, zero)).theta
    except RatingError:
        return None


def true_ratings(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ladder = np.concatenate([[1000.0], 1000.0 + np.cumsum(rng.uniform(40.0, 60.0, N_MODELS - 1))])
    return rng.permutation(ladder)


def simulate(policy: Policy, seed: int) -> Outcome:
    started = time.perf_counter()
    truth = true_ratings(seed)
    names = tuple(f"model-{k}" for k in range(N_MODELS))
    rating = dict(zip(names, truth, strict=True))
    voters = np.random.default_rng(10_000 + seed)
    sampler = PairSampler({"challenge": names}, min_exposure=10, rng=random.Random(seed), policy=policy)
    last_below, first, tau = 0, CAP, 0.0
    for vote in range(1, CAP + 1):
        choice = sampler.choose()
        sampler.note_served(choice.matchup, choice.left, choice.right)
        p_left = float(expit((rating[choice.left] - rating[choice.right]) / RATING_SCALE))
        u = voters.random()
        outcome = "tie" if u < TIE_RATE else ("left" if voters.random() < p_left else "right")
        sampler.note_vote(choice.left, choice.right, outcome)
        if vote % CHECK_EVERY == 0:
            theta = board_order(names, sampler)
            tau = kendall_tau(theta, truth) if theta is not None else 0.0
            if tau < TAU:
                last_below = vote
            elif first == CAP:
                first = vote
    return Outcome(min(CAP, last_below + CHECK_EVERY), first, tau, sampler.fits, time.perf_counter() - started)


def test_active_sampling_needs_at_most_60_percent_of_uniform_votes() -> None:
    results = {policy: [simulate(policy, seed) for seed in range(N_ARENAS)] for policy in POLICIES}
    print(f"\nvotes to reach and hold Kendall tau >= {TAU} ({N_MODELS} models, neighbours 40-60 points apart, "
          f"{TIE_RATE:.0%} ties, checked every {CHECK_EVERY} votes, cap {CAP})")
    print("arena  " + "  ".join(f"{p:>11} (first, refits)" for p in POLICIES) + "   rank/uniform")
    for seed in range(N_ARENAS):
        row = [results[p][seed] for p in POLICIES]
        cells = "  ".join(f"{r.votes:>11} ({r.first:>5}, {r.fits:>6})" for r in row)
        print(f"{seed:>5}  {cells}   {row[2].votes / row[0].votes:>12.2f}")
    means = {p: float(np.mean([r.votes for r in results[p]])) for p in POLICIES}
    medians = {p: float(np.median([r.votes for r in results[p]])) for p in POLICIES}
    capped = {p: sum(r.votes >= CAP for r in results[p]) for p in POLICIES}
    seconds = {p: sum(r.seconds for r in results[p]) for p in POLICIES}
    for p in POLICIES:
        print(f"{p:>11}: mean {means[p]:7.1f} votes, median {medians[p]:6.0f}, never held by the cap: {capped[p]}, "
              f"{seconds[p]:.1f} s for {N_ARENAS} arenas ({seconds[p] / (N_ARENAS * CAP) * 1e3:.3f} ms per vote, "
              f"board fits included)")
    ratio = means["rank"] / means["uniform"]
    median_ratio = medians["rank"] / medians["uniform"]
    wins = sum(r.votes < u.votes for r, u in zip(results["rank"], results["uniform"], strict=True))
    print(f"rank / uniform: {ratio:.3f} of the votes (mean), {median_ratio:.3f} (median); "
          f"rank needed fewer votes in {wins} of {N_ARENAS} arenas")
    assert capped["rank"] == 0
    assert ratio <= 0.60
    assert median_ratio <= 0.60


@pytest.mark.parametrize("contenders", [10, 100])
def test_one_pair_choice_costs_little(benchmark: Any, contenders: int) -> None:
    """One draw and its vote (what a page view and a vote cost the sampler) on a board with votes between
    every pair, refits included at their schedule (every 10 votes); every round printed."""
    names = tuple(f"m{k:03d}" for k in range(contenders))
    sampler = PairSampler({"c": names}, min_exposure=0, rng=random.Random(1))
    rng = random.Random(2)
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            for _ in range(20 if contenders == 10 else 2):
                sampler.note_vote(a, b, rng.choice(["left", "right", "tie"]))

    def draw() -> None:
        c = sampler.choose()
        sampler.note_served(c.matchup, c.left, c.right)
        sampler.note_vote(c.left, c.right, "left")

    fits_before = sampler.fits
    benchmark.pedantic(draw, rounds=200, iterations=1, warmup_rounds=5)
    stats = benchmark.stats.stats
    for k, seconds in enumerate(stats.data):
        print(f"round {k}: {seconds * 1e3:.3f} ms")
    print(f"{contenders} contenders: median {stats.median * 1e3:.3f} ms per draw, max {stats.max * 1e3:.3f} ms, "
          f"{sampler.fits - fits_before} refits in 205 draws")
    # the cost per draw is bounded because the fit is redone on schedule, never per draw
    assert sampler.fits - fits_before <= 205 // sampler.refit_every + 1
