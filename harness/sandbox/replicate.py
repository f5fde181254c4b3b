"""Simulated Replicate predictions API (protocol facts in :mod:`harness.wire.replicate`), mounted at ``/replicate/v1``.

Routes: create by model, version or deployment (201 with ``Location``), get, cancel, list, an SSE stream per
prediction (``/stream/{id}``, standing in for ``stream.replicate.com``) and the output files
(``/delivery/...``, standing in for ``replicate.delivery``). Every prediction runs as a task on the server's
loop: ``starting`` for its planned queue (cold boot) time, ``processing`` for its run time, then its output
files exist while it is still ``processing`` for a moment (as on Replicate) before ``succeeded`` with
``metrics`` (real seconds measured by the server) and timestamps. ``Prefer: wait[=N]`` holds the create
answer until the output exists, the prediction ends or N simulated seconds pass; on expiry the answer says
``starting`` whatever the real state, as Replicate's does. ``Cancel-After`` aborts a prediction not started
by the deadline and cancels a running one.

Faults are Replicate's own behaviour: 401, 402 insufficient credit, 422 validation with ``invalid_fields``,
429 with ``Retry-After``, 503, ``failed`` predictions with a safety text (before the run or on the output)
or a model error (OOM, interrupted mid-run), a prediction that never finishes, a succeeded prediction
without output, connection resets, cut bodies and bad files.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.sandbox.faults import Fault
from harness.sandbox.simulation import (
    HANG_S,
    RequestPlan,
    SimulatedProvider,
    abort_connection,
    body_seconds,
    data_url_bytes,
    declare_intended,
)
from harness.sse import encode_event
from harness.wire import gemini
from harness.wire import replicate as wire

FINALIZE_S = 0.3
"""Simulated seconds between the output files existing and the prediction being ``succeeded``."""
KEEP_PREDICTIONS = 4096
KEEP_FILES = 1024
ALL_MODELS = (*wire.GEMINI_MODELS, *wire.FLUX_MODELS, *wire.SD_MODELS)
FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def version_id(model: str) -> str:
    """The sandbox's stable, made-up 64-hex version id of a model."""
    return hashlib.sha256(f"sandbox-version:{model}".encode()).hexdigest()


VERSIONS = {version_id(m): m for m in ALL_MODELS}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DeliveryFile:
    data: bytes
    mime: str
    drip_s: float = 0.0
    intended_ms: float = 0.0
    """The intended delay of the prediction that made the file (the response header)."""


@dataclass
class Prediction:
    """One prediction and its state."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    key: str
    plan: RequestPlan
    base: str
    cancel_after_s: float | None
    created_at: datetime = field(default_factory=_now)
    created_mono: float = field(default_factory=time.monotonic)
    started_at: datetime | None = None
    started_mono: float | None = None
    completed_at: datetime | None = None
    status: str = wire.STARTING
    output: Any = None
    error: str | None = None
    logs: str = ""
    metrics: dict[str, Any] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the output exists or the prediction ended (what ``Prefer: wait`` waits for)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def touch(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def start(self) -> None:
        self.status = wire.PROCESSING
        self.started_at = _now()
        self.started_mono = time.monotonic()
        self.logs += "Running prediction...\n"
        self.touch()

    def end(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.completed_at = _now()
        now = time.monotonic()
        metrics: dict[str, Any] = {"total_time": round(now - self.created_mono, 6)}
        if self.started_mono is not None:
            metrics["predict_time"] = round(now - self.started_mono, 6)
        self.metrics = metrics
        self.settled.set()
        self.touch()

    def urls(self) -> dict[str, str]:
        get = f"{self.base}{wire.PREDICTION.format(id=self.id)}"
        return {"get": get, "cancel": f"{self.base}{wire.CANCEL.format(id=self.id)}",
                "stream": f"{self.base}{wire.SANDBOX_STREAM}/{self.id}", "web": f"https://replicate.com/p/{self.id}"}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "model": self.model, "version": self.version, "input": self.input, "logs": self.logs,
            "output": self.output, "data_removed": False, "error": self.error, "status": self.status,
            "created_at": wire.format_timestamp(self.created_at), "urls": self.urls(),
        }
        if self.started_at is not None:
            body["started_at"] = wire.format_timestamp(self.started_at)
        if self.completed_at is not None:
            body["completed_at"] = wire.format_timestamp(self.completed_at)
        if self.metrics is not None:
            body["metrics"] = self.metrics
        return body


def _problem(name: str, headers: dict[str, str] | None = None, **fmt: Any) -> JSONResponse:
    status, title, detail = wire.ERRORS[name]
    return JSONResponse(wire.problem(status, title, detail.format(**fmt) if fmt else detail), status_code=status,
                        headers=headers)


class ReplicateServer:
    """Routes and state of the simulated Replicate API."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim
        self.predictions: OrderedDict[str, Prediction] = OrderedDict()
        self.files: OrderedDict[str, DeliveryFile] = OrderedDict()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(wire.MODEL_PREDICTIONS, self.create_for_model, methods=["POST"]),
            Route(wire.DEPLOYMENT_PREDICTIONS, self.create_for_deployment, methods=["POST"]),
            Route(wire.VERSION_PREDICTIONS, self.create_for_version, methods=["POST"]),
            Route(wire.VERSION_PREDICTIONS, self.list, methods=["GET"]),
            Route(wire.PREDICTION, self.get, methods=["GET"]),
            Route(wire.CANCEL, self.cancel, methods=["POST"]),
            Route(wire.SANDBOX_STREAM + "/{id}", self.stream, methods=["GET"]),
            Route(wire.SANDBOX_DELIVERY + "/{id}/{name}", self.file, methods=["GET"]),
        ])

    # ---- helpers -----------------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    def _auth(self, request: Request) -> tuple[str, Response | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme not in wire.AUTH_SCHEMES or self.sim.check_key(token) != "ok":
            return "", _problem("unauthenticated")
        return token, None

    def _find(self, request: Request, key: str) -> Prediction | None:
        pred = self.predictions.get(request.path_params["id"])
        if pred is None or pred.key != key:
            return None
        declare_intended(self.sim.intended_ms(pred.plan))
        return pred

    def _remember(self, pred: Prediction) -> None:
        self.predictions[pred.id] = pred
        for old in list(self.predictions)[: max(0, len(self.predictions) - KEEP_PREDICTIONS)]:
            if self.predictions[old].status in wire.TERMINAL:
                del self.predictions[old]

    # ---- create ------------------------------------------------------------------------------------------

    async def create_for_model(self, request: Request) -> Response:
        p = request.path_params
        return await self._create(request, f"{p['owner']}/{p['name']}", "hidden", None)

    async def create_for_deployment(self, request: Request) -> Response:
        p = request.path_params
        return await self._create(request, f"{p['owner']}/{p['name']}", None, None)

    async def create_for_version(self, request: Request) -> Response:
        body = await self._json(request)
        if isinstance(body, Response):
            return body
        version = body.get("version")
        if not isinstance(version, str):
            return JSONResponse(wire.validation_problem([("required", "version", "version is required")]),
                                status_code=422)
        model, _, vid = version.rpartition(":")
        model = model or VERSIONS.get(vid, "")
        if model not in ALL_MODELS or (vid not in VERSIONS and len(vid) != 64):
            return _problem("invalid_version")
        return await self._create(request, model, vid, body)

    async def _json(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse(wire.problem(400, "Invalid JSON", "The request body is not valid JSON."),
                                status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(wire.validation_problem([("invalid_type", "(root)", "Invalid type. Expected: object, "
                                                          "given: " + type(body).__name__)]), status_code=422)
        return body

    async def _create(self, request: Request, model: str, version: str | None,
                      body: dict[str, Any] | None) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        if model not in ALL_MODELS:
            return _problem("not_found")
        if body is None:
            parsed = await self._json(request)
            if isinstance(parsed, Response):
                return parsed
            body = parsed
        try:
            wait = wire.parse_prefer_wait(request.headers.get(wire.PREFER_HEADER))
        except ValueError as exc:
            return _problem("bad_prefer", message=str(exc))
        cancel_after: float | None = None
        if request.headers.get(wire.CANCEL_AFTER_HEADER):
            try:
                cancel_after = wire.parse_duration(request.headers[wire.CANCEL_AFTER_HEADER])
            except ValueError as exc:
                return _problem("bad_cancel_after", message=str(exc))
        model_input = body.get("input")
        prompt = model_input.get("prompt") if isinstance(model_input, dict) else None
        plan = self.sim.plan(model, request.headers, prompt if isinstance(prompt, str) else None)
        refused = await self._create_fault(request, plan)
        if refused is not None:
            return refused
        throttle = self.sim.rate_limited(key)
        if throttle is not None:
            seconds = max(1, round(throttle))
            return _problem("throttled", headers={"retry-after": str(seconds)}, seconds=seconds)
        if not isinstance(model_input, dict):
            return JSONResponse(wire.validation_problem([("required", "input", "input is required")]),
                                status_code=422)
        base = self._base(request)
        errors, references = self._validate(model, model_input, base)
        if errors:
            return JSONResponse(wire.validation_problem(errors), status_code=422)
        pred = Prediction(id="".join(secrets.choice(ALPHABET) for _ in range(26)), model=model,
                          version=version or version_id(model), input=model_input, key=key, plan=plan, base=base,
                          cancel_after_s=cancel_after)
        self._remember(pred)
        pred.task = asyncio.get_running_loop().create_task(self._lifecycle(pred, references))
        expired = False
        if wait is not None:
            try:
                await asyncio.wait_for(pred.settled.wait(), self.sim.scaled(wait))
            except TimeoutError:
                expired = True
        answer = pred.to_json()
        if expired:
            answer["status"] = wire.STARTING
        data = json.dumps(answer).encode()
        headers = {wire.LOCATION_HEADER: pred.urls()["get"]}
        if plan.fault == Fault.TRUNCATED_BODY:
            return StreamingResponse(self._truncated(request, data), status_code=201, media_type="application/json",
                                     headers={**headers, "content-length": str(len(data))})
        return Response(data, status_code=201, media_type="application/json", headers=headers)

    async def _create_fault(self, request: Request, plan: RequestPlan) -> Response | None:
        fault = plan.fault
        if fault == Fault.AUTH:
            return _problem("unauthenticated")
        if fault == Fault.QUOTA_EXHAUSTED:
            return _problem("insufficient_credit")
        if fault == Fault.RATE_LIMITED:
            return _problem("throttled", headers={"retry-after": "30"}, seconds=30)
        if fault == Fault.INVALID_REQUEST:
            return JSONResponse(wire.validation_problem([
                ("number_lte", "input.num_inference_steps", "Must be less than or equal to 50")]), status_code=422)
        if fault == Fault.OVERLOADED:
            return _problem("unavailable")
        if fault == Fault.CONNECTION_RESET:
            await abort_connection(request.scope)
        return None

    # ---- running -----------------------------------------------------------------------------------------

    async def _lifecycle(self, pred: Prediction, references: list[bytes]) -> None:
        deadline = None if pred.cancel_after_s is None else self.sim.scaled(pred.cancel_after_s)
        try:
            async with asyncio.timeout(deadline):
                await self.sim.sleep(pred.plan.queue_s)
                pred.start()
                await self._run(pred, references)
        except TimeoutError:
            started = pred.started_at is not None
            pred.end(wire.CANCELED if started else wire.ABORTED, wire.FAILURE_MESSAGES["deadline"])
        except asyncio.CancelledError:
            pred.end(wire.CANCELED)

    async def _run(self, pred: Prediction, references: list[bytes]) -> None:
        plan, fault, inp = pred.plan, pred.plan.fault, pred.input
        if fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.run_s, 0.5))
            pred.end(wire.FAILED, wire.FAILURE_MESSAGES["flagged"])
            return
        if fault == Fault.TIMEOUT:
            await self.sim.sleep(HANG_S)
        if fault in (Fault.SERVER_ERROR, Fault.MID_STREAM_ERROR):
            pred.logs += " 40%|████      | 2/5 [00:01<00:01,  1.90it/s]\n"
            pred.touch()
            await self.sim.sleep(plan.run_s * 0.5)
            pred.end(wire.FAILED, wire.FAILURE_MESSAGES["interrupted" if fault == Fault.MID_STREAM_ERROR else "oom"])
            return
        gem = wire.gemini_model(pred.model)
        fmt = str(inp.get("output_format") or ("jpg" if gem else "webp"))
        n = 1 if gem else int(inp.get("num_outputs") or 1)
        size = self._size(pred.model, inp, references)
        if fault == Fault.WRONG_SIZE:
            size = (size[0] // 2, size[1] // 2)
        seed = inp.get("seed")
        renders = [asyncio.ensure_future(self.sim.images.render_async(
            gem or pred.model, str(inp["prompt"]), (seed if isinstance(seed, int) else 0) + i, size,
            tuple(references), None, FORMATS[fmt][0])) for i in range(n)]
        await self.sim.sleep(plan.run_s)
        images = [await r for r in renders]
        if fault == Fault.REFUSED_OUTPUT:
            pred.end(wire.FAILED, wire.FAILURE_MESSAGES["nsfw" if not gem else "flagged"])
            return
        urls = [] if fault == Fault.NO_IMAGE else [self._publish(pred, i, data, fmt) for i, data in enumerate(images)]
        if gem:
            pred.output = urls[0] if urls else None
        else:
            pred.output = urls
        pred.logs += "Generated image in 1.2sec\n"
        if urls:
            pred.settled.set()
        pred.touch()
        await self.sim.sleep(FINALIZE_S)
        pred.end(wire.SUCCEEDED)

    def _publish(self, pred: Prediction, index: int, data: bytes, fmt: str) -> str:
        mime = FORMATS[fmt][1]
        fault = pred.plan.fault
        if fault == Fault.CORRUPT_IMAGE:
            data = data[: max(16, len(data) // 3)]
        if fault == Fault.NOT_AN_IMAGE:
            data, mime = b"<html><body><h1>404 Not Found</h1></body></html>", "text/html"
        drip = body_seconds(pred.plan) if fault == Fault.SLOW_DRIP else 0.0
        name = f"out-{index}.{fmt}"
        self.files[f"{pred.id}/{name}"] = DeliveryFile(data, mime, drip, self.sim.intended_ms(pred.plan))
        while len(self.files) > KEEP_FILES:
            self.files.popitem(last=False)
        return f"{pred.base}{wire.SANDBOX_DELIVERY}/{pred.id}/{name}"

    def _size(self, model: str, inp: dict[str, Any], references: list[bytes]) -> tuple[int, int]:
        gem = wire.gemini_model(model)
        ratio = str(inp.get("aspect_ratio") or (wire.MATCH_INPUT_IMAGE if gem else "1:1"))
        if gem is not None:
            if ratio == wire.MATCH_INPUT_IMAGE:
                ratio = gemini.nearest_ratio(gem, *_image_size(references[0])) if references else "1:1"
            resolution = inp.get("resolution")
            return wire.pixel_size(model, ratio, str(resolution) if resolution else None) or (1024, 1024)
        if "image" in inp and references:
            return _image_size(references[0])
        return wire.FLUX_SIZES.get(ratio, (1024, 1024))

    # ---- validation --------------------------------------------------------------------------------------

    def _validate(self, model: str, inp: dict[str, Any], base: str) -> tuple[list[tuple[str, str, str]], list[bytes]]:
        """``(type, field, description)`` problems of a model input, and the input images it names."""
        errors: list[tuple[str, str, str]] = []
        if not isinstance(inp.get("prompt"), str):
            errors.append(("required", "input", "prompt is required") if "prompt" not in inp
                          else ("invalid_type", "input.prompt", "Invalid type. Expected: string"))
        gem = wire.gemini_model(model)
        if gem is not None:
            ratios: tuple[str, ...] = (wire.MATCH_INPUT_IMAGE, *gemini.ASPECT_RATIOS)
            formats: tuple[str, ...] = wire.GEMINI_OUTPUT_FORMATS
        else:
            ratios, formats = tuple(wire.FLUX_SIZES), wire.FLUX_OUTPUT_FORMATS
        self._enum(errors, inp, "aspect_ratio", ratios)
        self._enum(errors, inp, "output_format", formats)
        if gem in wire.GEMINI_RESOLUTIONS:
            self._enum(errors, inp, "resolution", wire.GEMINI_RESOLUTIONS[gem])
        seed = inp.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            errors.append(("invalid_type", "input.seed", "Invalid type. Expected: integer"))
        references: list[bytes] = []
        if gem is not None:
            images = inp.get(wire.GEMINI_IMAGE_FIELD, [])
            if not isinstance(images, list) or len(images) > wire.MAX_IMAGE_INPUTS:
                errors.append(("array_max_items", f"input.{wire.GEMINI_IMAGE_FIELD}",
                               f"Array must have at most {wire.MAX_IMAGE_INPUTS} items"))
                images = []
            references = self._files(errors, images, wire.GEMINI_IMAGE_FIELD, base)
        else:
            outputs = inp.get("num_outputs", 1)
            if isinstance(outputs, bool) or not isinstance(outputs, int) or not 1 <= outputs <= wire.MAX_OUTPUTS:
                errors.append(("number_lte", "input.num_outputs", f"Must be less than or equal to {wire.MAX_OUTPUTS}")
                              if isinstance(outputs, int) and outputs > wire.MAX_OUTPUTS
                              else ("number_gte", "input.num_outputs", "Must be greater than or equal to 1"))
            if "image" in inp:
                references = self._files(errors, [inp["image"]], "image", base)
        return errors, references

    @staticmethod
    def _enum(errors: list[tuple[str, str, str]], inp: dict[str, Any], name: str, values: tuple[str, ...]) -> None:
        if name in inp and inp[name] not in values:
            listed = ", ".join(f'"{v}"' for v in values)
            errors.append(("enum", f"input.{name}", f"{name} must be one of the following: {listed}"))

    def _files(self, errors: list[tuple[str, str, str]], urls: list[Any], name: str, base: str) -> list[bytes]:
        found: list[bytes] = []
        for i, url in enumerate(urls):
            where = f"input.{name}.{i}" if name == wire.GEMINI_IMAGE_FIELD else f"input.{name}"
            data = self._fetch(url, base) if isinstance(url, str) else None
            if data is None:
                errors.append(("format", where, "Does not match format 'uri' or the file could not be fetched"))
                continue
            try:
                _image_size(data)
            except (UnidentifiedImageError, OSError):
                errors.append(("format", where, "The file is not a readable image"))
                continue
            found.append(data)
        return found

    def _fetch(self, url: str, base: str) -> bytes | None:
        if url.startswith("data:"):
            return data_url_bytes(url)
        path = urlsplit(url).path
        prefix = urlsplit(base).path + wire.SANDBOX_DELIVERY + "/"
        item = self.files.get(path[len(prefix):]) if path.startswith(prefix) else None
        return item.data if item is not None else None

    # ---- reading -----------------------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        pred = self._find(request, key)
        if pred is None:
            return _problem("not_found")
        return JSONResponse(pred.to_json())

    async def list(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        mine = [p.to_json() for p in reversed(self.predictions.values()) if p.key == key][:100]
        return JSONResponse({"previous": None, "next": None, "results": mine})

    async def cancel(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        pred = self._find(request, key)
        if pred is None:
            return _problem("not_found")
        if pred.status not in wire.TERMINAL and pred.task is not None:
            pred.task.cancel()
            await asyncio.wait([pred.task], timeout=1.0)
        return JSONResponse(pred.to_json())

    async def stream(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        pred = self._find(request, key)
        if pred is None:
            return _problem("not_found")

        async def events() -> AsyncIterator[bytes]:
            counter = 0
            sent_output = False
            while True:
                changed = pred.changed
                if pred.output and not sent_output:
                    for url in pred.output if isinstance(pred.output, list) else [pred.output]:
                        counter += 1
                        yield encode_event(url, event="output", id=f"{counter}:0")
                    sent_output = True
                if pred.status in wire.TERMINAL:
                    counter += 1
                    if pred.status == wire.FAILED:
                        yield encode_event(pred.error or "prediction failed", event="error", id=f"{counter}:0")
                        counter += 1
                    done = {} if pred.status == wire.SUCCEEDED else {"reason": pred.status}
                    yield encode_event(json.dumps(done), event="done", id=f"{counter}:0")
                    return
                await changed.wait()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def file(self, request: Request) -> Response:
        item = self.files.get(f"{request.path_params['id']}/{request.path_params['name']}")
        if item is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        declare_intended(item.intended_ms)
        if item.drip_s > 0:
            return StreamingResponse(self._drip(item), media_type=item.mime,
                                     headers={"content-length": str(len(item.data))})
        return Response(item.data, media_type=item.mime)

    async def _drip(self, item: DeliveryFile) -> AsyncIterator[bytes]:
        chunks = 8
        step = max(1, len(item.data) // chunks)
        for i in range(0, len(item.data), step):
            yield item.data[i:i + step]
            await self.sim.sleep(item.drip_s / chunks)

    async def _truncated(self, request: Request, data: bytes) -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        await abort_connection(request.scope)


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
