"""A loopback HTTP server with injected, known delays, run in its own process for timing tests and benchmarks.

``POST /d/H/B/K/v1/images/generations`` waits H ms before sending headers, then B ms before sending the body:
an OpenAI-Images-shaped JSON carrying a ~K KB PNG (``K=0`` gives a tiny one). The delays sit in the path so
an adapter's base URL (``http://127.0.0.1:PORT/d/H/B/K/v1``) carries them. The server
stamps its own ``time.perf_counter_ns()`` readings into headers and body: on Linux that clock is
CLOCK_MONOTONIC, shared by every process on the machine, so a client can compare its clock points with the
server's exactly. Run: ``python -m tests.delay_server PORT``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import time
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image


@lru_cache(maxsize=16)
def png_of_size(kb: int) -> bytes:
    """A PNG of about ``kb`` kilobytes (random pixels do not compress)."""
    if kb <= 0:
        img = Image.new("RGB", (8, 8), (200, 100, 50))
    else:
        side = max(8, int((kb * 1024 / 3) ** 0.5))
        pixels = np.random.default_rng(kb).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        img = Image.fromarray(pixels, "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=0)
    return out.getvalue()


@lru_cache(maxsize=16)
def body_of_size(kb: int) -> bytes:
    return json.dumps({"created": 0, "data": [{"b64_json": base64.b64encode(png_of_size(kb)).decode()}]}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    t_recv = time.perf_counter_ns()
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    parts = scope["path"].split("/")
    hdr_ms, body_ms, kb = (float(parts[2]), float(parts[3]), int(parts[4])) if parts[1:2] == ["d"] else (0, 0, 0)
    body = body_of_size(kb)
    if hdr_ms:
        await asyncio.sleep(hdr_ms / 1000)
    t_hdr = time.perf_counter_ns()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", b"req_delay"), (b"x-server-recv-ns", str(t_recv).encode()),
        (b"x-server-hdr-ns", str(t_hdr).encode()),
    ]})
    if body_ms:
        await asyncio.sleep(body_ms / 1000)
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off",
                backlog=4096, loop="uvloop" if _has_uvloop() else "asyncio", http="httptools" if _has_httptools()
                else "h11")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
