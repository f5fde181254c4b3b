"""Replicate predictions adapter (https://replicate.com/docs/reference/http; wire facts in
:mod:`harness.wire.replicate`).

1. ``POST {base}/models/{owner}/{name}/predictions`` with ``{"input": {...}}`` (label ``submit``; a ``version``
   option uses ``POST {base}/predictions``, a ``deployment`` option the deployment route) and, by default,
   ``Prefer: wait=60``: Replicate holds the answer until the prediction is done or the wait expires. The
   answer (201) is marked ``queued``;
2. unless that answer was final, ``urls.get`` (or the ``Location`` header) is polled every
   ``poll_interval_s`` (label ``status``); the first ``processing`` seen is marked ``running``, the final
   state ``completed`` (and ``fetched``: the output arrives in that same body). A ``processing`` prediction
   whose output files already exist counts as done (Replicate answers a waiting create that way) unless
   ``early_output`` is false;
3. the output, one URL (Nano Banana) or a list (FLUX, SD), is downloaded inside the timed region (label
   ``download``).

``failed`` predictions are failures: ``refused`` when the error text is a safety filter's (NSFW, "flagged as
sensitive", E005), else ``server_error``; ``canceled``/``aborted`` (a ``Cancel-After`` deadline) are
``timeout``. HTTP errors are problem details: 401/403 ``auth``, 402 ``quota_exhausted``, 404 and 422
``invalid_request``, 429 ``rate_limited`` (``Retry-After`` or "resets in ~30s"), 5xx ``server_error``. If the
attempt is cancelled while the prediction runs (the runner's timeout), ``urls.cancel`` is posted (label
``cancel``), shielded, with a short timeout.

What TTFB means here: the create call's headers minus its request-sent time. With ``Prefer: wait`` (the
default) that is the time until the prediction finished or the wait expired, i.e. close to the whole
generation for predictions shorter than the wait; with ``wait_s: 0`` it is only the create acknowledgement.
Queue and run phases are measured client-side only where a poll could see them (to within the poll interval,
recorded as ``poll_interval_ms``); Replicate's own split is kept as provider timings: ``predict_time`` and
``total_time`` (``metrics``), the ``created_at``/``started_at``/``completed_at`` timestamps and ``queue_time``
(``started_at - created_at``, seconds).

Inputs: ``prompt``, ``seed``; Nano Banana models get ``aspect_ratio`` (``match_input_image`` on edits without
one), ``resolution`` on Pro and 2, references in ``image_input`` as data URLs; list-output models get
``aspect_ratio`` and ``num_outputs``, a reference in ``image``. A single-output model asked for ``n > 1``
images gets ``n`` predictions in parallel (seed + i). Inpainting sends the mask as ``options.mask_field`` when
the model has one, else as one more image with an instruction after the prompt.

Options: ``wait_s`` (0–60, default 60; 0 sends no ``Prefer``), ``poll_interval_s`` (default 0.5),
``cancel_after`` (a duration such as ``"5m"``, sent as ``Cancel-After``), ``cancel_timeout_s`` (default 5),
``early_output`` (default true), ``version``, ``deployment``, ``edit_model``, ``image_field``, ``mask_field``,
``input`` (merged into the input last), the names in :data:`PASSTHROUGH_OPTIONS`, and ``time_scale`` (the
sandbox's; it scales only the adapter's own waits, never a header).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from harness.errors import ConfigError
from harness.origins import OriginPolicy
from harness.providers.base import (
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
    option_float,
    parse_retry_after,
    parse_wxh,
    scaled_poll_interval,
    shielded_cancel,
    status_kind,
    trim,
)
from harness.providers.fal import MASK_INSTRUCTION
from harness.timing import TimedHttp, TimedResponse
from harness.wire import gemini
from harness.wire import replicate as wire

PASSTHROUGH_OPTIONS = ("output_format", "output_quality", "go_fast", "megapixels", "resolution",
                       "num_inference_steps", "guidance", "disable_safety_checker", "safety_filter_level",
                       "prompt_strength", "cfg", "steps", "safety_tolerance")
"""Target options copied into the model input unchanged."""
DEFAULT_POLL_INTERVAL_S = 0.5
DEFAULT_CANCEL_TIMEOUT_S = 5.0




def size_params(model: str, request: GenerationRequest) -> dict[str, str]:
    """``aspect_ratio`` (and ``resolution`` for Nano Banana Pro/2) from the request's ratio and size."""
    params: dict[str, str] = {}
    gem = wire.gemini_model(model)
    size = (request.size or "").strip()
    if request.aspect_ratio:
        params["aspect_ratio"] = request.aspect_ratio
    elif request.kind != ChallengeKind.TEXT_TO_IMAGE and gem is not None:
        params["aspect_ratio"] = wire.MATCH_INPUT_IMAGE
    resolutions = wire.GEMINI_RESOLUTIONS.get(gem or "", ())
    if size.upper() in resolutions:
        params["resolution"] = size.upper()
    elif (wxh := parse_wxh(size)) is not None:
        ratios = gemini.aspect_ratios(gem) if gem is not None else tuple(wire.FLUX_SIZES)
        for ratio in ratios:
            for res in resolutions or (None,):
                if wire.pixel_size(model, ratio, res) == wxh:
                    params["aspect_ratio"] = ratio
                    if res is not None:
                        params["resolution"] = res
                    return params
    return params




def build_input(model: str, request: GenerationRequest, options: Mapping[str, Any], *,
                seed_offset: int = 0, outputs: int = 1) -> dict[str, Any]:
    """The prediction ``input`` for ``model``. A conversation turn is an edit of the previous turn's output
    (:mod:`harness.providers.chain`); its first turn without starting images is text-to-image."""
    inp: dict[str, Any] = {"prompt": request.prompt}
    if request.seed is not None:
        inp["seed"] = request.seed + seed_offset
    inp.update(size_params(model, request))
    if wire.list_output(model):
        inp["num_outputs"] = outputs
    chained = request.kind == ChallengeKind.MULTI_TURN
    if is_chained_edit(request) if chained else request.kind != ChallengeKind.TEXT_TO_IMAGE:
        plural = wire.gemini_model(model) is not None
        field_name = str(options.get("image_field") or (wire.GEMINI_IMAGE_FIELD if plural else "image"))
        many = field_name == wire.GEMINI_IMAGE_FIELD or field_name.endswith("s")
        urls = chained_image_urls(request, options) if chained else [image_data_url(r) for r in request.references]
        mask_field = options.get("mask_field")
        if request.kind == ChallengeKind.INPAINT and request.mask is not None:
            if mask_field:
                inp[str(mask_field)] = image_data_url(request.mask)
            elif many:
                urls.append(image_data_url(request.mask))
                inp["prompt"] = f"{request.prompt}\n\n{MASK_INSTRUCTION}"
        if many:
            inp[field_name] = urls
        elif urls:
            inp[field_name] = urls[0]
    for name in PASSTHROUGH_OPTIONS:
        if name in options:
            inp[name] = options[name]
    extra = options.get("input")
    if isinstance(extra, Mapping):
        inp.update(extra)
    return inp


def expected_size(model: str, inp: Mapping[str, Any]) -> tuple[int, int] | None:
    """The documented output size for this input, or ``None`` (size follows an input image, or unknown)."""
    if wire.list_output(model) and "image" in inp:
        return None
    ratio = inp.get("aspect_ratio")
    resolution = inp.get("resolution")
    return wire.pixel_size(model, str(ratio) if ratio else None, str(resolution) if resolution else None)


def classify(status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map a problem-details error response to the taxonomy, keeping Replicate's title and detail."""
    body = json_or_none(content)
    if not isinstance(body, dict):
        body = {}
    title = body.get("title")
    detail = body.get("detail")
    message = str(detail or title or (content.decode("utf-8", "replace") if content else f"HTTP {status}"))
    fields = body.get("invalid_fields")
    code: str | None = str(title) if title else None
    if isinstance(fields, list) and fields and isinstance(fields[0], dict) and fields[0].get("type"):
        code = str(fields[0]["type"])
    kind = status_kind(status)
    retry = None
    if kind in (ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR):
        retry = parse_retry_after(headers, message)
        hint = wire.THROTTLE_HINT.search(message)
        if retry is None and hint is not None:
            retry = float(hint.group(1))
    return ProviderError(kind, trim(message) or f"HTTP {status}", http_status=status, provider_code=code,
                         retry_after_s=retry)


def failure(prediction: Mapping[str, Any], http_status: int | None) -> ProviderError:
    """A prediction that ended without output: ``failed`` (safety filter or model error), or ``canceled``/
    ``aborted`` (a deadline)."""
    state = str(prediction.get("status"))
    pid = str(prediction.get("id")) if prediction.get("id") else None
    if state == wire.FAILED:
        text = trim(str(prediction.get("error") or "")) or "prediction failed without an error message"
        kind = ErrorKind.REFUSED if wire.SAFETY_FAILURE.search(text) else ErrorKind.SERVER_ERROR
        return ProviderError(kind, text, http_status=http_status, provider_code=wire.FAILED, request_id=pid)
    if state in (wire.CANCELED, wire.ABORTED):
        return ProviderError(ErrorKind.TIMEOUT, f"prediction {state} before it finished (Cancel-After deadline or "
                             "cancelled)", http_status=http_status, provider_code=state, request_id=pid)
    return ProviderError(ErrorKind.SERVER_ERROR, f"unknown prediction status {state!r}", http_status=http_status,
                         provider_code=state, request_id=pid)


def output_urls(output: Any) -> list[str]:
    """File URLs of an ``output``: one string, a list of strings, or (some models) a mapping of them."""
    if isinstance(output, str):
        return [output] if output else []
    if isinstance(output, list):
        return [u for u in output if isinstance(u, str) and u]
    if isinstance(output, dict):
        return [u for u in output.values() if isinstance(u, str) and u.startswith(("http", "data:"))]
    return []


def provider_timings(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """Replicate's own numbers as reported, plus ``queue_time`` = started_at - created_at (seconds)."""
    timings: dict[str, Any] = {}
    metrics = prediction.get("metrics")
    if isinstance(metrics, dict):
        for name in ("predict_time", "total_time"):
            if isinstance(metrics.get(name), (int, float)):
                timings[name] = metrics[name]
    for name in ("created_at", "started_at", "completed_at"):
        if isinstance(prediction.get(name), str):
            timings[name] = prediction[name]
    created = wire.parse_timestamp(prediction.get("created_at"))
    started = wire.parse_timestamp(prediction.get("started_at"))
    if created is not None and started is not None:
        timings["queue_time"] = (started - created).total_seconds()
    return timings


class ReplicateProvider(Provider):
    """Adapter for Replicate predictions (create with ``Prefer: wait``, poll, download)."""

    protocol = "replicate"
    multi_turn = True

    def __init__(self, base_url: str, api_key: str, options: Mapping[str, Any] | None = None, *,
                 policy: OriginPolicy | None = None) -> None:
        super().__init__(base_url, api_key, options, policy=policy)
        opts = self.options
        wait = opts.get("wait_s", wire.MAX_WAIT_S)
        if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int)
                                 or not 0 <= wait <= wire.MAX_WAIT_S):
            raise ConfigError(f"target option wait_s must be an integer from 0 to {wire.MAX_WAIT_S}, got {wait!r}")
        self.wait_s = int(wait or 0)
        self.time_scale = option_float(opts, "time_scale", 1.0, minimum=1e-9) or 1.0
        self.poll_interval_s = option_float(opts, "poll_interval_s", DEFAULT_POLL_INTERVAL_S) or 0.0
        self.cancel_timeout_s = option_float(opts, "cancel_timeout_s", DEFAULT_CANCEL_TIMEOUT_S) or 0.0
        self.early_output = bool(opts.get("early_output", True))
        cancel_after = opts.get("cancel_after")
        if cancel_after is not None:
            try:
                wire.parse_duration(str(cancel_after))
            except ValueError as exc:
                raise ConfigError(f"target option cancel_after: {exc}") from None
        for name in ("version", "deployment"):
            if opts.get(name) is not None and not isinstance(opts[name], str):
                raise ConfigError(f"target option {name} must be a string")
        if opts.get("input") is not None and not isinstance(opts["input"], Mapping):
            raise ConfigError("target option input must be a mapping of model input fields")

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _create_headers(self) -> dict[str, str]:
        headers = self._auth()
        if self.wait_s:
            headers["Prefer"] = f"wait={self.wait_s}"
        if self.options.get("cancel_after"):
            headers["Cancel-After"] = str(self.options["cancel_after"])
        return headers

    def _create_url(self, model: str) -> tuple[str, dict[str, Any]]:
        version = self.options.get("version")
        deployment = self.options.get("deployment")
        if version:
            return self.base_url + wire.VERSION_PREDICTIONS, {"version": version}
        owner, sep, name = str(deployment or model).partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ProviderError(ErrorKind.INVALID_REQUEST,
                                f"Replicate model {deployment or model!r} must be owner/name")
        template = wire.DEPLOYMENT_PREDICTIONS if deployment else wire.MODEL_PREDICTIONS
        return self.base_url + template.format(owner=owner, name=name), {}

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        chained = request.kind == ChallengeKind.MULTI_TURN
        if chained and request.n != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "a conversation turn asks for exactly one image (n=1)")
        edit = is_chained_edit(request) if chained else request.kind != ChallengeKind.TEXT_TO_IMAGE
        model = str(self.options["edit_model"]) if edit and self.options.get("edit_model") else request.model_id
        url, extra = self._create_url(model)
        options = {**self.options, **request.options}
        http.poll_interval_s = scaled_poll_interval(self.poll_interval_s, self.time_scale)
        if wire.list_output(model) or request.n == 1:
            inputs = [build_input(model, request, options, outputs=request.n)]
        else:
            inputs = [build_input(model, request, options, seed_offset=i) for i in range(request.n)]
        expected = expected_size(model, inputs[0])
        predictions = await gather_all([self._predict(url, {**extra, "input": inp}, http, request.n if len(inputs) == 1
                                                   else 1) for inp in inputs])
        files: list[str] = []
        for prediction, status in predictions:
            urls = output_urls(prediction.get("output"))
            if not urls:
                raise ProviderError(ErrorKind.NO_IMAGE, "prediction succeeded without any output file",
                                    http_status=status, request_id=str(prediction.get("id")), billed=True)
            files.extend(urls)
        images = await gather_all([self._download(http, url, i) for i, url in enumerate(files)])
        timings = [provider_timings(p) for p, _ in predictions]
        merged = timings[0] if len(timings) == 1 else {
            "predictions": timings,
            "predict_time": sum(t.get("predict_time", 0.0) for t in timings),
        }
        ids = [str(p.get("id")) for p, _ in predictions]
        return GenerationResult(images=images, request_id=",".join(ids), expected_size=expected,
                                provider_timings=merged, reply=chained_reply(images) if chained else None)

    async def _predict(self, url: str, body: dict[str, Any], http: TimedHttp,
                       outputs: int) -> tuple[dict[str, Any], int]:
        """Create one prediction and follow it to its end; returns the final prediction and its HTTP status."""
        created = await http.request("POST", url, label="submit", json=body, headers=self._create_headers())
        if created.status_code >= 400:
            raise classify(created.status_code, created.content, created.headers)
        http.mark("queued")
        prediction = self._prediction(created)
        pid = str(prediction["id"])
        raw_urls = prediction.get("urls")
        urls: dict[str, Any] = raw_urls if isinstance(raw_urls, dict) else {}
        get_url = self._own_url(urls.get("get"), created.headers.get(wire.LOCATION_HEADER),
                                default=self.base_url + wire.PREDICTION.format(id=pid))
        cancel_url = self._own_url(urls.get("cancel"), default=self.base_url + wire.CANCEL.format(id=pid))
        status = created.status_code
        try:
            if self._done(prediction, http, outputs, answered_on_create=True):
                http.mark("fetched")
                if prediction.get("status") not in (wire.SUCCEEDED, wire.PROCESSING):
                    raise failure(prediction, status)
                return prediction, status
            while not self._done(prediction, http, outputs):
                await asyncio.sleep(scaled_poll_interval(self.poll_interval_s, self.time_scale))
                polled = await http.request("GET", get_url, label="status", headers=self._auth())
                if polled.status_code >= 400:
                    raise classify(polled.status_code, polled.content, polled.headers)
                prediction, status = self._prediction(polled), polled.status_code
        except asyncio.CancelledError:
            await shielded_cancel(http, "POST", cancel_url, self._auth(), self.cancel_timeout_s * self.time_scale)
            raise
        http.mark("fetched")
        if prediction.get("status") not in (wire.SUCCEEDED, wire.PROCESSING):
            raise failure(prediction, status)
        return prediction, status

    def _own_url(self, *named: Any, default: str) -> str:
        """The first URL the answer named that is on a credential origin (polls and cancels carry the key),
        else the one built from the prediction id on the configured base URL: a URL on any other origin is
        never called, so the key cannot follow it."""
        for url in named:
            if isinstance(url, str) and url and self.policy.may_send_credentials(url):
                return url
        return default

    @staticmethod
    def _prediction(response: TimedResponse) -> dict[str, Any]:
        body = json_or_none(response.content)
        if not isinstance(body, dict) or not body.get("id") or not body.get("status"):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "answer is not a prediction object (no id/status)",
                                http_status=response.status_code)
        return body

    def _done(self, prediction: Mapping[str, Any], http: TimedHttp, outputs: int,
              answered_on_create: bool = False) -> bool:
        """Record what one prediction state shows; ``True`` when nothing more is to come.

        A prediction already finished in the create answer (``Prefer: wait``) was never seen running: the
        client cannot split its wait into queue and run, so only ``completed`` is marked (Replicate's own
        timestamps and metrics, when present, still give the split)."""
        state = prediction.get("status")
        if state == wire.PROCESSING:
            urls = output_urls(prediction.get("output"))
            if answered_on_create and self.early_output and urls and len(urls) >= outputs:
                http.mark("completed")
                return True
            http.mark("running")
            urls = output_urls(prediction.get("output"))
            if self.early_output and urls and len(urls) >= outputs:
                http.mark("completed")
                return True
            return False
        if state in wire.TERMINAL:
            http.mark("completed")
            return True
        if state == wire.STARTING:
            return False
        raise failure(prediction, None)

    async def _download(self, http: TimedHttp, url: str, index: int) -> OutputImage:
        return await download_image(http, url, self.policy, what=f"output[{index}]")


Finished = tuple[dict[str, Any], int]
"""A prediction's final state and the HTTP status it came with."""
