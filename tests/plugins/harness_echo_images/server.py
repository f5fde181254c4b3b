"""The echo-images sandbox server: the profile's latency and faults, then a drawn PNG."""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.sandbox.simulation import SimulatedProvider
from harness_echo_images import wire


def _error(status: int, code: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={wire.REQUEST_ID_HEADER: request_id})


class EchoImagesServer:
    """Routes of the simulated echo-images API."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self.sim = sim

    def app(self) -> Starlette:
        return Starlette(routes=[Route(wire.GENERATE_PATH, self.generate, methods=["POST"])])

    async def generate(self, request: Request) -> Response:
        request_id = self.sim.new_id("echo_")
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if self.sim.check_key(key) != "ok":
            return _error(401, "unauthorized", "missing or invalid key", request_id)
        try:
            body = json.loads(await request.body())
            model, prompt = str(body["model"]), str(body["prompt"])
            size = (int(body.get("width", 64)), int(body.get("height", 64)))
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", "expected JSON with model, prompt, width and height", request_id)
        plan = self.sim.plan(model, request.headers, prompt)
        if plan.fault is not None:
            await self.sim.sleep(plan.latency_s * 0.5)
            return _error(500, plan.fault.value, "simulated failure", request_id)
        rendering = asyncio.create_task(self.sim.images.render_async(model, prompt, None, size))
        await self.sim.sleep(plan.latency_s)
        return Response(await rendering, media_type="image/png", headers={wire.REQUEST_ID_HEADER: request_id})
