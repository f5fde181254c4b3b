"""The Gemini adapter against its sandbox server: sizes, references, streaming with thoughts, every fault, and
Google's real error bodies (as ``harness.wire.gemini`` records them)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest, InputImage, ProviderError
from harness.providers.gemini import (
    MASK_INSTRUCTION,
    Answer,
    GeminiProvider,
    classify,
    image_config,
    retry_delay,
    stream_payloads,
)
from harness.run import perform_attempt
from harness.sandbox.faults import EXPECTED_KIND, Fault
from harness.sandbox.servers import SandboxServer
from harness.wire import gemini as wire
from tests.conftest import image, mask_png, photo_like

pytestmark = pytest.mark.anyio
KEY = "sandbox-gemini-key"


def provider(sandbox: SandboxServer, key: str = KEY, **options: object) -> GeminiProvider:
    return GeminiProvider(GeminiProvider.sandbox_base_url(sandbox.root, {}), key, options)


class Recorder:
    """Keeps every request body an httpx client sends (to check what went over the wire)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        await request.aread()
        self.requests.append(request)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


# ---- text-to-image, sizes, cost --------------------------------------------------------------------------


async def test_text_to_image_returns_the_documented_size_tokens_and_response_id(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gemini-2.5-flash-image", prompt="a watercolor fox", aspect_ratio="16:9")
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height) for i in outcome.images] == [(1344, 768)]
    assert outcome.images[0].ext == "png"
    result = outcome.result
    assert result is not None and result.request_id and len(result.request_id) == 23
    assert result.usage["image_tokens"] == wire.IMAGE_TOKENS["gemini-2.5"]["1K"]
    assert result.usage["output_tokens"] >= result.usage["image_tokens"]
    assert result.usage["input_tokens"] == result.usage["input_text_tokens"]
    assert result.finish_reason == "STOP"
    assert 0 < result.provider_timings["server_timing_ms"] <= outcome.clock.latency_ms
    clock = outcome.clock
    assert clock.ttfb_ms is not None and 0 <= clock.ttfb_ms <= clock.latency_ms
    assert [c.label for c in outcome.calls] == ["generate"]


@pytest.mark.parametrize(
    ("model", "ratio", "size", "expected"),
    [
        ("gemini-3-pro-image-preview", "16:9", "2K", (2752, 1536)),
        ("gemini-3-pro-image-preview", "2:3", None, (848, 1264)),
        ("gemini-3.1-flash-image-preview", "1:4", "1K", (512, 2064)),
        ("gemini-2.5-flash-image", "21:9", "2K", (1536, 672)),
    ],
)
async def test_gemini_3_tiers_and_ratios_give_googles_published_sizes(
        sandbox: SandboxServer, client: httpx.AsyncClient, model: str, ratio: str, size: str | None,
        expected: tuple[int, int]) -> None:
    req = GenerationRequest(model_id=model, prompt="a lighthouse", aspect_ratio=ratio, size=size)
    outcome = await perform_attempt(provider(sandbox), req, client, 60)
    assert outcome.error is None, outcome.error
    assert (outcome.images[0].width, outcome.images[0].height) == expected
    assert outcome.result is not None and outcome.result.expected_size == expected


async def test_image_size_is_sent_to_gemini_3_but_never_to_2_5_flash_image(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        for model in ("gemini-2.5-flash-image", "gemini-3-pro-image-preview"):
            req = GenerationRequest(model_id=model, prompt="a fox", aspect_ratio="4:3", size="1K", seed=7)
            outcome = await perform_attempt(provider(sandbox, temperature=0.4), req, c, 30)
            assert outcome.error is None, outcome.error
    flash, pro = recorder.bodies()
    assert recorder.requests[0].url.path == "/gemini/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert recorder.requests[0].headers[wire.API_KEY_HEADER] == KEY
    assert "key" not in recorder.requests[0].url.params
    assert flash["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"],  # type: ignore[comparison-overlap]
                                         "imageConfig": {"aspectRatio": "4:3"}, "seed": 7, "temperature": 0.4}
    assert pro["generationConfig"]["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "1K"}  # type: ignore[index]


def test_pixel_sizes_map_to_the_grid_ratio_and_tier_or_the_nearest_one() -> None:
    def config(model: str, size: str, ratio: str | None = None) -> tuple[str | None, str | None]:
        return image_config(model, GenerationRequest(model_id=model, prompt="p", size=size, aspect_ratio=ratio))

    assert config("gemini-3-pro-image-preview", "2752x1536") == ("16:9", "2K")
    assert config("gemini-3-pro-image-preview", "4096x4096") == ("1:1", "4K")
    assert config("gemini-2.5-flash-image", "1024x1024") == ("1:1", None)
    assert config("gemini-2.5-flash-image", "1536x1024") == ("3:2", None)
    assert config("gemini-3-pro-image-preview", "1536x1024") == ("3:2", "2K")
    assert config("gemini-3.1-flash-image-preview", "0.5K", "1:1") == ("1:1", "512")
    assert config("gemini-2.5-flash-image", "4K", "1:1") == ("1:1", None)
    with pytest.raises(ProviderError) as info:
        config("gemini-2.5-flash-image", "huge")
    assert info.value.kind == ErrorKind.INVALID_REQUEST and "huge" in info.value.message


def test_grids_keep_the_requested_aspect_ratio() -> None:
    for model in ("gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"):
        for ratio in wire.aspect_ratios(model):
            w, h = (int(v) for v in ratio.split(":"))
            for tier in (None, *wire.IMAGE_SIZES):
                size = wire.pixel_size(model, ratio, tier)
                assert size is not None
                assert abs(size[0] / size[1] - w / h) / (w / h) < 0.09, (model, ratio, tier, size)
    assert wire.pixel_size("gemini-3.1-flash-image-preview", "1:1", "512") is None
    assert wire.pixel_size("gemini-3-pro-image-preview", "1:8", "1K") is None


# ---- references, masks, several images -------------------------------------------------------------------


async def test_edit_sends_references_inline_and_the_image_derives_from_them(sandbox: SandboxServer) -> None:
    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        edit = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="gemini-2.5-flash-image", prompt="put them together", kind=ChallengeKind.COMPOSE,
            references=refs, seed=3), c, 30)
        plain = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="gemini-2.5-flash-image", prompt="put them together", seed=3), c, 30)
    assert edit.error is None and plain.error is None, (edit.error, plain.error)
    parts = recorder.bodies()[0]["contents"][0]["parts"]  # type: ignore[index]
    assert parts[0] == {"text": "put them together"}
    assert [base64.b64decode(p["inlineData"]["data"]) for p in parts[1:]] == [refs[0].data, refs[1].data]
    assert all(p["inlineData"]["mimeType"] == "image/png" for p in parts[1:])
    assert edit.images[0].data != plain.images[0].data
    # no aspect ratio on an edit: the model follows the last input image (80x80 -> 1:1) and no size is assumed
    assert (edit.images[0].width, edit.images[0].height) == (1024, 1024)
    assert edit.result is not None and edit.result.expected_size is None


async def test_inpaint_sends_the_mask_as_an_image_after_its_instruction(sandbox: SandboxServer) -> None:
    ref = image("a.png", (96, 64), 1)
    mask_bytes = mask_png((96, 64))
    mask = InputImage("mask.png", mask_bytes, "image/png", 96, 64, hashlib.sha256(mask_bytes).hexdigest())
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="gemini-2.5-flash-image", prompt="flowers in the hole", kind=ChallengeKind.INPAINT,
            references=(ref,), mask=mask, aspect_ratio="3:2"), c, 30)
    assert outcome.error is None, outcome.error
    parts = recorder.bodies()[0]["contents"][0]["parts"]  # type: ignore[index]
    assert parts[2] == {"text": MASK_INSTRUCTION}
    assert base64.b64decode(parts[3]["inlineData"]["data"]) == mask_bytes


async def test_several_images_are_parallel_requests_with_consecutive_seeds(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="gemini-2.5-flash-image", prompt="three foxes", n=3, seed=5, aspect_ratio="1:1"), c, 30)
    assert outcome.error is None, outcome.error
    assert len(outcome.images) == 3 and len({i.data for i in outcome.images}) == 3
    assert sorted(b["generationConfig"]["seed"] for b in recorder.bodies()) == [5, 6, 7]  # type: ignore[index]
    assert [c.label for c in outcome.calls] == ["generate"] * 3
    assert outcome.result is not None
    assert outcome.result.usage["image_tokens"] == 3 * wire.IMAGE_TOKENS["gemini-2.5"]["1K"]


async def test_one_failed_request_of_several_fails_the_attempt(sandbox: SandboxServer,
                                                               client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gemini-2.5-flash-image", prompt="foxes [sandbox-fault:refused_output]", n=2)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.REFUSED


# ---- thoughts and streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_3_thought_parts_are_skipped(sandbox: SandboxServer, client: httpx.AsyncClient,
                                                  stream: bool) -> None:
    req = GenerationRequest(model_id="gemini-3-pro-image-preview", prompt="a fox", aspect_ratio="3:2", stream=stream)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height, i.ext) for i in outcome.images] == [(1264, 848, "jpg")]
    assert outcome.result is not None and outcome.result.usage["thoughts_tokens"] > 0
    assert outcome.result.text is None


async def test_streaming_marks_ttfb_at_the_first_event_long_before_the_image(sandbox: SandboxServer,
                                                                            client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gemini-3-pro-image-preview", prompt="a fox", aspect_ratio="1:1", stream=True)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    clock = outcome.clock
    assert outcome.calls[0].url.endswith(":streamGenerateContent")
    assert clock.ttfb_ms is not None and clock.first_partial_ms is not None and clock.req_sent_ms is not None
    assert 0 <= clock.ttfb_ms < clock.first_partial_ms - clock.req_sent_ms
    assert clock.first_partial_ms < clock.latency_ms


async def test_stream_is_framed_with_crlf_and_every_event_is_a_whole_response(sandbox: SandboxServer,
                                                                             client: httpx.AsyncClient) -> None:
    url = provider(sandbox).base_url + wire.method_path("gemini-2.5-flash-image", wire.STREAM) + "?alt=sse"
    body = {"contents": [{"parts": [{"text": "a fox"}]}],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}
    r = await client.post(url, json=body, headers={wire.API_KEY_HEADER: KEY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    raw = r.content.decode()
    assert raw.endswith("\r\n\r\n") and "\n\n" not in raw.replace("\r\n\r\n", "")
    events = [json.loads(block[len("data: "):]) for block in raw.split("\r\n\r\n") if block]
    assert all(e["responseId"] == events[0]["responseId"] for e in events)
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "[DONE]" not in raw


async def test_stream_without_alt_sse_is_a_json_array_and_the_key_may_be_a_query_parameter(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    url = provider(sandbox).base_url + wire.method_path("gemini-2.5-flash-image", wire.STREAM)
    r = await client.post(url, params={"key": KEY}, json={"contents": [{"parts": [{"text": "a fox"}]}]})
    assert r.status_code == 200
    chunks = json.loads(r.content)
    assert isinstance(chunks, list) and len(chunks) == 2
    assert chunks[-1]["candidates"][0]["content"]["parts"][-1]["inlineData"]["mimeType"] == "image/png"


# ---- faults and errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("fault", list(Fault))
async def test_every_sandbox_fault_is_classified_as_its_taxonomy_kind(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient, fault: Fault,
                                                                      stream: bool) -> None:
    model = "gemini-3.1-flash-image-preview" if stream else "gemini-2.5-flash-image"
    req = GenerationRequest(model_id=model, prompt=f"a fox [sandbox-fault:{fault.value}]", aspect_ratio="1:1",
                            stream=stream)
    outcome = await perform_attempt(provider(sandbox), req, client, 2.0)
    expected = EXPECTED_KIND[fault]
    if expected is None:
        assert outcome.error is None, outcome.error
        assert len(outcome.images) == 1
    else:
        assert outcome.error is not None, f"{fault} was not detected"
        assert outcome.error.kind == expected, (fault, outcome.error)
        assert outcome.clock.latency_ms is not None
        assert KEY not in outcome.error.message


async def test_safety_blocks_are_http_200_refusals_with_googles_reason(sandbox: SandboxServer,
                                                                       client: httpx.AsyncClient) -> None:
    prompt_block = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:refused]"), client, 10)
    output_block = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:refused_output]"), client, 10)
    words_only = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:no_image]"), client, 10)
    assert prompt_block.error is not None and output_block.error is not None and words_only.error is not None
    assert (prompt_block.error.kind, prompt_block.error.http_status, prompt_block.error.provider_code) == (
        ErrorKind.REFUSED, 200, "PROHIBITED_CONTENT")
    assert (output_block.error.kind, output_block.error.provider_code) == (ErrorKind.REFUSED, "IMAGE_SAFETY")
    assert "Prohibited Use policy" in output_block.error.message
    assert output_block.error.billed and output_block.error.usage["output_tokens"] > 0
    assert (words_only.error.kind, words_only.error.provider_code) == (ErrorKind.NO_IMAGE, "STOP")
    assert "describe that scene" in words_only.error.message
    assert words_only.error.request_id


async def test_an_error_written_into_the_stream_is_classified_by_its_code_and_keeps_status_200(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    outcome = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:mid_stream_error]", stream=True), client, 10)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.http_status, outcome.error.provider_code) == (
        ErrorKind.SERVER_ERROR, 200, "INTERNAL")
    assert outcome.error.request_id and outcome.clock.ttfb_ms is not None


async def test_rate_limit_and_quota_keep_googles_retry_delay(sandbox: SandboxServer,
                                                             client: httpx.AsyncClient) -> None:
    limited = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:rate_limited]"), client, 10)
    quota = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id="gemini-2.5-flash-image", prompt="x [sandbox-fault:quota_exhausted]"), client, 10)
    assert limited.error is not None and quota.error is not None
    assert (limited.error.kind, limited.error.http_status, limited.error.provider_code,
            limited.error.retry_after_s) == (ErrorKind.RATE_LIMITED, 429, "RESOURCE_EXHAUSTED", 36.0)
    assert quota.error.kind == ErrorKind.QUOTA_EXHAUSTED and quota.error.retry_after_s == 27.0


async def test_key_model_and_parameter_errors_use_googles_statuses(sandbox: SandboxServer,
                                                                   client: httpx.AsyncClient) -> None:
    cases = [
        (provider(sandbox, key=""), "gemini-2.5-flash-image", "1:1", ErrorKind.AUTH, 403, "PERMISSION_DENIED"),
        (provider(sandbox, key="invalid"), "gemini-2.5-flash-image", "1:1", ErrorKind.AUTH, 400, "API_KEY_INVALID"),
        (provider(sandbox), "gemini-9-image", "1:1", ErrorKind.INVALID_REQUEST, 404, "NOT_FOUND"),
        (provider(sandbox), "gemini-2.5-flash-image", "1:8", ErrorKind.INVALID_REQUEST, 400, "INVALID_ARGUMENT"),
    ]
    for prov, model, ratio, kind, status, code in cases:
        outcome = await perform_attempt(prov, GenerationRequest(model_id=model, prompt="x", aspect_ratio=ratio),
                                        client, 10)
        assert outcome.error is not None, (model, ratio)
        assert (outcome.error.kind, outcome.error.http_status, outcome.error.provider_code) == (kind, status, code)
    not_found = await perform_attempt(provider(sandbox), GenerationRequest(model_id="gemini-9-image", prompt="x"),
                                      client, 10)
    assert not_found.error is not None and "models/gemini-9-image is not found" in not_found.error.message


async def test_sandbox_rejects_several_candidates_and_bad_inline_data_like_google(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    url = provider(sandbox).base_url + wire.method_path("gemini-2.5-flash-image", wire.GENERATE)
    headers = {wire.API_KEY_HEADER: KEY}
    many = await client.post(url, headers=headers, json={"contents": [{"parts": [{"text": "x"}]}],
                                                         "generationConfig": {"candidateCount": 2}})
    assert many.status_code == 400
    assert many.json()["error"] == {"code": 400, "status": "INVALID_ARGUMENT",
                                    "message": "Multiple candidates is not enabled for models/gemini-2.5-flash-image"}
    broken = await client.post(url, headers=headers, json={"contents": [{"parts": [
        {"text": "x"}, {"inline_data": {"mime_type": "image/png", "data": "%%%"}}]}]})
    assert broken.status_code == 400 and "Base64 decoding failed" in broken.json()["error"]["message"]
    big = await client.post(url, headers=headers, json={"contents": [{"parts": [{"text": "x"}]}],
                                                        "generationConfig": {"imageConfig": {"imageSize": "2K"}}})
    assert big.status_code == 400


# ---- classification of real error bodies -----------------------------------------------------------------

RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}
QUOTA_MINUTE = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-image"}}]}
QUOTA_DAY = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}
KEY_INVALID = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
               {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key."}]


def status(code: int, name: str, message: str, details: list[object] | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message, "status": name}
    if details is not None:
        error["details"] = details
    return {"error": error}


@pytest.mark.parametrize(
    ("http", "body", "headers", "kind", "code", "retry"),
    [
        (400, status(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INVALID), {},
         ErrorKind.AUTH, "API_KEY_INVALID", None),
        (403, status(403, "PERMISSION_DENIED", wire.MESSAGES["missing_key"]), {}, ErrorKind.AUTH,
         "PERMISSION_DENIED", None),
        (401, status(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), {},
         ErrorKind.AUTH, "UNAUTHENTICATED", None),
        (404, status(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta, or is not supported "
                                       "for generateContent."), {}, ErrorKind.INVALID_REQUEST, "NOT_FOUND", None),
        (400, status(400, "INVALID_ARGUMENT", "Multiple candidates is not enabled for models/gemini-2.5-flash-image"),
         {}, ErrorKind.INVALID_REQUEST, "INVALID_ARGUMENT", None),
        (400, status(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), {},
         ErrorKind.INVALID_REQUEST, "FAILED_PRECONDITION", None),
        (400, status(400, "FAILED_PRECONDITION", "Gemini API free tier is not available in your country. Please "
                                                 "enable billing on your project in Google AI Studio."), {},
         ErrorKind.QUOTA_EXHAUSTED, "FAILED_PRECONDITION", None),
        (429, status(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota ... Please retry in 27.37s.",
                     [QUOTA_MINUTE, RETRY_INFO]), {}, ErrorKind.RATE_LIMITED, "RESOURCE_EXHAUSTED", 36.0),
        (429, status(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota ... Please retry in 27.37s."), {},
         ErrorKind.RATE_LIMITED, "RESOURCE_EXHAUSTED", 27.37),
        (429, status(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later."), {"retry-after": "5"},
         ErrorKind.RATE_LIMITED, "RESOURCE_EXHAUSTED", 5.0),
        (429, status(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [QUOTA_DAY, RETRY_INFO]), {},
         ErrorKind.QUOTA_EXHAUSTED, "RESOURCE_EXHAUSTED", 36.0),
        (429, status(429, "RESOURCE_EXHAUSTED", "* Quota exceeded for metric: generativelanguage.googleapis.com/"
                                                "generate_content_free_tier_requests, limit: 0, model: "
                                                "gemini-2.5-flash-image\nPlease retry in 3.2s."), {},
         ErrorKind.QUOTA_EXHAUSTED, "RESOURCE_EXHAUSTED", 3.2),
        (500, status(500, "INTERNAL", wire.MESSAGES["internal"]), {}, ErrorKind.SERVER_ERROR, "INTERNAL", None),
        (503, status(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), {},
         ErrorKind.SERVER_ERROR, "UNAVAILABLE", None),
        (504, status(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), {},
         ErrorKind.SERVER_ERROR, "DEADLINE_EXCEEDED", None),
        (429, [status(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later. Please refer to "
                                                 "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 "
                                                 "for more details.")], {}, ErrorKind.RATE_LIMITED,
         "RESOURCE_EXHAUSTED", None),
        (502, b"<html><title>502 Bad Gateway</title></html>", {}, ErrorKind.SERVER_ERROR, None, None),
    ],
)
def test_real_gemini_error_bodies_map_to_the_taxonomy(http: int, body: object, headers: dict[str, str],
                                                      kind: ErrorKind, code: str | None, retry: float | None) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = classify(http, content, httpx.Headers(headers))
    assert (err.kind, err.http_status, err.provider_code, err.retry_after_s) == (kind, http, code, retry)
    assert err.message


@pytest.mark.parametrize("reason", sorted(wire.SAFETY_FINISH_REASONS))
def test_every_safety_finish_reason_without_an_image_is_a_refusal(reason: str) -> None:
    answer = Answer()
    answer.add({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": reason}],
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}, "response")
    failure = answer.failure()
    assert failure is not None and failure.kind == ErrorKind.REFUSED and failure.provider_code == reason


@pytest.mark.parametrize("reason", ["STOP", "NO_IMAGE", "OTHER", "IMAGE_OTHER", "MAX_TOKENS", None])
def test_other_answers_without_an_image_are_no_image(reason: str | None) -> None:
    answer = Answer()
    candidate: dict[str, object] = {"content": {"role": "model", "parts": [{"text": "I can only describe it."}]}}
    if reason:
        candidate["finishReason"] = reason
    answer.add({"candidates": [candidate]}, "response")
    failure = answer.failure()
    assert failure is not None and failure.kind == ErrorKind.NO_IMAGE and "only describe" in failure.message


def test_a_corrupt_inline_image_is_bad_output_and_a_thought_image_is_never_the_result() -> None:
    answer = Answer()
    with pytest.raises(ProviderError) as info:
        answer.add({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png",
                                                                          "data": "iVBOR!!"}}]}}]}, "response")
    assert info.value.kind == ErrorKind.BAD_OUTPUT
    thought = base64.b64encode(photo_like((32, 32))).decode()
    answer = Answer()
    answer.add({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": thought},
                                                       "thought": True}]}, "finishReason": "STOP"}]}, "response")
    failure = answer.failure()
    assert failure is not None and failure.kind == ErrorKind.NO_IMAGE


# ---- property tests of the parsers -----------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=86400, allow_nan=False).map(lambda v: round(v, 9)))
def test_retry_delay_reads_back_any_duration_google_writes(seconds: float) -> None:
    delay = retry_delay([{"@type": "type.googleapis.com/google.rpc.Help"}, wire.retry_info(seconds)])
    assert delay == pytest.approx(seconds, abs=1e-9)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=4),
                min_size=1, max_size=5),
       st.booleans(), st.booleans())
def test_stream_parser_returns_every_event_whatever_the_line_endings(chunks: list[dict[str, object]], crlf: bool,
                                                                    bare_error_at_end: bool) -> None:
    import asyncio

    nl = "\r\n" if crlf else "\n"
    text = "".join(f"data: {json.dumps(c)}{nl}{nl}" for c in chunks)
    error = {"error": {"code": 500, "message": "An internal error {has} occurred", "status": "INTERNAL"}}
    if bare_error_at_end:
        text += json.dumps(error, indent=2).replace("\n", nl) + nl

    async def lines() -> AsyncIterator[str]:
        for line in text.replace("\r\n", "\n").split("\n"):
            yield line

    async def collect() -> list[tuple[str, bool]]:
        return [item async for item in stream_payloads(lines())]

    payloads = asyncio.run(collect())
    expected = [(c, True) for c in chunks] + ([(error, False)] if bare_error_at_end else [])
    assert [(json.loads(p), framed) for p, framed in payloads] == expected


# ---- live --------------------------------------------------------------------------------------------------


@pytest.mark.live
async def test_live_gemini_generates_one_image_of_the_documented_size(client: httpx.AsyncClient) -> None:
    key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
    if not key:
        pytest.skip("GEMINI_API_KEY / GOOGLE_API_KEY not set")
    prov = GeminiProvider("https://generativelanguage.googleapis.com", key)
    req = GenerationRequest(model_id="gemini-2.5-flash-image", prompt="A red apple on a table", aspect_ratio="4:3")
    outcome = await perform_attempt(prov, req, client, 120)
    assert outcome.error is None, outcome.error
    assert (outcome.images[0].width, outcome.images[0].height) == (1184, 864)
    assert Image.open(io.BytesIO(outcome.images[0].data)).size == (1184, 864)
