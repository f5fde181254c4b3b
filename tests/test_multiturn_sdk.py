"""The providers' own SDKs hold a conversation with the sandbox unchanged but for the base URL: google-genai's
``client.chats.create(...).send_message`` twice, with an image back each time (Gemini 2.5 and a Gemini 3 image
model, whose thought parts the SDK keeps in its history), and the openai SDK's chat completions against the
sandbox's OpenRouter with the assistant's message (its ``images``) sent back in the history."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like


@pytest.fixture
def gemini(sandbox: SandboxServer) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=sandbox.base_urls()["gemini"],
                                retry_options=types.HttpRetryOptions(attempts=1))
    client = genai.Client(api_key="sandbox-key", http_options=options)
    yield client
    client.close()


def answer_images(response: types.GenerateContentResponse) -> list[Image.Image]:
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts is not None
    return [Image.open(io.BytesIO(p.inline_data.data)) for p in content.parts
            if p.inline_data is not None and p.inline_data.data and not p.thought]


@pytest.mark.parametrize("model", ["gemini-2.5-flash-image", "gemini-3-pro-image-preview"])
def test_google_genai_chat_sends_two_messages_and_gets_an_image_each_time(gemini: genai.Client, model: str) -> None:
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"],
                                         image_config=types.ImageConfig(aspect_ratio="1:1"))
    chat = gemini.chats.create(model=model, config=config)
    start = types.Part.from_bytes(data=photo_like((96, 64), 1), mime_type="image/png")
    first = chat.send_message(["Make him smile", start])
    second = chat.send_message("Now make it night; keep his face")
    assert len(answer_images(first)) == 1 and len(answer_images(second)) == 1
    history = chat.get_history()
    assert [c.role for c in history] == ["user", "model", "user", "model"]
    model_parts = history[1].parts or []
    assert any(p.inline_data is not None and not p.thought for p in model_parts)
    if model.startswith("gemini-3"):
        assert any(p.thought for p in model_parts), "the SDK keeps a Gemini 3 model's thought parts in its history"
        signed = [p for p in model_parts if p.inline_data is not None and not p.thought]
        assert signed and all(p.thought_signature for p in signed), "and the signatures of its answer images"


def test_openai_sdk_chat_completions_carry_the_assistant_images_in_the_history(sandbox: SandboxServer) -> None:
    with openai.OpenAI(base_url=sandbox.base_urls()["openrouter"], api_key="sk-or-v1-sandbox", max_retries=0) as c:
        extra = {"modalities": ["image", "text"], "image_config": {"aspect_ratio": "1:1"}}
        ref = "data:image/png;base64," + base64.b64encode(photo_like((96, 64), 1)).decode()
        messages: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "Make him smile"},
                                                             {"type": "image_url", "image_url": {"url": ref}}]}]
        first = c.chat.completions.create(model="google/gemini-3-pro-image-preview", messages=messages,
                                          extra_body=extra)
        assistant = first.choices[0].message.model_dump(exclude_none=True)
        assert assistant["images"][0]["image_url"]["url"].startswith("data:image/")
        messages += [assistant, {"role": "user", "content": "Now make it night"}]
        second = c.chat.completions.create(model="google/gemini-3-pro-image-preview", messages=messages,
                                           extra_body=extra)
    images = (second.choices[0].message.model_extra or {})["images"]
    url = images[0]["image_url"]["url"]
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (1024, 1024)
