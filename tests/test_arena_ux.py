"""The voter's side of the arena: a skip is recorded but is not a vote (never in the ratings, no names
revealed, the pair cannot be voted afterwards), the voter's own vote counter, and the page's links and
controls. The store half runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.store import Store
from harness.store import skips as skip_store
from harness.store import votes as vote_store
from tests.test_arena_api import arena, client, leaks, rows, run
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store


@pytest.fixture(scope="session")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


@pytest.fixture
def fresh(tmp_path: Path, arena_store: ArenaStore) -> ArenaStore:
    return clone_store(arena_store, tmp_path / "store")


# -- the store: both backends ----------------------------------------------------------------------------


def served(pair_id: str, voter: str, expires_at: float = 2e9) -> vote_store.ServedPair:
    side = vote_store.ServedSide("run", "a@x", "a", "x", 1, "aa" * 32)
    other = vote_store.ServedSide("run", "b@y", "b", "y", 2, "bb" * 32)
    return vote_store.ServedPair(pair_id, voter, "m/default/abc", "m", "default", "photo", "text-to-image", side,
                                 other, 1e9, expires_at)


def test_a_pair_is_skipped_once_by_its_own_voter_while_open(store_url: str) -> None:
    with Store.open(store_url) as store:
        for pair_id, expires in (("p1", 2e9), ("p2", 2e9), ("p3", 1e9 + 10), ("p4", 2e9)):
            vote_store.record_served_pair(store, served(pair_id, "alice", expires), [])
        assert skip_store.record_skip(store, pair_id="p1", voter="alice", skipped_at=1e9 + 5, client_ms=800) == "skipped"
        assert skip_store.record_skip(store, pair_id="p1", voter="alice", skipped_at=1e9 + 6) == "used"
        assert skip_store.record_skip(store, pair_id="p2", voter="mallory", skipped_at=1e9 + 5) == "wrong_voter"
        assert skip_store.record_skip(store, pair_id="p3", voter="alice", skipped_at=1e9 + 20) == "expired"
        assert skip_store.record_skip(store, pair_id="nope", voter="alice", skipped_at=1e9 + 5) == "unknown"
        cast = vote_store.cast_vote(store, pair_id="p4", voter="alice", outcome="left", voted_at=1e9 + 7,
                                    vote_uid="u4")
        assert cast.status == "accepted"
        assert skip_store.record_skip(store, pair_id="p4", voter="alice", skipped_at=1e9 + 8) == "used"
        assert skip_store.is_skipped(store, "p1") and not skip_store.is_skipped(store, "p2")
        assert skip_store.count_skips(store) == 1
        assert skip_store.voter_tally(store, "alice") == skip_store.VoterTally(votes=1, skips=1)
        assert skip_store.voter_tally(store, "mallory") == skip_store.VoterTally(votes=0, skips=0)
        # skips never reach the ratings' input
        assert len(vote_store.battles_frame(store)) == 1


# -- the API -----------------------------------------------------------------------------------------------


def test_a_skip_is_recorded_reveals_nothing_and_never_counts_as_a_vote(fresh: ArenaStore) -> None:
    with arena(fresh) as app:
        async def go() -> tuple[list[httpx.Response], httpx.Response, dict[str, Any]]:
            async with client(app) as c:
                answers = []
                for _ in range(5):
                    pair = (await c.get("/api/pair")).json()
                    answers.append(await c.post("/api/skip", json={"token": pair["token"], "client_ms": 1200}))
                pair = (await c.get("/api/pair")).json()
                vote = await c.post("/api/vote", json={"token": pair["token"], "outcome": "left"})
                return answers, vote, (await c.get("/api/health")).json()

        answers, vote, health = run(go())
    for k, answer in enumerate(answers, start=1):
        assert answer.status_code == 200 and answer.json() == {"skipped": True, "votes_cast": 0, "skips": k}
        assert leaks(answer.text, fresh.names) == []
    assert vote.status_code == 200 and vote.json()["votes_cast"] == 1
    assert health["votes"] == 1
    assert rows(fresh.db, "SELECT COUNT(*) FROM votes") == [(1,)]
    assert rows(fresh.db, "SELECT COUNT(*), MIN(client_ms) FROM arena_skips") == [(5, 1200.0)]
    with Store.open(fresh.db) as store:
        assert len(vote_store.battles_frame(store)) == 1


def test_a_skipped_pair_cannot_be_voted_and_a_voted_pair_cannot_be_skipped(fresh: ArenaStore) -> None:
    with arena(fresh) as app:
        async def go() -> list[int]:
            async with client(app) as c, client(app, "127.0.0.9") as mallory:
                (await mallory.get("/api/pair")).raise_for_status()
                skipped = (await c.get("/api/pair")).json()
                voted = (await c.get("/api/pair")).json()
                return [
                    (await mallory.post("/api/skip", json={"token": skipped["token"]})).status_code,
                    (await c.post("/api/skip", json={"token": skipped["token"]})).status_code,
                    (await c.post("/api/skip", json={"token": skipped["token"]})).status_code,
                    (await c.post("/api/vote", json={"token": skipped["token"], "outcome": "left"})).status_code,
                    (await c.post("/api/vote", json={"token": voted["token"], "outcome": "tie"})).status_code,
                    (await c.post("/api/skip", json={"token": voted["token"]})).status_code,
                    (await c.post("/api/skip", json={"token": "forged.token.value"})).status_code,
                    (await c.post("/api/skip", content=b'{"token": "x"}',
                                  headers={"content-type": "text/plain"})).status_code,
                ]

        assert run(go()) == [403, 200, 409, 409, 200, 409, 403, 415]
    assert rows(fresh.db, "SELECT outcome FROM votes") == [("tie",)]


def test_skips_need_the_voter_cookie_and_the_same_origin(fresh: ArenaStore) -> None:
    with arena(fresh) as app:
        async def go() -> list[int]:
            async with client(app) as c:
                pair = (await c.get("/api/pair")).json()
                cross = await c.post("/api/skip", json={"token": pair["token"]},
                                     headers={"sec-fetch-site": "cross-site"})
            async with client(app) as stranger:
                cookieless = await stranger.post("/api/skip", json={"token": pair["token"]})
            return [cross.status_code, cookieless.status_code]

        assert run(go()) == [403, 403]
    assert rows(fresh.db, "SELECT COUNT(*) FROM arena_skips") == [(0,)]


def test_the_page_shows_the_voters_own_count_and_the_controls(fresh: ArenaStore) -> None:
    with arena(fresh) as app:
        async def go() -> tuple[str, str]:
            async with client(app) as c:
                first = (await c.get("/")).text
                for _ in range(3):
                    pair = (await c.get("/api/pair")).json()
                    (await c.post("/api/vote", json={"token": pair["token"], "outcome": "tie"})).raise_for_status()
                return first, (await c.get("/")).text

        first, later = run(go())
    assert '<span id="votes-cast">0</span>' in first and '<span id="votes-cast">3</span>' in later
    for control in ('href="/leaderboard"', 'id="skip"', 'aria-label="Enlarge left image"',
                    'aria-label="Enlarge right image"', '<dialog id="zoom"'):
        assert control in later
    assert leaks(later, fresh.names) == []
