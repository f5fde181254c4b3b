"""Gemini API adapter (``generateContent`` and ``streamGenerateContent?alt=sse``)
(https://ai.google.dev/api/generate-content; wire facts in :mod:`harness.wire.gemini`).

* text-to-image: one user turn with the prompt as a text part; ``generationConfig.responseModalities``
  ``["TEXT", "IMAGE"]`` and ``imageConfig`` with ``aspectRatio`` and (Gemini 3 models only) ``imageSize``;
* edit / compose: each reference follows the prompt as an ``inlineData`` part (base64 without a data-URL
  prefix); inpaint: generateContent has no mask parameter, so the mask is sent as one more image after a text
  part saying that its white pixels mark the region to change;
* several images: the API rejects ``candidateCount > 1`` for image models, so ``n > 1`` sends ``n`` requests in
  parallel through the same timed client (with ``seed + i`` when a seed is given, so they differ); the attempt
  fails as soon as any of them fails;
* answers: images are the ``inlineData`` parts that are not ``thought: true`` (Gemini 3 models send thought
  text and interim thought images first); an HTTP 200 with ``promptFeedback.blockReason`` or a safety
  ``finishReason`` and no image is ``refused``, any other 200 without an image is ``no_image``; both are billed
  for the tokens ``usageMetadata`` reports.

What TTFB means here: for ``generateContent`` the response headers arrive only when the image is done, so
TTFB (headers received - request sent) is close to the whole generation time and the rest of the latency is
the multi-megabyte base64 body. For the streaming method TTFB is marked at the first ``data:`` event, which is
text or (Gemini 3) a thought, usually long before the image; the first interim thought image, if any, is
marked ``first_partial``. Neither is a time to the final image.

Conversations (multi-turn challenges): every turn sends the whole ``contents`` history, each earlier user turn
rebuilt exactly as it was sent and each model turn as Google returned it, part for part, including
``thoughtSignature`` and ``thought`` parts ("return the entire response with all thought signatures";
"signatures must be returned unchanged", https://ai.google.dev/gemini-api/docs/thought-signatures). A stream's
chunks are merged into one model turn of all their parts, in order. ``n`` must be 1 in a conversation.

Provider timings: Google's front end reports its own time for a unary request in ``Server-Timing: gfet4t7;
dur=<ms>``; it is kept as ``provider_timings["server_timing_ms"]`` (a list when ``n > 1``).

Retry hints: ``RetryInfo.retryDelay`` in the error details ("36s"), then ``Retry-After``, then "Please retry in
27.37s." in the message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.providers.base import (
    ChallengeKind,
    ErrorKind,
    Exchange,
    GenerationRequest,
    GenerationResult,
    InputImage,
    OutputImage,
    Provider,
    ProviderError,
)
from harness.providers.common import (
    b64,
    decode_b64_image,
    gather_all,
    json_or_none,
    parse_retry_after,
    parse_wxh,
    status_kind,
    trim,
)
from harness.timing import TimedHttp
from harness.wire import gemini as wire

MASK_INSTRUCTION = ("The next image is a mask for the first image: change only the region that is white in the "
                    "mask and keep everything else unchanged.")
GENERATION_OPTIONS = ("temperature", "topP", "topK", "maxOutputTokens", "thinkingConfig", "mediaResolution")
"""Target options passed through into ``generationConfig`` unchanged."""
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED",
                          "API_KEY_IP_ADDRESS_BLOCKED", "SERVICE_DISABLED", "CONSUMER_INVALID"})



# ---- request ---------------------------------------------------------------------------------------------




def image_config(model: str, request: GenerationRequest, default_size: str | None = None) -> tuple[str | None, str | None]:
    """``(aspectRatio, imageSize)`` to send for a request.

    ``request.size`` may be a tier (``1K``/``2K``/``4K``/``512``; OpenRouter's ``0.5K`` too) or a pixel size: an
    exact size of the model's grid selects its ratio and tier, any other ``WxH`` the nearest ratio and the
    smallest tier whose long edge reaches it. ``imageSize`` is never sent to 2.5 Flash Image, which rejects it.
    """
    ratio = request.aspect_ratio
    tier: str | None = None
    size = (request.size or default_size or "").strip()
    if size:
        upper = size.upper()
        if upper in wire.IMAGE_SIZES:
            tier = upper
        elif upper in (wire.IMAGE_SIZE_512, "0.5K"):
            tier = wire.IMAGE_SIZE_512
        elif (wxh := parse_wxh(size)) is not None:
            ratio, tier = _ratio_and_tier(model, wxh, ratio)
        else:
            raise ProviderError(ErrorKind.INVALID_REQUEST,
                                f"size {size!r} is neither WIDTHxHEIGHT nor one of the tiers 512, 1K, 2K, 4K")
    if not wire.takes_image_size(model):
        tier = None
    return ratio, tier


def _ratio_and_tier(model: str, wxh: tuple[int, int], ratio: str | None) -> tuple[str, str | None]:
    tiers: tuple[str | None, ...] = wire.IMAGE_SIZES if wire.takes_image_size(model) else (None,)
    for candidate in wire.aspect_ratios(model):
        for tier in tiers:
            if wire.pixel_size(model, candidate, tier) == wxh and ratio in (None, candidate):
                return candidate, tier
    chosen = ratio or wire.nearest_ratio(model, *wxh)
    for tier in tiers:
        size = wire.pixel_size(model, chosen, tier)
        if size is not None and max(size) >= max(wxh):
            return chosen, tier
    return chosen, tiers[-1]


def request_parts(request: GenerationRequest) -> list[dict[str, Any]]:
    """The user turn's parts: the prompt, then every reference, then (inpaint) the mask with its instruction."""
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    parts.extend(_inline(ref) for ref in request.references)
    if request.kind == ChallengeKind.INPAINT and request.mask is not None:
        parts.append({"text": MASK_INSTRUCTION})
        parts.append(_inline(request.mask))
    return parts


def user_content(prompt: str, references: Sequence[InputImage]) -> dict[str, Any]:
    """A user turn of a conversation: its instruction, then its images."""
    return {"role": "user", "parts": [{"text": prompt}, *(_inline(ref) for ref in references)]}


def history_contents(history: Sequence[Exchange]) -> list[dict[str, Any]]:
    """The ``contents`` of the earlier turns: each user turn as sent, each model turn verbatim."""
    contents: list[dict[str, Any]] = []
    for turn in history:
        contents.append(user_content(turn.prompt, turn.references))
        contents.append(dict(turn.reply))
    return contents


def _inline(image: InputImage) -> dict[str, Any]:
    return {"inlineData": {"mimeType": image.mime, "data": b64(image.data)}}


def build_body(request: GenerationRequest, options: Mapping[str, Any], seed: int | None,
               ratio: str | None, tier: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"responseModalities": list(options.get("response_modalities", ["TEXT", "IMAGE"]))}
    img: dict[str, Any] = {}
    if ratio:
        img["aspectRatio"] = ratio
    if tier:
        img["imageSize"] = tier
    if img:
        config["imageConfig"] = img
    if seed is not None:
        config["seed"] = seed
    for name in GENERATION_OPTIONS:
        if name in options:
            config[name] = options[name]
    body: dict[str, Any] = {"contents": [*history_contents(request.history),
                                         {"role": "user", "parts": request_parts(request)}],
                            "generationConfig": config}
    if "safetySettings" in options:
        body["safetySettings"] = options["safetySettings"]
    return body


# ---- errors ----------------------------------------------------------------------------------------------


def _details(err: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = err.get("details")
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def retry_delay(details: Sequence[Mapping[str, Any]]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail, if there is one."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(detail.get("retryDelay"), str):
            return wire.parse_duration(detail["retryDelay"])
    return None


def _quota_ids(details: Sequence[Mapping[str, Any]]) -> list[str]:
    ids: list[str] = []
    for detail in details:
        if str(detail.get("@type", "")).endswith("QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, Mapping):
                    ids.append(str(violation.get("quotaId", "")) + " " + str(violation.get("quotaMetric", "")))
    return ids


def _unwrap(body: Any) -> Any:
    """The SDK tolerates a one-element array around an error (Vertex, streaming); so do we."""
    if isinstance(body, list) and len(body) == 1:
        return body[0]
    return body


def classify_status(status: int, err: Mapping[str, Any], headers: Mapping[str, str],
                    raw: str | None = None) -> ProviderError:
    """Map a ``google.rpc.Status`` (``err`` is the object inside ``"error"``) to the taxonomy."""
    message = str(err.get("message") or raw or f"HTTP {status}")
    rpc_status = err.get("status")
    details = _details(err)
    reasons = [str(d["reason"]) for d in details if str(d.get("@type", "")).endswith("ErrorInfo") and d.get("reason")]
    kind = status_kind(status)
    if rpc_status in ("UNAUTHENTICATED", "PERMISSION_DENIED") or AUTH_REASONS.intersection(reasons):
        kind = ErrorKind.AUTH
    elif status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        per_day = any("PerDay" in q or "per_day" in q for q in _quota_ids(details))
        kind = ErrorKind.QUOTA_EXHAUSTED if per_day or "limit: 0," in message else ErrorKind.RATE_LIMITED
    elif rpc_status == "FAILED_PRECONDITION" and "billing" in message.lower():
        kind = ErrorKind.QUOTA_EXHAUSTED
    retry = None
    if kind in (ErrorKind.RATE_LIMITED, ErrorKind.QUOTA_EXHAUSTED, ErrorKind.SERVER_ERROR):
        retry = retry_delay(details)
        if retry is None:
            retry = parse_retry_after(headers, message)
    code = reasons[0] if reasons else (str(rpc_status) if rpc_status else None)
    return ProviderError(kind, trim(message), http_status=status, provider_code=code, retry_after_s=retry)


def classify(status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map an HTTP error response to the taxonomy, keeping Google's status name and message."""
    body = _unwrap(json_or_none(content))
    err = body.get("error") if isinstance(body, dict) else None
    raw = content.decode("utf-8", "replace").strip() if content else None
    return classify_status(status, err if isinstance(err, dict) else {}, headers, raw)


def _embedded_error(body: Mapping[str, Any], headers: Mapping[str, str], http_status: int,
                    request_id: str | None) -> ProviderError:
    """An error object written into a 200 answer: classified by its own code, recorded with the real status."""
    err = body["error"] if isinstance(body.get("error"), dict) else {"message": str(body.get("error"))}
    code = err.get("code")
    status = code if isinstance(code, int) else wire.STATUS_CODES.get(str(err.get("status")), 500)
    error = classify_status(status, err, headers)
    error.http_status = http_status
    error.request_id = request_id
    return error


# ---- answers ---------------------------------------------------------------------------------------------


def usage_of(meta: Any) -> dict[str, Any]:
    """``usageMetadata`` in the harness's usage keys; thinking tokens are billed as output, so they count there."""
    if not isinstance(meta, Mapping):
        return {}

    def by_modality(key: str, modality: str) -> int | None:
        items = meta.get(key)
        if not isinstance(items, list):
            return None
        counts = [int(i.get("tokenCount") or 0) for i in items if isinstance(i, Mapping) and i.get("modality") == modality]
        return sum(counts) if counts else None

    prompt = meta.get("promptTokenCount")
    candidates = meta.get("candidatesTokenCount")
    thoughts = meta.get("thoughtsTokenCount")
    output = None if candidates is None and thoughts is None else int(candidates or 0) + int(thoughts or 0)
    usage = {
        "input_tokens": prompt,
        "input_text_tokens": by_modality("promptTokensDetails", "TEXT"),
        "input_image_tokens": by_modality("promptTokensDetails", "IMAGE"),
        "output_tokens": output,
        "image_tokens": by_modality("candidatesTokensDetails", "IMAGE"),
        "thoughts_tokens": thoughts,
        "total_tokens": meta.get("totalTokenCount"),
    }
    return {k: v for k, v in usage.items() if v is not None}


def _billed(usage: Mapping[str, Any]) -> bool:
    return bool(usage.get("input_tokens") or usage.get("output_tokens"))


@dataclass
class Answer:
    """What one request's 200 answer (whole body, or every streamed chunk merged) carried."""

    images: list[OutputImage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    finish_message: str | None = None
    block_reason: str | None = None
    block_message: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    response_id: str | None = None
    candidates: int = 0
    server_timing_ms: float | None = None
    parts: list[Any] = field(default_factory=list)
    """Every part of ``candidates[0].content`` as received (thoughts and signatures included), in order."""
    role: str | None = None

    def add(self, chunk: Mapping[str, Any], where: str, http: TimedHttp | None = None) -> None:
        """Merge one ``GenerateContentResponse`` (a streamed chunk or the whole body)."""
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            self.block_reason = str(feedback["blockReason"])
            self.block_message = feedback.get("blockReasonMessage")
        if isinstance(chunk.get("usageMetadata"), Mapping):
            self.usage = usage_of(chunk["usageMetadata"])
        if chunk.get("responseId"):
            self.response_id = str(chunk["responseId"])
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            return
        self.candidates = max(self.candidates, len(candidates))
        cand = candidates[0]
        if not isinstance(cand, Mapping):
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"{where}: candidates[0] is not an object")
        if cand.get("finishReason"):
            self.finish_reason = str(cand["finishReason"])
            self.finish_message = cand.get("finishMessage")
        content = cand.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        if isinstance(content, Mapping) and content.get("role"):
            self.role = str(content["role"])
        if isinstance(parts, list):
            self.parts.extend(parts)
        for i, part in enumerate(parts if isinstance(parts, list) else []):
            if not isinstance(part, Mapping):
                continue
            inline = part.get("inlineData") or part.get("inline_data")
            if part.get("thought"):
                if inline and http is not None:
                    http.mark("first_partial")
                continue
            if isinstance(inline, Mapping):
                mime = inline.get("mimeType") or inline.get("mime_type")
                data = inline.get("data")
                if not isinstance(data, str):
                    raise ProviderError(ErrorKind.BAD_OUTPUT, f"{where}: parts[{i}].inlineData has no data")
                self.images.append(decode_b64_image(data, str(mime) if mime else None,
                                                    what=f"{where} parts[{i}].inlineData.data"))
            elif isinstance(part.get("text"), str):
                self.texts.append(part["text"])

    def failure(self) -> ProviderError | None:
        """The classified failure of an answer without an image, ``None`` when it has one."""
        if self.images:
            return None
        text = trim("".join(self.texts)) if self.texts else ""
        billed = _billed(self.usage)
        if self.block_reason and not self.candidates:
            message = f"prompt blocked ({self.block_reason})" + (f": {self.block_message}" if self.block_message else "")
            return ProviderError(ErrorKind.REFUSED, message, http_status=200, provider_code=self.block_reason,
                                 request_id=self.response_id, billed=billed, usage=self.usage)
        reason = self.finish_reason
        explanation = self.finish_message or text
        if reason in wire.SAFETY_FINISH_REASONS or self.block_reason:
            code = reason if reason in wire.SAFETY_FINISH_REASONS else self.block_reason
            message = f"output blocked ({code})" + (f": {explanation}" if explanation else "")
            return ProviderError(ErrorKind.REFUSED, trim(message), http_status=200, provider_code=code,
                                 request_id=self.response_id, billed=billed, usage=self.usage)
        message = f"200 answer without an image (finishReason {reason or 'absent'})"
        if explanation:
            message += f": {explanation}"
        return ProviderError(ErrorKind.NO_IMAGE, trim(message), http_status=200, provider_code=reason,
                             request_id=self.response_id, billed=billed, usage=self.usage)


def server_timing_ms(headers: Mapping[str, str]) -> float | None:
    """Google's front-end time for the request (``Server-Timing: gfet4t7; dur=7043``), in ms."""
    for entry in headers.get("server-timing", "").split(","):
        for param in entry.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


# ---- adapter ---------------------------------------------------------------------------------------------


def _merge(answers: Sequence[Answer]) -> tuple[list[OutputImage], dict[str, Any]]:
    images = [img for a in answers for img in a.images]
    usage: dict[str, Any] = {}
    for a in answers:
        for key, value in a.usage.items():
            usage[key] = usage.get(key, 0) + value
    return images, usage


class GeminiProvider(Provider):
    """Adapter for the Gemini API's ``models/{model}:generateContent`` and ``:streamGenerateContent``."""

    protocol = "gemini"
    credential_headers = (wire.API_KEY_HEADER,)
    multi_turn = True

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX

    def _url(self, model: str, stream: bool) -> str:
        version = str(self.options.get("api_version", wire.API_VERSION))
        path = wire.method_path(model, wire.STREAM if stream else wire.GENERATE, version)
        return self.base_url + path + ("?alt=sse" if stream else "")

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        options = {**self.options, **request.options}
        model = request.model_id
        ratio, tier = image_config(model, request, options.get("image_size"))
        expected = wire.pixel_size(model, ratio, tier) if ratio else None
        url = self._url(model, request.stream)
        headers = {wire.API_KEY_HEADER: self.api_key}
        if request.kind == ChallengeKind.MULTI_TURN and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
        bodies = [build_body(request, options, seed, ratio, tier) for seed in seeds]
        answers = await gather_all([self._one(url, body, headers, request.stream, http) for body in bodies])
        images, usage = _merge(answers)
        first = answers[0]
        reply = ({"role": first.role or "model", "parts": first.parts}
                 if request.kind == ChallengeKind.MULTI_TURN else None)
        texts = [t for a in answers for t in a.texts]
        timings = [a.server_timing_ms for a in answers if a.server_timing_ms is not None]
        provider_timings: dict[str, Any] = {}
        if timings:
            provider_timings["server_timing_ms"] = timings[0] if len(timings) == 1 else timings
        return GenerationResult(images=images, request_id=first.response_id, expected_size=expected, usage=usage,
                                provider_timings=provider_timings, text="".join(texts) or None,
                                finish_reason=first.finish_reason, reply=reply)

    async def _one(self, url: str, body: dict[str, Any], headers: dict[str, str], stream: bool,
                   http: TimedHttp) -> Answer:
        answer = Answer()
        if stream:
            await self._stream(url, body, headers, http, answer)
        else:
            response = await http.request("POST", url, label="generate", headers=headers, json=body)
            if response.status_code >= 400:
                raise classify(response.status_code, response.content, response.headers)
            parsed = _unwrap(json_or_none(response.content))
            if not isinstance(parsed, dict):
                raise ProviderError(ErrorKind.BAD_OUTPUT, "200 response is not a GenerateContentResponse JSON object",
                                    http_status=response.status_code)
            if "error" in parsed:
                raise _embedded_error(parsed, response.headers, response.status_code, None)
            answer.server_timing_ms = server_timing_ms(response.headers)
            answer.add(parsed, "response")
        failure = answer.failure()
        if failure is not None:
            raise failure
        return answer

    async def _stream(self, url: str, body: dict[str, Any], headers: dict[str, str], http: TimedHttp,
                      answer: Answer) -> None:
        async with http.stream("POST", url, label="generate", headers=headers, json=body) as response:
            if response.status_code >= 400:
                raise classify(response.status_code, await response.aread(), response.headers)
            index = 0
            async for payload, framed in stream_payloads(response.aiter_lines()):
                if framed:
                    http.mark("ttfb")
                chunk = _unwrap(json_or_none(payload.encode()))
                if not isinstance(chunk, dict):
                    raise ProviderError(ErrorKind.BAD_OUTPUT, f"stream chunk {index} is not a JSON object",
                                        http_status=response.status_code)
                if "error" in chunk:
                    raise _embedded_error(chunk, response.headers, response.status_code, answer.response_id)
                answer.add(chunk, f"stream chunk {index}", http)
                index += 1
        if index == 0:
            raise ProviderError(ErrorKind.NO_IMAGE, "stream ended without any chunk", http_status=200)


async def stream_payloads(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, bool]]:
    """JSON payloads of a Gemini stream, each with whether it came as an SSE ``data:`` event.

    Events are ``data:`` lines ended by a blank line (LF or CRLF); an error written into the stream after the
    200 arrives as a bare, possibly multi-line JSON object, collected until it parses.
    """
    data: list[str] = []
    raw: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
            continue
        if not line.strip():
            if data:
                yield "\n".join(data), True
                data = []
            continue
        if line.startswith(":"):
            continue
        raw.append(line)
        text = "\n".join(raw)
        try:
            json.loads(text)
        except ValueError:
            continue
        raw = []
        yield text, False
    if data:
        yield "\n".join(data), True
    if raw:
        yield "\n".join(raw), False
