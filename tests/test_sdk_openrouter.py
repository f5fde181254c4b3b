"""The official ``openai`` SDK, pointed at the sandbox's OpenRouter, gets images through chat completions
unchanged but for ``base_url`` (as OpenRouter's own examples use it)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like

GEMINI = "google/gemini-2.5-flash-image"
IMAGE_TEXT = {"modalities": ["image", "text"]}


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sandbox.base_urls()["openrouter"], api_key="sk-or-v1-sandbox", max_retries=0) as c:
        yield c


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_chat_completion_with_modalities_returns_images_and_cost(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=GEMINI, messages=[{"role": "user", "content": "a watercolor fox"}],
        extra_body={**IMAGE_TEXT, "image_config": {"aspect_ratio": "9:16"}})
    completion = raw.parse()
    message = completion.choices[0].message
    images: list[dict[str, Any]] = (message.model_extra or {})["images"]
    assert decode(images[0]["image_url"]["url"]).size == (768, 1344)
    assert message.content == "Here is the image you asked for."
    assert raw.headers["x-generation-id"] == completion.id and completion.id.startswith("gen-")
    assert completion.usage is not None and (completion.usage.model_extra or {})["cost"] > 0
    assert completion.choices[0].finish_reason == "stop"


def test_edit_with_an_image_url_content_part(client: openai.OpenAI) -> None:
    ref = "data:image/png;base64," + base64.b64encode(photo_like((96, 64), 1)).decode()
    completion = client.chat.completions.create(
        model="google/gemini-3-pro-image-preview", extra_body={**IMAGE_TEXT, "image_config": {
            "aspect_ratio": "4:3", "image_size": "1K"}},
        messages=[{"role": "user", "content": [{"type": "text", "text": "make it a watercolor"},
                                               {"type": "image_url", "image_url": {"url": ref}}]}])
    images = (completion.choices[0].message.model_extra or {})["images"]
    assert decode(images[0]["image_url"]["url"]).size == (1200, 896)


def test_streaming_delivers_the_image_whole_in_one_delta(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "a fox"}],
                                            stream=True, extra_body=IMAGE_TEXT)
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    with_images = [d for d in deltas if (d.model_extra or {}).get("images")]
    assert len(with_images) == 1
    assert decode((with_images[0].model_extra or {})["images"][0]["image_url"]["url"]).size == (1024, 1024)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and (chunks[-1].usage.model_extra or {})["cost"] > 0


def test_an_error_chunk_after_the_stream_started_is_raised(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=GEMINI, stream=True, extra_body=IMAGE_TEXT,
                                            messages=[{"role": "user", "content": "x [sandbox-fault:mid_stream_error]"}])
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert info.value.message == "Provider returned error"
    assert isinstance(info.value.body, dict) and info.value.body["code"] == 502


@pytest.mark.parametrize(
    ("key", "prompt", "model", "error", "status"),
    [
        ("invalid", "x", GEMINI, openai.AuthenticationError, 401),
        ("sk-or", "x [sandbox-fault:quota_exhausted]", GEMINI, openai.APIStatusError, 402),
        ("sk-or", "x [sandbox-fault:refused]", GEMINI, openai.PermissionDeniedError, 403),
        ("sk-or", "x [sandbox-fault:rate_limited]", GEMINI, openai.RateLimitError, 429),
        ("sk-or", "x [sandbox-fault:overloaded]", GEMINI, openai.InternalServerError, 502),
        ("sk-or", "x", "google/gemini-9-image", openai.BadRequestError, 400),
    ],
)
def test_sdk_raises_its_own_error_classes(sandbox: SandboxServer, key: str, prompt: str, model: str,
                                          error: type[openai.APIStatusError], status: int) -> None:
    with openai.OpenAI(base_url=sandbox.base_urls()["openrouter"], api_key=key, max_retries=0) as client, \
            pytest.raises(error) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                       extra_body=IMAGE_TEXT)
    assert info.value.status_code == status
    assert info.value.response.headers["x-generation-id"].startswith("gen-")
