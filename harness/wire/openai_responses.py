"""OpenAI Responses API wire facts for its image-generation tool, shared by the adapter and the sandbox server.

Sources (read, not copied):

* the Responses API reference, https://platform.openai.com/docs/api-reference/responses/create
  (``POST /v1/responses``; ``model``, ``input``, ``tools``, ``tool_choice``, ``store``,
  ``previous_response_id``, ``stream``);
* the image-generation guide, https://developers.openai.com/api/docs/guides/image-generation ("Multi-turn
  editing: iteratively make high fidelity edits to images with prompting"; the tool's options; mainline models
  that call the tool);
* the official SDK's generated types, https://github.com/openai/openai-python/tree/main/src/openai/types/responses
  (``response.py``: ``Response.status``, ``error``, ``incomplete_details``, ``usage``, ``tool_usage.image_gen``;
  ``response_output_item.py``: ``ImageGenerationCall`` with base64 ``result``, ``status``, ``revised_prompt``,
  ``error``; ``tool_param.py``: ``ImageGeneration``; ``response_input_image_param.py``: ``input_image`` with
  ``image_url`` and ``detail``; ``response_image_gen_call_partial_image_event.py``: ``partial_image_b64``;
  ``response_error.py``: the codes of a failed response).

Conversations: a turn after the first sends only its own input and ``previous_response_id`` (the earlier
response must have been created with ``store: true``); the API answers an id it does not hold with 400
``invalid_request_error`` / ``previous_response_not_found``, "Previous response with id '...' not found."
(as reported against the live API, https://github.com/maximhq/bifrost/issues/2441 and
https://github.com/bigduu/Bamboo-agent/pull/513).
"""

from __future__ import annotations

from typing import Any

from harness.wire.openai_images import (
    ERRORS,
    OUTPUT_TOKENS,
    PROCESSING_MS_HEADER,
    REQUEST_ID_HEADER,
    error_body,
    go_duration,
    pixel_size,
)

__all__ = ["ERRORS", "OUTPUT_TOKENS", "PROCESSING_MS_HEADER", "REQUEST_ID_HEADER", "error_body", "go_duration",
           "pixel_size"]

RESPONSES_PATH = "/responses"
"""``POST {base}/responses`` creates a response (the base is ``https://api.openai.com/v1``)."""
SANDBOX_PREFIX = "/openai-responses/v1"
"""Where the sandbox mounts its Responses server (apart from ``/openai/v1``, the Images API's)."""

TOOL_TYPE = "image_generation"
"""``tools[].type`` of the image-generation tool (and ``tool_choice.type`` to make the model call it)."""
CALL_TYPE = "image_generation_call"
"""``output[].type`` of a tool call; its ``result`` is the image's base64 (no data-URL prefix)."""
MESSAGE_TYPE = "message"
INPUT_TEXT = "input_text"
INPUT_IMAGE = "input_image"
"""Input content part of an image: ``{"type": "input_image", "image_url": <URL or data URL>, "detail": ...}``."""
IMAGE_DETAIL = "auto"

TOOL_OPTIONS = ("size", "quality", "output_format", "output_compression", "background", "moderation",
                "input_fidelity", "action")
"""Target options copied into the tool object unchanged (``tool_param.ImageGeneration``); the tool's own
``model`` comes from the option ``image_model`` and ``partial_images`` from ``partial_images`` when streaming."""
OUTPUT_FORMATS = ("png", "jpeg", "webp")
SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
"""The standard sizes every GPT Image model takes through the tool."""
MAX_PARTIAL_IMAGES = 3
"""``partial_images`` is 0 (default) to 3."""

IMAGE_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "chatgpt-image-latest")
"""GPT Image models the tool's ``model`` names (the guide's list; newer SDKs add more)."""
MAINLINE_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "gpt-5", "gpt-5-mini",
                   "gpt-5-nano", "gpt-5.1", "gpt-5.2")
"""Mainline models that call the tool (the guide's "supported models"; a dated snapshot of one counts as it)."""


def calls_tool(model: str) -> bool:
    """Whether ``model`` (or a dated snapshot such as ``gpt-4.1-2025-04-14``) is a mainline model that calls
    the image-generation tool."""
    return any(model == m or model.startswith(m + "-20") for m in MAINLINE_MODELS)


STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INCOMPLETE = "incomplete"
RESPONSE_STATUSES = ("completed", "failed", "in_progress", "cancelled", "queued", "incomplete")
"""``Response.status`` values (``types/responses/response_status.py``)."""

REFUSAL_CODES = frozenset({"image_content_policy_violation", "bio_policy", "invalid_prompt", "moderation_blocked",
                           "content_policy_violation", "misalignment_policy_violation"})
"""``Response.error.code`` (or a tool call's ``error.code``) values that mean a safety system declined."""
RETRYABLE_CODES = {"server_error": "server_error", "rate_limit_exceeded": "rate_limited",
                   "vector_store_timeout": "server_error"}
"""``Response.error.code`` values a retry can clear, with the harness error kind each maps to; any other code
of a failed response names a problem with the request (``invalid_image``, ``image_too_large`` …)."""

EVENT_CREATED = "response.created"
EVENT_IN_PROGRESS = "response.in_progress"
EVENT_ITEM_ADDED = "response.output_item.added"
EVENT_ITEM_DONE = "response.output_item.done"
EVENT_CALL_IN_PROGRESS = "response.image_generation_call.in_progress"
EVENT_CALL_GENERATING = "response.image_generation_call.generating"
EVENT_PARTIAL = "response.image_generation_call.partial_image"
"""A partial image: ``partial_image_b64``, ``partial_image_index``, ``item_id``, ``output_index``."""
EVENT_CALL_COMPLETED = "response.image_generation_call.completed"
EVENT_COMPLETED = "response.completed"
EVENT_FAILED = "response.failed"
EVENT_INCOMPLETE = "response.incomplete"
EVENT_ERROR = "error"
"""Stream events (``types/responses/response_stream_event.py``); each SSE ``event:`` name equals the payload's
``type``, and every payload carries a ``sequence_number``. The terminal events carry the whole ``response``."""
TERMINAL_EVENTS = frozenset({EVENT_COMPLETED, EVENT_FAILED, EVENT_INCOMPLETE})

RESPONSE_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    **ERRORS,
    "previous_response_not_found": (400, "invalid_request_error", "previous_response_not_found",
                                    "Previous response with id '{response_id}' not found."),
    "tool_not_supported": (400, "invalid_request_error", "unsupported_value",
                           "Tool 'image_generation' is not supported with {model}."),
    "model_not_found": (400, "invalid_request_error", "model_not_found",
                        "The requested model '{model}' does not exist."),
}
"""Error envelopes of ``/v1/responses`` (status, type, code, message), the Images API's plus those of a
conversation. The wording of ``tool_not_supported`` is an assumption (no public sample)."""


PREVIOUS_NOT_FOUND = "previous_response_not_found"


def previous_not_found(response_id: str) -> dict[str, Any]:
    """The body the API answers an unknown or unstored ``previous_response_id`` with (HTTP 400)."""
    _, type_, code, message = RESPONSE_ERRORS["previous_response_not_found"]
    return error_body(message.format(response_id=response_id), type_, code, "previous_response_id")
