"""A recognition bot against the arena's blindness (issue 12, item 6).

The bot keeps, for every image a vote revealed, its SHA-256 (exact) and a 64-bit dHash (perceptual), mapped
to the target the reveal named. Before each vote it checks whether it already knows either side: by exact
hash, or by a dHash within 8 bits of a known one. Today's arena let it know 28 of 300 servings after 150
votes; the goal is **0** from one identity (one cookie, one address), whatever it does, and a reported
share when it spreads over many identities (a fresh cookie and address per vote), where only the serving
cap bounds it.

The pool: a sandbox run of 7 targets x 140 challenges x 3 samples whose outputs are then replaced by
distinct synthetic pictures (the sandbox draws few distinct images per model, and 1,000 votes from one
identity need over 2,000 outputs it has never seen revealed). Images are served at 128 px to keep the
encoding cost (paid once per output, then cached) small on two shared cores; figures vary with other
people's load, so compare within one run.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from harness.arena.app import create_app
from harness.arena.blind import reencode
from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.phash import dhash, distance
from harness.challenges import load
from harness.run import RunOptions, start_run
from harness.store import Store
from harness.targets import load_targets, resolve_keys, select
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

T = TypeVar("T")
TARGETS = ("gemini-2.5-flash-image@google", "gemini-3.1-flash-image-preview@google",
           "gemini-3-pro-image-preview@google", "gpt-image-1@openai", "gpt-image-1.5@openai", "flux-dev@fal",
           "sd-3.5-large@fal")
CHALLENGES, SAMPLES = 140, 3
VOTES = 1000
BOT_NEAR_BITS = 8
SIDE = 128
OPEN = RateLimit(per_minute=1e7, burst=1_000_000)


def picture(seed: int) -> bytes:
    """A distinct synthetic picture: random shapes in random colours on a random background."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (384, 384), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(-100, 384, 2))
        w, h = (int(v) for v in rng.integers(40, 260, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # the pixels are what count; zlib's default level is 4x slower
    return out.getvalue()


def build_pool(root: Path) -> Path:
    suite = root / "suite"
    suite.mkdir(parents=True)
    lines = ["challenges:"]
    for i in range(CHALLENGES):
        lines += [f"  - id: c{i}", f"    title: Challenge {i}", "    category: illustration",
                  "    kind: text-to-image", f"    prompt: 'Picture number {i}'"]
    (suite / "suite.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    chosen = select(load_targets(), list(TARGETS))
    options = RunOptions(sandbox=True, time_scale=0.002, samples=SAMPLES, timeout_s=4000, connect_timeout_s=1000,
                         concurrency=8, respect_limits=False, sandbox_faults=False)
    db = root / "results" / "harness.db"
    start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options)
    with Store.open(db) as store:
        outputs = store.conn.execute("SELECT attempt_id, idx FROM outputs").fetchall()
        for attempt_id, idx in outputs:
            sha = store.put_image(picture(attempt_id * 16 + idx), "png")
            store.conn.execute("UPDATE outputs SET sha256=?, ext='png', width=384, height=384 WHERE attempt_id=?"
                               " AND idx=?", (sha, attempt_id, idx))
    return db


@pytest.fixture(scope="module")
def pool_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pool(tmp_path_factory.mktemp("blind-pool"))


class Bot:
    """What a recognition bot knows: exact and perceptual hashes of every revealed image, by target."""

    def __init__(self) -> None:
        self.exact: dict[str, str] = {}
        self.hashes = np.zeros(0, dtype=np.uint64)

    def knows(self, data: bytes) -> tuple[bool, bool]:
        """(known by SHA-256, known by dHash within BOT_NEAR_BITS)."""
        h = dhash(data)
        near = bool(len(self.hashes)) and int(np.bitwise_count(self.hashes ^ np.uint64(h)).min()) <= BOT_NEAR_BITS
        return hashlib.sha256(data).hexdigest() in self.exact, near

    def learn(self, data: bytes, target: str) -> None:
        self.exact[hashlib.sha256(data).hexdigest()] = target
        self.hashes = np.append(self.hashes, np.uint64(dhash(data)))


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def campaign(app: Any, votes: int, *, many_identities: bool) -> dict[str, Any]:
    """The bot votes ``votes`` times (or until the arena has nothing left for it), from one identity or a
    fresh cookie and address per vote; counts pairs where it knew a side before voting."""
    bot = Bot()
    exact_pairs = near_pairs = exact_sides = near_sides = done = 0
    pair_ms: list[float] = []
    ended = "votes done"
    one = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 40000)),
                            base_url="http://arena.test")
    try:
        for n in range(votes):
            if many_identities:
                ip = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
                                           base_url="http://arena.test")
            else:
                client = one
            try:
                t = time.perf_counter()
                answer = await client.get("/api/pair")
                if answer.status_code == 404:
                    ended = f"arena had nothing left after {done} votes"
                    break
                pair = answer.raise_for_status().json()
                images = [(await client.get(pair[side]["url"])).raise_for_status().content
                          for side in ("left", "right")]
                pair_ms.append((time.perf_counter() - t) * 1000)
                known = [bot.knows(data) for data in images]
                exact_sides += sum(k[0] for k in known)
                near_sides += sum(k[1] for k in known)
                exact_pairs += any(k[0] for k in known)
                near_pairs += any(k[0] or k[1] for k in known)
                reveal = await client.post("/api/vote", json={"token": pair["token"], "outcome": "tie"})
                if reveal.status_code != 200:
                    continue
                body = reveal.json()
                bot.learn(images[0], body["left"]["target"])
                bot.learn(images[1], body["right"]["target"])
                done += 1
            finally:
                if many_identities:
                    await client.aclose()
    finally:
        await one.aclose()
    return {"votes": done, "ended": ended, "pairs_known_exact": exact_pairs, "pairs_known_perceptual": near_pairs,
            "sides_known_exact": exact_sides, "sides_known_perceptual": near_sides,
            "share_pairs_known": round(near_pairs / max(done, 1), 4),
            "pair_ms_p50": round(float(np.percentile(pair_ms, 50)), 1) if pair_ms else None,
            "pair_ms_p99": round(float(np.percentile(pair_ms, 99)), 1) if pair_ms else None}


def arena_over(db: Path, cache: Path, **settings: Any) -> Any:
    config = ArenaConfig(db=db, cache_dir=cache, image_side=SIDE, voter_votes=OPEN, ip_votes=OPEN,
                         ip_new_voters=OPEN, min_exposure=0, **settings)
    return create_app(config)


def test_one_identity_voting_1000_times_never_knows_a_side(benchmark: Any, pool_db: Path, tmp_path: Path) -> None:
    results: list[dict[str, Any]] = []

    def one_round() -> None:
        store = clone_store(ArenaStore(pool_db, "", pool_db.parent / "arena-cache"), tmp_path / f"r{len(results)}")
        app = arena_over(store.db, store.cache_dir)
        try:
            results.append(run(campaign(app, VOTES, many_identities=False)))
        finally:
            app.state.arena.close()

    benchmark.pedantic(one_round, rounds=2, iterations=1)
    for i, r in enumerate(results):
        print(f"\nround {i + 1}, one identity (one cookie, one address): {r}")
    benchmark.extra_info["rounds"] = results
    assert all(r["votes"] == VOTES for r in results)
    assert all(r["sides_known_exact"] == r["sides_known_perceptual"] == 0 for r in results)


def test_many_identities_share_of_pairs_already_known(benchmark: Any, pool_db: Path, tmp_path: Path,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fresh cookie and address per vote (a botnet, or a proxy the operator trusts too much): the
    arena cannot tell the bot's identities apart, so only the serving cap bounds what it learns. Reported
    for the large pool (about 2,900 outputs) and for the small test arena (20 outputs), at the default cap
    and uncapped."""
    small = build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")
    results: dict[str, dict[str, Any]] = {}

    def rounds() -> None:
        for name, source_db, cap in (("large pool, cap 50", pool_db, 50), ("small pool, cap 50", small.db, 50),
                                     ("small pool, no cap", small.db, None)):
            folder = tmp_path / name.replace(" ", "-").replace(",", "")
            store = clone_store(ArenaStore(source_db, "", source_db.parent / "arena-cache"), folder)
            app = arena_over(store.db, store.cache_dir, max_servings=cap)
            try:
                results[name] = run(campaign(app, VOTES, many_identities=True))
            finally:
                app.state.arena.close()

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    for name, r in results.items():
        print(f"\n{name}, a fresh identity per vote: {r}")
    benchmark.extra_info.update(results)
    assert results["large pool, cap 50"]["votes"] == VOTES
    assert results["small pool, cap 50"]["votes"] <= 20 * 50 // 2  # the cap ends the campaign


def test_cached_blind_image_against_a_fresh_encode_per_serving(benchmark: Any, pool_db: Path) -> None:
    """Why outputs are encoded once and cached: what a fresh encode per serving would cost (and it would
    defeat only exact hashes, not a dHash)."""
    with Store.open(pool_db, readonly=True) as store:
        sha, ext = store.conn.execute("SELECT sha256, ext FROM outputs LIMIT 1").fetchone()
        data = store.image_path(sha, ext).read_bytes()
    timings: list[float] = []

    def fresh() -> bytes:
        t = time.perf_counter()
        out = reencode(data, 1024, canvas=(1024, 1024))
        timings.append(time.perf_counter() - t)
        return out

    benchmark.pedantic(fresh, rounds=5, iterations=1)
    a, b = reencode(data, 1024, canvas=(1024, 1024)), reencode(data, 1024, canvas=(1024, 1024), quality=89)
    print(f"\nfresh 1024-px encode per serving: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}; "
          f"dHash distance between two encodes: {distance(dhash(a), dhash(b))} bits (a bot still knows it)")
    assert distance(dhash(a), dhash(b)) <= BOT_NEAR_BITS
