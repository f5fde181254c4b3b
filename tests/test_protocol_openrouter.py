"""The OpenRouter adapter against its sandbox server: image output through chat completions, streaming with
processing comments, cost, every fault, and OpenRouter's real error bodies (as ``harness.wire.openrouter`` records them)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest, InputImage
from harness.providers.gemini import MASK_INSTRUCTION
from harness.providers.openrouter import OpenRouterProvider, classify, default_modalities, usage_of
from harness.run import perform_attempt
from harness.sandbox.faults import EXPECTED_KIND, Fault
from harness.sandbox.profiles import load_profiles
from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import SandboxSettings
from harness.wire import openrouter as wire
from tests.conftest import image, mask_png, photo_like

pytestmark = pytest.mark.anyio
KEY = "sk-or-v1-sandbox"
GEMINI = "google/gemini-2.5-flash-image"


@pytest.fixture(scope="module")
def slow_start_sandbox() -> Iterator[SandboxServer]:
    """OpenRouter whose first streamed chunk comes at half the generation time (keep-alives before it)."""
    profiles = load_profiles(None)
    profiles["openrouter"] = profiles["openrouter"].model_copy(update={"first_event_fraction": 0.5})
    server = SandboxServer(settings=SandboxSettings(time_scale=0.01, faults=False, seed=3), profiles=profiles)
    yield server.start()
    server.stop()


def provider(sandbox: SandboxServer, key: str = KEY, **options: object) -> OpenRouterProvider:
    return OpenRouterProvider(OpenRouterProvider.sandbox_base_url(sandbox.root, {}), key, options)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        await request.aread()
        self.requests.append(request)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


# ---- text-to-image, cost, edits --------------------------------------------------------------------------


async def test_text_to_image_returns_the_image_cost_and_generation_id(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(sandbox, title="harness tests"), GenerationRequest(
            model_id=GEMINI, prompt="a watercolor fox", aspect_ratio="16:9", seed=42), c, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height) for i in outcome.images] == [(1344, 768)]
    result = outcome.result
    assert result is not None and result.request_id and result.request_id.startswith("gen-")
    assert result.provider_cost_usd is not None and result.provider_cost_usd == pytest.approx(0.0389, abs=5e-4)
    assert result.usage["image_tokens"] == 1290 and result.usage["cost"] == result.provider_cost_usd
    assert result.finish_reason == "STOP" and result.text == "Here is the image you asked for."
    sent = recorder.requests[0]
    assert sent.url.path == "/openrouter/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}" and sent.headers["x-title"] == "harness tests"
    assert recorder.bodies()[0] == {"model": GEMINI, "messages": [{"role": "user", "content": "a watercolor fox"}],
                                    "modalities": ["image", "text"], "image_config": {"aspect_ratio": "16:9"},
                                    "seed": 42}
    assert 0 <= outcome.clock.ttfb_ms <= outcome.clock.latency_ms  # type: ignore[operator]


async def test_gemini_3_tiers_are_sent_as_image_size_and_image_only_models_ask_for_images_only(
        sandbox: SandboxServer) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        pro = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="google/gemini-3-pro-image-preview", prompt="a fox", aspect_ratio="16:9", size="2K"), c, 60)
        flash = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="google/gemini-3.1-flash-image-preview", prompt="a fox", aspect_ratio="1:1", size="512"), c, 30)
        flux = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id="black-forest-labs/flux.2-pro", prompt="a fox", aspect_ratio="3:2"), c, 30)
    assert pro.error is None and flash.error is None and flux.error is None, (pro.error, flash.error, flux.error)
    assert (pro.images[0].width, pro.images[0].height) == (2752, 1536)
    assert flash.result is not None and flash.result.expected_size is None
    assert flux.result is not None and flux.result.expected_size is None and flux.result.text is None
    bodies = recorder.bodies()
    assert bodies[0]["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}
    assert bodies[1]["image_config"] == {"aspect_ratio": "1:1", "image_size": "0.5K"}
    assert bodies[2]["modalities"] == ["image"]
    assert default_modalities("openai/gpt-5-image") == ["image", "text"]


async def test_edit_and_inpaint_send_references_as_data_url_parts(sandbox: SandboxServer) -> None:
    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    mask_bytes = mask_png((96, 64))
    mask = InputImage("mask.png", mask_bytes, "image/png", 96, 64, hashlib.sha256(mask_bytes).hexdigest())
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        compose = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id=GEMINI, prompt="together", kind=ChallengeKind.COMPOSE, references=refs, aspect_ratio="1:1"), c, 30)
        plain = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id=GEMINI, prompt="together", aspect_ratio="1:1"), c, 30)
        inpaint = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id=GEMINI, prompt="fill", kind=ChallengeKind.INPAINT, references=refs[:1], mask=mask), c, 30)
    assert compose.error is None and plain.error is None and inpaint.error is None
    assert compose.images[0].data != plain.images[0].data
    content = recorder.bodies()[0]["messages"][0]["content"]  # type: ignore[index]
    assert content[0] == {"type": "text", "text": "together"}
    urls = [part["image_url"]["url"] for part in content[1:]]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [refs[0].data, refs[1].data]
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    masked = recorder.bodies()[2]["messages"][0]["content"]  # type: ignore[index]
    assert masked[2] == {"type": "text", "text": MASK_INSTRUCTION}
    assert base64.b64decode(masked[3]["image_url"]["url"].split(",", 1)[1]) == mask_bytes


async def test_several_images_are_separate_requests_whose_costs_add_up(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient) -> None:
    outcome = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id=GEMINI, prompt="foxes", n=2, seed=1, aspect_ratio="1:1"), client, 30)
    assert outcome.error is None, outcome.error
    assert len({i.data for i in outcome.images}) == 2 and len(outcome.calls) == 2
    assert outcome.result is not None and outcome.result.provider_cost_usd == pytest.approx(2 * 0.0389, abs=1e-3)


async def test_https_image_urls_are_downloaded_inside_the_timed_region(client: httpx.AsyncClient) -> None:
    png = photo_like((64, 64))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/files/out.png":
            return httpx.Response(200, content=png, headers={"content-type": "image/png"})
        return httpx.Response(200, headers={wire.GENERATION_ID_HEADER: "gen-1"}, json={
            "id": "gen-1", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                                                                      "message": {"role": "assistant", "content": "",
                                                                                  "images": [{"type": "image_url",
                                                                                              "image_url": {
                                                                                                  "url": "https://cdn.test/files/out.png"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13, "cost": 0.01}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        outcome = await perform_attempt(OpenRouterProvider("https://openrouter.test/api/v1", "k"),
                                        GenerationRequest(model_id="black-forest-labs/flux.2-pro", prompt="x"), c, 5)
    assert outcome.error is None, outcome.error
    assert outcome.images[0].data == png
    assert [c.label for c in outcome.calls] == ["generate", "download"]
    assert outcome.clock.download_ms is not None and outcome.result is not None
    assert outcome.result.request_id == "gen-1"


# ---- streaming -------------------------------------------------------------------------------------------


async def test_streaming_ttfb_is_the_first_data_chunk_not_the_processing_comment(
        slow_start_sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id=GEMINI, prompt="a fox", aspect_ratio="1:1", stream=True)
    outcome = await perform_attempt(provider(slow_start_sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    clock = outcome.clock
    assert clock.first_byte_ttfb_ms is not None and clock.ttfb_ms is not None
    assert clock.first_byte_ttfb_ms < clock.ttfb_ms < clock.latency_ms
    assert outcome.result is not None and outcome.result.provider_cost_usd
    assert outcome.result.request_id and outcome.result.request_id.startswith("gen-")


async def test_stream_has_processing_comments_lf_framing_and_done(slow_start_sandbox: SandboxServer,
                                                                  client: httpx.AsyncClient) -> None:
    url = provider(slow_start_sandbox).base_url + wire.COMPLETIONS_PATH
    r = await client.post(url, headers={"Authorization": f"Bearer {KEY}"}, json={
        "model": GEMINI, "messages": [{"role": "user", "content": "a fox"}], "modalities": ["image", "text"],
        "stream": True})
    raw = r.text
    assert r.status_code == 200 and r.headers[wire.GENERATION_ID_HEADER].startswith("gen-")
    assert raw.startswith(f": {wire.PROCESSING_COMMENT}\n\n") and "\r\n" not in raw
    assert raw.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: {")]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("images")) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["cost"] > 0


@settings(max_examples=40)
@given(comments=st.lists(st.integers(min_value=0, max_value=3), min_size=4, max_size=4), crlf=st.booleans(),
       split=st.integers(min_value=1, max_value=64))
def test_stream_result_does_not_depend_on_comments_line_endings_or_chunking(comments: list[int], crlf: bool,
                                                                           split: int) -> None:
    import asyncio

    png = photo_like((32, 32))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    nl = "\r\n" if crlf else "\n"
    events = [
        {"id": "gen-9", "choices": [{"index": 0, "delta": {"content": "Here"}, "finish_reason": None}]},
        {"id": "gen-9", "choices": [{"index": 0, "delta": {"images": [{"type": "image_url",
                                                                       "image_url": {"url": url}}]}}]},
        {"id": "gen-9", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop",
                                     "native_finish_reason": "STOP"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": 0.5}},
    ]
    text = ""
    for count, event in zip(comments, [*events, None], strict=True):
        text += f": {wire.PROCESSING_COMMENT}{nl}{nl}" * count
        text += f"data: {json.dumps(event)}{nl}{nl}" if event is not None else f"data: [DONE]{nl}{nl}"
    body = text.encode()
    pieces = [body[i:i + split] for i in range(0, len(body), split)]

    class Pieces(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Pieces(), headers={"content-type": "text/event-stream"})

    async def run() -> tuple[bytes, float | None, str | None]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
            outcome = await perform_attempt(OpenRouterProvider("https://openrouter.test/api/v1", "k"),
                                            GenerationRequest(model_id=GEMINI, prompt="x", stream=True), c, 5)
        assert outcome.error is None, outcome.error
        assert outcome.result is not None
        return outcome.images[0].data, outcome.result.provider_cost_usd, outcome.result.text

    assert asyncio.run(run()) == (png, 0.5, "Here")


# ---- faults and errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("fault", list(Fault))
async def test_every_sandbox_fault_is_classified_as_its_taxonomy_kind(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient, fault: Fault,
                                                                      stream: bool) -> None:
    req = GenerationRequest(model_id=GEMINI, prompt=f"a fox [sandbox-fault:{fault.value}]", aspect_ratio="1:1",
                            stream=stream)
    outcome = await perform_attempt(provider(sandbox), req, client, 2.0)
    expected = EXPECTED_KIND[fault]
    if expected is None:
        assert outcome.error is None, outcome.error
        assert len(outcome.images) == 1
    else:
        assert outcome.error is not None, f"{fault} was not detected"
        assert outcome.error.kind == expected, (fault, outcome.error)
        assert KEY not in outcome.error.message


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_errors_after_the_response_started_keep_status_200_and_the_upstream_code(
        sandbox: SandboxServer, client: httpx.AsyncClient, stream: bool) -> None:
    outcome = await perform_attempt(provider(sandbox), GenerationRequest(
        model_id=GEMINI, prompt="x [sandbox-fault:mid_stream_error]", stream=stream), client, 10)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.http_status, outcome.error.provider_code) == (
        ErrorKind.SERVER_ERROR, 200, "provider_unavailable")
    assert outcome.error.request_id and outcome.error.request_id.startswith("gen-")


async def test_content_filter_without_images_is_a_billed_refusal(sandbox: SandboxServer,
                                                                 client: httpx.AsyncClient) -> None:
    for stream in (False, True):
        outcome = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id=GEMINI, prompt="x [sandbox-fault:refused_output]", stream=stream), client, 10)
        assert outcome.error is not None
        assert (outcome.error.kind, outcome.error.http_status, outcome.error.provider_code) == (
            ErrorKind.REFUSED, 200, "IMAGE_SAFETY")
        assert outcome.error.billed and outcome.error.usage["cost"] > 0


async def test_moderation_rate_limit_and_credit_errors_keep_openrouters_words(sandbox: SandboxServer,
                                                                              client: httpx.AsyncClient) -> None:
    async def fail(fault: str) -> tuple[ErrorKind, int | None, str | None, float | None, str]:
        outcome = await perform_attempt(provider(sandbox), GenerationRequest(
            model_id=GEMINI, prompt=f"x [sandbox-fault:{fault}]"), client, 10)
        err = outcome.error
        assert err is not None
        return err.kind, err.http_status, err.provider_code, err.retry_after_s, err.message

    refused = await fail("refused")
    assert refused[:3] == (ErrorKind.REFUSED, 403, "403") and 'flagged for "violence"' in refused[4]
    limited = await fail("rate_limited")
    assert limited[:4] == (ErrorKind.RATE_LIMITED, 429, "rate_limit_exceeded", 12.0)
    assert "temporarily rate-limited upstream" in limited[4]
    credits = await fail("quota_exhausted")
    assert credits[:3] == (ErrorKind.QUOTA_EXHAUSTED, 402, "402") and "Insufficient credits" in credits[4]


async def test_key_model_and_modality_errors(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    cases = [
        (provider(sandbox, key=""), GEMINI, ErrorKind.AUTH, 401, "No auth credentials found"),
        (provider(sandbox, key="invalid"), GEMINI, ErrorKind.AUTH, 401, "User not found."),
        (provider(sandbox), "google/gemini-9-image", ErrorKind.INVALID_REQUEST, 400,
         "google/gemini-9-image is not a valid model ID"),
        (provider(sandbox, modalities=["image", "text"]), "black-forest-labs/flux.2-pro", ErrorKind.INVALID_REQUEST,
         404, "No endpoints found that support the requested output modalities"),
    ]
    for prov, model, kind, status, words in cases:
        outcome = await perform_attempt(prov, GenerationRequest(model_id=model, prompt="x"), client, 10)
        assert outcome.error is not None, model
        assert (outcome.error.kind, outcome.error.http_status) == (kind, status)
        assert words in outcome.error.message


async def test_platform_rate_limit_sends_ratelimit_headers_and_retry_after(client: httpx.AsyncClient) -> None:
    profiles = load_profiles(None)
    profiles["openrouter"] = profiles["openrouter"].model_copy(update={"rpm": 6.0})
    with SandboxServer(settings=SandboxSettings(time_scale=0.01, faults=False), profiles=profiles) as sb:
        url = provider(sb).base_url + wire.COMPLETIONS_PATH
        body = {"model": GEMINI, "messages": [{"role": "user", "content": "x"}]}
        statuses = []
        for _ in range(3):
            r = await client.post(url, headers={"Authorization": "Bearer limited"}, json=body)
            statuses.append(r.status_code)
    assert statuses[-1] == 429
    assert all(h in r.headers for h in wire.RATE_LIMIT_HEADERS) and int(r.headers["retry-after"]) >= 1
    err = classify(r.status_code, r.content, r.headers)
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after_s == float(r.headers["retry-after"])


def body(code: int, message: str, metadata: dict[str, object] | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "payload", "headers", "kind", "code", "retry"),
    [
        (401, body(401, "No auth credentials found"), {}, ErrorKind.AUTH, "401", None),
        (401, body(401, "User not found."), {}, ErrorKind.AUTH, "401", None),
        (402, body(402, wire.ERRORS["insufficient_credits"][1]), {}, ErrorKind.QUOTA_EXHAUSTED, "402", None),
        (402, body(402, "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                   {"limit_source": "openrouter_credits"}), {}, ErrorKind.QUOTA_EXHAUSTED, "402", None),
        (403, body(403, 'google/gemini-2.5-flash-image requires moderation on Google. Your input was flagged for '
                        '"violence". No credits were charged.',
                   {"reasons": ["violence"], "flagged_input": "...", "provider_name": "Google",
                    "model_slug": GEMINI}), {}, ErrorKind.REFUSED, "403", None),
        (403, body(403, "Key is disabled"), {}, ErrorKind.AUTH, "403", None),
        (400, body(400, "Your request was rejected", {"error_type": "content_policy_violation"}), {},
         ErrorKind.REFUSED, "content_policy_violation", None),
        (400, body(400, "google/gemini-9 is not a valid model ID"), {}, ErrorKind.INVALID_REQUEST, "400", None),
        (400, body(400, wire.ERRORS["context_length"][1], {"error_type": "context_length_exceeded"}), {},
         ErrorKind.INVALID_REQUEST, "context_length_exceeded", None),
        (404, body(404, "No endpoints found that support the requested output modalities: image, text"), {},
         ErrorKind.INVALID_REQUEST, "404", None),
        (408, body(408, "Request timed out"), {}, ErrorKind.TIMEOUT, "408", None),
        (429, body(429, "Rate limit exceeded", {"error_type": "rate_limit_exceeded", "provider_code": "rate_limited"}),
         {"retry-after": "7"}, ErrorKind.RATE_LIMITED, "rate_limit_exceeded", 7.0),
        (429, {"error": {"message": "All providers for X are at capacity. Retry after 40 seconds.",
                         "error_type": "rate_limit_exceeded", "http_status": 429,
                         "availability": {"code": "capacity_exhausted", "retryable": True, "retry_after": 40}}}, {},
         ErrorKind.RATE_LIMITED, "rate_limit_exceeded", 40.0),
        (429, body(429, "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model "
                        "requests per day"), {}, ErrorKind.QUOTA_EXHAUSTED, "429", None),
        (500, body(500, "Internal Server Error"), {}, ErrorKind.SERVER_ERROR, "500", None),
        (502, body(502, "Provider returned error", {"error_type": "provider_unavailable",
                                                    "raw": '{"error":{"code":503,"status":"UNAVAILABLE"}}'}), {},
         ErrorKind.SERVER_ERROR, "provider_unavailable", None),
        (503, body(503, "No allowed providers are available for the selected model."), {"retry-after": "2"},
         ErrorKind.SERVER_ERROR, "503", 2.0),
        (504, b"<html>504 Gateway Time-out</html>", {}, ErrorKind.SERVER_ERROR, None, None),
    ],
)
def test_real_openrouter_error_bodies_map_to_the_taxonomy(status: int, payload: object, headers: dict[str, str],
                                                          kind: ErrorKind, code: str | None,
                                                          retry: float | None) -> None:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    err = classify(status, content, httpx.Headers(headers))
    assert (err.kind, err.http_status, err.provider_code, err.retry_after_s) == (kind, status, code, retry)
    assert err.message


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 5000),
       st.floats(min_value=0, max_value=10, allow_nan=False))
def test_usage_keeps_tokens_and_cost_as_reported(prompt: int, completion: int, images: int, cost: float) -> None:
    usage = usage_of({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "cost": cost, "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": images}})
    assert usage == {"input_tokens": prompt, "output_tokens": completion, "image_tokens": images,
                     "reasoning_tokens": 0, "total_tokens": prompt + completion, "cost": cost}


# ---- live --------------------------------------------------------------------------------------------------


@pytest.mark.live
async def test_live_openrouter_generates_an_image_and_reports_its_cost(client: httpx.AsyncClient) -> None:
    key = os.environ.get("OPENROUTER_API_KEY")
    if not key:
        pytest.skip("OPENROUTER_API_KEY not set")
    prov = OpenRouterProvider("https://openrouter.ai/api/v1", key)
    outcome = await perform_attempt(prov, GenerationRequest(model_id=GEMINI, prompt="A red apple on a table",
                                                            aspect_ratio="1:1"), client, 120)
    assert outcome.error is None, outcome.error
    assert (outcome.images[0].width, outcome.images[0].height) == (1024, 1024)
    assert outcome.result is not None and outcome.result.provider_cost_usd is not None
