"""A small HTTP/1.1 client for load generation: keep-alive connections over asyncio streams, and no more
parsing than a load generator needs (the status line, headers, a body framed by ``Content-Length`` or
chunked transfer coding, ``Set-Cookie``), per RFC 9112 (HTTP/1.1 message syntax).

Why not httpx: in the arena's load bench, on two shared cores, the voters' httpx clients spent 2.9 to
5 ms of CPU per loop (a page, two images and a vote), as much as both arena workers together. A load
generator that takes the cores it measures measures itself: the figure said more about the client than
the servers. Load tools keep their client cheap for that reason (wrk is written in C, k6 in Go). This one
spends a fraction of that (the bench prints the client's CPU per vote beside the workers' and
PostgreSQL's), and it is tested on its own in ``tests/test_loadclient.py``.

Scope: plain ``http://`` to one origin, requests with a JSON body or none, answers read whole. Idle
connections are dropped after :data:`IDLE_REUSE_S` (below uvicorn's 5 s keep-alive timeout), so a request
is never written on a connection the server may be closing; nothing is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

IDLE_REUSE_S = 4.0
"""An idle connection older than this is closed rather than reused (uvicorn closes idle ones after 5 s)."""
MAX_HEAD_BYTES = 64 * 1024


class LoadClientError(Exception):
    """A request that failed: the connection, a malformed answer, a timeout, or (from ``raise_for_status``)
    a status of 400 or more. The message names the request."""


@dataclass(frozen=True)
class Reply:
    """One answer: ``headers`` by lower-case name (a repeated header's values joined by ``, ``, except
    ``set-cookie``, kept apart in ``cookies``), ``body`` undecoded."""

    request: str
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def raise_for_status(self) -> Reply:
        if self.status >= 400:
            raise LoadClientError(f"{self.request}: HTTP {self.status}: {self.body[:200]!r}")
        return self


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


def _parse_head(request: str, head: bytes) -> tuple[int, dict[str, str], list[str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise LoadClientError(f"{request}: malformed status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise LoadClientError(f"{request}: malformed header line {line[:100]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), headers, cookies


async def read_chunked(reader: asyncio.StreamReader, request: str) -> bytes:
    """A chunked body (RFC 9112 §7.1): size lines in hex (extensions after ``;`` ignored), then the
    trailer section, which is read and dropped."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise LoadClientError(f"{request}: malformed chunk size {size_text[:40]!r}") from None
        if size < 0:
            raise LoadClientError(f"{request}: malformed chunk size {size_text[:40]!r}")
        if size == 0:
            break
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise LoadClientError(f"{request}: chunk not followed by CRLF")
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
    return bytes(body)


async def read_reply(reader: asyncio.StreamReader, request: str, *, head_request: bool = False) -> tuple[Reply, bool]:
    """One answer from ``reader``, and whether the connection may carry another request."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise LoadClientError(f"{request}: answer head over {MAX_HEAD_BYTES} bytes") from None
    status, headers, cookies = _parse_head(request, head[:-4])
    keep = "close" not in headers.get("connection", "").lower()
    if head_request or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader, request)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise LoadClientError(f"{request}: malformed Content-Length {length[:40]!r}")
        body = await reader.readexactly(int(length))
    else:
        body, keep = await reader.read(), False
    return Reply(request, status, headers, cookies, body), keep


@dataclass
class LoadClient:
    """One simulated visitor to ``url`` (``http://host:port``): its cookies and its own keep-alive
    connections (opened on demand, so concurrent requests use several, as a browser's would)."""

    url: str
    timeout_s: float = 60.0
    cookies: dict[str, str] = field(default_factory=dict)
    _idle: list[_Connection] = field(default_factory=list)
    opened: int = 0
    """Connections opened so far (for tests of reuse)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"LoadClient needs http://host:port, got {self.url!r}")
        self._host, self._port = parts.hostname, parts.port
        self._authority = parts.netloc

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_REUSE_S and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        reader, writer = await asyncio.open_connection(self._host, self._port, limit=MAX_HEAD_BYTES)
        self.opened += 1
        return _Connection(reader, writer)

    def _remember(self, cookies: list[str]) -> None:
        for cookie in cookies:
            pair, *attributes = cookie.split(";")
            name, sep, value = pair.partition("=")
            if not sep:
                continue
            expired = any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attributes)
            if expired:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip().strip('"')

    async def request(self, method: str, path: str, *, json: Any = None) -> Reply:
        name = f"{method} {path}"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._authority}", "Accept: */*"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        body = b""
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        conn = await self._connection()
        keep = False
        try:
            async with asyncio.timeout(self.timeout_s):
                conn.writer.write(message)
                await conn.writer.drain()
                reply, keep = await read_reply(conn.reader, name, head_request=method == "HEAD")
        except TimeoutError:
            raise LoadClientError(f"{name}: no answer within {self.timeout_s:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise LoadClientError(f"{name}: {type(exc).__name__}: {exc}") from None
        finally:
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.writer.close()
        self._remember(reply.cookies)
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, json: Any = None) -> Reply:
        return await self.request("POST", path, json=json)

    async def aclose(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn.writer.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()
