"""Simulated fal.ai (protocol facts in :mod:`harness.wire.fal`): the queue (submit, status and status
stream, result, cancel), the sync ``fal.run`` host and a CDN for the output files.

Mounted at ``/fal``: queue host ``/fal/queue``, run host ``/fal/run``, CDN ``/fal/cdn/files``. URLs in
bodies point back at the host and port the request came in on. Each queued request runs as a task on the
server's loop: it waits its planned queue time (``IN_QUEUE``), then for a free runner when the profile sets a
concurrency (requests wait ``IN_QUEUE`` with a ``queue_position``; sync calls over the limit get 429), runs
(``IN_PROGRESS``) and completes, successfully or with ``error``/``error_type`` and the app's error answer
waiting at ``response_url``. ``X-Fal-Request-Timeout`` (simulated seconds) fails a request not started in
time with the 504 a start timeout gives. Faults are rendered as fal's own behaviour: 401/403/429 at submit,
422 validation and content-policy errors, 503 runner failures, ``has_nsfw_concepts`` on FLUX outputs,
text-only Nano Banana answers, a request that never finishes, connection resets, cut bodies and bad files
on the CDN.

Model inputs are validated as fal's apps do (FastAPI-style 422 ``detail`` lists); ``image_urls`` may be data
URLs or files of this CDN (anything else fails with ``file_download_error``, as the sandbox cannot reach
out).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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
    drip,
    hang_until_disconnected,
    truncated,
)
from harness.sse import encode_event
from harness.wire import fal as wire
from harness.wire import gemini

VALIDATION_S = 0.2
"""Simulated seconds a runner takes to reject an invalid input."""
KEEP_REQUESTS = 4096
KEEP_FILES = 1024
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
Outcome = tuple[int, dict[str, Any], dict[str, str]]
"""A result answer: HTTP status, JSON body, extra headers."""


@dataclass
class CdnFile:
    data: bytes
    mime: str
    drip_s: float = 0.0
    """Simulated seconds over which the file is sent (the ``slow_drip`` fault)."""
    intended_ms: float = 0.0
    """The intended delay of the generation that made the file (the response header)."""


@dataclass
class Job:
    """One queued request and what has happened to it."""

    id: str
    app: str
    owner_app: str
    key: str
    model_input: dict[str, Any]
    plan: RequestPlan
    base: str
    start_timeout_s: float | None
    status: str = wire.IN_QUEUE
    outcome: Outcome | None = None
    error: str | None = None
    error_type: str | None = None
    inference_s: float | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def urls(self) -> dict[str, str]:
        response_url = self.base + wire.SANDBOX_QUEUE + wire.requests_path(self.owner_app, self.id)
        return {"response_url": response_url, "status_url": response_url + "/status",
                "cancel_url": response_url + "/cancel"}

    def move(self, status: str) -> None:
        self.status = status
        self.changed.set()
        self.changed = asyncio.Event()

    def log(self, message: str, level: str = "INFO") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        self.logs.append({"message": message, "level": level, "source": "USER", "timestamp": stamp})

    def finish(self, outcome: Outcome, inference_s: float | None = None) -> None:
        self.outcome = outcome
        self.inference_s = inference_s
        status, body, _ = outcome
        if status >= 400:
            detail = body.get("detail")
            if isinstance(detail, list) and detail:
                self.error = "; ".join(str(d.get("msg", "")) for d in detail)
                self.error_type = str(detail[0].get("type"))
            else:
                self.error = str(detail)
                self.error_type = str(body.get("error_type") or "internal_error")
        self.move(wire.COMPLETED)


def _literal_msg(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return "Input should be " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])


def _detail(status: int, items: list[dict[str, Any]]) -> Outcome:
    return status, {"detail": items}, {wire.RETRYABLE_HEADER: "false"}


class FalServer:
    """Routes and state of the simulated fal queue, run host and CDN."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.files: OrderedDict[str, CdnFile] = OrderedDict()
        self._slots: dict[str, asyncio.Semaphore] = {}

    def app(self) -> Starlette:
        q = wire.SANDBOX_QUEUE
        return Starlette(routes=[
            Route(q + "/{owner}/{app}/requests/{rid}/status/stream", self.status_stream, methods=["GET"]),
            Route(q + "/{owner}/{app}/requests/{rid}/status", self.status, methods=["GET"]),
            Route(q + "/{owner}/{app}/requests/{rid}/cancel", self.cancel, methods=["PUT"]),
            Route(q + "/{owner}/{app}/requests/{rid}", self.result, methods=["GET"]),
            Route(q + "/{app_id:path}", self.submit, methods=["POST"]),
            Route(q + "/{rest:path}", self.not_found, methods=["GET", "PUT"]),
            Route(wire.SANDBOX_RUN + "/{app_id:path}", self.run, methods=["POST"]),
            Route(wire.SANDBOX_CDN + "/{name}", self.file, methods=["GET"]),
        ])

    # ---- helpers -----------------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    def _auth(self, request: Request) -> tuple[str, Response | None]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not header:
            return "", JSONResponse({"detail": wire.AUTH_MISSING}, status_code=401)
        if scheme != wire.AUTH_SCHEME or not token:
            return "", JSONResponse({"detail": wire.AUTH_BAD_FORMAT}, status_code=401)
        if self.sim.check_key(token) != "ok":
            return "", JSONResponse({"detail": wire.AUTH_NO_USER}, status_code=401)
        return token, None

    def _slot(self, key: str) -> asyncio.Semaphore | None:
        limit = self.sim.profile.concurrency
        if limit is None:
            return None
        if key not in self._slots:
            self._slots[key] = asyncio.Semaphore(limit)
        return self._slots[key]

    @staticmethod
    def known(app_id: str) -> bool:
        return wire.gemini_model(app_id) is not None or app_id in wire.FLUX_APPS

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return JSONResponse({"detail": [wire.validation_item(["body"], f"JSON decode error: {exc}",
                                                                 "json_invalid")]}, status_code=422)
        if not isinstance(body, dict):
            return JSONResponse({"detail": [wire.validation_item(["body"], "Input should be a valid dictionary",
                                                                 "dict_type", body)]}, status_code=422)
        return body

    async def _submit_fault(self, request: Request, plan: RequestPlan) -> Response | None:
        """Faults that show at submit (or on a sync call, before any work): auth, balance, rate, reset."""
        if plan.fault == Fault.AUTH:
            return JSONResponse({"detail": wire.AUTH_NO_USER}, status_code=401)
        if plan.fault == Fault.QUOTA_EXHAUSTED:
            return JSONResponse({"detail": wire.LOCKED_BALANCE}, status_code=403)
        if plan.fault == Fault.RATE_LIMITED:
            return JSONResponse({"detail": wire.RATE_LIMITED}, status_code=429, headers={"retry-after": "10"})
        if plan.fault == Fault.CONNECTION_RESET:
            await abort_connection(request.scope)
        return None

    def _remember(self, job: Job) -> None:
        self.jobs[job.id] = job
        for old_id in list(self.jobs)[: max(0, len(self.jobs) - KEEP_REQUESTS)]:
            if self.jobs[old_id].status == wire.COMPLETED:
                del self.jobs[old_id]

    def _store(self, name: str, item: CdnFile) -> None:
        self.files[name] = item
        while len(self.files) > KEEP_FILES:
            self.files.popitem(last=False)

    def _job(self, request: Request) -> Job | None:
        p = request.path_params
        job = self.jobs.get(p["rid"])
        if job is None or job.owner_app != f"{p['owner']}/{p['app']}":
            return None
        declare_intended(self.sim.intended_ms(job.plan))
        return job

    # ---- queue -------------------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        app_id = request.path_params["app_id"].strip("/")
        try:
            owner_app, _ = wire.split_app_id(app_id)
        except ValueError:
            return JSONResponse({"detail": wire.APP_NOT_FOUND.format(app=app_id)}, status_code=404)
        if not self.known(app_id):
            return JSONResponse({"detail": wire.APP_NOT_FOUND.format(app=app_id)}, status_code=404)
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        start_timeout: float | None = None
        raw_timeout = request.headers.get(wire.REQUEST_TIMEOUT_HEADER)
        if raw_timeout is not None:
            try:
                start_timeout = float(raw_timeout)
            except ValueError:
                start_timeout = -1.0
            if start_timeout <= wire.MIN_REQUEST_TIMEOUT_S:
                return JSONResponse({"detail": f"{wire.REQUEST_TIMEOUT_HEADER} must be a number greater than "
                                               f"{wire.MIN_REQUEST_TIMEOUT_S:g} seconds"}, status_code=400)
        prompt = body.get("prompt")
        plan = self.sim.plan(wire.gemini_model(app_id) or app_id, request.headers,
                             prompt if isinstance(prompt, str) else None)
        fault = await self._submit_fault(request, plan)
        if fault is not None:
            return fault
        wait = self.sim.rate_limited(key)
        if wait is not None:
            return JSONResponse({"detail": wire.RATE_LIMITED}, status_code=429,
                                headers={"retry-after": str(max(1, round(wait)))})
        job = Job(id=str(uuid.uuid4()), app=app_id, owner_app=owner_app, key=key, model_input=body, plan=plan,
                  base=self._base(request), start_timeout_s=start_timeout)
        self._remember(job)
        job.task = asyncio.get_running_loop().create_task(self._lifecycle(job))
        answer = {"status": wire.IN_QUEUE, "request_id": job.id, **job.urls(),
                  "queue_position": self._position(job)}
        return JSONResponse(answer, headers={wire.REQUEST_ID_HEADER: job.id})

    def _position(self, job: Job) -> int:
        """Requests of the same key queued before this one (0-based)."""
        ahead = 0
        for other in self.jobs.values():
            if other is job:
                break
            if other.key == job.key and other.status == wire.IN_QUEUE:
                ahead += 1
        return ahead

    async def _lifecycle(self, job: Job) -> None:
        slot = self._slot(job.key)
        acquired = False
        try:
            limit = None if job.start_timeout_s is None else self.sim.scaled(job.start_timeout_s)
            try:
                async with asyncio.timeout(limit):
                    await self.sim.sleep(job.plan.queue_s)
                    if slot is not None:
                        waited = slot.locked()
                        await slot.acquire()
                        acquired = True
                        if waited:
                            self.sim.resume()
            except TimeoutError:
                status, body, headers = wire.request_error("request_timeout")
                job.finish((status, body, {**headers, wire.REQUEST_TIMEOUT_TYPE_HEADER: "user"}))
                return
            if job.plan.fault == Fault.OVERLOADED:
                job.finish(wire.request_error("runner_scheduling_failure"))
                return
            job.log("Runner acquired; starting inference")
            job.move(wire.IN_PROGRESS)
            started = time.monotonic()
            outcome = await self._generate(job.app, job.model_input, job.plan, job.base, job.id, job.log)
            job.finish(outcome, time.monotonic() - started)
        except asyncio.CancelledError:
            status, body, headers = wire.request_error("request_cancelled")
            job.finish((status, body, headers))
        finally:
            if acquired and slot is not None:
                slot.release()

    def _status_body(self, job: Job, with_logs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"status": job.status, "request_id": job.id, **job.urls()}
        if job.status == wire.IN_QUEUE:
            body["queue_position"] = self._position(job)
        else:
            body["logs"] = list(job.logs) if with_logs else None
        if job.status == wire.COMPLETED:
            body["metrics"] = {"inference_time": round(job.inference_s, 6)} if job.inference_s is not None else {}
            if job.error is not None:
                body["error"] = job.error
                body["error_type"] = job.error_type
        return body

    async def status(self, request: Request) -> Response:
        _, denied = self._auth(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": wire.REQUEST_NOT_FOUND}, status_code=404)
        with_logs = request.query_params.get("logs", "0").lower() in ("1", "true")
        code = 200 if job.status == wire.COMPLETED else 202
        return JSONResponse(self._status_body(job, with_logs), status_code=code,
                            headers={wire.REQUEST_ID_HEADER: job.id})

    async def status_stream(self, request: Request) -> Response:
        _, denied = self._auth(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": wire.REQUEST_NOT_FOUND}, status_code=404)
        with_logs = request.query_params.get("logs", "0").lower() in ("1", "true")

        async def events() -> AsyncIterator[bytes]:
            while True:
                changed = job.changed
                yield encode_event(json.dumps(self._status_body(job, with_logs)))
                if job.status == wire.COMPLETED:
                    return
                await changed.wait()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={wire.REQUEST_ID_HEADER: job.id, "cache-control": "no-cache"})

    async def result(self, request: Request) -> Response:
        _, denied = self._auth(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": wire.REQUEST_NOT_FOUND}, status_code=404)
        if job.outcome is None:
            return JSONResponse({"detail": wire.STILL_IN_PROGRESS}, status_code=400,
                                headers={wire.REQUEST_ID_HEADER: job.id})
        return await self._answer(request, job.outcome, job.id, job.plan)

    async def cancel(self, request: Request) -> Response:
        _, denied = self._auth(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if job is None:
            outcome = wire.NOT_FOUND
        elif job.status == wire.COMPLETED or job.task is None:
            outcome = wire.ALREADY_COMPLETED
        else:
            job.task.cancel()
            outcome = wire.CANCELLATION_REQUESTED
        return JSONResponse({"status": outcome}, status_code=wire.CANCEL_STATUS_CODES[outcome])

    async def not_found(self, request: Request) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    # ---- sync --------------------------------------------------------------------------------------------

    async def run(self, request: Request) -> Response:
        key, denied = self._auth(request)
        if denied is not None:
            return denied
        app_id = request.path_params["app_id"].strip("/")
        if not self.known(app_id):
            return JSONResponse({"detail": wire.APP_NOT_FOUND.format(app=app_id)}, status_code=404)
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        prompt = body.get("prompt")
        plan = self.sim.plan(wire.gemini_model(app_id) or app_id, request.headers,
                             prompt if isinstance(prompt, str) else None)
        request_id = str(uuid.uuid4())
        fault = await self._submit_fault(request, plan)
        if fault is not None:
            return fault
        wait = self.sim.rate_limited(key)
        slot = self._slot(key)
        if wait is not None or (slot is not None and slot.locked()):
            return JSONResponse({"detail": wire.RATE_LIMITED}, status_code=429,
                                headers={"retry-after": str(max(1, round(wait or 1)))})
        if plan.fault == Fault.TIMEOUT:
            await hang_until_disconnected(self.sim, request.receive)
            return wire_response(wire.request_error("request_timeout"), request_id)
        if slot is not None:
            await slot.acquire()
        try:
            await self.sim.sleep(plan.queue_s)
            if plan.fault == Fault.OVERLOADED:
                outcome = wire.request_error("runner_scheduling_failure")
            else:
                outcome = await self._generate(app_id, body, plan, self._base(request), request_id, None)
        finally:
            if slot is not None:
                slot.release()
        return await self._answer(request, outcome, request_id, plan)


    # ---- generation --------------------------------------------------------------------------------------

    async def _generate(self, app: str, model_input: dict[str, Any], plan: RequestPlan, base: str,
                        request_id: str, log: Callable[[str], None] | None) -> Outcome:
        """Run the app on ``model_input`` (the runner part: validation, faults, rendering, CDN upload)."""
        fault = plan.fault
        problems, references = self._validate(app, model_input, base)
        if fault == Fault.INVALID_REQUEST:
            problems.append(wire.validation_item(["body", "num_images"], "Input should be less than or equal to 4",
                                                 "less_than_equal", 12, {"le": wire.MAX_NUM_IMAGES}))
        if problems:
            await self.sim.sleep(min(plan.run_s, VALIDATION_S))
            return _detail(422, problems)
        if fault == Fault.REFUSED:
            await self.sim.sleep(min(plan.run_s, 0.5))
            return _detail(422, [wire.validation_item(["body", "prompt"], wire.MESSAGES["content_policy_violation"],
                                                      "content_policy_violation", model_input.get("prompt"))])
        if fault == Fault.TIMEOUT:
            await self.sim.sleep(HANG_S)
        if fault in (Fault.SERVER_ERROR, Fault.MID_STREAM_ERROR):
            if log is not None:
                log("Step 12/28")
            await self.sim.sleep(plan.run_s * 0.5)
            error_type = "runner_disconnected" if fault == Fault.MID_STREAM_ERROR else "internal_error"
            return wire.request_error(error_type)
        gemini_model = wire.gemini_model(app)
        fmt = str(model_input.get("output_format") or ("png" if gemini_model else "jpeg"))
        n = int(model_input.get("num_images") or 1)
        size = self._size(app, model_input, references)
        if fault == Fault.WRONG_SIZE:
            size = (size[0] // 2, size[1] // 2)
        seed = model_input.get("seed")
        look = gemini_model or app
        prompt = str(model_input["prompt"])
        renders = [asyncio.ensure_future(self.sim.images.render_async(
            look, prompt, (seed if isinstance(seed, int) else 0) + i, size, tuple(references), None,
            PIL_FORMATS[fmt])) for i in range(n)]
        await self.sim.sleep(plan.run_s)
        if log is not None:
            log("Inference finished")
        images = [await r for r in renders]
        sync_mode = model_input.get("sync_mode") is True
        if fault == Fault.REFUSED_OUTPUT and gemini_model:
            return _detail(422, [wire.validation_item(["body", "prompt"], wire.MESSAGES["output_flagged"],
                                                      "content_policy_violation", prompt)])
        if fault == Fault.NO_IMAGE:
            if gemini_model:
                return 200, {"images": [], "description": "I can describe this scene in words, but I could not "
                                                          "draw it."}, {}
            return _detail(422, [wire.validation_item(["body"], wire.MESSAGES["no_media_generated"],
                                                      "no_media_generated")])
        nsfw = fault == Fault.REFUSED_OUTPUT
        if nsfw:
            images = [self._black(size, fmt) for _ in images]
        items = [self._publish(data, fmt, size, base, f"{request_id}-{i}", plan, sync_mode, gemini_model is not None)
                 for i, data in enumerate(images)]
        if gemini_model:
            output: dict[str, Any] = {"images": items, "description": ""}
        else:
            output = {"images": items, "timings": {"inference": round(self.sim.scaled(plan.run_s), 6)},
                      "seed": seed if isinstance(seed, int) else 0, "has_nsfw_concepts": [nsfw] * len(items),
                      "prompt": prompt}
        units = wire.billable_units(app, [size] * len(items))
        return 200, output, {wire.BILLABLE_UNITS_HEADER: f"{units:g}"}

    def _publish(self, data: bytes, fmt: str, size: tuple[int, int], base: str, name: str, plan: RequestPlan,
                 sync_mode: bool, gemini_app: bool) -> dict[str, Any]:
        mime = f"image/{fmt}"
        fault = plan.fault
        if fault == Fault.CORRUPT_IMAGE:
            data = data[: max(16, len(data) // 3)]
        if fault == Fault.NOT_AN_IMAGE:
            data, mime = b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"
        file_name = f"{name}.{'jpg' if fmt == 'jpeg' else fmt}"
        if sync_mode:
            url = f"data:{mime};base64,{self.sim.images.b64(data)}"
        else:
            drip = body_seconds(plan) if fault == Fault.SLOW_DRIP else 0.0
            self._store(file_name, CdnFile(data, mime, drip, self.sim.intended_ms(plan)))
            url = f"{base}{wire.SANDBOX_CDN}/{file_name}"
        item: dict[str, Any] = {"url": url, "content_type": mime, "width": size[0], "height": size[1]}
        if gemini_app:
            item.update(file_name=file_name, file_size=len(data))
        return item

    @staticmethod
    def _black(size: tuple[int, int], fmt: str) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", size, (0, 0, 0)).save(out, format=PIL_FORMATS[fmt])
        return out.getvalue()

    def _size(self, app: str, model_input: dict[str, Any], references: list[bytes]) -> tuple[int, int]:
        model = wire.gemini_model(app)
        if model is not None:
            ratio = str(model_input.get("aspect_ratio") or (wire.EDIT_AUTO_RATIO if wire.is_edit_app(app) else "1:1"))
            if ratio == wire.EDIT_AUTO_RATIO:
                ratio = gemini.nearest_ratio(model, *_image_size(references[0])) if references else "1:1"
            resolution = model_input.get("resolution")
            size = wire.gemini_pixel_size(app, ratio, str(resolution) if resolution else None)
            if size is None:
                base = wire.gemini_pixel_size(app, ratio, "1K") or (1024, 1024)
                size = (base[0] // 2, base[1] // 2)
            return size
        if app.endswith(wire.IMAGE_TO_IMAGE_SUFFIX) and references:
            return _image_size(references[0])
        return wire.flux_pixel_size(model_input.get("image_size")) or wire.IMAGE_SIZES[wire.DEFAULT_IMAGE_SIZE]

    # ---- validation ----------------------------------------------------------------------------------------

    def _validate(self, app: str, inp: dict[str, Any], base: str) -> tuple[list[dict[str, Any]], list[bytes]]:
        """Problems with a model input (fal's 422 ``detail`` entries) and the input images it names."""
        problems: list[dict[str, Any]] = []
        prompt = inp.get("prompt")
        if prompt is None:
            problems.append(wire.validation_item(["body", "prompt"], wire.MESSAGES["missing"], "missing", inp))
        elif not isinstance(prompt, str):
            problems.append(wire.validation_item(["body", "prompt"], "Input should be a valid string", "string_type",
                                                 prompt))
        n = inp.get("num_images", 1)
        if not isinstance(n, int) or isinstance(n, bool):
            problems.append(wire.validation_item(["body", "num_images"], "Input should be a valid integer",
                                                 "int_type", n))
        elif not 1 <= n <= wire.MAX_NUM_IMAGES:
            bound, kind = (wire.MAX_NUM_IMAGES, "less_than_equal") if n > 1 else (1, "greater_than_equal")
            word = "less" if n > 1 else "greater"
            problems.append(wire.validation_item(["body", "num_images"], f"Input should be {word} than or equal to "
                                                 f"{bound}", kind, n, {"le" if n > 1 else "ge": bound}))
        seed = inp.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            problems.append(wire.validation_item(["body", "seed"], "Input should be a valid integer", "int_type", seed))
        model = wire.gemini_model(app)
        formats = wire.GEMINI_OUTPUT_FORMATS if model else wire.FLUX_OUTPUT_FORMATS
        self._literal(problems, inp, "output_format", formats)
        references: list[bytes] = []
        if model is not None:
            ratios = tuple(gemini.aspect_ratios(model)) + ((wire.EDIT_AUTO_RATIO,) if wire.is_edit_app(app) else ())
            self._literal(problems, inp, "aspect_ratio", ratios)
            if model in wire.GEMINI_RESOLUTIONS:
                self._literal(problems, inp, "resolution", wire.GEMINI_RESOLUTIONS[model])
            self._literal(problems, inp, "safety_tolerance", wire.SAFETY_TOLERANCES)
            if wire.is_edit_app(app):
                references = self._images(problems, inp, "image_urls", base, many=True)
        else:
            if "image_size" in inp and wire.flux_pixel_size(inp["image_size"]) is None:
                problems.append(wire.validation_item(
                    ["body", "image_size"], _literal_msg(tuple(wire.IMAGE_SIZES)) + " or an object with width and "
                    "height", "literal_error", inp["image_size"]))
            steps = inp.get("num_inference_steps", 28)
            if not isinstance(steps, int) or not 1 <= steps <= 50:
                problems.append(wire.validation_item(["body", "num_inference_steps"], "Input should be less than or "
                                                     "equal to 50", "less_than_equal", steps, {"le": 50}))
            if app.endswith(wire.IMAGE_TO_IMAGE_SUFFIX):
                references = self._images(problems, inp, "image_url", base, many=False)
        return problems, references

    @staticmethod
    def _literal(problems: list[dict[str, Any]], inp: dict[str, Any], name: str, values: tuple[str, ...]) -> None:
        if name in inp and inp[name] not in values:
            problems.append(wire.validation_item(["body", name], _literal_msg(values), "literal_error", inp[name],
                                                 {"expected": ", ".join(f"'{v}'" for v in values)}))

    def _images(self, problems: list[dict[str, Any]], inp: dict[str, Any], name: str, base: str,
                many: bool) -> list[bytes]:
        raw = inp.get(name)
        if raw is None:
            problems.append(wire.validation_item(["body", name], wire.MESSAGES["missing"], "missing", inp))
            return []
        urls = raw if many else [raw]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            problems.append(wire.validation_item(["body", name], "Input should be a valid list of URLs"
                                                 if many else "Input should be a valid URL", "url_type", raw))
            return []
        images: list[bytes] = []
        for i, url in enumerate(urls):
            loc: list[str | int] = ["body", name, i] if many else ["body", name]
            data = self._fetch(url, base)
            if data is None:
                problems.append(wire.validation_item(loc, wire.MESSAGES["file_download_error"],
                                                     "file_download_error", url[:64]))
                continue
            try:
                _image_size(data)
            except (UnidentifiedImageError, OSError):
                problems.append(wire.validation_item(loc, wire.MESSAGES["image_load_error"], "image_load_error",
                                                     url[:64]))
                continue
            images.append(data)
        return images

    def _fetch(self, url: str, base: str) -> bytes | None:
        """Bytes of a data URL or of a file on this CDN; ``None`` for anything the sandbox cannot reach."""
        if url.startswith("data:"):
            return data_url_bytes(url)
        path = urlsplit(url).path
        prefix = urlsplit(base).path + wire.SANDBOX_CDN + "/"
        if path.startswith(prefix):
            item = self.files.get(path[len(prefix):])
            return item.data if item is not None else None
        return None

    # ---- answers -------------------------------------------------------------------------------------------

    async def _answer(self, request: Request, outcome: Outcome, request_id: str, plan: RequestPlan) -> Response:
        status, body, headers = outcome
        data = json.dumps(body).encode()
        all_headers = {wire.REQUEST_ID_HEADER: request_id, **headers}
        if plan.fault == Fault.TRUNCATED_BODY and status == 200:
            return StreamingResponse(truncated(request.scope, data), media_type="application/json",
                                     headers={**all_headers, "content-length": str(len(data))})
        return Response(data, status_code=status, media_type="application/json", headers=all_headers)


    async def file(self, request: Request) -> Response:
        item = self.files.get(request.path_params["name"])
        if item is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        declare_intended(item.intended_ms)
        if item.drip_s > 0:
            return StreamingResponse(drip(self.sim, item.data, item.drip_s), media_type=item.mime,
                                     headers={"content-length": str(len(item.data))})
        return Response(item.data, media_type=item.mime)



def wire_response(outcome: Outcome, request_id: str) -> Response:
    status, body, headers = outcome
    return JSONResponse(body, status_code=status, headers={wire.REQUEST_ID_HEADER: request_id, **headers})


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
