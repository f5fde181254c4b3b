"""fal.ai adapter: the queue API (default) and synchronous ``fal.run``
(https://fal.ai/docs/api-reference/inference-api; wire facts in :mod:`harness.wire.fal`).

Queue mode (``options.mode: queue``):

1. ``POST {queue}/{app id}`` with the model input (label ``submit``); the answer is marked ``queued``;
2. the status is followed at the ``status_url`` the submit answer gave (never a URL built from the app id:
   it names only ``owner/app``), either by polling every ``poll_interval_s`` (label ``status``; 202 while
   ``IN_QUEUE``/``IN_PROGRESS``, 200 once ``COMPLETED``) or, with ``status_updates: stream``, from the
   server-sent status stream (no poll quantization). The first ``IN_PROGRESS`` seen is marked ``running``, the
   first ``COMPLETED`` ``completed``;
3. ``GET response_url`` (label ``result``), marked ``fetched`` once its body is read. A ``COMPLETED`` status
   that carries ``error`` is a failure: the result call then returns the app's own error status and body,
   which are classified;
4. each ``images[].url`` is downloaded (label ``download``) inside the timed region (``data:`` URLs from
   ``sync_mode`` are decoded instead).

If the attempt is cancelled while the request is queued or running (the runner's total timeout), the adapter
sends ``PUT cancel_url`` (label ``cancel``) shielded from that cancellation with a short timeout, then lets the
cancellation continue; the same happens when the request has not started within ``start_timeout_s`` (also
sent as ``X-Fal-Request-Timeout`` when it is over fal's 1 s minimum), which fails the attempt as ``timeout``.

Sync mode (``options.mode: sync``): one ``POST {run}/{app id}`` (label ``generate``) answers with the output,
then the downloads.

What TTFB means here: in queue mode TTFB is the submit call's (headers received - request sent): the time for
fal to acknowledge the request, typically ~100 ms, saying nothing about generation; the phase split (submit,
queue wait, run, result fetch, download) is the measurement, each transition known only to within the poll
interval (recorded as ``poll_interval_ms``; 0 with the status stream). In sync mode TTFB is close to the whole
generation time, and the CDN download follows.

Edits use ``options.edit_model`` (e.g. ``fal-ai/nano-banana/edit``), whose ``image_urls`` take the references
as data URLs (apps named ``.../image-to-image`` take one ``image_url``; ``options.image_field`` overrides).
Inpainting sends the mask as ``options.mask_field`` when the app has one, else as one more image with an
instruction after the prompt. Sizes: Nano Banana apps get ``aspect_ratio`` (and ``resolution`` on Pro and 2),
FLUX-style apps ``image_size``; the expected pixel size follows from these (Google's grid, fal's enum).

Provider timings: ``inference_time`` (status ``metrics``), ``timings`` (output body, e.g. ``{"inference":
1.92}``), ``queue_position`` (at submit); cost units from ``X-Fal-Billable-Units``.

Options (target ``options``): ``mode``, ``edit_model``, ``poll_interval_s`` (default 0.5), ``status_updates``
(``poll``/``stream``), ``start_timeout_s``, ``cancel_timeout_s`` (default 5), ``priority`` (``normal``/
``low``), ``no_retry`` (send ``x-fal-no-retry``), ``image_field``, ``mask_field``, ``input`` (a mapping merged
into the model input last), the passthrough names in :data:`PASSTHROUGH_OPTIONS`, and ``time_scale``: the
sandbox's time scale, which multiplies only the adapter's own waits (poll interval, start and cancel
timeouts), never what is sent to the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ConfigError
from harness.origins import OriginPolicy
from harness.providers.base import (
    REFUSED_URL,
    ChallengeKind,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    OutputImage,
    Provider,
    ProviderError,
)
from harness.providers.chain import chained_image_urls, chained_reply, is_chained_edit
from harness.providers.common import (
    download_image,
    gather_all,
    image_data_url,
    json_or_none,
    option_choice,
    option_float,
    parse_retry_after,
    parse_wxh,
    scaled_poll_interval,
    shielded_cancel,
    status_kind,
    trim,
)
from harness.timing import TimedHttp, TimedResponse
from harness.wire import fal as wire
from harness.wire import gemini

PASSTHROUGH_OPTIONS = ("output_format", "safety_tolerance", "resolution", "num_inference_steps", "guidance_scale",
                       "enable_safety_checker", "acceleration", "sync_mode", "thinking_level", "enable_web_search",
                       "strength", "limit_generations", "system_prompt")
"""Target options copied into the model input unchanged."""
DEFAULT_POLL_INTERVAL_S = 0.5
DEFAULT_CANCEL_TIMEOUT_S = 5.0
MODES = ("queue", "sync")
STATUS_UPDATES = ("poll", "stream")
MASK_INSTRUCTION = ("The last image is a mask for the first image: change only the region that is white in the "
                    "mask and keep everything else unchanged.")
TEXT_ONLY_APPS = ("fal-ai/flux/dev", "fal-ai/flux/schnell", "fal-ai/stable-diffusion-v35-large")
"""Apps known to take no input image (an edit challenge needs ``options.edit_model`` for them)."""


# ---- request ---------------------------------------------------------------------------------------------




def gemini_size_params(app: str, request: GenerationRequest) -> dict[str, str]:
    """``aspect_ratio`` and ``resolution`` for a Nano Banana app: from the request's ratio and size tier, or
    the grid entry that matches an exact ``WxH``."""
    model = wire.gemini_model(app) or ""
    resolutions = wire.GEMINI_RESOLUTIONS.get(model, ())
    params: dict[str, str] = {}
    if request.aspect_ratio:
        params["aspect_ratio"] = request.aspect_ratio
    size = (request.size or "").strip()
    tier = {"512": "0.5K"}.get(size.upper(), size.upper())
    if tier in resolutions:
        params["resolution"] = tier
    elif (wxh := parse_wxh(size)) is not None:
        for ratio in gemini.aspect_ratios(model):
            for res in resolutions or (None,):
                if wire.gemini_pixel_size(app, ratio, res) == wxh:
                    params["aspect_ratio"] = ratio
                    if res is not None:
                        params["resolution"] = res
                    return params
        params.setdefault("aspect_ratio", gemini.nearest_ratio(model, *wxh))
    return params


def flux_image_size(request: GenerationRequest) -> str | dict[str, int] | None:
    """``image_size``: an exact ``WxH`` as ``{"width", "height"}``, else the enum for the aspect ratio, else a
    custom size with a 1024-pixel long side and the short side a multiple of 16."""
    wxh = parse_wxh(request.size or "")
    if wxh is not None:
        return {"width": wxh[0], "height": wxh[1]}
    ratio = request.aspect_ratio
    if not ratio:
        return None
    if ratio in wire.ASPECT_TO_IMAGE_SIZE:
        return wire.ASPECT_TO_IMAGE_SIZE[ratio]
    try:
        rw, rh = (float(v) for v in ratio.split(":"))
    except ValueError:
        raise ProviderError(ErrorKind.INVALID_REQUEST, f"aspect ratio {ratio!r} is not W:H") from None
    if rw >= rh:
        return {"width": 1024, "height": max(16, round(1024 * rh / rw / 16) * 16)}
    return {"width": max(16, round(1024 * rw / rh / 16) * 16), "height": 1024}


def expected_size(app: str, model_input: Mapping[str, Any]) -> tuple[int, int] | None:
    """The pixel size fal documents for this input, or ``None`` when it follows the input image or is unknown."""
    if wire.gemini_model(app) is not None:
        default = wire.EDIT_AUTO_RATIO if wire.is_edit_app(app) else "1:1"
        ratio = str(model_input.get("aspect_ratio", default))
        if ratio == wire.EDIT_AUTO_RATIO:
            return None
        resolution = model_input.get("resolution")
        return wire.gemini_pixel_size(app, ratio, str(resolution) if resolution else None)
    if wire.is_edit_app(app) or ("image_size" not in model_input and app not in TEXT_ONLY_APPS):
        return None
    return wire.flux_pixel_size(model_input.get("image_size"))




def build_input(app: str, request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The model input JSON for ``app``. A conversation turn is an edit of the previous turn's output
    (:mod:`harness.providers.chain`); its first turn without starting images is text-to-image."""
    chained = request.kind == ChallengeKind.MULTI_TURN
    edit = is_chained_edit(request) if chained else request.kind != ChallengeKind.TEXT_TO_IMAGE
    prompt = request.prompt
    body: dict[str, Any] = {"prompt": prompt, "num_images": request.n}
    if request.seed is not None:
        body["seed"] = request.seed
    if wire.gemini_model(app) is not None:
        body.update(gemini_size_params(app, request))
    elif (image_size := flux_image_size(request)) is not None:
        body["image_size"] = image_size
    if edit:
        image_field = str(options.get("image_field") or
                          ("image_url" if app.endswith(wire.IMAGE_TO_IMAGE_SUFFIX) else "image_urls"))
        urls = chained_image_urls(request, options) if chained else [image_data_url(r) for r in request.references]
        mask_field = options.get("mask_field")
        if request.mask is not None and request.kind == ChallengeKind.INPAINT:
            if mask_field:
                body[str(mask_field)] = image_data_url(request.mask)
            elif image_field.endswith("s"):
                urls.append(image_data_url(request.mask))
                body["prompt"] = f"{prompt}\n\n{MASK_INSTRUCTION}"
        if image_field.endswith("s"):
            body[image_field] = urls
        elif urls:
            body[image_field] = urls[0]
    for name in PASSTHROUGH_OPTIONS:
        if name in options:
            body[name] = options[name]
    extra = options.get("input")
    if isinstance(extra, Mapping):
        body.update(extra)
    return body


# ---- errors ----------------------------------------------------------------------------------------------


def _detail_items(detail: Any) -> list[Mapping[str, Any]]:
    if isinstance(detail, list):
        return [d for d in detail if isinstance(d, Mapping)]
    if isinstance(detail, Mapping):
        return [detail]
    return []


def _item_text(item: Mapping[str, Any]) -> str:
    loc = item.get("loc")
    where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
    msg = str(item.get("msg") or item.get("message") or item.get("error") or item.get("type") or "")
    return f"{where}: {msg}" if where else msg


def _kind_for_types(types: set[str], default: ErrorKind, *, user_timeout: bool) -> ErrorKind:
    if types & wire.REFUSAL_TYPES:
        return ErrorKind.REFUSED
    if types & wire.NO_MEDIA_TYPES:
        return ErrorKind.NO_IMAGE
    if types & wire.TIMEOUT_TYPES and user_timeout:
        return ErrorKind.TIMEOUT
    if types & wire.SERVER_TYPES:
        return ErrorKind.SERVER_ERROR
    return default


def classify(status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map a fal error response (either body family) to the taxonomy, keeping fal's type and message."""
    body = json_or_none(content)
    detail = body.get("detail") if isinstance(body, dict) else None
    items = _detail_items(detail)
    error_type = (body.get("error_type") if isinstance(body, dict) else None) or headers.get(wire.ERROR_TYPE_HEADER)
    types = {str(t) for t in (*(i.get("type") or i.get("error") for i in items), error_type) if t}
    if items:
        message = "; ".join(t for t in (_item_text(i) for i in items) if t)
    elif isinstance(detail, str):
        message = detail
    else:
        message = content.decode("utf-8", "replace") if content else f"HTTP {status}"
    kind = status_kind(status)
    lowered = message.lower()
    if status == 403 and "locked" in lowered and "balance" in lowered:
        kind = ErrorKind.QUOTA_EXHAUSTED
    user_timeout = headers.get(wire.REQUEST_TIMEOUT_TYPE_HEADER, "").lower() == "user"
    kind = _kind_for_types(types, kind, user_timeout=user_timeout)
    first_type = next((str(i.get("type") or i.get("error")) for i in items if i.get("type") or i.get("error")), None)
    retry = parse_retry_after(headers, message) if kind in (ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR) else None
    return ProviderError(kind, trim(message) or f"HTTP {status}", http_status=status,
                         provider_code=first_type or (str(error_type) if error_type else None), retry_after_s=retry,
                         request_id=headers.get(wire.REQUEST_ID_HEADER))


def completed_error(status_body: Mapping[str, Any], request_id: str | None) -> ProviderError:
    """Classify a ``COMPLETED`` status that carries ``error`` (when the result call did not say more)."""
    error_type = status_body.get("error_type")
    message = trim(str(status_body.get("error") or "")) or "request failed"
    kind = _kind_for_types({str(error_type)} if error_type else set(), ErrorKind.SERVER_ERROR, user_timeout=True)
    return ProviderError(kind, message, http_status=200, provider_code=str(error_type) if error_type else None,
                         request_id=request_id)


# ---- the adapter -----------------------------------------------------------------------------------------


@dataclass
class QueueHandle:
    """The URLs a submit answer gave for one queued request."""

    request_id: str | None
    status_url: str
    response_url: str
    cancel_url: str | None


@dataclass
class QueueObservation:
    """What the status updates showed: the provider's own numbers, kept as it reported them."""

    queue_position: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def run_base(base_url: str) -> str:
    """The ``fal.run`` base for a queue base (``https://queue.fal.run`` -> ``https://fal.run``)."""
    parts = urlsplit(base_url)
    host = parts.netloc
    if host.startswith(wire.QUEUE_HOST_PREFIX):
        return urlunsplit(parts._replace(netloc=host[len(wire.QUEUE_HOST_PREFIX):]))
    return base_url


class FalProvider(Provider):
    """Adapter for fal's queue (submit, status, result, cancel) and ``fal.run``."""

    protocol = "fal"
    multi_turn = True

    def __init__(self, base_url: str, api_key: str, options: Mapping[str, Any] | None = None, *,
                 policy: OriginPolicy | None = None) -> None:
        super().__init__(base_url, api_key, options, policy=policy)
        opts = self.options
        self.mode = option_choice(opts, "mode", MODES)
        self.status_updates = option_choice(opts, "status_updates", STATUS_UPDATES)
        self.time_scale = option_float(opts, "time_scale", 1.0, minimum=1e-9) or 1.0
        self.poll_interval_s = option_float(opts, "poll_interval_s", DEFAULT_POLL_INTERVAL_S) or 0.0
        self.start_timeout_s = option_float(opts, "start_timeout_s", None)
        self.cancel_timeout_s = option_float(opts, "cancel_timeout_s", DEFAULT_CANCEL_TIMEOUT_S) or 0.0
        priority = opts.get("priority")
        if priority is not None and priority not in wire.PRIORITIES:
            raise ConfigError(f"target option priority must be one of {', '.join(wire.PRIORITIES)}, got {priority!r}")
        if opts.get("input") is not None and not isinstance(opts["input"], Mapping):
            raise ConfigError("target option input must be a mapping of model input fields")

    @classmethod
    def credential_urls(cls, base_url: str) -> tuple[str, ...]:
        """The queue host and the synchronous host are the same service with the same key (fal's docs:
        https://docs.fal.ai/model-apis/model-endpoints/queue names ``queue.fal.run``, and
        https://docs.fal.ai/model-apis/model-endpoints/synchronous-requests ``fal.run``)."""
        return tuple(dict.fromkeys((base_url, run_base(base_url))))

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        host = wire.SANDBOX_RUN if options.get("mode") == "sync" else wire.SANDBOX_QUEUE
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX + host

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"{wire.AUTH_SCHEME} {self.api_key}"}

    def _submit_headers(self) -> dict[str, str]:
        headers = self._auth()
        if self.start_timeout_s is not None and self.start_timeout_s > wire.MIN_REQUEST_TIMEOUT_S:
            headers[wire.REQUEST_TIMEOUT_HEADER] = f"{self.start_timeout_s:g}"
        if self.options.get("priority"):
            headers[wire.QUEUE_PRIORITY_HEADER] = str(self.options["priority"])
        if self.options.get("no_retry"):
            headers[wire.NO_RETRY_HEADER] = "1"
        return headers

    def app_for(self, request: GenerationRequest) -> str:
        """The app id to call: ``options.edit_model`` for edits and conversation turns that send images,
        else the target's model."""
        if request.kind == ChallengeKind.TEXT_TO_IMAGE or (request.kind == ChallengeKind.MULTI_TURN
                                                           and not is_chained_edit(request)):
            return request.model_id
        edit_model = self.options.get("edit_model")
        if edit_model:
            return str(edit_model)
        if request.model_id in TEXT_ONLY_APPS or (wire.gemini_model(request.model_id) is not None
                                                  and not wire.is_edit_app(request.model_id)):
            raise ProviderError(ErrorKind.INVALID_REQUEST,
                                f"fal app {request.model_id} takes no input image; set the target option "
                                f"edit_model (e.g. {request.model_id}/edit) for {request.kind.value} challenges")
        return request.model_id

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        app = self.app_for(request)
        try:
            wire.split_app_id(app)
        except ValueError as exc:
            raise ProviderError(ErrorKind.INVALID_REQUEST, str(exc)) from None
        options = {**self.options, **request.options}
        if request.kind == ChallengeKind.MULTI_TURN and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        model_input = build_input(app, request, options)
        expected = expected_size(app, model_input)
        result = await self._generate(app, model_input, expected, http)
        if request.kind == ChallengeKind.MULTI_TURN:
            result.reply = chained_reply(result.images)
        return result

    async def _generate(self, app: str, model_input: dict[str, Any], expected: tuple[int, int] | None,
                        http: TimedHttp) -> GenerationResult:
        if self.mode == "sync":
            url = f"{run_base(self.base_url)}/{app}"
            response = await http.request("POST", url, label="generate", json=model_input, headers=self._auth())
            if response.status_code >= 400:
                raise classify(response.status_code, response.content, response.headers)
            return await self._output(response, http, expected, QueueObservation(),
                                      response.headers.get(wire.REQUEST_ID_HEADER))
        return await self._queue(app, model_input, http, expected)

    async def _queue(self, app: str, model_input: dict[str, Any], http: TimedHttp,
                     expected: tuple[int, int] | None) -> GenerationResult:
        submit = await http.request("POST", f"{self.base_url}/{app}", label="submit", json=model_input,
                                    headers=self._submit_headers())
        if submit.status_code >= 400:
            raise classify(submit.status_code, submit.content, submit.headers)
        http.mark("queued")
        handle, position = self._handle(submit)
        seen = QueueObservation(queue_position=position)
        http.poll_interval_s = 0.0 if self.status_updates == "stream" else scaled_poll_interval(self.poll_interval_s, self.time_scale)
        try:
            final = await self._until_completed(handle, http, seen)
            result = await http.request("GET", handle.response_url, label="result", headers=self._auth())
            http.mark("fetched")
        except asyncio.CancelledError:
            if handle.cancel_url:
                await shielded_cancel(http, "PUT", handle.cancel_url, self._auth(),
                                      self.cancel_timeout_s * self.time_scale)
            raise
        if result.status_code >= 400:
            raise classify(result.status_code, result.content, result.headers)
        if final.get("error"):
            raise completed_error(final, handle.request_id)
        return await self._output(result, http, expected, seen,
                                  result.headers.get(wire.REQUEST_ID_HEADER) or handle.request_id)

    def _handle(self, submit: TimedResponse) -> tuple[QueueHandle, int | None]:
        """The URLs of the submit answer and the queue position it reported."""
        body = json_or_none(submit.content)
        request_id = submit.headers.get(wire.REQUEST_ID_HEADER)
        if not isinstance(body, dict) or not body.get("status_url") or not body.get("response_url"):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "submit answer lacks status_url/response_url",
                                http_status=submit.status_code, request_id=request_id)
        handle = QueueHandle(request_id=str(body.get("request_id") or request_id or "") or None,
                             status_url=str(body["status_url"]), response_url=str(body["response_url"]),
                             cancel_url=str(body["cancel_url"]) if body.get("cancel_url") else None)
        for name in ("status_url", "response_url", "cancel_url"):
            url = getattr(handle, name)
            if url is not None and not self.policy.may_send_credentials(url):
                raise ProviderError(ErrorKind.BAD_OUTPUT,
                                    f"submit answer's {name} is not on this target's credential origins "
                                    f"({self.policy.describe_origins()}); the queue needs the key, which goes "
                                    "nowhere else, so the request was not followed",
                                    provider_code=REFUSED_URL, http_status=submit.status_code,
                                    request_id=handle.request_id)
        position = body.get("queue_position")
        return handle, position if isinstance(position, int) and not isinstance(position, bool) else None

    async def _until_completed(self, handle: QueueHandle, http: TimedHttp,
                               seen: QueueObservation) -> dict[str, Any]:
        """Follow the status until ``COMPLETED``; on a start timeout cancel the request and fail as timeout."""
        deadline = None if self.start_timeout_s is None else self.start_timeout_s * self.time_scale
        try:
            async with asyncio.timeout(deadline) as start_window:
                if self.status_updates == "stream":
                    final = await self._stream_status(handle, http, seen, start_window)
                    if final is not None:
                        return final
                return await self._poll_status(handle, http, seen, start_window)
        except TimeoutError:
            if not start_window.expired():
                raise
            if handle.cancel_url:
                await shielded_cancel(http, "PUT", handle.cancel_url, self._auth(),
                                      self.cancel_timeout_s * self.time_scale)
            raise ProviderError(ErrorKind.TIMEOUT, f"request did not start within start_timeout_s="
                                f"{self.start_timeout_s:g}; cancelled", provider_code="start_timeout",
                                request_id=handle.request_id) from None

    def _observe(self, status: Mapping[str, Any], http: TimedHttp, seen: QueueObservation,
                 start_window: asyncio.Timeout, request_id: str | None) -> bool:
        """Record one status object; ``True`` once it is ``COMPLETED``."""
        state = status.get("status")
        if state == wire.IN_QUEUE:
            position = status.get("queue_position")
            if seen.queue_position is None and isinstance(position, int):
                seen.queue_position = position
            return False
        if state == wire.IN_PROGRESS:
            http.mark("running")
            start_window.reschedule(None)
            return False
        if state == wire.COMPLETED:
            http.mark("completed")
            start_window.reschedule(None)
            metrics = status.get("metrics")
            if isinstance(metrics, dict):
                seen.metrics = metrics
            return True
        raise ProviderError(ErrorKind.SERVER_ERROR, f"unknown queue status {state!r}",
                            provider_code=str(state), request_id=request_id)

    async def _poll_status(self, handle: QueueHandle, http: TimedHttp, seen: QueueObservation,
                           start_window: asyncio.Timeout) -> dict[str, Any]:
        while True:
            response = await http.request("GET", handle.status_url, label="status", headers=self._auth())
            if response.status_code not in (200, 202):
                raise classify(response.status_code, response.content, response.headers)
            body = json_or_none(response.content)
            if not isinstance(body, dict):
                raise ProviderError(ErrorKind.BAD_OUTPUT, "status answer is not a JSON object",
                                    http_status=response.status_code, request_id=handle.request_id)
            if self._observe(body, http, seen, start_window, handle.request_id):
                return body
            await asyncio.sleep(scaled_poll_interval(self.poll_interval_s, self.time_scale))

    async def _stream_status(self, handle: QueueHandle, http: TimedHttp, seen: QueueObservation,
                             start_window: asyncio.Timeout) -> dict[str, Any] | None:
        """Status from the server-sent stream; ``None`` when it ends before ``COMPLETED`` (polling takes over)."""
        url = handle.status_url.split("?")[0] + wire.STATUS_STREAM_SUFFIX
        async with http.stream("GET", url, label="status", headers=self._auth()) as stream:
            if stream.status_code >= 400:
                raise classify(stream.status_code, await stream.aread(), stream.headers)
            async for event in stream.aiter_sse():
                body = json_or_none(event.data.encode())
                if isinstance(body, dict) and self._observe(body, http, seen, start_window, handle.request_id):
                    return body
        return None

    async def _output(self, response: TimedResponse, http: TimedHttp, expected: tuple[int, int] | None,
                      seen: QueueObservation, request_id: str | None) -> GenerationResult:
        body = json_or_none(response.content)
        if not isinstance(body, dict):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "output is not a JSON object", http_status=response.status_code,
                                request_id=request_id)
        timings: dict[str, Any] = {}
        if "inference_time" in seen.metrics:
            timings["inference_time"] = seen.metrics["inference_time"]
        if isinstance(body.get("timings"), dict):
            timings["timings"] = body["timings"]
        if seen.queue_position is not None:
            timings["queue_position"] = seen.queue_position
        units = _float(response.headers.get(wire.BILLABLE_UNITS_HEADER))
        raw = body.get("images")
        if raw is None and isinstance(body.get("image"), dict):
            raw = [body["image"]]
        items = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
        nsfw = body.get("has_nsfw_concepts")
        if isinstance(nsfw, list) and any(v is True for v in nsfw):
            raise ProviderError(ErrorKind.REFUSED, "the safety checker flagged the output (has_nsfw_concepts)",
                                http_status=response.status_code, provider_code="has_nsfw_concepts",
                                request_id=request_id, billed=True)
        description = body.get("description") if isinstance(body.get("description"), str) else None
        if not items:
            text = f": {trim(description, 200)}" if description else ""
            raise ProviderError(ErrorKind.NO_IMAGE, f"output has no images{text}", http_status=response.status_code,
                                request_id=request_id)
        images = await gather_all([self._image(http, item, i) for i, item in enumerate(items)])
        return GenerationResult(images=images, request_id=request_id, expected_size=expected, billable_units=units,
                                provider_timings=timings, text=description)

    async def _image(self, http: TimedHttp, item: Mapping[str, Any], index: int) -> OutputImage:
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"images[{index}] has no url")
        mime = item.get("content_type") if isinstance(item.get("content_type"), str) else None
        image = await download_image(http, url, self.policy, what=f"images[{index}]")
        return image if image.mime or not mime else OutputImage(image.data, mime, image.source_url)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
