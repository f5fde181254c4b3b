"""How a judge is asked, per provider: its model entry (can it see images, what it costs) and one question.

* ``openrouter``: OpenAI-compatible chat completions with ``image_url`` parts; the model list
  (``GET /models``) gives input modalities and prices; ``usage.cost`` is the USD charged
  (https://openrouter.ai/docs/features/multimodal/images).
* ``google``: the Gemini API's ``models/{model}:generateContent`` with ``inline_data`` image parts
  (https://ai.google.dev/api/generate-content); ``GET /v1beta/models/{model}`` says whether the model
  exists and serves ``generateContent``. Gemini models take images ("Gemini models are built to be multimodal",
  https://ai.google.dev/gemini-api/docs/image-understanding); embedding and Gemma models are refused. The API
  reports tokens, not money: the cost is tokens times :data:`GEMINI_PRICES`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from harness.errors import HarnessError
from harness.judge.target import JudgeTarget
from harness.providers.base import ErrorKind, ProviderError
from harness.providers.gemini import classify as gemini_classify
from harness.providers.openrouter import ChatReply, LabelledImage, chat_text, judge_body
from harness.wire import gemini as gemini_wire
from harness.wire import openrouter as wire


class JudgeError(HarnessError):
    """The judge cannot be asked (no image input, unknown model, no key, no way to bound its cost)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the provider says about the judge model: input modalities and USD per token."""

    input_modalities: tuple[str, ...]
    prompt_price: float | None
    completion_price: float | None


class Backend(Protocol):
    async def info(self) -> ModelInfo: ...

    async def ask(self, instruction: str, images: list[LabelledImage]) -> ChatReply: ...


def _price(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class OpenRouterBackend:
    client: httpx.AsyncClient
    base_url: str
    api_key: str | None
    model: str

    async def info(self) -> ModelInfo:
        url = self.base_url.rstrip("/") + wire.MODELS_PATH
        response = await self.client.get(url, headers={"Authorization": f"Bearer {self.api_key}"}
                                         if self.api_key else {})
        if response.status_code >= 400:
            raise JudgeError(f"judge model list {url} answered HTTP {response.status_code}")
        body = response.json()
        for entry in body.get("data", []) if isinstance(body, dict) else []:
            if isinstance(entry, dict) and entry.get("id") == self.model:
                arch = entry.get("architecture") or {}
                pricing = entry.get("pricing") or {}
                return ModelInfo(tuple(str(m) for m in arch.get("input_modalities") or ()),
                                 _price(pricing.get("prompt")), _price(pricing.get("completion")))
        raise JudgeError(f"judge model {self.model!r} is not in the provider's model list ({url})")

    async def ask(self, instruction: str, images: list[LabelledImage]) -> ChatReply:
        return await chat_text(self.client, self.base_url, self.api_key, judge_body(self.model, instruction, images))


GEMINI_PRICES: dict[str, tuple[float, float]] = {
    "gemini-2.5-flash-lite": (0.10e-6, 0.40e-6),
    "gemini-2.5-flash": (0.30e-6, 2.50e-6),
    "gemini-2.5-pro": (1.25e-6, 10.0e-6),
}
"""USD per input token (text and image) and per output token, paid tier, prompts up to 200k tokens
(https://ai.google.dev/gemini-api/docs/pricing); the longest matching prefix of a model id applies."""


@dataclass
class GeminiBackend:
    client: httpx.AsyncClient
    base_url: str
    api_key: str | None
    model: str

    def _headers(self) -> dict[str, str]:
        return {gemini_wire.API_KEY_HEADER: self.api_key} if self.api_key else {}

    def prices(self) -> tuple[float, float] | None:
        key = max((k for k in GEMINI_PRICES if self.model.startswith(k)), key=len, default=None)
        return GEMINI_PRICES[key] if key else None

    async def info(self) -> ModelInfo:
        url = f"{self.base_url.rstrip('/')}/{gemini_wire.API_VERSION}/models/{self.model}"
        response = await self.client.get(url, headers=self._headers())
        if response.status_code == 404:
            raise JudgeError(f"judge model {self.model!r} is not in the provider's model list ({url})")
        if response.status_code >= 400:
            raise gemini_classify(response.status_code, response.content, response.headers)
        body = response.json() if response.content else {}
        methods = body.get("supportedGenerationMethods") or [] if isinstance(body, dict) else []
        sees = self.model.startswith("gemini-") and "embedding" not in self.model and gemini_wire.GENERATE in methods
        prices = self.prices()
        return ModelInfo(("text", "image") if sees else ("text",), prices[0] if prices else None,
                         prices[1] if prices else None)

    async def ask(self, instruction: str, images: list[LabelledImage]) -> ChatReply:
        parts: list[dict[str, Any]] = [{"text": instruction}]
        for image in images:
            parts.append({"text": image.label})
            parts.append({"inline_data": {"mime_type": image.mime, "data": base64.b64encode(image.data).decode()}})
        body = {"contents": [{"role": "user", "parts": parts}],
                "generationConfig": {"maxOutputTokens": wire.JUDGE_MAX_TOKENS, "temperature": 0}}
        url = self.base_url.rstrip("/") + gemini_wire.method_path(self.model, gemini_wire.GENERATE)
        response = await self.client.post(url, headers=self._headers(), json=body)
        if response.status_code >= 400:
            raise gemini_classify(response.status_code, response.content, response.headers)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(ErrorKind.BAD_OUTPUT, "200 response is not JSON",
                                http_status=response.status_code) from exc
        candidates = data.get("candidates") if isinstance(data, dict) else None
        content = candidates[0].get("content") if isinstance(candidates, list) and candidates else None
        text = "".join(str(p.get("text", "")) for p in (content or {}).get("parts") or [] if isinstance(p, dict))
        usage = data.get("usageMetadata") or {} if isinstance(data, dict) else {}
        prompt, output = usage.get("promptTokenCount"), usage.get("candidatesTokenCount")
        prices = self.prices()
        cost = (prompt * prices[0] + (output or 0) * prices[1]
                if prices and isinstance(prompt, int) else None)
        return ChatReply(text=text, cost_usd=cost, generation_id=data.get("responseId") if isinstance(data, dict)
                         else None, usage={"input_tokens": prompt, "output_tokens": output})


def backend_for(target: JudgeTarget, client: httpx.AsyncClient, base_url: str, api_key: str | None) -> Backend:
    """The backend that asks ``target``."""
    if target.provider == "google":
        return GeminiBackend(client, base_url, api_key, target.model)
    return OpenRouterBackend(client, base_url, api_key, target.model)
