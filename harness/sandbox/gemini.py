"""Simulated Gemini API (protocol facts in :mod:`harness.wire.gemini`): generateContent,
streamGenerateContent (SSE with CRLF framing, or the JSON-array form without ``alt=sse``), Google's error
envelope, and HTTP-200 safety blocks.

Faithful enough that the official ``google-genai`` SDK works against it unchanged but for ``base_url``:
``genai.Client(api_key=..., http_options=types.HttpOptions(base_url=<root>/gemini))``.

Gemini 3 models think first: their streams and bodies carry a ``thought: true`` text part and an interim
``thought: true`` image before the final image, as the real models do.

Conversations: a request's ``contents`` may hold earlier model turns. Their answer images count as input (drawn
from and billed as input tokens, as the real API bills a conversation's history). A Gemini 3 model signs each
answer image (``thoughtSignature``, verifiable by this server) and refuses a history whose answer image has lost
its signature with Google's error: 400 ``INVALID_ARGUMENT`` "Image part is missing a thought_signature in content
position 2, part position 1." (reported for gemini-3-pro-image-preview,
https://github.com/suurt8ll/open_webui_functions/issues/225; positions are 1-based), or whose signature was
altered ("Corrupted thought signature.": an assumption, no public sample). Google's documented placeholder
``skip_thought_signature_validator`` passes (https://ai.google.dev/gemini-api/docs/thought-signatures). A request
body over 20 MB is refused as Google's front end does: "Request payload size exceeds the limit: 20971520 bytes."
(the same message with Google's older 4 MB limit:
https://github.com/google-gemini/deprecated-generative-ai-android/issues/26).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.sandbox.faults import Fault
from harness.sandbox.openrouter import JudgeSettings
from harness.sandbox.simulation import (
    RequestPlan,
    SimulatedProvider,
    abort_connection,
    body_seconds,
    drip,
    hang_until_disconnected,
    truncated,
)
from harness.sse import encode_event
from harness.wire import gemini as wire

if TYPE_CHECKING:
    from harness.sandbox.gemini_batch import GeminiBatchRoutes

KNOWN_MODELS = ("gemini-2.5-flash-image", "gemini-2.5-flash-image-preview", "gemini-3-pro-image-preview",
                "gemini-3.1-flash-image-preview")
VERSIONS = ("v1beta", "v1", "v1alpha")
MODALITIES = ("TEXT", "IMAGE", "AUDIO")
"""Simulated seconds a request hangs under the ``timeout`` fault (clients time out first)."""
INPUT_IMAGE_TOKENS = {"gemini-2.5": 258, "gemini-3-pro": 560, "gemini-3.1-flash": 560}
"""Prompt tokens per input image (2.5: 258 per image up to 384 px, documented; Gemini 3 at the default media
resolution: an assumption)."""
JUDGES: dict[str, JudgeSettings] = {
    "gemini-2.5-flash": JudgeSettings(noise_sd=0.15, position_bias=0.05),
    "gemini-2.5-pro": JudgeSettings(noise_sd=0.1, position_bias=0.03),
}
"""Text models of the Gemini API that judge pairs of images (``harness judge RUN --judge gemini-2.5-flash@google``
on a sandboxed run); their noise and position bias are assumptions, as the OpenRouter sandbox's judges'."""
JUDGE_LATENCY_S = 3.0
"""Simulated seconds a judge takes to answer."""
JUDGE_IMAGE_TOKENS = 258
"""Prompt tokens per image a judge is shown (Gemini 2.5: 258 per image up to 384 px, documented)."""
THOUGHT_TOKENS = 180
OPENING = "Here is the image you asked for."
"""The short text Gemini 2.5 puts before its image when TEXT is among the response modalities."""
GFE_HEADER = "server-timing"
MAX_REQUEST_BYTES = 20 * 1024 * 1024
"""Largest request body the Gemini API takes with inline data (https://ai.google.dev/gemini-api/docs/image-understanding)."""
SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented placeholder that passes signature validation."""
URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
"""Protobuf JSON ``bytes`` accept standard and URL-safe base64, padded or not (the SDK sends URL-safe)."""


class GeminiError(Exception):
    """An error answer in Google's ``google.rpc.Status`` envelope."""

    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = wire.STATUS_CODES[status]
        self.body = wire.status_body(self.code, status, message, details)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.code, headers=self.headers)


@dataclass
class Call:
    """A validated request: what to draw and how to answer."""

    model: str
    method: str
    sse: bool
    prompt: str
    images: list[bytes]
    ratio: str
    tier: str | None
    seed: int | None
    wants_image: bool
    wants_text: bool
    response_id: str


def _response_id() -> str:
    return secrets.token_urlsafe(17)[:23]


def _key(request: Request) -> str:
    return request.headers.get(wire.API_KEY_HEADER) or request.query_params.get(wire.API_KEY_QUERY) or ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dumps(body: dict[str, Any], indent: int | None = None) -> bytes:
    """JSON bytes of a (multi-megabyte) answer; called in a worker thread so the server loop keeps its timing."""
    return json.dumps(body, indent=indent).encode()


def _text_tokens(text: str) -> int:
    return max(1, len(text.split()) * 4 // 3)


class GeminiServer:
    """Routes and behaviour of the simulated Gemini API."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim
        self.signing_key = secrets.token_bytes(32)

    def sign(self) -> str:
        """An opaque signature this server can verify later (a nonce and its HMAC)."""
        nonce = secrets.token_bytes(16)
        return base64.b64encode(nonce + hmac.new(self.signing_key, nonce, hashlib.sha256).digest()).decode()

    def verify(self, signature: str) -> bool:
        if signature == SKIP_SIGNATURE:
            return True
        try:
            raw = base64.b64decode(str(signature).translate(URLSAFE_TO_STANDARD) + "==", validate=False)
        except (binascii.Error, ValueError):
            return False
        nonce, mac = raw[:16], raw[16:48]
        return len(raw) == 48 and hmac.compare_digest(mac, hmac.new(self.signing_key, nonce, hashlib.sha256).digest())

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{version}/models/{target}", self.handle, methods=["POST"]),
                                 Route("/{version}/models/{target}", self.model_info, methods=["GET"]),
                                 *self.batch.routes()])

    # ---- judges (text models that look at images) ---------------------------------------------------------

    async def model_info(self, request: Request) -> Response:
        """``GET models/{model}``: the model's name and methods (what a judge backend checks before asking)."""
        problem = self.key_problem(request)
        if problem is not None:
            return problem.response()
        model = str(request.path_params["target"]).removeprefix("models/")
        if model not in KNOWN_MODELS and model not in JUDGES:
            return GeminiError("NOT_FOUND", f"models/{model} is not found for API version "
                                            f"{request.path_params['version']}").response()
        methods = [wire.GENERATE, wire.STREAM] + ([wire.BATCH_GENERATE] if model in KNOWN_MODELS else [])
        return JSONResponse({"name": f"models/{model}", "displayName": model,
                             "supportedGenerationMethods": methods})

    async def _judge(self, request: Request, model: str) -> Response:
        """A judge's answer to ``generateContent``: which of the last two images is better, read from their
        pixels (:func:`harness.sandbox.openrouter.judge_answer`); each image's label is the text part before it."""
        from harness.sandbox.openrouter import judge_answer

        problem = self.key_problem(request)
        if problem is not None:
            return problem.response()
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return GeminiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}").response()
        texts: list[str] = []
        labelled: list[tuple[str, bytes]] = []
        contents = body.get("contents") if isinstance(body, dict) else None
        try:
            for c, content in enumerate(contents if isinstance(contents, list) else []):
                for p, part in enumerate((content or {}).get("parts") or [] if isinstance(content, dict) else []):
                    if not isinstance(part, dict):
                        continue
                    inline = part.get("inlineData") or part.get("inline_data")
                    if isinstance(part.get("text"), str):
                        texts.append(part["text"])
                    elif isinstance(inline, dict):
                        labelled.append((texts[-1] if texts else "", self._decode_inline(inline, c, p)))
        except GeminiError as err:
            return err.response()
        if not texts and not labelled:
            return GeminiError("INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not "
                                                   "specified\n").response()
        answer = await asyncio.to_thread(judge_answer, model, JUDGES[model], "\n".join(texts), labelled)
        await self.sim.sleep(JUDGE_LATENCY_S)
        prompt = sum(_text_tokens(t) for t in texts) + JUDGE_IMAGE_TOKENS * len(labelled)
        output = _text_tokens(answer)
        return JSONResponse({
            "candidates": [{"content": {"role": "model", "parts": [{"text": answer}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": output,
                              "totalTokenCount": prompt + output},
            "modelVersion": model, "responseId": _response_id()})

    @property
    def batch(self) -> GeminiBatchRoutes:
        """Batch Mode's endpoints (:mod:`harness.sandbox.gemini_batch`), made on first use."""
        routes = self.__dict__.get("_batch")
        if routes is None:
            from harness.sandbox.gemini_batch import GeminiBatchRoutes

            routes = self.__dict__["_batch"] = GeminiBatchRoutes(self)
        return routes

    def key_problem(self, request: Request) -> GeminiError | None:
        """The error for a request whose key is missing or wrong (no rate limit: batch calls have their own)."""
        state = self.sim.check_key(_key(request))
        if state == "missing":
            return GeminiError("PERMISSION_DENIED", wire.MESSAGES["missing_key"])
        if state == "invalid":
            return GeminiError("INVALID_ARGUMENT", wire.MESSAGES["api_key_invalid"], [wire.error_info("API_KEY_INVALID")])
        return None

    async def answer(self, call: Call, plan: RequestPlan) -> tuple[dict[str, Any] | None, GeminiError | None]:
        """What ``generateContent`` would answer ``call`` (a batch line): its response body, or its error."""
        if plan.fault in (Fault.SERVER_ERROR, Fault.MID_STREAM_ERROR, Fault.TIMEOUT, Fault.CONNECTION_RESET,
                          Fault.TRUNCATED_BODY):
            return None, GeminiError("INTERNAL", wire.MESSAGES["internal"])
        if plan.fault == Fault.OVERLOADED:
            return None, GeminiError("UNAVAILABLE", wire.MESSAGES["overloaded"])
        if plan.fault == Fault.INVALID_REQUEST:
            return None, GeminiError("INVALID_ARGUMENT", wire.MESSAGES["payload_too_large"])
        if plan.fault == Fault.REFUSED:
            usage = {"promptTokenCount": _text_tokens(call.prompt), "totalTokenCount": _text_tokens(call.prompt)}
            return self._envelope(call, None, usage, {"blockReason": "PROHIBITED_CONTENT"}), None
        candidate, usage = await self._final(call, plan, text_sent=False)
        if wire.is_thinking_model(call.model):
            candidate["content"]["parts"] = await self._thought_parts(call) + candidate["content"]["parts"]
        return self._envelope(call, candidate, usage), None

    # ---- request validation ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if str(request.path_params["target"]).endswith(":" + wire.BATCH_GENERATE):
            return await self.batch.create(request)
        model, _, method = str(request.path_params["target"]).rpartition(":")
        if model.removeprefix("models/") in JUDGES and method == wire.GENERATE:
            return await self._judge(request, model.removeprefix("models/"))
        start = time.monotonic()
        try:
            call = await self._validate(request)
        except GeminiError as err:
            return err.response()
        plan = self.sim.plan(call.model, request.headers, call.prompt)
        try:
            await self._early_fault(request, plan, call)
        except GeminiError as err:
            return err.response()
        if call.method == wire.STREAM:
            media = "text/event-stream" if call.sse else "application/json; charset=UTF-8"
            return StreamingResponse(self._stream(request, call, plan), media_type=media,
                                     headers={"x-content-type-options": "nosniff"})
        return await self._unary(request, call, plan, start)

    async def _validate(self, request: Request) -> Call:
        version = request.path_params["version"]
        model, _, method = str(request.path_params["target"]).rpartition(":")
        if version not in VERSIONS or method not in (wire.GENERATE, wire.STREAM) or not model:
            raise GeminiError("NOT_FOUND", f"Method not found: {request.url.path}")
        state = self.sim.check_key(_key(request))
        if state == "missing":
            raise GeminiError("PERMISSION_DENIED", wire.MESSAGES["missing_key"])
        if state == "invalid":
            raise GeminiError("INVALID_ARGUMENT", wire.MESSAGES["api_key_invalid"], [
                wire.error_info("API_KEY_INVALID"),
                {"@type": wire.TYPE_PREFIX + "LocalizedMessage", "locale": "en-US",
                 "message": wire.MESSAGES["api_key_invalid"]}])
        wait = self.sim.rate_limited(f"{_key(request)}\x00{model}")  # Gemini quotas are per project *per model*
        if wait is not None:
            raise self._quota_error(model, max(1.0, wait), per_day=False, limit=int(self.sim.profile.rpm or 0))
        raw_body = await request.body()
        if len(raw_body) > MAX_REQUEST_BYTES:
            raise GeminiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        try:
            body = json.loads(raw_body)
        except ValueError as exc:
            raise GeminiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from exc
        if not isinstance(body, dict):
            raise GeminiError("INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
        return self.call_from_body(model, method, version, request.query_params.get("alt") == "sse", body)

    def call_from_body(self, model: str, method: str, version: str, sse: bool, body: dict[str, Any]) -> Call:
        """The validated call of a ``GenerateContentRequest`` body to ``model`` (a request's, or a batch line's);
        :class:`GeminiError` with Google's message when it is not valid."""
        if model not in KNOWN_MODELS:
            raise GeminiError("NOT_FOUND", wire.MESSAGES["model_not_found"].format(model=model, version=version,
                                                                                   method=method))
        prompt, images = self._contents(body.get("contents"))
        images += self._history(model, body.get("contents"))
        config = body.get("generationConfig") or body.get("generation_config") or {}
        if not isinstance(config, dict):
            raise GeminiError("INVALID_ARGUMENT", "Invalid value at 'generation_config': expected an object.")
        count = config.get("candidateCount", config.get("candidate_count", 1))
        if isinstance(count, int) and count > 1:
            raise GeminiError("INVALID_ARGUMENT", wire.MESSAGES["multiple_candidates"].format(model=model))
        modalities = self._modalities(config)
        ratio, tier = self._image_config(model, config, images)
        seed = config.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise GeminiError("INVALID_ARGUMENT", f"Invalid value at 'generation_config.seed' (TYPE_INT32), {seed!r}")
        return Call(model=model, method=method, sse=sse, prompt=prompt,
                    images=images, ratio=ratio, tier=tier, seed=seed, wants_image="IMAGE" in modalities,
                    wants_text="TEXT" in modalities or not modalities, response_id=_response_id())

    def _contents(self, contents: Any) -> tuple[str, list[bytes]]:
        if not isinstance(contents, list) or not contents:
            raise GeminiError("INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n")
        texts: list[str] = []
        images: list[bytes] = []
        for c, content in enumerate(contents):
            if not isinstance(content, dict) or content.get("role", "user") != "user":
                continue
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                raise GeminiError("INVALID_ARGUMENT",
                                  f"* GenerateContentRequest.contents[{c}].parts: contents.parts must not be empty.\n")
            for p, part in enumerate(parts):
                if not isinstance(part, dict):
                    continue
                inline = part.get("inlineData") or part.get("inline_data")
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(inline, dict):
                    images.append(self._decode_inline(inline, c, p))
        if not texts and not images:
            raise GeminiError("INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n")
        return "\n".join(texts), images

    def _history(self, model: str, contents: Any) -> list[bytes]:
        """The answer images of the earlier model turns (input to this turn); on Gemini 3 models each must keep
        the signature this server gave it."""
        images: list[bytes] = []
        for c, content in enumerate(contents if isinstance(contents, list) else []):
            if not isinstance(content, dict) or content.get("role") != "model":
                continue
            for p, part in enumerate(content.get("parts") or []):
                if not isinstance(part, dict) or part.get("thought"):
                    continue
                inline = part.get("inlineData") or part.get("inline_data")
                if not isinstance(inline, dict):
                    continue
                if wire.is_thinking_model(model):
                    signature = part.get("thoughtSignature") or part.get("thought_signature")
                    if not signature:
                        raise GeminiError("INVALID_ARGUMENT", f"Image part is missing a thought_signature in content "
                                                              f"position {c + 1}, part position {p + 1}.")
                    if not self.verify(str(signature)):
                        raise GeminiError("INVALID_ARGUMENT", "Corrupted thought signature.")
                images.append(self._decode_inline(inline, c, p))
        return images

    def _decode_inline(self, inline: dict[str, Any], c: int, p: int) -> bytes:
        data = inline.get("data")
        where = f"contents[{c}].parts[{p}].inline_data.data"
        text = str(data).translate(URLSAFE_TO_STANDARD)
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            shown = str(data)[:20]
            raise GeminiError("INVALID_ARGUMENT", f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed "
                                                  f"for \"{shown}\"") from exc
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise GeminiError("INVALID_ARGUMENT", wire.MESSAGES["bad_image"]) from exc
        return raw

    def _modalities(self, config: dict[str, Any]) -> list[str]:
        raw = config.get("responseModalities", config.get("response_modalities", ["TEXT", "IMAGE"]))
        if not isinstance(raw, list):
            raise GeminiError("INVALID_ARGUMENT", "Invalid value at 'generation_config.response_modalities': "
                                                  "expected a list.")
        modalities = []
        for i, value in enumerate(raw):
            name = str(value).upper()
            if name not in MODALITIES:
                raise GeminiError("INVALID_ARGUMENT", f"Invalid value at 'generation_config.response_modalities[{i}]' "
                                                      f"(type.googleapis.com/google.ai.generativelanguage.{wire.API_VERSION}."
                                                      f"GenerationConfig.Modality), \"{value}\"")
            modalities.append(name)
        return modalities

    def _image_config(self, model: str, config: dict[str, Any], images: list[bytes]) -> tuple[str, str | None]:
        img = config.get("imageConfig") or config.get("image_config") or {}
        if not isinstance(img, dict):
            raise GeminiError("INVALID_ARGUMENT", "Invalid value at 'generation_config.image_config': expected an "
                                                  "object.")
        ratio = img.get("aspectRatio", img.get("aspect_ratio"))
        tier = img.get("imageSize", img.get("image_size"))
        if ratio is not None and ratio not in wire.aspect_ratios(model):
            raise GeminiError("INVALID_ARGUMENT", f"Unsupported aspect ratio: {ratio}. Supported aspect ratios for "
                                                  f"models/{model} are: {', '.join(wire.aspect_ratios(model))}.")
        if tier is not None and not wire.takes_image_size(model):
            raise GeminiError("INVALID_ARGUMENT", f"Image size is not supported for models/{model}.")
        if tier is not None and tier not in wire.image_sizes(model):
            raise GeminiError("INVALID_ARGUMENT", f"Unsupported image size: {tier}. Supported image sizes for "
                                                  f"models/{model} are: {', '.join(wire.image_sizes(model))}.")
        if ratio is None:
            if images:
                with Image.open(io.BytesIO(images[-1])) as last:
                    ratio = wire.nearest_ratio(model, *last.size)
            else:
                ratio = "1:1"
        return str(ratio), (str(tier) if tier is not None else None)

    def _quota_error(self, model: str, wait_s: float, per_day: bool, limit: int) -> GeminiError:
        retry = round(wait_s, 2)
        quota_id = wire.QUOTA_PER_DAY if per_day else wire.QUOTA_PER_MINUTE
        metric = ("generativelanguage.googleapis.com/generate_content_paid_tier_requests"
                  + ("_per_day" if per_day else ""))
        message = wire.MESSAGES["quota_day" if per_day else "quota_minute"].format(limit=limit, model=model,
                                                                                    retry=retry)
        return GeminiError("RESOURCE_EXHAUSTED", message, [
            wire.quota_failure(quota_id, model, metric), wire.help_links(), wire.retry_info(int(wait_s) or 1)])

    async def _early_fault(self, request: Request, plan: RequestPlan, call: Call) -> None:
        """Faults answered with an HTTP error before any content (streaming or not)."""
        fault = plan.fault
        if fault == Fault.AUTH:
            raise GeminiError("INVALID_ARGUMENT", wire.MESSAGES["api_key_invalid"],
                              [wire.error_info("API_KEY_INVALID")])
        if fault == Fault.RATE_LIMITED:
            raise self._quota_error(call.model, 36.0, per_day=False, limit=10)
        if fault == Fault.QUOTA_EXHAUSTED:
            raise self._quota_error(call.model, 27.37, per_day=True, limit=2000)
        if fault == Fault.INVALID_REQUEST:
            raise GeminiError("INVALID_ARGUMENT", wire.MESSAGES["payload_too_large"])
        if fault == Fault.SERVER_ERROR:
            await self.sim.sleep(plan.latency_s * 0.5)
            raise GeminiError("INTERNAL", wire.MESSAGES["internal"])
        if fault == Fault.OVERLOADED:
            await self.sim.sleep(0.4)
            raise GeminiError("UNAVAILABLE", wire.MESSAGES["overloaded"])
        if fault == Fault.TIMEOUT:
            await hang_until_disconnected(self.sim, request.receive)
            raise GeminiError("DEADLINE_EXCEEDED", wire.MESSAGES["deadline"])
        if fault == Fault.CONNECTION_RESET and call.method == wire.GENERATE:
            await self.sim.sleep(plan.latency_s * 0.2)
            await abort_connection(request.scope)


    # ---- answers -----------------------------------------------------------------------------------------

    def _size(self, call: Call, plan: RequestPlan) -> tuple[int, int]:
        if call.tier == wire.IMAGE_SIZE_512:
            w, h = wire.pixel_size(call.model, call.ratio, "1K") or (1024, 1024)
            size = (w // 2, h // 2)
        else:
            size = wire.pixel_size(call.model, call.ratio, call.tier) or (1024, 1024)
        if plan.fault == Fault.WRONG_SIZE:
            size = (size[0] // 2, size[1] // 2)
        return size

    def _fmt(self, call: Call) -> tuple[str, str]:
        return ("JPEG", "image/jpeg") if wire.is_thinking_model(call.model) else ("PNG", "image/png")

    async def _image_part(self, call: Call, plan: RequestPlan) -> dict[str, Any]:
        pil_fmt, mime = self._fmt(call)
        raw = await self.sim.images.render_async(call.model, call.prompt, call.seed, self._size(call, plan),
                                                 tuple(call.images), None, pil_fmt)
        if plan.fault == Fault.NOT_AN_IMAGE:
            raw = b"<html><body>upstream error</body></html>"
        encoded = self.sim.images.b64(raw)
        if plan.fault == Fault.CORRUPT_IMAGE:
            encoded = encoded[: len(encoded) // 2] + "!!*corrupt*!!"
        part: dict[str, Any] = {"inlineData": {"mimeType": mime, "data": encoded}}
        if wire.is_thinking_model(call.model):
            part["thoughtSignature"] = self.sign()
        return part

    async def _thought_parts(self, call: Call) -> list[dict[str, Any]]:
        pil_fmt, mime = self._fmt(call)
        w, h = wire.pixel_size(call.model, call.ratio, "1K") or (1024, 1024)
        draft = await self.sim.images.render_async(call.model, "draft: " + call.prompt, call.seed,
                                                   (max(64, w // 4), max(64, h // 4)), tuple(call.images), None,
                                                   pil_fmt)
        return [
            {"text": "**Composing the scene**\n\nI'm laying out the main subject and the light before drawing.",
             "thought": True},
            {"inlineData": {"mimeType": mime, "data": _b64(draft)}, "thought": True},
        ]

    def _usage(self, call: Call, images: int, text: str, thoughts: bool) -> dict[str, Any]:
        family = wire.model_family(call.model)
        prompt_text = _text_tokens(call.prompt)
        prompt_images = INPUT_IMAGE_TOKENS[family] * len(call.images)
        image_out = wire.image_tokens(call.model, call.tier) * images
        text_out = _text_tokens(text) if text else 0
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_text + prompt_images,
            "candidatesTokenCount": image_out + text_out,
            "totalTokenCount": prompt_text + prompt_images + image_out + text_out,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_text}]
            + ([{"modality": "IMAGE", "tokenCount": prompt_images}] if prompt_images else []),
        }
        details = [{"modality": "IMAGE", "tokenCount": image_out}] if image_out else []
        if text_out:
            details.append({"modality": "TEXT", "tokenCount": text_out})
        if details:
            usage["candidatesTokensDetails"] = details
        if thoughts:
            usage["thoughtsTokenCount"] = THOUGHT_TOKENS
            usage["totalTokenCount"] += THOUGHT_TOKENS
        return usage

    def _envelope(self, call: Call, candidate: dict[str, Any] | None, usage: dict[str, Any],
                  feedback: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if candidate is not None:
            body["candidates"] = [{**candidate, "index": 0}]
        if feedback is not None:
            body["promptFeedback"] = feedback
        body.update({"usageMetadata": usage, "modelVersion": call.model, "responseId": call.response_id})
        return body

    def _opening(self, call: Call, plan: RequestPlan) -> str:
        """The text Gemini 2.5 writes for this request: a line before its image, or its whole text-only answer."""
        if plan.fault == Fault.NO_IMAGE:
            return "I can describe that scene instead: " + call.prompt[:120]
        if not call.wants_image:
            return "Here is a description of the requested picture: " + call.prompt[:120]
        return OPENING if call.wants_text and not wire.is_thinking_model(call.model) else ""

    async def _final(self, call: Call, plan: RequestPlan, text_sent: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """The final candidate and usage (what a unary body or the last chunk carries); ``text_sent``: the
        opening text already went out in an earlier chunk."""
        thinking = wire.is_thinking_model(call.model)
        text = self._opening(call, plan)
        parts: list[dict[str, Any]] = [{"text": text}] if text and not text_sent else []
        if plan.fault == Fault.REFUSED_OUTPUT:
            return {"content": {"role": "model", "parts": parts}, "finishReason": "IMAGE_SAFETY",
                    "finishMessage": "Unable to show the generated image. The image was filtered out because it "
                                     "violated Google's Generative AI Prohibited Use policy."}, \
                self._usage(call, 0, text, thinking)
        if plan.fault == Fault.NO_IMAGE or not call.wants_image:
            return {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}, \
                self._usage(call, 0, text, thinking)
        parts.append(await self._image_part(call, plan))
        return {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}, \
            self._usage(call, 1, text, thinking)

    async def _unary(self, request: Request, call: Call, plan: RequestPlan, start: float) -> Response:
        if plan.fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.latency_s, 1.5))
            usage = {"promptTokenCount": _text_tokens(call.prompt), "totalTokenCount": _text_tokens(call.prompt)}
            return JSONResponse(self._envelope(call, None, usage, {"blockReason": "PROHIBITED_CONTENT"}))
        final = asyncio.create_task(self._final(call, plan, text_sent=False))
        thoughts = asyncio.create_task(self._thought_parts(call)) if wire.is_thinking_model(call.model) else None
        await self.sim.sleep(plan.latency_s)
        candidate, usage = await final
        if thoughts is not None:
            candidate["content"]["parts"] = await thoughts + candidate["content"]["parts"]
        if plan.fault == Fault.MID_STREAM_ERROR:
            return GeminiError("INTERNAL", wire.MESSAGES["internal"]).response()
        data = await asyncio.to_thread(_dumps, self._envelope(call, candidate, usage), 2)
        headers = {GFE_HEADER: f"gfet4t7; dur={round((time.monotonic() - start) * 1000)}",
                   "content-length": str(len(data))}
        if plan.fault == Fault.TRUNCATED_BODY:
            return StreamingResponse(truncated(request.scope, data), media_type="application/json; charset=UTF-8",
                                     headers=headers)
        seconds = body_seconds(plan)
        if seconds > 0:
            return StreamingResponse(drip(self.sim, data, seconds), media_type="application/json; charset=UTF-8",
                                     headers=headers)
        return Response(data, media_type="application/json; charset=UTF-8", headers=headers)

    def _frame(self, call: Call, chunk: dict[str, Any], first: bool) -> bytes:
        text = json.dumps(chunk, separators=(",", ":"))
        if call.sse:
            return encode_event(text, crlf=True)
        return (("[" if first else "\r\n,\r\n") + text).encode()

    async def _stream(self, request: Request, call: Call, plan: RequestPlan) -> AsyncIterator[bytes]:
        thinking = wire.is_thinking_model(call.model)
        prompt_only = {"promptTokenCount": _text_tokens(call.prompt) + INPUT_IMAGE_TOKENS[
            wire.model_family(call.model)] * len(call.images), "totalTokenCount": _text_tokens(call.prompt)}
        if plan.fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.latency_s, 1.5))
            yield self._frame(call, self._envelope(call, None, prompt_only, {"blockReason": "PROHIBITED_CONTENT"}),
                              True)
            if not call.sse:
                yield b"]"
            return
        opening = "" if thinking else self._opening(call, plan)
        final = asyncio.create_task(self._final(call, plan, text_sent=bool(opening)))
        thoughts = asyncio.create_task(self._thought_parts(call)) if thinking else None
        await self.sim.sleep(plan.first_event_s)
        if thoughts is not None:
            thought_text, thought_image = await thoughts
            yield self._frame(call, self._envelope(call, {"content": {"role": "model", "parts": [thought_text]}},
                                                   prompt_only), True)
            await self.sim.sleep((plan.latency_s - plan.first_event_s) / 2)
            yield self._frame(call, self._envelope(call, {"content": {"role": "model", "parts": [thought_image]}},
                                                   prompt_only), False)
            await self.sim.sleep((plan.latency_s - plan.first_event_s) / 2)
        else:
            if opening:
                first = {"content": {"role": "model", "parts": [{"text": opening}]}}
                yield self._frame(call, self._envelope(call, first, prompt_only), True)
            await self.sim.sleep(plan.latency_s - plan.first_event_s)
        if plan.fault == Fault.MID_STREAM_ERROR:
            error = wire.status_body(500, "INTERNAL", wire.MESSAGES["internal"])
            yield (("\r\n" if not call.sse else "") + json.dumps(error, indent=2) + "\r\n").encode()
            return
        if plan.fault == Fault.CONNECTION_RESET:
            await abort_connection(request.scope)
        candidate, usage = await final
        last = await asyncio.to_thread(self._frame, call, self._envelope(call, candidate, usage),
                                       not (thinking or opening))
        if plan.fault == Fault.TRUNCATED_BODY:
            yield last[: len(last) // 2]
            await abort_connection(request.scope)
        async for piece in drip(self.sim, last, body_seconds(plan)):
            yield piece
        if not call.sse:
            yield b"]"


