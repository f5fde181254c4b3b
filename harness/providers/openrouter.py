"""OpenRouter adapter: chat completions with ``modalities`` for image output
(https://openrouter.ai/docs/features/multimodal/image-generation; wire facts in :mod:`harness.wire.openrouter`).

* text-to-image: one user message with the prompt, ``modalities`` ``["image", "text"]`` (``["image"]`` for
  image-only models; the target option ``modalities`` overrides), ``image_config`` with ``aspect_ratio`` and
  ``image_size`` (Gemini 3 tiers; ``0.5K`` is the 512 tier), ``seed``;
* edit / compose: the references follow the prompt as ``image_url`` content parts holding data URLs; inpaint:
  there is no mask parameter, so the mask is one more image after a text part saying what it marks;
* several images: chat completions have no ``n`` for images, so ``n > 1`` sends ``n`` requests in parallel
  (``seed + i`` when a seed is given) through the same timed client;
* answers: images are ``message.images[].image_url.url`` (or ``delta.images`` when streaming), data URLs
  decoded in place or https URLs downloaded inside the timed region; ``finish_reason: content_filter`` (or a
  ``refusal``) without images is ``refused``, any other answer without images ``no_image``; ``usage.cost`` is
  the provider-reported cost in USD; the request id is ``X-Generation-Id``.
* errors keep OpenRouter's ``metadata.error_type`` (or the upstream ``provider_code``) as the provider code and
  are classified by the code embedded in the body, also when it arrives inside an HTTP 200 or as a stream
  chunk after the response started (then the attempt's HTTP status stays 200).

The same endpoint answers in text about images: :func:`judge_body` / :func:`chat_text` ask a chat model that
takes images (the pairwise judge, :mod:`harness.judge`), and :func:`input_modalities` reads the model list so
that a model that cannot see images is refused before anything is spent.

Conversations (multi-turn challenges): every turn sends the whole message history, each earlier user message
rebuilt exactly as it was sent and each assistant message as the API returned it (``content``, ``images`` with
their data URLs, ``reasoning_details`` and any other field, https://openrouter.ai/docs/features/multimodal/image-generation
and https://openrouter.ai/docs/use-cases/reasoning-tokens#preserving-reasoning-blocks). A stream's deltas are
merged into one assistant message: texts joined, images and reasoning details in order. ``n`` must be 1.

What TTFB means here: without streaming the headers come when the whole answer is ready, so TTFB is close to
the generation time. With ``stream: true`` OpenRouter answers 200 at once and sends ``: OPENROUTER PROCESSING``
comments while it waits; those are not a first byte of the answer, so TTFB is marked at the first ``data:``
chunk (usually the model's opening text; the image follows whole in a later chunk).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

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
    data_url,
    decode_data_url,
    download_image,
    gather_all,
    json_or_none,
    parse_retry_after,
    status_kind,
    trim,
)
from harness.providers.gemini import MASK_INSTRUCTION, image_config
from harness.timing import TimedHttp
from harness.wire import gemini as gemini_wire
from harness.wire import openrouter as wire

PASSTHROUGH_OPTIONS = ("provider", "temperature", "top_p", "max_tokens", "transforms", "reasoning", "user")
"""Target options sent unchanged in the request body (``provider`` is OpenRouter's routing object)."""


def default_modalities(model: str) -> list[str]:
    """Models that answer with text and images take both; image-only models (Flux …) take ``["image"]``."""
    if wire.is_gemini(model) or model.startswith("openai/"):
        return list(wire.MODALITIES_IMAGE_TEXT)
    return list(wire.MODALITIES_IMAGE_ONLY)


def sizing(request: GenerationRequest, default_size: str | None) -> tuple[str | None, str | None,
                                                                          tuple[int, int] | None]:
    """``(aspect_ratio, image_size, expected pixel size)``; sizes are known for Google's models only."""
    model = request.model_id
    if wire.is_gemini(model):
        gid = wire.gemini_id(model)
        ratio, tier = image_config(gid, request, default_size)
        expected = gemini_wire.pixel_size(gid, ratio, tier) if ratio else None
        if tier == gemini_wire.IMAGE_SIZE_512:
            tier = wire.IMAGE_SIZE_HALF
        return ratio, tier, expected
    size = (request.size or default_size or "").strip().upper()
    tier = size if size in (*wire.IMAGE_SIZES, wire.IMAGE_SIZE_HALF) else None
    return request.aspect_ratio, tier, None


def user_message(prompt: str, references: Sequence[InputImage]) -> dict[str, Any]:
    """A user message of a conversation: the instruction alone, or followed by its images as data URLs."""
    if not references:
        return {"role": "user", "content": prompt}
    return {"role": "user", "content": [{"type": "text", "text": prompt},
                                        *({"type": "image_url", "image_url": {"url": data_url(ref.data, ref.mime)}}
                                          for ref in references)]}


def history_messages(history: Sequence[Exchange]) -> list[dict[str, Any]]:
    """The messages of the earlier turns: each user message as sent, each assistant message verbatim."""
    messages: list[dict[str, Any]] = []
    for turn in history:
        messages.append(user_message(turn.prompt, turn.references))
        messages.append(dict(turn.reply))
    return messages


def build_body(request: GenerationRequest, options: Mapping[str, Any], seed: int | None, ratio: str | None,
               tier: str | None) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = request.prompt
    images = list(request.references)
    if images or request.mask is not None:
        parts: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        parts.extend({"type": "image_url", "image_url": {"url": data_url(ref.data, ref.mime)}} for ref in images)
        if request.kind == ChallengeKind.INPAINT and request.mask is not None:
            parts.append({"type": "text", "text": MASK_INSTRUCTION})
            parts.append({"type": "image_url", "image_url": {"url": data_url(request.mask.data, request.mask.mime)}})
        content = parts
    body: dict[str, Any] = {
        "model": request.model_id,
        "messages": [*history_messages(request.history), {"role": "user", "content": content}],
        "modalities": list(options.get("modalities", default_modalities(request.model_id))),
    }
    config: dict[str, Any] = dict(options.get("image_config", {}))
    if ratio:
        config["aspect_ratio"] = ratio
    if tier:
        config["image_size"] = tier
    if config:
        body["image_config"] = config
    if seed is not None:
        body["seed"] = seed
    if request.stream:
        body["stream"] = True
    for name in PASSTHROUGH_OPTIONS:
        if name in options:
            body[name] = options[name]
    return body


# ---- errors ----------------------------------------------------------------------------------------------


def _retry_hint(err: Mapping[str, Any], headers: Mapping[str, str], message: str) -> float | None:
    retry = parse_retry_after(headers, message)
    if retry is not None:
        return retry
    availability = err.get("availability")
    if isinstance(availability, Mapping) and isinstance(availability.get("retry_after"), (int, float)):
        return float(availability["retry_after"])
    metadata = err.get("metadata")
    limit_headers = metadata.get("headers") if isinstance(metadata, Mapping) else None
    reset = (limit_headers or {}).get("X-RateLimit-Reset") or headers.get("x-ratelimit-reset")
    try:
        return max(0.0, float(reset) / 1000.0 - time.time()) if reset else None
    except (TypeError, ValueError):
        return None


def classify_error(err: Mapping[str, Any], http_status: int, headers: Mapping[str, str]) -> ProviderError:
    """Map OpenRouter's error object (the value of ``"error"``) to the taxonomy.

    The embedded ``code`` (or ``http_status``) is the status the error stands for, which differs from the HTTP
    status when the error came inside a 200 body or a stream chunk.
    """
    code = err.get("code")
    effective = code if isinstance(code, int) else err.get("http_status")
    status = effective if isinstance(effective, int) else http_status
    raw_metadata = err.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    error_type = metadata.get("error_type") or err.get("error_type")
    message = str(err.get("message") or f"HTTP {status}")
    raw = metadata.get("raw")
    if raw and str(raw) not in message:
        message = f"{message}: {raw}"
    kind = status_kind(status)
    if status == 402 or error_type == "payment_required":
        kind = ErrorKind.QUOTA_EXHAUSTED
    elif error_type in wire.REFUSAL_ERROR_TYPES or (status == 403 and ("reasons" in metadata
                                                                       or "flagged_input" in metadata)):
        kind = ErrorKind.REFUSED
    elif status == 429 or error_type == "rate_limit_exceeded":
        kind = ErrorKind.QUOTA_EXHAUSTED if "per-day" in message else ErrorKind.RATE_LIMITED
    elif error_type == "authentication":
        kind = ErrorKind.AUTH
    retry = _retry_hint(err, headers, message) if kind.retryable or kind == ErrorKind.QUOTA_EXHAUSTED else None
    availability = err.get("availability")
    provider_code = (error_type or metadata.get("provider_code")
                     or (availability.get("code") if isinstance(availability, Mapping) else None)
                     or (str(code) if code is not None else None))
    return ProviderError(kind, trim(message), http_status=http_status,
                         provider_code=str(provider_code) if provider_code else None, retry_after_s=retry,
                         request_id=headers.get(wire.GENERATION_ID_HEADER))


def classify(status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map an HTTP error response to the taxonomy."""
    body = json_or_none(content)
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, Mapping):
        text = content.decode("utf-8", "replace").strip() if content else ""
        err = {"message": text or f"HTTP {status}"}
    return classify_error(err, status, headers)


# ---- answers ---------------------------------------------------------------------------------------------


def usage_of(raw: Any) -> dict[str, Any]:
    """``usage`` in the harness's keys; ``cost`` (USD charged) is kept so a billed failure can be priced."""
    if not isinstance(raw, Mapping):
        return {}
    completion = raw.get("completion_tokens_details") or {}
    prompt = raw.get("prompt_tokens_details") or {}
    usage = {
        "input_tokens": raw.get("prompt_tokens"),
        "input_image_tokens": prompt.get("image_tokens") if isinstance(prompt, Mapping) else None,
        "output_tokens": raw.get("completion_tokens"),
        "image_tokens": completion.get("image_tokens") if isinstance(completion, Mapping) else None,
        "reasoning_tokens": completion.get("reasoning_tokens") if isinstance(completion, Mapping) else None,
        "total_tokens": raw.get("total_tokens"),
        "cost": raw.get("cost"),
    }
    return {k: v for k, v in usage.items() if v is not None}


@dataclass
class Answer:
    """One request's answer: the whole message, or every streamed delta merged."""

    image_urls: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    refusal: str | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    generation_id: str | None = None
    message: dict[str, Any] | None = None
    """The assistant message as returned (a stream's deltas merged), for the next turn of a conversation."""

    def keep(self, message: Mapping[str, Any], delta: bool) -> None:
        """Keep ``message`` verbatim; a delta's text is appended and its lists extended."""
        if not delta or self.message is None:
            self.message = {"role": "assistant", **message} if delta else dict(message)
            if delta and not isinstance(self.message.get("content"), str):
                self.message["content"] = ""
            return
        for key, value in message.items():
            held = self.message.get(key)
            if key == "content" and isinstance(value, str):
                self.message["content"] = (held if isinstance(held, str) else "") + value
            elif isinstance(value, list) and isinstance(held, list):
                self.message[key] = [*held, *value]
            elif value is not None or key not in self.message:
                self.message[key] = value

    def add_message(self, message: Mapping[str, Any], where: str) -> None:
        images = message.get("images")
        for i, item in enumerate(images if isinstance(images, list) else []):
            url = _image_url(item)
            if url is None:
                raise ProviderError(ErrorKind.BAD_OUTPUT, f"{where}.images[{i}] has no image_url.url")
            self.image_urls.append(url)
        content = message.get("content")
        if isinstance(content, str) and content:
            self.texts.append(content)
        if message.get("refusal"):
            self.refusal = str(message["refusal"])

    def add_choice(self, choice: Mapping[str, Any]) -> None:
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        if choice.get("native_finish_reason"):
            self.native_finish_reason = str(choice["native_finish_reason"])

    def failure(self, http_status: int) -> ProviderError | None:
        if self.image_urls:
            return None
        cost = self.usage.get("cost")
        billed = isinstance(cost, (int, float)) and cost > 0
        text = trim(self.refusal or "".join(self.texts))
        native = self.native_finish_reason
        if self.finish_reason == "content_filter" or self.refusal:
            message = f"output blocked (finish_reason {self.finish_reason}, native {native})"
            return ProviderError(ErrorKind.REFUSED, trim(message + (f": {text}" if text else "")),
                                 http_status=http_status, provider_code=native or self.finish_reason,
                                 request_id=self.generation_id, billed=billed, usage=self.usage)
        if self.finish_reason == "error":
            return ProviderError(ErrorKind.SERVER_ERROR, f"generation ended with finish_reason error ({native})",
                                 http_status=http_status, provider_code=native, request_id=self.generation_id)
        message = f"answer without an image (finish_reason {self.finish_reason or 'absent'})"
        return ProviderError(ErrorKind.NO_IMAGE, trim(message + (f": {text}" if text else "")),
                             http_status=http_status, provider_code=native or self.finish_reason,
                             request_id=self.generation_id, billed=billed, usage=self.usage)


def _image_url(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    inner = item.get("image_url")
    url = inner.get("url") if isinstance(inner, Mapping) else inner
    return str(url) if isinstance(url, str) and url else None


def _first_choice(body: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    choices = body.get("choices")
    if choices is None or choices == []:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], Mapping):
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"{where}: choices is not a list of objects")
    return choices[0]


class OpenRouterProvider(Provider):
    """Adapter for OpenRouter's ``/api/v1/chat/completions`` with image output."""

    protocol = "openrouter"
    multi_turn = True

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        for option, header in wire.ATTRIBUTION_HEADERS.items():
            if self.options.get(option):
                headers[header] = str(self.options[option])
        return headers

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        options = {**self.options, **request.options}
        ratio, tier, expected = sizing(request, options.get("image_size"))
        if request.kind == ChallengeKind.MULTI_TURN and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
        bodies = [build_body(request, options, seed, ratio, tier) for seed in seeds]
        url = self.base_url + wire.COMPLETIONS_PATH
        answers = await gather_all([self._one(url, body, request.stream, http) for body in bodies])
        images = [img for a in answers for img in await self._images(a, http)]
        usage: dict[str, Any] = {}
        for a in answers:
            for key, value in a.usage.items():
                usage[key] = usage.get(key, 0) + value
        cost = usage.get("cost")
        first = answers[0]
        return GenerationResult(images=images, request_id=first.generation_id, expected_size=expected, usage=usage,
                                provider_cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
                                text="".join(t for a in answers for t in a.texts) or None,
                                finish_reason=first.native_finish_reason or first.finish_reason,
                                reply=first.message if request.kind == ChallengeKind.MULTI_TURN else None)

    async def _one(self, url: str, body: dict[str, Any], stream: bool, http: TimedHttp) -> Answer:
        if stream:
            return await self._stream(url, body, http)
        response = await http.request("POST", url, label="generate", headers=self._headers(), json=body)
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        parsed = json_or_none(response.content)
        if not isinstance(parsed, dict):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "200 response is not a chat completion JSON object",
                                http_status=response.status_code)
        answer = Answer(generation_id=response.headers.get(wire.GENERATION_ID_HEADER) or parsed.get("id"))
        self._absorb(parsed, answer, "response", response.status_code, response.headers)
        failure = answer.failure(response.status_code)
        if failure is not None:
            raise failure
        return answer

    def _absorb(self, body: Mapping[str, Any], answer: Answer, where: str, status: int,
                headers: Mapping[str, str]) -> None:
        """Merge a completion or a chunk into ``answer``; an embedded error fails the attempt."""
        if isinstance(body.get("error"), Mapping):
            error = classify_error(body["error"], status, headers)
            error.request_id = error.request_id or answer.generation_id
            raise error
        if isinstance(body.get("usage"), Mapping):
            answer.usage = usage_of(body["usage"])
        choice = _first_choice(body, where)
        if choice is None:
            return
        if isinstance(choice.get("error"), Mapping):
            raise classify_error(choice["error"], status, headers)
        message = choice.get("message") if "message" in choice else choice.get("delta")
        if isinstance(message, Mapping):
            answer.add_message(message, f"{where}.choices[0]")
            answer.keep(message, delta="message" not in choice)
        answer.add_choice(choice)

    async def _stream(self, url: str, body: dict[str, Any], http: TimedHttp) -> Answer:
        async with http.stream("POST", url, label="generate", headers=self._headers(), json=body) as response:
            if response.status_code >= 400:
                raise classify(response.status_code, await response.aread(), response.headers)
            answer = Answer(generation_id=response.headers.get(wire.GENERATION_ID_HEADER))
            index = 0
            done = False
            async for event in response.aiter_sse():
                http.mark("ttfb")
                if event.data.strip() == wire.DONE:
                    done = True
                    break
                chunk = json_or_none(event.data.encode())
                if not isinstance(chunk, dict):
                    raise ProviderError(ErrorKind.BAD_OUTPUT, f"stream chunk {index} is not a JSON object",
                                        http_status=response.status_code)
                answer.generation_id = answer.generation_id or chunk.get("id")
                self._absorb(chunk, answer, f"stream chunk {index}", response.status_code, response.headers)
                index += 1
        failure = answer.failure(response.status_code)
        if failure is not None and not done and failure.kind == ErrorKind.NO_IMAGE:
            raise ProviderError(ErrorKind.NO_IMAGE, f"stream ended after {index} chunk(s) without [DONE] or an image",
                                http_status=response.status_code, request_id=answer.generation_id)
        if failure is not None:
            raise failure
        return answer

    async def _images(self, answer: Answer, http: TimedHttp) -> list[OutputImage]:
        for i, url in enumerate(answer.image_urls):
            if not url.startswith(("data:", "https://", "http://")):
                raise ProviderError(ErrorKind.BAD_OUTPUT, f"images[{i}].image_url.url is neither a data nor an "
                                                          f"http(s) URL: {url[:40]!r}")
        downloads = iter(await gather_all([self._download(http, url) for url in answer.image_urls
                                           if not url.startswith("data:")]))
        return [decode_data_url(url, what=f"images[{i}].image_url.url") if url.startswith("data:") else next(downloads)
                for i, url in enumerate(answer.image_urls)]

    async def _download(self, http: TimedHttp, url: str) -> OutputImage:
        return await download_image(http, url, self.policy, what="image")


# ---- chat with image input (the judge) --------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledImage:
    """An image shown to a chat model after a text label (``"Image A:"``)."""

    label: str
    data: bytes
    mime: str


@dataclass(frozen=True)
class ChatReply:
    """A text answer: ``text`` (the assistant message's content), ``cost_usd`` as reported (``usage.cost``),
    the generation id, the harness's usage keys."""

    text: str
    cost_usd: float | None
    generation_id: str | None
    usage: dict[str, Any]


def judge_body(model: str, instruction: str, images: Sequence[LabelledImage],
               max_tokens: int = wire.JUDGE_MAX_TOKENS) -> dict[str, Any]:
    """A chat request for a text answer about images: the instruction, then each image after its label."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": instruction}]
    for image in images:
        parts.append({"type": "text", "text": image.label})
        parts.append({"type": "image_url", "image_url": {"url": data_url(image.data, image.mime)}})
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens,
            "temperature": 0}


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def input_modalities(client: httpx.AsyncClient, base_url: str, api_key: str | None,
                           model: str) -> tuple[str, ...] | None:
    """What ``model`` takes as input per the model list (``None`` when the list does not name it)."""
    response = await client.get(base_url.rstrip("/") + wire.MODELS_PATH, headers=_auth(api_key))
    if response.status_code >= 400:
        raise classify(response.status_code, response.content, response.headers)
    body = json_or_none(response.content)
    data = body.get("data") if isinstance(body, dict) else None
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, Mapping) and entry.get("id") == model:
            arch = entry.get("architecture")
            found = arch.get("input_modalities") if isinstance(arch, Mapping) else None
            return tuple(str(m) for m in found) if isinstance(found, list) else ()
    return None


async def chat_text(client: httpx.AsyncClient, base_url: str, api_key: str | None,
                    body: Mapping[str, Any]) -> ChatReply:
    """Send one chat completion and return its text answer; an error answer raises :class:`ProviderError`."""
    response = await client.post(base_url.rstrip("/") + wire.COMPLETIONS_PATH, headers=_auth(api_key), json=body)
    if response.status_code >= 400:
        raise classify(response.status_code, response.content, response.headers)
    parsed = json_or_none(response.content)
    if not isinstance(parsed, dict):
        raise ProviderError(ErrorKind.BAD_OUTPUT, "200 response is not a chat completion JSON object",
                            http_status=response.status_code)
    if isinstance(parsed.get("error"), Mapping):
        raise classify_error(parsed["error"], response.status_code, response.headers)
    choice = _first_choice(parsed, "response")
    message = choice.get("message") if choice is not None else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    usage = usage_of(parsed.get("usage"))
    cost = usage.get("cost")
    return ChatReply(text=content if isinstance(content, str) else "",
                     cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
                     generation_id=response.headers.get(wire.GENERATION_ID_HEADER) or parsed.get("id"), usage=usage)
