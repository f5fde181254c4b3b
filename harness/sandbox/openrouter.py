"""Simulated OpenRouter chat completions with image output (protocol facts in :mod:`harness.wire.openrouter`):
images as data URLs in
``message.images`` / ``delta.images``, ``usage.cost``, ``X-Generation-Id``, SSE with ``: OPENROUTER PROCESSING``
keep-alive comments and ``data: [DONE]``, OpenRouter's error envelope (also inside a 200 body or a stream chunk).

It also plays vision-language *judges* (:data:`JUDGES`): a chat request to one of them gets a text answer
about the images it carries, decided from their pixels by the sandbox's own checker
(:func:`harness.sandbox.imagery.read`) with the judge's noise and position bias (:class:`JudgeSettings`),
and ``GET /models`` lists every model with its input modalities, as OpenRouter's model list does.

Faithful enough that the official ``openai`` SDK works against it unchanged but for ``base_url``:
``OpenAI(base_url=<root>/openrouter/api/v1, api_key=...).chat.completions.create(...,
extra_body={"modalities": ["image", "text"]})``, streaming included.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.sandbox import imagery
from harness.sandbox.faults import Fault
from harness.sandbox.simulation import (
    RequestPlan,
    SimulatedProvider,
    abort_connection,
    body_seconds,
    drip,
    hang_until_disconnected,
    truncated,
)
from harness.sse import encode_comment, encode_event
from harness.wire import gemini as gemini_wire
from harness.wire import openrouter as wire

MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "google/gemini-2.5-flash-image": ("Google AI Studio", wire.MODALITIES_IMAGE_TEXT),
    "google/gemini-2.5-flash-image-preview": ("Google AI Studio", wire.MODALITIES_IMAGE_TEXT),
    "google/gemini-3-pro-image-preview": ("Google AI Studio", wire.MODALITIES_IMAGE_TEXT),
    "google/gemini-3.1-flash-image-preview": ("Google AI Studio", wire.MODALITIES_IMAGE_TEXT),
    "openai/gpt-5-image": ("OpenAI", wire.MODALITIES_IMAGE_TEXT),
    "openai/gpt-5-image-mini": ("OpenAI", wire.MODALITIES_IMAGE_TEXT),
    "black-forest-labs/flux.2-pro": ("Black Forest Labs", wire.MODALITIES_IMAGE_ONLY),
    "black-forest-labs/flux.2-flex": ("Black Forest Labs", wire.MODALITIES_IMAGE_ONLY),
}
"""Simulated model slugs -> (upstream provider name, output modalities the model supports)."""


@dataclass(frozen=True)
class JudgeSettings:
    """How a simulated judge model looks at two pictures.

    It reads each picture's quality from its pixels (:attr:`harness.sandbox.imagery.Reading.quality`), adds
    ``noise_sd`` of Gaussian error to each reading and ``position_bias`` to the first picture shown, and
    answers the better one (a tie when they are within ``tie_margin``). ``unparseable_rate``: share of
    answers that ramble without a verdict line. ``input_modalities``: what the model takes (a text-only
    model answers an image request with OpenRouter's 404). ``prompt_price``/``completion_price``: USD per
    token, as the model list gives them; ``image_tokens``: prompt tokens an image counts for.
    """

    noise_sd: float = 0.15
    position_bias: float = 0.05
    tie_margin: float = 0.05
    unparseable_rate: float = 0.0
    input_modalities: tuple[str, ...] = ("text", "image")
    prompt_price: float = 3e-7
    completion_price: float = 2.5e-6
    image_tokens: int = 1290


JUDGES: dict[str, JudgeSettings] = {
    "google/gemini-2.5-flash": JudgeSettings(noise_sd=0.15, position_bias=0.05),
    "openai/gpt-4o": JudgeSettings(noise_sd=0.2, position_bias=0.08, prompt_price=2.5e-6, completion_price=1e-5,
                                   image_tokens=765),
    "openai/gpt-4o-mini": JudgeSettings(noise_sd=0.4, position_bias=0.15, unparseable_rate=0.05,
                                        prompt_price=1.5e-7, completion_price=6e-7, image_tokens=765),
    "meta-llama/llama-3.1-8b-instruct": JudgeSettings(input_modalities=("text",), prompt_price=2e-8,
                                                      completion_price=5e-8),
}
"""Simulated chat models that can judge (and one that cannot see images). Prices and image token counts are
of the order OpenRouter lists for them (https://openrouter.ai/models); the noise and biases are assumptions,
chosen so that the judges differ in how well they agree with the simulated panel."""
JUDGE_LATENCY_S = 3.0
"""Simulated seconds a judge takes to answer."""

OTHER_IMAGE_PRICE_USD = 0.04
"""Per-image cost reported for the non-Google simulated models (an assumption)."""
OTHER_IMAGE_TOKENS = 1024
PROCESSING_INTERVAL_S = 2.0
"""Simulated seconds between ``: OPENROUTER PROCESSING`` comments while the upstream works."""
OPENING = "Here is the image you asked for."
INPUT_IMAGE_TOKENS = 258


class OpenRouterError(Exception):
    """An error answer in OpenRouter's envelope."""

    def __init__(self, status: int, message: str, metadata: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = wire.error_body(status, message, metadata)
        self.headers = headers or {}

    @classmethod
    def named(cls, name: str, metadata: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
              **fmt: Any) -> OpenRouterError:
        """One of the real errors in :data:`wire.ERRORS`, its message filled with ``fmt``."""
        status, message = wire.ERRORS[name]
        return cls(status, message.format(**fmt) if fmt else message, metadata, headers)

    def response(self, generation_id: str | None = None) -> JSONResponse:
        headers = dict(self.headers)
        if generation_id:
            headers[wire.GENERATION_ID_HEADER] = generation_id
        return JSONResponse(self.body, status_code=self.status, headers=headers)


@dataclass
class Call:
    """A validated request."""

    model: str
    provider: str
    prompt: str
    images: list[bytes]
    modalities: tuple[str, ...]
    ratio: str | None
    tier: str | None
    seed: int | None
    stream: bool
    generation_id: str
    created: int


def _bad(message: str, error_type: str | None = None) -> OpenRouterError:
    return OpenRouterError(400, message, {"error_type": error_type} if error_type else None)


def _tokens(text: str) -> int:
    return max(1, len(text.split()) * 4 // 3)


class OpenRouterServer:
    """Routes and behaviour of the simulated OpenRouter API."""

    def __init__(self, sim: SimulatedProvider, judges: dict[str, JudgeSettings] | None = None) -> None:
        self.sim = sim
        self.judges = JUDGES if judges is None else judges

    def app(self) -> Starlette:
        return Starlette(routes=[Route(wire.COMPLETIONS_PATH, self.completions, methods=["POST"]),
                                 Route(wire.MODELS_PATH, self.models, methods=["GET"])])

    async def models(self, request: Request) -> Response:
        """The model list: image models (text in, image out) and the judges (text and maybe images in)."""
        data = [{"id": m, "architecture": {"input_modalities": ["text", "image"], "output_modalities": list(out)}}
                for m, (_, out) in MODELS.items()]
        data += [{"id": m, "architecture": {"input_modalities": list(j.input_modalities),
                                            "output_modalities": ["text"]},
                  "pricing": {"prompt": str(j.prompt_price), "completion": str(j.completion_price)}}
                 for m, j in self.judges.items()]
        return JSONResponse({"data": data})

    async def completions(self, request: Request) -> Response:
        generation_id = f"gen-{int(time.time())}-{secrets.token_urlsafe(15)[:20]}"
        try:
            judge = await self._judge_model(request)
            if judge is not None:
                return await self._judge(request, judge, generation_id)
            call = await self._validate(request, generation_id)
            plan = self.sim.plan(call.model, request.headers, call.prompt)
            await self._early_fault(request, plan, call)
        except OpenRouterError as err:
            return err.response(generation_id)
        headers = {wire.GENERATION_ID_HEADER: generation_id}
        if call.stream:
            return StreamingResponse(self._stream(request, call, plan), media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        return await self._unary(request, call, plan, headers)

    # ---- the judges -----------------------------------------------------------------------------------------

    async def _judge_model(self, request: Request) -> str | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model in self.judges else None

    async def _judge(self, request: Request, model: str, generation_id: str) -> Response:
        """A judge's answer: which of the last two images is better, read from their pixels."""
        header = request.headers.get("authorization", "")
        state = self.sim.check_key(header[7:].strip() if header.lower().startswith("bearer ") else "")
        if state != "ok":
            raise OpenRouterError.named("no_auth" if state == "missing" else "user_not_found")
        settings = self.judges[model]
        body = json.loads(await request.body())
        labelled, texts = self._labelled(body.get("messages"))
        if labelled and "image" not in settings.input_modalities:
            raise OpenRouterError(404, "No endpoints found that support image input")
        if not texts:
            raise _bad('Input required: specify "prompt" or "messages"')
        answer = await asyncio.to_thread(judge_answer, model, settings, "\n".join(texts), labelled)
        await self.sim.sleep(JUDGE_LATENCY_S)
        prompt_tokens = sum(_tokens(t) for t in texts) + settings.image_tokens * len(labelled)
        completion_tokens = _tokens(answer)
        cost = prompt_tokens * settings.prompt_price + completion_tokens * settings.completion_price
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens, "cost": round(cost, 10)}
        return JSONResponse({
            "id": generation_id, "provider": "Simulated", "model": model, "object": "chat.completion",
            "created": int(time.time()),
            "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "STOP",
                         "message": {"role": "assistant", "content": answer, "refusal": None}}],
            "usage": usage}, headers={wire.GENERATION_ID_HEADER: generation_id})

    def _labelled(self, messages: Any) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Every image with the text part right before it (its label), and every text part."""
        images: list[tuple[str, bytes]] = []
        texts: list[str] = []
        for m, message in enumerate(messages if isinstance(messages, list) else []):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
                continue
            for p, part in enumerate(content if isinstance(content, list) else []):
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    images.append((texts[-1] if texts else "", self._image(part.get("image_url"), m, p)))
        return images, texts

    # ---- validation --------------------------------------------------------------------------------------

    async def _validate(self, request: Request, generation_id: str) -> Call:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        state = self.sim.check_key(key)
        if state == "missing":
            raise OpenRouterError.named("no_auth")
        if state == "invalid":
            raise OpenRouterError.named("user_not_found")
        wait = self.sim.rate_limited(key)
        if wait is not None:
            raise self._platform_limit(wait)
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise _bad("Invalid JSON in request body") from exc
        if not isinstance(body, dict):
            raise _bad("Request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or model not in MODELS:
            raise OpenRouterError.named("invalid_model", model=model)
        provider, supported = MODELS[model]
        prompt, images = self._messages(body.get("messages"))
        modalities = self._modalities(body.get("modalities"), supported)
        ratio, tier = self._image_config(model, body.get("image_config"))
        seed = body.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise _bad("seed must be an integer")
        return Call(model=model, provider=provider, prompt=prompt, images=images, modalities=modalities,
                    ratio=ratio, tier=tier, seed=seed, stream=body.get("stream") is True,
                    generation_id=generation_id, created=int(time.time()))

    def _messages(self, messages: Any) -> tuple[str, list[bytes]]:
        if not isinstance(messages, list) or not messages:
            raise _bad('Input required: specify "prompt" or "messages"')
        texts: list[str] = []
        images: list[bytes] = []
        for m, message in enumerate(messages):
            if isinstance(message, dict) and message.get("role") == "assistant":
                for i, item in enumerate(message.get("images") or []):
                    if isinstance(item, dict):
                        images.append(self._image(item.get("image_url"), m, i))
                continue
            if not isinstance(message, dict) or message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for p, part in enumerate(content if isinstance(content, list) else []):
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    images.append(self._image(part.get("image_url"), m, p))
        if not texts:
            raise _bad('Input required: specify "prompt" or "messages"')
        return "\n".join(texts), images

    def _image(self, image_url: Any, m: int, p: int) -> bytes:
        url = image_url.get("url") if isinstance(image_url, dict) else image_url
        if not isinstance(url, str) or not url.startswith("data:"):
            raise _bad(f"Failed to download image at messages[{m}].content[{p}]: only data URLs are reachable from "
                       "the sandbox", "image_download_failed")
        header, _, payload = url.partition(",")
        try:
            raw = base64.b64decode(payload, validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                img.verify()
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise _bad(f"Invalid image at messages[{m}].content[{p}]: {header} is not a decodable image",
                       "invalid_image") from exc
        return raw

    def _modalities(self, raw: Any, supported: tuple[str, ...]) -> tuple[str, ...]:
        if raw is None:
            return ("text",)
        if not isinstance(raw, list) or any(m not in ("image", "text", "audio") for m in raw):
            raise _bad(f"Invalid modalities: {raw!r}; expected a list of image, text, audio")
        if any(m not in supported for m in raw):
            raise OpenRouterError(404, "No endpoints found that support the requested output modalities: "
                                       + ", ".join(raw))
        return tuple(raw)

    def _image_config(self, model: str, raw: Any) -> tuple[str | None, str | None]:
        if raw is None:
            return None, None
        if not isinstance(raw, dict):
            raise _bad("image_config must be an object")
        ratio, tier = raw.get("aspect_ratio"), raw.get("image_size")
        if wire.is_gemini(model):
            gid = wire.gemini_id(model)
            tiers = [wire.IMAGE_SIZE_HALF if t == gemini_wire.IMAGE_SIZE_512 else t
                     for t in gemini_wire.image_sizes(gid)] or ["1K"]
            if ratio is not None and ratio not in gemini_wire.aspect_ratios(gid):
                raise self._upstream_invalid(f"Unsupported aspect ratio: {ratio}")
            if tier is not None and tier not in tiers:
                raise self._upstream_invalid(f"Unsupported image size: {tier}")
        return (str(ratio) if ratio else None), (str(tier) if tier else None)

    def _upstream_invalid(self, google_message: str) -> OpenRouterError:
        raw = json.dumps(gemini_wire.status_body(400, "INVALID_ARGUMENT", google_message))
        return OpenRouterError(400, "Provider returned error", {"raw": raw, "provider_name": "Google AI Studio"})

    def _platform_limit(self, wait_s: float) -> OpenRouterError:
        reset_ms = int((time.time() + self.sim.scaled(wait_s)) * 1000)
        limit = str(int(self.sim.profile.rpm or 20))
        limit_headers = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_ms)}
        return OpenRouterError.named("platform_rate_limited", {"headers": limit_headers},
                               headers={**limit_headers, "retry-after": str(max(1, round(wait_s)))})

    async def _early_fault(self, request: Request, plan: RequestPlan, call: Call) -> None:
        fault = plan.fault
        if fault == Fault.AUTH:
            raise OpenRouterError.named("user_not_found")
        if fault == Fault.RATE_LIMITED:
            raise OpenRouterError.named("upstream_rate_limited", {
                "raw": wire.UPSTREAM_RATE_LIMITED_RAW.format(model=call.model), "provider_name": call.provider,
                "error_type": "rate_limit_exceeded"}, headers={"retry-after": "12"})
        if fault == Fault.QUOTA_EXHAUSTED:
            raise OpenRouterError.named("insufficient_credits")
        if fault == Fault.INVALID_REQUEST:
            raise OpenRouterError.named("context_length", {"error_type": "context_length_exceeded"})
        if fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.latency_s, 0.5))
            raise OpenRouterError.named("moderation", {
                "reasons": ["violence"], "flagged_input": call.prompt[:100], "provider_name": call.provider,
                "model_slug": call.model}, model=call.model, provider=call.provider, reason="violence")
        if fault == Fault.SERVER_ERROR:
            await self.sim.sleep(plan.latency_s * 0.5)
            raise OpenRouterError.named("server")
        if fault == Fault.OVERLOADED:
            await self.sim.sleep(0.5)
            raw = json.dumps(gemini_wire.status_body(503, "UNAVAILABLE", gemini_wire.MESSAGES["overloaded"]))
            raise OpenRouterError.named("provider_unavailable", {"raw": raw, "provider_name": call.provider,
                                                           "error_type": "provider_unavailable"})
        if fault == Fault.TIMEOUT:
            await hang_until_disconnected(self.sim, request.receive)
            raise OpenRouterError.named("server")
        if fault == Fault.CONNECTION_RESET and not call.stream:
            await self.sim.sleep(plan.latency_s * 0.2)
            await abort_connection(request.scope)


    # ---- answers -----------------------------------------------------------------------------------------

    def _size(self, call: Call, plan: RequestPlan) -> tuple[int, int]:
        ratio = call.ratio or "1:1"
        if wire.is_gemini(call.model):
            gid = wire.gemini_id(call.model)
            if call.tier == wire.IMAGE_SIZE_HALF:
                w, h = gemini_wire.pixel_size(gid, ratio, "1K") or (1024, 1024)
                size = (w // 2, h // 2)
            else:
                size = gemini_wire.pixel_size(gid, ratio, call.tier) or (1024, 1024)
        else:
            size = gemini_wire.SIZES_25.get(ratio, (1024, 1024))
        if plan.fault == Fault.WRONG_SIZE:
            size = (size[0] // 2, size[1] // 2)
        return size

    async def _image_url(self, call: Call, plan: RequestPlan) -> str:
        thinking = wire.is_gemini(call.model) and gemini_wire.is_thinking_model(wire.gemini_id(call.model))
        pil_fmt, mime = ("JPEG", "image/jpeg") if thinking else ("PNG", "image/png")
        raw = await self.sim.images.render_async(call.model, call.prompt, call.seed, self._size(call, plan),
                                                 tuple(call.images), None, pil_fmt)
        if plan.fault == Fault.NOT_AN_IMAGE:
            raw = b"<html><body>upstream error</body></html>"
        encoded = self.sim.images.b64(raw)
        if plan.fault == Fault.CORRUPT_IMAGE:
            encoded = encoded[: len(encoded) // 2] + "!!*corrupt*!!"
        return f"data:{mime};base64,{encoded}"

    def _usage(self, call: Call, images: int, text: str) -> dict[str, Any]:
        prompt = _tokens(call.prompt) + INPUT_IMAGE_TOKENS * len(call.images)
        text_out = _tokens(text) if text else 0
        reasoning = 0
        if wire.is_gemini(call.model):
            gid = wire.gemini_id(call.model)
            family = gemini_wire.model_family(gid)
            tier = gemini_wire.IMAGE_SIZE_512 if call.tier == wire.IMAGE_SIZE_HALF else call.tier
            image_tokens = gemini_wire.image_tokens(gid, tier) * images
            reasoning = 180 if gemini_wire.is_thinking_model(gid) else 0
            cost = (prompt * wire.PROMPT_PRICE_PER_MTOK_USD[family]
                    + (image_tokens + text_out + reasoning) * wire.IMAGE_PRICE_PER_MTOK_USD[family]) / 1e6
        else:
            image_tokens = OTHER_IMAGE_TOKENS * images
            cost = OTHER_IMAGE_PRICE_USD * images
        completion = image_tokens + text_out + reasoning
        return {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "cost": round(cost, 8), "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "image_tokens": image_tokens},
            "cost_details": {"upstream_inference_cost": None, "upstream_inference_prompt_cost": 0.0,
                             "upstream_inference_completions_cost": round(cost, 8)},
        }

    async def _outcome(self, call: Call, plan: RequestPlan) -> tuple[str, list[str], str, str, dict[str, Any]]:
        """``(text, image URLs, finish_reason, native_finish_reason, usage)`` of the finished generation."""
        wants_text = "text" in call.modalities
        if plan.fault == Fault.REFUSED_OUTPUT:
            return "", [], "content_filter", "IMAGE_SAFETY", self._usage(call, 0, "")
        if plan.fault == Fault.NO_IMAGE or "image" not in call.modalities:
            text = "I can describe that scene instead: " + call.prompt[:120]
            return text, [], "stop", "STOP", self._usage(call, 0, text)
        text = OPENING if wants_text else ""
        return text, [await self._image_url(call, plan)], "stop", "STOP", self._usage(call, 1, text)

    def _completion(self, call: Call, text: str, urls: list[str], finish: str, native: str,
                    usage: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "reasoning": None}
        if urls:
            message["images"] = [{"type": "image_url", "image_url": {"url": u}, "index": i}
                                 for i, u in enumerate(urls)]
        return {"id": call.generation_id, "provider": call.provider, "model": call.model,
                "object": "chat.completion", "created": call.created,
                "choices": [{"logprobs": None, "finish_reason": finish, "native_finish_reason": native, "index": 0,
                             "message": message}],
                "usage": usage}

    def _mid_error(self, call: Call, obj: str) -> dict[str, Any]:
        error = wire.error_body(502, "Provider returned error", {"error_type": "provider_unavailable",
                                                                  "provider_code": "UNAVAILABLE",
                                                                  "provider_name": call.provider})["error"]
        key = "message" if obj == "chat.completion" else "delta"
        return {"id": call.generation_id, "object": obj, "created": call.created, "model": call.model,
                "provider": call.provider, "error": error,
                "choices": [{"index": 0, key: {"role": "assistant", "content": ""}, "finish_reason": "error",
                             "native_finish_reason": "error"}]}

    async def _unary(self, request: Request, call: Call, plan: RequestPlan, headers: dict[str, str]) -> Response:
        outcome = asyncio.create_task(self._outcome(call, plan))
        await self.sim.sleep(plan.latency_s)
        text, urls, finish, native, usage = await outcome
        if plan.fault == Fault.MID_STREAM_ERROR:
            return JSONResponse(self._mid_error(call, "chat.completion"), headers=headers)
        completion = self._completion(call, text, urls, finish, native, usage)
        data = await asyncio.to_thread(lambda: json.dumps(completion).encode())
        headers = {**headers, "content-length": str(len(data))}
        if plan.fault == Fault.TRUNCATED_BODY:
            return StreamingResponse(truncated(request.scope, data), media_type="application/json", headers=headers)
        seconds = body_seconds(plan)
        if seconds > 0:
            return StreamingResponse(drip(self.sim, data, seconds), media_type="application/json", headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    def _chunk(self, call: Call, delta: dict[str, Any], finish: str | None = None, native: str | None = None,
               usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": call.generation_id, "provider": call.provider, "model": call.model,
            "object": "chat.completion.chunk", "created": call.created,
            "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": finish,
                         "native_finish_reason": native, "logprobs": None}]}
        if usage is not None:
            chunk["usage"] = usage
        return encode_event(json.dumps(chunk, separators=(",", ":")))

    async def _wait(self, seconds: float) -> AsyncIterator[bytes]:
        """Sleep ``seconds`` of simulated time, sending a processing comment every interval."""
        while seconds > 0:
            step = min(seconds, PROCESSING_INTERVAL_S)
            await self.sim.sleep(step)
            seconds -= step
            if seconds > 0:
                yield encode_comment(wire.PROCESSING_COMMENT)

    async def _stream(self, request: Request, call: Call, plan: RequestPlan) -> AsyncIterator[bytes]:
        yield encode_comment(wire.PROCESSING_COMMENT)
        outcome = asyncio.create_task(self._outcome(call, plan))
        async for comment in self._wait(plan.first_event_s):
            yield comment
        if plan.fault == Fault.CONNECTION_RESET:
            await abort_connection(request.scope)
        wants_text = "text" in call.modalities
        if wants_text and plan.fault != Fault.REFUSED_OUTPUT:
            opening = OPENING
            if plan.fault == Fault.NO_IMAGE or "image" not in call.modalities:
                opening = (await outcome)[0]
            yield self._chunk(call, {"content": opening})
        async for comment in self._wait(plan.latency_s - plan.first_event_s):
            yield comment
        if plan.fault == Fault.MID_STREAM_ERROR:
            yield encode_event(json.dumps(self._mid_error(call, "chat.completion.chunk"), separators=(",", ":")))
            return
        _, urls, finish, native, usage = await outcome
        if urls:
            images = [{"type": "image_url", "image_url": {"url": u}, "index": i} for i, u in enumerate(urls)]
            image_chunk = await asyncio.to_thread(self._chunk, call, {"content": "", "images": images})
            if plan.fault == Fault.TRUNCATED_BODY:
                yield image_chunk[: len(image_chunk) // 2]
                await abort_connection(request.scope)
            async for piece in drip(self.sim, image_chunk, body_seconds(plan)):
                yield piece
        yield self._chunk(call, {"content": ""}, finish, native, usage)
        yield encode_event(wire.DONE)


def judge_answer(model: str, settings: JudgeSettings, text: str, labelled: list[tuple[str, bytes]]) -> str:
    """A simulated judge's answer to a request carrying ``text`` and ``labelled`` images (label = the text part
    right before each): the last two images are A and B, earlier ones the sources (one labelled as a mask is
    the inpainting mask); the request is the text's ``Request:`` line. Any sandbox protocol can answer with it
    (the Gemini sandbox's generateContent included)."""
    digest = hashlib.sha256(model.encode() + b"".join(hashlib.sha256(d).digest() for _, d in labelled))
    rng = random.Random(digest.digest())
    if len(labelled) < 2:
        return "I need two images to compare."
    request = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                    if line.lower().startswith("request:")), text)
    sources = [d for label, d in labelled[:-2] if "mask" not in label.lower()]
    mask = next((d for label, d in labelled[:-2] if "mask" in label.lower()), None)
    a, b = (imagery.read(d, request, tuple(sources), mask) for _, d in labelled[-2:])
    if rng.random() < settings.unparseable_rate:
        return "Both images have merits; it depends on what you value more."
    seen_a = a.quality + rng.gauss(0.0, settings.noise_sd) + settings.position_bias
    seen_b = b.quality + rng.gauss(0.0, settings.noise_sd)
    winner = "TIE" if abs(seen_a - seen_b) <= settings.tie_margin else ("A" if seen_a > seen_b else "B")
    return (f"Image A shows {a.found} of {a.total} requested elements, image B {b.found} of {b.total}."
            f"\nWINNER: {winner}")
