"""Several app servers over one store: ``harness arena serve --workers N`` (a :class:`WorkerPool`) and
separate servers sharing a PostgreSQL store and a secret, as several hosts behind a proxy would.

Voters are httpx clients, each with its own cookie and keep-alive connection (so the kernel spreads them
over the workers); the store, not the client, says what was recorded. A worker killed with SIGKILL while
votes are in flight loses no vote that was answered 200 and doubles none; a pair token consumed on one
server is refused on every other."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.arena.config import ArenaConfig, RateLimit, secret_bytes
from harness.arena.server import WorkerPool
from harness.store import Store
from harness.store.transfer import migrate
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

SECRET = secret_bytes("workers-test-secret-0123456789")
ROOMY = RateLimit(per_minute=600_000.0, burst=10_000)
OUTCOMES = ("left", "right", "tie", "both_bad")


@pytest.fixture(scope="module")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


def pg_copy(cluster: Any, store: ArenaStore) -> str:
    """The sandbox store copied into a fresh schema of the throwaway cluster (images: the same folder)."""
    schema = f"s_{os.urandom(6).hex()}"
    cluster.admin(f"CREATE SCHEMA {schema}")
    url = str(cluster.url("postgres", options=f"-c search_path={schema}", images=str(store.db.parent / "images")))
    with Store.open(store.db, readonly=True) as source, Store.open(url) as destination:
        migrate(source, destination)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path, arena_store: ArenaStore) -> Path:
    if request.param == "sqlite":
        return clone_store(arena_store, tmp_path / "store").db
    return Path(pg_copy(request.getfixturevalue("pg_cluster"), arena_store))


def config(db: Path, cache: Path) -> ArenaConfig:
    return ArenaConfig(db=db, cache_dir=cache, secret=SECRET, voter_votes=ROOMY, ip_votes=ROOMY, ip_new_voters=ROOMY,
                       max_servings=None, reveal_memory="off", shared_rate_limits=True, pool_refresh_s=None)


@pytest.fixture
def pg_db(pg_cluster: Any, arena_store: ArenaStore) -> Path:
    return Path(pg_copy(pg_cluster, arena_store))


def stored_votes(db: Path) -> list[tuple[str, str]]:
    with Store.open(db, readonly=True) as store:
        return [(str(r[0]), str(r[1])) for r in store.conn.execute("SELECT pair_id, vote_uid FROM votes")]


def pair_id(token: str) -> str:
    return token.split(".", 1)[0]


@pytest.fixture
def pool_of_two(store_db: Path, tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(config(store_db, tmp_path / "cache"), workers=2).start()
    try:
        yield pool
    finally:
        pool.stop()


async def vote_rounds(url: str, voters: int, rounds: int) -> list[tuple[str, int, str]]:
    """Each voter fetches a pair, both its images, then votes on it, ``rounds`` times: (token, status, vote id)."""
    async def voter(n: int) -> list[tuple[str, int, str]]:
        out = []
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for i in range(rounds):
                pair = (await client.get("/api/pair")).raise_for_status().json()
                for side in ("left", "right"):
                    (await client.get(pair[side]["url"])).raise_for_status()
                answer = await client.post("/api/vote", json={"token": pair["token"], "outcome": OUTCOMES[(n + i) % 4]})
                out.append((pair["token"], answer.status_code, answer.json().get("vote_id", "")))
        return out

    return [r for batch in await asyncio.gather(*(voter(n) for n in range(voters))) for r in batch]


def test_two_workers_serve_one_arena_and_every_vote_is_stored_once(pool_of_two: WorkerPool, store_db: Path) -> None:
    assert len(set(pool_of_two.pids)) == 2
    results = asyncio.run(vote_rounds(pool_of_two.url, voters=8, rounds=5))
    assert [status for _, status, _ in results] == [200] * 40
    stored = stored_votes(store_db)
    assert sorted(uid for _, uid in stored) == sorted(uid for _, _, uid in results)
    assert sorted(p for p, _ in stored) == sorted(pair_id(t) for t, _, _ in results)


def test_a_token_voted_on_one_server_is_refused_on_the_other(pg_db: Path, tmp_path: Path) -> None:
    """Two servers (two hosts, in effect) share the store and the secret: a pair served by A can be voted on
    B, once; every replay, on either server, is refused."""
    a = WorkerPool(config(pg_db, tmp_path / "cache-a"), workers=1).start()
    b = WorkerPool(config(pg_db, tmp_path / "cache-b"), workers=1).start()
    try:
        with httpx.Client(base_url=a.url, timeout=30) as on_a, httpx.Client(base_url=b.url, timeout=30) as on_b:
            tokens = [on_a.get("/api/pair").raise_for_status().json()["token"] for _ in range(10)]
            on_b.cookies.update(on_a.cookies)
            first = [on_b.post("/api/vote", json={"token": t, "outcome": "left"}).status_code for t in tokens]
            replays = [c.post("/api/vote", json={"token": t, "outcome": "right"}).status_code
                       for t in tokens for c in (on_a, on_b)]
    finally:
        a.stop()
        b.stop()
    assert first == [200] * 10
    assert replays == [409] * 20
    assert sorted(p for p, _ in stored_votes(pg_db)) == sorted(pair_id(t) for t in tokens)


def test_a_pairs_images_load_from_a_server_that_did_not_serve_it(pg_db: Path, tmp_path: Path) -> None:
    """A proxy may send a page to host A and its images to host B: B finds the image ids A recorded in the
    store (A answers them from its own memory of what it served) and both give the same bytes; an id that
    was never served is 404 on both."""
    a = WorkerPool(config(pg_db, tmp_path / "cache-a"), workers=1).start()
    b = WorkerPool(config(pg_db, tmp_path / "cache-b"), workers=1).start()
    try:
        with httpx.Client(base_url=a.url, timeout=30) as on_a, httpx.Client(base_url=b.url, timeout=30) as on_b:
            pairs = [on_a.get("/api/pair").raise_for_status().json() for _ in range(3)]
            urls = [p[side]["url"] for p in pairs for side in ("left", "right")]
            from_b = [on_b.get(u).raise_for_status().content for u in urls]
            from_a = [on_a.get(u).raise_for_status().content for u in urls]
            unknown = "/img/" + "A" * len(urls[0].rsplit("/", 1)[1])
            missing = [on_a.get(unknown).status_code, on_b.get(unknown).status_code]
    finally:
        a.stop()
        b.stop()
    assert from_a == from_b
    assert all(data[8:12] == b"WEBP" for data in from_a)
    assert missing == [404, 404]


def test_a_voters_rate_limit_holds_across_servers(pg_db: Path, tmp_path: Path) -> None:
    """A voter allowed 3 votes a minute (so 6 pairs: pairs are twice the votes) gets 6 pairs in all from two
    servers sharing the store, not 6 from each; the 7th is refused with 429 and Retry-After on both."""
    tight = dataclasses.replace(config(pg_db, tmp_path / "cache"), voter_votes=RateLimit(3.0, 3))
    a = WorkerPool(tight, workers=1).start()
    b = WorkerPool(dataclasses.replace(tight, cache_dir=tmp_path / "cache-b"), workers=1).start()
    try:
        with httpx.Client(base_url=a.url, timeout=30) as on_a, httpx.Client(base_url=b.url, timeout=30) as on_b:
            statuses = [on_a.get("/api/pair").status_code]
            on_b.cookies.update(on_a.cookies)
            statuses += [c.get("/api/pair").status_code for _ in range(4) for c in (on_b, on_a)]
            refused = on_b.get("/api/pair")
    finally:
        a.stop()
        b.stop()
    assert statuses == [200] * 6 + [429] * 3
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_a_worker_killed_mid_vote_loses_no_answered_vote_and_doubles_none(pg_db: Path, tmp_path: Path) -> None:
    """16 voters fetch 30 pairs each, then vote back to back while one of two workers is killed with SIGKILL
    (and restarted). A vote cut off by the kill is retried with the same token: the store answers either
    200 (the first attempt never committed) or 409 (it did). Afterwards the store holds exactly one vote per
    token answered 200 or 409-after-a-cut, with every vote id answered 200."""
    pool = WorkerPool(config(pg_db, tmp_path / "cache"), workers=2).start()
    victim = pool.pids[0]
    cut: list[str] = []

    async def vote_all(client: httpx.AsyncClient, n: int, tokens: list[str]) -> list[tuple[str, int, str]]:
        out = []
        for token in tokens:
            body = {"token": token, "outcome": OUTCOMES[n % 4]}
            for _ in range(100):
                try:
                    answer = await client.post("/api/vote", json=body)
                    break
                except httpx.TransportError:
                    cut.append(token)
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("no worker answered a vote for 5 s")
            out.append((token, answer.status_code, answer.json().get("vote_id", "")))
        return out

    async def load() -> list[tuple[str, int, str]]:
        clients = [httpx.AsyncClient(base_url=pool.url, timeout=30) for _ in range(16)]
        try:
            tokens = [[(await c.get("/api/pair")).raise_for_status().json()["token"] for _ in range(30)]
                      for c in clients]
            asyncio.get_running_loop().call_later(0.3, os.kill, victim, signal.SIGKILL)
            voting = (vote_all(c, n, t) for n, (c, t) in enumerate(zip(clients, tokens, strict=True)))
            batches = await asyncio.gather(*voting)
        finally:
            for c in clients:
                await c.aclose()
        return [r for batch in batches for r in batch]

    try:
        results = asyncio.run(load())
        assert pool.supervise() == 1 and victim not in pool.pids
    finally:
        pool.stop()
    answered = {pair_id(t): uid for t, status, uid in results if status == 200}
    already = {pair_id(t) for t, status, _ in results if status == 409}
    assert len(results) == 16 * 30 and {status for _, status, _ in results} <= {200, 409}
    assert already <= {pair_id(t) for t in cut}  # a 409 only ever follows a cut-off first attempt
    stored = stored_votes(pg_db)
    assert len(stored) == len({p for p, _ in stored})  # no pair voted twice
    assert {p for p, _ in stored} == set(answered) | already == {pair_id(t) for t, _, _ in results}
    assert {uid for p, uid in stored if p in answered} == set(answered.values())
    print(f"\nkilled worker {victim}: {len(results)} votes, {len(cut)} cut off by the kill, {len(already)} of "
          "those had committed before it")


def test_serve_with_two_workers_from_the_command_line_and_stop_on_sigterm(tmp_path: Path,
                                                                           arena_store: ArenaStore) -> None:
    """``harness arena serve --workers 2`` on SQLite: one port, two worker processes sharing a secret drawn
    once, rate limits in the store; SIGTERM stops the parent and every worker."""
    import subprocess
    import sys

    from tests.conftest import free_port

    db = clone_store(arena_store, tmp_path / "store").db
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_ARENA_SECRET"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "arena", "serve", "--db", str(db), "--port", str(port),
                             "--workers", "2", "--refresh", "5s"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "arena did not start"
                time.sleep(0.2)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            voted = []
            for _ in range(4):
                token = client.get("/api/pair").raise_for_status().json()["token"]
                voted.append(client.post("/api/vote", json={"token": token, "outcome": "tie"}).status_code)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert health.status_code == 200 and voted == [200] * 4
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    assert proc.returncode == 0
    assert "drawn once and shared by the 2 workers" in err and "rate limits in the store" in err
    assert "re-read every 5 s" in err
    def gone(pid: str) -> bool:
        try:
            return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        except FileNotFoundError:
            return True

    # multiprocessing's resource tracker leaves when its pipe from the parent closes, a moment after the parent
    lingering = [c for c in children if not gone(c)]
    deadline = time.monotonic() + 10
    while lingering and time.monotonic() < deadline:
        time.sleep(0.1)
        lingering = [c for c in lingering if not gone(c)]
    assert not lingering, f"processes outlived the arena: {lingering}"
    assert len(stored_votes(db)) == 4
