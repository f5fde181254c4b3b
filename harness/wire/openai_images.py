"""OpenAI Images API wire facts, shared by the adapter and the sandbox server.

Sources: https://platform.openai.com/docs/api-reference/images and the official SDK
(https://github.com/openai/openai-python).

Endpoints ``POST {base}/images/generations`` (JSON) and ``POST {base}/images/edits`` (multipart with
``image[]`` parts and an optional ``mask``); ``Authorization: Bearer``; errors in the envelope
``{"error": {"message", "type", "param", "code"}}``; request id in ``x-request-id``; SSE streaming with
``event:`` names equal to the payload ``type``.
"""

from __future__ import annotations

from typing import Any

GENERATIONS_PATH = "/images/generations"
EDITS_PATH = "/images/edits"
SANDBOX_PREFIX = "/openai/v1"

REQUEST_ID_HEADER = "x-request-id"
PROCESSING_MS_HEADER = "openai-processing-ms"
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
)

EDIT_IMAGE_FIELDS = ("image[]", "image")
"""Multipart field names for input images: the SDK sends ``image[]`` for a list, curl docs also ``image``."""

GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
QUALITIES_GPT_IMAGE = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_PARTIAL_IMAGES = 3

EVENT_PARTIAL = {"generations": "image_generation.partial_image", "edits": "image_edit.partial_image"}
EVENT_COMPLETED = {"generations": "image_generation.completed", "edits": "image_edit.completed"}
EVENT_ERROR = "error"

OUTPUT_TOKENS = {
    ("low", "1024x1024"): 272, ("low", "1024x1536"): 408, ("low", "1536x1024"): 400,
    ("medium", "1024x1024"): 1056, ("medium", "1024x1536"): 1584, ("medium", "1536x1024"): 1568,
    ("high", "1024x1024"): 4160, ("high", "1024x1536"): 6240, ("high", "1536x1024"): 6208,
}
"""gpt-image-1 output image tokens by (quality, size) (the cost table in
https://platform.openai.com/docs/guides/image-generation)."""

ASPECT_TO_SIZE = {
    "1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536", "4:3": "1536x1024", "3:4": "1024x1536",
    "16:9": "1536x1024", "9:16": "1024x1536", "21:9": "1536x1024", "5:4": "1024x1024", "4:5": "1024x1024",
}
"""Nearest GPT-image size for a requested aspect ratio (the API has only square, landscape and portrait)."""


def is_gpt_image(model: str) -> bool:
    return model.startswith(("gpt-image", "chatgpt-image"))


def valid_sizes(model: str) -> tuple[str, ...]:
    if model == "dall-e-3":
        return DALLE3_SIZES
    if model == "dall-e-2":
        return DALLE2_SIZES
    return GPT_IMAGE_SIZES


def pixel_size(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` -> (1536, 1024); ``"auto"`` -> None."""
    if "x" not in size:
        return None
    w, h = size.split("x")
    return int(w), int(h)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The error envelope the API returns (and the SDK unwraps from ``body["error"]``)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# Error shapes as the live API sends them (https://platform.openai.com/docs/guides/error-codes): status, type,
# code, message.
ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "moderation_blocked": (
        400, "image_generation_user_error", "moderation_blocked",
        "Your request was rejected by the safety system. If you believe this is an error, contact us at "
        "help.openai.com and include the request ID {request_id}. safety_violations=[violence].",
    ),
    "invalid_size": (400, "invalid_request_error", "invalid_value",
                     "Invalid value: '{size}'. Supported values are: {supported}."),
    "response_format_gpt_image": (400, "invalid_request_error", "unknown_parameter",
                                  "Unknown parameter: 'response_format'."),
    "invalid_api_key": (
        401, "invalid_request_error", "invalid_api_key",
        "Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "missing_api_key": (
        401, "invalid_request_error", None,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    ),
    "organization_not_verified": (
        403, "invalid_request_error", None,
        "Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization.",
    ),
    "model_not_found": (404, "invalid_request_error", "model_not_found",
                        "The model `{model}` does not exist or you do not have access to it."),
    "rate_limit_exceeded": (
        429, "requests", "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-sandbox on images per min (IPM): Limit {limit}, "
        "Used {limit}, Requested 1. Please try again in {retry_s}s.",
    ),
    "insufficient_quota": (429, "insufficient_quota", "insufficient_quota",
                           "You exceeded your current quota, please check your plan and billing details."),
    "server_error": (500, "server_error", None,
                     "The server had an error while processing your request. Sorry about that!"),
    "overloaded": (503, "server_error", "slow_down", "The engine is currently overloaded, please try again later."),
}


def go_duration(seconds: float) -> str:
    """Go-style duration used by ``x-ratelimit-reset-*`` headers: ``12ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


# --- Batch API (https://platform.openai.com/docs/guides/batch, https://platform.openai.com/docs/api-reference/batch)
FILES_PATH = "/files"
"""``POST {base}/files`` (multipart: ``file``, ``purpose=batch``) uploads a batch's JSONL input;
``GET {base}/files/{id}/content`` downloads a batch's output or error file."""
BATCHES_PATH = "/batches"
"""``POST {base}/batches`` creates a batch; ``GET {base}/batches/{id}`` polls it; ``POST .../{id}/cancel``."""
BATCH_PURPOSE = "batch"
BATCH_ENDPOINT = "/v1/images/generations"
"""The batch ``endpoint`` (and every input line's ``url``) for image generations. The published enum also
allows ``/v1/images/edits`` (openai-python ``BatchCreateParams.endpoint``); a batch line's body is JSON, so the
harness batches generations only."""
BATCH_COMPLETION_WINDOW = "24h"
"""The only ``completion_window`` the API accepts (openai-python ``BatchCreateParams``)."""
BATCH_STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                  "cancelled")
"""``Batch.status`` values (openai-python ``types/batch.py``)."""
BATCH_TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})
BATCH_EXPIRED_CODE = "batch_expired"
"""An error-file line's ``error.code`` for a request the batch did not reach before its window ended
(https://platform.openai.com/docs/guides/batch: an expired batch returns the completed work; the rest fails)."""
BATCH_CANCELLED_CODE = "batch_cancelled"
BATCH_MAX_REQUESTS = 50_000
"""Most requests one batch input file may hold (openai-python ``batches.create`` docstring: up to 50,000
requests and 200 MB)."""
BATCH_MAX_FILE_BYTES = 200 * 1024 * 1024
BATCH_DISCOUNT = 0.5
BATCH_DISCOUNT_URL = "https://help.openai.com/en/articles/9197833-batch-api-faq"
"""Batch requests cost 50 % of the synchronous price ("Each model will be offered at 50% cost discount vs.
the synchronous APIs", OpenAI's Batch API FAQ)."""
