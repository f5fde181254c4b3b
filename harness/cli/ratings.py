"""``harness ratings``: the leaderboard from arena votes (the store) or from a vote file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, cast

import click
import pandas as pd
from rich.table import Table

from harness.cli._common import db_option, err_console, handle_errors, out_console, print_json
from harness.errors import ConfigError
from harness.ratings import Leaderboard, RatingBoard, RatingOptions, RatingRow, leaderboard
from harness.ratings.battles import load_battles
from harness.ratings.bradley_terry import TIE_MODES
from harness.ratings.intervals import CI_METHODS, DEFAULT_ROUNDS
from harness.ratings.leaderboard import (
    ANCHOR_INTERVALS,
    DEFAULT_MIN_VOTES,
    METHODS,
    AnchorIntervals,
    board_columns,
)


def parse_anchor(text: str | None) -> tuple[str, float] | None:
    """``MODEL=VALUE`` (the last ``=`` splits) to ``(model, rating)``."""
    if text is None:
        return None
    model, sep, value = text.rpartition("=")
    if not sep or not model.strip():
        raise ConfigError(f"--anchor {text!r}: use MODEL=VALUE, e.g. --anchor sd-3.5-large=940")
    try:
        rating = float(value)
    except ValueError:
        raise ConfigError(f"--anchor {text!r}: {value!r} is not a number") from None
    if not math.isfinite(rating):
        raise ConfigError(f"--anchor {text!r}: the rating must be a finite number")
    return model.strip(), rating


def load_votes(votes: Path | None, db: Path, by: str | None, category: str | None,
               run_ids: tuple[str, ...], sources: tuple[str, ...], kind: str | None = None) -> pd.DataFrame:
    """Votes in battle format from ``votes`` (a file) or from the store at ``db``, filtered by category and
    kind (:func:`harness.ratings.battles.load_battles`); refuses store-only options with a file."""
    if votes is not None:
        for flag, value in (("--by", by), ("--run", run_ids), ("--source", sources)):
            if value:
                raise ConfigError(f"{flag} applies to votes from the store; a vote file names its own models")
    return load_battles(votes, db, by=by, category=category, run_ids=run_ids, sources=sources, kind=kind)


@click.command()
@click.option("--votes", "votes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read votes from a battle file instead of the store: CSV, JSON Lines or a JSON array "
                   "(FastChat's clean_battle files read unchanged).")
@db_option
@click.option("--by", "by", type=click.Choice(["model", "target"]), default=None,
              help="Rate models (default) or targets (model@provider); store votes only.")
@click.option("--run", "run_ids", multiple=True, metavar="RUN_ID",
              help="Only votes whose two outputs come from these runs (repeatable); store votes only.")
@click.option("--source", "sources", multiple=True, metavar="SOURCE",
              help="Only votes from these sources: arena, simulated, import (repeatable); store votes only.")
@click.option("--category", default=None, help="Only votes on challenges of this category.")
@click.option("--kind", default=None, metavar="KIND",
              help="Only votes on challenges of this kind: multi-turn (votes on whole sequences), single-turn "
                   "(every other kind), or one kind such as edit.")
@click.option("--method", type=click.Choice(METHODS), default="bt", show_default=True,
              help="bt: Bradley-Terry MLE; elo: online Elo as the rating column.")
@click.option("--ci", type=click.Choice(CI_METHODS), default="sandwich", show_default=True,
              help="Interval method for Bradley-Terry ratings.")
@click.option("--rounds", type=click.IntRange(min=1), default=DEFAULT_ROUNDS, show_default=True,
              help="Bootstrap rounds (--ci bootstrap, or --method elo).")
@click.option("--ties", type=click.Choice(TIE_MODES), default="half", show_default=True,
              help="Ties and both-bad votes: half a win each, dropped, or Davidson's tie model.")
@click.option("--anchor", default=None, metavar="MODEL=VALUE",
              help="Fix MODEL's rating at VALUE: its interval has zero width and every other interval is that "
                   "of the difference to MODEL (FastChat's anchoring). Without it intervals are centred.")
@click.option("--anchor-intervals", type=click.Choice(ANCHOR_INTERVALS), default="anchored", show_default=True,
              help="With --anchor: 'anchored' pins MODEL with a zero-width interval; 'centred' only shifts every "
                   "rating so MODEL sits at VALUE and keeps the centred intervals.")
@click.option("--min-votes", type=click.IntRange(min=0), default=DEFAULT_MIN_VOTES, show_default=True,
              help="Flag models with fewer votes as provisional.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the rows as a JSON list (each row with schema_version and what its interval is "
                   "relative to).")
@click.option("--schema", "schema", type=click.Choice(["row", "board"]), is_flag=False, flag_value="row",
              default=None, help="Print the JSON schema of a --json row (or, with 'board', of a whole board) "
                                 "and exit.")
@handle_errors
def ratings(votes: Path | None, db: Path, by: str | None, run_ids: tuple[str, ...], sources: tuple[str, ...],
            category: str | None, kind: str | None, method: str, ci: str, rounds: int, ties: str, anchor: str | None,
            anchor_intervals: str, min_votes: int, seed: int, as_json: bool, schema: str | None) -> None:
    """Leaderboard from pairwise votes: Bradley-Terry ratings with 95% intervals, rank spread, win/tie/loss
    counts and online Elo."""
    if schema is not None:
        print_json(RatingRow.json_schema() if schema == "row" else RatingBoard.json_schema())
        return
    options = RatingOptions(
        method=cast(Literal["bt", "elo"], method), ci=cast(Literal["sandwich", "bootstrap"], ci), rounds=rounds,
        ties=cast(Literal["half", "drop", "davidson"], ties), anchor=parse_anchor(anchor), min_votes=min_votes,
        seed=seed, anchor_intervals=cast(AnchorIntervals, anchor_intervals),
    )
    frame = load_votes(votes, db, by, category, run_ids, sources, kind)
    board = leaderboard(frame, options)
    console = err_console()
    for note in board.notes:
        console.print(f"note: {note}", markup=False)
    if as_json:
        print_json(board.rows_json())
    else:
        print_board(board, title=_title(votes, db, category, kind))


def _title(votes: Path | None, db: Path, category: str | None, kind: str | None = None) -> str:
    where = str(votes) if votes is not None else f"votes in {db}"
    return where + (f", category {category}" if category else "") + (f", kind {kind}" if kind else "")


def print_board(board: Leaderboard, title: str) -> None:
    """The leaderboard as a Rich table on stdout (columns: :data:`harness.ratings.leaderboard.BOARD_COLUMNS`)."""
    columns = board_columns("cli")
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c.title("cli", board.options.confidence), justify=c.align)
    for r in board.rows:
        table.add_row(*(c.text(r) for c in columns))
    out_console().print(table)
    if board.rows:
        out_console().print(f"intervals: {board.intervals}", markup=False)
    if any(r.provisional for r in board.rows):
        out_console().print(f"* provisional: fewer than {board.options.min_votes} votes")
