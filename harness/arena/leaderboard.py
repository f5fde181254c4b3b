"""The arena's public leaderboard: overall and per-category boards, ratings over time (every N votes and by
ISO week), the method in plain words, as one typed value (:class:`PublicLeaderboard`, served at
``/leaderboard.json`` and rendered at ``/leaderboard``).

**Never per request.** The board is fitted on a schedule: :class:`LeaderboardPublisher` keeps the last
board and refits at most once per ``refresh_s`` seconds, on a worker thread (the first request after a
window boundary waits for it; concurrent ones share the same fit).

**Never a way around blindness.** The board shows aggregates only (per-model ratings and counts; no vote,
voter, pair, image or time of a single vote). A board that moved after every vote would tell a watcher
which two models a just-cast vote compared and who won, and would let a voter line up board changes with
pairs in flight. So the published board only ever counts votes cast before a window boundary that lies
at least one whole window in the past (a vote appears between one and two refresh periods after it was
cast), and the cut-off moves forward only across at least ``min_batch`` new votes: every change of the
board mixes at least that many votes, cast by whoever voted in those windows (:func:`next_cutoff`; it
depends on the vote times alone, so several app servers publish the same board). Vote counts are exact
(they are aggregates of many votes by then).

**Bounded cost.** Every refresh fits the overall board, one per category and kind, at most
:data:`MAX_POINTS` boards every N votes and at most :data:`MAX_WEEKS` boards by week; a board fitted on the
same first votes is fitted once and shared (the last week's board is the overall one).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.ratings import RatingError, RatingOptions, leaderboard, validate_battles
from harness.ratings.battles import MULTI_TURN, SINGLE_TURN, keep_kind
from harness.ratings.leaderboard import RatingBoard
from harness.store import Store

LEADERBOARD_SCHEMA_VERSION: Literal[2] = 2
"""2: ``over_weeks`` added (the published schema forbids unknown keys, so a new key is a new version)."""
DEFAULT_REFRESH_S = 300.0
"""Seconds between two fits of the public board (also the unit of its delay, see the module docstring)."""
DEFAULT_MIN_BATCH = 10
"""Fewest new votes that move the board's cut-off forward."""
MAX_POINTS = 12
"""Most points of the board over time."""
MAX_WEEKS = 26
"""Most points of the board by week (the latest weeks with votes, about half a year)."""
WEEK_S = 7 * 86_400
_MONDAY_BEFORE_EPOCH = -3 * 86_400
"""1969-12-29 00:00 UTC, the Monday that starts the ISO week of the Unix epoch (a Thursday)."""
SOURCES = ("arena",)
"""Votes the public board counts: those cast in the arena (not simulated nor imported ones)."""

METHODOLOGY = (
    "Voters see two images made for the same request, without the makers' names, and pick the better one "
    "(or a tie, or both bad). Names are shown only after the vote.",
    "Ratings come from all votes at once with the Bradley–Terry model, on the Elo scale: a model rated 100 "
    "points above another is preferred about 64 % of the time. Ties and both-bad votes count half a win "
    "for each side. The average model sits near 1000.",
    "Each rating has a 95 % confidence interval (sandwich standard errors). Ranks are shown as a spread: the "
    "best rank is 1 + the number of models whose interval lies wholly above this one, the worst rank "
    "1 + the number whose upper end lies above this one's lower end. Models whose intervals overlap share "
    "ranks: the data cannot tell them apart yet.",
    "Models with few votes are marked provisional; their intervals are wide.",
    "Pairs are chosen to spend votes where the order is still open (neighbours whose intervals overlap), and "
    "two providers of the same model are never paired against each other.",
    "The board is refitted on a schedule and shows votes only once they are at least one refresh period "
    "old and at least a batch of them has gathered, so it cannot be used to tell how any single vote went.",
    "The board by week shows, for each ISO week (Monday 00:00 to Monday 00:00, UTC), the board fitted on "
    "every counted vote cast before that week ended: all votes so far, not that week's votes alone. The "
    "current week counts votes up to the board's cut-off; weeks without new votes are left out; at most "
    f"the last {MAX_WEEKS} weeks are shown.",
    "Skipped pairs are recorded but never counted.",
)


class TimeRow(BaseModel):
    """One model at one point of the board over time (Elo points)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    rating: float
    ci_low: float
    ci_high: float
    rank_best: int
    rank_worst: int
    votes: int


class TimePoint(BaseModel):
    """The board fitted on the first ``votes`` votes (the oldest first), cast up to ``until`` (Unix s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    votes: int
    until: float
    rows: list[TimeRow]


class WeekPoint(BaseModel):
    """The board fitted on every counted vote cast before the end of one ISO week (UTC): cumulative, not
    that week's votes alone. ``rows`` is empty when the votes so far cannot rate two models yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    week: str = Field(description="ISO week, e.g. 2026-W49 (ISO year, which may differ from the calendar year)")
    start: float = Field(description="the week's start, Monday 00:00 UTC (Unix s)")
    end: float = Field(description="the week's end, the next Monday 00:00 UTC (Unix s, excluded)")
    complete: bool = Field(description="false for the week the cut-off falls in: it counts votes up to the cut-off")
    votes: int = Field(description="votes counted up to the week's end (or the cut-off), all weeks together")
    new_votes: int = Field(description="votes cast in this week")
    rows: list[TimeRow]


class CategoryBoard(BaseModel):
    """The board of one challenge category (fitted on that category's votes alone); ``board`` is None when
    its votes cannot rate two models yet (``note`` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    votes: int
    board: RatingBoard | None
    note: str | None = None


class KindBoard(BaseModel):
    """The board of votes on single images (``single-turn``: every challenge kind but multi-turn) or on whole
    sequences (``multi-turn``), each fitted on its own votes; ``board`` is None when they cannot rate two
    models yet (``note`` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["single-turn", "multi-turn"]
    votes: int
    board: RatingBoard | None
    note: str | None = None


class PublicLeaderboard(BaseModel):
    """The public leaderboard's JSON (``/leaderboard.json``). Times are Unix seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = Field(LEADERBOARD_SCHEMA_VERSION, description="version of this JSON form")
    generated_at: float = Field(description="when this board was fitted")
    votes_until: float | None = Field(description="cut-off: only votes cast before it are counted (null: none yet)")
    next_update_at: float = Field(description="the earliest time the board may change")
    refresh_s: float = Field(description="seconds between fits; votes appear one to two periods after they are cast")
    min_batch: int = Field(description="fewest new votes that move the cut-off")
    rated_by: Literal["model", "target"] = Field(description="what is rated: models, or targets (model@provider)")
    sources: list[str] = Field(description="vote sources counted")
    total_votes: int = Field(description="votes counted")
    overall: RatingBoard | None = Field(description="the board over every counted vote (null: too few votes)")
    categories: list[CategoryBoard] = Field(description="one board per challenge category")
    kinds: list[KindBoard] = Field(default_factory=list,
                                   description="single-image votes and votes on whole sequences apart; empty "
                                               "until a vote on a multi-turn (sequence) pair is counted")
    over_time_step: int = Field(description="votes between two points of the board over time")
    over_time: list[TimePoint] = Field(description="the board after every `over_time_step` votes")
    over_weeks: list[WeekPoint] = Field(
        description=f"the board at the end of each ISO week (UTC) with votes, cumulative, oldest first; at most the "
                    f"last {MAX_WEEKS} such weeks")
    methodology: list[str] = Field(description="how the board is made, in plain words")
    notes: list[str] = Field(description="remarks")

    @classmethod
    def json_schema(cls) -> dict[str, object]:
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:arena-leaderboard:v{LEADERBOARD_SCHEMA_VERSION}"
        return schema


def _board(frame: pd.DataFrame, options: RatingOptions) -> tuple[RatingBoard | None, str | None]:
    try:
        board = leaderboard(frame, options).board()
    except RatingError as exc:
        return None, str(exc)
    if not board.rows:
        return None, "; ".join(board.notes) or "no votes between two different models"
    return board, None


def week_start(ts: float) -> float:
    """Start (Monday 00:00 UTC, Unix s) of the ISO week ``ts`` falls in."""
    return math.floor((ts - _MONDAY_BEFORE_EPOCH) / WEEK_S) * WEEK_S + _MONDAY_BEFORE_EPOCH


def iso_week_label(start: float) -> str:
    """``2026-W49``: the ISO year and week of the week starting at ``start``."""
    year, week, _ = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=start)).isocalendar()
    return f"{year}-W{week:02d}"


def _time_rows(board: RatingBoard | None) -> list[TimeRow]:
    return [TimeRow(model=r.model, rating=r.rating, ci_low=r.ci_low, ci_high=r.ci_high, rank_best=r.rank_best,
                    rank_worst=r.rank_worst, votes=r.votes) for r in board.rows] if board is not None else []


def over_time_step(total: int) -> int:
    """Votes between two points of the board over time: a round number giving at most :data:`MAX_POINTS`."""
    if total <= 0:
        return 0
    raw = max(10, math.ceil(total / MAX_POINTS))
    magnitude = 10 ** (len(str(raw)) - 1)
    return int(next(nice * magnitude for nice in (1, 2, 5, 10) if nice * magnitude >= raw))


def build_leaderboard(frame: pd.DataFrame, *, now: float, cutoff: float | None, refresh_s: float,
                      min_batch: int = DEFAULT_MIN_BATCH, rated_by: Literal["model", "target"] = "model",
                      sources: tuple[str, ...] = SOURCES, options: RatingOptions | None = None) -> PublicLeaderboard:
    """The public board over ``frame`` (a battle frame) restricted to votes before ``cutoff``; votes are taken
    oldest first (a stable sort by time, which keeps the order of a frame already sorted)."""
    options = options or RatingOptions()
    counted = frame if cutoff is not None else frame.iloc[0:0]
    if cutoff is not None:
        counted = validate_battles(frame[frame["tstamp"] < cutoff].sort_values("tstamp", kind="stable")
                                   .reset_index(drop=True), "arena votes")
    notes: list[str] = []
    if cutoff is None:
        notes.append(f"no board yet: it appears once {min_batch} votes are at least one refresh period old")
    fitted: dict[int, tuple[RatingBoard | None, str | None]] = {}

    def first(n: int) -> tuple[RatingBoard | None, str | None]:
        """The board of the first ``n`` votes, fitted once per refresh whichever view asks."""
        if n not in fitted:
            fitted[n] = _board(counted.iloc[:n] if n < len(counted) else counted, options)
        return fitted[n]

    overall, why = first(len(counted))
    if why and cutoff is not None:
        notes.append(f"overall: {why}")
    categories = []
    for category in sorted({str(c) for c in counted["category"].dropna().unique()}) if len(counted) else []:
        group = counted[counted["category"].astype(object) == category].reset_index(drop=True)
        board, note = _board(group, options)
        categories.append(CategoryBoard(category=category, votes=len(group), board=board, note=note))
    kinds = []
    if len(counted) and "kind" in counted and (counted["kind"].astype(object) == MULTI_TURN).any():
        for kind in (SINGLE_TURN, MULTI_TURN):
            group = keep_kind(counted, kind, "arena votes")
            board, note = _board(group, options)
            kinds.append(KindBoard(kind=kind, votes=len(group), board=board, note=note))
    step = over_time_step(len(counted))
    points = []
    for upto in range(step, len(counted) + 1, step) if step else ():
        board, _ = first(upto)
        if board is not None:
            points.append(TimePoint(votes=upto, until=float(counted["tstamp"].iloc[upto - 1]), rows=_time_rows(board)))
    return PublicLeaderboard(
        generated_at=now, votes_until=cutoff, next_update_at=window_start(now, refresh_s) + refresh_s,
        refresh_s=refresh_s, min_batch=min_batch, rated_by=rated_by, sources=list(sources),
        total_votes=len(counted), overall=overall, categories=categories, kinds=kinds, over_time_step=step,
        over_time=points, over_weeks=_over_weeks(counted["tstamp"].to_numpy(dtype=float) if len(counted) else
                                                  np.empty(0), cutoff, first),
        methodology=list(METHODOLOGY), notes=notes)


def _over_weeks(times: np.ndarray, cutoff: float | None,
                first: Callable[[int], tuple[RatingBoard | None, str | None]]) -> list[WeekPoint]:
    """One point per ISO week with votes (the last :data:`MAX_WEEKS`), from ``times`` sorted oldest first;
    ``first(n)`` is the board of the first ``n`` votes."""
    if not len(times):
        return []
    starts = np.unique([week_start(t) for t in times.tolist()])[-MAX_WEEKS:]
    points = []
    for start in starts.tolist():
        end = start + WEEK_S
        upto = int(np.searchsorted(times, end, side="left"))
        board, _ = first(upto)
        points.append(WeekPoint(
            week=iso_week_label(start), start=start, end=end, complete=cutoff is None or end <= cutoff,
            votes=upto, new_votes=upto - int(np.searchsorted(times, start, side="left")), rows=_time_rows(board)))
    return points


def window_start(now: float, refresh_s: float) -> float:
    """Start of the refresh window ``now`` falls in (windows are aligned to multiples of ``refresh_s``)."""
    return math.floor(now / refresh_s) * refresh_s


def next_cutoff(now: float, refresh_s: float, tstamps: pd.Series, min_batch: int) -> float | None:
    """The cut-off the board publishes at ``now`` (None: none yet), a function of the vote times alone, so
    every app server of an arena publishes the same board.

    Cut-offs are window boundaries (multiples of ``refresh_s``). Walking the windows from the first vote,
    a boundary becomes a cut-off once at least ``min_batch`` votes were cast since the previous cut-off;
    the board publishes the latest such boundary that lies at least one whole window before the window
    ``now`` falls in. So a vote shows between one and two refresh periods after it was cast (with
    ``min_batch`` 1), and consecutive boards differ by at least ``min_batch`` votes."""
    limit = window_start(now, refresh_s) - refresh_s
    times = tstamps.to_numpy(dtype=float)
    times = times[times < limit]
    if len(times) < min_batch or len(times) == 0:
        return None
    windows, counts = np.unique(np.floor(times / refresh_s), return_counts=True)
    cutoff, pending = None, 0
    for window, count in zip(windows.tolist(), counts.tolist(), strict=True):
        pending += int(count)
        if pending >= min_batch:
            cutoff, pending = (window + 1) * refresh_s, 0
    return cutoff


@dataclass
class _Cache:
    board: PublicLeaderboard
    window: float


class LeaderboardPublisher:
    """The scheduled, cached public board of one arena. ``votes`` reads the battle frame from a store;
    ``open_store`` opens the publisher's own (read-only) connection, on first use, so a large read never
    holds up pair serving on the arena's store thread. Reading and fitting run on this publisher's one
    thread, which also makes concurrent requests of a new window share one fit: the first fits, the
    others find it done."""

    def __init__(self, votes: Callable[[Store], pd.DataFrame], *, open_store: Callable[[], Store],
                 refresh_s: float = DEFAULT_REFRESH_S, min_batch: int = DEFAULT_MIN_BATCH,
                 rated_by: Literal["model", "target"] = "model", clock: Callable[[], float]) -> None:
        if not refresh_s >= 1:
            raise ValueError(f"leaderboard refresh must be at least 1 s, not {refresh_s}")
        self._votes = votes
        self._open_store = open_store
        self._store: Store | None = None
        self.refresh_s = refresh_s
        self.min_batch = min_batch
        self.rated_by: Literal["model", "target"] = rated_by
        self._clock = clock
        self._cache: _Cache | None = None
        self._fitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-leaderboard")
        self.fits = 0
        """Boards fitted so far (each costs a read of every vote and several rating fits)."""

    def close(self) -> None:
        """Close the publisher's store connection and thread; safe to call twice."""
        def close_store() -> None:
            store, self._store = self._store, None
            if store is not None:
                store.close()

        with contextlib.suppress(RuntimeError):  # the thread was already shut down by an earlier close
            self._fitter.submit(close_store).result()
        self._fitter.shutdown(wait=True)

    def _refresh(self, window: float) -> PublicLeaderboard:
        cached = self._cache
        if cached is not None and cached.window == window:
            return cached.board
        if self._store is None:
            self._store = self._open_store()
        frame = self._votes(self._store)
        now = self._clock()
        cutoff = next_cutoff(now, self.refresh_s, frame["tstamp"], self.min_batch) if len(frame) else None
        board = build_leaderboard(frame, now=now, cutoff=cutoff, refresh_s=self.refresh_s, min_batch=self.min_batch,
                                  rated_by=self.rated_by)
        self.fits += 1
        self._cache = _Cache(board, window)
        return board

    async def current(self) -> PublicLeaderboard:
        """The board of the current refresh window (fitted now when this window has none yet)."""
        window = window_start(self._clock(), self.refresh_s)
        cached = self._cache
        if cached is not None and cached.window == window:
            return cached.board
        return await asyncio.get_running_loop().run_in_executor(self._fitter, self._refresh, window)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class BoardView:
    """What the page shows beyond the board itself: times in words and the board over time as tables, every
    N votes (``time_*``) and by week (``week_*``): one row per model, one column per point; ratings rounded,
    "" where the model had no rating yet. A week's column says its label, whether it is still running, and
    the votes so far (with that week's own in brackets)."""

    as_of: str
    next_update: str
    time_columns: tuple[str, ...]
    time_rows: tuple[tuple[str, tuple[str, ...]], ...]
    week_columns: tuple[tuple[str, str], ...] = ()
    week_rows: tuple[tuple[str, tuple[str, ...]], ...] = ()
    max_weeks: int = MAX_WEEKS


def _rating_table(points: list[list[TimeRow]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    latest = points[-1] if points else []
    models = [r.model for r in latest] + sorted({r.model for p in points for r in p} - {r.model for r in latest})
    by_point = [{r.model: r for r in p} for p in points]
    return tuple((m, tuple(f"{rows[m].rating:.0f}" if m in rows else "" for rows in by_point)) for m in models)


def board_view(board: PublicLeaderboard) -> BoardView:
    as_of = f"votes cast before {_utc(board.votes_until)}" if board.votes_until is not None else \
        "no votes counted yet"
    weeks = tuple((p.week + ("" if p.complete else " (so far)"), f"{p.votes:,} votes (+{p.new_votes:,})")
                  for p in board.over_weeks)
    return BoardView(as_of, _utc(board.next_update_at), tuple(f"{p.votes:,}" for p in board.over_time),
                     _rating_table([p.rows for p in board.over_time]), weeks,
                     _rating_table([p.rows for p in board.over_weeks]))
