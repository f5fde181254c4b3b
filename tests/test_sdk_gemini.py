"""The official ``google-genai`` SDK works against the sandbox's Gemini API unchanged but for ``base_url``."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like


def make_client(sandbox: SandboxServer, key: str = "sandbox-key") -> genai.Client:
    options = types.HttpOptions(base_url=sandbox.base_urls()["gemini"],
                                retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[genai.Client]:
    c = make_client(sandbox)
    yield c
    c.close()


def image_config(ratio: str, size: str | None = None) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"],
                                       image_config=types.ImageConfig(aspect_ratio=ratio, image_size=size))


def images_of(response: types.GenerateContentResponse) -> list[Image.Image]:
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts is not None
    return [Image.open(io.BytesIO(p.inline_data.data)) for p in content.parts
            if p.inline_data is not None and p.inline_data.data and not p.thought]


def test_generate_content_returns_an_inline_image_text_and_usage(client: genai.Client) -> None:
    response = client.models.generate_content(model="gemini-2.5-flash-image", contents="a watercolor fox",
                                              config=image_config("16:9"))
    assert [img.size for img in images_of(response)] == [(1344, 768)]
    assert response.text == "Here is the image you asked for."
    assert response.response_id and response.model_version == "gemini-2.5-flash-image"
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_tokens_details is not None
    assert {d.modality: d.token_count for d in usage.candidates_tokens_details}[types.MediaModality.IMAGE] == 1290
    assert response.candidates is not None and response.candidates[0].finish_reason == types.FinishReason.STOP


def test_edit_with_reference_parts_and_gemini_3_resolution(client: genai.Client) -> None:
    ref = types.Part.from_bytes(data=photo_like((96, 64), 1), mime_type="image/png")
    response = client.models.generate_content(model="gemini-3-pro-image-preview",
                                              contents=["make it a watercolor", ref],
                                              config=image_config("4:3", "2K"))
    assert [img.size for img in images_of(response)] == [(2400, 1792)]
    assert images_of(response)[0].format == "JPEG"


def test_streaming_yields_thoughts_then_the_final_image(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model="gemini-3-pro-image-preview", contents="a fox",
                                                        config=image_config("1:1")))
    parts = [p for c in chunks if c.candidates for p in (c.candidates[0].content.parts or [])  # type: ignore[union-attr]
             ]
    assert [bool(p.thought) for p in parts] == [True, True, False]
    assert parts[1].inline_data is not None and parts[-1].inline_data is not None
    assert Image.open(io.BytesIO(parts[-1].inline_data.data or b"")).size == (1024, 1024)
    assert chunks[-1].candidates is not None and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.thoughts_token_count


def test_async_client_works_too(sandbox: SandboxServer) -> None:
    async def run() -> types.GenerateContentResponse:
        client = make_client(sandbox)
        try:
            return await client.aio.models.generate_content(model="gemini-3.1-flash-image-preview",
                                                            contents="a fox", config=image_config("8:1"))
        finally:
            await client.aio.aclose()

    assert [img.size for img in images_of(asyncio.run(run()))] == [(2928, 352)]


def test_safety_block_is_a_200_with_prompt_feedback(client: genai.Client) -> None:
    response = client.models.generate_content(model="gemini-2.5-flash-image",
                                              contents="x [sandbox-fault:refused]", config=image_config("1:1"))
    assert response.candidates is None
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    output = client.models.generate_content(model="gemini-2.5-flash-image",
                                            contents="x [sandbox-fault:refused_output]", config=image_config("1:1"))
    assert output.candidates is not None and output.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY


@pytest.mark.parametrize(
    ("key", "prompt", "model", "error", "code", "status"),
    [
        ("invalid", "x", "gemini-2.5-flash-image", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("sandbox-key", "x [sandbox-fault:rate_limited]", "gemini-2.5-flash-image", errors.ClientError, 429,
         "RESOURCE_EXHAUSTED"),
        ("sandbox-key", "x [sandbox-fault:overloaded]", "gemini-2.5-flash-image", errors.ServerError, 503,
         "UNAVAILABLE"),
        ("sandbox-key", "x", "gemini-9-image", errors.ClientError, 404, "NOT_FOUND"),
    ],
)
def test_sdk_raises_its_own_error_classes(sandbox: SandboxServer, key: str, prompt: str, model: str,
                                          error: type[errors.APIError], code: int, status: str) -> None:
    client = make_client(sandbox, key)
    with pytest.raises(error) as info:
        client.models.generate_content(model=model, contents=prompt, config=image_config("1:1"))
    assert (info.value.code, info.value.status) == (code, status)
    client.close()


def test_rate_limit_details_carry_retry_info(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-2.5-flash-image", contents="x [sandbox-fault:rate_limited]")
    details = info.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"} in details


def test_several_candidates_are_rejected(client: genai.Client) -> None:
    config = types.GenerateContentConfig(candidate_count=2, response_modalities=["IMAGE"])
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-2.5-flash-image", contents="x", config=config)
    assert info.value.message == "Multiple candidates is not enabled for models/gemini-2.5-flash-image"


def test_an_error_written_into_the_stream_is_raised_while_iterating(client: genai.Client) -> None:
    seen = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in client.models.generate_content_stream(model="gemini-2.5-flash-image",
                                                           contents="x [sandbox-fault:mid_stream_error]"):
            seen.append(chunk)
    assert len(seen) == 1 and info.value.code == 500 and info.value.status == "INTERNAL"
