"""The OpenAI Responses adapter (image_generation tool) against its sandbox server: request shapes per turn, a
conversation continued by ``previous_response_id`` (also after a crash and ``--resume``), single requests,
streaming, and every failure classified."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness.challenges import load
from harness.providers import openai_responses as adapter
from harness.providers.base import ChallengeKind, ErrorKind, Exchange, GenerationRequest, ProviderError
from harness.providers.openai_responses import OpenAIResponsesProvider, failure, read_response
from harness.run import RunOptions, perform_attempt, resume_run, start_run
from harness.sandbox.servers import SandboxServer
from harness.targets import load_targets, resolve_keys, select
from harness.wire import openai_responses as wire
from tests.conftest import image, mask, photo_like
from tests.test_multiturn_run import rows, write_talk_suite

TARGET = "gpt-image-1.5@openai-responses-test"
TARGETS = """targets:
  - name: {name}
    model: gpt-4.1
    model_name: gpt-image-1.5
    provider: openai
    protocol: openai-responses
    base_url: {base_url}
    api_key_env: [RESPONSES_TEST_KEY]
    price_per_image_usd: 0.034
    options: {{image_model: gpt-image-1.5, quality: low}}
"""


def provider(sandbox: SandboxServer, key: str = "sandbox-key", **options: object) -> OpenAIResponsesProvider:
    return OpenAIResponsesProvider(OpenAIResponsesProvider.sandbox_base_url(sandbox.root, {}), key, options)


@pytest.fixture
def bodies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every request body the adapter builds, in order."""
    log: list[dict[str, Any]] = []
    original = adapter.request_body

    def build(request: GenerationRequest, options: Any) -> dict[str, Any]:
        body = original(request, options)
        log.append(body)
        return body

    monkeypatch.setattr(adapter, "request_body", build)
    yield log


def targets_file(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(TARGETS.format(name=TARGET, base_url=base_url), encoding="utf-8")
    return path


def texts_and_images(body: dict[str, Any]) -> tuple[list[str], int]:
    content = body["input"][0]["content"]
    return ([p["text"] for p in content if p["type"] == "input_text"],
            sum(p["type"] == "input_image" for p in content))


def response_ids(db: Path, run_id: str) -> dict[tuple[str, int], str]:
    return {(r["variant"], r["mark"]["turn"]): r["mark"]["reply"]["id"] for r in rows(db, run_id) if r["ok"]}


# ---- conversations ---------------------------------------------------------------------------------------


def test_a_sandbox_run_holds_the_conversation_by_previous_response_id(
        tmp_path: Path, bodies: list[dict[str, Any]]) -> None:
    suite = write_talk_suite(tmp_path / "suite")
    chosen = select(load_targets(targets_file(tmp_path, "https://api.openai.com/v1")), [TARGET])
    db = tmp_path / "results" / "harness.db"
    opts = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False)
    run_id = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts).run_id

    attempts = rows(db, run_id)
    assert [(r["variant"], r["mark"]["turn"], r["final"]) for r in attempts] == [
        ("default", 1, 0), ("default", 2, 0), ("default", 3, 1), ("terse", 1, 0), ("terse", 2, 0), ("terse", 3, 1)]
    assert all(r["ok"] for r in attempts), [r["error_message"] for r in attempts]
    assert all("base64," not in r["provider_timings_json"] for r in attempts), "stored replies name images by hash"
    ids = response_ids(db, run_id)
    by_prompt = {texts_and_images(b)[0][0]: b for b in bodies}
    for first in ("Make him smile", "Smile"):
        body = by_prompt[first]
        assert "previous_response_id" not in body and body["store"] is True
        assert texts_and_images(body) == ([first], 1), "turn 1 sends the instruction and the starting image"
        assert body["model"] == "gpt-4.1" and body["tool_choice"] == {"type": "image_generation"}
        assert body["tools"] == [{"type": "image_generation", "model": "gpt-image-1.5", "size": "1024x1024",
                                  "quality": "low"}]
    later = [b for b in bodies if "previous_response_id" in b]
    assert sorted(texts_and_images(b) for b in later) == [
        (["Add this scarf"], 1), (["Add this scarf"], 1), (["Make it night"], 0), (["Make it night"], 0)], \
        "a later turn sends only its own instruction and references"
    assert {b["previous_response_id"] for b in later} == {ids[("default", 1)], ids[("default", 2)],
                                                           ids[("terse", 1)], ids[("terse", 2)]}
    assert all(b["store"] is True for b in later)


def test_resume_after_a_crash_sends_turn_two_with_the_stored_response_id(
        tmp_path: Path, sandbox: SandboxServer, bodies: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run talks to a sandbox that outlives it (as OpenAI's store outlives a crashed process): the resumed
    turn 2 continues the server-side conversation by the id kept in the stored reply, never by resending."""
    monkeypatch.setenv("RESPONSES_TEST_KEY", "sk-resume-test")
    suite = write_talk_suite(tmp_path / "suite")
    base_url = OpenAIResponsesProvider.sandbox_base_url(sandbox.root, {})
    chosen = select(load_targets(targets_file(tmp_path, base_url)), [TARGET])
    db = tmp_path / "results" / "harness.db"
    run_id = start_run(db, load(suite), chosen, resolve_keys(chosen), RunOptions(variants=("default",))).run_id
    first = response_ids(db, run_id)[("default", 1)]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE attempt > 1)")
        conn.execute("DELETE FROM attempts WHERE attempt > 1")
        conn.execute("UPDATE runs SET status='interrupted', finished_at=NULL")
    bodies.clear()

    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))

    assert [texts_and_images(b)[0] for b in bodies] == [["Add this scarf"], ["Make it night"]], "nothing resent"
    assert bodies[0]["previous_response_id"] == first
    after = rows(db, run_id)
    assert [(r["mark"]["turn"], r["ok"]) for r in after] == [(1, 1), (2, 1), (3, 1)]
    assert "previous_response" not in json.loads(after[1]["provider_timings_json"]), "the id was still held"
    assert "sk-resume-test" not in "".join(r["provider_timings_json"] for r in after), "the key is never stored"


def test_harness_run_sandbox_runs_a_conversation_on_an_openai_responses_target(tmp_path: Path) -> None:
    suite = write_talk_suite(tmp_path / "suite")
    db = tmp_path / "runs.db"
    run = subprocess.run([sys.executable, "-m", "harness", "run", "--sandbox", "--no-faults", "--time-scale", "0.005",
                          "--targets", str(targets_file(tmp_path, "https://api.openai.com/v1")), "--target", TARGET,
                          "--challenges", str(suite), "--variant", "default", "--db", str(db)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT protocol, ok, final, request_id, provider_timings_json FROM attempts "
                             "ORDER BY attempt").fetchall()
    assert [(p, ok, final) for p, ok, final, _, _ in found] == [("openai-responses", 1, 0),
                                                                ("openai-responses", 1, 0),
                                                                ("openai-responses", 1, 1)]
    assert all(str(rid).startswith("resp_") for _, _, _, rid, _ in found)
    replies = [json.loads(t)["sequence"]["reply"] for _, _, _, _, t in found]
    assert [r["id"] for r in replies] == [rid for _, _, _, rid, _ in found], "each turn keeps its response id"


def test_a_sandbox_run_resumed_in_a_fresh_sandbox_resends_the_stored_image(
        tmp_path: Path, bodies: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """``harness run --sandbox --resume`` starts a new sandbox, which holds no stored response: turn 2 is
    refused as previous_response_not_found and sent again with turn 1's stored image, and says so."""
    suite = write_talk_suite(tmp_path / "suite")
    chosen = select(load_targets(targets_file(tmp_path, "https://api.openai.com/v1")), [TARGET])
    db = tmp_path / "results" / "harness.db"
    opts = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False, variants=("default",))
    run_id = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts).run_id
    with sqlite3.connect(db) as conn:
        turn1 = conn.execute("SELECT o.sha256 FROM outputs o JOIN attempts a ON a.id = o.attempt_id "
                             "WHERE a.attempt = 1").fetchone()[0]
        conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE attempt > 1)")
        conn.execute("DELETE FROM attempts WHERE attempt > 1")
        conn.execute("UPDATE runs SET status='interrupted', finished_at=NULL")
    bodies.clear()
    resent: list[dict[str, Any]] = []
    original = adapter.resend_body

    def record(*args: Any) -> dict[str, Any] | None:
        body = original(*args)
        if body is not None:
            resent.append(body)
        return body

    monkeypatch.setattr(adapter, "resend_body", record)

    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))

    after = rows(db, run_id)
    assert [(r["mark"]["turn"], r["ok"]) for r in after] == [(1, 1), (2, 1), (3, 1)]
    assert len(resent) == 1 and "previous_response_id" not in resent[0]
    assert texts_and_images(resent[0]) == (["Add this scarf"], 2), "turn 1's image, then the scarf"
    first_image = resent[0]["input"][0]["content"][1]["image_url"]
    assert hashlib.sha256(base64.b64decode(first_image.split(",", 1)[1])).hexdigest() == turn1
    timings = json.loads(after[1]["provider_timings_json"])
    assert timings["previous_response"] == adapter.RESENT
    assert "previous_response" not in json.loads(after[2]["provider_timings_json"]), "turn 3 continues turn 2"
    assert bodies[0]["previous_response_id"] == response_ids(db, run_id)[("default", 1)]


@pytest.mark.anyio
async def test_a_lost_previous_response_resends_the_stored_image_or_fails_as_told(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    start = image("start.png", (96, 64), 1)
    first = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gpt-4.1", prompt="Make him smile", kind=ChallengeKind.MULTI_TURN, references=(start,)), client, 30)
    assert first.result is not None and first.result.reply is not None
    lost = {**first.result.reply, "id": "resp_forgotten"}
    turn2 = GenerationRequest(model_id="gpt-4.1", prompt="Add a scarf", kind=ChallengeKind.MULTI_TURN,
                              history=(Exchange("Make him smile", (start,), lost),))
    resent = await perform_attempt(provider(sandbox), turn2, client, 30)
    assert resent.error is None, resent.error
    assert resent.result is not None and resent.result.provider_timings["previous_response"] == adapter.RESENT
    failed = await perform_attempt(provider(sandbox, lost_conversation="fail"), turn2, client, 30)
    assert failed.error is not None and failed.error.kind == ErrorKind.INVALID_REQUEST
    assert failed.error.provider_code == "previous_response_not_found" and failed.error.http_status == 400
    assert "resp_forgotten" in failed.error.message


@pytest.mark.anyio
async def test_a_streamed_conversation_continues_from_the_streamed_response(
        sandbox: SandboxServer, client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    first = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gpt-4.1", prompt="Draw a cat", kind=ChallengeKind.MULTI_TURN, stream=True), client, 30)
    assert first.result is not None and first.result.reply is not None
    second = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gpt-4.1", prompt="Make it orange", kind=ChallengeKind.MULTI_TURN, stream=True,
        history=(Exchange("Draw a cat", (), first.result.reply),)), client, 30)
    assert second.error is None, second.error
    assert bodies[1]["previous_response_id"] == first.result.reply["id"] == first.result.request_id
    assert second.result is not None and "previous_response" not in second.result.provider_timings


@pytest.mark.anyio
async def test_a_hostile_server_echoing_the_key_plants_it_nowhere() -> None:
    """A server that writes the key into the response id, its text and the tool call: the reply kept for the
    next turn, the result and the error carry none of it."""
    key = "sk-hostile-secret-123456"
    png = photo_like((64, 64), 5)

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        if "previous_response_id" in sent:
            return httpx.Response(400, json=wire.previous_not_found(key))
        return httpx.Response(200, headers={"x-request-id": f"req_{key}"}, json={
            "id": f"resp_{key}", "object": "response", "status": "completed", "model": "gpt-4.1",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": f"your key is {key}"}]},
                       {"type": "image_generation_call", "id": f"ig_{key}", "status": "completed",
                        "revised_prompt": key, "result": base64.b64encode(png).decode()}]})

    hostile = OpenAIResponsesProvider("https://api.openai.com/v1", key, {"lost_conversation": "fail"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mock:
        first = await perform_attempt(hostile, GenerationRequest(
            model_id="gpt-4.1", prompt="a cat", kind=ChallengeKind.MULTI_TURN), mock, 30)
        assert first.error is None and first.result is not None and first.result.reply is not None
        assert key not in json.dumps(first.result.reply) and key not in str(first.result.request_id)
        assert key not in (first.result.text or "")
        second = await perform_attempt(hostile, GenerationRequest(
            model_id="gpt-4.1", prompt="again", kind=ChallengeKind.MULTI_TURN,
            history=(Exchange("a cat", (), first.result.reply),)), mock, 30)
    assert second.error is not None and key not in second.error.message


# ---- single requests -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_text_to_image_is_a_single_unstored_response(sandbox: SandboxServer, client: httpx.AsyncClient,
                                                           bodies: list[dict[str, Any]]) -> None:
    req = GenerationRequest(model_id="gpt-5", prompt="a watercolor fox", aspect_ratio="16:9")
    outcome = await perform_attempt(provider(sandbox, quality="low", image_model="gpt-image-1"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height) for i in outcome.images] == [(1536, 1024)]
    assert bodies[0]["store"] is False and "previous_response_id" not in bodies[0]
    assert outcome.result is not None and outcome.result.request_id.startswith("resp_")  # type: ignore[union-attr]
    usage = outcome.result.usage
    assert usage["output_tokens"] == wire.OUTPUT_TOKENS[("low", "1536x1024")]
    assert usage["text_model_output_tokens"] > 0
    assert outcome.result.reply is None, "a single request keeps no conversation"


@pytest.mark.anyio
async def test_an_edit_sends_its_images_and_an_inpaint_its_mask_in_the_tool(
        sandbox: SandboxServer, client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    edit = GenerationRequest(model_id="gpt-4.1", prompt="combine them", kind=ChallengeKind.COMPOSE, references=refs)
    assert (await perform_attempt(provider(sandbox), edit, client, 30)).error is None
    assert texts_and_images(bodies[-1]) == (["combine them"], 2)
    paint = GenerationRequest(model_id="gpt-4.1", prompt="a hat", kind=ChallengeKind.INPAINT, references=refs[:1],
                              mask=mask((96, 64)))
    assert (await perform_attempt(provider(sandbox), paint, client, 30)).error is None
    assert bodies[-1]["tools"][0]["input_image_mask"]["image_url"].startswith("data:image/png;base64,")


@pytest.mark.anyio
async def test_streaming_marks_the_first_partial_image_and_reads_the_completed_response(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gpt-4.1", prompt="a lighthouse", stream=True)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    ttfb, latency = outcome.clock.ttfb_ms, outcome.clock.latency_ms
    assert ttfb is not None and latency is not None and ttfb < latency
    assert len(outcome.images) == 1


# ---- failures --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "kind", "code"), [
    ("refused_output", ErrorKind.REFUSED, "moderation_blocked"),
    ("no_image", ErrorKind.NO_IMAGE, None),
    ("rate_limited", ErrorKind.RATE_LIMITED, "rate_limit_exceeded"),
    ("quota_exhausted", ErrorKind.QUOTA_EXHAUSTED, "insufficient_quota"),
    ("server_error", ErrorKind.SERVER_ERROR, "server_error"),
    ("refused", ErrorKind.REFUSED, "moderation_blocked"),
])
async def test_sandbox_faults_are_classified(sandbox: SandboxServer, client: httpx.AsyncClient, fault: str,
                                             kind: ErrorKind, code: str | None) -> None:
    for stream in (False, True):
        req = GenerationRequest(model_id="gpt-4.1", prompt=f"a fox [sandbox-fault:{fault}]", stream=stream)
        outcome = await perform_attempt(provider(sandbox), req, client, 30)
        assert outcome.error is not None and outcome.error.kind == kind, (stream, outcome.error)
        assert outcome.error.provider_code == code


@pytest.mark.anyio
async def test_a_mid_stream_failure_is_a_failed_response(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gpt-4.1", prompt="a fox [sandbox-fault:mid_stream_error]", stream=True)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.SERVER_ERROR
    assert outcome.error.provider_code == "server_error" and outcome.error.kind.retryable


@pytest.mark.anyio
async def test_a_model_without_the_tool_and_a_bad_key_are_named(sandbox: SandboxServer,
                                                                client: httpx.AsyncClient) -> None:
    wrong = await perform_attempt(provider(sandbox), GenerationRequest(model_id="gpt-3.5-turbo", prompt="a fox"),
                                  client, 30)
    assert wrong.error is not None and wrong.error.kind == ErrorKind.INVALID_REQUEST
    assert "not supported with gpt-3.5-turbo" in wrong.error.message
    bad = await perform_attempt(provider(sandbox, key="invalid"), GenerationRequest(model_id="gpt-4.1", prompt="x"),
                                client, 30)
    assert bad.error is not None and bad.error.kind == ErrorKind.AUTH


def _response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": output,
            "usage": {"input_tokens": 10, "output_tokens": 5}, **extra}


@pytest.mark.parametrize(("body", "kind", "code"), [
    (_response("failed", [], error={"code": "server_error", "message": "oops"}), ErrorKind.SERVER_ERROR,
     "server_error"),
    (_response("failed", [], error={"code": "rate_limit_exceeded", "message": "slow"}), ErrorKind.RATE_LIMITED,
     "rate_limit_exceeded"),
    (_response("failed", [], error={"code": "image_content_policy_violation", "message": "no"}), ErrorKind.REFUSED,
     "image_content_policy_violation"),
    (_response("failed", [], error={"code": "invalid_image_url", "message": "bad"}), ErrorKind.INVALID_REQUEST,
     "invalid_image_url"),
    (_response("incomplete", [], incomplete_details={"reason": "content_filter"}), ErrorKind.REFUSED,
     "content_filter"),
    (_response("incomplete", [], incomplete_details={"reason": "max_output_tokens"}), ErrorKind.NO_IMAGE,
     "max_output_tokens"),
    (_response("completed", [{"type": "message", "content": [{"type": "refusal", "refusal": "I can't"}]}]),
     ErrorKind.REFUSED, "refusal"),
    (_response("completed", [{"type": "message", "content": [{"type": "output_text", "text": "Here you go"}]}]),
     ErrorKind.NO_IMAGE, None),
    (_response("completed", [{"type": "image_generation_call", "status": "failed", "result": None}]),
     ErrorKind.SERVER_ERROR, "image_generation_failed"),
])
def test_answers_without_an_image_are_classified_and_billed(body: dict[str, Any], kind: ErrorKind,
                                                            code: str | None) -> None:
    answer = read_response(body, "req_1", 200)
    problem = failure(body, answer, "req_1", 200)
    assert problem is not None and problem.kind == kind and problem.provider_code == code
    assert problem.billed and problem.usage == {"text_model_input_tokens": 10, "text_model_output_tokens": 5}


def test_a_body_that_is_not_a_response_is_bad_output() -> None:
    with pytest.raises(ProviderError) as caught:
        read_response({"object": "chat.completion", "choices": []}, None, 200)
    assert caught.value.kind == ErrorKind.BAD_OUTPUT


def test_a_conversation_turn_without_a_stored_id_cannot_continue() -> None:
    turn = GenerationRequest(model_id="gpt-4.1", prompt="again", kind=ChallengeKind.MULTI_TURN,
                             history=(Exchange("first", (), {"images": []}),))
    with pytest.raises(Exception, match="holds no response id"):
        adapter.request_body(turn, {})


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=12)
_item = st.fixed_dictionaries({"type": st.sampled_from(["image_generation_call", "message", "reasoning"])},
                              optional={"result": _json | st.just("aGVsbG8="), "size": _json | st.just("1x2x3"),
                                        "status": _json, "error": _json, "content": _json,
                                        "output_format": _json})
_body = st.fixed_dictionaries({}, optional={
    "id": _json, "object": st.just("response") | _json, "status": st.sampled_from(list(wire.RESPONSE_STATUSES)) | _json,
    "output": st.lists(_item, max_size=3) | _json, "error": _json, "incomplete_details": _json,
    "usage": _json, "tool_usage": _json})


@settings(max_examples=300, deadline=None)
@given(body=_body)
@example(body={"output": [{"type": "message", "content": 5}]})
@example(body={"status": "failed", "error": {"code": 3}, "output": [{"type": "image_generation_call",
                                                                     "size": "axb", "result": None}]})
def test_any_answer_body_gives_images_or_a_classified_failure(body: dict[str, Any]) -> None:
    """Whatever a server sends with a 200, reading it gives images or a ProviderError, never a crash."""
    try:
        answer = read_response(body, "req_1", 200)
        problem = failure(body, answer, "req_1", 200)
    except ProviderError as exc:
        assert exc.kind == ErrorKind.BAD_OUTPUT
        return
    assert (problem is None) == bool(answer.images)
    assert all(isinstance(v, int) for v in answer.usage.values())
