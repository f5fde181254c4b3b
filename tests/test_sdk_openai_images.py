"""The official ``openai`` SDK works against the sandbox's Images API unchanged but for ``base_url``."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import openai
import pytest
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sandbox.base_urls()["openai"], api_key="sk-sandbox", max_retries=0) as c:
        yield c


def decode(b64: str | None) -> Image.Image:
    assert b64
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def rgba_mask(size: tuple[int, int]) -> bytes:
    img = Image.new("RGBA", size, (0, 0, 0, 255))
    for x in range(size[0] // 4, size[0] // 2):
        for y in range(size[1] // 4, size[1] // 2):
            img.putpixel((x, y), (0, 0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def test_images_generate_returns_b64_png_with_usage_and_request_id(client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(model="gpt-image-1", prompt="a fox", size="1536x1024",
                                                   quality="low")
    result = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert decode(result.data[0].b64_json).size == (1536, 1024)
    assert result.usage is not None and result.usage.output_tokens == 400
    assert result.size == "1536x1024"


def test_images_edit_with_two_images_and_a_mask(client: openai.OpenAI) -> None:
    first = photo_like((96, 64), 1)
    result = client.images.edit(
        model="gpt-image-1", prompt="put them together",
        image=[("a.png", first, "image/png"), ("b.png", photo_like((64, 64), 2), "image/png")],
        mask=("mask.png", rgba_mask((96, 64)), "image/png"),
    )
    assert decode(result.data[0].b64_json).size == (1024, 1024)


def test_streaming_generation_yields_partials_then_completed(client: openai.OpenAI) -> None:
    events = list(client.images.generate(model="gpt-image-1", prompt="a fox", stream=True, partial_images=2))
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.partial_image", "image_generation.partial_image",
                     "image_generation.completed"]
    assert decode(events[-1].b64_json).size == (1024, 1024)


def test_dalle3_url_output_can_be_fetched(client: openai.OpenAI, sandbox: SandboxServer) -> None:
    import httpx

    result = client.images.generate(model="dall-e-3", prompt="a fox", response_format="url")
    url = result.data[0].url
    assert url and url.startswith(sandbox.root)
    assert result.data[0].revised_prompt == "a fox"
    with httpx.Client() as http:
        assert Image.open(io.BytesIO(http.get(url).content)).size == (1024, 1024)


@pytest.mark.parametrize(
    ("key", "fault", "model", "error"),
    [
        ("invalid", None, "gpt-image-1", openai.AuthenticationError),
        ("sk-sandbox", "rate_limited", "gpt-image-1", openai.RateLimitError),
        ("sk-sandbox", "refused", "gpt-image-1", openai.BadRequestError),
        ("sk-sandbox", "server_error", "gpt-image-1", openai.InternalServerError),
        ("sk-sandbox", None, "gpt-image-9", openai.NotFoundError),
    ],
)
def test_sdk_raises_its_own_error_classes(sandbox: SandboxServer, key: str, fault: str | None, model: str,
                                          error: type[Exception]) -> None:
    headers = {"x-sandbox-fault": fault} if fault else {}
    with openai.OpenAI(base_url=sandbox.base_urls()["openai"], api_key=key, max_retries=0) as client, \
            pytest.raises(error) as info:
        client.images.generate(model=model, prompt="a fox", extra_headers=headers)
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.request_id and info.value.request_id.startswith("req_")


def test_a_conversation_as_chained_edits_each_uploading_the_previous_output(client: openai.OpenAI) -> None:
    """How the SDK holds a conversation on the Images API (the harness's ``conversation: chained-edits``):
    each ``images.edit`` uploads the previous answer's bytes first, then the turn's own images."""
    start = photo_like((96, 64), 1)
    smile = client.images.edit(model="gpt-image-1", prompt="Make him smile", image=[("start.png", start, "image/png")])
    assert smile.data and smile.data[0].b64_json
    turn_1 = base64.b64decode(smile.data[0].b64_json)
    scarf = client.images.edit(model="gpt-image-1", prompt="Add this scarf", image=[
        ("turn-1.png", turn_1, "image/png"), ("scarf.png", photo_like((80, 80), 2), "image/png")])
    assert scarf.data and scarf.data[0].b64_json
    turn_2 = base64.b64decode(scarf.data[0].b64_json)
    night = client.images.edit(model="gpt-image-1", prompt="Make it night", image=[("turn-2.png", turn_2, "image/png")])
    assert night.data and night.data[0].b64_json
    assert decode(night.data[0].b64_json).size == (1024, 1024)
    assert scarf.usage is not None and smile.usage is not None
    assert scarf.usage.input_tokens_details.image_tokens == 2 * smile.usage.input_tokens_details.image_tokens
    unchained = client.images.edit(model="gpt-image-1", prompt="Make it night", image=[("start.png", start, "image/png")])
    assert unchained.data and unchained.data[0].b64_json != night.data[0].b64_json, "drawn from what it was sent"
