"""Voting on sequences: a multi-turn challenge's pair is two whole conversations, turn by turn, each turn's
instruction beside both sides' images (blind like single images), and the vote is on the sequence. Votes
carry the kind, so ratings split single-turn from multi-turn; an incomplete conversation is never paired.

The store: one sandbox run of a three-turn conversation (two variants) and a single text-to-image challenge
on three targets: Gemini 2.5 (history resent), Gemini 3 Pro on fal (chained edits), and a Gemini 3.1
target whose second turn is refused, so its conversations are incomplete."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.arena.app import _templates
from harness.arena.leaderboard import board_view, build_leaderboard
from harness.arena.pool import load_pool
from harness.arena.schemas import PairView
from harness.arena.sequences import with_sequences
from harness.challenges import load
from harness.cli.ratings import ratings
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, ProviderError
from harness.providers.gemini import GeminiProvider
from harness.run import RunOptions, start_run
from harness.store import Store
from harness.store import runs as run_store
from harness.store import votes as vote_store
from harness.targets import load_targets, resolve_keys, select
from harness.timing import TimedHttp
from tests.test_arena_api import arena, client, leaks, rows, run
from tests.test_arena_blind import riff_chunks
from tests.test_arena_pool import ArenaStore
from tests.test_multiturn_run import write_talk_suite

GOOGLE, FAL, REFUSER = ("gemini-2.5-flash-image@google", "gemini-3-pro-image-preview@fal",
                        "gemini-3.1-flash-image-preview@google")
NAMES = (GOOGLE, FAL, REFUSER, "gemini-2.5-flash-image", "gemini-3-pro-image-preview", "nano-banana",
         "gemini-3.1-flash-image-preview", "google", "fal.ai", "gemini")
INSTRUCTIONS = {"default": ["Make him smile", "Add this scarf", "Make it night"],
                "terse": ["Smile", "Add this scarf", "Make it night"]}
SINGLE = """
id: red-fox
title: A red fox
category: portraiture
kind: text-to-image
prompt: A red fox in fresh snow, morning light
params: {aspect_ratio: "1:1", seed: 7}
"""


def build(root: Path) -> ArenaStore:
    suite = write_talk_suite(root / "suite")
    (suite / "single.yaml").write_text(SINGLE, encoding="utf-8")
    original = GeminiProvider.exchange

    async def refuse_second_turn(self: GeminiProvider, request: GenerationRequest, http: TimedHttp
                                 ) -> GenerationResult:
        if request.model_id == "gemini-3.1-flash-image-preview" and len(request.history) == 1:
            raise ProviderError(ErrorKind.REFUSED, "output blocked (IMAGE_SAFETY)", http_status=200,
                                provider_code="IMAGE_SAFETY")
        return await original(self, request, http)

    db = root / "results" / "harness.db"
    chosen = select(load_targets(), [GOOGLE, FAL, REFUSER])
    options = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GeminiProvider, "exchange", refuse_second_turn)
        run_id = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options).run_id
    return ArenaStore(db, run_id, root / "arena-cache")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build(tmp_path_factory.mktemp("sequences"))


@pytest.fixture
def fresh(built: ArenaStore, tmp_path: Path) -> Iterator[ArenaStore]:
    """A private copy of the database (image files shared), for tests that serve and vote."""
    (tmp_path / "results").mkdir()
    with sqlite3.connect(built.db) as src, sqlite3.connect(tmp_path / "results" / "harness.db") as dst:
        src.backup(dst)
    (tmp_path / "results" / "images").symlink_to(built.db.parent / "images", target_is_directory=True)
    yield ArenaStore(tmp_path / "results" / "harness.db", built.run_id, built.cache_dir)


def turn_images(db: Path, run_id: str) -> dict[tuple[str, str], list[str]]:
    """(target, variant) -> each turn's image SHA-256 of its default-sample conversation, in turn order."""
    found: dict[tuple[str, str], list[str]] = {}
    for target, variant, sha in rows(db, "SELECT a.target, a.variant, o.sha256 FROM attempts a JOIN outputs o ON "
                                         "o.attempt_id=a.id WHERE a.run_id=? AND a.challenge_id='smile-scarf-night' "
                                         "AND a.ok=1 ORDER BY a.id", run_id):
        found.setdefault((str(target), str(variant)), []).append(str(sha))
    return found


async def sequence_pair(c: httpx.AsyncClient, tries: int = 40) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first multi-turn pair served, and every single-image pair served before it."""
    singles: list[dict[str, Any]] = []
    for _ in range(tries):
        response = await c.get("/api/pair")
        assert response.status_code == 200, response.text
        pair = response.json()
        if pair["challenge"]["kind"] == "multi-turn":
            return pair, singles
        singles.append(pair)
    raise AssertionError(f"no multi-turn pair in {tries} pairs")


def test_the_run_has_complete_and_incomplete_conversations(built: ArenaStore) -> None:
    images = turn_images(built.db, built.run_id)
    assert all(len(images[(t, v)]) == 3 for t in (GOOGLE, FAL) for v in ("default", "terse"))
    assert all(len(images[(REFUSER, v)]) == 1 for v in ("default", "terse"))  # stopped at turn 2


def test_an_incomplete_sequence_is_never_paired_and_is_counted(built: ArenaStore) -> None:
    with Store.open(built.db, readonly=True) as store:
        pool = run_store.outputs_frame(store, [built.run_id])
        found = with_sequences(store, load_pool(store))
    assert REFUSER in set(pool["target"])  # it answered the single challenge
    sequences = [m for m in found.pool.matchups if m.kind == "multi-turn"]
    assert {(m.challenge_id, m.variant) for m in sequences} == {("smile-scarf-night", v) for v in INSTRUCTIONS}
    assert all(set(m.entries) == {GOOGLE, FAL} for m in sequences)
    assert found.left_out == 2
    single = next(m for m in found.pool.matchups if m.kind == "text-to-image")
    assert REFUSER in single.entries


def test_a_sequence_pair_shows_every_turn_of_both_sides_with_its_instruction(fresh: ArenaStore) -> None:
    async def go() -> dict[str, Any]:
        async with client(app) as c:
            pair, _ = await sequence_pair(c)
            health = (await c.get("/api/health")).json()
            pictures = {}
            for turn in pair["turns"]:
                for side in ("left", "right"):
                    image = await c.get(turn[side]["url"])
                    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
                    assert riff_chunks(image.content) == [b"VP8 "]
                    pictures[turn[side]["url"]] = Image.open(io.BytesIO(image.content)).size
            return {"pair": pair, "health": health, "pictures": pictures}

    with arena(fresh, min_exposure=0) as app:
        result = run(go())
    pair, pictures = result["pair"], result["pictures"]
    turns = pair["turns"]
    served = rows(fresh.db, "SELECT pair_id, variant, left_target, right_target FROM arena_pairs "
                            "WHERE kind='multi-turn'")
    assert len(served) == 1
    pair_id, variant, left_target, right_target = served[0]
    assert {left_target, right_target} == {GOOGLE, FAL}
    assert [t["turn"] for t in turns] == [1, 2, 3]
    assert [t["instruction"] for t in turns] == INSTRUCTIONS[variant]
    assert (turns[-1]["left"]["url"], turns[-1]["right"]["url"]) == (pair["left"]["url"], pair["right"]["url"])
    assert len({(t["left"]["width"], t["left"]["height"]) for t in turns} |
               {(t["right"]["width"], t["right"]["height"]) for t in turns}) == 1  # one canvas for every image
    assert set(pictures.values()) == {(turns[0]["left"]["width"], turns[0]["left"]["height"])}
    # each side's turn images are that conversation's own turns, in order
    images = turn_images(fresh.db, fresh.run_id)
    by_url = {f"/img/{i}": str(sha) for i, sha in
              rows(fresh.db, "SELECT image_id, sha256 FROM arena_images WHERE pair_id=?", pair_id)}
    assert [by_url[t["left"]["url"]] for t in turns] == images[(left_target, variant)]
    assert [by_url[t["right"]["url"]] for t in turns] == images[(right_target, variant)]
    assert result["health"]["sequences_left_out"] == 2


def test_nothing_before_a_sequence_vote_names_a_maker_or_a_hash(fresh: ArenaStore) -> None:
    hashes = tuple(str(sha) for (sha,) in rows(fresh.db, "SELECT sha256 FROM outputs"))

    async def go() -> tuple[list[str], dict[str, Any]]:
        async with client(app) as c:
            texts = [(await c.get("/")).text]
            pair, singles = await sequence_pair(c)
            texts += [json.dumps(p) for p in (pair, *singles)]
            vote = await c.post("/api/vote", json={"token": pair["token"], "outcome": "left"})
            return texts, vote.json()

    with arena(fresh, min_exposure=0) as app:
        texts, reveal = run(go())
    for text in texts:
        assert not leaks(text, NAMES)
        assert not [h for h in hashes if h[:12] in text]
    assert {reveal["left"]["target"], reveal["right"]["target"]} == {GOOGLE, FAL}  # names come with the vote


def test_a_sequence_vote_is_stored_as_multi_turn_and_ratings_split_by_kind(fresh: ArenaStore) -> None:
    async def go() -> None:
        async with client(app) as c:
            for _ in range(12):
                pair = (await c.get("/api/pair")).json()
                outcome = "left" if pair["turns"] else "tie"
                (await c.post("/api/vote", json={"token": pair["token"], "outcome": outcome})).raise_for_status()

    with arena(fresh, min_exposure=0, reveal_memory="off") as app:
        run(go())
    votes = rows(fresh.db, "SELECT kind, left_target, right_target FROM votes")
    kinds = {str(k) for k, _, _ in votes}
    assert kinds == {"multi-turn", "text-to-image"}
    assert all({lt, rt} == {GOOGLE, FAL} for k, lt, rt in votes if k == "multi-turn")
    runner = CliRunner()
    boards = {}
    for kind in ("multi-turn", "single-turn", None):
        args = ["--db", str(fresh.db), "--by", "target", "--json", "--min-votes", "0"]
        result = runner.invoke(ratings, args + (["--kind", kind] if kind else []))
        assert result.exit_code == 0, result.output
        boards[kind] = {r["model"]: r for r in json.loads(result.stdout)}
    multi = sum(1 for k, _, _ in votes if k == "multi-turn")
    assert set(boards["multi-turn"]) == {GOOGLE, FAL}
    assert boards["multi-turn"][GOOGLE]["votes"] == boards["multi-turn"][FAL]["votes"] == multi
    assert sum(r["votes"] for r in boards["single-turn"].values()) == 2 * (len(votes) - multi)
    assert sum(r["votes"] for r in boards[None].values()) == 2 * len(votes)
    with Store.open(fresh.db, readonly=True) as store:
        frame = vote_store.battles_frame(store, by="target")
    now = time.time()
    public = build_leaderboard(frame, now=now, cutoff=now + 1, refresh_s=60.0, rated_by="target")
    assert {k.kind: k.votes for k in public.kinds} == {"multi-turn": multi, "single-turn": len(votes) - multi}
    sequences = next(k.board for k in public.kinds if k.kind == "multi-turn")
    assert sequences is not None and {r.model for r in sequences.rows} == {GOOGLE, FAL}
    page = _templates().get_template("leaderboard.html").render(board=public, view=board_view(public))
    assert "Sequences (multi-turn)" in page and 'id="kind-multi-turn"' in page


def test_a_turn_instruction_is_shown_as_text_never_as_markup(fresh: ArenaStore) -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    with sqlite3.connect(fresh.db) as conn:
        for (text,) in conn.execute("SELECT challenge_json FROM run_challenges WHERE challenge_id='smile-scarf-night'"
                                    ).fetchall():
            frozen = json.loads(text)
            for turn in frozen["turns"]:
                turn["prompts"] = {v: hostile for v in turn["prompts"]}
            conn.execute("UPDATE run_challenges SET challenge_json=? WHERE challenge_id='smile-scarf-night'",
                         (json.dumps(frozen),))

    async def go() -> list[str]:
        pages = []
        async with client(app) as c:
            for _ in range(12):  # each page load serves a pair: keep loading until one is a sequence
                page = await c.get("/")
                if 'aria-labelledby="turns-heading">' in page.text:
                    pages.append(page.text)
        return pages

    with arena(fresh, min_exposure=0) as app:
        pages = run(go())
    assert pages, "no sequence pair served as a page"
    for text in pages:
        assert hostile not in text and "<script>alert" not in text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text


def test_a_vote_file_splits_by_kind_and_one_without_kinds_is_refused(tmp_path: Path) -> None:
    rows_ = [{"model_a": "a", "model_b": "b", "winner": "model_a", "kind": "multi-turn"},
             {"model_a": "a", "model_b": "b", "winner": "model_b", "kind": "edit"},
             {"model_a": "b", "model_b": "a", "winner": "model_a", "kind": "text-to-image"}]
    with_kinds, without = tmp_path / "kinds.jsonl", tmp_path / "plain.jsonl"
    with_kinds.write_text("".join(json.dumps(r) + "\n" for r in rows_), encoding="utf-8")
    without.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "kind"}) + "\n" for r in rows_),
                       encoding="utf-8")
    runner = CliRunner()
    counts = {}
    for kind in ("multi-turn", "single-turn"):
        result = runner.invoke(ratings, ["--votes", str(with_kinds), "--kind", kind, "--json", "--min-votes", "0"])
        assert result.exit_code == 0, result.output
        counts[kind] = {r["model"]: (r["wins"], r["losses"]) for r in json.loads(result.stdout)}
    assert counts["multi-turn"] == {"a": (1, 0), "b": (0, 1)}
    assert counts["single-turn"] == {"a": (0, 2), "b": (2, 0)}
    refused = runner.invoke(ratings, ["--votes", str(without), "--kind", "multi-turn"])
    assert refused.exit_code != 0 and "plain.jsonl" in refused.output and "kind" in refused.output


def test_sequences_stay_complete_only_after_the_pool_is_reloaded(fresh: ArenaStore) -> None:
    async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        served = []
        async with client(app) as c:
            for _ in range(16):
                await asyncio.sleep(0.02)  # past the refresh interval: every pair reloads the pool first
                served.append((await c.get("/api/pair")).json())
            return served, (await c.get("/api/health")).json()

    with arena(fresh, min_exposure=0, pool_refresh_s=0.01) as app:
        served, health = run(go())
    sequences = [PairView.model_validate(p) for p in served if p["turns"]]
    assert sequences and all(len(p.turns) == 3 for p in sequences)
    assert health["sequences_left_out"] == 2
    targets = rows(fresh.db, "SELECT left_target, right_target FROM arena_pairs WHERE kind='multi-turn'")
    assert len(targets) == len(sequences) and all({lt, rt} == {GOOGLE, FAL} for lt, rt in targets)
