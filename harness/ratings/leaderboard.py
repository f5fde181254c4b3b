"""The leaderboard: one row per model with its rating, interval, rank spread, counts and online Elo.

:func:`leaderboard` is the single entry point the CLI and the report use: votes in (a battle frame, see
:mod:`harness.ratings.battles`), :class:`Leaderboard` out. Nothing here recomputes what the other modules
define; this module only assembles, anchors and orders. :class:`RatingRow` and :class:`RatingBoard` are the
typed rows and board every consumer reads (CLI table and ``--json``, the report, the arena's live board);
their JSON schemas are written from the types (``harness ratings --schema``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.ratings import bradley_terry as bt
from harness.ratings import intervals as iv
from harness.ratings.battles import PairCounts, aggregate
from harness.ratings.elo import EloSettings, elo_bootstrap, online_elo

Method = Literal["bt", "elo"]
METHODS: tuple[Method, ...] = ("bt", "elo")
AnchorIntervals = Literal["anchored", "centred"]
ANCHOR_INTERVALS: tuple[AnchorIntervals, ...] = ("anchored", "centred")
RATINGS_SCHEMA_VERSION: Final = 1
"""Version of the ratings' JSON forms (:class:`RatingRow` in ``harness ratings --json``, :class:`RatingBoard`).
Bump it when a key is removed or changes meaning; added keys keep the version."""
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
    (online Elo scores ties ½ unless ``drop``). ``anchor``: ``(model, rating)``: that model's rating is fixed
    at that value. ``anchor_intervals``: with an anchor, ``anchored`` (default; FastChat's anchoring) gives
    the anchor a zero-width interval and every other model the interval of its difference to the anchor;
    ``centred`` only shifts every rating column by one constant, leaving interval widths and rank spreads as
    they are without an anchor. ``min_votes``: models with fewer votes are flagged provisional.
    ``confidence``: interval level. ``prior_games``: see :func:`harness.ratings.bradley_terry.fit` (None:
    only when the MLE does not exist).
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
    anchor_intervals: AnchorIntervals = "anchored"

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
        if self.anchor_intervals not in ANCHOR_INTERVALS:
            raise bt.RatingError(f"unknown anchor_intervals {self.anchor_intervals!r}; use one of "
                                 f"{', '.join(ANCHOR_INTERVALS)}")

    @property
    def interval_reference(self) -> AnchorIntervals:
        """What the intervals are relative to: ``anchored`` (the anchor model) or ``centred``."""
        return "anchored" if self.anchor is not None and self.anchor_intervals == "anchored" else "centred"

    @property
    def intervals(self) -> str:
        """The intervals in words, as every output states them: ``centred``, ``anchored at X=1000``, or
        ``centred (ratings shifted so X=1000)``."""
        if self.anchor is None:
            return "centred"
        pinned = f"{self.anchor[0]}={self.anchor[1]:g}"
        return f"anchored at {pinned}" if self.interval_reference == "anchored" else \
            f"centred (ratings shifted so {pinned})"

    def describe(self) -> str:
        """The method in plain words (the report's and the live board's methodology line)."""
        level = f"{self.confidence:.0%}".replace("%", " %")
        if self.method == "elo":
            return (f"Online Elo (K={self.elo.k:g}, base {self.elo.base:g}, scale {self.elo.scale:g}, initial "
                    f"{self.elo.initial:g}) with bootstrap intervals over replay orders")
        ties = {"half": "ties and both-bad count ½", "drop": "ties dropped", "davidson": "Davidson tie model"}
        ci = "sandwich (robust)" if self.ci == "sandwich" else f"bootstrap ({self.rounds} rounds)"
        return f"Bradley–Terry MLE on the Elo scale ({ties[self.ties]}), {ci} {level} intervals"


def _row_field(description: str) -> Any:
    return Field(description=description)


class RatingRow(BaseModel):
    """One model on the board. Ratings, bounds and ``elo`` are Elo points (anchored when an anchor was
    given); ``std_error`` is in Elo points. ``votes`` = ``wins + losses + ties`` (``ties`` includes
    ``both_bad``), every vote against another model whatever the tie handling; ``win_rate`` scores a tie
    ½. ``rank_best``/``rank_worst``: rank spread from the intervals. ``provisional``: fewer than the
    minimum votes. ``as_dict()`` is the plain form (every key but ``schema_version``), ``to_json()`` the
    versioned JSON object of ``harness ratings --json``; ``RatingRow.json_schema()`` its schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(RATINGS_SCHEMA_VERSION, description="version of this row's JSON form")
    model: str = _row_field("the rated model (or target model@provider when rated by target)")
    rating: float = _row_field("rating in Elo points (Bradley–Terry MLE, or online Elo with method elo)")
    ci_low: float = _row_field("lower end of the rating's interval at `confidence` (Elo points)")
    ci_high: float = _row_field("upper end of the rating's interval at `confidence` (Elo points)")
    std_error: float = _row_field("standard error of the rating (Elo points; relative to the anchor when "
                                  "anchored, 0 for the anchor itself)")
    votes: int = _row_field("votes against another model: wins + losses + ties")
    wins: int = _row_field("votes won")
    losses: int = _row_field("votes lost")
    ties: int = _row_field("ties, both-bad votes included")
    both_bad: int = _row_field("both-bad votes (also counted in ties)")
    win_rate: float = _row_field("(wins + ties / 2) / votes, 0–1")
    rank_best: int = _row_field("best plausible rank: 1 + models whose interval lies wholly above this one's")
    rank_worst: int = _row_field("worst plausible rank: 1 + models whose upper bound lies above this one's "
                                 "lower bound")
    elo: float = _row_field("online Elo in time order (Elo points; shifted like the rating when anchored)")
    provisional: bool = _row_field("fewer votes than the board's minimum")
    rank: int = _row_field("position on the board by rating, 1 = highest")
    confidence: float = _row_field("level of the interval, 0–1")
    intervals: str = _row_field("what the interval is relative to: 'centred', 'anchored at MODEL=RATING' "
                                "(the anchor's interval has zero width) or 'centred (ratings shifted so "
                                "MODEL=RATING)'")

    def as_dict(self) -> dict[str, Any]:
        """The plain-dict form: every key of the JSON row except ``schema_version``."""
        return self.model_dump(exclude={"schema_version"})

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON object (``schema_version`` first)."""
        return {"schema_version": self.schema_version, **self.as_dict()}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of one row as ``harness ratings --json`` prints it."""
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:rating-row:v{RATINGS_SCHEMA_VERSION}"
        schema["title"] = "RatingRow"
        schema["required"] = sorted({*schema.get("required", []), "schema_version"})
        schema["additionalProperties"] = False
        return schema


ROW_FIELDS = tuple(k for k in RatingRow.model_fields if k != "schema_version")

Surface = Literal["cli", "page"]


@dataclass(frozen=True)
class BoardColumn:
    """One column of the board as it is shown: in the terminal table (``cli_title``; None: not shown there)
    and on the report page (``page_title``; None: not shown there). ``text`` renders a row's cell for the
    terminal, ``page`` for the page (default: ``text``); ``sort`` is the page's sort value (None: sorted as
    text); ``badge`` a short tag the page shows beside the cell; ``numeric`` right-aligns and sorts as a
    number. ``{level}`` in a title becomes the interval's level (``95%`` in the terminal, ``95 %`` on the
    page). The cells read typed :class:`RatingRow` fields, so a misspelt field fails the type check."""

    key: str
    cli_title: str | None
    page_title: str | None
    text: Callable[[RatingRow], str]
    page: Callable[[RatingRow], str] | None = None
    sort: Callable[[RatingRow], float] | None = None
    badge: Callable[[RatingRow], str | None] | None = None
    numeric: bool = True
    align: Literal["left", "right"] = "right"

    def title(self, surface: Surface, confidence: float) -> str:
        title = self.cli_title if surface == "cli" else self.page_title
        if title is None:
            raise ValueError(f"column {self.key!r} is not shown on the {surface}")
        level = f"{confidence:.0%}" if surface == "cli" else f"{100 * confidence:g} %"
        return title.format(level=level)

    def page_cell(self, row: RatingRow) -> str:
        return (self.page or self.text)(row)


def _rank_text(r: RatingRow) -> str:
    return str(r.rank_best) if r.rank_best == r.rank_worst else f"{r.rank_best}–{r.rank_worst}"


BOARD_COLUMNS: tuple[BoardColumn, ...] = (
    BoardColumn("rank", "Rank", "rank", _rank_text, sort=lambda r: r.rank_best),
    BoardColumn("model", "Model", "model", lambda r: r.model + (" *" if r.provisional else ""),
                page=lambda r: r.model, badge=lambda r: "few votes" if r.provisional else None, numeric=False,
                align="left"),
    BoardColumn("rating", "Rating", "rating", lambda r: f"{r.rating:.1f}", page=lambda r: f"{r.rating:.0f}",
                sort=lambda r: r.rating),
    BoardColumn("interval", "{level} CI", "{level} interval",
                lambda r: f"+{r.ci_high - r.rating:.1f} / −{r.rating - r.ci_low:.1f}",
                page=lambda r: f"{r.ci_low:.0f}–{r.ci_high:.0f}", numeric=False),
    BoardColumn("votes", "Votes", "votes", lambda r: f"{r.votes:,}", page=lambda r: str(r.votes),
                sort=lambda r: r.votes),
    BoardColumn("wtl", "W / T / L", None, lambda r: f"{r.wins} / {r.ties} / {r.losses}"),
    BoardColumn("wins", None, "W", lambda r: str(r.wins), sort=lambda r: r.wins),
    BoardColumn("ties", None, "T", lambda r: str(r.ties), sort=lambda r: r.ties),
    BoardColumn("losses", None, "L", lambda r: str(r.losses), sort=lambda r: r.losses),
    BoardColumn("win_rate", "Win %", None, lambda r: f"{100 * r.win_rate:.1f}"),
    BoardColumn("elo", "Elo", "online Elo", lambda r: f"{r.elo:.1f}", page=lambda r: f"{r.elo:.0f}",
                sort=lambda r: r.elo),
)
"""The board's columns, in order, for the terminal table and the report page alike."""


def board_columns(surface: Surface) -> tuple[BoardColumn, ...]:
    """The columns shown on ``surface``."""
    return tuple(c for c in BOARD_COLUMNS if (c.cli_title if surface == "cli" else c.page_title) is not None)


class AnchorSpec(BaseModel):
    """A model whose rating was fixed, and at which value (Elo points)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    rating: float


class RatingBoard(BaseModel):
    """A whole board in its JSON form (what the report's and the arena's leaderboard JSON carry): how it was
    fitted, what the intervals are relative to, the vote counts and the rows, best first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(RATINGS_SCHEMA_VERSION, description="version of this board's JSON form")
    method: Method = Field(description="bt: Bradley–Terry MLE; elo: online Elo with bootstrap intervals")
    ci: iv.CIMethod | None = Field(description="interval method of Bradley–Terry ratings (null with elo)")
    rounds: int | None = Field(description="bootstrap replicates (null for sandwich intervals)")
    ties: bt.TieMode = Field(description="tie handling: half, drop or davidson")
    confidence: float = Field(description="level of every interval, 0–1")
    interval_reference: AnchorIntervals = Field(
        description="centred: intervals of each rating against the mean of all models; anchored: against the "
                    "anchor model, whose own interval has zero width")
    intervals: str = Field(description="the same in words: 'centred', 'anchored at MODEL=RATING', or 'centred "
                                       "(ratings shifted so MODEL=RATING)'")
    anchor: AnchorSpec | None = Field(description="the model whose rating was fixed, and its value")
    methodology: str = Field(description="the method in plain words")
    min_votes: int = Field(description="models with fewer votes are provisional")
    n_votes: int = Field(description="votes given, self-votes included")
    self_votes: int = Field(description="votes between two outputs of the same model (not rated)")
    tie_nu: float | None = Field(description="Davidson's fitted tie parameter ν (null otherwise)")
    prior_games: float = Field(description="virtual draws per model added because the votes alone have no "
                                           "finite MLE (0 when none)")
    identified: bool = Field(description="the comparison graph is strongly connected")
    degenerate_rounds: int = Field(description="bootstrap replicates left out (no finite MLE)")
    notes: list[str] = Field(description="remarks in words")
    rows: list[RatingRow] = Field(description="one row per model, best first")

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of a whole board (``harness ratings --schema board``)."""
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:rating-board:v{RATINGS_SCHEMA_VERSION}"
        schema["title"] = "RatingBoard"
        schema["additionalProperties"] = False
        return schema


@dataclass(frozen=True)
class Leaderboard:
    """A rated board, best first.

    ``n_votes``: votes given; ``self_votes``: of those, votes between two outputs of the same model (not
    rated). ``tie_nu``: Davidson's fitted tie parameter ν (None otherwise). ``prior_games``: virtual draws
    per model that had to be added because the votes alone have no finite MLE (0.0 when none).
    ``identified``: the comparison graph is strongly connected. ``degenerate_rounds``: bootstrap replicates
    left out. ``notes``: human-readable remarks (also printed by the CLI). :meth:`board` is its typed JSON
    form, :meth:`rows_json` the rows as ``harness ratings --json`` prints them.
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

    @property
    def intervals(self) -> str:
        """What the intervals are relative to, in words (see :attr:`RatingOptions.intervals`)."""
        return self.options.intervals

    def row(self, model: str) -> RatingRow:
        for r in self.rows:
            if r.model == model:
                return r
        raise bt.RatingError(f"no model {model!r} on this board; it has {', '.join(self.models) or 'none'}")

    def ratings(self) -> dict[str, float]:
        """Model → rating (Elo points), best first."""
        return {r.model: r.rating for r in self.rows}

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (keys :data:`ROW_FIELDS`)."""
        return [r.as_dict() for r in self.rows]

    def rows_json(self) -> list[dict[str, Any]]:
        """The rows as versioned JSON objects (the ``harness ratings --json`` output)."""
        return [r.to_json() for r in self.rows]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.to_records(), columns=list(ROW_FIELDS))

    def board(self) -> RatingBoard:
        """The typed JSON form of the whole board."""
        o = self.options
        return RatingBoard(
            method=o.method, ci=o.ci if o.method == "bt" else None,
            rounds=o.rounds if o.method == "elo" or o.ci == "bootstrap" else None, ties=o.ties,
            confidence=o.confidence, interval_reference=o.interval_reference, intervals=o.intervals,
            anchor=None if o.anchor is None else AnchorSpec(model=o.anchor[0], rating=o.anchor[1]),
            methodology=o.describe(), min_votes=o.min_votes, n_votes=self.n_votes, self_votes=self.self_votes,
            tie_nu=self.tie_nu, prior_games=self.prior_games, identified=self.identified,
            degenerate_rounds=self.degenerate_rounds, notes=list(self.notes), rows=list(self.rows))


def leaderboard(battles: pd.DataFrame, options: RatingOptions | None = None) -> Leaderboard:
    """Rate the models in ``battles`` (a validated battle frame) and assemble the board.

    An empty vote set gives an empty board with a note, not an error. An anchor model without votes is a
    :class:`~harness.ratings.bradley_terry.RatingError` naming it.
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
    reference = counts.models.index(options.anchor[0]) \
        if options.anchor is not None and options.interval_reference == "anchored" else None
    elo_settings = options.elo
    if options.ties == "drop" and elo_settings.ties != "drop":
        elo_settings = EloSettings(elo_settings.k, elo_settings.base, elo_settings.scale, elo_settings.initial, "drop")
    elo = online_elo(battles, elo_settings, models=counts.models).reindex(counts.models).to_numpy()
    extra: dict[str, Any] = {}
    if options.method == "bt":
        rating, low, high, se, extra = _bradley_terry(counts, options, notes, reference)
    else:
        rating = elo
        reps = elo_bootstrap(battles, options.rounds, options.seed, elo_settings, counts.models)
        low, high, se = iv.percentile_bounds(reps.to_numpy(), options.confidence, reference)
        if reference is not None:
            low, high = low + elo[reference], high + elo[reference]
        notes.append(f"online Elo (K={elo_settings.k:g}) replayed in time order; intervals from {options.rounds} "
                     "bootstrap resamples in random order (order dependence included)")
    if options.anchor is not None:
        model, value = options.anchor
        i = counts.models.index(model)
        if reference is not None:
            base = rating[i]
            rating, low, high = value + (rating - base), value + (low - base), value + (high - base)
        else:
            shift = value - rating[i]
            rating, low, high = rating + shift, low + shift, high + shift
        elo = elo + (value - elo[i])
    best, worst = iv.rank_spread(low, high)
    per_model = counts.per_model()
    order = sorted(range(counts.n_models), key=lambda i: (-float(rating[i]), counts.models[i]))
    typed = []
    for position, i in enumerate(order, start=1):
        model = counts.models[i]
        c = per_model.loc[model]
        votes = int(c["votes"])
        typed.append(RatingRow(
            model=model, rating=float(rating[i]), ci_low=float(low[i]), ci_high=float(high[i]),
            std_error=float(se[i]), votes=votes, wins=int(c["wins"]), losses=int(c["losses"]),
            ties=int(c["ties"]), both_bad=int(c["both_bad"]),
            win_rate=(float(c["wins"]) + 0.5 * float(c["ties"])) / votes if votes else float("nan"),
            rank_best=int(best[i]), rank_worst=int(worst[i]), elo=float(elo[i]),
            provisional=votes < options.min_votes, rank=position, confidence=options.confidence,
            intervals=options.intervals,
        ))
    provisional = [r.model for r in typed if r.provisional]
    if provisional:
        notes.append(f"provisional (< {options.min_votes} votes): {', '.join(provisional)}")
    if options.anchor is not None:
        notes.append(f"intervals: {options.intervals}")
    return Leaderboard(tuple(typed), options, len(battles), counts.self_votes, notes=tuple(notes), **extra)


def _bradley_terry(counts: PairCounts, options: RatingOptions, notes: list[str], reference: int | None
                   ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any],
                              np.ndarray[Any, Any], dict[str, Any]]:
    result = bt.fit(counts, ties=options.ties, prior_games=options.prior_games)
    if options.ci == "sandwich":
        intervals = iv.sandwich_intervals(counts, result, options.confidence, reference)
    else:
        intervals = iv.bootstrap_intervals(counts, result, options.rounds, options.seed, options.confidence,
                                           reference)
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
