"""The leaderboard: one row per model with its rating, interval, rank spread, counts and online Elo.

:func:`leaderboard` is the single entry point the CLI and the report use: votes in (a battle frame, see
:mod:`harness.ratings.battles`), :class:`Leaderboard` out. Nothing here recomputes what the other modules
define; this module only assembles, anchors and orders.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from harness.ratings import bradley_terry as bt
from harness.ratings import intervals as iv
from harness.ratings.battles import PairCounts, aggregate
from harness.ratings.elo import EloSettings, elo_bootstrap, online_elo

Method = Literal["bt", "elo"]
METHODS: tuple[Method, ...] = ("bt", "elo")
DEFAULT_MIN_VOTES = 30
"""Votes below which a model is flagged provisional: the normal approximation behind its interval is
rough there, and a handful of votes can move its rank a lot. (LMArena hides category entries below 300
votes and lists models after ~3,000; a harness run has far fewer, so the flag is a warning, not a filter.)"""


@dataclass(frozen=True)
class RatingOptions:
    """How to turn votes into ratings.

    ``method``: ``bt`` (Bradley–Terry MLE, the primary rating) or ``elo`` (online Elo as the primary
    column, intervals from a bootstrap over random replay orders). ``ci``: ``sandwich`` or ``bootstrap``
    (Bradley–Terry only). ``rounds``: bootstrap replicates. ``ties``: ``half``, ``drop`` or ``davidson``
    (online Elo scores ties ½ unless ``drop``). ``anchor``: ``(model, rating)``; after fitting, every rating
    column is shifted so that model sits at that rating — interval widths and rank spreads are unchanged.
    ``min_votes``: models with fewer votes are flagged provisional. ``confidence``: interval level.
    ``prior_games``: see :func:`harness.ratings.bradley_terry.fit` (None: only when the MLE does not exist).
    """

    method: Method = "bt"
    ci: iv.CIMethod = "sandwich"
    rounds: int = iv.DEFAULT_ROUNDS
    ties: bt.TieMode = "half"
    anchor: tuple[str, float] | None = None
    min_votes: int = DEFAULT_MIN_VOTES
    seed: int = 0
    confidence: float = iv.CONFIDENCE
    prior_games: float | None = None
    elo: EloSettings = field(default_factory=EloSettings)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise bt.RatingError(f"unknown rating method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.ci not in iv.CI_METHODS:
            raise bt.RatingError(f"unknown interval method {self.ci!r}; use one of {', '.join(iv.CI_METHODS)}")
        if self.ties not in bt.TIE_MODES:
            raise bt.RatingError(f"unknown tie handling {self.ties!r}; use one of {', '.join(bt.TIE_MODES)}")
        if self.rounds < 1:
            raise bt.RatingError(f"bootstrap rounds must be at least 1, not {self.rounds}")
        if self.min_votes < 0:
            raise bt.RatingError(f"min_votes must be >= 0, not {self.min_votes}")
        if not 0 < self.confidence < 1:
            raise bt.RatingError(f"confidence must be between 0 and 1, not {self.confidence}")
        if self.anchor is not None and not math.isfinite(self.anchor[1]):
            raise bt.RatingError(f"anchor rating for {self.anchor[0]!r} must be a finite number")


@dataclass(frozen=True)
class RatingRow:
    """One model on the board. Ratings, bounds and ``elo`` are Elo points (anchored when an anchor was
    given); ``std_error`` is in Elo points. ``votes`` = ``wins + losses + ties`` (``ties`` includes
    ``both_bad``), every vote against another model whatever the tie handling; ``win_rate`` scores a tie
    ½. ``rank_best``/``rank_worst``: rank spread from the intervals. ``provisional``: fewer than the
    minimum votes."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    std_error: float
    votes: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: float
    rank_best: int
    rank_worst: int
    elo: float
    provisional: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ROW_FIELDS = tuple(RatingRow.__dataclass_fields__)


@dataclass(frozen=True)
class Leaderboard:
    """A rated board, best first.

    ``n_votes``: votes given; ``self_votes``: of those, votes between two outputs of the same model (not
    rated). ``tie_nu``: Davidson's fitted tie parameter ν (None otherwise). ``prior_games``: virtual draws
    per model that had to be added because the votes alone have no finite MLE (0.0 when none).
    ``identified``: the comparison graph is strongly connected. ``degenerate_rounds``: bootstrap replicates
    left out. ``notes``: human-readable remarks (also printed by the CLI).
    """

    rows: tuple[RatingRow, ...]
    options: RatingOptions
    n_votes: int
    self_votes: int = 0
    tie_nu: float | None = None
    prior_games: float = 0.0
    identified: bool = True
    degenerate_rounds: int = 0
    notes: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.rows)

    def row(self, model: str) -> RatingRow:
        for r in self.rows:
            if r.model == model:
                return r
        raise bt.RatingError(f"no model {model!r} on this board; it has {', '.join(self.models) or 'none'}")

    def ratings(self) -> dict[str, float]:
        """Model → rating (Elo points), best first."""
        return {r.model: r.rating for r in self.rows}

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (the ``harness ratings --json`` output)."""
        return [r.as_dict() for r in self.rows]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.to_records(), columns=list(ROW_FIELDS))


def leaderboard(battles: pd.DataFrame, options: RatingOptions | None = None) -> Leaderboard:
    """Rate the models in ``battles`` (a validated battle frame) and assemble the board.

    An empty vote set gives an empty board with a note, not an error.
    """
    options = options or RatingOptions()
    if battles.empty:
        return Leaderboard((), options, 0, notes=("no votes",))
    counts = aggregate(battles)
    notes: list[str] = []
    if counts.self_votes:
        notes.append(f"{counts.self_votes} votes compared two outputs of the same model and were not rated")
    if counts.n_models < 2:
        notes.append("no votes between two different models")
        return Leaderboard((), options, len(battles), counts.self_votes, notes=tuple(notes))
    if options.anchor is not None and options.anchor[0] not in counts.models:
        raise bt.RatingError(f"anchor model {options.anchor[0]!r} has no votes; models: {', '.join(counts.models)}")
    elo_settings = options.elo
    if options.ties == "drop" and elo_settings.ties != "drop":
        elo_settings = EloSettings(elo_settings.k, elo_settings.base, elo_settings.scale, elo_settings.initial, "drop")
    elo = online_elo(battles, elo_settings, models=counts.models).reindex(counts.models).to_numpy()
    extra: dict[str, Any] = {}
    if options.method == "bt":
        rating, low, high, se, extra = _bradley_terry(counts, options, notes)
    else:
        rating = elo
        reps = elo_bootstrap(battles, options.rounds, options.seed, elo_settings, counts.models)
        tail = (1 - options.confidence) / 2 * 100
        low, high = np.percentile(reps.to_numpy(), [tail, 100 - tail], axis=0)
        se = reps.to_numpy().std(axis=0, ddof=1) if options.rounds > 1 else np.zeros(counts.n_models)
        notes.append(f"online Elo (K={elo_settings.k:g}) replayed in time order; intervals from {options.rounds} "
                     "bootstrap resamples in random order (order dependence included)")
    if options.anchor is not None:
        model, value = options.anchor
        i = counts.models.index(model)
        shift = value - rating[i]
        rating, low, high = rating + shift, low + shift, high + shift
        elo = elo + (value - elo[i])
    best, worst = iv.rank_spread(low, high)
    per_model = counts.per_model()
    rows = []
    for i, model in enumerate(counts.models):
        c = per_model.loc[model]
        votes = int(c["votes"])
        rows.append(RatingRow(
            model=model, rating=float(rating[i]), ci_low=float(low[i]), ci_high=float(high[i]),
            std_error=float(se[i]), votes=votes, wins=int(c["wins"]), losses=int(c["losses"]),
            ties=int(c["ties"]), both_bad=int(c["both_bad"]),
            win_rate=(float(c["wins"]) + 0.5 * float(c["ties"])) / votes if votes else float("nan"),
            rank_best=int(best[i]), rank_worst=int(worst[i]), elo=float(elo[i]),
            provisional=votes < options.min_votes,
        ))
    rows.sort(key=lambda r: (-r.rating, r.model))
    provisional = [r.model for r in rows if r.provisional]
    if provisional:
        notes.append(f"provisional (< {options.min_votes} votes): {', '.join(provisional)}")
    return Leaderboard(tuple(rows), options, len(battles), counts.self_votes, notes=tuple(notes), **extra)


def _bradley_terry(counts: PairCounts, options: RatingOptions, notes: list[str]
                   ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any],
                              np.ndarray[Any, Any], dict[str, Any]]:
    result = bt.fit(counts, ties=options.ties, prior_games=options.prior_games)
    if options.ci == "sandwich":
        intervals = iv.sandwich_intervals(counts, result, options.confidence)
    else:
        intervals = iv.bootstrap_intervals(counts, result, options.rounds, options.seed, options.confidence)
        if intervals.degenerate_rounds:
            notes.append(f"{intervals.degenerate_rounds} of {options.rounds} bootstrap replicates had no finite "
                         "MLE and were left out")
    if not result.identified:
        groups = int(result.components.max()) + 1
        notes.append(f"the votes alone do not order every model (comparison graph has {groups} strongly "
                     f"connected groups); ratings include a prior of {result.prior_games:g} virtual draw(s) "
                     "per model against a 1000-rated reference")
    if options.ties == "davidson":
        assert result.tie_log_nu is not None
        notes.append(f"Davidson tie model: ν = {math.exp(result.tie_log_nu):.4g} "
                     f"(P(tie) between equal models = {_equal_tie_share(result.tie_log_nu):.1%})")
    extra = {"tie_nu": None if result.tie_log_nu is None else math.exp(result.tie_log_nu),
             "prior_games": result.prior_games, "identified": result.identified,
             "degenerate_rounds": intervals.degenerate_rounds}
    return result.ratings, intervals.low, intervals.high, intervals.std_error, extra


def _equal_tie_share(kappa: float) -> float:
    nu = math.exp(kappa)
    return nu / (2.0 + nu)
