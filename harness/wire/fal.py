"""fal.ai wire facts, shared by the adapter and the sandbox server.

Sources: https://fal.ai/docs/api-reference/inference-api, https://docs.fal.ai/model-apis/model-endpoints/queue and
the official client (https://github.com/fal-ai/fal, ``fal_client``).

Two hosts: the queue (``https://queue.fal.run``) and synchronous runs (``https://fal.run``). Auth is
``Authorization: Key <key_id>:<key_secret>`` (not Bearer).

Queue flow: ``POST {queue}/{owner}/{app}[/{path}]`` with the model input as the JSON body answers ``IN_QUEUE``
with ``status_url``, ``response_url`` and ``cancel_url``; those URLs name only ``{owner}/{app}`` (never the
endpoint path), so clients must follow them rather than build them. ``GET status_url`` answers 202 while the
request is ``IN_QUEUE`` (with a 0-based ``queue_position``) or ``IN_PROGRESS`` and 200 once ``COMPLETED``; a
failed request is also ``COMPLETED``, with ``error`` and ``error_type``. ``GET status_url + "/stream"`` sends
the same status objects as server-sent events. ``GET response_url`` returns the output (or the app's error
status and body); ``PUT cancel_url`` asks for cancellation.

Sync: ``POST {run}/{owner}/{app}[/{path}]`` answers with the output directly.

Outputs name images by URL on fal's CDN (``images[].url``; a ``data:`` URL when the input had
``sync_mode: true``). Request ids come in ``x-fal-request-id``; cost in ``x-fal-billable-units``.

Errors come in two families: model/validation errors (FastAPI style, usually 422:
``{"detail": [{"loc", "msg", "type", ...}]}`` with types such as ``content_policy_violation``), and
request/infrastructure errors (``{"detail": "<text>", "error_type": "<type>"}`` plus ``X-Fal-Error-Type``).

Sizes: FLUX-style apps take ``image_size`` as an enum name or ``{"width", "height"}``; the Nano Banana apps
are Google's Gemini image models behind fal and take ``aspect_ratio`` (and ``resolution`` on Pro and 2), so
their pixel sizes are Google's grid (:mod:`harness.wire.gemini`).
"""

from __future__ import annotations

from typing import Any

from harness.wire import gemini

QUEUE_HOST_PREFIX = "queue."
"""The queue host is the run host with this prefix (``queue.fal.run`` / ``fal.run``)."""

SANDBOX_PREFIX = "/fal"
SANDBOX_QUEUE = "/queue"
SANDBOX_RUN = "/run"
SANDBOX_CDN = "/cdn/files"
"""Paths under :data:`SANDBOX_PREFIX`: the queue host, the run host and the simulated CDN (``v3.fal.media``)."""

AUTH_SCHEME = "Key"
REQUEST_ID_HEADER = "x-fal-request-id"
BILLABLE_UNITS_HEADER = "x-fal-billable-units"
ERROR_TYPE_HEADER = "x-fal-error-type"
RETRYABLE_HEADER = "x-fal-retryable"
REQUEST_TIMEOUT_HEADER = "x-fal-request-timeout"
"""Start timeout in seconds: limits queue wait, runner acquisition and retries, not processing."""
REQUEST_TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"
"""``user`` on the 504 a start timeout produces."""
QUEUE_PRIORITY_HEADER = "x-fal-queue-priority"
NO_RETRY_HEADER = "x-fal-no-retry"
MIN_REQUEST_TIMEOUT_S = 1.0
"""fal rejects start timeouts of this many seconds or less (fal_client enforces ``> 1``)."""
PRIORITIES = ("normal", "low")

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
STATUS_STREAM_SUFFIX = "/stream"

CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
ALREADY_COMPLETED = "ALREADY_COMPLETED"
NOT_FOUND = "NOT_FOUND"
CANCEL_STATUS_CODES = {CANCELLATION_REQUESTED: 202, ALREADY_COMPLETED: 400, NOT_FOUND: 404}
"""HTTP status of each ``PUT cancel_url`` outcome."""

APP_NAMESPACES = ("workflows", "comfy")
"""Leading path segments that are a namespace, not an owner (``workflows/{owner}/{app}``)."""


def split_app_id(app_id: str) -> tuple[str, str]:
    """``("fal-ai/flux", "dev")`` for ``fal-ai/flux/dev``: the ``[namespace/]owner/app`` part that request URLs
    use, and the endpoint path (``""`` when none). Raises ``ValueError`` for an id without owner and app."""
    parts = [p for p in app_id.strip("/").split("/") if p]
    head = 3 if parts and parts[0] in APP_NAMESPACES else 2
    if len(parts) < head:
        raise ValueError(f"fal app id {app_id!r} must look like owner/app[/path]")
    return "/".join(parts[:head]), "/".join(parts[head:])


def requests_path(owner_app: str, request_id: str) -> str:
    """Path of a queued request (``response_url``); ``/status``, ``/status/stream`` and ``/cancel`` follow it."""
    return f"/{owner_app}/requests/{request_id}"


# ---- inputs and sizes ---------------------------------------------------------------------------------------

IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024), "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}
"""FLUX-style ``image_size`` enum values and their pixel sizes."""
DEFAULT_IMAGE_SIZE = "landscape_4_3"
"""What ``fal-ai/flux/dev`` renders when no ``image_size`` is given."""
ASPECT_TO_IMAGE_SIZE = {"1:1": "square_hd", "4:3": "landscape_4_3", "3:4": "portrait_4_3",
                        "16:9": "landscape_16_9", "9:16": "portrait_16_9"}
FLUX_OUTPUT_FORMATS = ("jpeg", "png")
FLUX_MAX_SIDE = 14142
"""Largest custom ``image_size`` side fal's FLUX apps accept."""

GEMINI_OUTPUT_FORMATS = ("jpeg", "png", "webp")
SAFETY_TOLERANCES = ("1", "2", "3", "4", "5", "6")
EDIT_AUTO_RATIO = "auto"
"""Edit apps' default ``aspect_ratio``: follow the input image."""
MAX_NUM_IMAGES = 4

GEMINI_APPS: dict[str, str] = {
    "fal-ai/nano-banana": "gemini-2.5-flash-image",
    "fal-ai/gemini-25-flash-image": "gemini-2.5-flash-image",
    "fal-ai/nano-banana-pro": "gemini-3-pro-image-preview",
    "fal-ai/gemini-3-pro-image-preview": "gemini-3-pro-image-preview",
    "fal-ai/nano-banana-2": "gemini-3.1-flash-image-preview",
    "fal-ai/gemini-3.1-flash-image-preview": "gemini-3.1-flash-image-preview",
}
"""fal apps that serve a Gemini image model (each also at ``.../edit``), and that model."""
GEMINI_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    "gemini-3-pro-image-preview": ("1K", "2K", "4K"),
    "gemini-3.1-flash-image-preview": ("0.5K", "1K", "2K", "4K"),
}
"""``resolution`` values per underlying model (2.5 Flash Image takes none); the default is ``1K``."""
RESOLUTION_TO_GEMINI_TIER = {"0.5K": gemini.IMAGE_SIZE_512, "1K": "1K", "2K": "2K", "4K": "4K"}

FLUX_APPS = ("fal-ai/flux/dev", "fal-ai/flux/schnell", "fal-ai/flux/dev/image-to-image",
             "fal-ai/stable-diffusion-v35-large")
"""FLUX-style apps (``image_size``, ``has_nsfw_concepts``, ``timings``) the sandbox serves."""
IMAGE_TO_IMAGE_SUFFIX = "/image-to-image"


def gemini_model(app_id: str) -> str | None:
    """The Gemini model behind a Nano Banana app (``fal-ai/nano-banana/edit`` -> ``gemini-2.5-flash-image``)."""
    return GEMINI_APPS.get(app_id.removesuffix("/edit"))


def is_edit_app(app_id: str) -> bool:
    return app_id.endswith("/edit") or app_id.endswith(IMAGE_TO_IMAGE_SUFFIX)


def gemini_pixel_size(app_id: str, aspect_ratio: str, resolution: str | None) -> tuple[int, int] | None:
    """Pixel size of a Nano Banana app's output, or ``None`` where Google publishes none (``0.5K``)."""
    model = gemini_model(app_id)
    if model is None:
        return None
    tier = RESOLUTION_TO_GEMINI_TIER.get(resolution or "1K") if model in GEMINI_RESOLUTIONS else None
    if model in GEMINI_RESOLUTIONS and tier is None:
        return None
    return gemini.pixel_size(model, aspect_ratio, tier)


def flux_pixel_size(image_size: Any) -> tuple[int, int] | None:
    """Pixel size for an ``image_size`` value (enum name or ``{"width", "height"}``); ``None`` if invalid."""
    if image_size is None:
        return IMAGE_SIZES[DEFAULT_IMAGE_SIZE]
    if isinstance(image_size, str):
        return IMAGE_SIZES.get(image_size)
    if isinstance(image_size, dict):
        w, h = image_size.get("width"), image_size.get("height")
        if isinstance(w, int) and isinstance(h, int) and 0 < w <= FLUX_MAX_SIDE and 0 < h <= FLUX_MAX_SIDE:
            return w, h
    return None


def billable_units(app_id: str, sizes: list[tuple[int, int]]) -> float:
    """Units fal bills for an output: images for the Nano Banana apps, megapixels (each image rounded up to a
    whole megapixel) for FLUX-style apps. [INF: the rounding rule is fal's price page wording, unverified]"""
    if gemini_model(app_id) is not None:
        return float(len(sizes))
    return float(sum(max(1, -(-(w * h) // 1_000_000)) for w, h in sizes))


# ---- errors ---------------------------------------------------------------------------------------------

AUTH_NO_USER = "No user found for Key ID and Secret"
AUTH_MISSING = "Missing authorization header"
AUTH_BAD_FORMAT = "Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."
LOCKED_BALANCE = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
"""403 for an account whose balance ran out (observed verbatim in fal-ai/fal issues #1112, #1147)."""
APP_NOT_FOUND = "Application '{app}' not found"
STILL_IN_PROGRESS = "Request is still in progress"
REQUEST_NOT_FOUND = "Request not found"
CANCELLED = "Request was cancelled"
RATE_LIMITED = "Too many concurrent requests; retry later"
"""[INF] wording of the 429 a sync call over the account's concurrency gets (the queue waits instead)."""

REQUEST_ERROR_STATUS: dict[str, int] = {
    "request_timeout": 504, "startup_timeout": 504, "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503, "runner_disconnected": 503, "runner_connection_refused": 503,
    "runner_connection_error": 503, "runner_incomplete_response": 502, "runner_server_error": 500,
    "internal_error": 500, "request_cancelled": 400,
}
"""Request/infrastructure ``error_type`` values and the status they come with."""
REQUEST_ERROR_DETAIL: dict[str, str] = {
    "request_timeout": "Request timed out", "startup_timeout": "Runner startup timed out",
    "runner_scheduling_failure": "Failed to schedule a runner for the request",
    "runner_disconnected": "Runner disconnected during processing", "internal_error": "Internal server error",
    "request_cancelled": CANCELLED,
}

REFUSAL_TYPES = frozenset({"content_policy_violation"})
NO_MEDIA_TYPES = frozenset({"no_media_generated"})
SERVER_TYPES = frozenset({"downstream_service_error", "internal_server_error", "generation_timeout",
                          "downstream_service_unavailable"})
"""Model-error ``type`` values that are the provider's failure, not the request's."""
TIMEOUT_TYPES = frozenset({"request_timeout", "startup_timeout"})
"""``error_type`` values of a start timeout (504 with ``X-Fal-Request-Timeout-Type: user`` when the client set it)."""

MESSAGES: dict[str, str] = {
    "missing": "Field required",
    "content_policy_violation": ("The content could not be processed because it contained material flagged by "
                                 "a content checker."),
    "output_flagged": "The generated image was flagged by the content checker.",
    "no_media_generated": "The model did not generate any media for this request. Try a different prompt.",
    "file_download_error": "Failed to download the file. Please check if the URL is accessible.",
    "image_load_error": "Failed to load the image. Please check that the file is a valid image.",
    "internal_server_error": "Internal server error",
}
"""Model-error messages the sandbox sends (the ``type`` values are fal's; the wording is [INF])."""


def validation_item(loc: list[str | int], msg: str, type_: str, input_: Any = None,
                    ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of a model error's ``detail`` list, with fal's per-type docs link."""
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_, "url": f"https://docs.fal.ai/errors#{type_}"}
    if input_ is not None:
        item["input"] = input_
    if ctx:
        item["ctx"] = ctx
    return item


def request_error(error_type: str, detail: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a request/infrastructure error."""
    status = REQUEST_ERROR_STATUS.get(error_type, 500)
    body = {"detail": detail or REQUEST_ERROR_DETAIL.get(error_type, error_type), "error_type": error_type}
    headers = {ERROR_TYPE_HEADER: error_type, RETRYABLE_HEADER: "true" if status >= 502 else "false"}
    return status, body, headers
