"""Simulated Gemini Batch Mode with inline requests (facts in :mod:`harness.wire.gemini`): a job created by
``models/{model}:batchGenerateContent``, polled at ``batches/{id}``, its states over (scaled) time and, once it
succeeded, its inlined responses keyed by each request's ``metadata``.

The official ``google-genai`` SDK's ``client.batches.create(model=..., src=[...inline requests...])``,
``client.batches.get(name=...)`` and ``client.batches.cancel(name=...)`` work against it unchanged but for the
base URL. Each inline request is answered as ``generateContent`` would answer it (validation, rendering, usage,
injected faults); a request that fails carries a ``google.rpc.Status`` ``error`` instead of a ``response``.
An expired job has no results (the guide: a job pending or running for over 48 hours expires with nothing to
retrieve); a cancelled one keeps nothing either. Timing follows :mod:`harness.sandbox.batch_clock`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.sandbox.batch_clock import Fate, JobClock, Phase, fate_of
from harness.sandbox.simulation import RequestPlan
from harness.wire import gemini as wire

if TYPE_CHECKING:
    from harness.sandbox.gemini import Call, GeminiServer

BATCH_LIMIT = 64
"""Most jobs the sandbox keeps (the oldest go first)."""


@dataclass
class _Line:
    metadata: dict[str, Any] | None
    call: Call | None
    plan: RequestPlan | None
    error: dict[str, Any] | None = None


@dataclass
class _Job:
    name: str
    model: str
    display_name: str
    created: str
    clock: JobClock
    lines: list[_Line]
    finished: str | None = None
    ended: str | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)
    failed_reason: str | None = None
    answers: asyncio.Task[list[dict[str, Any]]] | None = None
    """Every line's inlined response, rendered in the background while the job's clock runs."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rpc_error(status: str, message: str) -> dict[str, Any]:
    return {"code": wire.RPC_CODES.get(status, 2), "message": message, "details": []}


class GeminiBatchRoutes:
    """Batch Mode endpoints of one simulated Gemini server (shares its validation, rendering and simulation)."""

    def __init__(self, server: GeminiServer) -> None:
        self.server = server
        self.jobs: dict[str, _Job] = {}

    def routes(self) -> list[Route]:
        return [Route("/{version}" + wire.BATCHES_PATH + "/{name}", self.get_or_cancel, methods=["GET", "POST"])]

    async def create(self, request: Request) -> Response:
        from harness.sandbox.gemini import GeminiError

        problem = self.server.key_problem(request)
        if problem is not None:
            return problem.response()
        model = str(request.path_params["target"]).rpartition(":")[0].removeprefix("models/")
        raw = await request.body()
        if len(raw) > wire.BATCH_MAX_INLINE_BYTES:
            return GeminiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: "
                                                   f"{wire.BATCH_MAX_INLINE_BYTES} bytes.").response()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return GeminiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}").response()
        batch = body.get("batch") if isinstance(body, dict) else None
        requests = (((batch or {}).get("inputConfig") or {}).get("requests") or {}).get("requests") \
            if isinstance(batch, dict) else None
        if not isinstance(requests, list) or not requests:
            return GeminiError("INVALID_ARGUMENT", "* BatchGenerateContentRequest.batch.input_config: input_config "
                                                   "must have inline requests or a file name\n").response()
        version = str(request.path_params["version"])
        lines = [self._line(model, version, item) for item in requests]
        if all(line.error is not None and line.call is None for line in lines) and model not in _known():
            return GeminiError("NOT_FOUND", wire.MESSAGES["model_not_found"].format(
                model=model, version=version, method=wire.BATCH_GENERATE)).response()
        fate = fate_of(line.call.prompt for line in lines if line.call is not None)
        clock = JobClock.start((line.plan.latency_s for line in lines if line.plan is not None),
                               self.server.sim.settings.time_scale, fate)
        job = _Job("batches/" + self.server.sim.new_id(), model, str(batch.get("displayName") or "batch"),  # type: ignore[union-attr]
                   _now(), clock, lines)
        if fate is Fate.COMPLETE:
            job.answers = asyncio.create_task(self._answers(job))
        self.jobs[job.name] = job
        while len(self.jobs) > BATCH_LIMIT:
            self.jobs.pop(next(iter(self.jobs)))
        return JSONResponse(self._operation(job))

    def _line(self, model: str, version: str, item: Any) -> _Line:
        from harness.sandbox.gemini import GeminiError

        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            return _Line(None, None, None, _rpc_error("INVALID_ARGUMENT", "Each inline request needs a `request`."))
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else None
        try:
            call = self.server.call_from_body(model, wire.GENERATE, version, False, item["request"])
        except GeminiError as err:
            status = str(err.body.get("error", {}).get("status", "INVALID_ARGUMENT"))
            return _Line(metadata, None, None, _rpc_error(status, str(err)))
        return _Line(metadata, call, self.server.sim.plan(model, {}, call.prompt))

    async def get_or_cancel(self, request: Request) -> Response:
        from harness.sandbox.gemini import GeminiError

        problem = self.server.key_problem(request)
        if problem is not None:
            return problem.response()
        raw_name = str(request.path_params["name"])
        cancel = raw_name.endswith(":" + wire.BATCH_CANCEL)
        if cancel != (request.method == "POST"):
            return GeminiError("NOT_FOUND", f"Method not found: {request.url.path}").response()
        job = self.jobs.get("batches/" + raw_name.removesuffix(":" + wire.BATCH_CANCEL))
        if job is None:
            return GeminiError("NOT_FOUND", f"Batch {raw_name} not found.").response()
        if cancel:
            job.clock.cancel()
            await self._settle(job)
            return JSONResponse({})
        await self._settle(job)
        return JSONResponse(self._operation(job))

    def _state(self, job: _Job) -> str:
        if job.finished is not None:
            return job.finished
        return {Phase.PENDING: "BATCH_STATE_PENDING", Phase.CANCELLING: "BATCH_STATE_RUNNING"}.get(
            job.clock.phase(), "BATCH_STATE_RUNNING")

    async def _settle(self, job: _Job) -> None:
        if job.finished is not None:
            return
        phase = job.clock.phase()
        if phase not in (Phase.DONE, Phase.CANCELLED):
            return
        job.ended = _now()
        if phase is Phase.CANCELLED:
            job.finished = "BATCH_STATE_CANCELLED"
            return
        if job.clock.fate is Fate.EXPIRE:
            job.finished = "BATCH_STATE_EXPIRED"
            return
        if job.clock.fate is Fate.FAIL:
            job.finished = "BATCH_STATE_FAILED"
            job.failed_reason = "The batch failed validation."
            return
        job.responses = await job.answers if job.answers is not None else []
        job.finished = "BATCH_STATE_SUCCEEDED"

    async def _answers(self, job: _Job) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in job.lines:
            entry: dict[str, Any] = {}
            if line.call is None or line.plan is None:
                entry["error"] = line.error
            else:
                body, error = await self.server.answer(line.call, line.plan)
                if error is not None:
                    status = str(error.body["error"]["status"])
                    entry["error"] = _rpc_error(status, str(error))
                else:
                    entry["response"] = body
            if line.metadata is not None:
                entry["metadata"] = line.metadata
            out.append(entry)
        return out

    def _operation(self, job: _Job) -> dict[str, Any]:
        state = self._state(job)
        pending = sum(1 for _ in job.lines) if state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING") else 0
        failed = sum(1 for r in job.responses if "error" in r)
        metadata: dict[str, Any] = {
            "@type": wire.BATCH_TYPE, "model": f"models/{job.model}", "displayName": job.display_name,
            "createTime": job.created, "updateTime": job.ended or _now(), "state": state, "name": job.name,
            "batchStats": {"requestCount": str(len(job.lines)), "pendingRequestCount": str(pending),
                           "successfulRequestCount": str(len(job.responses) - failed),
                           "failedRequestCount": str(failed)},
        }
        if job.ended is not None:
            metadata["endTime"] = job.ended
        operation: dict[str, Any] = {"name": job.name, "metadata": metadata}
        if state == "BATCH_STATE_SUCCEEDED":
            output = {"@type": wire.BATCH_OUTPUT_TYPE, "inlinedResponses": {"inlinedResponses": job.responses}}
            metadata["output"] = output
            operation.update(done=True, response=output)
        elif state in wire.BATCH_TERMINAL:
            operation["done"] = True
            if job.failed_reason is not None:
                operation["error"] = _rpc_error("INVALID_ARGUMENT", job.failed_reason)
        return operation


def _known() -> tuple[str, ...]:
    from harness.sandbox.gemini import KNOWN_MODELS

    return KNOWN_MODELS
