"""The OpenAI Images adapter against its sandbox server: every request form, response form and error shape."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest
from harness.providers.openai_images import OpenAIImagesProvider, choose_size, classify, mask_to_alpha_png
from harness.run import perform_attempt
from harness.sandbox.faults import EXPECTED_KIND, Fault
from harness.sandbox.servers import SandboxServer
from harness.wire import openai_images as wire
from tests.conftest import image, mask, photo_like

pytestmark = pytest.mark.anyio


def provider(sandbox: SandboxServer, key: str = "sandbox-key", **options: object) -> OpenAIImagesProvider:
    return OpenAIImagesProvider(OpenAIImagesProvider.sandbox_base_url(sandbox.root, {}), key, options)


async def test_generation_returns_decodable_image_of_the_mapped_size(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gpt-image-1", prompt="a watercolor fox", aspect_ratio="16:9")
    outcome = await perform_attempt(provider(sandbox, quality="low"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height) for i in outcome.images] == [(1536, 1024)]
    assert outcome.result is not None
    assert outcome.result.request_id and outcome.result.request_id.startswith("req_")
    assert outcome.result.usage["output_tokens"] == wire.OUTPUT_TOKENS[("low", "1536x1024")]
    assert outcome.clock.ttfb_ms is not None and 0 <= outcome.clock.ttfb_ms <= outcome.clock.latency_ms


async def test_several_images_come_back_when_n_is_more_than_one(sandbox: SandboxServer,
                                                               client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gpt-image-1", prompt="three foxes", n=3)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None
    assert len(outcome.images) == 3
    assert len({i.data for i in outcome.images}) == 3


async def test_edit_sends_every_reference_and_an_alpha_mask_as_multipart(sandbox: SandboxServer) -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        await request.aread()
        seen.append(request)

    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    req = GenerationRequest(model_id="gpt-image-1", prompt="combine them", kind=ChallengeKind.INPAINT,
                            references=refs, mask=mask((96, 64)))
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [record]}) as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    body = seen[0].content
    assert seen[0].url.path.endswith("/images/edits")
    assert seen[0].headers["content-type"].startswith("multipart/form-data")
    assert body.count(b'name="image[]"') == 2
    assert b'name="mask"' in body
    assert refs[0].data in body and refs[1].data in body
    assert outcome.images[0].width == 1024


def test_mask_conversion_makes_the_repaint_region_transparent() -> None:
    converted = Image.open(io.BytesIO(mask_to_alpha_png(mask((40, 20)))))
    assert converted.mode == "RGBA"
    assert converted.getpixel((20, 10))[3] == 0
    assert converted.getpixel((1, 1))[3] == 255


async def test_streaming_marks_ttfb_at_the_first_partial_image(sandbox: SandboxServer,
                                                               client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="gpt-image-1", prompt="a fox", stream=True, options={"partial_images": 2})
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    clock = outcome.clock
    assert clock.first_partial_ms is not None
    assert clock.ttfb_ms is not None and clock.req_sent_ms is not None
    assert clock.ttfb_ms == pytest.approx(clock.first_partial_ms - clock.req_sent_ms, abs=0.01)
    assert clock.ttfb_ms < clock.latency_ms
    assert outcome.images[0].width == 1024


async def test_url_outputs_are_downloaded_inside_the_timed_region(sandbox: SandboxServer,
                                                                  client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="dall-e-3", prompt="a fox")
    outcome = await perform_attempt(provider(sandbox, response_format="url"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls] == ["generate", "download"]
    assert outcome.clock.download_ms is not None and outcome.clock.download_ms > 0
    assert outcome.calls[-1].t_last_byte is not None
    assert outcome.clock.last_byte_ms <= outcome.clock.latency_ms


@pytest.mark.parametrize("fault", list(Fault))
async def test_every_sandbox_fault_is_classified_as_its_taxonomy_kind(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient,
                                                                      fault: Fault) -> None:
    stream = fault == Fault.MID_STREAM_ERROR
    req = GenerationRequest(model_id="gpt-image-1", prompt=f"a fox [sandbox-fault:{fault.value}]", stream=stream)
    outcome = await perform_attempt(provider(sandbox), req, client, 2.0)
    expected = EXPECTED_KIND[fault]
    if expected is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None, f"{fault} was not detected"
        assert outcome.error.kind == expected, (fault, outcome.error)
        assert outcome.clock.latency_ms is not None


async def test_unknown_model_wrong_key_and_bad_size_are_reported_with_openai_codes(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    cases = [
        (provider(sandbox), GenerationRequest(model_id="gpt-image-9", prompt="x"), ErrorKind.INVALID_REQUEST,
         404, "model_not_found"),
        (provider(sandbox, key="invalid"), GenerationRequest(model_id="gpt-image-1", prompt="x"), ErrorKind.AUTH,
         401, "invalid_api_key"),
        (provider(sandbox), GenerationRequest(model_id="gpt-image-1", prompt="x", size="999x999"),
         ErrorKind.INVALID_REQUEST, 400, "invalid_value"),
    ]
    for prov, req, kind, status, code in cases:
        outcome = await perform_attempt(prov, req, client, 10)
        assert outcome.error is not None
        assert (outcome.error.kind, outcome.error.http_status, outcome.error.provider_code) == (kind, status, code)
        assert "sandbox-key" not in outcome.error.message


async def test_rate_limit_answer_carries_retry_after_and_ratelimit_headers(sandbox: SandboxServer) -> None:
    base = OpenAIImagesProvider.sandbox_base_url(sandbox.root, {})
    async with httpx.AsyncClient() as c:
        r = await c.post(base + wire.GENERATIONS_PATH, headers={"Authorization": "Bearer k",
                                                                "x-sandbox-fault": "rate_limited"},
                         json={"model": "gpt-image-1", "prompt": "x"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "12"
    assert all(h in r.headers for h in wire.RATE_LIMIT_HEADERS)
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    err = classify(r.status_code, r.content, r.headers)
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after_s == 12


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry"),
    [
        (400, wire.error_body("Your request was rejected by the safety system.", "image_generation_user_error",
                              "moderation_blocked"), {}, ErrorKind.REFUSED, None),
        (400, wire.error_body("Your request was rejected as a result of our safety system.", "invalid_request_error",
                              "content_policy_violation"), {}, ErrorKind.REFUSED, None),
        (401, wire.error_body("Incorrect API key provided: sk-proj-****SJh4.", "invalid_request_error",
                              "invalid_api_key"), {}, ErrorKind.AUTH, None),
        (403, wire.error_body("Your organization must be verified to use the model `gpt-image-1`.",
                              "invalid_request_error"), {}, ErrorKind.AUTH, None),
        (404, wire.error_body("The model `gpt-image-9` does not exist", "invalid_request_error", "model_not_found"),
         {}, ErrorKind.INVALID_REQUEST, None),
        (429, wire.error_body("Rate limit reached ... Please try again in 12s.", "requests", "rate_limit_exceeded"),
         {}, ErrorKind.RATE_LIMITED, 12.0),
        (429, wire.error_body("Rate limit reached", "requests", "rate_limit_exceeded"), {"retry-after-ms": "1500"},
         ErrorKind.RATE_LIMITED, 1.5),
        (429, wire.error_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota"), {},
         ErrorKind.QUOTA_EXHAUSTED, None),
        (500, wire.error_body("The server had an error", "server_error"), {}, ErrorKind.SERVER_ERROR, None),
        (503, wire.error_body("The engine is currently overloaded", "server_error", "slow_down"),
         {"retry-after": "3"}, ErrorKind.SERVER_ERROR, 3.0),
        (502, b"<html>Bad gateway</html>", {}, ErrorKind.SERVER_ERROR, None),
        (400, {"error": {"message": "gateway says no", "code": "500"}}, {}, ErrorKind.INVALID_REQUEST, None),
    ],
)
def test_real_openai_error_bodies_map_to_the_taxonomy(status: int, body: object, headers: dict[str, str],
                                                       kind: ErrorKind, retry: float | None) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = classify(status, content, httpx.Headers(headers))
    assert err.kind == kind
    assert err.http_status == status
    assert err.retry_after_s == retry
    assert err.message


def test_size_follows_exact_size_then_aspect_ratio() -> None:
    assert choose_size("gpt-image-1", GenerationRequest(model_id="m", prompt="p", size="1024x1536")) == "1024x1536"
    assert choose_size("gpt-image-1", GenerationRequest(model_id="m", prompt="p", aspect_ratio="9:16")) == "1024x1536"
    assert choose_size("gpt-image-1", GenerationRequest(model_id="m", prompt="p", aspect_ratio="1:1")) == "1024x1024"
    assert choose_size("dall-e-3", GenerationRequest(model_id="m", prompt="p")) is None


async def test_gateway_style_url_and_string_error_code_are_tolerated(client: httpx.AsyncClient) -> None:
    png = photo_like((64, 64))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/img.png"):
            return httpx.Response(200, content=png, headers={"content-type": "image/png"})
        return httpx.Response(200, json={"created": 1, "data": [{"url": "http://gw.test/img.png"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        prov = OpenAIImagesProvider("http://gw.test/v1", "k")
        outcome = await perform_attempt(prov, GenerationRequest(model_id="gemini-2.5-flash-image", prompt="x"), c, 5)
    assert outcome.error is None
    assert outcome.images[0].data == png
    assert base64.b64encode(png)
