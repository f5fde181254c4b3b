"""Conversations on OpenAI's Images API as chained ``/images/edits`` (target option
``conversation: chained-edits``): each turn uploads the previous turn's output bytes first, then the turn's own
references; a first turn without starting images is a plain generation; a resume uploads the stored bytes.
Without the option an openai-images target is still refused multi-turn challenges, with the same message.

Requests are observed as the harness sends them (multipart parts or JSON) and answered by the sandbox."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.challenges import load
from harness.errors import ConfigError
from harness.run import RunOptions, resume_run, start_run
from harness.run.items import refusal
from harness.targets import Target, load_targets, resolve_keys, select
from harness.timing import TimedHttp, TimedResponse
from harness.wire import openai_images as wire
from tests.test_multiturn_run import rows, write_talk_suite

TARGET = "gpt-image-1@openai"
CHAINED = {"conversation": "chained-edits"}


@dataclass(frozen=True)
class Sent:
    """One request the harness sent to the Images API: the endpoint, the prompt, and for an edit the SHA-256
    of each ``image[]`` part in order."""

    endpoint: str
    prompt: str
    images: tuple[str, ...]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Sent]]:
    log: list[Sent] = []
    original = TimedHttp.request

    async def request(self: TimedHttp, method: str, url: str, **kwargs: Any) -> TimedResponse:
        if url.endswith(wire.EDITS_PATH):
            parts = kwargs["files"]
            assert all(name == "image[]" for name, _ in parts), "every input image is an image[] part"
            log.append(Sent("edits", kwargs["data"]["prompt"], tuple(sha(part[1]) for _, part in parts)))
        elif url.endswith(wire.GENERATIONS_PATH):
            log.append(Sent("generations", kwargs["json"]["prompt"], ()))
        response: TimedResponse = await original(self, method, url, **kwargs)
        return response

    monkeypatch.setattr(TimedHttp, "request", request)
    yield log


def chained_target(options: dict[str, Any] | None = None) -> Target:
    target = select(load_targets(), [TARGET])[0]
    return target.model_copy(update={"options": {**target.options, **(options or CHAINED)}})


def plain_target(name: str = TARGET) -> Target:
    """A catalog OpenAI Images target without the ``conversation`` option (the catalog's own sets it)."""
    target = select(load_targets(), [name])[0]
    return target.model_copy(update={"options": {k: v for k, v in target.options.items() if k != "conversation"}})


def run(tmp_path: Path, suite: Path, target: Target) -> tuple[Path, str]:
    db = tmp_path / "results" / "harness.db"
    opts = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False)
    result = start_run(db, load(suite), [target], resolve_keys([target], sandbox=True), opts)
    return db, result.run_id


def outputs_by_turn(db: Path, run_id: str, variant: str) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return {attempt: digest for attempt, digest in conn.execute(
            "SELECT a.attempt, o.sha256 FROM outputs o JOIN attempts a ON a.id = o.attempt_id "
            "WHERE a.run_id = ? AND a.variant = ?", (run_id, variant))}


@pytest.fixture
def talk_suite(tmp_path: Path) -> Path:
    return write_talk_suite(tmp_path / "suite")


def test_a_gpt_image_conversation_runs_as_chained_edits_each_fed_the_previous_output_first(
        tmp_path: Path, talk_suite: Path, sent: list[Sent]) -> None:
    db, run_id = run(tmp_path, talk_suite, chained_target())
    attempts = rows(db, run_id)
    for variant in ("default", "terse"):
        talk = [r for r in attempts if r["variant"] == variant]
        assert [(r["attempt"], r["mark"]["turn"], r["final"]) for r in talk] == [(1, 1, 0), (2, 2, 0), (3, 3, 1)]
        assert all(r["ok"] for r in talk), [r["error_message"] for r in talk]
        assert "base64," not in talk[2]["provider_timings_json"], "the stored reply names its image by hash"
    start = sha((talk_suite / "start.png").read_bytes())
    scarf = sha((talk_suite / "scarf.png").read_bytes())
    assert all(s.endpoint == "edits" for s in sent), "the conversation starts from an image: every turn edits"
    for variant, first_prompt in (("default", "Make him smile"), ("terse", "Smile")):
        out = outputs_by_turn(db, run_id, variant)
        assert Sent("edits", first_prompt, (start,)) in sent
        assert Sent("edits", "Add this scarf", (out[1], scarf)) in sent, "turn 1's output first, then the scarf"
        assert Sent("edits", "Make it night", (out[2],)) in sent
    assert len(sent) == 6


def test_a_conversation_without_starting_images_begins_with_a_plain_generation(
        tmp_path: Path, talk_suite: Path, sent: list[Sent]) -> None:
    talk = talk_suite / "talk.yaml"
    talk.write_text(talk.read_text(encoding="utf-8").replace("references: [start.png]\n", ""), encoding="utf-8")
    db, run_id = run(tmp_path, talk_suite, chained_target())
    out = outputs_by_turn(db, run_id, "default")
    assert sorted(s.endpoint for s in sent if s.prompt in ("Make him smile", "Smile")) == ["generations"] * 2
    assert Sent("edits", "Add this scarf", (out[1], sha((talk_suite / "scarf.png").read_bytes()))) in sent


def test_a_resumed_conversation_uploads_the_stored_output_of_the_last_completed_turn(
        tmp_path: Path, talk_suite: Path, sent: list[Sent]) -> None:
    db, run_id = run(tmp_path, talk_suite, chained_target())
    first = {v: outputs_by_turn(db, run_id, v)[1] for v in ("default", "terse")}
    with sqlite3.connect(db) as conn:  # as if the process died after turn 1 of both conversations
        conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE attempt > 1)")
        conn.execute("DELETE FROM attempts WHERE attempt > 1")
        conn.execute("UPDATE runs SET status='interrupted', finished_at=NULL")
    sent.clear()

    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))

    assert sorted(s.prompt for s in sent) == sorted(["Add this scarf", "Make it night"] * 2), "turn 1 not resent"
    scarves = [s.images for s in sent if s.prompt == "Add this scarf"]
    assert sorted(images[0] for images in scarves) == sorted(first.values()), "the stored bytes of turn 1"
    after = rows(db, run_id)
    assert all(r["ok"] for r in after) and sorted(r["attempt"] for r in after) == [1, 1, 2, 2, 3, 3]


def test_the_option_set_in_a_user_targets_file_turns_conversations_on(tmp_path: Path, talk_suite: Path) -> None:
    (talk,) = load(talk_suite)
    mine = tmp_path / "my-targets.yaml"
    mine.write_text(f"""
targets:
  - name: {TARGET}
    options: {{quality: medium, image_input_per_mtok_usd: 10.0, conversation: chained-edits}}
""", encoding="utf-8")
    target = select(load_targets(mine), [TARGET])[0]
    assert target.options["conversation"] == "chained-edits" and refusal(talk, target) is None


def test_without_the_option_an_openai_images_target_is_still_refused_with_the_same_message(
        talk_suite: Path) -> None:
    (talk,) = load(talk_suite)
    assert select(load_targets(), [TARGET])[0].options["conversation"] == "chained-edits", "the catalog's runs them"
    plain = plain_target()
    assert refusal(talk, plain) == (f"{TARGET}: protocol 'openai-images' cannot run multi-turn challenges yet: "
                                    "its adapter keeps no conversation")
    assert refusal(talk, chained_target()) is None
    with pytest.raises(ConfigError, match=r"target option conversation must be 'chained-edits'.*got 'responses'"):
        refusal(talk, chained_target({"conversation": "responses"}))
