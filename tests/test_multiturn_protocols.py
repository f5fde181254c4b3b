"""Conversation state as each provider expects it, checked against recorded request and answer shapes:
Gemini resends the whole ``contents`` with the model's parts verbatim (``thoughtSignature`` and thought parts
included); OpenRouter resends the messages with the assistant's ``images`` and ``reasoning_details`` as
returned. Replies survive the store (images by hash) unchanged, and other protocols are refused clearly."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.providers.base import ChallengeKind, ErrorKind, Exchange, GenerationRequest, ProviderError
from harness.providers.gemini import GeminiProvider
from harness.providers.openai_images import OpenAIImagesProvider
from harness.providers.openrouter import OpenRouterProvider
from harness.run import perform_attempt
from harness.run.sequence import IMAGE_REF, pack_reply, unpack_reply
from tests.conftest import image, photo_like

pytestmark = pytest.mark.anyio

START = image("start.png", (64, 48), 1)
ANSWERS = [photo_like((64, 64), 10 + i) for i in range(3)]
THOUGHT_IMAGE = photo_like((32, 32), 99)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def gemini3_answer(turn: int) -> dict[str, Any]:
    """A Gemini 3 image model's answer as documented: thought text and an interim thought image first (no
    signatures), then the text and the image, each with a ``thoughtSignature``
    (https://ai.google.dev/gemini-api/docs/image-generation, "Thought signatures")."""
    return {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": f"Planning turn {turn}", "thought": True},
            {"inlineData": {"mimeType": "image/png", "data": b64(THOUGHT_IMAGE)}, "thought": True},
            {"text": f"Here is turn {turn}.", "thoughtSignature": f"c2lnLXRleHQt{turn}"},
            {"inlineData": {"mimeType": "image/png", "data": b64(ANSWERS[turn])},
             "thoughtSignature": f"c2lnLWltYWdlLQ{turn}=="},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100 * (turn + 1), "candidatesTokenCount": 1120,
                          "totalTokenCount": 1120 + 100 * (turn + 1)},
        "responseId": f"resp-{turn}",
    }


class Recorded:
    """A mock provider answering each POST in turn and keeping every request body."""

    def __init__(self, answer: Callable[[int], httpx.Response]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return self.answer(len(self.bodies) - 1)


async def converse(provider: Any, model: str, prompts: list[str], recorded: Recorded,
                   stream: bool = False) -> list[Exchange]:
    history: list[Exchange] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorded)) as client:
        for i, prompt in enumerate(prompts):
            refs = (START,) if i == 0 else ()
            request = GenerationRequest(model_id=model, prompt=prompt, kind=ChallengeKind.MULTI_TURN,
                                        references=refs, aspect_ratio="1:1", history=tuple(history), stream=stream)
            outcome = await perform_attempt(provider, request, client, 30)
            assert outcome.error is None, outcome.error
            assert outcome.result is not None and outcome.result.reply is not None
            history.append(Exchange(prompt, refs, outcome.result.reply))
    return history


async def test_gemini_resends_the_model_parts_verbatim_with_their_thought_signatures() -> None:
    recorded = Recorded(lambda i: httpx.Response(200, json=gemini3_answer(i)))
    provider = GeminiProvider("https://generativelanguage.googleapis.com", "k-123")
    await converse(provider, "gemini-3-pro-image-preview", ["Make him smile", "Add a scarf", "Night"], recorded)
    first, second, third = recorded.bodies
    assert [c["role"] for c in first["contents"]] == ["user"]
    assert [c["role"] for c in third["contents"]] == ["user", "model", "user", "model", "user"]
    assert third["contents"][0] == {"role": "user", "parts": [{"text": "Make him smile"},
                                                              {"inlineData": {"mimeType": "image/png",
                                                                              "data": b64(START.data)}}]}
    assert third["contents"][1] == gemini3_answer(0)["candidates"][0]["content"]
    assert third["contents"][3] == gemini3_answer(1)["candidates"][0]["content"]
    assert third["contents"][4] == {"role": "user", "parts": [{"text": "Night"}]}
    assert second["contents"] == third["contents"][:3]
    signatures = [p.get("thoughtSignature") for c in third["contents"] if c["role"] == "model" for p in c["parts"]]
    assert signatures == [None, None, "c2lnLXRleHQt0", "c2lnLWltYWdlLQ0==", None, None, "c2lnLXRleHQt1",
                          "c2lnLWltYWdlLQ1=="]


async def test_gemini_merges_a_streamed_answer_into_one_model_turn_in_order() -> None:
    def stream(i: int) -> httpx.Response:
        parts = gemini3_answer(i)["candidates"][0]["content"]["parts"]
        chunks = [{"candidates": [{"content": {"role": "model", "parts": [p]}, "index": 0}]} for p in parts]
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        text = "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    recorded = Recorded(stream)
    provider = GeminiProvider("https://generativelanguage.googleapis.com", "k-123")
    await converse(provider, "gemini-3-pro-image-preview", ["one", "two"], recorded, stream=True)
    assert recorded.bodies[1]["contents"][1] == gemini3_answer(0)["candidates"][0]["content"]


def openrouter_answer(i: int) -> dict[str, Any]:
    """OpenRouter's chat completion with an image: the assistant message carries ``images`` of data URLs and,
    for reasoning models, ``reasoning_details`` to be passed back unchanged."""
    return {"id": f"gen-{i}", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
            "native_finish_reason": "STOP", "message": {
                "role": "assistant", "content": f"Turn {i} done.", "refusal": None,
                "reasoning_details": [{"type": "reasoning.encrypted", "data": f"enc-{i}", "format": "google-gemini-v1"}],
                "images": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(ANSWERS[i])},
                            "index": 0}]}}],
            "usage": {"prompt_tokens": 300 * (i + 1), "completion_tokens": 1300, "total_tokens": 1600, "cost": 0.04}}


async def test_openrouter_resends_messages_with_the_assistant_images_as_returned() -> None:
    recorded = Recorded(lambda i: httpx.Response(200, json=openrouter_answer(i)))
    provider = OpenRouterProvider("https://openrouter.ai/api/v1", "sk-or-1")
    await converse(provider, "google/gemini-3-pro-image-preview", ["smile", "scarf", "night"], recorded)
    third = recorded.bodies[2]["messages"]
    assert [m["role"] for m in third] == ["user", "assistant", "user", "assistant", "user"]
    assert third[0]["content"] == [{"type": "text", "text": "smile"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(START.data)}}]
    assert third[1] == openrouter_answer(0)["choices"][0]["message"]
    assert third[3] == openrouter_answer(1)["choices"][0]["message"]
    assert third[4] == {"role": "user", "content": "night"}


async def test_openrouter_merges_streamed_deltas_into_one_assistant_message() -> None:
    def stream(i: int) -> httpx.Response:
        message = openrouter_answer(i)["choices"][0]["message"]
        deltas = [{"role": "assistant", "content": "Turn "}, {"content": f"{i} done."},
                  {"content": "", "reasoning_details": message["reasoning_details"]},
                  {"content": "", "images": message["images"]}]
        events: list[dict[str, Any]] = [{"id": f"gen-{i}", "choices": [{"index": 0, "delta": d,
                                                                         "finish_reason": None}]} for d in deltas]
        events[-1]["choices"][0]["finish_reason"] = "stop"
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    recorded = Recorded(stream)
    provider = OpenRouterProvider("https://openrouter.ai/api/v1", "sk-or-1")
    await converse(provider, "google/gemini-3-pro-image-preview", ["one", "two"], recorded, stream=True)
    sent = recorded.bodies[1]["messages"][1]
    message = openrouter_answer(0)["choices"][0]["message"]
    assert sent["role"] == "assistant" and sent["content"] == "Turn 0 done."
    assert sent["images"] == message["images"] and sent["reasoning_details"] == message["reasoning_details"]


async def test_a_protocol_without_conversation_state_is_refused_with_a_clear_message() -> None:
    provider = OpenAIImagesProvider("https://api.openai.com/v1", "sk-test")
    request = GenerationRequest(model_id="gpt-image-1", prompt="x", kind=ChallengeKind.MULTI_TURN)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        outcome = await perform_attempt(provider, request, client, 5)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.INVALID_REQUEST
    assert "protocol 'openai-images' cannot run multi-turn challenges yet" in outcome.error.message
    assert outcome.calls == []


async def test_a_conversation_turn_asks_for_one_image() -> None:
    provider = GeminiProvider("https://generativelanguage.googleapis.com", "k")
    request = GenerationRequest(model_id="gemini-2.5-flash-image", prompt="x", kind=ChallengeKind.MULTI_TURN, n=2)
    with pytest.raises(ProviderError, match="exactly one image"):
        await provider.generate(request, None)  # type: ignore[arg-type]


# ---- replies in the store ---------------------------------------------------------------------------------


def test_a_stored_gemini_reply_keeps_signatures_and_moves_answer_images_to_the_image_store() -> None:
    reply = gemini3_answer(0)["candidates"][0]["content"]
    stored = hashlib.sha256(ANSWERS[0]).hexdigest()
    packed = pack_reply(reply, [stored])
    assert len(json.dumps(packed)) < 600
    image_part = packed["parts"][-1]
    assert image_part["thoughtSignature"] == "c2lnLWltYWdlLQ0=="
    assert image_part["inlineData"]["data"] == {IMAGE_REF: stored, "ext": "png", "mime": "image/png"}
    assert [p.get("thought") for p in packed["parts"]] == [True, None, None]  # the interim thought image is left out
    restored = unpack_reply(packed, lambda sha, ext: {stored: ANSWERS[0]}[sha])
    assert restored == {**reply, "parts": [reply["parts"][0], *reply["parts"][2:]]}


def test_a_stored_openrouter_reply_round_trips_exactly() -> None:
    reply = openrouter_answer(1)["choices"][0]["message"]
    stored = hashlib.sha256(ANSWERS[1]).hexdigest()
    packed = pack_reply(reply, [stored])
    assert "base64" not in json.dumps(packed)
    assert unpack_reply(packed, lambda sha, ext: ANSWERS[1]) == reply


@given(st.binary(min_size=1, max_size=300), st.sampled_from(["gemini", "openrouter"]), st.text(max_size=20))
def test_packing_then_unpacking_gives_back_any_reply(data: bytes, shape: str, text: str) -> None:
    payload = b64(data)
    if shape == "gemini":
        reply: dict[str, Any] = {"role": "model", "parts": [
            {"text": text, "thoughtSignature": "sig"}, {"inlineData": {"mimeType": "image/png", "data": payload}}]}
    else:
        reply = {"role": "assistant", "content": text,
                 "images": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}]}
    sha = hashlib.sha256(data).hexdigest()
    original = copy.deepcopy(reply)
    for stored in ([sha], []):
        packed = pack_reply(reply, stored)
        assert unpack_reply(packed, lambda s, ext: data) == original
    assert reply == original


async def test_a_hostile_provider_echoing_the_key_into_its_reply_never_gets_it_into_the_history() -> None:
    key = "sk-or-v1-hostile-0123456789abcdef"

    def echo(i: int) -> httpx.Response:
        answer = openrouter_answer(i)
        message = answer["choices"][0]["message"]
        message["content"] = f"your key is {key}"
        message["reasoning_details"][0]["data"] = key
        return httpx.Response(200, json=answer)

    recorded = Recorded(echo)
    provider = OpenRouterProvider("https://openrouter.ai/api/v1", key)
    history = await converse(provider, "google/gemini-3-pro-image-preview", ["one", "two"], recorded)
    assert key not in json.dumps([dict(h.reply) for h in history])
    assert key not in json.dumps(recorded.bodies[1]["messages"])
    assert key not in json.dumps(pack_reply(history[0].reply, []))
