"""Simulated OpenAI Responses API with the image-generation tool (wire facts and sources in
:mod:`harness.wire.openai_responses`): ``POST /responses`` (JSON or SSE), ``GET /responses/{id}``, stored
responses and ``previous_response_id``.

* A response created with ``store: true`` is kept (``DELETE /responses/{id}`` forgets it) (per API key, as a project's are; at most
  :data:`MAX_STORED`, oldest dropped); a later request naming it as ``previous_response_id`` continues it, and
  the previous answer's image is an input of the new drawing (so a conversation's images follow on). An id
  that is unknown, unstored or another key's is refused with OpenAI's 400 ``previous_response_not_found``.
* The model must be a mainline model that calls the tool, and ``tools`` must hold an ``image_generation``
  tool; its ``size``, ``output_format`` and ``model`` are checked as the Images API checks them.
* Faults come from the profile as for the Images server, in this API's own words: a refused output is a 200
  response whose tool call ``failed`` with ``moderation_blocked``; ``no_image`` is a 200 response in which
  the model answered in text without calling the tool; a server error mid-stream is ``response.failed``.

Faithful enough that the official ``openai`` SDK's ``client.responses.create`` works against it unchanged but
for ``base_url``. Every answer carries ``x-request-id`` and ``openai-processing-ms`` like the real API, and
``x-sandbox-intended-ms`` like every sandbox server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.sandbox.faults import Fault
from harness.sandbox.simulation import (
    RequestPlan,
    SimulatedProvider,
    abort_connection,
    body_seconds,
    data_url_bytes,
    drip,
    hang_until_disconnected,
    truncated,
)
from harness.sse import encode_event
from harness.wire import openai_responses as wire

MAX_STORED = 4096
"""Stored responses kept by one sandbox (the oldest are dropped first)."""
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MAINLINE_TOKENS_OUT = 42
"""Output tokens the simulated mainline model spends deciding to call the tool."""


@dataclass
class Stored:
    """A stored response: its body (for ``GET`` and continuation), the answer image, whose key made it."""

    body: dict[str, Any]
    image: bytes | None
    owner: str


def _key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def _owner(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _error(name: str, rid: str, headers: Mapping[str, str] | None = None, param: str | None = None,
           **fmt: Any) -> JSONResponse:
    status, type_, code, message = wire.RESPONSE_ERRORS[name]
    body = wire.error_body(message.format(**fmt) if fmt else message, type_, code, param)
    return JSONResponse(body, status_code=status, headers={wire.REQUEST_ID_HEADER: rid, **(headers or {})})


def _bad_request(message: str, param: str | None, code: str, request_id: str) -> JSONResponse:
    return JSONResponse(wire.error_body(message, "invalid_request_error", code, param), status_code=400,
                        headers={wire.REQUEST_ID_HEADER: request_id})


@dataclass
class Call:
    """One validated request: what to draw and how to answer."""

    model: str
    prompt: str
    images: tuple[bytes, ...]
    tool: dict[str, Any]
    size: tuple[int, int]
    fmt: str
    store: bool
    previous: str | None
    stream: bool
    input_items: int
    owner: str
    """Whose key made the request (a stored response is visible to that key only)."""


class OpenAIResponsesServer:
    """Routes and state of the simulated Responses API."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim
        self.stored: OrderedDict[str, Stored] = OrderedDict()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(wire.RESPONSES_PATH, self.create, methods=["POST"]),
            Route(wire.RESPONSES_PATH + "/{response_id}", self.retrieve, methods=["GET"]),
            Route(wire.RESPONSES_PATH + "/{response_id}", self.delete, methods=["DELETE"]),
        ])

    def _denied(self, request: Request, request_id: str, model: str, limited: bool) -> Response | None:
        key = _key(request)
        state = self.sim.check_key(key)
        if state == "missing":
            return _error("missing_api_key", request_id)
        if state == "invalid":
            masked = f"{key[:3]}****{key[-4:]}" if len(key) > 7 else "****"
            return _error("invalid_api_key", request_id, masked=masked)
        wait = self.sim.rate_limited(key) if limited else None
        if wait is not None:
            limit = int(self.sim.profile.rpm or 0)
            return _error("rate_limit_exceeded", request_id, self._limit_headers(0, wait), model=model, limit=limit,
                          retry_s=max(1, round(wait)))
        return None

    def _limit_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        limit = int(self.sim.profile.rpm or 500)
        headers = {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
                   "x-ratelimit-reset-requests": wire.go_duration(reset_s)}
        if remaining == 0:
            headers["retry-after"] = str(max(1, round(reset_s)))
        return headers

    def _own_stored(self, request: Request) -> tuple[str, str, Response | None]:
        """``(request id, response id, refusal)`` for a request naming a stored response: the refusal is the
        usual auth error, or OpenAI's 404 when the response is unknown or another key's; ``None`` if it is
        this key's."""
        request_id = "req_" + self.sim.new_id()
        rid = request.path_params["response_id"]
        denied = self._denied(request, request_id, "", limited=False)
        if denied is not None:
            return request_id, rid, denied
        stored = self.stored.get(rid)
        if stored is None or stored.owner != _owner(_key(request)):
            return request_id, rid, JSONResponse(
                wire.error_body(f"Response with id '{rid}' not found.", "invalid_request_error", None, None),
                status_code=404, headers={wire.REQUEST_ID_HEADER: request_id})
        return request_id, rid, None

    async def retrieve(self, request: Request) -> Response:
        request_id, rid, refused = self._own_stored(request)
        if refused is not None:
            return refused
        return JSONResponse(self.stored[rid].body, headers={wire.REQUEST_ID_HEADER: request_id})

    async def delete(self, request: Request) -> Response:
        """``DELETE /responses/{id}``: forget a stored response (a later ``previous_response_id`` naming it is
        refused as unknown)."""
        request_id, rid, refused = self._own_stored(request)
        if refused is not None:
            return refused
        del self.stored[rid]
        return JSONResponse({"id": rid, "object": "response.deleted", "deleted": True},
                            headers={wire.REQUEST_ID_HEADER: request_id})

    async def create(self, request: Request) -> Response:
        start = time.monotonic()
        request_id = "req_" + self.sim.new_id()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _bad_request("We could not parse the JSON body of your request.", None, "invalid_json",
                                request_id)
        if not isinstance(body, dict):
            return _bad_request("Request body must be a JSON object.", None, "invalid_type", request_id)
        denied = self._denied(request, request_id, str(body.get("model", "")), limited=True)
        if denied is not None:
            return denied
        call = self._validate(body, request, request_id)
        if isinstance(call, Response):
            return call
        plan = self.sim.plan(call.tool.get("model", "gpt-image-1"), request.headers, call.prompt)
        early = await self._early_fault(request, plan, call, request_id)
        if early is not None:
            return early
        if call.stream:
            return StreamingResponse(self._stream(request, plan, call, request_id, start),
                                     media_type="text/event-stream",
                                     headers={wire.REQUEST_ID_HEADER: request_id, "cache-control": "no-cache",
                                              wire.PROCESSING_MS_HEADER: "0"})
        drawing = asyncio.create_task(self._draw(call, plan))
        await self.sim.sleep(plan.latency_s)
        payload = self._finish(call, plan, await drawing)
        if plan.fault == Fault.MID_STREAM_ERROR:
            return _error("server_error", request_id)
        data = json.dumps(payload).encode()
        headers = {wire.REQUEST_ID_HEADER: request_id, "openai-version": "2020-10-01",
                   wire.PROCESSING_MS_HEADER: str(round((time.monotonic() - start) * 1000)),
                   **self._limit_headers(int(self.sim.profile.rpm or 500) - 1, 0.12)}
        if plan.fault == Fault.TRUNCATED_BODY:
            return StreamingResponse(truncated(request.scope, data), media_type="application/json",
                                     headers={**headers, "content-length": str(len(data))})
        seconds = body_seconds(plan)
        if seconds > 0:
            return StreamingResponse(drip(self.sim, data, seconds), media_type="application/json",
                                     headers={**headers, "content-length": str(len(data))})
        return Response(data, media_type="application/json", headers=headers)

    def _validate(self, body: dict[str, Any], request: Request, request_id: str) -> Call | Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _bad_request("Missing required parameter: 'model'.", "model", "missing_required_parameter",
                                request_id)
        tools = body.get("tools") or []
        tool = next((t for t in tools if isinstance(t, dict) and t.get("type") == wire.TOOL_TYPE), None)
        if tool is None:
            return _bad_request("The sandbox answers only requests with the image_generation tool.", "tools",
                                "invalid_value", request_id)
        if not wire.calls_tool(model):
            if model.startswith(("gpt-", "o3", "o4")):
                return _error("tool_not_supported", request_id, param="tools", model=model)
            return _error("model_not_found", request_id, param="model", model=model)
        image_model = str(tool.get("model", "gpt-image-1"))
        if image_model not in wire.IMAGE_MODELS:
            return _bad_request(f"Invalid value: '{image_model}'.", "tools[0].model", "invalid_value", request_id)
        size = str(tool.get("size", "auto"))
        if size not in wire.SIZES:
            return _bad_request(f"Invalid value: '{size}'. Supported values are: {', '.join(wire.SIZES)}.",
                                "tools[0].size", "invalid_value", request_id)
        fmt = str(tool.get("output_format", "png"))
        if fmt not in wire.OUTPUT_FORMATS:
            return _bad_request(f"Invalid value: '{fmt}'.", "tools[0].output_format", "invalid_value", request_id)
        prompt, images, items = _read_input(body.get("input"))
        if prompt is None:
            return _bad_request("Invalid 'input': expected a string or a list of input items.", "input",
                                "invalid_type", request_id)
        if any(img is None for img in images):
            return _bad_request("Invalid 'input[0].content[1].image_url'. Expected a base64-encoded data URL "
                                "with an image MIME type.", "input", "invalid_image_url", request_id)
        previous = body.get("previous_response_id")
        history: tuple[bytes, ...] = ()
        if previous is not None:
            stored = self.stored.get(str(previous))
            if stored is None or stored.owner != _owner(_key(request)):
                return JSONResponse(wire.previous_not_found(str(previous)), status_code=400,
                                    headers={wire.REQUEST_ID_HEADER: request_id})
            history = (stored.image,) if stored.image is not None else ()
            prompt = _stored_prompt(stored) + " / " + prompt
        width, height = wire.pixel_size(size) or (1024, 1024)
        return Call(model=model, prompt=prompt, images=(*history, *(i for i in images if i is not None)),
                    tool={**tool, "model": image_model}, size=(width, height), fmt=fmt,
                    store=body.get("store", True) is not False, previous=str(previous) if previous else None,
                    stream=body.get("stream") is True, input_items=items,
                    owner=_owner(_key(request)))

    async def _early_fault(self, request: Request, plan: RequestPlan, call: Call, request_id: str) -> Response | None:
        fault = plan.fault
        if fault is None:
            return None
        if fault == Fault.AUTH:
            return _error("invalid_api_key", request_id, masked="sk-****ndbx")
        if fault == Fault.RATE_LIMITED:
            return _error("rate_limit_exceeded", request_id, self._limit_headers(0, 12.0), model=call.model,
                          limit=5, retry_s=12)
        if fault == Fault.QUOTA_EXHAUSTED:
            return _error("insufficient_quota", request_id)
        if fault == Fault.INVALID_REQUEST:
            return _bad_request("Invalid 'input[0].content[0].text': string too long.", "input",
                                "string_above_max_length", request_id)
        if fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.latency_s, 1.5))
            return _error("moderation_blocked", request_id, request_id=request_id)
        if fault == Fault.SERVER_ERROR:
            await self.sim.sleep(plan.latency_s * 0.5)
            return _error("server_error", request_id)
        if fault == Fault.OVERLOADED:
            await self.sim.sleep(0.3)
            return _error("overloaded", request_id)
        if fault == Fault.TIMEOUT:
            await hang_until_disconnected(self.sim, request.receive)
            return _error("server_error", request_id)
        if fault == Fault.CONNECTION_RESET:
            await self.sim.sleep(plan.latency_s * 0.2)
            await abort_connection(request.scope)
        return None

    async def _draw(self, call: Call, plan: RequestPlan) -> bytes | None:
        if plan.fault in (Fault.NO_IMAGE, Fault.REFUSED_OUTPUT):
            return None
        width, height = call.size
        if plan.fault == Fault.WRONG_SIZE:
            width, height = width // 2, height // 2
        raw = await self.sim.images.render_async(call.tool["model"], call.prompt, None, (width, height),
                                                 call.images, None, PIL_FORMATS[call.fmt])
        return b"<html><body>upstream error</body></html>" if plan.fault == Fault.NOT_AN_IMAGE else raw

    def _finish(self, call: Call, plan: RequestPlan, image: bytes | None, rid: str | None = None) -> dict[str, Any]:
        """The response object for a finished drawing (stored when ``store``); ``rid`` is the id a stream already
        announced."""
        rid = rid or "resp_" + self.sim.new_id()
        output: list[dict[str, Any]] = []
        quality = str(call.tool.get("quality", "auto"))
        size = f"{call.size[0]}x{call.size[1]}"
        if plan.fault == Fault.NO_IMAGE:
            output.append(_message("I can't draw that, but I can describe it in words."))
        else:
            item: dict[str, Any] = {
                "id": "ig_" + self.sim.new_id(), "type": wire.CALL_TYPE,
                "status": "failed" if image is None else "completed",
                "action": "edit" if call.images else "generate", "background": "opaque",
                "output_format": call.fmt, "quality": quality if quality != "auto" else "medium", "size": size,
                "revised_prompt": call.prompt, "result": None,
            }
            if image is None:
                item["error"] = {"type": "image_generation_user_error", "code": "moderation_blocked",
                                 "message": "Your request was rejected by the safety system.", "param": None}
            else:
                encoded = self.sim.images.b64(image)
                if plan.fault == Fault.CORRUPT_IMAGE:
                    encoded = encoded[: len(encoded) // 2] + "!!*corrupt*!!"
                item["result"] = encoded
            output.append(item)
        body = {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
            "completed_at": int(time.time()), "error": None, "incomplete_details": None, "instructions": None,
            "model": call.model, "output": output, "parallel_tool_calls": True,
            "previous_response_id": call.previous, "store": call.store, "temperature": 1.0,
            "tool_choice": {"type": wire.TOOL_TYPE}, "tools": [call.tool], "top_p": 1.0, "truncation": "disabled",
            "usage": self._mainline_usage(call), "metadata": {},
        }
        if image is not None or plan.fault == Fault.REFUSED_OUTPUT:
            body["tool_usage"] = {"image_gen": self._tool_usage(call, quality, size, image is not None)}
        if call.store:
            kept = image if plan.fault != Fault.NOT_AN_IMAGE else None
            self.stored[rid] = Stored(body, kept, call.owner)
            while len(self.stored) > MAX_STORED:
                self.stored.popitem(last=False)
        return body

    def _mainline_usage(self, call: Call) -> dict[str, Any]:
        text_in = max(1, len(call.prompt.split()) * 4 // 3) + 85 * len(call.images)
        return {"input_tokens": text_in, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": MAINLINE_TOKENS_OUT, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": text_in + MAINLINE_TOKENS_OUT}

    def _tool_usage(self, call: Call, quality: str, size: str, drawn: bool) -> dict[str, Any]:
        tier = quality if quality in ("low", "medium", "high") else "medium"
        out = wire.OUTPUT_TOKENS.get((tier, size), 1056) if drawn else 0
        text_in = max(1, len(call.prompt.split()) * 4 // 3)
        image_in = 323 * len(call.images)
        return {"input_tokens": text_in + image_in,
                "input_tokens_details": {"text_tokens": text_in, "image_tokens": image_in},
                "output_tokens": out, "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
                "total_tokens": text_in + image_in + out}

    async def _stream(self, request: Request, plan: RequestPlan, call: Call, request_id: str,
                      start: float) -> AsyncIterator[bytes]:
        seq = 0

        def event(payload: dict[str, Any]) -> bytes:
            nonlocal seq
            payload = {**payload, "sequence_number": seq}
            seq += 1
            return encode_event(json.dumps(payload), event=str(payload["type"]))

        drawing = asyncio.create_task(self._draw(call, plan))
        rid = "resp_" + self.sim.new_id()
        shell = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "in_progress",
                 "model": call.model, "output": [], "tools": [call.tool], "tool_choice": {"type": wire.TOOL_TYPE},
                 "parallel_tool_calls": True}
        yield event({"type": wire.EVENT_CREATED, "response": shell})
        yield event({"type": wire.EVENT_IN_PROGRESS, "response": shell})
        item_id = "ig_" + self.sim.new_id()
        yield event({"type": wire.EVENT_ITEM_ADDED, "output_index": 0,
                     "item": {"id": item_id, "type": wire.CALL_TYPE, "status": "in_progress", "result": None}})
        yield event({"type": wire.EVENT_CALL_IN_PROGRESS, "item_id": item_id, "output_index": 0})
        partials = min(int(call.tool.get("partial_images", 0) or 0), wire.MAX_PARTIAL_IMAGES)
        elapsed = 0.0
        for i in range(partials if plan.fault not in (Fault.NO_IMAGE, Fault.REFUSED_OUTPUT) else 0):
            at = plan.first_event_s + (plan.latency_s - plan.first_event_s) * i / max(1, partials)
            await self.sim.sleep(at - elapsed)
            elapsed = at
            small = await self.sim.images.render_async(call.tool["model"], call.prompt, None,
                                                       (max(64, call.size[0] // 8), max(64, call.size[1] // 8)),
                                                       call.images, None, PIL_FORMATS[call.fmt])
            yield event({"type": wire.EVENT_PARTIAL, "item_id": item_id, "output_index": 0,
                         "partial_image_index": i, "partial_image_b64": self.sim.images.b64(small),
                         "output_format": call.fmt, "size": f"{call.size[0]}x{call.size[1]}"})
            if plan.fault in (Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY):
                await abort_connection(request.scope)
        await self.sim.sleep(plan.latency_s - elapsed)
        if plan.fault in (Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY):
            await abort_connection(request.scope)
        image = await drawing
        payload = self._finish(call, plan, image, rid)
        if plan.fault == Fault.MID_STREAM_ERROR:
            failed = {**payload, "status": "failed", "output": [],
                      "error": {"code": "server_error", "message": "An error occurred while processing your "
                                "request. Please include the request ID " + request_id + " in your message."}}
            yield event({"type": wire.EVENT_FAILED, "response": failed})
            return
        for index, item in enumerate(payload["output"]):
            if item.get("type") == wire.CALL_TYPE and item.get("status") == "completed":
                yield event({"type": wire.EVENT_CALL_COMPLETED, "item_id": item_id, "output_index": index})
            yield event({"type": wire.EVENT_ITEM_DONE, "output_index": index, "item": item})
        yield event({"type": wire.EVENT_COMPLETED, "response": payload})


def _message(text: str) -> dict[str, Any]:
    return {"id": "msg_sandbox", "type": wire.MESSAGE_TYPE, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _read_input(value: Any) -> tuple[str | None, list[bytes | None], int]:
    """The instruction text, the input images (``None`` for one that is not a base64 data URL) and the number
    of input items of a request's ``input`` (a string, or a list of messages with content parts)."""
    if isinstance(value, str):
        return value, [], 1
    if not isinstance(value, list):
        return None, [], 0
    texts: list[str] = []
    images: list[bytes | None] = []
    for item in value:
        if not isinstance(item, dict):
            return None, [], 0
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == wire.INPUT_TEXT and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == wire.INPUT_IMAGE:
                url = part.get("image_url")
                images.append(data_url_bytes(url) if isinstance(url, str) else None)
    return " ".join(texts), images, len(value)


def _stored_prompt(stored: Stored) -> str:
    for item in stored.body.get("output", []):
        if isinstance(item, dict) and isinstance(item.get("revised_prompt"), str):
            return str(item["revised_prompt"])
    return ""
