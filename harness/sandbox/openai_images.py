"""Simulated OpenAI Images API (protocol facts in :mod:`harness.wire.openai_images`): generations, edits,
streaming, errors, rate-limit headers.

Faithful enough that the official ``openai`` SDK works against it unchanged but for ``base_url``.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.sandbox.faults import Fault
from harness.sandbox.simulation import (
    RequestPlan,
    SimulatedProvider,
    abort_connection,
    body_seconds,
    declare_intended,
    drip,
    hang_until_disconnected,
    truncated,
)
from harness.sse import encode_event
from harness.wire import openai_images as wire

KNOWN_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "chatgpt-image-latest",
                "dall-e-2", "dall-e-3")


class OpenAIError(Exception):
    """An error response in OpenAI's envelope."""

    def __init__(self, name: str, headers: dict[str, str] | None = None, **fmt: Any) -> None:
        status, type_, code, message = wire.ERRORS[name]
        self.status = status
        self.body = wire.error_body(message.format(**fmt) if fmt else message, type_, code, fmt.get("param"))
        self.headers = headers or {}


def _error_response(err: OpenAIError, request_id: str) -> JSONResponse:
    return JSONResponse(err.body, status_code=err.status, headers={wire.REQUEST_ID_HEADER: request_id, **err.headers})


def _bad_request(message: str, param: str | None, code: str, request_id: str) -> JSONResponse:
    return JSONResponse(wire.error_body(message, "invalid_request_error", code, param), status_code=400,
                        headers={wire.REQUEST_ID_HEADER: request_id})


class OpenAIImagesServer:
    """Routes and state of the simulated OpenAI Images API."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim
        self.files: OrderedDict[str, tuple[bytes, str, float]] = OrderedDict()
        """File name -> (bytes, media type, intended delay in ms of the generation that made it)."""
        from harness.sandbox.openai_batch import OpenAIBatchRoutes

        self.batch = OpenAIBatchRoutes(self)
        """The Files and Batches endpoints (:mod:`harness.sandbox.openai_batch`)."""

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(wire.GENERATIONS_PATH, self.generations, methods=["POST"]),
            Route(wire.EDITS_PATH, self.edits, methods=["POST"]),
            *self.batch.routes(),
            Route("/files/{name}", self.file, methods=["GET"]),
        ])

    def auth(self, request: Request) -> Response | None:
        """The error answer for a request whose key is missing or wrong; None when it may go on. The Files and
        Batches endpoints do not draw on the Images API's per-minute limit (batches have their own queue)."""
        request_id = "req_" + self.sim.new_id()
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        state = self.sim.check_key(key)
        if state == "missing":
            return _error_response(OpenAIError("missing_api_key"), request_id)
        if state == "invalid":
            masked = f"{key[:3]}****{key[-4:]}" if len(key) > 7 else "****"
            return _error_response(OpenAIError("invalid_api_key", masked=masked), request_id)
        return None

    async def render(self, meta: dict[str, Any], plan: RequestPlan, request: Request,
                     request_id: str) -> dict[str, Any]:
        """The JSON body of a successful generation described by ``meta`` (as the interactive endpoint builds it)."""
        return await self._result(meta, [], None, plan, request, request_id)

    async def file(self, request: Request) -> Response:
        batch_file = self.batch.file_object(request.path_params["name"])
        if batch_file is not None:
            return batch_file
        item = self.files.get(request.path_params["name"])
        if item is None:
            return Response("BlobNotFound", status_code=404, media_type="text/plain")
        declare_intended(item[2])
        return Response(item[0], media_type=item[1])

    def _auth(self, request: Request, request_id: str) -> Response | None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        state = self.sim.check_key(key)
        if state == "missing":
            return _error_response(OpenAIError("missing_api_key"), request_id)
        if state == "invalid":
            masked = f"{key[:3]}****{key[-4:]}" if len(key) > 7 else "****"
            return _error_response(OpenAIError("invalid_api_key", masked=masked), request_id)
        wait = self.sim.rate_limited(key)
        if wait is not None:
            retry = max(1, round(wait))
            return _error_response(OpenAIError("rate_limit_exceeded", headers=self._limit_headers(0, wait),
                                               model=request.query_params.get("model", "gpt-image-1"),
                                               limit=int(self.sim.profile.rpm or 0), retry_s=retry), request_id)
        return None

    def _limit_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        limit = int(self.sim.profile.rpm or 50)
        headers = {
            "x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": wire.go_duration(reset_s),
            "x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": "99000",
            "x-ratelimit-reset-tokens": wire.go_duration(reset_s),
        }
        if remaining == 0:
            headers["retry-after"] = str(max(1, round(reset_s)))
        return headers

    async def generations(self, request: Request) -> Response:
        request_id = "req_" + self.sim.new_id()
        denied = self._auth(request, request_id)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _bad_request("We could not parse the JSON body of your request.", None, "invalid_json", request_id)
        if not isinstance(body, dict):
            return _bad_request("Request body must be a JSON object.", None, "invalid_type", request_id)
        return await self._handle(request, body, [], None, "generations", request_id)

    async def edits(self, request: Request) -> Response:
        request_id = "req_" + self.sim.new_id()
        denied = self._auth(request, request_id)
        if denied is not None:
            return denied
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _bad_request("Edits take multipart/form-data.", None, "invalid_content_type", request_id)
        async with request.form(max_files=32) as form:
            uploads = [f for name in wire.EDIT_IMAGE_FIELDS for f in form.getlist(name) if isinstance(f, UploadFile)]
            images = [await f.read() for f in uploads]
            mask_field = form.get("mask")
            mask = await mask_field.read() if isinstance(mask_field, UploadFile) else None
            body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        if not images:
            return _bad_request("Missing required parameter: 'image'.", "image", "missing_required_parameter",
                                request_id)
        for name in ("n", "partial_images", "output_compression"):
            if name in body:
                try:
                    body[name] = int(body[name])
                except ValueError:
                    return _bad_request(f"Invalid type for '{name}': expected an integer.", name, "invalid_type",
                                        request_id)
        if "stream" in body:
            body["stream"] = str(body["stream"]).lower() == "true"
        return await self._handle(request, body, images, mask, "edits", request_id)

    async def _handle(self, request: Request, body: dict[str, Any], images: list[bytes], mask: bytes | None,
                      endpoint: str, request_id: str) -> Response:
        start = time.monotonic()
        model = str(body.get("model") or ("dall-e-2" if endpoint == "generations" else "gpt-image-1.5"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _bad_request("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter",
                                request_id)
        if model not in KNOWN_MODELS:
            return _error_response(OpenAIError("model_not_found", model=model), request_id)
        size = str(body.get("size") or ("1024x1024" if not wire.is_gpt_image(model) else "auto"))
        if size not in wire.valid_sizes(model):
            err = OpenAIError("invalid_size", size=size, supported=", ".join(wire.valid_sizes(model)), param="size")
            return _error_response(err, request_id)
        if wire.is_gpt_image(model) and "response_format" in body:
            return _error_response(OpenAIError("response_format_gpt_image", param="response_format"), request_id)
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10 or (model == "dall-e-3" and n != 1):
            return _bad_request(f"Invalid value for 'n': {n}.", "n", "invalid_value", request_id)
        stream = body.get("stream") is True
        if stream and not wire.is_gpt_image(model):
            return _bad_request("Streaming is only supported for GPT image models.", "stream", "invalid_value",
                                request_id)
        fmt = str(body.get("output_format", "png"))
        if fmt not in wire.OUTPUT_FORMATS:
            return _bad_request(f"Invalid value: '{fmt}'.", "output_format", "invalid_value", request_id)
        if mask is not None and images:
            problem = _mask_problem(mask, images[0])
            if problem:
                return _bad_request(problem, "mask", "invalid_value", request_id)
        plan = self.sim.plan(model, request.headers, prompt)
        width, height = wire.pixel_size(size) or (1024, 1024)
        quality = str(body.get("quality", "auto"))
        meta = {"model": model, "prompt": prompt, "size": f"{width}x{height}", "quality": quality, "fmt": fmt,
                "n": n, "endpoint": endpoint, "response_format": body.get("response_format", "url"),
                "partials": min(int(body.get("partial_images", 0) or 0), wire.MAX_PARTIAL_IMAGES)}
        fault_response = await self._early_fault(request, plan, model, request_id)
        if fault_response is not None:
            return fault_response
        if stream:
            return StreamingResponse(self._stream(request, plan, meta, images, mask, request_id, start),
                                     media_type="text/event-stream",
                                     headers={wire.REQUEST_ID_HEADER: request_id, "cache-control": "no-cache"})
        rendering = asyncio.create_task(self._result(meta, images, mask, plan, request, request_id))
        await self.sim.sleep(plan.latency_s)
        payload = await rendering
        if plan.fault in (Fault.REFUSED_OUTPUT,):
            err = OpenAIError("moderation_blocked", request_id=request_id)
            return _error_response(err, request_id)
        if plan.fault == Fault.MID_STREAM_ERROR:
            return _error_response(OpenAIError("server_error"), request_id)
        data = json.dumps(payload).encode()
        headers = {wire.REQUEST_ID_HEADER: request_id, "openai-version": "2020-10-01",
                   wire.PROCESSING_MS_HEADER: str(round((time.monotonic() - start) * 1000)),
                   **self._limit_headers(int(self.sim.profile.rpm or 50) - 1, 1.2)}
        if plan.fault == Fault.TRUNCATED_BODY:
            return StreamingResponse(truncated(request.scope, data), media_type="application/json",
                                     headers={**headers, "content-length": str(len(data))})
        seconds = body_seconds(plan)
        if seconds > 0:
            return StreamingResponse(drip(self.sim, data, seconds), media_type="application/json",
                                     headers={**headers, "content-length": str(len(data))})
        return Response(data, media_type="application/json", headers=headers)

    async def _early_fault(self, request: Request, plan: RequestPlan, model: str, request_id: str) -> Response | None:
        fault = plan.fault
        if fault is None:
            return None
        if fault == Fault.AUTH:
            return _error_response(OpenAIError("invalid_api_key", masked="sk-****ndbx"), request_id)
        if fault == Fault.RATE_LIMITED:
            wait = 12.0
            return _error_response(OpenAIError("rate_limit_exceeded", headers=self._limit_headers(0, wait),
                                               model=model, limit=5, retry_s=int(wait)), request_id)
        if fault == Fault.QUOTA_EXHAUSTED:
            return _error_response(OpenAIError("insufficient_quota"), request_id)
        if fault == Fault.INVALID_REQUEST:
            return _bad_request("Invalid 'prompt': string too long. Expected a string with maximum length 32000, "
                                "but got a string with length 40000 instead.", "prompt", "string_above_max_length",
                                request_id)
        if fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.latency_s, 1.5))
            return _error_response(OpenAIError("moderation_blocked", request_id=request_id), request_id)
        if fault == Fault.SERVER_ERROR:
            await self.sim.sleep(plan.latency_s * 0.5)
            return _error_response(OpenAIError("server_error"), request_id)
        if fault == Fault.OVERLOADED:
            await self.sim.sleep(0.3)
            return _error_response(OpenAIError("overloaded"), request_id)
        if fault == Fault.TIMEOUT:
            await hang_until_disconnected(self.sim, request.receive)
            return _error_response(OpenAIError("server_error"), request_id)
        if fault == Fault.CONNECTION_RESET:
            await self.sim.sleep(plan.latency_s * 0.2)
            await abort_connection(request.scope)
        return None

    async def _result(self, meta: dict[str, Any], images: list[bytes], mask: bytes | None, plan: RequestPlan,
                      request: Request, request_id: str) -> dict[str, Any]:
        width, height = (int(v) for v in meta["size"].split("x"))
        if plan.fault == Fault.WRONG_SIZE:
            width, height = width // 2, height // 2
        pil_fmt = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[meta["fmt"]]
        data: list[dict[str, Any]] = []
        for i in range(meta["n"] if plan.fault != Fault.NO_IMAGE else 0):
            raw = await self.sim.images.render_async(meta["model"], meta["prompt"], i, (width, height),
                                                     tuple(images), mask, pil_fmt)
            if plan.fault == Fault.NOT_AN_IMAGE:
                raw = b"<html><body>upstream error</body></html>"
            if not wire.is_gpt_image(meta["model"]) and meta["response_format"] == "url":
                name = f"img-{request_id}-{i}.{meta['fmt']}"
                self.files[name] = (raw, f"image/{meta['fmt']}", self.sim.intended_ms(plan))
                while len(self.files) > 512:
                    self.files.popitem(last=False)
                url = str(request.url).split(wire.GENERATIONS_PATH)[0].split(wire.EDITS_PATH)[0]
                item: dict[str, Any] = {"url": f"{url}/files/{name}"}
            else:
                encoded = self.sim.images.b64(raw)
                if plan.fault == Fault.CORRUPT_IMAGE:
                    encoded = encoded[: len(encoded) // 2] + "!!*corrupt*!!"
                item = {"b64_json": encoded}
            if meta["model"] == "dall-e-3":
                item["revised_prompt"] = meta["prompt"]
            data.append(item)
        payload: dict[str, Any] = {"created": int(time.time()), "data": data}
        if wire.is_gpt_image(meta["model"]):
            payload.update({"background": "opaque", "output_format": meta["fmt"],
                            "quality": meta["quality"] if meta["quality"] != "auto" else "medium",
                            "size": meta["size"], "usage": self._usage(meta, len(images))})
        return payload

    def _usage(self, meta: dict[str, Any], n_inputs: int) -> dict[str, Any]:
        quality = meta["quality"] if meta["quality"] in ("low", "medium", "high") else "medium"
        out = wire.OUTPUT_TOKENS.get((quality, meta["size"]), 1056) * meta["n"]
        text_in = max(1, len(meta["prompt"].split()) * 4 // 3)
        image_in = 323 * n_inputs
        return {"input_tokens": text_in + image_in,
                "input_tokens_details": {"text_tokens": text_in, "image_tokens": image_in},
                "output_tokens": out, "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
                "total_tokens": text_in + image_in + out}

    async def _stream(self, request: Request, plan: RequestPlan, meta: dict[str, Any], images: list[bytes],
                      mask: bytes | None, request_id: str, start: float) -> AsyncIterator[bytes]:
        endpoint = meta["endpoint"]
        partials = meta["partials"]
        width, height = (int(v) for v in meta["size"].split("x"))
        pil_fmt = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[meta["fmt"]]
        common = {"size": meta["size"], "quality": meta["quality"], "background": "opaque",
                  "output_format": meta["fmt"]}
        rendering = asyncio.create_task(self._result(meta, images, mask, plan, request, request_id))
        elapsed = 0.0
        for i in range(partials):
            at = plan.first_event_s + (plan.latency_s - plan.first_event_s) * i / max(1, partials)
            await self.sim.sleep(at - elapsed)
            elapsed = at
            small = await self.sim.images.render_async(meta["model"], meta["prompt"], 0,
                                                       (max(64, width // 8), max(64, height // 8)),
                                                       tuple(images), mask, pil_fmt)
            event = {"type": wire.EVENT_PARTIAL[endpoint], "b64_json": self.sim.images.b64(small),
                     "created_at": int(time.time()), **common, "partial_image_index": i}
            yield encode_event(json.dumps(event), event=event["type"])
            if plan.fault == Fault.MID_STREAM_ERROR:
                err = {"type": "error", "error": {"type": "image_generation_server_error", "code": "server_error",
                                                  "message": "The server had an error while generating the image.",
                                                  "param": None}}
                yield encode_event(json.dumps(err), event=wire.EVENT_ERROR)
                return
            if plan.fault == Fault.CONNECTION_RESET or plan.fault == Fault.TRUNCATED_BODY:
                await abort_connection(request.scope)
        await self.sim.sleep(plan.latency_s - elapsed)
        if plan.fault == Fault.MID_STREAM_ERROR:
            err = {"type": "error", "error": {"type": "image_generation_server_error", "code": "server_error",
                                              "message": "The server had an error while generating the image.",
                                              "param": None}}
            yield encode_event(json.dumps(err), event=wire.EVENT_ERROR)
            return
        if plan.fault == Fault.REFUSED_OUTPUT:
            err = {"type": "error", "error": {"type": "image_generation_user_error", "code": "moderation_blocked",
                                              "message": wire.ERRORS["moderation_blocked"][3].format(
                                                  request_id=request_id), "param": None}}
            yield encode_event(json.dumps(err), event=wire.EVENT_ERROR)
            return
        if plan.fault in (Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY):
            await abort_connection(request.scope)
        result = await rendering
        for item in result["data"]:
            event = {"type": wire.EVENT_COMPLETED[endpoint], "b64_json": item.get("b64_json", ""),
                     "created_at": int(time.time()), **common, "usage": self._usage(meta, len(images))}
            yield encode_event(json.dumps(event), event=event["type"])



def _mask_problem(mask: bytes, image: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(mask)) as m, Image.open(io.BytesIO(image)) as im:
            if m.format != "PNG":
                return "Invalid mask image format - mask must be a PNG image."
            if "A" not in m.getbands():
                return "Invalid mask image format - mask must have an alpha channel."
            if m.size != im.size:
                return (f"Invalid mask image: the mask ({m.size[0]}x{m.size[1]}) and image "
                        f"({im.size[0]}x{im.size[1]}) must have the same dimensions.")
    except (UnidentifiedImageError, OSError):
        return "Invalid image file or mode for image or mask."
    return None
