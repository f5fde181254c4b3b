"""The report's leaderboard section, computed by :mod:`harness.ratings` from the store's votes.

:class:`LeaderboardSection` is the section's type (what the template and the ``leaderboard.json`` export
read): ``method`` (the fit in plain words), ``intervals`` (centred, or anchored at a model), ``votes``,
``rows`` (the ratings' own typed rows, :class:`~harness.ratings.RatingRow`), ``best_for`` (the top model of
each category and challenge kind with its own votes and win rate there, and ``supported``: whether its interval
singles it out), ``matchups`` (head-to-head per challenge, most-voted first, each pair once, from the
higher-rated model's side), ``win_matrix`` (observed win rates, row beats column, models in rating order),
``notes``. A section handed in as a dict (``build_report(leaderboard=...)``) is validated against it: a
misspelt or mistyped key is an error, never a blank cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.ratings import (
    RatingOptions,
    RatingRow,
    leaderboard,
    leaderboards_by,
    matchups,
    position_bias,
    validate_battles,
    win_rate_matrix,
)
from harness.store import Store
from harness.store.votes import battles_frame

MAX_MATCHUPS = 60


def _fraction(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class BestForEntry(BaseModel):
    """The top model of one category (or challenge kind, ``kind: …``) on that group's own board. Entries
    handed in without their interval (``rank_best`` …) are never called best: ``supported`` defaults to false."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    model: str
    win_rate: float | None = Field(None, description="the model's win rate in the group, 0–1 (ties ½)")
    votes: int | None = Field(None, description="the model's own votes in the group")
    group_votes: int | None = Field(None, description="all votes of the group")
    rank_best: int | None = None
    rank_worst: int | None = None
    n_models: int | None = None
    provisional: bool = False
    ci_low: float | None = None
    ci_high: float | None = None
    runner_up: str | None = None
    runner_up_ci_high: float | None = None
    supported: bool = Field(False, description="rank spread 1–1, not provisional, against at least one other model")


class Matchup(BaseModel):
    """Head-to-head of two models on one challenge, from ``model``'s side (shares 0–1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    challenge: str
    model: str
    opponent: str
    votes: int
    win: float
    loss: float
    tie: float


class WinMatrix(BaseModel):
    """Observed win rates, ``values[i][j]`` = row model i beats column model j (null where they never met)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str]
    values: list[list[float | None]]


class LeaderboardSection(BaseModel):
    """The report's leaderboard section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="the fit in plain words")
    by: Literal["model", "target"] = "model"
    votes: int = Field(description="votes behind the board")
    intervals: str = Field("centred", description="what the intervals are relative to: 'centred' or "
                                                  "'anchored at MODEL=RATING'")
    confidence: float = Field(0.95, description="level of every interval, 0–1")
    rows: list[RatingRow]
    has_elo: bool = True
    best_for: list[BestForEntry] = Field(default_factory=list)
    matchups: list[Matchup] = Field(default_factory=list)
    win_matrix: WinMatrix | None = None
    notes: list[str] = Field(default_factory=list)
    simulated: bool = False

    @classmethod
    def of(cls, section: LeaderboardSection | Mapping[str, Any]) -> LeaderboardSection:
        """The typed section from itself or its dict form (:func:`leaderboard_section`'s output)."""
        return section if isinstance(section, LeaderboardSection) else cls.model_validate(dict(section))


def best_for_entries(battles: pd.DataFrame, options: RatingOptions) -> list[dict[str, Any]]:
    """Per category and challenge kind, the top-rated model on that group's own board, with its own votes
    there (not the group's total) and whether the intervals single it out.

    ``supported``: its rank spread on that board is 1–1, i.e. its interval's lower end lies above every other
    model's upper end, and it is not provisional. Otherwise the page says no model is clearly best."""
    out: list[dict[str, Any]] = []
    columns: tuple[tuple[Literal["category", "kind"], str], ...] = (("category", ""), ("kind", "kind: "))
    for column, prefix in columns:
        if column not in battles.columns or battles[column].isna().all():
            continue
        for group, board in sorted(leaderboards_by(battles, column, options).items()):
            if not board.rows:
                continue
            top = board.rows[0]
            runner = board.rows[1] if len(board.rows) > 1 else None
            out.append({"category": f"{prefix}{group}", "model": top.model, "win_rate": _fraction(top.win_rate),
                        "votes": top.votes, "group_votes": board.n_votes, "rank_best": top.rank_best,
                        "rank_worst": top.rank_worst, "n_models": len(board.rows), "provisional": top.provisional,
                        "ci_low": top.ci_low, "ci_high": top.ci_high,
                        "runner_up": runner.model if runner else None,
                        "runner_up_ci_high": runner.ci_high if runner else None,
                        "supported": top.rank_worst == 1 and not top.provisional and len(board.rows) > 1})
    return [BestForEntry.model_validate(entry).model_dump() for entry in out]


def leaderboard_section(store: Store, run_ids: Sequence[str], *, by: str = "model",
                        options: RatingOptions | None = None) -> dict[str, Any] | None:
    """The leaderboard of the votes on ``run_ids``' outputs in its dict form, or ``None`` when there are no
    votes (:func:`leaderboard_board` gives the typed section)."""
    section = leaderboard_board(store, run_ids, by=by, options=options)
    return None if section is None else section.model_dump()


def leaderboard_board(store: Store, run_ids: Sequence[str], *, by: str = "model",
                      options: RatingOptions | None = None) -> LeaderboardSection | None:
    """The typed leaderboard section of the votes on ``run_ids``' outputs, or ``None`` without votes."""
    opts = options or RatingOptions()
    raw = battles_frame(store, by=by, run_ids=list(run_ids) or None)
    if raw.empty:
        return None
    battles = validate_battles(raw)
    board = leaderboard(battles, opts)
    order = list(board.models)
    matrix = win_rate_matrix(battles).reindex(index=order, columns=order)
    pairs = matchups(battles)
    rank = {model: i for i, model in enumerate(order)}
    pairs = pairs[[rank.get(m, len(order)) < rank.get(o, len(order))
                   for m, o in zip(pairs["model"], pairs["opponent"], strict=True)]]
    top = pairs.sort_values(["votes", "model"], ascending=[False, True], kind="stable").head(MAX_MATCHUPS)
    notes = list(board.notes)
    bias = position_bias(battles)
    if bias.left_share is not None:
        share = bias.left_share
        notes.append(f"Position bias: the left output won {100 * share.estimate:.1f} % of {bias.left_wins + bias.right_wins}"
                     f" decisive votes (95 % interval {100 * share.low:.1f}–{100 * share.high:.1f} %; 50 % = none).")
    if board.self_votes:
        notes.append(f"{board.self_votes} vote(s) compared two outputs of the same model and are not rated.")
    return LeaderboardSection(
        method=opts.describe(),
        by="target" if by == "target" else "model",
        votes=board.n_votes,
        intervals=board.intervals,
        confidence=opts.confidence,
        rows=list(board.rows),
        has_elo=True,
        best_for=[BestForEntry.model_validate(b) for b in best_for_entries(battles, opts)],
        matchups=[Matchup(challenge=str(r["group"]), model=str(r["model"]), opponent=str(r["opponent"]),
                          votes=int(r["votes"]), win=r["win_pct"] / 100, loss=r["loss_pct"] / 100,
                          tie=r["tie_pct"] / 100) for r in top.to_dict("records")],
        win_matrix=WinMatrix(models=order, values=[[_fraction(v) for v in row] for row in matrix.to_numpy().tolist()]),
        notes=notes,
        simulated=bool((raw["source"] == "simulated").any()),
    )
