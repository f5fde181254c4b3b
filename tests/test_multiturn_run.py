"""Multi-turn challenges in a sandbox run: one attempt per turn with full clock points, a conversation succeeds
only when every turn does, a failed turn ends it and says which, and a resume continues from the last completed
turn with the stored replies, never from scratch."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli.stats import stats
from harness.errors import ConfigError
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, ProviderError
from harness.providers.gemini import GeminiProvider
from harness.providers.openrouter import OpenRouterProvider
from harness.run import RunOptions, resume_run, start_run
from harness.run.items import plan_items, refusal
from harness.stats.turns import STRIP_COLUMNS, turn_strips
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import Target, load_targets, resolve_keys, select
from harness.timing import TimedHttp
from tests.conftest import photo_like

TARGETS = ["gemini-2.5-flash-image@google", "gemini-3-pro-image-preview@openrouter", "gpt-image-1@openai"]


def write_talk_suite(suite: Path) -> Path:
    """A three-turn conversation from a starting photo (the second turn adds a scarf image), in ``suite``."""
    suite.mkdir(parents=True)
    (suite / "start.png").write_bytes(photo_like((96, 64), 1))
    (suite / "scarf.png").write_bytes(photo_like((80, 80), 2))
    (suite / "talk.yaml").write_text("""
id: smile-scarf-night
title: Smile, scarf, night
category: portraiture
kind: multi-turn
references: [start.png]
turns:
  - prompt: Make him smile
    variants: {terse: Smile}
  - prompt: Add this scarf
    references: [scarf.png]
  - prompt: Make it night
params: {aspect_ratio: "1:1", seed: 42}
""", encoding="utf-8")
    return suite


@pytest.fixture
def talk_suite(tmp_path: Path) -> Path:
    return write_talk_suite(tmp_path / "suite")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, str]]]:
    """Every request the Gemini and OpenRouter adapters send: (protocol, turns of history, prompt)."""
    log: list[tuple[str, int, str]] = []
    for cls in (GeminiProvider, OpenRouterProvider):
        original = cls.exchange

        async def exchange(self: Any, request: GenerationRequest, http: TimedHttp, _original: Any = original,
                           ) -> GenerationResult:
            log.append((self.protocol, len(request.history), request.prompt))
            result: GenerationResult = await _original(self, request, http)
            return result

        monkeypatch.setattr(cls, "exchange", exchange)
    yield log


def without_conversation(target: Target) -> Target:
    """The target without the ``conversation`` option, so an OpenAI Images target keeps no conversation (the
    catalog's own run conversations as chained edits; tests/test_multiturn_openai_images.py covers those)."""
    return target.model_copy(update={"options": {k: v for k, v in target.options.items() if k != "conversation"}})


def run(tmp_path: Path, suite: Path, targets: list[str] = TARGETS, **options: Any) -> tuple[Path, str]:
    db = tmp_path / "results" / "harness.db"
    chosen = [without_conversation(t) for t in select(load_targets(), targets)]
    opts = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False, **options)
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts)
    return db, result.run_id


def rows(db: Path, run_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY target, variant, attempt",
                             (run_id,)).fetchall()
    out = []
    for r in found:
        row = dict(r)
        row["mark"] = json.loads(row["provider_timings_json"] or "{}").get("sequence")
        out.append(row)
    return out


def test_each_turn_is_an_attempt_and_only_the_last_ends_the_conversation(
        tmp_path: Path, talk_suite: Path, sent: list[tuple[str, int, str]]) -> None:
    db, run_id = run(tmp_path, talk_suite)
    attempts = rows(db, run_id)
    assert {r["target"] for r in attempts} == set(TARGETS[:2]), "OpenAI's Images API keeps no conversation and is not sent one"
    for target in TARGETS[:2]:
        for variant in ("default", "terse"):
            talk = [r for r in attempts if (r["target"], r["variant"]) == (target, variant)]
            assert [r["attempt"] for r in talk] == [1, 2, 3]
            assert [r["mark"]["turn"] for r in talk] == [1, 2, 3] and all(r["ok"] for r in talk)
            assert [r["final"] for r in talk] == [0, 0, 1]
            assert all(r["latency_ms"] > 0 and r["ttfb_ms"] is not None for r in talk)
            assert talk[0]["bytes_sent"] < talk[1]["bytes_sent"] < talk[2]["bytes_sent"]
            assert talk[2]["time_to_image_ms"] >= sum(r["latency_ms"] for r in talk)
            assert all(r["mark"]["reply"] is not None for r in talk)
            assert "base64," not in talk[2]["provider_timings_json"]
    assert sorted(h for _, h, _ in sent) == [0] * 4 + [1] * 4 + [2] * 4
    shown = CliRunner().invoke(stats, [run_id, "--by", "turn", "--json", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert sorted((r["target"], r["turn"], r["n"]) for r in data["turns"]) == sorted(
        (t, k, 2) for t in TARGETS[:2] for k in (1, 2, 3))
    assert {r["target"]: (r["n"], r["completed"]) for r in data["sequences"]} == {t: (2, 2) for t in TARGETS[:2]}
    table = CliRunner().invoke(stats, [run_id, "--by", "turn", "--db", str(db)])
    assert table.exit_code == 0 and "by conversation" in table.output


def test_a_failed_turn_ends_the_conversation_and_says_at_which_turn(
        tmp_path: Path, talk_suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = GeminiProvider.exchange

    async def refuse_the_scarf(self: GeminiProvider, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        if len(request.history) == 1:
            raise ProviderError(ErrorKind.REFUSED, "output blocked (IMAGE_SAFETY)", http_status=200,
                                provider_code="IMAGE_SAFETY")
        return await original(self, request, http)

    monkeypatch.setattr(GeminiProvider, "exchange", refuse_the_scarf)
    db, run_id = run(tmp_path, talk_suite, TARGETS[:1])
    talk = [r for r in rows(db, run_id) if r["variant"] == "default"]
    assert [(r["attempt"], r["ok"], r["final"], r["mark"]["turn"]) for r in talk] == [(1, 1, 0, 1), (2, 0, 1, 2)]
    assert talk[1]["error_kind"] == "refused" and talk[1]["mark"]["turn_final"]
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [run_id], columns=list(STRIP_COLUMNS), with_challenge=False)
        outputs = run_store.outputs_frame(store, [run_id], final_only=False)
        frozen = {(run_id, c["id"]): c for c in run_store.run_challenges(store, run_id)}
        strip = next(s for s in turn_strips(frame, outputs, frozen) if s.variant == "default")
        assert store.image_path(strip.steps[0].image_sha256 or "", strip.steps[0].image_ext or "").is_file()
    assert (strip.completed, strip.failed_at_turn, strip.turns) == (False, 2, 3)
    assert [(s.turn, s.ok, s.error_kind) for s in strip.steps] == [(1, True, None), (2, False, "refused")]
    assert strip.steps[0].prompt == "Make him smile" and strip.steps[1].image_sha256 is None
    assert len(strip.start_images) == 1 and strip.time_to_final_image_ms is None


def test_each_turn_has_its_own_retry_budget(tmp_path: Path, talk_suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = GeminiProvider.exchange
    failed: set[str] = set()

    async def flaky_last_turn(self: GeminiProvider, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        conversation = request.history[0].prompt if request.history else ""
        if len(request.history) == 2 and conversation not in failed:
            failed.add(conversation)
            raise ProviderError(ErrorKind.SERVER_ERROR, "internal error", http_status=500, retry_after_s=0)
        return await original(self, request, http)

    monkeypatch.setattr(GeminiProvider, "exchange", flaky_last_turn)
    db, run_id = run(tmp_path, talk_suite, TARGETS[:1], retries=1)
    talk = [r for r in rows(db, run_id) if r["variant"] == "default"]
    assert [(r["attempt"], r["ok"], r["final"], r["mark"]["turn"], r["mark"]["turn_final"]) for r in talk] == [
        (1, 1, 0, 1, True), (2, 1, 0, 2, True), (3, 0, 0, 3, False), (4, 1, 1, 3, True)]


def test_resume_continues_a_conversation_from_its_last_completed_turn(
        tmp_path: Path, talk_suite: Path, sent: list[tuple[str, int, str]]) -> None:
    db, run_id = run(tmp_path, talk_suite, TARGETS[:2])
    before = rows(db, run_id)
    with sqlite3.connect(db) as conn:  # as if the process died after turn 1 of every conversation
        conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE attempt > 1)")
        conn.execute("DELETE FROM attempts WHERE attempt > 1")
        conn.execute("UPDATE runs SET status='interrupted', finished_at=NULL")
    sent.clear()

    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))

    assert sorted(h for _, h, _ in sent) == [1] * 4 + [2] * 4, "only turns 2 and 3 are sent again"
    after = rows(db, run_id)
    assert len(after) == len(before)
    first_turns = [(r["target"], r["variant"], r["started_at"]) for r in before if r["attempt"] == 1]
    assert [(r["target"], r["variant"], r["started_at"]) for r in after if r["attempt"] == 1] == first_turns
    for r in after:
        assert r["mark"]["turn"] == r["attempt"] and r["ok"]
        assert r["final"] == (r["attempt"] == 3)


def test_a_gemini_target_whose_answers_would_outgrow_the_inline_limit_is_refused_with_the_turn(
        talk_suite: Path) -> None:
    (talk,) = load(talk_suite)
    target = select(load_targets(), ["gemini-3-pro-image-preview@google"])[0]
    big = target.model_copy(update={"options": {**target.options, "image_size": "4K"}})
    reason = refusal(talk, big)
    assert reason is not None and "turn 2 of smile-scarf-night" in reason and "20 MB inline limit" in reason
    assert refusal(talk, target) is None
    openai = without_conversation(select(load_targets(), ["gpt-image-1@openai"])[0])
    assert "protocol 'openai-images' cannot run multi-turn challenges yet" in (refusal(talk, openai) or "")
    with pytest.raises(ConfigError, match="no request to send"):
        plan_items([talk], [big, openai], RunOptions())
