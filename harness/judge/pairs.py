"""Which pairs of outputs a judge is asked about: two outputs of the same challenge and variant from
different targets, each pair in both orders (so that a judge's preference for the first image it sees
cancels out and can be measured)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Side:
    """One output of a pair."""

    attempt_id: int
    sha256: str
    ext: str
    target: str
    model: str


@dataclass(frozen=True)
class Question:
    """One ordered pair to ask about: ``first`` is shown as "Image A", ``second`` as "Image B"."""

    run_id: str
    challenge_id: str
    variant: str
    category: str | None
    kind: str | None
    first: Side
    second: Side

    def swapped(self) -> Question:
        return Question(self.run_id, self.challenge_id, self.variant, self.category, self.kind, self.second,
                        self.first)


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def sample_questions(outputs: pd.DataFrame, pairs: int, seed: int = 0) -> list[Question]:
    """``pairs`` pairs (fewer when the run has fewer), each asked in both orders (``2 · pairs`` questions).

    Every (challenge, variant) with outputs from two targets or more offers each pair of its targets once,
    with one output of each drawn at random; the pairs are then taken round-robin over the challenges (so a
    small sample still covers many), in an order fixed by ``seed``. The same seed on the same run gives the
    same questions: a resumed judge asks what it did not ask yet.
    """
    rng = random.Random(seed)
    offers: list[list[Question]] = []
    for (challenge, variant), group in outputs.groupby(["challenge_id", "variant"], sort=True):
        by_target = {str(t): g for t, g in group.groupby("target", sort=True)}
        names = sorted(by_target)
        here: list[Question] = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ra = by_target[a].iloc[rng.randrange(len(by_target[a]))]
                rb = by_target[b].iloc[rng.randrange(len(by_target[b]))]
                here.append(Question(str(ra["run_id"]), str(challenge), str(variant), _text(ra.get("category")),
                                     _text(ra.get("kind")), _side(ra), _side(rb)))
        rng.shuffle(here)
        if here:
            offers.append(here)
    return _round_robin(offers, pairs, rng)


def _side(row: pd.Series) -> Side:
    return Side(int(row["attempt_id"]), str(row["sha256"]), str(row["ext"]), str(row["target"]), str(row["model"]))


def sample_across(baseline: pd.DataFrame, candidate: pd.DataFrame, pairs: int, seed: int = 0) -> list[Question]:
    """Like :func:`sample_questions`, but every pair is one baseline output against one candidate output of
    the same challenge and variant, paired as ``harness compare`` pairs the sides: by target, or the two
    targets head to head when each side holds one. What the gate's judge check reads."""
    rng = random.Random(seed)
    targets_a, targets_b = sorted(set(baseline["target"])), sorted(set(candidate["target"]))
    matches = ([(targets_a[0], targets_b[0])] if len(targets_a) == 1 and len(targets_b) == 1
               else [(t, t) for t in targets_a if t in set(targets_b)])
    offers: list[list[Question]] = []
    for (challenge, variant), group_a in baseline.groupby(["challenge_id", "variant"], sort=True):
        group_b = candidate[(candidate["challenge_id"] == challenge) & (candidate["variant"] == variant)]
        here: list[Question] = []
        for ta, tb in matches:
            side_a, side_b = group_a[group_a["target"] == ta], group_b[group_b["target"] == tb]
            if side_a.empty or side_b.empty:
                continue
            ra, rb = side_a.iloc[rng.randrange(len(side_a))], side_b.iloc[rng.randrange(len(side_b))]
            here.append(Question(str(rb["run_id"]), str(challenge), str(variant), _text(rb.get("category")),
                                 _text(rb.get("kind")), _side(ra), _side(rb)))
        rng.shuffle(here)
        if here:
            offers.append(here)
    return _round_robin(offers, pairs, rng)


def _round_robin(offers: list[list[Question]], pairs: int, rng: random.Random) -> list[Question]:
    """``pairs`` of the offered pairs, one per challenge in turn (in an order fixed by ``rng``), both orders."""
    rng.shuffle(offers)
    chosen: list[Question] = []
    depth = 0
    while len(chosen) < pairs and any(depth < len(o) for o in offers):
        chosen.extend(o[depth] for o in offers if depth < len(o))
        depth += 1
    return [q for pair in chosen[:pairs] for q in (pair, pair.swapped())]
