"""OpenAI Images adapter (also the protocol of OpenAI-compatible gateways)
(https://platform.openai.com/docs/api-reference/images; wire facts in :mod:`harness.wire.openai_images`).

* text-to-image: ``POST {base}/images/generations`` with JSON;
* edit / compose / inpaint: ``POST {base}/images/edits`` as multipart with one ``image[]`` part per
  reference and, for inpaint, a ``mask`` PNG whose fully transparent pixels mark the region to repaint
  (converted from the suite's white-means-repaint mask);
* ``stream: true``: SSE ``*.partial_image`` events then ``*.completed``; TTFB is the first partial image
  (the first meaningful bytes), marked as ``ttfb`` and ``first_partial``;
* outputs as ``b64_json`` or ``url`` (downloaded inside the timed region).

Multi-turn challenges (target option ``conversation: chained-edits``): the Images API keeps no conversation,
so turn *k* is an ``/images/edits`` request uploading turn *k-1*'s output first, then the turn's own
references (:mod:`harness.providers.chain`); a first turn without starting images is a plain generation.
Without the option, multi-turn challenges are refused as on any protocol that keeps no conversation.

The Images API has no seed parameter; a challenge's seed is not sent. Sizes map from the requested aspect
ratio to the nearest of the model's sizes unless the challenge gives an exact ``WxH`` size.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from PIL import Image

from harness.errors import ConfigError
from harness.providers.base import (
    ChallengeKind,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    InputImage,
    OutputImage,
    Provider,
    ProviderError,
)
from harness.providers.chain import chained_reply, is_chained_edit, previous_output_bytes
from harness.providers.common import (
    decode_b64_image,
    download_image,
    gather_all,
    json_or_none,
    parse_retry_after,
    status_kind,
    trim,
)
from harness.timing import TimedHttp, TimedResponse
from harness.wire import openai_images as wire

PASSTHROUGH_OPTIONS = ("quality", "background", "output_format", "output_compression", "moderation",
                       "input_fidelity", "style", "user")
CONVERSATION_OPTION = "conversation"
CHAINED_EDITS = "chained-edits"
"""Value of the target option ``conversation`` that runs multi-turn challenges as chained edits."""


def conversation_mode(options: Mapping[str, Any]) -> str | None:
    """The target's ``conversation`` option (``None`` when unset); a clear error for anything else."""
    value = options.get(CONVERSATION_OPTION)
    if value is None:
        return None
    if value != CHAINED_EDITS:
        raise ConfigError(f"target option {CONVERSATION_OPTION} must be {CHAINED_EDITS!r} on the openai-images "
                          f"protocol, got {value!r}")
    return CHAINED_EDITS


def edit_files(request: GenerationRequest) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart image parts of an edit: for a conversation turn the previous turn's output first (so
    "the image" the instruction speaks of is the one being refined), then the request's references."""
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    if request.kind == ChallengeKind.MULTI_TURN:
        previous = previous_output_bytes(request.history)
        if previous is not None:
            data, mime = previous
            ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
            files.append(("image[]", (f"turn-{len(request.history)}.{ext}", data, mime)))
    files.extend(("image[]", (ref.name, ref.data, ref.mime)) for ref in request.references)
    return files


def mask_to_alpha_png(mask: InputImage) -> bytes:
    """Convert a white-means-repaint mask into OpenAI's form: RGBA, transparent where to repaint."""
    with Image.open(io.BytesIO(mask.data)) as img:
        grey = img.convert("L")
    alpha = grey.point(lambda v: 255 - v)
    rgba = Image.new("RGBA", grey.size, (0, 0, 0, 255))
    rgba.putalpha(alpha)
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    return out.getvalue()


def choose_size(model: str, request: GenerationRequest) -> str | None:
    """The ``size`` to send: an exact supported ``WxH``, else the nearest for the aspect ratio."""
    sizes = wire.valid_sizes(model)
    if request.size and request.size in sizes:
        return request.size
    if request.aspect_ratio and wire.is_gpt_image(model):
        return wire.ASPECT_TO_SIZE.get(request.aspect_ratio, "auto")
    if request.size and "x" in request.size:
        return request.size
    return None


def classify(status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map an error response to the taxonomy, keeping OpenAI's own code and message."""
    body = json_or_none(content)
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    message = str(err.get("message") or (content.decode("utf-8", "replace") if content else f"HTTP {status}"))
    code = err.get("code")
    type_ = err.get("type")
    provider_code = str(code) if code is not None else (str(type_) if type_ else None)
    kind = status_kind(status)
    if code in ("moderation_blocked", "content_policy_violation") or type_ == "image_generation_user_error":
        kind = ErrorKind.REFUSED
    elif status == 429 and (code == "insufficient_quota" or type_ == "insufficient_quota"):
        kind = ErrorKind.QUOTA_EXHAUSTED
    retry = parse_retry_after(headers, message) if kind in (ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR) else None
    return ProviderError(kind, trim(message), http_status=status, provider_code=provider_code,
                         retry_after_s=retry, request_id=headers.get(wire.REQUEST_ID_HEADER))


def _usage(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    details = raw.get("input_tokens_details") or {}
    usage = {
        "input_tokens": raw.get("input_tokens"),
        "input_text_tokens": details.get("text_tokens"),
        "input_image_tokens": details.get("image_tokens"),
        "output_tokens": raw.get("output_tokens"),
        "total_tokens": raw.get("total_tokens"),
    }
    return {k: v for k, v in usage.items() if v is not None}


class OpenAIImagesProvider(Provider):
    """Adapter for ``/v1/images/generations`` and ``/v1/images/edits``."""

    protocol = "openai-images"

    @classmethod
    def keeps_conversation(cls, options: Mapping[str, Any]) -> bool:
        """Only with target option ``conversation: chained-edits`` (see the module docstring)."""
        return conversation_mode(options) == CHAINED_EDITS

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        for name in ("organization", "project"):
            if self.options.get(name):
                headers[f"OpenAI-{name.title()}"] = str(self.options[name])
        return headers

    def _fields(self, request: GenerationRequest) -> dict[str, Any]:
        model = request.model_id
        fields: dict[str, Any] = {"model": model, "prompt": request.prompt, "n": request.n}
        size = choose_size(model, request)
        if size:
            fields["size"] = size
        options = {**self.options, **request.options}
        for name in PASSTHROUGH_OPTIONS:
            if name in options:
                fields[name] = options[name]
        if not wire.is_gpt_image(model):
            fields["response_format"] = options.get("response_format", "b64_json")
        if request.stream:
            fields["stream"] = True
            fields["partial_images"] = int(options.get("partial_images", 2))
        return fields

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of a text-to-image request, as sent to ``/images/generations`` (a batch line's
        ``body``: never streamed)."""
        return self._fields(request)

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        fields = self._fields(request)
        chained = request.kind == ChallengeKind.MULTI_TURN
        if chained and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        edit = is_chained_edit(request) if chained else request.kind != ChallengeKind.TEXT_TO_IMAGE
        endpoint = "edits" if edit else "generations"
        url = self.base_url + (wire.EDITS_PATH if edit else wire.GENERATIONS_PATH)
        kwargs: dict[str, Any]
        if edit:
            files = edit_files(request)
            if request.mask is not None:
                files.append(("mask", ("mask.png", mask_to_alpha_png(request.mask), "image/png")))
            data = {k: ("true" if v is True else str(v)) for k, v in fields.items()}
            kwargs = {"files": files, "data": data}
        else:
            kwargs = {"json": fields}
        expected = wire.pixel_size(fields["size"]) if "size" in fields else None
        if request.stream:
            result = await self._stream(url, endpoint, kwargs, http, expected, request.n)
        else:
            response = await http.request("POST", url, label="generate", headers=self._headers(), **kwargs)
            if response.status_code >= 400:
                raise classify(response.status_code, response.content, response.headers)
            result = await self._parse(response, http, expected, request.n)
        if chained:
            result.reply = chained_reply(result.images)
        return result

    async def _parse(self, response: TimedResponse, http: TimedHttp, expected: tuple[int, int] | None,
                     n: int) -> GenerationResult:
        request_id = response.headers.get(wire.REQUEST_ID_HEADER)
        body = json_or_none(response.content)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "response is not an Images API JSON object with `data`",
                                http_status=response.status_code, request_id=request_id)
        fmt = body.get("output_format")
        items = body["data"]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ProviderError(ErrorKind.BAD_OUTPUT, f"data[{i}] is not an object", request_id=request_id)
        downloads = iter(await gather_all([self._download(http, str(item["url"])) for item in items
                                           if not item.get("b64_json") and item.get("url")]))
        images: list[OutputImage] = []
        for i, item in enumerate(items):
            if item.get("b64_json"):
                images.append(decode_b64_image(item["b64_json"], f"image/{fmt}" if fmt else None,
                                               what=f"data[{i}].b64_json"))
            elif item.get("url"):
                images.append(next(downloads))
        if not images:
            raise ProviderError(ErrorKind.NO_IMAGE, "200 response without any image", request_id=request_id,
                                http_status=response.status_code, billed=True, usage=_usage(body.get("usage")))
        if body.get("size") and body["size"] != "auto":
            expected = wire.pixel_size(str(body["size"])) or expected
        return GenerationResult(images=images, request_id=request_id, expected_size=expected,
                                usage=_usage(body.get("usage")),
                                provider_timings=_processing(response.headers))

    async def _download(self, http: TimedHttp, url: str) -> OutputImage:
        return await download_image(http, url, self.policy, what="image")

    async def _stream(self, url: str, endpoint: str, kwargs: dict[str, Any], http: TimedHttp,
                      expected: tuple[int, int] | None, n: int) -> GenerationResult:
        partial_event = wire.EVENT_PARTIAL[endpoint]
        completed_event = wire.EVENT_COMPLETED[endpoint]
        images: list[OutputImage] = []
        usage: dict[str, Any] = {}
        async with http.stream("POST", url, label="generate", headers=self._headers(), **kwargs) as stream:
            request_id = stream.headers.get(wire.REQUEST_ID_HEADER)
            if stream.status_code >= 400:
                raise classify(stream.status_code, await stream.aread(), stream.headers)
            async for event in stream.aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                payload = json_or_none(event.data.encode())
                if not isinstance(payload, dict):
                    raise ProviderError(ErrorKind.BAD_OUTPUT, f"stream event {event.event!r} is not JSON",
                                        request_id=request_id)
                if isinstance(payload.get("error"), dict):
                    err = payload["error"]
                    code = str(err.get("code") or err.get("type") or "stream_error")
                    kind = ErrorKind.REFUSED if code in ("moderation_blocked", "content_policy_violation") \
                        else ErrorKind.SERVER_ERROR
                    raise ProviderError(kind, trim(str(err.get("message", "error event in stream"))),
                                        http_status=stream.status_code, provider_code=code,
                                        request_id=request_id)
                kind_ = payload.get("type")
                if kind_ == partial_event:
                    http.mark("ttfb")
                    http.mark("first_partial")
                elif kind_ == completed_event:
                    http.mark("ttfb")
                    fmt = payload.get("output_format")
                    images.append(decode_b64_image(str(payload.get("b64_json", "")),
                                                   f"image/{fmt}" if fmt else None, what="completed.b64_json"))
                    usage = _usage(payload.get("usage"))
                    if payload.get("size") and payload["size"] != "auto":
                        expected = wire.pixel_size(str(payload["size"])) or expected
                    if len(images) >= n:
                        break
        if not images:
            raise ProviderError(ErrorKind.NO_IMAGE, "stream ended without a completed image", request_id=request_id,
                                http_status=200)
        return GenerationResult(images=images, request_id=request_id, expected_size=expected, usage=usage)


def result_from_body(body: Any, request_id: str | None, expected: tuple[int, int] | None) -> GenerationResult:
    """The result of a generation answer already parsed from JSON (a batch output line's ``response.body``):
    its ``b64_json`` images, usage and size; ``bad_output`` when it is not an Images API object, ``no_image``
    (billed) when it carries no image. A ``url`` item cannot be fetched here and is a ``bad_output``."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProviderError(ErrorKind.BAD_OUTPUT, "answer is not an Images API JSON object with `data`",
                            request_id=request_id)
    fmt = body.get("output_format")
    images: list[OutputImage] = []
    for i, item in enumerate(body["data"]):
        if not isinstance(item, dict) or not item.get("b64_json"):
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"data[{i}] carries no b64_json image", request_id=request_id)
        images.append(decode_b64_image(str(item["b64_json"]), f"image/{fmt}" if fmt else None,
                                       what=f"data[{i}].b64_json"))
    if not images:
        raise ProviderError(ErrorKind.NO_IMAGE, "answer without any image", request_id=request_id, http_status=200,
                            billed=True, usage=_usage(body.get("usage")))
    if body.get("size") and body["size"] != "auto":
        expected = wire.pixel_size(str(body["size"])) or expected
    return GenerationResult(images=images, request_id=request_id, expected_size=expected,
                            usage=_usage(body.get("usage")))


def _processing(headers: Mapping[str, str]) -> dict[str, Any]:
    raw = headers.get(wire.PROCESSING_MS_HEADER)
    try:
        return {"processing_ms": float(raw)} if raw else {}
    except ValueError:
        return {}
