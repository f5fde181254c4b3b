"""OpenAI Responses API adapter with the image-generation tool (wire facts and sources in
:mod:`harness.wire.openai_responses`; https://platform.openai.com/docs/api-reference/responses/create,
https://developers.openai.com/api/docs/guides/image-generation).

* every request is ``POST {base}/responses`` with the target's ``model`` (a mainline model that calls the
  tool: gpt-4.1, gpt-5 …), one user message as ``input`` (an ``input_text`` part, then each reference as an
  ``input_image`` data URL), ``tools: [{"type": "image_generation", ...}]`` with the tool's own options
  (``image_model`` names the GPT Image model; ``size`` from the challenge; ``quality``, ``output_format`` …
  from the target) and ``tool_choice: {"type": "image_generation"}`` so the model draws instead of answering
  in text (target option ``tool_choice: auto`` leaves the choice to the model); inpaint sends the mask as the
  tool's ``input_image_mask`` (OpenAI's form: transparent where to repaint);
* conversations (multi-turn challenges): every turn is sent with ``store: true``; the first turn sends its
  instruction and starting images, each later turn only its own instruction and references with
  ``previous_response_id`` = the id of the turn before, which the API holds. The reply kept for the next turn
  (and stored with the attempt, so a resumed run continues the same server-side conversation) is
  ``{"id": <response id>, "model", "status", "output": [items without their base64], "images": [data URL]}``;
  the image's bytes are swapped for their SHA-256 in the store. A single request is sent with ``store: false``
  unless the target sets ``store``;
* ``stream: true``: SSE events; ``response.image_generation_call.partial_image`` marks ``ttfb`` and
  ``first_partial``, the terminal ``response.completed`` / ``failed`` / ``incomplete`` carries the whole
  response, which is read as a unary answer is;
* answers: the ``result`` (base64) of each ``image_generation_call`` item. A response with status ``failed``
  is classified by its ``error.code`` (safety codes ``refused``, ``server_error`` and ``rate_limit_exceeded``
  retryable, the rest ``invalid_request``); ``incomplete`` without an image is ``refused`` for
  ``content_filter``, else ``no_image``; a tool call that failed with ``moderation_blocked`` or a message with a
  ``refusal`` part is ``refused``; text without any image call is ``no_image``. All of these are billed for the
  tokens the response reports;
* usage: the image tool's tokens (``tool_usage.image_gen``, billed at the GPT Image model's prices) are the
  attempt's ``input_tokens`` / ``output_tokens``; the mainline model's own ``usage`` is kept as
  ``text_model_input_tokens`` / ``text_model_output_tokens``.

``n > 1`` sends ``n`` requests in parallel (the tool draws one image per call); a conversation turn asks for 1.
OpenAI's ``openai-processing-ms`` header is kept as ``provider_timings["processing_ms"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError
from harness.providers.base import (
    ChallengeKind,
    ErrorKind,
    Exchange,
    GenerationRequest,
    GenerationResult,
    OutputImage,
    Provider,
    ProviderError,
)
from harness.providers.chain import previous_output
from harness.providers.common import (
    data_url,
    decode_b64_image,
    gather_all,
    image_data_url,
    json_or_none,
    parse_wxh,
    trim,
)
from harness.providers.openai_images import choose_size, classify, mask_to_alpha_png
from harness.timing import TimedHttp
from harness.wire import openai_responses as wire

RESPONSE_OPTIONS = ("instructions", "reasoning", "max_output_tokens", "safety_identifier", "service_tier",
                    "text")
"""Target options copied into the request body unchanged."""
DEFAULT_PARTIAL_IMAGES = 2
LOST_CONVERSATION = ("resend", "fail")
"""Target option ``lost_conversation``: what a turn does when the API no longer holds the previous response."""
LOST_KEY = "previous_response"
RESENT = "not_found_resent_image"


# ---- request ---------------------------------------------------------------------------------------------


def tool_object(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``image_generation`` tool with this request's options."""
    tool: dict[str, Any] = {"type": wire.TOOL_TYPE}
    image_model = options.get("image_model")
    if image_model:
        tool["model"] = str(image_model)
    size = choose_size(str(image_model or "gpt-image-1"), request)
    if size:
        tool["size"] = size
    for name in wire.TOOL_OPTIONS:
        if name in options:
            tool[name] = options[name]
    if request.stream:
        tool["partial_images"] = int(options.get("partial_images", DEFAULT_PARTIAL_IMAGES))
    if request.kind == ChallengeKind.INPAINT and request.mask is not None:
        tool["input_image_mask"] = {"image_url": data_url(mask_to_alpha_png(request.mask), "image/png")}
    return tool


def user_message(request: GenerationRequest) -> dict[str, Any]:
    """The turn's user message: its instruction, then its images as data URLs."""
    content: list[dict[str, Any]] = [{"type": wire.INPUT_TEXT, "text": request.prompt}]
    content.extend({"type": wire.INPUT_IMAGE, "image_url": image_data_url(ref), "detail": wire.IMAGE_DETAIL}
                   for ref in request.references)
    return {"role": "user", "content": content}


def previous_response_id(history: Sequence[Exchange]) -> str | None:
    """The id of the conversation's last response, which the next turn continues; ``None`` on the first turn."""
    if not history:
        return None
    rid = history[-1].reply.get("id")
    if not isinstance(rid, str) or not rid:
        raise ConfigError("the previous turn's stored reply holds no response id to continue the conversation from")
    return rid


def request_body(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of one ``POST /responses``."""
    conversation = request.kind == ChallengeKind.MULTI_TURN
    body: dict[str, Any] = {"model": request.model_id, "input": [user_message(request)],
                            "tools": [tool_object(request, options)]}
    if str(options.get("tool_choice", "required")) != "auto":
        body["tool_choice"] = {"type": wire.TOOL_TYPE}
    body["store"] = True if conversation else bool(options.get("store", False))
    previous = previous_response_id(request.history)
    if previous is not None:
        body["previous_response_id"] = previous
    for name in RESPONSE_OPTIONS:
        if name in options:
            body[name] = options[name]
    if request.stream:
        body["stream"] = True
    return body


def resend_body(request: GenerationRequest, options: Mapping[str, Any], body: Mapping[str, Any],
                error: ProviderError) -> dict[str, Any] | None:
    """The body that continues a conversation whose previous response the API no longer holds, or ``None``
    when ``error`` is not that or the target says ``lost_conversation: fail``.

    Stored responses do not live for ever ("stored for at least 30 days",
    https://developers.openai.com/api/docs/guides/your-data#v1responses),
    and a sandbox restarted for ``--resume`` holds none: the turn is then sent once more without
    ``previous_response_id``, with the previous turn's stored answer image first among its inputs (what the
    chained edits of stateless protocols send, :mod:`harness.providers.chain`). The attempt records
    ``provider_timings["previous_response"] = "not_found_resent_image"``; its latency includes both requests."""
    lost = str(options.get("lost_conversation", "resend"))
    if lost not in LOST_CONVERSATION:
        raise ConfigError(f"target option lost_conversation must be one of {', '.join(LOST_CONVERSATION)}, "
                          f"got {lost!r}")
    if error.provider_code != wire.PREVIOUS_NOT_FOUND or not request.history or lost == "fail":
        return None
    image = previous_output(request.history, prefer_url=False)
    message = user_message(request)
    content = [message["content"][0], {"type": wire.INPUT_IMAGE, "image_url": image, "detail": wire.IMAGE_DETAIL},
               *message["content"][1:]]
    resent = {k: v for k, v in body.items() if k != "previous_response_id"}
    resent["input"] = [{"role": "user", "content": content}]
    return resent


# ---- answers ---------------------------------------------------------------------------------------------


def usage_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The image tool's tokens as the attempt's usage; the mainline model's tokens beside them."""
    usage: dict[str, Any] = {}
    tool_usage = body.get("tool_usage")
    image_gen = tool_usage.get("image_gen") if isinstance(tool_usage, Mapping) else None
    if isinstance(image_gen, Mapping):
        details = image_gen.get("input_tokens_details")
        details = details if isinstance(details, Mapping) else {}
        usage.update({"input_tokens": image_gen.get("input_tokens"),
                      "input_text_tokens": details.get("text_tokens"),
                      "input_image_tokens": details.get("image_tokens"),
                      "output_tokens": image_gen.get("output_tokens"),
                      "total_tokens": image_gen.get("total_tokens")})
    mainline = body.get("usage")
    if isinstance(mainline, Mapping):
        usage["text_model_input_tokens"] = mainline.get("input_tokens")
        usage["text_model_output_tokens"] = mainline.get("output_tokens")
    return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


def _mime(fmt: Any) -> str | None:
    return f"image/{fmt}" if isinstance(fmt, str) and fmt else None


@dataclass
class Answer:
    """What one response object carried."""

    response_id: str | None
    status: str | None
    images: list[OutputImage] = field(default_factory=list)
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    reply: dict[str, Any] = field(default_factory=dict)


def read_response(body: Any, request_id: str | None, http_status: int) -> Answer:
    """The images, texts and usage of a ``Response`` object; :class:`ProviderError` when it is not one."""
    if not isinstance(body, Mapping) or body.get("object", "response") != "response" \
            or not isinstance(body.get("output", []), list):
        raise ProviderError(ErrorKind.BAD_OUTPUT, "answer is not a Responses API `response` object",
                            http_status=http_status, request_id=request_id)
    rid = body.get("id")
    answer = Answer(str(rid) if rid else None, str(body.get("status") or "") or None, usage=usage_of(body))
    kept: list[dict[str, Any]] = []
    for i, item in enumerate(body.get("output") or []):
        if not isinstance(item, Mapping):
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"output[{i}] is not an object", request_id=request_id)
        if item.get("type") == wire.CALL_TYPE:
            answer.calls.append(item)
            result = item.get("result")
            if isinstance(result, str) and result:
                answer.images.append(decode_b64_image(result, _mime(item.get("output_format")) or "image/png",
                                                      what=f"output[{i}].result"))
                if isinstance(item.get("size"), str):
                    answer.size = parse_wxh(str(item["size"])) or answer.size
            kept.append({k: v for k, v in item.items() if k != "result"})
            continue
        if item.get("type") == wire.MESSAGE_TYPE:
            content = item.get("content")
            for part in content if isinstance(content, list) else []:
                if isinstance(part, Mapping) and part.get("type") == "refusal":
                    answer.refusals.append(str(part.get("refusal", "")))
                elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    answer.texts.append(str(part["text"]))
        kept.append(dict(item))
    answer.reply = {"id": answer.response_id, "object": "response", "model": body.get("model"),
                    "status": answer.status, "output": kept,
                    "images": [{"url": data_url(img.data, img.mime or "image/png")} for img in answer.images[:1]]}
    return answer


def failure(body: Mapping[str, Any], answer: Answer, request_id: str | None, http_status: int) -> ProviderError | None:
    """The classified failure of a response without an image; ``None`` when it has one."""
    if answer.images:
        return None
    billed = bool(answer.usage)
    common: dict[str, Any] = {"http_status": http_status, "request_id": request_id or answer.response_id,
                              "billed": billed, "usage": answer.usage}
    error = body.get("error")
    if answer.status == wire.STATUS_FAILED and isinstance(error, Mapping):
        code = str(error.get("code") or "failed")
        kind = ErrorKind(wire.RETRYABLE_CODES[code]) if code in wire.RETRYABLE_CODES else \
            ErrorKind.REFUSED if code in wire.REFUSAL_CODES else ErrorKind.INVALID_REQUEST
        return ProviderError(kind, trim(f"response failed ({code}): {error.get('message', '')}"),
                             provider_code=code, **common)
    for call in answer.calls:
        err = call.get("error")
        if isinstance(err, Mapping):
            code = str(err.get("code") or err.get("type") or "image_generation_failed")
            kind = ErrorKind.REFUSED if code in wire.REFUSAL_CODES else ErrorKind.SERVER_ERROR
            return ProviderError(kind, trim(f"image generation call failed ({code}): {err.get('message', '')}"),
                                 provider_code=code, **common)
    if answer.refusals:
        return ProviderError(ErrorKind.REFUSED, trim("model refused: " + " ".join(answer.refusals)),
                             provider_code="refusal", **common)
    if answer.status == wire.STATUS_INCOMPLETE:
        details = body.get("incomplete_details")
        reason = str(details.get("reason")) if isinstance(details, Mapping) else "unknown"
        kind = ErrorKind.REFUSED if reason == "content_filter" else ErrorKind.NO_IMAGE
        return ProviderError(kind, f"response incomplete ({reason}) without an image", provider_code=reason,
                             **common)
    text = trim(" ".join(answer.texts)) if answer.texts else ""
    failed_calls = [c for c in answer.calls if c.get("status") == "failed"]
    message = "response without an image" + (f" (status {answer.status})" if answer.status else "")
    return ProviderError(ErrorKind.SERVER_ERROR if failed_calls else ErrorKind.NO_IMAGE,
                         message + (f": {text}" if text else ""),
                         provider_code="image_generation_failed" if failed_calls else None, **common)


# ---- adapter ---------------------------------------------------------------------------------------------


class OpenAIResponsesProvider(Provider):
    """Adapter for ``POST /v1/responses`` with the ``image_generation`` tool (single requests and
    conversations continued by ``previous_response_id``)."""

    protocol = "openai-responses"
    multi_turn = True

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        for name in ("organization", "project"):
            if self.options.get(name):
                headers[f"OpenAI-{name.title()}"] = str(self.options[name])
        return headers

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        options = {**self.options, **request.options}
        if request.kind == ChallengeKind.MULTI_TURN and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        body = request_body(request, options)
        requested = body["tools"][0].get("size")
        expected = parse_wxh(requested) if isinstance(requested, str) else None
        url = self.base_url + wire.RESPONSES_PATH
        timings: dict[str, Any] = {}
        try:
            answers = await gather_all([self._one(url, body, request.stream, http) for _ in range(request.n)])
        except ProviderError as exc:
            fallback = resend_body(request, options, body, exc)
            if fallback is None:
                raise
            answers = [await self._one(url, fallback, request.stream, http)]
            timings[LOST_KEY] = RESENT
        first, request_id, processing = answers[0]
        images = [img for a, _, _ in answers for img in a.images]
        usage: dict[str, Any] = {}
        for a, _, _ in answers:
            for key, value in a.usage.items():
                usage[key] = usage.get(key, 0) + value
        if processing is not None:
            timings["processing_ms"] = processing
        return GenerationResult(images=images, request_id=first.response_id or request_id,
                                expected_size=first.size or expected, usage=usage, provider_timings=timings,
                                text=" ".join(first.texts) or None, finish_reason=first.status,
                                reply=first.reply if request.kind == ChallengeKind.MULTI_TURN else None)

    async def _one(self, url: str, body: dict[str, Any], stream: bool,
                   http: TimedHttp) -> tuple[Answer, str | None, float | None]:
        if stream:
            return await self._stream(url, body, http)
        response = await http.request("POST", url, label="generate", headers=self._headers(), json=body)
        request_id = response.headers.get(wire.REQUEST_ID_HEADER)
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        parsed = json_or_none(response.content)
        answer = read_response(parsed, request_id, response.status_code)
        problem = failure(parsed, answer, request_id, response.status_code)
        if problem is not None:
            raise problem
        return answer, request_id, _processing_ms(response.headers)

    async def _stream(self, url: str, body: dict[str, Any],
                      http: TimedHttp) -> tuple[Answer, str | None, float | None]:
        final: Mapping[str, Any] | None = None
        async with http.stream("POST", url, label="generate", headers=self._headers(), json=body) as stream:
            request_id = stream.headers.get(wire.REQUEST_ID_HEADER)
            if stream.status_code >= 400:
                raise classify(stream.status_code, await stream.aread(), stream.headers)
            status = stream.status_code
            processing = _processing_ms(stream.headers)
            async for event in stream.aiter_sse():
                payload = json_or_none(event.data.encode())
                if not isinstance(payload, dict):
                    raise ProviderError(ErrorKind.BAD_OUTPUT, f"stream event {event.event!r} is not JSON",
                                        request_id=request_id)
                kind = payload.get("type")
                if kind == wire.EVENT_PARTIAL:
                    http.mark("ttfb")
                    http.mark("first_partial")
                elif kind == wire.EVENT_ERROR:
                    raise _stream_error(payload, status, request_id)
                elif kind in wire.TERMINAL_EVENTS and isinstance(payload.get("response"), Mapping):
                    http.mark("ttfb")
                    final = payload["response"]
                    break
        if final is None:
            raise ProviderError(ErrorKind.CONNECTION, "stream ended before its terminal response event",
                                http_status=status, request_id=request_id)
        answer = read_response(final, request_id, status)
        problem = failure(final, answer, request_id, status)
        if problem is not None:
            raise problem
        return answer, request_id, processing


def _stream_error(payload: Mapping[str, Any], status: int, request_id: str | None) -> ProviderError:
    """An ``error`` event: ``{"type": "error", "code", "message", "param"}`` (older streams nest it in ``error``)."""
    nested = payload.get("error")
    err: Mapping[str, Any] = nested if isinstance(nested, Mapping) else payload
    code = str(err.get("code") or err.get("type") or "stream_error")
    kind = ErrorKind.REFUSED if code in wire.REFUSAL_CODES else \
        ErrorKind(wire.RETRYABLE_CODES.get(code, "server_error"))
    return ProviderError(kind, trim(str(err.get("message") or "error event in stream")), http_status=status,
                         provider_code=code, request_id=request_id)


def _processing_ms(headers: Mapping[str, str]) -> float | None:
    raw = headers.get(wire.PROCESSING_MS_HEADER)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None

