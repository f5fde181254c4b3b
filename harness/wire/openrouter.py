"""OpenRouter chat-completions wire facts for image output, shared by adapter and sandbox.

Source: https://openrouter.ai/docs/features/multimodal/image-generation.

``POST {base}/chat/completions`` (OpenAI chat schema) with ``modalities`` and ``image_config``;
``Authorization: Bearer``; images come back as data URLs (or https URLs) in ``choices[0].message.images`` or,
streaming, whole in one ``delta.images`` chunk; ``usage.cost`` is the USD charged; ``X-Generation-Id`` equals the
body ``id``. Streams are LF-framed SSE ``data:`` lines with ``: OPENROUTER PROCESSING`` keep-alive comments and
a final ``data: [DONE]``. Errors use ``{"error": {"code": <HTTP status>, "message", "metadata"}}``, also inside
an HTTP 200 body or a stream chunk when the failure happened after the response started.
"""

from __future__ import annotations

from typing import Any

COMPLETIONS_PATH = "/chat/completions"
SANDBOX_PREFIX = "/openrouter/api/v1"
GENERATION_ID_HEADER = "x-generation-id"
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
"""Sent on OpenRouter's own 429s only; ``X-RateLimit-Reset`` is a Unix time in milliseconds."""
ATTRIBUTION_HEADERS = {"referer": "HTTP-Referer", "title": "X-Title"}
"""Target options -> optional app attribution headers."""

PROCESSING_COMMENT = "OPENROUTER PROCESSING"
DONE = "[DONE]"

MODALITIES_IMAGE_TEXT = ("image", "text")
MODALITIES_IMAGE_ONLY = ("image",)

IMAGE_SIZES = ("1K", "2K", "4K")
IMAGE_SIZE_HALF = "0.5K"
"""OpenRouter's name for Gemini 3.1 Flash's ``512`` tier."""

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "error")

IMAGE_PRICE_PER_MTOK_USD = {"gemini-2.5": 30.0, "gemini-3-pro": 120.0, "gemini-3.1-flash": 60.0}
"""Output image-token prices OpenRouter passes through from Google (https://ai.google.dev/gemini-api/docs/pricing),
USD per 1M tokens."""
PROMPT_PRICE_PER_MTOK_USD = {"gemini-2.5": 0.30, "gemini-3-pro": 2.0, "gemini-3.1-flash": 0.50}


def is_gemini(model: str) -> bool:
    """Google's image models, whose sizes and safety behaviour follow the Gemini API."""
    return model.startswith("google/gemini")


def gemini_id(model: str) -> str:
    """``google/gemini-2.5-flash-image`` -> ``gemini-2.5-flash-image``."""
    return model.removeprefix("google/")


def error_body(code: int, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error envelope (the OpenAI SDK unwraps ``body["error"]``)."""
    error: dict[str, Any] = {"message": message, "code": code}
    if metadata:
        error["metadata"] = metadata
    return {"error": error}


ERRORS: dict[str, tuple[int, str]] = {
    "no_auth": (401, "No auth credentials found"),
    "user_not_found": (401, "User not found."),
    "insufficient_credits": (
        402, "Insufficient credits. This account never purchased credits. Make sure your key is on the correct "
             "account or org, and if so, purchase more at https://openrouter.ai/settings/credits"),
    "moderation": (403, "{model} requires moderation on {provider}. Your input was flagged for \"{reason}\". No "
                        "credits were charged."),
    "invalid_model": (400, "{model} is not a valid model ID"),
    "context_length": (
        400, "This endpoint's maximum context length is 32768 tokens. However, you requested about 40120 tokens "
             "(40120 of text input). Please reduce the length of either one, or use the \"middle-out\" transform "
             "to compress your prompt automatically."),
    "upstream_rate_limited": (
        429, "Provider returned error"),
    "platform_rate_limited": (429, "Rate limit exceeded: free-models-per-min. "),
    "server": (500, "Internal Server Error"),
    "provider_unavailable": (502, "Provider returned error"),
    "no_provider": (503, "No allowed providers are available for the selected model."),
}
"""Error shapes as the live API sends them (https://openrouter.ai/docs/api-reference/errors): HTTP status and
message; ``{...}`` fields are filled per request."""

UPSTREAM_RATE_LIMITED_RAW = ("{model} is temporarily rate-limited upstream. Please retry shortly, or add your own key "
                             "to accumulate your rate limits: https://openrouter.ai/settings/integrations")

REFUSAL_ERROR_TYPES = frozenset({"content_policy_violation", "refusal", "moderation"})
"""``metadata.error_type`` values that mean a safety system declined the request."""


MODELS_PATH = "/models"
"""``GET {base}/models``: every model with ``architecture.input_modalities`` (``"text"``, ``"image"``, …) and
``pricing`` (USD per token as strings, https://openrouter.ai/docs/api-reference/list-available-models): how a
judge target is checked for image input before anything is spent."""

JUDGE_MAX_TOKENS = 400
"""Completion tokens a judge answer may use (a short reason and the verdict line)."""
