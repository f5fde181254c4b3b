"""Which two contenders (and which challenge) the next voter sees.

**Contenders.** By default the arena pairs *models*: two targets serving the same model (say
``gemini-2.5-flash-image@openrouter`` and ``@google``) never meet, because the by-model board would throw
that vote away. ``pair_by="target"`` pairs targets instead, for studies of provider quality; two targets of
one model then do meet. Within a chosen pair of models, each side is the model's least-shown target in the
chosen challenge (chance breaks ties), so every provider of a model gets its share of the model's votes.

The rule, in two phases:

1. **Balanced exposure.** While some contender has been shown fewer than ``min_exposure`` times, the next
   pair is the least-shown contender against its least-shown partner (fewest meetings between the two
   breaking ties, then chance). Every contender gets into the ratings quickly, whatever the run sizes.
2. **Active sampling.** Afterwards a pair (a, b) is drawn at random with probability proportional to its
   weight. The default policy, ``rank``, spends the next vote where it is expected to fix the most of the
   board's order. From a Bradley–Terry fit of every vote so far (log-strengths θ and their covariance, the
   inverse Fisher information), the chance that the board orders two contenders wrongly is
   ``Φ(-|θa - θb| / sd(θa - θb))``; summed over all pairs it is the expected number of misordered pairs,
   which is what Kendall's τ between the board and the true order counts. One more vote on (a, b) adds
   ``p (1 - p)`` (``p`` the fitted chance that a beats b) to the Fisher information along ``e_a - e_b``,
   which shrinks the interval of (a, b) and, through the covariance, of every pair sharing information with
   it. The *gain* of (a, b) is the expected drop of that sum after the vote: for each pair t whose
   difference has fitted gap ``g``, standard deviation ``s`` and variance reduced by ``v`` (exact, by the
   Sherman–Morrison formula), the expected chance of a wrong order after the vote is ``2 T(g/s, √(s²/v - 1))``
   (Owen's T: the next estimate of the gap moves by a normal of variance ``v`` before its sign is judged
   again), against ``Φ(-g/s)`` now. This is the knowledge gradient of Frazier, Powell & Dayanik (2008, "A
   knowledge-gradient policy for sequential information collection", SIAM J. Control Optim. 47(5)) with the
   number of misordered pairs as the loss; it sends votes to pairs whose intervals still overlap — mostly
   neighbours in the ranking, including pairs whose fitted gap is near zero — and leaves alone pairs whose
   order is settled. The weight is

       w(a, b) = r(a, b)³ × (votes + 1) / (max(votes, served) + 1)

   where the *rank relevance* ``r`` is the pair's gain relative to the best pair's, floored at
   :data:`MIN_RELEVANCE` (a contender with no vote yet has relevance 1 with everyone), and the last factor
   counts pairs handed out but not yet voted on as observed already (many pages open at once do not all get
   the same pair). The cube makes the draw nearly greedy
   while keeping it random: on the bench's simulated arenas (``tests/bench/test_bench_active_sampling.py``)
   the first and second powers needed more votes, and the gain did better than the earlier relevance
   ``2 Φ(-|θa - θb| / sd)`` times outcome variance over observations, above all in the median arena.
   Chiang et al. (2024, "Chatbot Arena", arXiv:2403.04132, §5) sample pairs by how much a vote shrinks
   their own interval; the gain instead counts only the intervals that decide the order. The
   ``uncertainty`` policy is ``p (1 - p) / (n + 1)`` alone (the arena's earlier rule; ``p`` Laplace-smoothed
   from the pair's votes, ties and "both bad" half a win as in FastChat/LMArena, ``n`` the larger of votes
   and servings), which ``rank`` also uses before the first vote; ``uniform`` draws every pair equally (the
   bench's baseline).

The fit and the gains are cheap but never made per request: they are redone on the first draw after
``refit_every`` new votes (a few Newton steps on the pair counts, warm-started; a fixed ridge prior of one
drawn game per contender keeps it finite). With many contenders the gains are computed among the pairs
whose order is least certain only (twice as many as there are contenders, at least 64: every pair up to 11
contenders); those carry nearly all of the expected misorderings, and every other pair gets the floor. The
cost stays near that of the fit (100 contenders: a few ms per refit instead of a matrix over all 4,950
pairs). No pair's weight is ever zero, and the draw is random, so a voter cannot predict the next pair, let
alone its sides.

Within the chosen pair, the challenge is the one this pair has been shown on least (chance breaks ties),
and the left/right order is a fair coin flip.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit, ndtr, owens_t

TargetPair = tuple[str, str]
"""Two contender names (targets, or models when pairing by model) in sorted order."""
PairBy = Literal["model", "target"]
PAIR_BY: tuple[PairBy, ...] = ("model", "target")
Policy = Literal["rank", "uncertainty", "uniform"]
POLICIES: tuple[Policy, ...] = ("rank", "uncertainty", "uniform")

SCORES = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}
"""Points the left target earns per outcome."""
RELEVANCE_POWER = 3
"""Exponent of the rank relevance in the ``rank`` policy's weight."""
GAIN_PAIRS_PER_CONTENDER = 2
GAIN_MIN_PAIRS = 64
"""The gains are computed among the ``max(GAIN_MIN_PAIRS, GAIN_PAIRS_PER_CONTENDER × contenders)`` pairs whose
order is least certain (all pairs up to 11 contenders); every other pair is settled and gets the floor."""
MIN_RELEVANCE = 0.01
"""Floor of a pair's rank relevance, so that no pair is ever out of the draw."""
DEFAULT_REFIT_EVERY = 10
"""New votes after which the sampler's Bradley–Terry fit is redone (at the next draw)."""
PRIOR_GAMES = 1.0
"""Virtual drawn games per contender against a fixed reference in the sampler's fit (keeps it finite)."""

Array = np.ndarray[Any, np.dtype[np.float64]]


def ordered(a: str, b: str) -> TargetPair:
    return (a, b) if a <= b else (b, a)


def win_probability(wins: float, n: float) -> float:
    """Laplace-smoothed chance that a beats b after ``wins`` points in ``n`` votes."""
    return (wins + 1.0) / (n + 2.0)


def active_weight(wins: float, votes: float, served: float = 0.0) -> float:
    """Sampling weight of a pair before rank relevance: outcome variance over observations."""
    p = win_probability(wins, votes)
    return p * (1.0 - p) / (max(votes, served) + 1.0)


def rank_relevance(gap: float, sd: float) -> float:
    """``2 Φ(-|gap| / sd)``: 1 when the fitted order of two contenders is a coin flip, towards 0 when it is
    settled; never below :data:`MIN_RELEVANCE`. ``gap`` and ``sd`` in the same unit (log-strength)."""
    if not sd > 0:
        return 1.0 if gap == 0 else MIN_RELEVANCE
    return max(MIN_RELEVANCE, 2.0 * float(ndtr(-abs(gap) / sd)))


@dataclass(frozen=True, slots=True)
class StrengthFit:
    """Log-strengths ``theta`` of ``names`` and their covariance ``cov`` (inverse Fisher information)."""

    names: tuple[str, ...]
    theta: Array
    cov: Array

    def relevance(self, a: str, b: str) -> float:
        i, j = self.names.index(a), self.names.index(b)
        var = self.cov[i, i] + self.cov[j, j] - 2.0 * self.cov[i, j]
        return rank_relevance(float(self.theta[i] - self.theta[j]), math.sqrt(max(var, 0.0)))

    def relevances(self, pairs: Sequence[TargetPair]) -> dict[TargetPair, float]:
        """:meth:`relevance` of many pairs at once (vectorised: one refit serves every later draw)."""
        index = {name: k for k, name in enumerate(self.names)}
        i = np.array([index[a] for a, _ in pairs], dtype=np.intp)
        j = np.array([index[b] for _, b in pairs], dtype=np.intp)
        diag = np.diag(self.cov)
        sd = np.sqrt(np.maximum(diag[i] + diag[j] - 2.0 * self.cov[i, j], 0.0))
        gap = np.abs(self.theta[i] - self.theta[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(sd > 0, 2.0 * ndtr(-gap / sd), np.where(gap == 0, 1.0, MIN_RELEVANCE))
        return dict(zip(pairs, np.maximum(r, MIN_RELEVANCE).tolist(), strict=True))



def _pair_columns(fit: StrengthFit, pairs: Sequence[TargetPair]) -> tuple[np.ndarray[Any, np.dtype[np.intp]], ...]:
    index = {name: k for k, name in enumerate(fit.names)}
    return (np.array([index[a] for a, _ in pairs], dtype=np.intp),
            np.array([index[b] for _, b in pairs], dtype=np.intp))


def ordering_gains(fit: StrengthFit, pairs: Sequence[TargetPair], *, among: int | None = None) -> Array:
    """Expected drop in the number of misordered pairs after one more vote on each of ``pairs`` (the
    knowledge gradient described in the module docstring). With ``among``, only the ``among`` pairs whose
    order is least certain are scored and counted, the rest get 0 (their order is settled: a vote on them
    fixes next to nothing). Same order as ``pairs``; never negative."""
    i, j = _pair_columns(fit, pairs)
    cov = fit.cov
    gap = fit.theta[i] - fit.theta[j]
    var = np.maximum(cov[i, i] + cov[j, j] - 2.0 * cov[i, j], 1e-300)
    h = np.abs(gap) / np.sqrt(var)
    kept = np.arange(len(pairs))
    if among is not None and among < len(pairs):
        kept = np.argpartition(h, among)[:among]
    i, j, h, var, gap = i[kept], j[kept], h[kept], var[kept], gap[kept]
    rows = cov[i] - cov[j]
    shared = rows[:, i] - rows[:, j]  # cov(θ diff of the row's pair, θ diff of the column's pair)
    p = expit(gap)
    info = p * (1.0 - p)
    drop = shared ** 2 * (info / (1.0 + info * var))  # variance a vote on the column's pair removes from the row's
    rho2 = np.clip(drop / var[:, None], 1e-300, 1.0 - 1e-12)
    after = 2.0 * owens_t(h[:, None], np.sqrt((1.0 - rho2) / rho2))
    gains = np.zeros(len(pairs))
    gains[kept] = np.maximum((ndtr(-h)[:, None] - after).sum(axis=0), 0.0)
    return gains


def fit_strengths(names: Sequence[str], first: Sequence[int], second: Sequence[int], points: Sequence[float],
                  votes: Sequence[float], *, start: Array | None = None, steps: int = 50) -> StrengthFit:
    """Bradley–Terry log-strengths by Newton's method, with :data:`PRIOR_GAMES` drawn games per contender
    against a reference at 0 (so the fit exists for any counts, disconnected ones included). ``points`` are
    the first contender's points (ties ½) out of ``votes`` per pair."""
    m = len(names)
    f, s = np.asarray(first, dtype=np.intp), np.asarray(second, dtype=np.intp)
    y, n = np.asarray(points, dtype=np.float64), np.asarray(votes, dtype=np.float64)
    theta = np.zeros(m) if start is None else start.copy()
    hess = np.eye(m)
    for _ in range(steps):
        p = expit(theta[f] - theta[s])
        g = np.bincount(f, y - n * p, minlength=m) - np.bincount(s, y - n * p, minlength=m)
        g = g + PRIOR_GAMES * (0.5 - expit(theta))
        w = n * p * (1.0 - p)
        hess = np.diag(np.bincount(f, w, minlength=m) + np.bincount(s, w, minlength=m)
                       + PRIOR_GAMES * expit(theta) * (1.0 - expit(theta)))
        np.add.at(hess, (f, s), -w)
        np.add.at(hess, (s, f), -w)
        step = np.linalg.solve(hess, g)
        theta = theta + step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return StrengthFit(tuple(names), theta, np.asarray(np.linalg.inv(hess), dtype=np.float64))


@dataclass(frozen=True, slots=True)
class Choice:
    """The next pair: a matchup key and the targets for the left and right side."""

    matchup: str
    left: str
    right: str


class PairSampler:
    """Chooses pairs and keeps the counts the choice depends on (shows, servings, vote points).

    ``matchups`` maps a matchup key to its targets; ``unit_of`` maps a target to the contender it counts
    for (its model, when pairing by model; None: every target is its own contender). Counters (``shown``,
    ``served``, ``votes``, ``points``) are kept per contender. Not thread-safe: the arena calls it from its
    single store thread.
    """

    def __init__(self, matchups: Mapping[str, Sequence[str]], *, min_exposure: int, rng: random.Random,
                 unit_of: Mapping[str, str] | None = None, policy: Policy = "rank",
                 refit_every: int = DEFAULT_REFIT_EVERY) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown sampling policy {policy!r}; use one of {', '.join(POLICIES)}")
        self.min_exposure = min_exposure
        self.policy = policy
        self.refit_every = max(1, refit_every)
        self._rng = rng
        self._unit_of = {t: (unit_of or {}).get(t, t) for ts in matchups.values() for t in ts}
        self._members: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._pair_matchups: dict[TargetPair, list[str]] = {}
        self._matchup_units: dict[str, set[str]] = {}
        for key, targets in sorted(matchups.items()):
            for t in sorted(set(targets)):
                self._members[(key, self._unit_of[t])].append(t)
            units = sorted({self._unit_of[t] for t in targets})
            self._matchup_units[key] = set(units)
            for i, a in enumerate(units):
                for b in units[i + 1:]:
                    self._pair_matchups.setdefault((a, b), []).append(key)
        if not self._pair_matchups:
            raise ValueError("no matchup has two contenders")
        self._partners: dict[str, list[str]] = {}
        for a, b in self._pair_matchups:
            self._partners.setdefault(a, []).append(b)
            self._partners.setdefault(b, []).append(a)
        self._units = tuple(sorted(self._partners))
        self.shown: Counter[str] = Counter({t: 0 for t in self._partners})
        self.target_shown: Counter[str] = Counter()
        self.served: Counter[TargetPair] = Counter()
        self.served_on: Counter[tuple[TargetPair, str]] = Counter()
        self.votes: Counter[TargetPair] = Counter()
        self.points: defaultdict[TargetPair, float] = defaultdict(float)
        """Points of the first (alphabetically smaller) contender of each pair."""
        self._fit: StrengthFit | None = None
        self._relevance: dict[TargetPair, float] = {}
        self._stale = 0
        self.fits = 0
        """How many times the sampler refitted its ratings (a measure of its cost)."""

    @property
    def pairs(self) -> tuple[TargetPair, ...]:
        return tuple(self._pair_matchups)

    def unit(self, target: str) -> str:
        """The contender a target counts for."""
        return self._unit_of.get(target, target)

    def in_warmup(self) -> bool:
        return min(self.shown.values()) < self.min_exposure

    def _refit(self) -> StrengthFit:
        index = {u: i for i, u in enumerate(self._units)}
        voted = [p for p, n in self.votes.items() if n > 0]
        start = self._fit.theta if self._fit is not None else None
        self._fit = fit_strengths(self._units, [index[a] for a, _ in voted], [index[b] for _, b in voted],
                                  [self.points[p] for p in voted], [float(self.votes[p]) for p in voted],
                                  start=start)
        if self.policy == "rank":
            pairs = list(self._pair_matchups)
            among = max(GAIN_MIN_PAIRS, GAIN_PAIRS_PER_CONTENDER * len(self._units))
            gains = ordering_gains(self._fit, pairs, among=among)
            best = float(gains.max())
            relevance = np.maximum(gains / best, MIN_RELEVANCE) if best > 0 else np.ones(len(pairs))
            rated = {u for p in voted for u in p}
            unrated = np.array([a not in rated or b not in rated for a, b in pairs])
            relevance[unrated] = 1.0  # the fit knows only its prior about them: nothing says their order is settled
            self._relevance = dict(zip(pairs, (relevance ** RELEVANCE_POWER).tolist(), strict=True))
        self._stale = 0
        self.fits += 1
        return self._fit

    def strengths(self) -> StrengthFit | None:
        """The current fit (refitted first when ``refit_every`` votes arrived since); None before any vote."""
        if not self.votes:
            return None
        if self._fit is None or self._stale >= self.refit_every:
            return self._refit()
        return self._fit

    def weights(self) -> dict[TargetPair, float]:
        """The active-phase weight of every pair under the sampler's policy (see the module docstring)."""
        if self.policy == "uniform":
            return dict.fromkeys(self._pair_matchups, 1.0)
        if self.policy == "uncertainty" or self.strengths() is None:
            return {p: active_weight(self.points[p], self.votes[p], self.served[p]) for p in self._pair_matchups}
        relevance, votes, served = self._relevance, self.votes, self.served
        return {p: relevance[p] * (votes[p] + 1.0) / (max(votes[p], served[p]) + 1.0) for p in self._pair_matchups}

    def _least(self, items: Iterable[str], key: Mapping[str, float]) -> str:
        pool = list(items)
        best = min(key[i] for i in pool)
        return self._rng.choice([i for i in pool if key[i] == best])

    def _balanced_pair(self, pair_keys: Mapping[TargetPair, Sequence[str]]) -> TargetPair:
        partners_of: dict[str, list[str]] = {}
        for a, b in pair_keys:
            partners_of.setdefault(a, []).append(b)
            partners_of.setdefault(b, []).append(a)
        first = self._least(partners_of, {t: float(self.shown[t]) for t in partners_of})
        partners = partners_of[first]
        # shows dominate; meetings with ``first`` only break ties (a meeting count is < 1 after scaling).
        total = 1.0 + max(self.served[ordered(first, b)] for b in partners)
        key = {b: self.shown[b] + self.served[ordered(first, b)] / total for b in partners}
        return ordered(first, self._least(partners, key))

    def _active_pair(self, pair_keys: Mapping[TargetPair, Sequence[str]]) -> TargetPair:
        weights = self.weights()
        pairs = list(pair_keys)
        return self._rng.choices(pairs, weights=[weights[p] for p in pairs], k=1)[0]

    def choose(self) -> Choice:
        """The next pair to serve (does not count it as served: call :meth:`note_served`)."""
        choice = self.choose_among(None)
        assert choice is not None  # every pair is allowed
        return choice

    def _allowed_members(self, key: str, unit: str, allowed: Mapping[str, Collection[str]] | None) -> list[str]:
        members = self._members.get((key, unit), [])
        if allowed is None:
            return members
        kept = allowed.get(key, ())
        return [t for t in members if t in kept]

    def choose_among(self, allowed: Mapping[str, Collection[str]] | None,
                     reuse: Mapping[str, Mapping[str, int]] | None = None) -> Choice | None:
        """The next pair, using only the targets ``allowed`` in each matchup (all when None); None when no
        matchup has two allowed contenders. Balance and weights are those of :meth:`choose`. ``reuse``
        (matchup -> target -> how often its least-served output was served) makes the challenge the one
        whose two outputs were served least, before the pair's own count: fresh outputs are what keeps a
        voter with many identities from recognising sides."""
        pair_keys: Mapping[TargetPair, Sequence[str]] = self._pair_matchups
        if allowed is not None:
            present = {k: {self._unit_of[t] for t in allowed.get(k, ()) if t in self._unit_of}
                       for k in self._matchup_units}
            if any(present[k] != units for k, units in self._matchup_units.items()):
                pair_keys = {p: kept for p, keys in self._pair_matchups.items()
                             if (kept := [k for k in keys if p[0] in present[k] and p[1] in present[k]])}
            if not pair_keys:
                return None
        pair = self._balanced_pair(pair_keys) if self.in_warmup() else self._active_pair(pair_keys)
        keys = pair_keys[pair]
        order = {k: float(self.served_on[(pair, k)]) for k in keys}
        if reuse is not None:
            scale = 1.0 + max(order.values())
            order = {k: (min(reuse[k][t] for t in self._allowed_members(k, pair[0], allowed))
                         + min(reuse[k][t] for t in self._allowed_members(k, pair[1], allowed))) * scale + n
                     for k, n in order.items()}
        matchup = self._least(keys, order)
        sides = [self._least(members, {t: float(self.target_shown[t]) for t in members})
                 for members in (self._allowed_members(matchup, u, allowed) for u in pair)]
        left, right = sides if self._rng.random() < 0.5 else (sides[1], sides[0])
        return Choice(matchup, left, right)

    def note_served(self, matchup: str, left: str, right: str, count: int = 1) -> None:
        pair = ordered(self.unit(left), self.unit(right))
        if pair not in self._pair_matchups:
            return
        self.shown[pair[0]] += count
        self.shown[pair[1]] += count
        self.target_shown[left] += count
        self.target_shown[right] += count
        self.served[pair] += count
        self.served_on[(pair, matchup)] += count

    def note_vote(self, left: str, right: str, outcome: str, count: int = 1) -> None:
        """Count a vote (any source) between two contenders of the arena; others (a target outside the
        arena, two targets of one model when pairing by model) are ignored."""
        lu, ru = self.unit(left), self.unit(right)
        pair = ordered(lu, ru)
        if pair not in self._pair_matchups or outcome not in SCORES:
            return
        left_points = SCORES[outcome]
        self.votes[pair] += count
        self.points[pair] += count * (left_points if pair[0] == lu else 1.0 - left_points)
        self._stale += count
