"""Whatever a provider writes into a batch's results, every request gets an outcome: a result or a classified
error, never an exception that would lose the job's other requests."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.batch.gemini import GeminiBatch
from harness.batch.model import JobState, JobStatus
from harness.batch.openai import OpenAIBatch
from harness.providers.base import ProviderError
from harness.providers.gemini import GeminiProvider
from harness.providers.openai_images import OpenAIImagesProvider

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=4), max_leaves=20)


def png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


OPENAI = OpenAIBatch(OpenAIImagesProvider("http://127.0.0.1:9/v1", "sk-test"))
GEMINI = GeminiBatch(GeminiProvider("http://127.0.0.1:9", "g-test"))


def openai_entry() -> st.SearchStrategy[dict[str, Any]]:
    body = st.one_of(JSON, st.fixed_dictionaries({"data": st.lists(st.one_of(
        JSON, st.fixed_dictionaries({"b64_json": st.sampled_from([png(), "!!not base64", ""])})), max_size=2)}))
    response = st.one_of(st.none(), JSON, st.fixed_dictionaries(
        {"status_code": st.one_of(st.sampled_from([200, 400, 429, 500]), JSON), "body": body}))
    return st.fixed_dictionaries({"custom_id": st.just("r00000"), "response": response, "error": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(openai_entry())
def test_any_openai_result_line_becomes_a_result_or_a_classified_error(entry: dict[str, Any]) -> None:
    outcome = asyncio.run(OPENAI._outcome(entry, 100))
    assert (outcome.result is None) != (outcome.error is None)
    assert outcome.error is None or isinstance(outcome.error, ProviderError)


def gemini_entry() -> st.SearchStrategy[dict[str, Any]]:
    part = st.one_of(JSON, st.fixed_dictionaries({"inlineData": st.fixed_dictionaries(
        {"mimeType": st.just("image/png"), "data": st.sampled_from([png(), "%%%", 7])})}))
    response = st.one_of(JSON, st.fixed_dictionaries({"candidates": st.one_of(JSON, st.lists(
        st.fixed_dictionaries({"content": st.fixed_dictionaries({"parts": st.lists(part, max_size=3)})}),
        max_size=2))}))
    return st.fixed_dictionaries({"metadata": st.just({"key": "r00000.0"})},
                                 optional={"response": response, "error": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(gemini_entry(), max_size=3))
def test_any_gemini_inlined_responses_give_every_key_an_outcome(entries: list[dict[str, Any]]) -> None:
    status = JobStatus(JobState.SUCCEEDED, "BATCH_STATE_SUCCEEDED", inline=list(entries))
    outcomes = asyncio.run(GEMINI.collect(None, "batches/x", status, ["r00000", "r00001"]))  # type: ignore[arg-type]
    assert set(outcomes) == {"r00000", "r00001"}
    for outcome in outcomes.values():
        assert (outcome.result is None) != (outcome.error is None)
    assert outcomes["r00001"].error is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"name": st.just("batches/x")}, optional={
    "metadata": st.one_of(JSON, st.fixed_dictionaries({"state": st.sampled_from(["BATCH_STATE_SUCCEEDED", "ODD"])},
                                                      optional={"output": JSON})),
    "response": JSON, "error": JSON, "done": JSON}))
def test_any_gemini_poll_answer_is_a_status_or_a_classified_error(body: dict[str, Any]) -> None:
    import json

    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(body).encode())

    async def poll() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            try:
                return await GEMINI.poll(client, "batches/x")
            except ProviderError as error:
                return error

    assert isinstance(asyncio.run(poll()), (JobStatus, ProviderError))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.fixed_dictionaries({"status": st.sampled_from(["completed", "failed", "odd"])}, optional={
    "errors": st.one_of(JSON, st.fixed_dictionaries({"data": st.lists(JSON, max_size=2)})),
    "output_file_id": JSON, "error_file_id": JSON})))
def test_any_openai_poll_answer_is_a_status_or_a_classified_error(body: Any) -> None:
    import json

    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(body).encode())

    async def poll() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            try:
                return await OPENAI.poll(client, "batch_x")
            except ProviderError as error:
                return error

    assert isinstance(asyncio.run(poll()), (JobStatus, ProviderError))
