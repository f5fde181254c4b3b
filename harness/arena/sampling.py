"""Which two targets (and which challenge) the next voter sees.

The rule, in two phases:

1. **Balanced exposure.** While some target has been shown fewer than ``min_exposure`` times, the next
   pair is the least-shown target against its least-shown partner (fewest meetings between the two
   breaking ties, then chance). Every target gets into the ratings quickly, whatever the run sizes.
2. **Active sampling.** Afterwards a pair of targets (a, b) is drawn with probability proportional to

       w(a, b) = p (1 - p) / (n + 1),   p = (wins of a over b + 1) / (votes between them + 2)

   where ties and "both bad" count half a win each (the FastChat/LMArena convention) and ``n`` is the
   larger of the votes recorded for the pair and the times it was served (so pairs handed out but not yet
   voted on count already). ``p (1 - p)`` is the variance of one Bernoulli outcome, largest when the two
   are evenly matched; dividing by ``n + 1`` prefers pairs with few observations. Both favour the votes
   that shrink the rating intervals fastest; no pair's weight is ever zero.

Within the chosen pair of targets, the challenge is the one this pair has been shown on least (chance
breaks ties), and the left/right order is a fair coin flip.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

TargetPair = tuple[str, str]
"""Two target names in sorted order."""

SCORES = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}
"""Points the left target earns per outcome."""


def ordered(a: str, b: str) -> TargetPair:
    return (a, b) if a <= b else (b, a)


def win_probability(wins: float, n: float) -> float:
    """Laplace-smoothed chance that a beats b after ``wins`` points in ``n`` votes."""
    return (wins + 1.0) / (n + 2.0)


def active_weight(wins: float, votes: float, served: float = 0.0) -> float:
    """Sampling weight of a pair: outcome variance over observations (see the module docstring)."""
    p = win_probability(wins, votes)
    return p * (1.0 - p) / (max(votes, served) + 1.0)


@dataclass(frozen=True, slots=True)
class Choice:
    """The next pair: a matchup key and the targets for the left and right side."""

    matchup: str
    left: str
    right: str


class PairSampler:
    """Chooses pairs and keeps the counts the choice depends on (shows, servings, vote points).

    Not thread-safe: the arena calls it from its single store thread.
    """

    def __init__(self, matchups: Mapping[str, Sequence[str]], *, min_exposure: int, rng: random.Random) -> None:
        self.min_exposure = min_exposure
        self._rng = rng
        self._pair_matchups: dict[TargetPair, list[str]] = {}
        for key, targets in sorted(matchups.items()):
            names = sorted(set(targets))
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    self._pair_matchups.setdefault((a, b), []).append(key)
        if not self._pair_matchups:
            raise ValueError("no matchup has two targets")
        self._partners: dict[str, list[str]] = {}
        for a, b in self._pair_matchups:
            self._partners.setdefault(a, []).append(b)
            self._partners.setdefault(b, []).append(a)
        self.shown: Counter[str] = Counter({t: 0 for t in self._partners})
        self.served: Counter[TargetPair] = Counter()
        self.served_on: Counter[tuple[TargetPair, str]] = Counter()
        self.votes: Counter[TargetPair] = Counter()
        self.points: defaultdict[TargetPair, float] = defaultdict(float)
        """Points of the first (alphabetically smaller) target of each pair."""

    @property
    def pairs(self) -> tuple[TargetPair, ...]:
        return tuple(self._pair_matchups)

    def in_warmup(self) -> bool:
        return min(self.shown.values()) < self.min_exposure

    def weights(self) -> dict[TargetPair, float]:
        """The active-phase weight of every pair."""
        return {p: active_weight(self.points[p], self.votes[p], self.served[p]) for p in self._pair_matchups}

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

    def choose_among(self, allowed: Mapping[str, Collection[str]] | None,
                     reuse: Mapping[str, Mapping[str, int]] | None = None) -> Choice | None:
        """The next pair, using only the targets ``allowed`` in each matchup (all when None); None when no
        matchup has two allowed targets. Balance and weights are those of :meth:`choose`. ``reuse`` (matchup
        -> target -> how often its least-served output was served) makes the challenge the one whose two
        outputs were served least, before the pair's own count: fresh outputs are what keeps a voter with
        many identities from recognising sides."""
        pair_keys: Mapping[TargetPair, Sequence[str]] = self._pair_matchups
        if allowed is not None:
            pair_keys = {p: kept for p, keys in self._pair_matchups.items()
                         if (kept := [k for k in keys if p[0] in allowed.get(k, ()) and p[1] in allowed.get(k, ())])}
            if not pair_keys:
                return None
        pair = self._balanced_pair(pair_keys) if self.in_warmup() else self._active_pair(pair_keys)
        keys = pair_keys[pair]
        order = {k: float(self.served_on[(pair, k)]) for k in keys}
        if reuse is not None:
            scale = 1.0 + max(order.values())
            order = {k: (reuse[k][pair[0]] + reuse[k][pair[1]]) * scale + n for k, n in order.items()}
        matchup = self._least(keys, order)
        left, right = pair if self._rng.random() < 0.5 else (pair[1], pair[0])
        return Choice(matchup, left, right)

    def note_served(self, matchup: str, left: str, right: str, count: int = 1) -> None:
        pair = ordered(left, right)
        if pair not in self._pair_matchups:
            return
        self.shown[left] += count
        self.shown[right] += count
        self.served[pair] += count
        self.served_on[(pair, matchup)] += count

    def note_vote(self, left: str, right: str, outcome: str, count: int = 1) -> None:
        """Count a vote (any source) between two targets of the arena; others are ignored."""
        pair = ordered(left, right)
        if pair not in self._pair_matchups or outcome not in SCORES:
            return
        left_points = SCORES[outcome]
        self.votes[pair] += count
        self.points[pair] += count * (left_points if pair[0] == left else 1.0 - left_points)
