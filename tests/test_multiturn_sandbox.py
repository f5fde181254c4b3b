"""The sandbox holds a conversation as the providers do: a Gemini 3 model signs its answer images and refuses a
history whose image lost or changed its signature (Google's 400 and message), a request over 20 MB is refused,
and the history's images are input (billed as input tokens) on Gemini and OpenRouter alike."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from harness.providers.base import ChallengeKind, ErrorKind, Exchange, GenerationRequest
from harness.providers.gemini import GeminiProvider
from harness.providers.openrouter import OpenRouterProvider
from harness.run import perform_attempt
from harness.run.attempt import AttemptOutcome
from harness.sandbox.servers import SandboxServer
from tests.conftest import image

pytestmark = pytest.mark.anyio
START = image("start.png", (96, 64), 1)


def gemini(sandbox: SandboxServer) -> GeminiProvider:
    return GeminiProvider(GeminiProvider.sandbox_base_url(sandbox.root, {}), "sandbox-key")


def openrouter(sandbox: SandboxServer) -> OpenRouterProvider:
    return OpenRouterProvider(OpenRouterProvider.sandbox_base_url(sandbox.root, {}), "sk-or-v1-sandbox")


async def turn(provider: Any, model: str, prompt: str, history: list[Exchange], client: httpx.AsyncClient,
               refs: tuple[Any, ...] = ()) -> AttemptOutcome:
    request = GenerationRequest(model_id=model, prompt=prompt, kind=ChallengeKind.MULTI_TURN, references=refs,
                                aspect_ratio="1:1", history=tuple(history))
    return await perform_attempt(provider, request, client, 30)


async def first_exchange(provider: Any, model: str, client: httpx.AsyncClient) -> Exchange:
    outcome = await turn(provider, model, "Make him smile", [], client, (START,))
    assert outcome.error is None and outcome.result is not None and outcome.result.reply is not None, outcome.error
    return Exchange("Make him smile", (START,), outcome.result.reply)


def answer_part(reply: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in reply["parts"] if "inlineData" in p and not p.get("thought"))


async def test_gemini_3_signs_its_answer_and_takes_the_history_back_unchanged(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    first = await first_exchange(gemini(sandbox), "gemini-3-pro-image-preview", client)
    assert answer_part(dict(first.reply)).get("thoughtSignature")
    second = await turn(gemini(sandbox), "gemini-3-pro-image-preview", "Now at night", [first], client)
    assert second.error is None, second.error


async def test_gemini_3_refuses_a_history_whose_image_lost_its_signature_with_googles_error(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    first = await first_exchange(gemini(sandbox), "gemini-3-pro-image-preview", client)
    reply = copy.deepcopy(dict(first.reply))
    del answer_part(reply)["thoughtSignature"]
    position = reply["parts"].index(answer_part(reply)) + 1
    outcome = await turn(gemini(sandbox), "gemini-3-pro-image-preview", "Now at night",
                         [Exchange(first.prompt, first.references, reply)], client)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.INVALID_REQUEST
    assert (outcome.error.http_status, outcome.error.provider_code) == (400, "INVALID_ARGUMENT")
    assert outcome.error.message == (f"Image part is missing a thought_signature in content position 2, part "
                                     f"position {position}.")
    answer_part(reply)["thoughtSignature"] = "c2lnbmF0dXJlLWZyb20tZWxzZXdoZXJl"
    forged = await turn(gemini(sandbox), "gemini-3-pro-image-preview", "Now at night",
                        [Exchange(first.prompt, first.references, reply)], client)
    assert forged.error is not None and forged.error.message == "Corrupted thought signature."
    answer_part(reply)["thoughtSignature"] = "skip_thought_signature_validator"
    skipped = await turn(gemini(sandbox), "gemini-3-pro-image-preview", "Now at night",
                         [Exchange(first.prompt, first.references, reply)], client)
    assert skipped.error is None, skipped.error


async def test_gemini_2_5_needs_no_signature_and_bills_the_history_image_as_input(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    first = await first_exchange(gemini(sandbox), "gemini-2.5-flash-image", client)
    assert "thoughtSignature" not in answer_part(dict(first.reply))
    second = await turn(gemini(sandbox), "gemini-2.5-flash-image", "Now at night", [first], client)
    assert second.error is None and second.result is not None, second.error
    assert second.result.usage["input_image_tokens"] == 2 * 258, "the start image again and the first answer"


async def test_a_request_over_20_mb_is_refused_as_googles_front_end_does(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    big = image("big.png", (16, 16), 3)
    big = type(big)(big.name, big.data + b"\0" * (16 * 1024 * 1024), big.mime, 16, 16, big.sha256)
    outcome = await turn(gemini(sandbox), "gemini-2.5-flash-image", "too much", [], client, (big,))
    assert outcome.error is not None and outcome.error.http_status == 400
    assert outcome.error.message == "Request payload size exceeds the limit: 20971520 bytes."


async def test_openrouter_bills_the_assistant_images_of_the_history_as_input(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    first = await first_exchange(openrouter(sandbox), "google/gemini-2.5-flash-image", client)
    one = await turn(openrouter(sandbox), "google/gemini-2.5-flash-image", "Same, no history", [], client, (START,))
    second = await turn(openrouter(sandbox), "google/gemini-2.5-flash-image", "Now at night", [first], client)
    assert one.result is not None and second.result is not None, (one.error, second.error)
    assert second.result.usage["input_tokens"] > one.result.usage["input_tokens"]
