"""An outside clock: an OpenAI-Images-shaped server, run in its own process, that logs its own clock per request.

The harness's timing is checked against this server's stamps. Both processes read ``time.perf_counter_ns()``,
which on Linux is ``clock_gettime(CLOCK_MONOTONIC)``: one clock for every process on the machine (the bench
checks it: each ``GET /now`` answer lies between the client's readings before and after it). So a client
stamp and a server stamp of the same exchange subtract directly, with no offset to estimate.

``POST /c/{keep|close}/{delay_ms}/v1/images/generations`` waits ``delay_ms`` after the request arrived, then
answers with a ~2 MB JSON body (``b64_json`` of a 1536x1024 PNG built once at start) and a fresh
``x-request-id``; ``close`` closes the connection after the answer, so the client's next request opens a new
one. Per request the server logs (all ``perf_counter_ns``):

* ``accepted``  its event loop accepted the connection (the kernel completed the TCP handshake earlier);
* ``first``     the first bytes of the request were read;
* ``received``  the request was complete (headers and body);
* ``hdr_before``/``hdr_after``  just before and after the response headers were handed to the kernel (the
                width of that window is the reference clock's own uncertainty for "headers sent");
* ``body_sent`` the last byte of the body was handed to the kernel (the transport's buffer drained);
* ``conn``, ``seq`` the connection's number and the request's place on it (0: first request).

``GET /stamps`` returns the log gathered since the last call as JSON and clears it; ``GET /now`` answers the
server's clock. Run: ``python -m tests.clock_server`` (prints the port it bound on 127.0.0.1, then serves).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import sys
import time
from typing import Any, cast

import numpy as np
from PIL import Image

now_ns = time.perf_counter_ns

WIDTH, HEIGHT = 1536, 1024
NOISE_ROWS = 330
"""Rows of random pixels: incompressible, so the PNG is ~1.5 MB and its base64 in JSON ~2 MB."""


def answer_png() -> bytes:
    """A 1536x1024 PNG of ~1.5 MB: a noisy band over a flat field."""
    pixels = np.full((HEIGHT, WIDTH, 3), (40, 90, 160), dtype=np.uint8)
    pixels[:NOISE_ROWS] = np.random.default_rng(7).integers(0, 256, size=(NOISE_ROWS, WIDTH, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def answer_body() -> bytes:
    b64 = base64.b64encode(answer_png()).decode("ascii")
    return json.dumps({"created": 0, "size": f"{WIDTH}x{HEIGHT}", "data": [{"b64_json": b64}]}).encode()


class ClockServer:
    """State shared by the connections: the pre-built body, the id counters and the stamp log."""

    def __init__(self) -> None:
        self.body = answer_body()
        self.log: list[dict[str, Any]] = []
        self.conn_ids = itertools.count()
        self.request_ids = itertools.count()


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, parsed by hand so every stamp sits next to the event it marks."""

    def __init__(self, server: ClockServer) -> None:
        self.server = server
        self.accepted = now_ns()
        self.conn = next(server.conn_ids)
        self.seq = 0
        self.buffer = b""
        self.first: int | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: dict[str, Any] | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.set_write_buffer_limits(high=0)

    def data_received(self, data: bytes) -> None:
        if self.first is None:
            self.first = now_ns()
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < head_end + 4 + length:
            return
        received = now_ns()
        self.buffer = self.buffer[head_end + 4 + length:]
        first, self.first = self.first, None
        method, path = head.split(" ", 2)[:2]
        self.route(method, path, first, received)

    def route(self, method: str, path: str, first: int, received: int) -> None:
        assert self.transport is not None
        if method == "GET" and path == "/now":
            self.send_small(json.dumps({"now_ns": now_ns()}).encode())
        elif method == "GET" and path == "/stamps":
            log, self.server.log = self.server.log, []
            self.send_small(json.dumps(log).encode())
        else:
            parts = path.split("/")
            mode, delay_ms = parts[2], float(parts[3])
            self.closing = mode == "close"
            record: dict[str, Any] = {"id": f"r{next(self.server.request_ids)}", "conn": self.conn, "seq": self.seq,
                                      "accepted": self.accepted, "first": first, "received": received}
            self.seq += 1
            asyncio.get_running_loop().call_at(asyncio.get_running_loop().time() + delay_ms / 1000,
                                               self.answer, record)

    def send_small(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             + f"content-length: {len(body)}\r\n\r\n".encode() + body)

    def answer(self, record: dict[str, Any]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = self.server.body
        head = ("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nx-request-id: {record['id']}\r\n"
                + ("connection: close\r\n" if self.closing else "") + "\r\n").encode()
        record["hdr_before"] = now_ns()
        transport.write(head)
        record["hdr_after"] = now_ns()
        transport.write(body)
        self.server.log.append(record)
        if transport.get_write_buffer_size() == 0:
            self.sent(record)
        else:
            self.pending = record

    def sent(self, record: dict[str, Any]) -> None:
        record["body_sent"] = now_ns()
        if self.closing and self.transport is not None:
            self.transport.close()

    def resume_writing(self) -> None:
        if self.pending is not None:
            record, self.pending = self.pending, None
            self.sent(record)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve() -> None:
    state = ClockServer()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    sys.exit(main())
