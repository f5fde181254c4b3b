"""Gemini API (generativelanguage) wire facts, shared by the adapter and the sandbox server.

Sources: https://ai.google.dev/api/generate-content, https://ai.google.dev/gemini-api/docs/image-generation and
the official SDK (https://github.com/googleapis/python-genai).

Endpoints ``POST {base}/v1beta/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse`` (SSE
framed with CRLF, one whole ``GenerateContentResponse`` per ``data:`` line, no ``[DONE]``); auth by the
``x-goog-api-key`` header or ``?key=``; errors in the ``google.rpc.Status`` envelope
``{"error": {"code", "message", "status", "details"}}``; safety blocks arrive as HTTP 200
(``promptFeedback.blockReason``, candidate ``finishReason``); no request-id header (the body's
``responseId`` is the id).

Output pixel sizes are Google's published grids: Gemini 2.5 Flash Image has one 1K grid and takes no
``imageSize``; the Gemini 3 image models share a different 1K grid, with 2K and 4K exactly two and four times
it (Google's table for gemini-3-pro-image-preview; 3.1 Flash adds the 1:4, 4:1, 1:8 and 8:1 ratios). The
``512`` tier of 3.1 Flash has no published grid, so no size is expected there.
"""

from __future__ import annotations

import re
from typing import Any

API_VERSION = "v1beta"
SANDBOX_PREFIX = "/gemini"
GENERATE = "generateContent"
STREAM = "streamGenerateContent"
API_KEY_HEADER = "x-goog-api-key"
API_KEY_QUERY = "key"


def method_path(model: str, method: str, version: str = API_VERSION) -> str:
    """``/v1beta/models/gemini-2.5-flash-image:generateContent`` (a ``models/`` prefix on ``model`` is kept once)."""
    model = model.removeprefix("models/")
    return f"/{version}/models/{model}:{method}"


ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTRA_RATIOS_31 = ("1:4", "4:1", "1:8", "8:1")
"""Ratios only gemini-3.1-flash-image accepts."""
IMAGE_SIZES = ("1K", "2K", "4K")
IMAGE_SIZE_512 = "512"
"""The smallest tier, 3.1 Flash only (OpenRouter calls it ``0.5K``)."""
TIER_SCALE = {"1K": 1, "2K": 2, "4K": 4}

SIZES_25: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}
"""gemini-2.5-flash-image output size per aspect ratio (the table in
https://ai.google.dev/gemini-api/docs/image-generation)."""

SIZES_3_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200), "4:3": (1200, 896),
    "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376), "16:9": (1376, 768), "21:9": (1584, 672),
    "1:4": (512, 2064), "4:1": (2064, 512), "1:8": (352, 2928), "8:1": (2928, 352),
}
"""Gemini 3 image models' 1K output size per aspect ratio; 2K and 4K are exact multiples."""

IMAGE_TOKENS: dict[str, dict[str, int]] = {
    "gemini-2.5": {"1K": 1290},
    "gemini-3-pro": {"1K": 1120, "2K": 1120, "4K": 2000},
    "gemini-3.1-flash": {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
}
"""Output tokens per image by model family and tier (https://ai.google.dev/gemini-api/docs/pricing; 3.1 Flash's
tiers inferred from its per-image prices). The sandbox reports these; the adapter only reads what the response says."""

SAFETY_FINISH_REASONS = frozenset({
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})
"""Candidate ``finishReason`` values that mean a safety or policy filter removed the output."""

BLOCK_REASONS = ("SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "IMAGE_SAFETY")
"""``promptFeedback.blockReason`` values of the developer API (any value at all means the prompt was blocked)."""

STATUS_CODES: dict[str, int] = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
"""``google.rpc.Code`` names and the HTTP status the API sends with each."""

TYPE_PREFIX = "type.googleapis.com/google.rpc."

MESSAGES: dict[str, str] = {
    "api_key_invalid": "API key not valid. Please pass a valid API key.",
    "missing_key": ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                    "API Key or other form of API consumer identity to call this API."),
    "model_not_found": ("models/{model} is not found for API version {version}, or is not supported for "
                        "{method}. Call ListModels to see the list of available models and their supported "
                        "methods."),
    "multiple_candidates": "Multiple candidates is not enabled for models/{model}",
    "quota_minute": ("You exceeded your current quota, please check your plan and billing details. For more "
                     "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To "
                     "monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded "
                     "for metric: generativelanguage.googleapis.com/generate_content_paid_tier_requests, limit: "
                     "{limit}, model: {model}\nPlease retry in {retry}s."),
    "quota_day": ("You exceeded your current quota, please check your plan and billing details. For more "
                  "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To "
                  "monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded "
                  "for metric: generativelanguage.googleapis.com/generate_content_paid_tier_requests_per_day, "
                  "limit: {limit}, model: {model}\nPlease retry in {retry}s."),
    "internal": ("An internal error has occurred. Please retry or report in "
                 "https://developers.generativeai.google/guide/troubleshooting"),
    "overloaded": "The model is overloaded. Please try again later.",
    "deadline": "Deadline expired before operation could complete.",
    "payload_too_large": "Request payload size exceeds the limit: 20971520 bytes.",
    "bad_image": ("Unable to process input image. Please retry or report in "
                  "https://developers.generativeai.google/guide/troubleshooting"),
}
"""Error messages as the live API sends them (status codes and meanings:
https://ai.google.dev/gemini-api/docs/troubleshooting); ``{...}`` fields are filled in per request."""

QUOTA_PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel"
QUOTA_PER_DAY = "GenerateRequestsPerDayPerProjectPerModel"


def model_family(model: str) -> str:
    """``gemini-2.5``, ``gemini-3-pro`` or ``gemini-3.1-flash`` (the families with different size grids)."""
    model = model.removeprefix("models/").removeprefix("google/")
    if model.startswith("gemini-3.1"):
        return "gemini-3.1-flash"
    if model.startswith("gemini-3"):
        return "gemini-3-pro"
    return "gemini-2.5"


def is_thinking_model(model: str) -> bool:
    """Gemini 3 image models think before drawing and send ``thought: true`` parts."""
    return model_family(model) != "gemini-2.5"


def takes_image_size(model: str) -> bool:
    """Whether ``imageConfig.imageSize`` is accepted (the Gemini 3 image models only)."""
    return is_thinking_model(model)


def aspect_ratios(model: str) -> tuple[str, ...]:
    return ASPECT_RATIOS + (EXTRA_RATIOS_31 if model_family(model) == "gemini-3.1-flash" else ())


def image_sizes(model: str) -> tuple[str, ...]:
    family = model_family(model)
    if family == "gemini-2.5":
        return ()
    return (IMAGE_SIZE_512, *IMAGE_SIZES) if family == "gemini-3.1-flash" else IMAGE_SIZES


def pixel_size(model: str, aspect_ratio: str, image_size: str | None) -> tuple[int, int] | None:
    """The output size Google documents for ``model`` at this ratio and tier, or ``None`` where none is published.

    ``image_size`` is ignored for 2.5 Flash Image (it has one size per ratio); ``None`` means the default ``1K``.
    """
    if model_family(model) == "gemini-2.5":
        return SIZES_25.get(aspect_ratio)
    base = SIZES_3_1K.get(aspect_ratio)
    scale = TIER_SCALE.get(image_size or "1K")
    if base is None or scale is None or aspect_ratio not in aspect_ratios(model):
        return None
    return base[0] * scale, base[1] * scale


def nearest_ratio(model: str, width: int, height: int) -> str:
    """The model's aspect ratio closest to ``width:height`` (what an edit without a ratio gets)."""
    target = width / height

    def distance(ratio: str) -> float:
        w, h = (int(v) for v in ratio.split(":"))
        return abs(target - w / h)

    return min(aspect_ratios(model), key=distance)


def image_tokens(model: str, image_size: str | None) -> int:
    table = IMAGE_TOKENS[model_family(model)]
    return table.get(image_size or "1K", table.get("1K", 1290))


def status_body(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``google.rpc.Status`` error envelope."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def error_info(reason: str, domain: str = "googleapis.com", **metadata: str) -> dict[str, Any]:
    return {"@type": TYPE_PREFIX + "ErrorInfo", "reason": reason, "domain": domain,
            "metadata": {"service": "generativelanguage.googleapis.com", **metadata}}


def retry_info(seconds: float) -> dict[str, Any]:
    return {"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": duration(seconds)}


def quota_failure(quota_id: str, model: str, metric: str) -> dict[str, Any]:
    return {"@type": TYPE_PREFIX + "QuotaFailure", "violations": [{
        "quotaMetric": metric, "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "0"}]}


def help_links() -> dict[str, Any]:
    return {"@type": TYPE_PREFIX + "Help", "links": [{
        "description": "Learn more about Gemini API quotas",
        "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}


def duration(seconds: float) -> str:
    """A protobuf JSON ``Duration``: ``"36s"``, ``"3.957525076s"``."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


_DURATION = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)(s|ms)\s*$")


def parse_duration(text: str) -> float | None:
    """Seconds in a protobuf ``Duration`` string, ``None`` if it is not one."""
    match = _DURATION.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1000.0 if match.group(2) == "ms" else value


# --- Batch Mode (https://ai.google.dev/gemini-api/docs/batch-mode, https://ai.google.dev/api/batch-mode) ---
BATCH_GENERATE = "batchGenerateContent"
"""``POST {base}/v1beta/models/{model}:batchGenerateContent`` with ``{"batch": {"displayName", "inputConfig":
{"requests": {"requests": [{"request": GenerateContentRequest, "metadata": {"key": …}}]}}}}`` (inline requests;
the google-genai SDK's ``_InlinedRequest_to_mldev``) answers an Operation named ``batches/{id}``."""
BATCHES_PATH = "/batches"
"""``GET {base}/v1beta/batches/{id}`` polls a job; ``POST {base}/v1beta/batches/{id}:cancel`` cancels it."""
BATCH_CANCEL = "cancel"
BATCH_STATES = ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED",
                "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")
"""The REST API's ``metadata.state`` values; the SDK shows them as ``JOB_STATE_*`` (google-genai
``_transformers.t_job_state``)."""
BATCH_TERMINAL = frozenset({"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED",
                            "BATCH_STATE_EXPIRED"})
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
BATCH_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
BATCH_MAX_INLINE_BYTES = 20 * 1024 * 1024
"""Inline requests must keep the whole create request under 20 MB (Batch Mode guide, "Inline requests")."""
BATCH_DISCOUNT = 0.5
BATCH_DISCOUNT_URL = "https://ai.google.dev/gemini-api/docs/batch-mode"
"""Batch Mode is priced at 50 % of the interactive rate, with a 24-hour target turnaround (Batch Mode guide;
https://developers.googleblog.com/scale-your-ai-workloads-batch-mode-gemini-api: "Batch jobs are priced at 50%
less than the standard rate for a given model")."""
BATCH_EXPIRED_NOTE = ("A job pending or running for more than 48 hours expires (JOB_STATE_EXPIRED) and has no "
                      "results to retrieve (Batch Mode guide, job states).")
RPC_CODES: dict[str, int] = {"INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "PERMISSION_DENIED": 7,
                             "RESOURCE_EXHAUSTED": 8, "CANCELLED": 1, "INTERNAL": 13, "UNAVAILABLE": 14}
"""``google.rpc.Code`` numbers: an inlined response's ``error`` is a ``google.rpc.Status`` with these codes
(https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto)."""
