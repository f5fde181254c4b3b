"""The official ``google-genai`` SDK's Batch Mode calls work against the sandbox unchanged but for the base URL:
``client.batches.create`` with inline requests, ``client.batches.get`` until the job ends, inlined responses
keyed by each request's metadata, expiry and cancellation."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import types
from PIL import Image

from harness.sandbox.servers import SandboxServer

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=sandbox.base_urls()["gemini"],
                                retry_options=types.HttpRetryOptions(attempts=1))
    c = genai.Client(api_key="sandbox-key", http_options=options)
    yield c
    c.close()


def inline(prompts: dict[str, str], ratio: str = "1:1") -> list[types.InlinedRequest]:
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"],
                                         image_config=types.ImageConfig(aspect_ratio=ratio))
    return [types.InlinedRequest(contents=prompt, metadata={"key": key}, config=config)
            for key, prompt in prompts.items()]


def state(job: types.BatchJob) -> str:
    return job.state.value if job.state is not None else ""


def wait(client: genai.Client, job: types.BatchJob) -> tuple[types.BatchJob, list[str]]:
    assert job.name
    seen = [state(job)]
    deadline = time.monotonic() + 60
    while state(job) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.batches.get(name=job.name)
        if state(job) != seen[-1]:
            seen.append(state(job))
    return job, seen


def test_an_inline_batch_moves_through_its_states_and_answers_each_request_by_its_key(client: genai.Client) -> None:
    job = client.batches.create(model="gemini-2.5-flash-image", src=inline({"fox": "a fox", "owl": "an owl"}, "16:9"),
                                config={"display_name": "sdk-test"})
    assert job.name and job.name.startswith("batches/") and job.display_name == "sdk-test"
    job, seen = wait(client, job)
    order = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert seen[0] == order[0] and seen[-1] == order[-1]
    assert seen == sorted(seen, key=order.index), "states only move forward (a slow poll may miss RUNNING)"
    assert job.dest is not None and job.dest.inlined_responses is not None
    by_key = {r.metadata["key"]: r for r in job.dest.inlined_responses if r.metadata}
    assert set(by_key) == {"fox", "owl"}
    response = by_key["owl"].response
    assert response is not None and response.candidates
    parts = response.candidates[0].content.parts  # type: ignore[union-attr]
    images = [Image.open(io.BytesIO(p.inline_data.data)) for p in parts or [] if p.inline_data and p.inline_data.data]
    assert [i.size for i in images] == [(1344, 768)]
    assert response.usage_metadata is not None and response.usage_metadata.candidates_token_count


def test_a_failing_request_carries_an_error_while_the_others_succeed(client: genai.Client) -> None:
    job = client.batches.create(model="gemini-2.5-flash-image",
                                src=inline({"ok": "a fox", "bad": "a fox [sandbox-fault:server_error]"}))
    job, _ = wait(client, job)
    assert state(job) == "JOB_STATE_SUCCEEDED"
    by_key = {r.metadata["key"]: r for r in job.dest.inlined_responses or [] if r.metadata}  # type: ignore[union-attr]
    assert by_key["bad"].error is not None and by_key["bad"].error.code == 13 and by_key["bad"].response is None
    assert by_key["ok"].response is not None and by_key["ok"].error is None


def test_an_expired_job_has_no_results(client: genai.Client) -> None:
    job = client.batches.create(model="gemini-2.5-flash-image",
                                src=inline({"a": "a fox [sandbox-batch:expire]", "b": "an owl"}))
    job, _ = wait(client, job)
    assert state(job) == "JOB_STATE_EXPIRED"
    assert job.dest is None or not job.dest.inlined_responses


def test_a_cancelled_job_ends_cancelled(client: genai.Client) -> None:
    job = client.batches.create(model="gemini-2.5-flash-image", src=inline({"a": "a fox"}))
    assert job.name
    client.batches.cancel(name=job.name)
    job, _ = wait(client, client.batches.get(name=job.name))
    assert state(job) == "JOB_STATE_CANCELLED"


def test_a_batch_for_an_unknown_model_is_refused_with_googles_not_found(client: genai.Client) -> None:
    from google.genai import errors

    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model="gemini-0-nope", src=inline({"a": "a fox"}))
    assert caught.value.code == 404
