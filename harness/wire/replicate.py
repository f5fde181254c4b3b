"""Replicate predictions API wire facts, shared by the adapter and the sandbox server.

Sources: https://replicate.com/docs/reference/http and the official client
(https://github.com/replicate/replicate-python).

Create a prediction with ``POST {base}/models/{owner}/{name}/predictions`` (official models), ``POST
{base}/predictions`` with a ``version`` (``<64-hex>`` or ``owner/name:<id>``) or ``POST
{base}/deployments/{owner}/{name}/predictions``; the body is ``{"input": {...}}``. Auth is ``Authorization:
Bearer r8_...`` (legacy ``Token r8_...`` too). Create answers ``201 Created`` with the prediction object and
its ``urls.get`` in ``Location``.

``Prefer: wait`` (60 s) or ``Prefer: wait=N`` (1–60) holds the create request until the prediction is done or
N seconds pass. On expiry the body is the in-flight prediction, reported as ``starting`` even when it already
runs (the replicate SDK's ``run`` relies on this: any other status from a blocking create counts as done). For
file outputs the answer may come as soon as the files exist: ``output`` set while ``status`` is still
``processing``. ``Cancel-After: <duration>`` sets a deadline: a prediction not yet started becomes
``aborted``, a running one ``canceled``.

Statuses ``starting`` -> ``processing`` -> ``succeeded`` | ``failed`` | ``canceled`` (| ``aborted``). Model
failures are not HTTP errors: ``failed`` with an ``error`` string (safety filters say "NSFW" or "flagged as
sensitive"). HTTP errors are RFC 7807 problem details (``title``, ``detail``, ``status``; validation adds
``invalid_fields``). Outputs are file URLs on ``replicate.delivery``: one string (Nano Banana) or a list
(FLUX, SD 3.5). Provider timings: ``metrics.predict_time`` and ``metrics.total_time`` (seconds) and the
``created_at``/``started_at``/``completed_at`` timestamps.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from harness.wire import gemini

SANDBOX_PREFIX = "/replicate/v1"
SANDBOX_DELIVERY = "/delivery"
SANDBOX_STREAM = "/stream"
"""Paths under :data:`SANDBOX_PREFIX` standing in for ``replicate.delivery`` and ``stream.replicate.com``."""

AUTH_SCHEMES = ("Bearer", "Token")
PREFER_HEADER = "prefer"
CANCEL_AFTER_HEADER = "cancel-after"
LOCATION_HEADER = "location"
MAX_WAIT_S = 60
"""``Prefer: wait`` without a number holds this long; ``wait=N`` takes 1..60."""

STARTING = "starting"
PROCESSING = "processing"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
ABORTED = "aborted"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED, ABORTED})

MODEL_PREDICTIONS = "/models/{owner}/{name}/predictions"
VERSION_PREDICTIONS = "/predictions"
DEPLOYMENT_PREDICTIONS = "/deployments/{owner}/{name}/predictions"
PREDICTION = "/predictions/{id}"
CANCEL = "/predictions/{id}/cancel"

_PREFER = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$", re.IGNORECASE)
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_prefer_wait(value: str | None) -> int | None:
    """Seconds to hold a create request for ``Prefer: wait[=N]``; ``None`` without the header.

    Raises ``ValueError`` for a malformed value or N outside 1..60.
    """
    if value is None or not value.strip():
        return None
    match = _PREFER.match(value)
    if match is None:
        raise ValueError(f"Prefer header must be 'wait' or 'wait=N', got {value!r}")
    if match.group(1) is None:
        return MAX_WAIT_S
    seconds = int(match.group(1))
    if not 1 <= seconds <= MAX_WAIT_S:
        raise ValueError(f"Prefer: wait=N takes N between 1 and {MAX_WAIT_S}, got {seconds}")
    return seconds


def parse_duration(value: str) -> float:
    """Seconds in a Go-style duration (``"1m"``, ``"90s"``, ``"1h30m"``, ``"500ms"``) as ``Cancel-After``
    takes it. Raises ``ValueError`` otherwise."""
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        amount = float(match.group(1))
        total += amount * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"not a duration like '5m' or '90s': {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Go-style duration for ``seconds`` (``"90s"``, ``"2m"``, ``"1500ms"``)."""
    if seconds < 1 or not float(seconds).is_integer():
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 and whole >= 60 else f"{whole}s"


def parse_timestamp(value: Any) -> datetime | None:
    """A prediction timestamp (``2026-08-01T12:00:00.600Z``, also with ``+00:00`` or more digits)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match and match.group(2):
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def format_timestamp(moment: datetime) -> str:
    """Replicate's timestamp form: UTC with microseconds and ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 7807 problem-details body as Replicate sends it."""
    return {"title": title, "detail": detail, "status": status, **extra}


ERRORS: dict[str, tuple[int, str, str]] = {
    "unauthenticated": (401, "Unauthenticated", "You did not pass a valid authentication token"),
    "insufficient_credit": (
        402, "Insufficient credit",
        "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to "
        "purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
    ),
    "not_found": (404, "Not found", "The requested resource could not be found."),
    "invalid_version": (422, "Invalid version or not permitted",
                        "The specified version does not exist (or perhaps you don't have permission to use it?)"),
    "throttled": (429, "Request was throttled", "Request was throttled. Your rate limit resets in ~{seconds}s."),
    "bad_prefer": (400, "Invalid Prefer header", "{message}"),
    "bad_cancel_after": (400, "Invalid Cancel-After header", "{message}"),
    "server_error": (500, "Internal Server Error", "An unexpected error occurred. Please try again later."),
    "unavailable": (503, "Service Unavailable", "The service is temporarily unavailable. Please try again later."),
}
"""Problem details (RFC 7807) by name: status, title and detail; the 400/500/503 wording is inferred, the others
are as the live API sends them."""

THROTTLE_HINT = re.compile(r"resets in ~?\s*([0-9]+(?:\.[0-9]+)?)\s*s", re.IGNORECASE)
"""The wait inside a 429 detail ("Your rate limit resets in ~30s.")."""

VALIDATION_TITLE = "Input validation failed"

SAFETY_FAILURE = re.compile(
    r"nsfw|flagged as sensitive|\(E005\)|content polic|safety (?:filter|system|checker)|sensitive content",
    re.IGNORECASE,
)
"""Failure texts that are a safety filter, not a model crash."""

FAILURE_MESSAGES: dict[str, str] = {
    "flagged": "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
    "nsfw": "NSFW content detected. Try running it again, or try a different prompt.",
    "oom": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)",
    "interrupted": "Prediction interrupted; please retry (code: PA)",
    "deadline": "Prediction exceeded its Cancel-After deadline",
}
"""``error`` strings of failed predictions the sandbox sends (E005 and PA as seen in the wild)."""


def validation_problem(errors: list[tuple[str, str, str]]) -> dict[str, Any]:
    """422 body for ``(type, field, description)`` triples, with the ``- field: description`` detail lines."""
    detail = "".join(f"- {field}: {description}\n" for _, field, description in errors)
    return problem(422, VALIDATION_TITLE, detail,
                   invalid_fields=[{"type": t, "field": f, "description": d} for t, f, d in errors])


# ---- models -------------------------------------------------------------------------------------------------

GEMINI_MODELS: dict[str, str] = {
    "google/nano-banana": "gemini-2.5-flash-image",
    "google/nano-banana-pro": "gemini-3-pro-image-preview",
    "google/nano-banana-2": "gemini-3.1-flash-image-preview",
}
"""Replicate models that serve a Gemini image model, and that model (their sizes are Google's grid)."""
GEMINI_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    "gemini-3-pro-image-preview": ("1K", "2K", "4K"),
    "gemini-3.1-flash-image-preview": ("1K", "2K", "4K"),
}
MATCH_INPUT_IMAGE = "match_input_image"
GEMINI_OUTPUT_FORMATS = ("jpg", "png")
GEMINI_IMAGE_FIELD = "image_input"
MAX_IMAGE_INPUTS = 14

FLUX_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832), "2:3": (832, 1216),
    "4:5": (896, 1088), "5:4": (1088, 896), "3:4": (896, 1152), "4:3": (1152, 896), "9:16": (768, 1344),
    "9:21": (640, 1536),
}
"""FLUX models' output size per ``aspect_ratio`` at the default 1 megapixel (Replicate's cog-flux table)."""
FLUX_OUTPUT_FORMATS = ("webp", "jpg", "png")
FLUX_MODELS = ("black-forest-labs/flux-schnell", "black-forest-labs/flux-dev")
SD_MODELS = ("stability-ai/stable-diffusion-3.5-large",)
"""List-output models with the FLUX-style ``aspect_ratio`` enum (SD 3.5's pixel sizes are not published)."""
MAX_OUTPUTS = 4


def gemini_model(model: str) -> str | None:
    return GEMINI_MODELS.get(model)


def list_output(model: str) -> bool:
    """Whether ``output`` is a list of URLs (FLUX, SD) rather than one URL string (Nano Banana)."""
    return gemini_model(model) is None


def pixel_size(model: str, aspect_ratio: str | None, resolution: str | None) -> tuple[int, int] | None:
    """The documented output size, or ``None`` where it is not known (``match_input_image``, SD 3.5)."""
    gem = gemini_model(model)
    if gem is not None:
        if aspect_ratio in (None, MATCH_INPUT_IMAGE):
            return None
        tier = (resolution or "1K") if gem in GEMINI_RESOLUTIONS else None
        return gemini.pixel_size(gem, aspect_ratio, tier)
    if model in FLUX_MODELS:
        return FLUX_SIZES.get(aspect_ratio or "1:1")
    return None

