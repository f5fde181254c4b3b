"""Simulated OpenAI Batch API for images (facts in :mod:`harness.wire.openai_images`): files, batches, job
states over (scaled) time, output and error files correlated by ``custom_id``, expiry and partial failure.

The official ``openai`` SDK's ``client.files.create(purpose="batch")``, ``client.batches.create/retrieve/cancel``
and ``client.files.content`` work against it unchanged but for ``base_url``. Each input line runs as the
interactive ``/v1/images/generations`` would (same validation, rendering, usage and injected faults); a
line's failure is written to the error file as ``{"response": {"status_code", "body": {"error": …}}}``, a
line the batch never reached (expiry, cancel) as ``{"response": null, "error": {"code", "message"}}``.
Job timing follows :mod:`harness.sandbox.batch_clock`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.sandbox.batch_clock import Fate, JobClock, Phase, fate_of
from harness.sandbox.faults import Fault
from harness.sandbox.simulation import RequestPlan
from harness.wire import openai_images as wire

if TYPE_CHECKING:
    from harness.sandbox.openai_images import OpenAIImagesServer

BATCH_FILE_LIMIT = 64
"""Most batch files (inputs and results) the sandbox keeps; the oldest go first."""


@dataclass
class _File:
    id: str
    data: bytes
    filename: str
    purpose: str
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.created_at + 30 * 86400, "status_details": None}


@dataclass
class _Line:
    custom_id: str
    body: dict[str, Any]
    plan: RequestPlan


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, Any] | None
    created_at: int
    clock: JobClock
    lines: list[_Line]
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    finished: str | None = None
    """The terminal status once results are written (``completed``, ``expired``, ``failed``, ``cancelled``)."""
    finished_at: int | None = None
    completed: int = 0
    failed: int = 0
    answers: asyncio.Task[list[tuple[int, dict[str, Any], str]]] | None = None
    """Every line's answer, rendered in the background while the job's clock runs (as a real job works)."""


def _invalid(message: str, param: str | None, code: str = "invalid_value", status: int = 400) -> JSONResponse:
    return JSONResponse(wire.error_body(message, "invalid_request_error", code, param), status_code=status)


class OpenAIBatchRoutes:
    """The Files and Batches endpoints of one simulated OpenAI server (shares its simulation and rendering)."""

    def __init__(self, server: OpenAIImagesServer) -> None:
        self.server = server
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}

    def routes(self) -> list[Route]:
        return [
            Route(wire.FILES_PATH, self.upload, methods=["POST"]),
            Route(wire.FILES_PATH + "/{file_id}/content", self.content, methods=["GET"]),
            Route(wire.BATCHES_PATH, self.create, methods=["POST"]),
            Route(wire.BATCHES_PATH + "/{batch_id}", self.retrieve, methods=["GET"]),
            Route(wire.BATCHES_PATH + "/{batch_id}/cancel", self.cancel, methods=["POST"]),
        ]

    def _keep(self, f: _File) -> None:
        self.files[f.id] = f
        while len(self.files) > BATCH_FILE_LIMIT:
            self.files.pop(next(iter(self.files)))

    def file_object(self, file_id: str) -> JSONResponse | None:
        """``GET /files/{id}``: the file's object, or None when it is not a batch file (an image URL)."""
        f = self.files.get(file_id)
        return JSONResponse(f.obj()) if f is not None else None

    async def upload(self, request: Request) -> Response:
        denied = self.server.auth(request)
        if denied is not None:
            return denied
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _invalid("Files are uploaded as multipart/form-data.", None, "invalid_content_type")
        async with request.form(max_files=1) as form:
            purpose = form.get("purpose")
            upload = form.get("file")
            if not isinstance(purpose, str) or not purpose:
                return _invalid("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
            if upload is None or isinstance(upload, str):
                return _invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter")
            data = await upload.read()
            name = upload.filename or "upload"
        if len(data) > wire.BATCH_MAX_FILE_BYTES:
            return _invalid(f"File is too large: {len(data)} bytes (at most {wire.BATCH_MAX_FILE_BYTES}).", "file")
        f = _File("file-" + self.server.sim.new_id(), data, name, purpose, int(time.time()))
        self._keep(f)
        return JSONResponse(f.obj())

    async def content(self, request: Request) -> Response:
        denied = self.server.auth(request)
        if denied is not None:
            return denied
        f = self.files.get(request.path_params["file_id"])
        if f is None:
            return _invalid(f"No such File object: {request.path_params['file_id']}", "id", "not_found", 404)
        return Response(f.data, media_type="application/octet-stream")

    async def create(self, request: Request) -> Response:
        denied = self.server.auth(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _invalid("We could not parse the JSON body of your request.", None, "invalid_json")
        if not isinstance(body, dict):
            return _invalid("Request body must be a JSON object.", None, "invalid_type")
        if body.get("completion_window") != wire.BATCH_COMPLETION_WINDOW:
            return _invalid(f"Invalid value: '{body.get('completion_window')}'. Supported values are: '24h'.",
                            "completion_window")
        endpoint = body.get("endpoint")
        if endpoint != wire.BATCH_ENDPOINT:
            return _invalid(f"Invalid value: '{endpoint}'. The sandbox batches only '{wire.BATCH_ENDPOINT}'.",
                            "endpoint")
        source = self.files.get(str(body.get("input_file_id")))
        if source is None:
            return _invalid(f"No such File object: {body.get('input_file_id')}", "input_file_id", "not_found", 404)
        if source.purpose != wire.BATCH_PURPOSE:
            return _invalid("The input file must be uploaded with purpose 'batch'.", "input_file_id")
        lines, errors = self._parse_lines(source.data, str(endpoint))
        fate = Fate.FAIL if errors else fate_of(str(line.body.get("prompt", "")) for line in lines)
        if fate is Fate.FAIL and not errors:
            errors = [{"code": "invalid_request", "line": 1, "message": "The batch failed validation.",
                       "param": None}]
        clock = JobClock.start((line.plan.latency_s for line in lines), self.server.sim.settings.time_scale, fate)
        batch = _Batch("batch_" + self.server.sim.new_id(), source.id, str(endpoint),
                       body.get("metadata") if isinstance(body.get("metadata"), dict) else None, int(time.time()),
                       clock, lines, errors)
        if fate is not Fate.FAIL:
            batch.answers = asyncio.create_task(self._answers(batch, request))
        self.batches[batch.id] = batch
        return JSONResponse(self._object(batch))

    async def _answers(self, batch: _Batch, request: Request) -> list[tuple[int, dict[str, Any], str]]:
        out = []
        for line in batch.lines:
            request_id = "req_" + self.server.sim.new_id()
            status_code, answer = await self._answer(line, request, request_id)
            out.append((status_code, answer, request_id))
        return out

    def _parse_lines(self, data: bytes, endpoint: str) -> tuple[list[_Line], list[dict[str, Any]]]:
        lines: list[_Line] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                errors.append({"code": "invalid_json_line", "line": number, "param": None,
                               "message": "This line is not parseable as valid JSON."})
                continue
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not custom_id:
                errors.append({"code": "missing_required_parameter", "line": number, "param": "custom_id",
                               "message": "Missing required parameter: 'custom_id'."})
                continue
            if custom_id in seen:
                errors.append({"code": "duplicate_custom_id", "line": number, "param": "custom_id",
                               "message": "The custom_id for this request is a duplicate of another request. "
                                          "The custom_id parameter must be unique for each request in a batch."})
                continue
            seen.add(custom_id)
            if item.get("url") != endpoint or item.get("method") != "POST":
                errors.append({"code": "mismatched_endpoint", "line": number, "param": "url",
                               "message": f"The url of every request must be the batch's endpoint ({endpoint}) "
                                          "and its method POST."})
                continue
            body = item.get("body")
            if not isinstance(body, dict):
                errors.append({"code": "invalid_request", "line": number, "param": "body",
                               "message": "The request body must be a JSON object."})
                continue
            plan = self.server.sim.plan(str(body.get("model") or "gpt-image-1"), {}, str(body.get("prompt", "")))
            lines.append(_Line(custom_id, body, plan))
        if not lines and not errors:
            errors.append({"code": "empty_file", "line": None, "param": None,
                           "message": "The input file has no requests."})
        return lines, errors

    async def retrieve(self, request: Request) -> Response:
        denied = self.server.auth(request)
        if denied is not None:
            return denied
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _invalid(f"No batch found with id '{request.path_params['batch_id']}'.", None, "not_found", 404)
        await self._settle(batch, request)
        return JSONResponse(self._object(batch))

    async def cancel(self, request: Request) -> Response:
        denied = self.server.auth(request)
        if denied is not None:
            return denied
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _invalid(f"No batch found with id '{request.path_params['batch_id']}'.", None, "not_found", 404)
        batch.clock.cancel()
        await self._settle(batch, request)
        return JSONResponse(self._object(batch))

    def _status(self, batch: _Batch) -> str:
        if batch.finished is not None:
            return batch.finished
        phase = batch.clock.phase()
        return {Phase.PENDING: "validating", Phase.RUNNING: "in_progress", Phase.FINALIZING: "finalizing",
                Phase.CANCELLING: "cancelling"}.get(phase, "in_progress")

    async def _settle(self, batch: _Batch, request: Request) -> None:
        """Write the batch's results once its timeline has reached its end."""
        if batch.finished is not None:
            return
        phase = batch.clock.phase()
        if phase not in (Phase.DONE, Phase.CANCELLED):
            return
        if batch.clock.fate is Fate.FAIL:
            batch.finished, batch.finished_at = "failed", int(time.time())
            return
        if phase is Phase.CANCELLED:
            done = int(len(batch.lines) * batch.clock.progress(batch.clock.cancelled_at))
            status, reason = "cancelled", (wire.BATCH_CANCELLED_CODE, "This request was cancelled before it ran.")
        elif batch.clock.fate is Fate.EXPIRE:
            done = len(batch.lines) // 2
            status, reason = "expired", (wire.BATCH_EXPIRED_CODE,
                                         "This request could not be executed before the completion window expired.")
        else:
            done, status, reason = len(batch.lines), "completed", ("", "")
        outputs: list[str] = []
        failures: list[str] = []
        answers = await batch.answers if batch.answers is not None else []
        for index, line in enumerate(batch.lines):
            entry: dict[str, Any] = {"id": "batch_req_" + self.server.sim.new_id(), "custom_id": line.custom_id}
            if index >= done:
                entry.update(response=None, error={"code": reason[0], "message": reason[1]})
                failures.append(json.dumps(entry))
                batch.failed += 1
                continue
            status_code, answer, request_id = answers[index]
            entry.update(response={"status_code": status_code, "request_id": request_id, "body": answer}, error=None)
            if status_code == 200:
                outputs.append(json.dumps(entry))
                batch.completed += 1
            else:
                failures.append(json.dumps(entry))
                batch.failed += 1
        now = int(time.time())
        if outputs:
            out = _File("file-" + self.server.sim.new_id(), ("\n".join(outputs) + "\n").encode(),
                        f"{batch.id}_output.jsonl", "batch_output", now)
            self._keep(out)
            batch.output_file_id = out.id
        if failures:
            err = _File("file-" + self.server.sim.new_id(), ("\n".join(failures) + "\n").encode(),
                        f"{batch.id}_error.jsonl", "batch_output", now)
            self._keep(err)
            batch.error_file_id = err.id
        batch.finished, batch.finished_at = status, now

    async def _answer(self, line: _Line, request: Request, request_id: str) -> tuple[int, dict[str, Any]]:
        """What the interactive endpoint would have answered this line (status and JSON body)."""
        body, plan, server = line.body, line.plan, self.server
        model = str(body.get("model") or "gpt-image-1")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return 400, wire.error_body("Missing required parameter: 'prompt'.", "invalid_request_error",
                                        "missing_required_parameter", "prompt")
        from harness.sandbox.openai_images import KNOWN_MODELS

        if model not in KNOWN_MODELS:
            status, type_, code, message = wire.ERRORS["model_not_found"]
            return status, wire.error_body(message.format(model=model), type_, code)
        size = str(body.get("size") or ("auto" if wire.is_gpt_image(model) else "1024x1024"))
        if size not in wire.valid_sizes(model):
            return 400, wire.error_body(f"Invalid value: '{size}'.", "invalid_request_error", "invalid_value", "size")
        if plan.fault in (Fault.REFUSED, Fault.REFUSED_OUTPUT):
            status, type_, code, message = wire.ERRORS["moderation_blocked"]
            return status, wire.error_body(message.format(request_id=request_id), type_, code)
        if plan.fault in (Fault.SERVER_ERROR, Fault.OVERLOADED, Fault.MID_STREAM_ERROR, Fault.TIMEOUT,
                          Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY):
            status, type_, code, message = wire.ERRORS["server_error"]
            return status, wire.error_body(message, type_, code)
        if plan.fault == Fault.INVALID_REQUEST:
            return 400, wire.error_body("Invalid 'prompt': string too long.", "invalid_request_error",
                                        "string_above_max_length", "prompt")
        width, height = wire.pixel_size(size) or (1024, 1024)
        n = body.get("n", 1)
        meta = {"model": model, "prompt": prompt, "size": f"{width}x{height}",
                "quality": str(body.get("quality", "auto")), "fmt": str(body.get("output_format", "png")),
                "n": n if isinstance(n, int) and 1 <= n <= 10 else 1, "endpoint": "generations",
                "response_format": "b64_json", "partials": 0}
        return 200, await server.render(meta, plan, request, request_id)

    def _object(self, batch: _Batch) -> dict[str, Any]:
        status = self._status(batch)
        created = batch.created_at
        started = created + 1 if status != "validating" else None
        obj: dict[str, Any] = {
            "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "model": None,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id, "completion_window": wire.BATCH_COMPLETION_WINDOW,
            "status": status, "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": created, "in_progress_at": started if status != "failed" else None,
            "expires_at": created + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(batch.lines), "completed": batch.completed, "failed": batch.failed},
            "metadata": batch.metadata,
        }
        if batch.finished_at is not None:
            obj[{"completed": "completed_at", "failed": "failed_at", "expired": "expired_at",
                 "cancelled": "cancelled_at"}[status]] = batch.finished_at
            if status == "completed":
                obj["finalizing_at"] = batch.finished_at
        return obj
