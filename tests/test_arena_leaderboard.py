"""The arena's public leaderboard: overall and per-category boards with rank spreads, vote counts, the board
over time (every N votes and by ISO week) and the method in words, as a page and as versioned JSON; fitted on a schedule, never per
request, and delayed and batched so that it cannot tell anyone how a single vote went."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.arena.leaderboard as public_board
from harness.arena.app import create_app
from harness.arena.config import ArenaConfig
from harness.arena.leaderboard import (
    LEADERBOARD_SCHEMA_VERSION,
    MAX_POINTS,
    MAX_WEEKS,
    PublicLeaderboard,
    board_view,
    build_leaderboard,
    next_cutoff,
    over_time_step,
)
from harness.errors import ConfigError
from harness.store import Store
from harness.store.votes import Vote, insert_votes
from tests.test_arena_api import GENEROUS, leaks, run
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

T0 = 1_900_000_200.0
"""A window boundary for every refresh period used here (a multiple of 60 and 300)."""
MODELS = ("gpt-image-1", "gpt-image-1.5", "dall-e-3", "gpt-image-1-mini")
TARGET = {"gpt-image-1": "gpt-image-1@openai", "gpt-image-1.5": "gpt-image-1.5@openai",
          "dall-e-3": "dalle3@openai", "gpt-image-1-mini": "mini@openai"}
STRENGTH = {"gpt-image-1.5": 300.0, "gpt-image-1": 150.0, "dall-e-3": 0.0, "gpt-image-1-mini": -150.0}


@pytest.fixture(scope="session")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


@pytest.fixture
def fresh(tmp_path: Path, arena_store: ArenaStore) -> ArenaStore:
    return clone_store(arena_store, tmp_path / "store")


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


def battle_frame(n: int, seed: int = 0, start: float = T0) -> pd.DataFrame:
    """``n`` votes one second apart between the four models, following their strengths, in two categories."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        a, b = rng.choice(len(MODELS), size=2, replace=False)
        ma, mb = MODELS[a], MODELS[b]
        p = 1.0 / (1.0 + 10 ** ((STRENGTH[mb] - STRENGTH[ma]) / 400.0))
        winner = "model_a" if rng.random() < p else "model_b"
        rows.append({"model_a": ma, "model_b": mb, "winner": winner, "category": ("photo", "art")[k % 2],
                     "kind": "text-to-image", "challenge": "c", "voter": f"v{k}", "tstamp": start + k,
                     "source": "arena", "decision_ms": 1000.0})
    return pd.DataFrame(rows)


def arena_votes(store: ArenaStore, n: int, start: float, seed: int = 0) -> None:
    """``n`` arena votes recorded in the store one second apart from ``start`` (as the API records them)."""
    frame = battle_frame(n, seed, start)
    votes = [Vote(vote_uid=f"lb-{seed}-{k}", left_target=TARGET[r.model_a], right_target=TARGET[r.model_b],
                  left_model=r.model_a, right_model=r.model_b, outcome="left" if r.winner == "model_a" else "right",
                  voted_at=float(r.tstamp), source="arena", run_id=store.run_id, category=str(r.category),
                  kind="text-to-image", challenge_id="lake", variant="default", voter=str(r.voter))
             for k, r in enumerate(frame.itertuples())]
    with Store.open(store.db) as s:
        insert_votes(s, votes)


@contextmanager
def board_arena(store: ArenaStore, clock: Clock, refresh_s: float = 60.0) -> Iterator[FastAPI]:
    config = ArenaConfig(db=store.db, cache_dir=store.cache_dir, seed=1, voter_votes=GENEROUS, ip_votes=GENEROUS,
                         ip_new_voters=GENEROUS)
    app = create_app(config, clock=clock, leaderboard_refresh_s=refresh_s)
    try:
        yield app
    finally:
        app.state.leaderboard.close()
        app.state.arena.close()


def client(app: FastAPI, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50123)),
                             base_url="http://arena.test")


def get_json(app: FastAPI, path: str = "/leaderboard.json") -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with client(app) as c:
            response = await c.get(path)
            assert response.status_code == 200, response.text
            assert "set-cookie" not in response.headers
            return dict(response.json())

    return run(go())


# -- the board itself ----------------------------------------------------------------------------------


def test_board_ranks_models_with_spreads_counts_categories_and_history() -> None:
    frame = battle_frame(1200)
    board = build_leaderboard(frame, now=T0 + 5000, cutoff=T0 + 5000, refresh_s=60)
    assert board.schema_version == LEADERBOARD_SCHEMA_VERSION == 2 and board.total_votes == 1200
    assert board.overall is not None
    assert [r.model for r in board.overall.rows] == ["gpt-image-1.5", "gpt-image-1", "dall-e-3", "gpt-image-1-mini"]
    assert sum(r.votes for r in board.overall.rows) == 2 * 1200
    for r in board.overall.rows:
        assert r.rank_best <= r.rank <= r.rank_worst and r.ci_low < r.rating < r.ci_high
    assert [c.category for c in board.categories] == ["art", "photo"]
    assert [c.votes for c in board.categories] == [600, 600]
    assert board.over_time_step == 100 and [p.votes for p in board.over_time] == list(range(100, 1201, 100))
    assert board.over_time[-1].rows[0].rating == pytest.approx(board.overall.rows[0].rating)
    assert board.over_time[-1].until == T0 + 1199
    assert any("Bradley–Terry" in line for line in board.methodology)
    # round trip through the published JSON form
    assert PublicLeaderboard.model_validate_json(board.model_dump_json()) == board


def test_models_whose_intervals_overlap_share_ranks() -> None:
    """Two close models after few votes: their rank spreads overlap (neither is shown as surely ahead)."""
    frame = battle_frame(60)
    board = build_leaderboard(frame, now=T0 + 100, cutoff=T0 + 100, refresh_s=60)
    assert board.overall is not None
    rows = {r.model: r for r in board.overall.rows}
    close = rows["gpt-image-1.5"], rows["gpt-image-1"]
    assert close[0].rank_worst >= close[1].rank_best and close[0].rank_best < close[0].rank_worst


def test_only_votes_before_the_cutoff_count() -> None:
    frame = battle_frame(300)
    board = build_leaderboard(frame, now=T0 + 1000, cutoff=T0 + 150, refresh_s=60)
    assert board.total_votes == 150
    empty = build_leaderboard(frame, now=T0 + 1000, cutoff=None, refresh_s=60)
    assert empty.total_votes == 0 and empty.overall is None and empty.over_time == []
    assert any("no board yet" in n for n in empty.notes)


def test_a_category_with_one_model_says_why_it_has_no_board() -> None:
    frame = battle_frame(100)
    frame.loc[0, "category"] = "lonely"
    frame.loc[0, "model_b"] = frame.loc[0, "model_a"]  # a self-vote: nothing to rate in that category
    board = build_leaderboard(frame, now=T0 + 1000, cutoff=T0 + 1000, refresh_s=60)
    lonely = next(c for c in board.categories if c.category == "lonely")
    assert lonely.board is None and lonely.note


@given(total=st.integers(0, 10_000_000))
def test_over_time_has_at_most_twelve_points_at_round_steps(total: int) -> None:
    step = over_time_step(total)
    if total == 0:
        assert step == 0
        return
    assert step >= 10 and total // step <= 12
    assert re.fullmatch(r"[125]0*", str(step))


@settings(max_examples=60)
@given(cast_at=st.floats(0, 10_000), refresh=st.sampled_from([60.0, 300.0]), checks=st.lists(st.floats(0, 20_000),
       min_size=1, max_size=20))
def test_a_vote_appears_one_to_two_periods_after_it_was_cast(cast_at: float, refresh: float,
                                                           checks: list[float]) -> None:
    """A single vote joins the board (min batch 1) only once a whole window lies between it and the board's
    cut-off; never sooner than one period after it was cast, never later than two."""
    tstamps = pd.Series([T0 + cast_at])
    for t in sorted(checks):
        cutoff = next_cutoff(T0 + t, refresh, tstamps, 1)
        counted = cutoff is not None and T0 + cast_at < cutoff
        if t - cast_at < refresh:
            assert not counted
        if t - cast_at >= 2 * refresh:
            assert counted


def test_the_cutoff_moves_only_across_a_batch_of_votes() -> None:
    few = pd.Series([T0 + 1.0, T0 + 2.0, T0 + 3.0])
    assert next_cutoff(T0 + 300, 60, few, 10) is None
    many = pd.Series(T0 + np.arange(12.0))
    assert next_cutoff(T0 + 300, 60, many, 10) == T0 + 60
    # three more votes later on do not move it ...
    later = pd.concat([many, pd.Series([T0 + 400.0, T0 + 401.0, T0 + 402.0])])
    assert next_cutoff(T0 + 900, 60, later, 10) == T0 + 60
    # ... ten more do, even spread over windows; and not before they are a whole window old
    more = pd.concat([later, pd.Series(T0 + 500 + 10 * np.arange(7.0))])
    assert next_cutoff(T0 + 619, 60, more, 10) == T0 + 60
    assert next_cutoff(T0 + 900, 60, more, 10) == T0 + 600


@settings(max_examples=40)
@given(times=st.lists(st.floats(0, 5_000), max_size=80), batch=st.integers(1, 15),
       now=st.lists(st.floats(0, 8_000), min_size=2, max_size=6))
def test_consecutive_boards_differ_by_a_batch_and_every_server_agrees(times: list[float], batch: int,
                                                                     now: list[float]) -> None:
    """Whenever the board moves, at least ``batch`` votes joined it; and the cut-off is a function of the
    votes alone (two servers started at different times publish the same one)."""
    tstamps = pd.Series([T0 + t for t in times], dtype=float)
    cutoffs = [next_cutoff(T0 + t, 60, tstamps, batch) for t in sorted(now)]
    counted = [0 if c is None else int((tstamps < c).sum()) for c in cutoffs]
    for before, after in itertools.pairwise(counted):
        assert after == before or after - before >= batch
    assert cutoffs == [next_cutoff(T0 + t, 60, tstamps.sample(frac=1, random_state=1), batch) for t in sorted(now)]


# -- the board by ISO week ------------------------------------------------------------------------------

DAY = 86_400.0
W49 = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
"""Monday 2026-11-30 00:00 UTC, the start of ISO week 2026-W49."""


def at(frame: pd.DataFrame, times: list[float]) -> pd.DataFrame:
    """``frame`` with its votes cast at ``times`` (one per vote)."""
    assert len(times) == len(frame)
    return frame.assign(tstamp=times)


def iso_label(ts: float) -> str:
    year, week, _ = datetime.fromtimestamp(ts, tz=UTC).isocalendar()
    return f"{year}-W{week:02d}"


def test_the_board_by_week_is_cumulative_with_one_point_per_week_that_had_votes() -> None:
    """100 votes in W49, none in W50, 150 in W51, 80 in W52: three points, each counting every vote so far."""
    times = ([W49 + 3600 + 60 * k for k in range(100)] + [W49 + 14 * DAY + 600 * k for k in range(150)]
             + [W49 + 21 * DAY + 6 * DAY + 60 * k for k in range(80)])
    frame = at(battle_frame(330), times)
    board = build_leaderboard(frame, now=W49 + 40 * DAY, cutoff=W49 + 28 * DAY, refresh_s=300)
    weeks = board.over_weeks
    assert [w.week for w in weeks] == ["2026-W49", "2026-W51", "2026-W52"]
    assert [w.votes for w in weeks] == [100, 250, 330] and [w.new_votes for w in weeks] == [100, 150, 80]
    assert [w.start for w in weeks] == [W49, W49 + 14 * DAY, W49 + 21 * DAY]
    assert all(w.end == w.start + 7 * DAY and w.complete for w in weeks)
    assert weeks[-1].votes == board.total_votes
    assert board.overall is not None
    assert {r.model: r.rating for r in weeks[-1].rows} == {r.model: r.rating for r in board.overall.rows}
    # each week's board is the one fitted on the votes before that week's end, nothing later
    alone = build_leaderboard(frame.iloc[:100], now=W49 + 40 * DAY, cutoff=W49 + 28 * DAY, refresh_s=300)
    assert alone.overall is not None
    assert {r.model: r.rating for r in weeks[0].rows} == pytest.approx({r.model: r.rating for r in alone.overall.rows})
    assert sum(r.votes for r in weeks[1].rows) == 2 * 250
    # a cut-off inside W52 leaves that week running, with the votes cast before the cut-off
    running = build_leaderboard(frame, now=W49 + 40 * DAY, cutoff=W49 + 27 * DAY + 30 * 60, refresh_s=300)
    assert [w.votes for w in running.over_weeks] == [100, 250, 280] and not running.over_weeks[-1].complete
    view = board_view(running)
    assert view.week_columns[-1] == ("2026-W52 (so far)", "280 votes (+30)")
    assert len(view.week_rows) == len(MODELS) and all(len(cells) == 3 for _, cells in view.week_rows)


def test_iso_weeks_across_a_year_boundary_are_labelled_by_iso_year() -> None:
    """2026-12-31 and 2027-01-02 fall in 2026-W53 (2026 has 53 ISO weeks); 2027-01-04 starts 2027-W01."""
    days = [datetime(2026, 12, 31, 12, tzinfo=UTC), datetime(2027, 1, 2, 23, 59, tzinfo=UTC),
            datetime(2027, 1, 4, 0, 0, tzinfo=UTC)]
    times = [d.timestamp() + k for d in days for k in range(40)]
    frame = at(battle_frame(len(times)), times)
    board = build_leaderboard(frame, now=times[-1] + 10 * DAY, cutoff=times[-1] + DAY, refresh_s=60)
    labels = [w.week for w in board.over_weeks]
    assert labels == ["2026-W53", "2027-W01"] == [iso_label(days[0].timestamp()), iso_label(days[2].timestamp())]
    assert [w.votes for w in board.over_weeks] == [80, 120]
    assert board.over_weeks[1].start == datetime(2027, 1, 4, tzinfo=UTC).timestamp()
    assert board.over_weeks[0].start == datetime(2026, 12, 28, tzinfo=UTC).timestamp()


def test_an_arena_of_one_week_has_one_week_point() -> None:
    frame = battle_frame(200, start=W49 + 2 * DAY)
    board = build_leaderboard(frame, now=W49 + 3 * DAY, cutoff=W49 + 2 * DAY + 300, refresh_s=60)
    assert [(w.week, w.votes, w.new_votes, w.complete) for w in board.over_weeks] == [("2026-W49", 200, 200, False)]
    assert build_leaderboard(frame, now=W49, cutoff=None, refresh_s=60).over_weeks == []


def test_a_long_arena_shows_its_last_weeks_and_fits_each_board_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 weeks of votes: the last 26 weeks are shown, and a refresh fits no more boards than the views need
    (boards of the same first votes are shared: the last week's is the overall board)."""
    times = [W49 + 7 * DAY * week + 60 * k for week in range(30) for k in range(20)]
    frame = at(battle_frame(len(times)), times)
    calls = []
    fit = public_board._board

    def counting(group: pd.DataFrame, options: Any) -> Any:
        calls.append(len(group))
        return fit(group, options)

    monkeypatch.setattr(public_board, "_board", counting)
    board = build_leaderboard(frame, now=times[-1] + DAY, cutoff=times[-1] + 1, refresh_s=60)
    assert len(board.over_weeks) == MAX_WEEKS == 26
    assert board.over_weeks[0].week == iso_label(W49 + 4 * 7 * DAY) and board.over_weeks[-1].week == iso_label(times[-1])
    assert [w.votes for w in board.over_weeks] == [20 * (week + 1) for week in range(4, 30)]
    assert board.over_weeks[0].new_votes == 20
    per_board = 1 + len(board.categories) + len(board.kinds)
    assert len(calls) <= per_board + MAX_POINTS + MAX_WEEKS - 1
    prefix_fits = [n for n in calls if n != len(frame) // 2]  # category boards hold half the votes each
    assert len(prefix_fits) == len(set(prefix_fits))


@settings(max_examples=15, deadline=None)
@given(offsets=st.lists(st.floats(0, 400 * DAY, allow_nan=False), min_size=1, max_size=40),
       shuffle=st.integers(0, 1000))
def test_week_points_follow_the_calendar_and_end_at_the_total(offsets: list[float], shuffle: int) -> None:
    """Whatever the vote times (in any order): weeks ascend, counts only grow, each point is an ISO week
    starting on a Monday at 00:00 UTC labelled as the calendar does, and the last point counts every vote."""
    frame = at(battle_frame(len(offsets)), [W49 + t for t in offsets]).sample(frac=1, random_state=shuffle)
    last = W49 + max(offsets)
    board = build_leaderboard(frame, now=last + DAY, cutoff=last + 1, refresh_s=60)
    weeks = board.over_weeks
    assert weeks[-1].votes == board.total_votes == len(offsets)
    assert all(a.start < b.start and a.votes < b.votes for a, b in itertools.pairwise(weeks))
    assert all(w.new_votes > 0 for w in weeks)
    if len(weeks) < MAX_WEEKS:
        assert sum(w.new_votes for w in weeks) == len(offsets)
    for w in weeks:
        start = datetime.fromtimestamp(w.start, tz=UTC)
        assert start.weekday() == 0 and start.time() == datetime.min.time()
        assert w.end - w.start == timedelta(weeks=1).total_seconds() and w.week == iso_label(w.start)
        assert w.votes == sum(1 for t in offsets if W49 + t < w.end)


def test_the_served_board_carries_its_weeks_and_follows_its_schema(fresh: ArenaStore) -> None:
    import jsonschema_rs

    arena_votes(fresh, 120, T0 - 14 * DAY, seed=1)
    arena_votes(fresh, 100, T0, seed=2)
    with board_arena(fresh, Clock(T0 + 600)) as app:
        body = get_json(app)
        schema = PublicLeaderboard.json_schema()
        jsonschema_rs.validator_for(schema).validate(body)
        weeks = body["over_weeks"]
        assert [w["week"] for w in weeks] == [iso_label(T0 - 14 * DAY), iso_label(T0)]
        assert [(w["votes"], w["new_votes"]) for w in weeks] == [(120, 120), (220, 100)]

        async def page() -> str:
            async with client(app) as c:
                return (await c.get("/leaderboard")).text

        html = run(page())
    assert 'id="over-weeks"' in html and "By week" in html
    assert f"{iso_label(T0)} (so far)" in html and "220 votes (+100)" in html
    assert "cumulative" in (PublicLeaderboard.model_fields["over_weeks"].description or "")
    assert any("ISO week" in line and "UTC" in line for line in body["methodology"])


# -- served by the arena -------------------------------------------------------------------------------


def test_page_and_json_are_public_read_only_and_say_how_the_board_is_made(fresh: ArenaStore) -> None:
    clock = Clock(T0 + 30)
    arena_votes(fresh, 400, T0)
    clock.now = T0 + 10 * 60 + 1
    with board_arena(fresh, clock) as app:
        body = get_json(app)
        board = PublicLeaderboard.model_validate(body)
        assert body["schema_version"] == 2 and board.total_votes == 400
        assert board.overall is not None and {r.model for r in board.overall.rows} == set(MODELS)
        assert board.votes_until == T0 + 420 and board.rated_by == "model" and board.sources == ["arena"]

        async def page() -> httpx.Response:
            async with client(app) as c:
                return await c.get("/leaderboard")

        html = run(page())
        assert html.status_code == 200 and "set-cookie" not in html.headers
        assert html.headers["cache-control"].startswith("public, max-age=")
        assert "content-security-policy" in html.headers
        text = html.text
        for model in MODELS:
            assert model in text
        assert 'href="/"' in text and 'href="/leaderboard.json"' in text
        assert "How this board is made" in text and "Over time" in text and "By category" in text
        assert "By week" in text and board.over_weeks[0].week in text
        assert text.count("<table") == 1 + len(board.categories) + 2
        history = text[text.index('id="over-time"'):text.index('id="over-weeks"')]
        assert f"<th scope=\"col\">{board.over_time[0].votes:,} votes</th>" in history
        assert history.count('<td class="model">') == len(board.over_time[-1].rows)
        for method in ("POST", "PUT", "DELETE"):
            async def write(m: str = method) -> int:
                async with client(app) as c:
                    return (await c.request(m, "/leaderboard.json")).status_code

            assert run(write()) == 405


def test_the_board_is_fitted_once_per_window_whatever_the_traffic(fresh: ArenaStore) -> None:
    arena_votes(fresh, 200, T0)
    clock = Clock(T0 + 600)
    with board_arena(fresh, clock) as app:
        async def burst() -> list[int]:
            async with client(app) as c:
                responses = await asyncio.gather(*(c.get("/leaderboard.json") for _ in range(30)))
                return [r.status_code for r in responses]

        assert run(burst()) == [200] * 30
        assert app.state.leaderboard.fits == 1
        clock.now += 59
        run(burst())
        assert app.state.leaderboard.fits == 1
        clock.now += 1
        run(burst())
        assert app.state.leaderboard.fits == 2


def test_a_voter_watching_the_board_learns_nothing_about_their_own_votes(fresh: ArenaStore) -> None:
    """Hostile voters (15 cookies and addresses, so no pair runs out) vote through the API and fetch the
    board after every vote, for a whole window: the board never moves; it moves only at a later window,
    with every vote of the batch at once."""
    clock = Clock(T0 + 1)
    arena_votes(fresh, 50, T0 - 3600)  # an older, published batch
    with board_arena(fresh, clock) as app:
        async def vote_and_watch() -> list[dict[str, Any]]:
            seen = []
            async with client(app) as c:
                seen.append((await c.get("/leaderboard.json")).json())
            for k in range(15):
                async with client(app, f"10.0.0.{k + 1}") as c:
                    pair = (await c.get("/api/pair")).json()
                    (await c.post("/api/vote", json={"token": pair["token"], "outcome": "left"})).raise_for_status()
                    clock.now += 2
                    seen.append((await c.get("/leaderboard.json")).json())
            return seen

        seen = run(vote_and_watch())
        assert all(s["total_votes"] == 50 for s in seen)
        assert all(s["overall"] == seen[0]["overall"] for s in seen)
        clock.now = T0 + 60 + 1  # one window later: the votes are still less than a whole window old
        assert get_json(app)["total_votes"] == 50
        clock.now = T0 + 120 + 1
        assert get_json(app)["total_votes"] == 65


def test_the_board_shows_aggregates_only_and_escapes_names(fresh: ArenaStore) -> None:
    """No voter id, pair id, image address or single vote time appears; hostile model names are text."""
    hostile = '<script>alert("board")</script>'
    votes = [Vote(vote_uid=f"h-{k}", left_target="mini@openai", right_target="dalle3@openai", left_model=hostile,
                  right_model="dall-e-3", outcome="left" if k % 3 else "right", voted_at=T0 + k, source="arena",
                  run_id=fresh.run_id, category="photorealism", voter=f"secret-voter-{k}", pair_id=f"pair-{k}")
             for k in range(40)]
    with Store.open(fresh.db) as s:
        insert_votes(s, votes)
    clock = Clock(T0 + 600)
    with board_arena(fresh, clock) as app:
        body = get_json(app)
        raw = str(body)
        assert "secret-voter" not in raw and "pair-" not in raw and "/img/" not in raw
        assert all(float(T0 + k) not in (body["votes_until"], body["generated_at"]) for k in range(1, 40))

        async def page() -> str:
            async with client(app) as c:
                return (await c.get("/leaderboard")).text

        html = run(page())
        assert hostile not in html and "&lt;script&gt;" in html
        assert "secret-voter" not in html


def test_the_pair_page_links_the_leaderboard_and_names_nothing(fresh: ArenaStore) -> None:
    arena_votes(fresh, 100, T0)
    clock = Clock(T0 + 600)
    with board_arena(fresh, clock) as app:
        async def page() -> str:
            async with client(app) as c:
                return (await c.get("/")).text

        html = run(page())
        assert 'href="/leaderboard"' in html
        assert leaks(html, fresh.names) == []


def test_a_refresh_below_one_second_is_refused(fresh: ArenaStore) -> None:
    config = ArenaConfig(db=fresh.db, cache_dir=fresh.cache_dir)
    with pytest.raises(ConfigError, match="leaderboard refresh must be at least 1 s"):
        create_app(config, leaderboard_refresh_s=0.5)


def test_the_json_schema_is_published_beside_the_board(fresh: ArenaStore) -> None:
    arena_votes(fresh, 100, T0)
    with board_arena(fresh, Clock(T0 + 600)) as app:
        schema = get_json(app, "/leaderboard.schema.json")
        body = get_json(app)
    assert schema["$id"].endswith(":arena-leaderboard:v2")
    assert set(schema["required"]) <= set(body) and set(body) <= set(schema["properties"])
    assert schema["properties"]["schema_version"]["const"] == body["schema_version"] == 2


def test_an_arena_pairing_targets_rates_targets(fresh: ArenaStore) -> None:
    arena_votes(fresh, 100, T0)
    config = ArenaConfig(db=fresh.db, cache_dir=fresh.cache_dir, pair_by="target")
    app = create_app(config, clock=Clock(T0 + 600), leaderboard_refresh_s=60)
    try:
        body = PublicLeaderboard.model_validate(get_json(app))
    finally:
        app.state.leaderboard.close()
        app.state.arena.close()
    assert body.rated_by == "target" and body.overall is not None
    assert {r.model for r in body.overall.rows} == set(TARGET.values())
