"""The report's leaderboard section, computed by :mod:`harness.ratings` from the store's votes.

Shape of the section (what the template and the ``leaderboard.json`` export read): ``method``, ``votes``,
``rows`` (the ratings' rows: model, rating, ci_low, ci_high, votes, wins, ties, losses, rank_best,
rank_worst, elo, provisional …), ``best_for`` (the top model of each category and challenge kind with its
own votes and win rate there, and ``supported``: whether its interval singles it out), ``matchups`` (head-to-head per challenge, most-voted first, each pair once, from the
higher-rated model's side), ``win_matrix`` (observed win rates,
row beats column, models in rating order), ``notes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from harness.ratings import (
    RatingOptions,
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


def _method(options: RatingOptions) -> str:
    if options.method == "elo":
        return "Online Elo (K, base 10, scale 400, initial 1000) with bootstrap intervals over replay orders"
    ties = {"half": "ties and both-bad count ½", "drop": "ties dropped", "davidson": "Davidson tie model"}
    ci = "sandwich (robust)" if options.ci == "sandwich" else f"bootstrap ({options.rounds} rounds)"
    return f"Bradley–Terry MLE on the Elo scale ({ties[options.ties]}), {ci} 95 % intervals"


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
    return out


def leaderboard_section(store: Store, run_ids: Sequence[str], *, by: str = "model",
                        options: RatingOptions | None = None) -> dict[str, Any] | None:
    """The leaderboard of the votes on ``run_ids``' outputs, or ``None`` when there are no votes."""
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
    return {
        "method": _method(opts),
        "by": by,
        "votes": board.n_votes,
        "rows": board.to_records(),
        "has_elo": True,
        "best_for": best_for_entries(battles, opts),
        "matchups": [{"challenge": str(r["group"]), "model": str(r["model"]), "opponent": str(r["opponent"]),
                      "votes": int(r["votes"]), "win": r["win_pct"] / 100, "loss": r["loss_pct"] / 100,
                      "tie": r["tie_pct"] / 100} for r in top.to_dict("records")],
        "win_matrix": {"models": order,
                       "values": [[_fraction(v) for v in row] for row in matrix.to_numpy().tolist()]},
        "notes": notes,
        "simulated": bool((raw["source"] == "simulated").any()),
    }
