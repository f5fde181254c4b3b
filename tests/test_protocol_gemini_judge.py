"""The Gemini sandbox plays text models that judge pairs of images, as the OpenRouter sandbox does: the
google-genai SDK (and the harness's judge backend) ask ``gemini-2.5-flash`` which picture is better and get a
verdict read from the pictures' pixels; ``models.get`` names the methods a judge backend checks."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=sandbox.base_urls()["gemini"],
                                retry_options=types.HttpRetryOptions(attempts=1))
    c = genai.Client(api_key="sandbox-key", http_options=options)
    yield c
    c.close()


def png(seed: int) -> bytes:
    return photo_like((96, 64), seed)


def flat() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


def ask(client: genai.Client, a: bytes, b: bytes, model: str = "gemini-2.5-flash") -> types.GenerateContentResponse:
    parts = [types.Part.from_text(text="Request: a watercolor fox\nWhich image follows the request better?"),
             types.Part.from_text(text="Image A"), types.Part.from_bytes(data=a, mime_type="image/png"),
             types.Part.from_text(text="Image B"), types.Part.from_bytes(data=b, mime_type="image/png")]
    return client.models.generate_content(model=model, contents=[types.Content(role="user", parts=parts)])


def test_a_gemini_judge_answers_with_a_verdict_and_its_usage(client: genai.Client) -> None:
    response = ask(client, png(1), png(2))
    assert response.text is not None and "WINNER:" in response.text
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count
    assert ask(client, png(1), png(2)).text == response.text, "the same pair gets the same verdict"


def test_the_model_list_entry_says_a_judge_can_generate_content(client: genai.Client) -> None:
    info = client.models.get(model="gemini-2.5-flash")
    assert info.name == "models/gemini-2.5-flash"
    assert info.supported_actions is not None and "generateContent" in info.supported_actions
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="gemini-0-nope")
    assert caught.value.code == 404


def test_an_image_model_is_not_a_judge(client: genai.Client) -> None:
    response = ask(client, png(1), flat(), model="gemini-2.5-flash-image")
    assert "WINNER:" not in (response.text or "")
