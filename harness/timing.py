"""Clock points for every HTTP call of an attempt, taken from httpx trace hooks.

All clock values are ``time.perf_counter_ns()`` integers. Per call:

* ``t_start``      the call is issued (before the connection pool);
* ``t_conn``       a connection is in hand (pool wait, DNS, TCP and TLS are over): the moment request headers
                   start going out;
* ``t_req_sent``   the request body is fully written (matters for edits that upload images);
* ``t_hdr``        response headers received;
* ``t_first_byte`` the first chunk of the response body arrived;
* ``t_last_byte``  the body is complete.

Over HTTP/1.1 the received points are when the bytes reached the process (stamped by the event loop's
protocol callback, :mod:`harness.network`), not when the attempt's task got round to parsing them: with
hundreds of requests in flight, the task may wait behind other responses, and that wait is the harness's,
not the provider's. Where no stamp applies (HTTP/2, whose connection one task reads for all its streams, or
a client without the backend) the clock is read in the hook as before.

Adapters send every request through :class:`TimedHttp`, which records a :class:`CallTiming` per call, and
may set named marks (``ttfb`` for a protocol whose meaningful first byte is an event, ``queued``,
``running``, ``completed``, ``fetched`` for queue APIs). :func:`summarize` turns calls and marks into the
attempt-level numbers the store keeps, all in milliseconds relative to the attempt's start.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.network import last_arrival_ns
from harness.sse import SSEEvent, aparse_lines

now_ns = time.perf_counter_ns

CLOCK_VERSION = 2
"""Version of the measurement definitions (what latency, TTFB and the phases mean). Stored with every run;
runs of different versions are not compared unless the user says so. 1: latency ran to the validated image
(decoding and validation on the clock); 2: latency ends at the provider's last byte, the harness's own work is
``client_ms``."""


@contextmanager
def quiet_heap() -> Iterator[None]:
    """Keep the garbage collector's pauses out of the measurements of a run.

    Every object alive when the run starts (a notebook's data, a CLIP model loaded in the same process, a
    test session's imports) moves to the permanent generation, so the collections that the run's own
    allocations trigger no longer walk that heap: a full collection over a large heap pauses the event loop
    for tens of milliseconds, which would land in whatever requests are in flight. Objects created during
    the run are collected as usual (vLLM's benchmark freezes its heap the same way).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(slots=True)
class CallTiming:
    """One HTTP exchange. ``url`` has its query string removed (it may carry a key)."""

    label: str
    method: str
    url: str
    t_start: int
    t_conn: int | None = None
    t_req_sent: int | None = None
    t_hdr: int | None = None
    t_first_byte: int | None = None
    t_last_byte: int | None = None
    status: int | None = None
    conn_reused: bool | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    arrival_stamps: bool = False
    """The exchange runs over HTTP/1.1, whose bytes the reading task receives with their arrival times."""


def arrived(call: CallTiming) -> int:
    """When the bytes the current task read last reached the process, if they belong to ``call``; else now."""
    t = now_ns()
    if call.arrival_stamps:
        stamp = last_arrival_ns()
        if stamp is not None and call.t_start <= stamp <= t:
            return stamp
    return t


class _Trace:
    """httpx ``trace`` extension callback that fills a :class:`CallTiming`."""

    __slots__ = ("call", "connected")

    def __init__(self, call: CallTiming) -> None:
        self.call = call
        self.connected = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        t = now_ns()
        call = self.call
        if event.endswith("send_request_headers.started"):
            call.t_conn = t
            call.conn_reused = not self.connected
            call.arrival_stamps = event.startswith("http11.")
        elif event.endswith("send_request_body.complete"):
            call.t_req_sent = t
        elif event.endswith("receive_response_headers.complete"):
            call.t_hdr = max(arrived(call), call.t_req_sent or 0)
        elif event.startswith("connection.connect_tcp"):
            self.connected = True


class TimedResponse:
    """A fully read response with its timing. ``content`` is the decoded body."""

    __slots__ = ("content", "headers", "status_code", "timing", "url")

    def __init__(self, response: httpx.Response, content: bytes, timing: CallTiming) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.url = str(response.url)
        self.content = content
        self.timing = timing

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class TimedStream:
    """An open streaming response. Iterating records first- and last-byte times on its call."""

    def __init__(self, response: httpx.Response, timing: CallTiming) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.timing = timing

    async def aread(self) -> bytes:
        """Read the rest of the body (for error responses on a streaming endpoint)."""
        chunks = [chunk async for chunk in self._chunks()]
        return b"".join(chunks)

    async def _chunks(self) -> AsyncIterator[bytes]:
        timing = self.timing
        async for chunk in self.response.aiter_bytes():
            if timing.t_first_byte is None:
                timing.t_first_byte = arrived(timing)
            timing.bytes_received += len(chunk)
            yield chunk
        timing.t_last_byte = arrived(timing)

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Body lines without line endings (LF, CRLF or CR)."""
        timing = self.timing
        async for line in self.response.aiter_lines():
            if timing.t_first_byte is None:
                timing.t_first_byte = arrived(timing)
            timing.bytes_received += len(line) + 1
            yield line
        timing.t_last_byte = arrived(timing)

    def aiter_sse(self) -> AsyncIterator[SSEEvent]:
        """Server-sent events of the body."""
        return aparse_lines(self.aiter_lines())


def _strip_query(url: httpx.URL) -> str:
    return str(url.copy_with(query=None))


@dataclass
class TimedHttp:
    """The HTTP client an adapter uses for one attempt; owns no connections (the runner's client does)."""

    client: httpx.AsyncClient
    calls: list[CallTiming] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    poll_interval_s: float | None = None
    """Set by queue adapters: the interval between status polls, the bound on phase precision."""

    def mark(self, name: str) -> None:
        """Record a named clock point, the arrival of the bytes that revealed it; the first occurrence wins."""
        if name not in self.marks:
            self.marks[name] = arrived(self.calls[-1]) if self.calls else now_ns()

    def _build(self, method: str, url: str, label: str, kwargs: dict[str, Any]) -> tuple[httpx.Request, CallTiming]:
        request = self.client.build_request(method, url, **kwargs)
        call = CallTiming(label=label, method=method, url=_strip_query(request.url), t_start=now_ns())
        request.extensions["trace"] = _Trace(call)
        call.bytes_sent = int(request.headers.get("content-length", 0))
        self.calls.append(call)
        return request, call

    async def request(self, method: str, url: str, *, label: str = "generate", **kwargs: Any) -> TimedResponse:
        """Send a request and read its whole body. ``kwargs`` are those of ``httpx.AsyncClient.build_request``."""
        request, call = self._build(method, url, label, kwargs)
        response = await self.client.send(request, stream=True)
        try:
            call.status = response.status_code
            chunks: list[bytes] = []
            async for chunk in response.aiter_bytes():
                if call.t_first_byte is None:
                    call.t_first_byte = arrived(call)
                chunks.append(chunk)
            call.t_last_byte = arrived(call)
        finally:
            await response.aclose()
        content = b"".join(chunks)
        call.bytes_received = len(content)
        return TimedResponse(response, content, call)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, label: str = "generate", **kwargs: Any) -> AsyncIterator[TimedStream]:
        """Send a request and yield the open response for incremental reading."""
        request, call = self._build(method, url, label, kwargs)
        response = await self.client.send(request, stream=True)
        call.status = response.status_code
        try:
            yield TimedStream(response, call)
        finally:
            if call.t_last_byte is None:
                call.t_last_byte = now_ns()
            await response.aclose()


PHASE_MARKS = ("queued", "running", "completed", "fetched")
"""Marks a queue adapter sets: submit acknowledged, seen running, seen completed, result body read."""


@dataclass(frozen=True, slots=True)
class AttemptClock:
    """Attempt-level times in ms relative to ``t_start`` (``None`` where a point was never reached).

    ``ttfb_ms`` follows the protocol's definition (see README "What TTFB means"): headers of the first call
    minus its request-sent time, or, when the adapter marked ``ttfb``, that mark minus the request-sent
    time. ``latency_ms`` is ready minus start for the whole logical request (all polls and downloads).
    Queue phases: ``submit_ms`` (start → submit acknowledged), ``queue_ms`` (→ first seen running),
    ``run_ms`` (→ seen completed), ``fetch_ms`` (→ result read), ``download_ms`` (→ image bytes in hand).
    A phase whose ends were not both observed is ``None``, never 0: when a provider answers the submit with
    the finished result (Replicate's ``Prefer: wait``) or the first poll already says completed, the split
    between waiting and running is unknown to the client (the provider's own timings may still give it).
    """

    conn_ms: float | None
    req_sent_ms: float | None
    hdr_ms: float | None
    first_byte_ms: float | None
    last_byte_ms: float | None
    ttfb_ms: float | None
    first_byte_ttfb_ms: float | None
    latency_ms: float | None
    first_partial_ms: float | None
    submit_ms: float | None
    queue_ms: float | None
    run_ms: float | None
    fetch_ms: float | None
    download_ms: float | None
    poll_interval_ms: float | None
    conn_reused: bool | None
    bytes_sent: int
    bytes_received: int
    http_calls: int


def _ms(a: int | None, b: int | None) -> float | None:
    if a is None or b is None:
        return None
    return (a - b) / 1e6


def summarize(
    calls: list[CallTiming], marks: Mapping[str, int], t_start: int, t_ready: int | None, poll_interval_s: float | None
) -> AttemptClock:
    """Attempt-level clock from the calls and marks of one attempt."""
    first = calls[0] if calls else None
    last = calls[-1] if calls else None
    req_sent = first.t_req_sent if first else None
    ttfb_point = marks.get("ttfb", first.t_hdr if first else None)
    downloads = [c for c in calls if c.label == "download"]
    queued = marks.get("queued")
    running = marks.get("running")
    completed = marks.get("completed")
    fetched = marks.get("fetched")
    is_queue = queued is not None
    download_start = downloads[0].t_start if downloads else None
    download_end = downloads[-1].t_last_byte if downloads else None
    return AttemptClock(
        conn_ms=_ms(first.t_conn, t_start) if first else None,
        req_sent_ms=_ms(req_sent, t_start),
        hdr_ms=_ms(first.t_hdr, t_start) if first else None,
        first_byte_ms=_ms(first.t_first_byte, t_start) if first else None,
        last_byte_ms=_ms(last.t_last_byte, t_start) if last else None,
        ttfb_ms=_ms(ttfb_point, req_sent),
        first_byte_ttfb_ms=_ms(first.t_first_byte, req_sent) if first else None,
        latency_ms=_ms(t_ready, t_start),
        first_partial_ms=_ms(marks.get("first_partial"), t_start),
        submit_ms=_ms(queued, t_start) if is_queue else None,
        queue_ms=_ms(running, queued) if is_queue else None,
        run_ms=_ms(completed, running) if is_queue else None,
        fetch_ms=_ms(fetched, completed) if is_queue else None,
        download_ms=_ms(download_end, download_start),
        poll_interval_ms=poll_interval_s * 1000.0 if poll_interval_s is not None else None,
        conn_reused=first.conn_reused if first else None,
        bytes_sent=sum(c.bytes_sent for c in calls),
        bytes_received=sum(c.bytes_received for c in calls),
        http_calls=len(calls),
    )
