"""Blindness against geometry and recognition, and every validated format served.

A bot keeps the SHA-256 and a 64-bit dHash of every image a vote revealed; the arena must never show the
same voter (cookie or address) one of those again, even after a restart, nor anything perceptually the
same. Letterbox bars must never show an image's native aspect ratio. AVIF outputs are served, or left out
with a logged reason when Pillow cannot decode them; no pair ever answers 500.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, features

from harness.arena.phash import NEAR_BITS, dhash, distance
from harness.store import Store
from tests.test_arena_api import arena, client, rows, run
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store


@pytest.fixture(scope="module")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


@pytest.fixture
def fresh(tmp_path: Path, arena_store: ArenaStore) -> ArenaStore:
    return clone_store(arena_store, tmp_path / "store")


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def set_output(db: Path, challenge: str, target: str, data: bytes, ext: str) -> str:
    """Replace a target's stored output for ``challenge`` (every variant) with ``data``."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    with Store.open(db) as store:
        sha = store.put_image(data, ext)
        store.conn.execute(
            "UPDATE outputs SET sha256=?, ext=?, width=?, height=? WHERE attempt_id IN (SELECT id FROM attempts"
            " WHERE challenge_id=? AND target=?)", (sha, ext, width, height, challenge, target))
    return sha


def set_params(db: Path, challenge: str, **params: Any) -> None:
    with sqlite3.connect(db) as conn:
        for rowid, text in list(conn.execute("SELECT rowid, challenge_json FROM run_challenges")):
            data = json.loads(text)
            if data["id"] == challenge:
                data["params"].update(params)
                conn.execute("UPDATE run_challenges SET challenge_json=? WHERE rowid=?", (json.dumps(data), rowid))


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_no_letterbox_shows_a_models_native_aspect_ratio(fresh: ArenaStore) -> None:
    """The lake asks for 16:9; one model answers 1536x1024, another 1024x1536, another square. Every side
    of every pair fills the same 16:9 box edge to edge: no bar, so nothing shows the native ratio."""
    set_params(fresh.db, "lake", aspect_ratio="16:9")
    set_output(fresh.db, "lake", "mini@openai", encoded(solid((1536, 1024), (220, 20, 20)), "PNG"), "png")
    set_output(fresh.db, "lake", "dalle3@openai", encoded(solid((1024, 1536), (20, 20, 220)), "PNG"), "png")
    set_output(fresh.db, "lake", "gpt-image-1@openai", encoded(solid((1024, 1024), (20, 200, 20)), "PNG"), "png")

    async def go() -> list[tuple[dict[str, Any], list[np.ndarray]]]:
        seen = []
        async with client(app) as c:
            for _ in range(40):
                pair = (await c.get("/api/pair")).json()
                if pair["challenge"]["title"] != "Lake at dawn":
                    continue
                pixels = []
                for side in ("left", "right"):
                    with Image.open(io.BytesIO((await c.get(pair[side]["url"])).content)) as img:
                        pixels.append(np.asarray(img.convert("RGB"), dtype=int))
                seen.append((pair, pixels))
        return seen

    with arena(fresh, min_exposure=0, image_side=512) as app:
        seen = run(go())
    assert len(seen) >= 5
    for pair, pixels in seen:
        assert (pair["left"]["width"], pair["left"]["height"]) == (pair["right"]["width"], pair["right"]["height"]) \
            == (512, 288)
        for image in pixels:
            assert image.shape == (288, 512, 3)
            spread = image.reshape(-1, 3).std(axis=0)
            if spread.max() < 2:  # one of the solid outputs: it must fill the whole box, corner to corner
                assert (np.abs(image[[0, 0, -1, -1], [0, -1, 0, -1]] - image[144, 256]) < 8).all()
            grey_rows = (np.abs(image - 128) < 10).all(axis=2).all(axis=1)
            grey_cols = (np.abs(image - 128) < 10).all(axis=2).all(axis=0)
            assert not grey_rows.any() and not grey_cols.any()


def bot_view(data: bytes) -> tuple[str, int]:
    """What a recognition bot keeps of an image: exact and perceptual hashes."""
    return hashlib.sha256(data).hexdigest(), dhash(data)


def known(view: tuple[str, int], revealed: dict[str, int]) -> bool:
    sha, h = view
    return sha in revealed or any(distance(h, other) <= NEAR_BITS - 2 for other in revealed.values())


async def vote_until_exhausted(app: Any, ip: str = "127.0.0.1", cookies: Any = None,
                               revealed: dict[str, int] | None = None, limit: int = 200) -> tuple[int, int, Any]:
    """Vote as one identity until the arena has nothing left; ``(votes, sides known before voting, cookies)``."""
    revealed = {} if revealed is None else revealed
    votes = known_sides = 0
    async with client(app, ip=ip) as c:
        if cookies is not None:
            c.cookies = cookies
        for _ in range(limit):
            answer = await c.get("/api/pair")
            if answer.status_code == 404:
                break
            pair = answer.raise_for_status().json()
            views = [bot_view((await c.get(pair[side]["url"])).content) for side in ("left", "right")]
            known_sides += sum(known(v, revealed) for v in views)
            (await c.post("/api/vote", json={"token": pair["token"], "outcome": "tie"})).raise_for_status()
            votes += 1
            revealed.update(dict(views))
        return votes, known_sides, c.cookies


def test_a_voter_is_never_shown_an_output_revealed_to_it_even_after_a_restart(fresh: ArenaStore) -> None:
    """One identity votes until nothing is left: it never saw a side it already knew. Neither a fresh cookie
    from the same address, nor the same cookie from another address, nor a restart brings one back; a new
    voter elsewhere still gets pairs."""
    revealed: dict[str, int] = {}
    with arena(fresh, seed=None) as app:
        votes, known_sides, cookies = run(vote_until_exhausted(app, revealed=revealed))
        new_cookie_same_address = run(vote_until_exhausted(app, revealed=dict(revealed)))
        same_cookie_new_address = run(vote_until_exhausted(app, ip="198.51.100.9", cookies=cookies,
                                                           revealed=dict(revealed)))
    with arena(fresh, seed=None) as app:
        after_restart = run(vote_until_exhausted(app, revealed=dict(revealed)))
        stranger = run(vote_until_exhausted(app, ip="203.0.113.50", limit=3))
    assert votes >= 5 and known_sides == 0
    assert len(revealed) >= 2 * votes - 2
    for later_votes, later_known, _ in (new_cookie_same_address, same_cookie_new_address, after_restart):
        assert later_votes == later_known == 0
    assert stranger[0] == 3

    async def page() -> tuple[int, str]:
        async with client(app) as c:
            answer = await c.get("/")
            return answer.status_code, answer.text

    with arena(fresh, seed=None) as app:
        status, html = run(page())
    assert status == 404 and "Nothing more to vote on" in html and "revealed to you" in html


def test_a_perceptual_copy_of_a_revealed_output_is_not_shown_either(fresh: ArenaStore) -> None:
    """All four lake outputs are the same picture, each file slightly different (other bytes, same look):
    once a vote has revealed one, the voter sees no lake pair again."""
    base = np.asarray(Image.open(io.BytesIO(encoded(solid((64, 64), (0, 0, 0)), "PNG"))).convert("RGB")).copy()
    base[:, :32] = (230, 180, 40)
    base[20:40, 10:50] = (30, 60, 200)
    for i, target in enumerate(("gpt-image-1@openai", "gpt-image-1.5@openai", "dalle3@openai", "mini@openai")):
        variant = base.copy()
        variant[i, i] = (i * 40, 255 - i * 30, 7)
        set_output(fresh.db, "lake", target, encoded(Image.fromarray(variant).resize((512, 512)), "PNG"), "png")
    with arena(fresh, min_exposure=0) as app:
        run(vote_until_exhausted(app))
    lake_pairs = rows(fresh.db, "SELECT COUNT(*) FROM arena_pairs WHERE challenge_id='lake'")[0][0]
    assert lake_pairs == 1


def test_a_vote_on_a_prefetched_pair_showing_a_revealed_output_is_refused(fresh: ArenaStore) -> None:
    """A bot fetches many pairs first, then votes: once a vote has revealed an output, a vote on another
    pair showing it is refused (409), as the bot would know that side."""
    async def go() -> Counter[int]:
        codes: Counter[int] = Counter()
        async with client(app) as c:
            tokens = [(await c.get("/api/pair")).json()["token"] for _ in range(20)]
            for token in tokens:
                codes[(await c.post("/api/vote", json={"token": token, "outcome": "left"})).status_code] += 1
        return codes

    with arena(fresh) as app:
        codes = run(go())
    assert codes[409] > 0 and codes[200] <= 10 and set(codes) <= {200, 409}
    revealed: set[str] = set()
    for pair in rows(fresh.db, "SELECT left_sha, right_sha FROM arena_pairs WHERE state='voted' ORDER BY voted_at"):
        assert not revealed & set(pair), "a vote was cast on a pair showing an output already revealed"
        revealed.update(pair)


def test_each_output_is_served_at_most_its_cap(fresh: ArenaStore) -> None:
    async def go() -> Counter[int]:
        codes: Counter[int] = Counter()
        for n in range(40):
            async with client(app, ip=f"192.0.2.{n + 1}") as c:
                codes[(await c.get("/api/pair")).status_code] += 1
        return codes

    with arena(fresh, max_servings=3) as app:
        codes = run(go())
    servings: Counter[str] = Counter()
    for left, right in rows(fresh.db, "SELECT left_sha, right_sha FROM arena_pairs"):
        servings.update((left, right))
    assert max(servings.values()) <= 3
    assert codes[200] == sum(servings.values()) // 2 and codes[404] > 0


def avif_or_skip() -> None:
    if not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF; the left-out path is tested separately")


def test_avif_outputs_are_served_like_any_other(fresh: ArenaStore) -> None:
    avif_or_skip()
    avif = encoded(solid((640, 640), (10, 120, 230)), "AVIF")
    set_output(fresh.db, "lake", "mini@openai", avif, "avif")

    async def go() -> list[int]:
        codes = []
        async with client(app) as c:
            for _ in range(60):
                pair = await c.get("/api/pair")
                codes.append(pair.status_code)
                body = pair.json()
                for side in ("left", "right"):
                    image = await c.get(body[side]["url"])
                    codes.append(image.status_code)
                    assert image.headers["content-type"] == "image/webp"
        return codes

    with arena(fresh, min_exposure=0) as app:
        codes = run(go())
    assert set(codes) == {200}
    shown = rows(fresh.db, "SELECT COUNT(*) FROM arena_images WHERE ext='avif' AND role IN ('left', 'right')")
    assert shown[0][0] > 0


def test_outputs_that_cannot_be_decoded_are_left_out_with_a_reason_never_a_500(
        fresh: ArenaStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Without AVIF support in Pillow the AVIF output leaves pairing with a logged reason; a corrupt PNG
    is found when first rendered and left out too. Every answer is 200."""
    set_output(fresh.db, "lake", "mini@openai", encoded(solid((64, 64), (1, 2, 3)), "PNG"), "png")
    with Store.open(fresh.db) as store:
        fake = store.put_image(b"\x00\x00not really avif" * 10, "avif")
        store.conn.execute("UPDATE outputs SET sha256=?, ext='avif' WHERE attempt_id IN (SELECT id FROM attempts"
                           " WHERE challenge_id='fox' AND target='mini@openai')", (fake,))
        truncated = encoded(solid((300, 300), (200, 0, 0)), "PNG")[:60]
        broken = store.put_image(truncated, "png")
        store.conn.execute("UPDATE outputs SET sha256=? WHERE attempt_id IN (SELECT id FROM attempts"
                           " WHERE challenge_id='lake' AND target='dalle3@openai')", (broken,))
    monkeypatch.setattr("harness.arena.blind.features.check", lambda name: name != "avif")

    async def go() -> list[int]:
        codes = []
        async with client(app) as c:
            for _ in range(60):
                pair = await c.get("/api/pair")
                codes.append(pair.status_code)
                for side in ("left", "right"):
                    codes.append((await c.get(pair.json()[side]["url"])).status_code)
        return codes

    caplog.set_level(logging.WARNING, logger="harness.arena")
    with arena(fresh, min_exposure=0) as app:
        assert sum(app.state.arena.pool.skipped_formats.values()) >= 1
        codes = run(go())
    assert set(codes) == {200}
    assert any("without AVIF support" in r.getMessage() for r in caplog.records)
    assert any(broken[:12] in r.getMessage() and "cannot be shown" in r.getMessage() for r in caplog.records)
    served = {s for pair in rows(fresh.db, "SELECT left_sha, right_sha FROM arena_pairs") for s in pair}
    assert fake not in served and broken not in served
