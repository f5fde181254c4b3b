"""Views of the votes beyond the main board: per-group boards, "best for", win-rate matrices, predicted win
rates, head-to-head matchups per challenge, position bias and voter agreement.

Conventions: a tie (``tie`` or ``tie (bothbad)``) counts ½ in every win rate unless a function says
otherwise; percentages are 0–100; matrices are indexed ``[row model, column model]`` from the row model's
point of view, with NaN where the two never met.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.ratings.battles import model_codes, winner_codes
from harness.ratings.bradley_terry import RATING_SCALE, RatingError
from harness.ratings.leaderboard import Leaderboard, RatingOptions, leaderboard
from harness.stats.intervals import Interval, wilson

GroupColumn = Literal["category", "kind", "challenge"]


def leaderboards_by(battles: pd.DataFrame, column: GroupColumn = "category",
                    options: RatingOptions | None = None) -> dict[str, Leaderboard]:
    """One board per value of ``column`` (``category``, ``kind`` or ``challenge``), fitted on that group's
    votes alone; votes without a value are left out. Keys are sorted. Anchors apply only to groups where
    the anchor model has votes."""
    if column not in battles.columns:
        raise RatingError(f"votes have no {column!r} column")
    options = options or RatingOptions()
    boards: dict[str, Leaderboard] = {}
    values = battles[column]
    for value in sorted({str(v) for v in values.dropna().unique()}):
        group = battles[values.astype(object) == value].reset_index(drop=True)
        group_options = options
        if options.anchor is not None:
            present = set(group["model_a"]) | set(group["model_b"])
            if options.anchor[0] not in present:
                group_options = _without_anchor(options)
        boards[value] = leaderboard(group, group_options)
    return boards


def _without_anchor(options: RatingOptions) -> RatingOptions:
    return dataclasses.replace(options, anchor=None)


@dataclass(frozen=True)
class BestFor:
    """How one model does in one group: rank (by rating; 1 = top) and rank spread, rating, win rate (ties
    ½), votes in that group and how many models the group rates."""

    group: str
    rank: int
    rank_best: int
    rank_worst: int
    rating: float
    win_rate: float
    votes: int
    n_models: int
    provisional: bool


def best_for(boards: Mapping[str, Leaderboard], model: str) -> list[BestFor]:
    """The groups where ``model`` does best, best first (by rank, then win rate) — the "best for" list."""
    out = []
    for group, board in boards.items():
        for rank, row in enumerate(board.rows, start=1):
            if row.model == model:
                out.append(BestFor(group, rank, row.rank_best, row.rank_worst, row.rating, row.win_rate,
                                   row.votes, len(board.rows), row.provisional))
    return sorted(out, key=lambda b: (b.rank, -b.win_rate, b.group))


def _oriented(battles: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any],
                                                np.ndarray[Any, Any]]:
    """Models, codes of both sides and the score of ``model_a`` (1, 0, ½) for votes between different models."""
    names, a, b = model_codes(battles)
    score = np.array([1.0, 0.0, 0.5, 0.5])[winner_codes(battles)]
    keep = a != b
    return names, a[keep], b[keep], score[keep]


def battle_count_matrix(battles: pd.DataFrame) -> pd.DataFrame:
    """Votes between each pair of models, sides pooled (symmetric; diagonal 0)."""
    names, a, b, _ = _oriented(battles)
    m = len(names)
    counts = np.bincount(a * m + b, minlength=m * m).reshape(m, m)
    counts = counts + counts.T
    return pd.DataFrame(counts, index=pd.Index(names, name="model"), columns=pd.Index(names, name="opponent"))


def win_rate_matrix(battles: pd.DataFrame, ties: Literal["half", "exclude"] = "half") -> pd.DataFrame:
    """Observed share of the row model's score against the column model, sides pooled.

    ``half``: ties score ½ (the default everywhere here). ``exclude``: decisive votes only (FastChat's
    heatmap). NaN where the pair never met (or had only ties, with ``exclude``).
    """
    names, a, b, score = _oriented(battles)
    if ties == "exclude":
        keep = score != 0.5
        a, b, score = a[keep], b[keep], score[keep]
    elif ties != "half":
        raise RatingError(f"ties must be 'half' or 'exclude', not {ties!r}")
    m = len(names)
    won = np.bincount(a * m + b, score, minlength=m * m).reshape(m, m)
    lost = np.bincount(a * m + b, 1.0 - score, minlength=m * m).reshape(m, m)
    points = won + lost.T
    games = np.bincount(a * m + b, minlength=m * m).reshape(m, m)
    games = games + games.T
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(games > 0, points / games, np.nan)
    return pd.DataFrame(share, index=pd.Index(names, name="model"), columns=pd.Index(names, name="opponent"))


def average_win_rate(matrix: pd.DataFrame) -> pd.Series:
    """Mean of each row of a win-rate matrix over the opponents met (FastChat's "average win rate"),
    best first."""
    return matrix.mean(axis=1, skipna=True).sort_values(ascending=False).rename("average_win_rate")


def predicted_win_rate(ratings: Mapping[str, float] | pd.Series) -> pd.DataFrame:
    """P(row beats column) implied by ratings (Elo points): ``1 / (1 + 10^((R_col − R_row)/400))``;
    diagonal NaN. Under ``half`` ties this is the expected score, directly comparable with
    :func:`win_rate_matrix`."""
    series = pd.Series(ratings, dtype=float)
    r = series.to_numpy()
    p = 1.0 / (1.0 + np.exp((r[None, :] - r[:, None]) / RATING_SCALE))
    np.fill_diagonal(p, np.nan)
    return pd.DataFrame(p, index=pd.Index(series.index, name="model"),
                        columns=pd.Index(series.index, name="opponent"))


MATCHUP_COLUMNS = ("model", "opponent", "group", "votes", "wins", "losses", "ties", "win_pct", "loss_pct",
                   "tie_pct")


def matchups(battles: pd.DataFrame, model: str | None = None, by: GroupColumn = "challenge") -> pd.DataFrame:
    """Head-to-head records per ``by`` group (a challenge by default): one row per (model, opponent, group)
    from the model's point of view — wins, losses, ties (both-bad included) and their percentages of the
    votes — most-voted first. Every vote appears twice, once from each side; ``model`` keeps one model's
    rows (the "Top Matchups" of a model page). Votes without a ``by`` value are left out."""
    if by not in battles.columns:
        raise RatingError(f"votes have no {by!r} column")
    frame = battles[battles[by].notna() & (battles["model_a"] != battles["model_b"])]
    if frame.empty:
        return pd.DataFrame(columns=list(MATCHUP_COLUMNS))
    w = winner_codes(frame)
    a_win = (w == 0).astype(np.int64)
    b_win = (w == 1).astype(np.int64)
    tie = (w >= 2).astype(np.int64)
    group = frame[by].astype(str).to_numpy()
    sides = pd.DataFrame({
        "model": np.concatenate([frame["model_a"].to_numpy(dtype=object), frame["model_b"].to_numpy(dtype=object)]),
        "opponent": np.concatenate([frame["model_b"].to_numpy(dtype=object),
                                    frame["model_a"].to_numpy(dtype=object)]),
        "group": np.concatenate([group, group]),
        "wins": np.concatenate([a_win, b_win]),
        "losses": np.concatenate([b_win, a_win]),
        "ties": np.concatenate([tie, tie]),
    })
    if model is not None:
        sides = sides[sides["model"] == model]
    out = sides.groupby(["model", "opponent", "group"], sort=True, as_index=False)[["wins", "losses", "ties"]].sum()
    out["votes"] = out["wins"] + out["losses"] + out["ties"]
    for column in ("wins", "losses", "ties"):
        out[{"wins": "win_pct", "losses": "loss_pct", "ties": "tie_pct"}[column]] = 100.0 * out[column] / out["votes"]
    out = out.sort_values(["model", "votes", "opponent", "group"], ascending=[True, False, True, True],
                          kind="stable")
    return out[list(MATCHUP_COLUMNS)].reset_index(drop=True)


@dataclass(frozen=True)
class PositionBias:
    """Left/right bias: ``left_share`` is the share of decisive votes won by the left output (``model_a``),
    0.5 when voters ignore the side, with a Wilson interval and an exact two-sided binomial test of 0.5.
    Sides are shown at random, so a share away from 0.5 is the voters' bias, not the models'."""

    votes: int
    left_wins: int
    right_wins: int
    ties: int
    left_share: Interval | None
    p_value: float | None


def position_bias(battles: pd.DataFrame, confidence: float = 0.95) -> PositionBias:
    """Position bias over all votes (``model_a`` is the left output)."""
    w = winner_codes(battles)
    left, right = int((w == 0).sum()), int((w == 1).sum())
    decisive = left + right
    if decisive == 0:
        return PositionBias(int(w.size), left, right, int((w >= 2).sum()), None, None)
    share = wilson(left, decisive, confidence)
    p = float(sps.binomtest(left, decisive, 0.5).pvalue)
    return PositionBias(int(w.size), left, right, int((w >= 2).sum()), share, p)


VOTER_COLUMNS = ("voter", "votes", "decisive", "tie_rate", "left_share", "agree_with_ratings",
                 "expected_agreement", "agreement_z", "peer_votes", "agree_with_peers")


def voter_agreement(battles: pd.DataFrame, ratings: Mapping[str, float]) -> pd.DataFrame:
    """Per-voter statistics, to spot careless or adversarial voters.

    * ``tie_rate``: share of the voter's votes that were ties or both-bad; ``left_share``: share of their
      decisive votes won by the left side (position bias of this voter).
    * ``agree_with_ratings``: share of their decisive votes (between differently rated models) that went
      to the higher-rated model; ``expected_agreement``: the share an honest voter would reach on the same
      pairs if the ratings were true (mean of ``max(p, 1 − p)``); ``agreement_z``: the standardised
      difference (observed − expected) / sd — strongly negative for voters who vote against the consensus
      or at random.
    * ``agree_with_peers``: over decisive votes of other voters on the same challenge and pair of models,
      the share that picked the same winner (``peer_votes`` is their number; NaN when none).

    Votes without a voter id are left out. Sorted by ``agreement_z`` (most suspicious first).
    """
    frame = battles[battles["voter"].notna() & (battles["model_a"] != battles["model_b"])].reset_index(drop=True)
    if frame.empty:
        return pd.DataFrame(columns=list(VOTER_COLUMNS))
    w = winner_codes(frame)
    decisive = w < 2
    r = pd.Series(ratings, dtype=float)
    ra = frame["model_a"].map(r).to_numpy(dtype=float)
    rb = frame["model_b"].map(r).to_numpy(dtype=float)
    if np.isnan(ra).any() or np.isnan(rb).any():
        missing = sorted(set(frame["model_a"][np.isnan(ra)]) | set(frame["model_b"][np.isnan(rb)]))
        raise RatingError(f"no rating for {', '.join(missing)}")
    p_a = 1.0 / (1.0 + np.exp((rb - ra) / RATING_SCALE))
    rated = decisive & (ra != rb)
    favourite_a = ra > rb
    agrees = rated & (((w == 0) & favourite_a) | ((w == 1) & ~favourite_a))
    p_fav = np.maximum(p_a, 1.0 - p_a)
    peers_same, peers_all = _peer_counts(frame, w)
    table = pd.DataFrame({
        "voter": frame["voter"].astype(str).to_numpy(),
        "votes": 1, "decisive": decisive.astype(int), "ties": (~decisive).astype(int),
        "left": (w == 0).astype(int), "rated": rated.astype(int), "agrees": agrees.astype(int),
        "expected": np.where(rated, p_fav, 0.0), "variance": np.where(rated, p_fav * (1 - p_fav), 0.0),
        "peer_same": peers_same, "peer_all": peers_all,
    })
    g = table.groupby("voter", sort=True).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame({
            "voter": g.index.to_numpy(dtype=object),
            "votes": g["votes"].to_numpy(),
            "decisive": g["decisive"].to_numpy(),
            "tie_rate": (g["ties"] / g["votes"]).to_numpy(),
            "left_share": np.where(g["decisive"] > 0, g["left"] / g["decisive"], np.nan),
            "agree_with_ratings": np.where(g["rated"] > 0, g["agrees"] / g["rated"], np.nan),
            "expected_agreement": np.where(g["rated"] > 0, g["expected"] / g["rated"], np.nan),
            "agreement_z": np.where(g["variance"] > 0, (g["agrees"] - g["expected"]) / np.sqrt(g["variance"]),
                                    np.nan),
            "peer_votes": g["peer_all"].to_numpy(),
            "agree_with_peers": np.where(g["peer_all"] > 0, g["peer_same"] / g["peer_all"], np.nan),
        })
    return out.sort_values(["agreement_z", "voter"], na_position="last", kind="stable").reset_index(drop=True)


def _peer_counts(frame: pd.DataFrame, w: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """For each vote: decisive votes of *other* voters on the same challenge and unordered pair that chose
    the same winner, and all such decisive votes (0 for ties and votes without a challenge)."""
    _, a, b = model_codes(frame)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    challenge, _ = pd.factorize(frame["challenge"])
    voter, _ = pd.factorize(frame["voter"])
    winner = np.where(w == 0, a, np.where(w == 1, b, -1))
    decisive = (winner >= 0) & (challenge >= 0)
    lo_won = ((winner == lo) & decisive).astype(np.int64)
    hi_won = ((winner == hi) & decisive).astype(np.int64)
    _, pair = np.unique(np.stack([challenge, lo, hi], axis=1), axis=0, return_inverse=True)
    _, mine = np.unique(np.stack([pair.ravel(), voter], axis=1), axis=0, return_inverse=True)
    pair, mine = pair.ravel(), mine.ravel()
    others_lo = np.bincount(pair, lo_won)[pair] - np.bincount(mine, lo_won)[mine]
    others_hi = np.bincount(pair, hi_won)[pair] - np.bincount(mine, hi_won)[mine]
    same = np.where(winner == lo, others_lo, others_hi)
    every = others_lo + others_hi
    return np.where(decisive, same, 0.0), np.where(decisive, every, 0.0)


def panel_agreement(battles: pd.DataFrame) -> float:
    """Probability that two decisive votes by different voters on the same challenge and pair of models
    pick the same winner (NaN when no such pair of votes exists). 0.5 is chance; the Chatbot Arena paper
    reports 73–83 % between crowd voters and experts (Chiang et al. 2024, arXiv:2403.04132)."""
    frame = battles[battles["voter"].notna() & battles["challenge"].notna()
                    & (battles["model_a"] != battles["model_b"])].reset_index(drop=True)
    if frame.empty:
        return math.nan
    w = winner_codes(frame)
    same, every = _peer_counts(frame, w)
    total = float(every.sum())
    return float(same.sum()) / total if total else math.nan
