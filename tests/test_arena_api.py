"""The arena's JSON API and page, driven with httpx: pairing, blindness, token forgery, replay and expiry,
rate limits, CSRF guards, and votes stored exactly once."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from scipy import stats

from harness.arena.app import VOTER_COOKIE, create_app
from harness.arena.config import ArenaConfig, RateLimit, secret_bytes
from harness.errors import ConfigError
from harness.store import Store
from harness.store.votes import Vote, insert_votes
from tests.test_arena_blind import riff_chunks
from tests.test_arena_pool import XSS_PROMPT, ArenaStore, build_arena_store, clone_store

T = TypeVar("T")
BASE = "http://arena.test"
GENEROUS = RateLimit(per_minute=1e6, burst=100_000)


@pytest.fixture(scope="session")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


@pytest.fixture
def fresh(tmp_path: Path, arena_store: ArenaStore) -> ArenaStore:
    """A private copy of the sandbox store with no pairs served and no votes."""
    return clone_store(arena_store, tmp_path / "store")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@contextmanager
def arena(store: ArenaStore, clock: Any = None, **overrides: Any) -> Iterator[FastAPI]:
    settings: dict[str, Any] = {"seed": 11, "voter_votes": GENEROUS, "ip_votes": GENEROUS, "ip_new_voters": GENEROUS,
                                **overrides}
    config = ArenaConfig(db=store.db, cache_dir=store.cache_dir, **settings)
    app = create_app(config, clock=clock) if clock else create_app(config)
    try:
        yield app
    finally:
        app.state.arena.close()


def client(app: FastAPI, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50123)), base_url=BASE)


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(sql, args)]


def leaks(text: str, names: tuple[str, ...]) -> list[str]:
    low = text.lower()
    return [n for n in names if n.lower() in low]


def test_a_pair_is_two_targets_answering_the_same_challenge_variant(fresh: ArenaStore) -> None:
    with arena(fresh) as app:
        async def go() -> list[dict[str, Any]]:
            async with client(app) as c:
                return [(await c.get("/api/pair")).raise_for_status().json() for _ in range(40)]

        pairs = run(go())
    served = rows(fresh.db, "SELECT p.left_target, p.right_target, l.challenge_id, l.variant, r.challenge_id,"
                  " r.variant, l.ok, r.ok, l.target, r.target, p.challenge_id FROM arena_pairs p"
                  " JOIN attempts l ON l.id=p.left_attempt_id JOIN attempts r ON r.id=p.right_attempt_id"
                  " ORDER BY p.served_at")
    assert len(served) == 40
    for lt, rt, lc, lv, rc, rv, lok, rok, la, ra, challenge in served:
        assert lt != rt and (lt, rt) == (la, ra)
        assert (lc, lv) == (rc, rv) and lc == challenge
        assert lok == rok == 1
    refs = {p["challenge"]["kind"]: len(p["challenge"]["references"]) for p in pairs}
    assert refs == {"text-to-image": 0, "edit": 1, "inpaint": 2}
    assert {p["challenge"]["prompt"] for p in pairs} >= {XSS_PROMPT, "fox, newspaper"}
    urls = [img["url"] for p in pairs for img in (p["left"], p["right"], *p["challenge"]["references"])]
    assert len(set(urls)) == len(urls)  # every image of every pair has its own random address


def test_nothing_before_the_vote_names_a_model_provider_or_target(fresh: ArenaStore) -> None:
    """Page, script, style sheet, pair JSON, image URLs, image bytes and every response header are free of
    every target, model and provider name; the vote's answer then reveals them."""
    names = fresh.names

    async def go() -> dict[str, Any]:
        async with client(app) as c:
            page = await c.get("/")
            seen: list[httpx.Response] = [page, await c.get("/static/arena.js"), await c.get("/static/arena.css"),
                                          await c.get("/api/health")]
            pairs = []
            for _ in range(8):
                response = await c.get("/api/pair")
                seen.append(response)
                pairs.append(response.json())
            for pair in pairs:
                for img in (pair["left"], pair["right"], *pair["challenge"]["references"]):
                    image = await c.get(img["url"])
                    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
                    assert riff_chunks(image.content) == [b"VP8 "]
                    assert not leaks(image.content.decode("latin-1"), names)
                    seen.append(image)
            for response in seen:
                assert response.status_code == 200, response.url
                assert "server" not in response.headers
                assert not leaks(json.dumps(list(response.headers.multi_items())), names), response.url
                if not response.headers["content-type"].startswith("image/"):
                    assert not leaks(response.text, names), response.url
            reveal = await c.post("/api/vote", json={"token": pairs[0]["token"], "outcome": "tie"})
            return {"reveal": reveal.json()}

    with arena(fresh) as app:
        result = run(go())
    assert leaks(json.dumps(result["reveal"]), names)  # the check above can see names when they are there
    assert result["reveal"]["left"]["provider"] == "openai"


def test_both_sides_have_identical_dimensions_whatever_the_models_aspect_ratios(fresh: ArenaStore) -> None:
    """One model answers the lake challenge with a wide 1536x1024 image; every pair still shows two
    images of exactly the same size (the wide one centre-cropped to the square), as the pair JSON says."""
    wide = io.BytesIO()
    Image.new("RGB", (1536, 1024), (200, 30, 30)).save(wide, format="PNG")
    with Store.open(fresh.db) as store:
        sha = store.put_image(wide.getvalue(), "png")
        store.conn.execute(
            "UPDATE outputs SET sha256=?, width=1536, height=1024 WHERE attempt_id=(SELECT id FROM attempts"
            " WHERE challenge_id='lake' AND target='mini@openai')", (sha,))

    async def go() -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]]:
        sizes = []
        async with client(app) as c:
            for _ in range(30):
                pair = (await c.get("/api/pair")).json()
                if pair["challenge"]["title"] != "Lake at dawn":
                    continue
                decoded = []
                for side in ("left", "right"):
                    with Image.open(io.BytesIO((await c.get(pair[side]["url"])).content)) as img:
                        decoded.append(img.size)
                sizes.append(((pair["left"]["width"], pair["left"]["height"]),
                              (pair["right"]["width"], pair["right"]["height"]), decoded[0], decoded[1]))
        return sizes

    with arena(fresh, min_exposure=0, image_side=512) as app:
        sizes = run(go())
    assert sizes
    for reported_left, reported_right, left, right in sizes:
        assert reported_left == reported_right == left == right
    assert set(rows(fresh.db, "SELECT DISTINCT canvas_width, canvas_height FROM arena_images i JOIN arena_pairs p"
                              " ON p.pair_id=i.pair_id WHERE p.challenge_id='lake' AND i.role IN ('left', 'right')"
                              " AND 'mini@openai' IN (p.left_target, p.right_target)")) == {(512, 512)}


def test_left_and_right_are_randomised(fresh: ArenaStore) -> None:
    with arena(fresh, seed=None) as app:
        async def go() -> None:
            async with client(app) as c:
                for _ in range(240):
                    (await c.get("/api/pair")).raise_for_status()

        run(go())
    sides: Counter[tuple[str, str]] = Counter()
    for left, right in rows(fresh.db, "SELECT left_target, right_target FROM arena_pairs"):
        sides[left, "left"] += 1
        sides[right, "right"] += 1
    for target in {t for t, _ in sides}:
        on_left, total = sides[target, "left"], sides[target, "left"] + sides[target, "right"]
        assert total >= 60
        assert stats.binomtest(on_left, total, 0.5).pvalue > 1e-3, (target, on_left, total)


def served_pair_counts(db: Path) -> Counter[frozenset[str]]:
    return Counter(frozenset(r) for r in rows(db, "SELECT left_target, right_target FROM arena_pairs"))


def test_exposure_is_balanced_while_warming_up(fresh: ArenaStore) -> None:
    with arena(fresh, min_exposure=1000) as app:
        async def go() -> None:
            async with client(app) as c:
                for _ in range(42):
                    (await c.get("/api/pair")).raise_for_status()

        run(go())
    shown = Counter(t for pair in rows(fresh.db, "SELECT left_target, right_target FROM arena_pairs") for t in pair)
    assert sum(shown.values()) == 84 and len(shown) == 4
    assert max(shown.values()) - min(shown.values()) <= 1, shown


def test_active_sampling_prefers_uncertain_and_little_voted_pairs(fresh: ArenaStore) -> None:
    """With 200 recorded votes saying gpt-image-1 always beats dall-e-3, that pair is almost never served
    once warm-up is over, while the five unsettled pairs share the load."""
    settled = [Vote(vote_uid=f"sim-{i}", left_target="gpt-image-1@openai", right_target="dalle3@openai",
                    left_model="gpt-image-1", right_model="dall-e-3", outcome="left", voted_at=1e9 + i,
                    source="simulated") for i in range(200)]
    with Store.open(fresh.db) as store:
        insert_votes(store, settled)
    with arena(fresh, min_exposure=0, seed=5) as app:
        async def go() -> None:
            async with client(app) as c:
                for _ in range(300):
                    (await c.get("/api/pair")).raise_for_status()

        run(go())
    counts = served_pair_counts(fresh.db)
    lopsided = counts[frozenset({"gpt-image-1@openai", "dalle3@openai"})]
    others = [n for pair, n in counts.items() if pair != frozenset({"gpt-image-1@openai", "dalle3@openai"})]
    assert len(others) == 5 and min(others) >= 30
    assert lopsided <= 3
    # the five open pairs are served about equally (their weights stay equal as they are served)
    assert stats.chisquare(others).pvalue > 1e-3


def test_forged_tokens_are_refused_and_nothing_is_stored(fresh: ArenaStore) -> None:
    async def go() -> tuple[list[int], int]:
        async with client(app) as alice, client(app) as mallory:
            pair = (await alice.get("/api/pair")).json()
            other = (await alice.get("/api/pair")).json()
            pair_id, expires, mac = pair["token"].split(".")
            other_id = other["token"].split(".")[0]
            mallory_pair = (await mallory.get("/api/pair")).json()
            forgeries = [
                f"{pair_id}.{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # altered signature
                f"{other_id}.{expires}.{mac}",  # signature of another pair
                f"{pair_id}.{int(expires) + 86_400_000}.{mac}",  # extended expiry
                mallory_pair["token"],  # a token served to another voter
                "not-a-token", "0" * 32 + ".1." + "A" * 43,
            ]
            codes = [(await alice.post("/api/vote", json={"token": t, "outcome": "left"})).status_code
                     for t in forgeries]
            stolen = await mallory.post("/api/vote", json={"token": pair["token"], "outcome": "right"})
            codes.append(stolen.status_code)
            honest = await alice.post("/api/vote", json={"token": pair["token"], "outcome": "left"})
            return codes, honest.status_code

    with arena(fresh) as app:
        codes, honest = run(go())
    assert codes == [403] * 7
    assert honest == 200
    assert rows(fresh.db, "SELECT COUNT(*), MIN(outcome) FROM votes") == [(1, "left")]


def test_a_token_is_single_use_even_under_concurrent_replays(fresh: ArenaStore) -> None:
    async def go() -> list[int]:
        async with client(app) as c:
            token = (await c.get("/api/pair")).json()["token"]
            answers = await asyncio.gather(*(c.post("/api/vote", json={"token": token, "outcome": "right"})
                                             for _ in range(25)))
            later = await c.post("/api/vote", json={"token": token, "outcome": "left"})
            return [a.status_code for a in answers] + [later.status_code]

    with arena(fresh) as app:
        codes = run(go())
    assert sorted(codes) == [200] + [409] * 25
    assert rows(fresh.db, "SELECT COUNT(*), MIN(outcome) FROM votes") == [(1, "right")]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_expired_token_is_refused_and_the_pair_is_not_voted(fresh: ArenaStore) -> None:
    clock = Clock(1_900_000_000.0)

    async def go() -> tuple[int, str, int]:
        async with client(app) as c:
            pair = (await c.get("/api/pair")).json()
            assert pair["expires_at"] == pytest.approx(clock.now + 60)
            clock.now += 61
            late = await c.post("/api/vote", json={"token": pair["token"], "outcome": "left"})
            fresh_pair = (await c.get("/api/pair")).json()
            clock.now += 59
            in_time = await c.post("/api/vote", json={"token": fresh_pair["token"], "outcome": "tie"})
            return late.status_code, late.json()["detail"], in_time.status_code

    with arena(fresh, clock=clock, token_ttl_s=60) as app:
        late, detail, in_time = run(go())
    assert (late, in_time) == (410, 200) and "expired" in detail
    assert rows(fresh.db, "SELECT outcome, decision_ms FROM votes") == [("tie", pytest.approx(59_000))]
    assert sorted(r[0] for r in rows(fresh.db, "SELECT state FROM arena_pairs")) == ["open", "voted"]


def test_rate_limits_per_voter_and_per_ip_answer_429_with_retry_after(fresh: ArenaStore) -> None:
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with client(app) as voter:
            pairs = [await voter.get("/api/pair") for _ in range(6)]  # pair burst: twice the vote burst
            out["pairs"] = [p.status_code for p in pairs]
            out["pair_over"] = await voter.get("/api/pair")
            votes = [await voter.post("/api/vote", json={"token": p.json()["token"], "outcome": "left"})
                     for p in pairs[:4]]
            out["votes"] = [v.status_code for v in votes]
        # cookie-less clients from one address: the per-IP bucket (burst 2 x 5 = 10 pairs) catches them
        ip_codes = []
        for _ in range(12):
            async with client(app, ip="203.0.113.7") as anonymous:
                ip_codes.append((await anonymous.get("/api/pair")).status_code)
        out["ip"] = ip_codes
        async with client(app, ip="198.51.100.1") as elsewhere:
            out["elsewhere"] = (await elsewhere.get("/api/pair")).status_code
        return out

    with arena(fresh, voter_votes=RateLimit(per_minute=6, burst=3), ip_votes=RateLimit(per_minute=60, burst=5),
               reveal_memory="off") as app:
        out = run(go())
    assert out["pairs"] == [200] * 6
    assert out["pair_over"].status_code == 429
    assert int(out["pair_over"].headers["retry-after"]) >= 1
    assert out["votes"] == [200, 200, 200, 429]
    assert out["ip"] == [200] * 10 + [429] * 2
    assert out["elsewhere"] == 200
    assert rows(fresh.db, "SELECT COUNT(*) FROM votes") == [(3,)]


def test_cross_site_and_non_json_requests_are_refused(fresh: ArenaStore) -> None:
    async def go() -> dict[str, int]:
        async with client(app) as c:
            token = (await c.get("/api/pair")).json()["token"]
            body = json.dumps({"token": token, "outcome": "left"})
            attempts = {
                "evil origin": {"headers": {"origin": "https://evil.example", "content-type": "application/json"}},
                "null origin": {"headers": {"origin": "null", "content-type": "application/json"}},
                "cross-site fetch": {"headers": {"sec-fetch-site": "cross-site", "content-type": "application/json"}},
                "same-site fetch": {"headers": {"sec-fetch-site": "same-site", "content-type": "application/json"}},
                "form post": {"headers": {"content-type": "application/x-www-form-urlencoded"}},
                "text/plain": {"headers": {"content-type": "text/plain"}},
                "no content type": {"headers": {}},
            }
            codes = {name: (await c.post("/api/vote", content=body, **kw)).status_code  # type: ignore[arg-type]
                     for name, kw in attempts.items()}
            codes["cross-site pair"] = (await c.get("/api/pair", headers={"sec-fetch-site": "cross-site"})).status_code
            codes["cross-site page"] = (await c.get("/", headers={"origin": "https://evil.example"})).status_code
            same = await c.post("/api/vote", content=body, headers={
                "origin": BASE, "sec-fetch-site": "same-origin", "content-type": "application/json; charset=utf-8"})
            codes["same origin"] = same.status_code
            return codes

    with arena(fresh) as app:
        codes = run(go())
    assert codes == {"evil origin": 403, "null origin": 403, "cross-site fetch": 403, "same-site fetch": 403,
                     "form post": 415, "text/plain": 415, "no content type": 415, "cross-site pair": 403,
                     "cross-site page": 403, "same origin": 200}
    assert rows(fresh.db, "SELECT COUNT(*) FROM votes") == [(1,)]


def test_a_vote_carrying_nan_or_infinity_is_refused_with_the_field_named(fresh: ArenaStore) -> None:
    """Python's and JavaScript's lenient JSON writers emit NaN and Infinity; such a vote gets a 422 that names the
    field (not a 500 from echoing the value back), and the pair can still be voted properly."""
    async def go() -> tuple[list[tuple[int, Any]], int]:
        async with client(app) as c:
            token = (await c.get("/api/pair")).json()["token"]
            answers = []
            for body in (f'{{"token": "{token}", "outcome": NaN}}',
                         f'{{"token": "{token}", "outcome": "left", "client_ms": Infinity}}'):
                answer = await c.post("/api/vote", content=body, headers={"content-type": "application/json"})
                answers.append((answer.status_code, answer.json()["detail"]))
            honest = await c.post("/api/vote", json={"token": token, "outcome": "left"})
            return answers, honest.status_code

    with arena(fresh) as app:
        answers, honest = run(go())
    assert [code for code, _ in answers] == [422, 422]
    assert [[tuple(e["loc"]) for e in detail] for _, detail in answers] == [[("body", "outcome")],
                                                                           [("body", "client_ms")]]
    assert all("input" not in e for _, detail in answers for e in detail)
    assert honest == 200
    assert rows(fresh.db, "SELECT COUNT(*) FROM votes") == [(1,)]


def test_voter_cookie_is_random_http_only_and_same_site_strict(fresh: ArenaStore) -> None:
    async def go() -> tuple[list[str], int]:
        headers = []
        for _ in range(2):
            async with client(app) as c:
                headers.append((await c.get("/")).headers["set-cookie"])
        async with client(app) as c:
            token = (await c.get("/api/pair")).json()["token"]
            c.cookies.clear()
            cookieless = await c.post("/api/vote", json={"token": token, "outcome": "left"})
        return headers, cookieless.status_code

    with arena(fresh) as app:
        headers, cookieless = run(go())
    values = [h.split(";")[0] for h in headers]
    assert values[0] != values[1] and all(v.startswith(f"{VOTER_COOKIE}=") for v in values)
    for header in headers:
        attributes = {a.strip().lower() for a in header.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert cookieless == 403


def test_every_accepted_vote_is_stored_exactly_once_with_who_what_where_and_when(fresh: ArenaStore) -> None:
    """Twelve voters vote concurrently, each also replaying some tokens; the store ends with exactly the
    accepted votes, each with its voter, the side each target was shown on, the outcome, the times."""
    outcomes = ("left", "right", "tie", "both_bad")

    async def voter(n: int) -> list[tuple[str, dict[str, Any], str]]:
        accepted = []
        async with client(app) as c:
            pairs = [(await c.get("/api/pair")).json() for _ in range(10)]
            posts = [c.post("/api/vote", json={"token": p["token"], "outcome": outcomes[(n + i) % 4],
                                               "client_ms": 1000 + i}) for i, p in enumerate(pairs)]
            posts += [c.post("/api/vote", json={"token": p["token"], "outcome": "left", "client_ms": 2000 + i})
                      for i, p in enumerate(pairs) if i % 3 == 0]
            for answer in await asyncio.gather(*posts):
                assert answer.status_code in (200, 409)
                if answer.status_code == 200:
                    accepted.append((c.cookies[VOTER_COOKIE].split(".")[0], answer.json(), answer.json()["vote_id"]))
        return accepted

    async def go() -> list[tuple[str, dict[str, Any], str]]:
        return [a for batch in await asyncio.gather(*(voter(n) for n in range(12))) for a in batch]

    # twelve voters on one address, each holding ten pairs at once: recognition memory would (rightly) refuse
    # votes on pairs showing outputs a neighbour's vote revealed; this test is about storage, so it is off
    with arena(fresh, reveal_memory="off") as app:
        accepted = run(go())
    assert len(accepted) == 120  # one per pair: replays never count twice
    stored = {r[0]: r[1:] for r in rows(
        fresh.db, "SELECT v.vote_uid, v.voter, v.outcome, v.left_target, v.right_target, v.left_model,"
        " v.source, v.shown_at, v.voted_at, v.decision_ms, p.client_ms, v.pair_id FROM votes v"
        " JOIN arena_pairs p ON p.pair_id = v.pair_id")}
    assert len(stored) == 120 and rows(fresh.db, "SELECT COUNT(*) FROM votes") == [(120,)]
    assert len({s[-1] for s in stored.values()}) == 120
    for voter_id, reveal, vote_id in accepted:
        who, outcome, left, right, left_model, source, shown, voted, decision, client_ms, _ = stored[vote_id]
        assert (who, outcome, left, right, left_model, source) == (
            voter_id, reveal["outcome"], reveal["left"]["target"], reveal["right"]["target"],
            reveal["left"]["model"], "arena")
        assert voted >= shown and decision == pytest.approx((voted - shown) * 1000)
        assert 1000 <= client_ms < 1010 or 2000 <= client_ms < 2010  # whichever of a replayed pair's posts won


def test_votes_and_pending_pairs_survive_a_restart_with_the_same_secret(fresh: ArenaStore) -> None:
    secret = secret_bytes("a secret kept in the environment")

    async def serve_pair() -> tuple[httpx.Cookies, str, str]:
        async with client(first) as c:
            done = (await c.get("/api/pair")).json()["token"]
            assert (await c.post("/api/vote", json={"token": done, "outcome": "left"})).status_code == 200
            pending = (await c.get("/api/pair")).json()["token"]
            return c.cookies, pending, done

    async def vote_after_restart(cookies: httpx.Cookies, pending: str, done: str) -> tuple[int, int]:
        async with client(second) as c:
            c.cookies = cookies
            again = await c.post("/api/vote", json={"token": done, "outcome": "right"})
            answer = await c.post("/api/vote", json={"token": pending, "outcome": "both_bad"})
            return again.status_code, answer.status_code

    with arena(fresh, secret=secret) as first:
        state = run(serve_pair())
    with arena(fresh, secret=secret) as second:
        codes = run(vote_after_restart(*state))
    assert codes == (409, 200)
    assert sorted(r[0] for r in rows(fresh.db, "SELECT outcome FROM votes")) == ["both_bad", "left"]
    assert rows(fresh.db, "PRAGMA journal_mode") == [("wal",)]


def test_prompt_text_is_escaped_in_the_page(fresh: ArenaStore) -> None:
    async def go() -> str:
        async with client(app) as c:
            for _ in range(60):
                page = (await c.get("/")).text
                if "watercolor" in page or "&lt;script&gt;" in page:
                    return page
        raise AssertionError("the fox challenge was never served")

    with arena(fresh) as app:
        page = run(go())
    assert "A fox &lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; &#34;friends&#34;" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert page.count("<script") == 1 and '<script src="/static/arena.js" defer></script>' in page
    with arena(fresh) as app:
        headers = run(_headers(app, "/"))
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


async def _headers(app: FastAPI, path: str) -> httpx.Headers:
    async with client(app) as c:
        return (await c.get(path)).headers


def test_image_routes_cannot_be_used_to_read_other_files(fresh: ArenaStore) -> None:
    async def go() -> dict[str, int]:
        async with client(app) as c:
            pair = (await c.get("/api/pair")).json()
            codes = {path: (await c.get(path)).status_code for path in (
                "/img/..%2F..%2Fharness.db", "/img/%2e%2e%2f%2e%2e%2fharness.db", "/img/../harness.db",
                "/img/" + "A" * 32, "/img/" + "a" * 31, "/img/" + "." * 32, "/static/..%2Fapp.py",
                "/static/%2e%2e/%2e%2e/store/votes.py", "/img/" + pair["left"]["url"][5:] + "%00.png",
            )}
            codes["valid"] = (await c.get(pair["left"]["url"])).status_code
            return codes

    with arena(fresh) as app:
        codes = run(go())
    assert codes.pop("valid") == 200
    assert set(codes.values()) <= {404, 422}, codes


def test_openapi_schema_is_published_and_no_cdn_docs_are_served(fresh: ArenaStore) -> None:
    async def go() -> tuple[dict[str, Any], int, dict[str, Any]]:
        async with client(app) as c:
            return ((await c.get("/openapi.json")).json(), (await c.get("/docs")).status_code,
                    (await c.get("/api/health")).json())

    with arena(fresh) as app:
        schema, docs, health = run(go())
    assert {"/api/pair", "/api/vote", "/api/health", "/img/{image_id}"} <= set(schema["paths"])
    vote = schema["paths"]["/api/vote"]["post"]
    assert {"200", "403", "409", "410", "415", "422", "429"} <= set(vote["responses"])
    assert schema["components"]["schemas"]["VoteIn"]["properties"]["outcome"]["enum"] == [
        "left", "right", "tie", "both_bad"]
    assert docs == 404
    assert health == {"status": "ok", "matchups": 5, "targets": 4, "votes": 0}


def test_an_explicitly_allowed_front_end_origin_may_call_the_api(fresh: ArenaStore) -> None:
    front = "https://vote.example.org"

    async def go() -> dict[str, Any]:
        async with client(app) as c:
            headers = {"origin": front, "sec-fetch-site": "same-site"}
            preflight = await c.options("/api/vote", headers={
                **headers, "access-control-request-method": "POST", "access-control-request-headers": "content-type"})
            pair = await c.get("/api/pair", headers=headers)
            vote = await c.post("/api/vote", json={"token": pair.json()["token"], "outcome": "tie"}, headers=headers)
            other = await c.get("/api/pair", headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
            return {"preflight": preflight, "pair": pair, "vote": vote, "other": other}

    with arena(fresh, allowed_origins=(front,)) as app:
        out = run(go())
    assert out["preflight"].status_code == 200
    assert out["preflight"].headers["access-control-allow-origin"] == front
    assert out["vote"].status_code == 200
    assert out["vote"].headers["access-control-allow-credentials"] == "true"
    assert out["other"].status_code == 403 and "access-control-allow-origin" not in out["other"].headers
    with pytest.raises(ConfigError, match="not scheme://host"):
        ArenaConfig(db=fresh.db, allowed_origins=("vote.example.org/path",))
