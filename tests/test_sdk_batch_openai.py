"""The official ``openai`` SDK's Batch API calls (files + batches) work against the sandbox unchanged but for
``base_url``: upload a JSONL of image generations, create a batch, poll it to its end, download the output and
error files and correlate their lines by ``custom_id``."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator

import openai
import pytest
from PIL import Image

from harness.sandbox.servers import SandboxServer


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sandbox.base_urls()["openai"], api_key="sk-sandbox", max_retries=0) as c:
        yield c


def jsonl(prompts: dict[str, str], size: str = "1024x1024") -> bytes:
    lines = [{"custom_id": key, "method": "POST", "url": "/v1/images/generations",
              "body": {"model": "gpt-image-1", "prompt": prompt, "size": size, "quality": "low"}}
             for key, prompt in prompts.items()]
    return "\n".join(json.dumps(line) for line in lines).encode()


def run_batch(client: openai.OpenAI, data: bytes) -> tuple[openai.types.Batch, list[str]]:
    uploaded = client.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(data)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                  completion_window="24h", metadata={"run": "sdk-test"})
    seen: list[str] = [batch.status]
    deadline = time.monotonic() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
        if batch.status != seen[-1]:
            seen.append(batch.status)
    return batch, seen


def lines_of(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, object]]:
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    return {entry["custom_id"]: entry for entry in map(json.loads, text.splitlines())}


def test_a_batch_of_generations_moves_through_its_states_and_returns_every_image_by_custom_id(
        client: openai.OpenAI) -> None:
    batch, seen = run_batch(client, jsonl({"fox": "a fox", "owl": "an owl", "cat": "a cat"}, size="1536x1024"))
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert seen[0] == order[0] and seen[-1] == order[-1]
    assert seen == sorted(seen, key=order.index), "states only move forward (a slow poll may miss some)"
    assert batch.request_counts is not None and (batch.request_counts.total, batch.request_counts.completed) == (3, 3)
    assert batch.completed_at is not None and batch.error_file_id is None
    out = lines_of(client, batch.output_file_id)
    assert set(out) == {"fox", "owl", "cat"}
    response = out["owl"]["response"]
    assert isinstance(response, dict) and response["status_code"] == 200
    body = response["body"]
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.size == (1536, 1024)
    assert body["usage"]["output_tokens"] == 400


def test_a_refused_request_lands_in_the_error_file_while_the_rest_succeed(client: openai.OpenAI) -> None:
    batch, _ = run_batch(client, jsonl({"ok": "a fox", "bad": "a fox [sandbox-fault:refused]"}))
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.failed == 1
    errors = lines_of(client, batch.error_file_id)
    response = errors["bad"]["response"]
    assert isinstance(response, dict) and response["status_code"] == 400
    assert response["body"]["error"]["code"] == "moderation_blocked"
    assert set(lines_of(client, batch.output_file_id)) == {"ok"}


def test_an_expired_batch_returns_the_work_it_finished_and_fails_the_rest_as_batch_expired(
        client: openai.OpenAI) -> None:
    prompts = {f"r{i}": "a fox" for i in range(4)}
    prompts["r0"] = "a fox [sandbox-batch:expire]"
    batch, _ = run_batch(client, jsonl(prompts))
    assert batch.status == "expired" and batch.expired_at is not None
    done = lines_of(client, batch.output_file_id)
    failed = lines_of(client, batch.error_file_id)
    assert len(done) == 2 and set(done) | set(failed) == set(prompts)
    assert all(entry["error"]["code"] == "batch_expired" for entry in failed.values())  # type: ignore[index]


def test_a_batch_that_fails_validation_says_which_line(client: openai.OpenAI) -> None:
    data = jsonl({"a": "a fox"}) + b"\n" + jsonl({"a": "again"})
    batch, _ = run_batch(client, data)
    assert batch.status == "failed" and batch.output_file_id is None
    assert batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "duplicate_custom_id" and batch.errors.data[0].line == 2


def test_a_batch_for_another_endpoint_or_window_is_refused(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("batch.jsonl", jsonl({"a": "a fox"}), "application/jsonl"), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                              completion_window="1h")  # type: ignore[arg-type]
    assert caught.value.param == "completion_window"


def test_cancelling_a_batch_ends_it_cancelled(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("batch.jsonl", jsonl({"a": "a fox", "b": "an owl"}), "application/jsonl"),
                                   purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                  completion_window="24h")
    batch = client.batches.cancel(batch.id)
    assert batch.status in ("cancelling", "cancelled")
    deadline = time.monotonic() + 30
    while batch.status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
