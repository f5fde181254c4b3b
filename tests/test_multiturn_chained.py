"""Conversations on fal and Replicate: each turn an edit fed the previous turn's output.

While a conversation runs, the next turn sends the URL the provider itself issued for the previous output
(the sandbox's own CDN / delivery URL); after a resume, when that URL may have expired, it sends the stored
bytes as a data URL. Requests are observed as the adapters build them and answered by the sandbox process,
which refuses any image URL it did not issue (422 file_download_error), so a wrong chain fails the turn."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pybase64
import pytest

from harness.challenges import load
from harness.providers import fal as fal_adapter
from harness.providers import replicate as replicate_adapter
from harness.providers.base import ChallengeKind, Exchange, GenerationRequest, OutputImage
from harness.providers.chain import LIVE_KEY, chained_image_urls, chained_reply, previous_output
from harness.run import RunOptions, resume_run, start_run
from harness.run.sequence import pack_reply
from harness.targets import load_targets, resolve_keys, select
from tests.test_multiturn_run import rows, write_talk_suite

CHAINED = ["gemini-2.5-flash-image@fal", "gemini-2.5-flash-image@replicate"]


@pytest.fixture
def talk_suite(tmp_path: Path) -> Path:
    return write_talk_suite(tmp_path / "suite")


@pytest.fixture
def inputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, list[str]]]]:
    """Every chained turn's model input as the adapters built it: (protocol, prompt, image URLs sent)."""
    log: list[tuple[str, str, list[str]]] = []
    for module, field in ((fal_adapter, "image_urls"), (replicate_adapter, "image_input")):
        original = module.build_input

        def build(*args: Any, _original: Any = original, _field: str = field, _module: Any = module,
                  **kwargs: Any) -> dict[str, Any]:
            body: dict[str, Any] = _original(*args, **kwargs)
            request = args[1]
            if request.kind == ChallengeKind.MULTI_TURN:
                log.append((_module.__name__.rsplit(".", 1)[-1], body["prompt"], list(body.get(_field, []))))
            return body

        monkeypatch.setattr(module, "build_input", build)
    yield log


def run(tmp_path: Path, suite: Path, **options: Any) -> tuple[Path, str]:
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(), CHAINED)
    opts = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False, **options)
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts)
    return db, result.run_id


def test_fal_and_replicate_run_a_conversation_as_chained_edits_fed_the_urls_they_issued(
        tmp_path: Path, talk_suite: Path, inputs: list[tuple[str, str, list[str]]]) -> None:
    db, run_id = run(tmp_path, talk_suite)
    attempts = rows(db, run_id)
    assert {r["target"] for r in attempts} == set(CHAINED)
    for target in CHAINED:
        for variant in ("default", "terse"):
            talk = [r for r in attempts if (r["target"], r["variant"]) == (target, variant)]
            assert [(r["attempt"], r["mark"]["turn"], r["final"]) for r in talk] == [(1, 1, 0), (2, 2, 0), (3, 3, 1)]
            assert all(r["ok"] for r in talk), [r["error_message"] for r in talk]
            assert all(r["mark"]["reply"] is not None for r in talk)
            assert all(LIVE_KEY not in r["mark"]["reply"] for r in talk), "a provider URL that expires is not stored"
            assert "base64," not in talk[2]["provider_timings_json"], "the stored reply names images by hash"
    for protocol in ("fal", "replicate"):
        sent = [(prompt, urls) for p, prompt, urls in inputs if p == protocol]
        assert sorted(prompt for prompt, _ in sent) == sorted(
            ["Make him smile", "Smile", "Add this scarf", "Add this scarf", "Make it night", "Make it night"])
        for prompt, urls in sent:
            if prompt in ("Make him smile", "Smile"):
                assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,"), "the start is uploaded"
                continue
            assert urls[0].startswith("http://127.0.0.1:"), f"{protocol} is fed the URL it issued, not a re-upload"
            if prompt == "Add this scarf":
                assert len(urls) == 2 and urls[1].startswith("data:image/png;base64,"), "then the turn's own image"


def test_a_resumed_chain_sends_the_stored_output_because_the_issued_url_may_be_gone(
        tmp_path: Path, talk_suite: Path, inputs: list[tuple[str, str, list[str]]]) -> None:
    db, run_id = run(tmp_path, talk_suite)
    with sqlite3.connect(db) as conn:
        first_outputs = {(t, v): sha for t, v, sha in conn.execute(
            "SELECT a.target, a.variant, o.sha256 FROM outputs o JOIN attempts a ON a.id = o.attempt_id "
            "WHERE a.attempt = 1")}
        conn.execute("DELETE FROM outputs WHERE attempt_id IN (SELECT id FROM attempts WHERE attempt > 1)")
        conn.execute("DELETE FROM attempts WHERE attempt > 1")
        conn.execute("UPDATE runs SET status='interrupted', finished_at=NULL")
    inputs.clear()

    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))

    after = rows(db, run_id)
    assert all(r["ok"] for r in after) and sorted(r["attempt"] for r in after) == sorted([1, 2, 3] * 4)
    second_turns = [urls for _, prompt, urls in inputs if prompt == "Add this scarf"]
    assert len(second_turns) == 4, "fal and Replicate each continue both variants' conversations once"
    for urls in second_turns:
        assert urls[0].startswith("data:image/"), "after a resume the stored bytes are sent"
        sent = hashlib.sha256(pybase64.b64decode(urls[0].split(",", 1)[1])).hexdigest()
        assert sent in set(first_outputs.values()), "it is a first turn's own output"


def test_chain_input_data_uploads_the_previous_output_even_while_its_url_is_live() -> None:
    image = OutputImage(b"\x89PNG fake", "image/png", "https://v3.fal.media/files/x.png")
    reply = chained_reply([image])
    assert reply[LIVE_KEY] == {"url": "https://v3.fal.media/files/x.png"}
    request = GenerationRequest(model_id="fal-ai/nano-banana", prompt="again", kind=ChallengeKind.MULTI_TURN,
                                history=(Exchange("first", (), reply),))
    assert chained_image_urls(request, {}) == ["https://v3.fal.media/files/x.png"]
    assert chained_image_urls(request, {"chain_input": "data"}) == [
        "data:image/png;base64," + pybase64.b64encode(image.data).decode()]
    stored = pack_reply(reply, [hashlib.sha256(image.data).hexdigest()])
    assert LIVE_KEY not in stored and stored["images"][0]["url"]["$image"] == hashlib.sha256(image.data).hexdigest()
    assert previous_output((), prefer_url=True) is None


def test_a_bad_chain_input_option_is_named() -> None:
    request = GenerationRequest(model_id="m", prompt="p", kind=ChallengeKind.MULTI_TURN)
    with pytest.raises(Exception, match="chain_input must be one of url, data, got 'ftp'"):
        chained_image_urls(request, {"chain_input": "ftp"})
