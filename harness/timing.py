"""Clock points for every HTTP call of an attempt, taken from httpx trace hooks.

All clock values are ``time.perf_counter_ns()`` integers. Per call:

* ``t_start``      the call is issued, its request already built (body serialised, references encoded), before
                   the connection pool;
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
attempt-level numbers the store keeps, all in milliseconds relative to the attempt's start (its first call's
``t_start``). docs/measurement.md defines every figure and how it was checked against an outside clock.

Every body is read through :class:`ResponseLimits`: a hostile or broken provider (a gzip bomb, an endless
event stream, a body of gigabytes) fails its own attempt with a classified error while memory stays bounded.
"""

from __future__ import annotations

import codecs
import gc
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.network import last_arrival_ns
from harness.providers.base import ErrorKind, ProviderError
from harness.sse import SSEEvent, aparse_lines

now_ns = time.perf_counter_ns

CLOCK_VERSION = 2
"""Version of the measurement definitions (what latency, TTFB and the phases mean). Stored with every run;
runs of different versions are not compared unless the user says so. 1: latency ran from before the adapter
built its request to the validated image (request building, connection set-up, decoding and validation on the
clock); 2: latency runs from the first request's headers going out on a connection in hand to the provider's
last byte (the final response, or the image download for URL answers and queue APIs); connection set-up is
``conn_ms`` (``latency_with_connect_ms`` includes it) and the harness's own work after the last byte is
``client_ms``."""

SANDBOX_INTENDED_HEADER = "x-sandbox-intended-ms"
"""Sandbox response header: the delay (ms, time-scaled) the sandbox intended for the whole generation."""

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """Bounds on what one attempt may receive; a hit fails that attempt (``bad_output`` with a
    ``provider_code`` naming the limit), never the run.

    Defaults sit well above the largest real answer. The largest single image a provider documents is
    Gemini 3 Pro Image at 4K (4096x4096, 16.8 megapixels; https://ai.google.dev/gemini-api/docs/image-generation);
    as an incompressible RGB PNG that is ~50 MB, ~67 MB as base64 in JSON. GPT Image answers ``n`` up to 10
    images of at most 1536x1024 (https://platform.openai.com/docs/api-reference/images), ~63 MB of base64 if
    every one were incompressible. Real answers are a fraction of that (a 4K photo PNG is 20-30 MB).
    """

    max_body_bytes: int = 192 * MIB
    """Decoded bytes of one response body (counted while reading: the body never grows past it)."""
    max_compression_ratio: float = 200.0
    """Decoded bytes per received byte, checked once a body has decoded past :attr:`ratio_floor_bytes`.
    Base64 JSON compresses about 1.35:1 and PNG/JPEG not at all; a gzip bomb reaches 1000:1 (10^6:1 nested)."""
    ratio_floor_bytes: int = 8 * MIB
    """Decoded size below which the compression ratio is not checked (small text bodies compress well)."""
    max_stream_bytes: int = 192 * MIB
    """Decoded bytes of one server-sent-event stream."""
    max_stream_events: int = 100_000
    """Events plus comment lines of one stream (fal's status stream sends a few per second of a job)."""
    max_stream_s: float = 3600.0
    """Seconds one stream may stay open (the attempt's total timeout usually ends it first)."""
    max_image_pixels: int = 8192 * 8192
    """Pixels of one returned image, checked from its header before decoding: four times the largest
    documented output (4096x4096); Pillow's own bomb check (89 megapixels) is process-wide, this is per image."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_compression_ratio", "ratio_floor_bytes", "max_stream_bytes",
                     "max_stream_events", "max_stream_s", "max_image_pixels"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ResponseLimits.{name} must be positive, got {getattr(self, name)!r}")


DEFAULT_LIMITS = ResponseLimits()


def limit_error(code: str, message: str, status: int | None = None) -> ProviderError:
    """The classified failure of an attempt whose answer broke one of the :class:`ResponseLimits`."""
    return ProviderError(ErrorKind.BAD_OUTPUT, message, provider_code=code, http_status=status)


@contextmanager
def quiet_heap() -> Iterator[None]:
    """Keep the garbage collector's pauses out of the measurements of a run.

    Every object alive when the run starts (a notebook's data, a CLIP model loaded in the same process, a
    test session's imports) moves to the permanent generation, so the collections that the run's own
    allocations trigger no longer walk that heap: a full collection over a large heap pauses the event loop
    for tens of milliseconds, which would land in whatever requests are in flight. Objects created during
    the run are collected as usual (vLLM's benchmark freezes its heap the same way).

    Only the young generations are collected first (``gc.collect(1)``): a full collection walks that same large
    heap (about 0.25 s in a test session, paid again before every run, since ``unfreeze`` hands the heap back to
    the oldest generation). Garbage already in the oldest generation is frozen with the rest and collected as
    usual after the run.
    """
    gc.collect(1)
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
    """Decoded body bytes read (after any Content-Encoding)."""
    arrival_stamps: bool = False
    """The exchange runs over HTTP/1.1, whose bytes the reading task receives with their arrival times."""
    intended_ms: float | None = None
    """The sandbox's ``x-sandbox-intended-ms`` header on this response, when present and a finite number ≥ 0."""


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


class _Inflate:
    """One bounded gzip or deflate layer: never returns more than ``max_out`` bytes per call."""

    __slots__ = ("deflate", "first", "z")

    def __init__(self, encoding: str) -> None:
        self.deflate = encoding == "deflate"
        self.first = True
        self.z = zlib.decompressobj(zlib.MAX_WBITS if self.deflate else zlib.MAX_WBITS | 16)

    def feed(self, data: bytes, max_out: int) -> Iterator[bytes]:
        """Decompressed pieces of ``data``, each at most ``max_out`` bytes."""
        if self.deflate and self.first and data:
            self.first = False
            try:
                probe = zlib.decompressobj(zlib.MAX_WBITS)
                probe.decompress(data[:2])
            except zlib.error:
                self.z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
        while data:
            try:
                out = self.z.decompress(data, max_out)
            except zlib.error as exc:
                raise httpx.DecodingError(f"invalid {'deflate' if self.deflate else 'gzip'} body: {exc}") from exc
            data = self.z.unconsumed_tail
            if out:
                yield out
            elif not data or self.z.eof:
                break


class BodyReader:
    """Reads a response's raw bytes, undoes gzip/deflate itself in bounded steps, and enforces
    :class:`ResponseLimits` while doing so: httpx decompresses each received chunk whole (a 64 KiB chunk of
    a nested gzip bomb becomes gigabytes in one call), so the raw stream is decoded here instead. Other
    encodings pass through as received, as httpx does for encodings it cannot decode."""

    PIECE = 1 * MIB

    def __init__(self, response: httpx.Response, call: CallTiming, limits: ResponseLimits, max_bytes: int,
                 what: str) -> None:
        self.response = response
        self.call = call
        self.limits = limits
        self.max_bytes = max_bytes
        self.what = what
        encodings = [e.strip().lower() for e in response.headers.get("content-encoding", "").split(",")]
        self.layers = [_Inflate("deflate" if e == "deflate" else "gzip")
                       for e in reversed(encodings) if e in ("gzip", "x-gzip", "deflate")]
        self.raw = 0
        self.decoded = 0
        self.last_seen: int | None = None

    def _check(self, piece: bytes) -> None:
        self.decoded += len(piece)
        limits = self.limits
        if self.decoded > self.max_bytes:
            raise limit_error("response_too_large",
                              f"{self.what} exceeds the {self.max_bytes} byte limit (ResponseLimits)",
                              self.response.status_code)
        if (self.layers and self.decoded > limits.ratio_floor_bytes
                and self.decoded > limits.max_compression_ratio * max(self.raw, 1)):
            raise limit_error("response_too_large",
                              f"{self.what} decompresses more than {limits.max_compression_ratio:g}:1 "
                              f"({self.raw} bytes received became over {self.decoded}; ResponseLimits)",
                              self.response.status_code)

    def _decode(self, data: bytes, layer: int) -> Iterator[bytes]:
        if layer == len(self.layers):
            yield data
            return
        for piece in self.layers[layer].feed(data, self.PIECE):
            yield from self._decode(piece, layer + 1)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Decoded pieces of the body, stamping first- and last-byte arrival on the call."""
        call = self.call
        if self.response.is_stream_consumed:  # built in memory (a mock transport): httpx holds it decoded
            call.t_first_byte = self.last_seen = arrived(call)
            self._check(self.response.content)
            call.bytes_received = self.decoded
            yield self.response.content
            call.t_last_byte = arrived(call)
            return
        async for raw in self.response.aiter_raw():
            self.last_seen = arrived(call)
            if call.t_first_byte is None:
                call.t_first_byte = self.last_seen
            self.raw += len(raw)
            for piece in self._decode(raw, 0):
                self._check(piece)
                call.bytes_received = self.decoded
                yield piece
        call.t_last_byte = arrived(call)


ACCEPT_ENCODING = "gzip, deflate"
"""The encodings :class:`BodyReader` decodes; sent on every request, so a client with httpx's optional
brotli/zstd decoders installed does not invite encodings the bounded reader would pass through undecoded."""


def _intended_ms(headers: httpx.Headers) -> float | None:
    value = headers.get(SANDBOX_INTENDED_HEADER)
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        return None
    return ms if 0 <= ms < float("inf") else None


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
    """An open streaming response. Iterating records first- and last-byte times on its call, within the
    stream limits of :class:`ResponseLimits` (bytes, events, seconds open)."""

    def __init__(self, response: httpx.Response, timing: CallTiming, limits: ResponseLimits = DEFAULT_LIMITS
                 ) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.timing = timing
        self.limits = limits
        self._reader = BodyReader(response, timing, limits, limits.max_stream_bytes, "the event stream")

    @property
    def last_seen(self) -> int | None:
        """Arrival of the newest bytes read so far (``None`` before any)."""
        return self._reader.last_seen

    async def aread(self) -> bytes:
        """Read the rest of the body (for error responses on a streaming endpoint)."""
        chunks = [chunk async for chunk in self._chunks()]
        return b"".join(chunks)

    async def _chunks(self) -> AsyncIterator[bytes]:
        deadline = self.timing.t_start + int(self.limits.max_stream_s * 1e9)
        async for chunk in self._reader.chunks():
            if now_ns() > deadline:
                raise limit_error("stream_too_long",
                                  f"the event stream stayed open over {self.limits.max_stream_s:g} s (ResponseLimits)",
                                  self.status_code)
            yield chunk

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Body lines without line endings (LF, CRLF or CR); a line split across chunks is joined once."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        carry_cr = False
        async for chunk in self._chunks():
            text = ("\r" if carry_cr else "") + decoder.decode(chunk)
            carry_cr = text.endswith("\r")
            if carry_cr:
                text = text[:-1]
            pieces = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if len(pieces) == 1:
                parts.append(pieces[0])
                continue
            parts.append(pieces[0])
            yield "".join(parts)
            for line in pieces[1:-1]:
                yield line
            parts = [pieces[-1]]
        parts.append(decoder.decode(b"", final=True))
        tail = "".join(parts)
        if tail or carry_cr:
            yield tail

    def aiter_sse(self) -> AsyncIterator[SSEEvent]:
        """Server-sent events of the body, at most ``max_stream_events`` events and comments."""
        return aparse_lines(self.aiter_lines(), max_frames=self.limits.max_stream_events,
                            on_too_many=lambda: limit_error(
                                "stream_too_long",
                                f"the event stream sent over {self.limits.max_stream_events} events (ResponseLimits)",
                                self.status_code))


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
    limits: ResponseLimits = DEFAULT_LIMITS

    def mark(self, name: str) -> None:
        """Record a named clock point, the arrival of the bytes that revealed it; the first occurrence wins."""
        if name not in self.marks:
            self.marks[name] = arrived(self.calls[-1]) if self.calls else now_ns()

    def _build(self, method: str, url: str, label: str, kwargs: dict[str, Any]) -> tuple[httpx.Request, CallTiming]:
        request = self.client.build_request(method, url, **kwargs)
        request.headers["accept-encoding"] = ACCEPT_ENCODING
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
            call.intended_ms = _intended_ms(response.headers)
            chunks = [chunk async for chunk in BodyReader(response, call, self.limits, self.limits.max_body_bytes,
                                                           "the response body").chunks()]
        finally:
            await response.aclose()
        return TimedResponse(response, b"".join(chunks), call)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, label: str = "generate", **kwargs: Any) -> AsyncIterator[TimedStream]:
        """Send a request and yield the open response for incremental reading. A stream left before its end
        (the adapter has what it needs) ends, for the clock, at the last bytes it read."""
        request, call = self._build(method, url, label, kwargs)
        response = await self.client.send(request, stream=True)
        call.status = response.status_code
        call.intended_ms = _intended_ms(response.headers)
        stream = TimedStream(response, call, self.limits)
        try:
            yield stream
        finally:
            if call.t_last_byte is None:
                call.t_last_byte = stream.last_seen if stream.last_seen is not None else now_ns()
            await response.aclose()


PHASE_MARKS = ("queued", "running", "completed", "fetched")
"""Marks a queue adapter sets: submit acknowledged, seen running, seen completed, result body read."""


@dataclass(frozen=True, slots=True)
class AttemptClock:
    """Attempt-level times in ms (``None`` where a point was never reached); points (``*_ms`` that are not
    durations) count from the latency origin, the first call's request headers going out on a connection in
    hand. docs/measurement.md defines each one.

    ``conn_ms``: the first call's connection set-up before that origin (pool wait, DNS, TCP, TLS; ~0 on a
    reused connection).
    ``latency_ms``: from the first call's request headers going out on a connection in hand to the provider's
    last byte (the final response, or the last image download): provider time, comparable whether or not a
    connection was reused; equal to ``latency_with_connect_ms`` when no connection was ever in hand.
    ``latency_with_connect_ms``: the same end from the attempt's start (``conn_ms`` + ``latency_ms``).
    A failure without a complete answer (timeout, connection error) has no last byte: its latencies are the
    time the harness waited, from the start of the attempt's timeout to giving up; an answer cut short by a
    :class:`ResponseLimits` limit ends where the limit was hit. ``client_ms``: the harness's own time after that end
    (parsing, base64, decoding and validating images), off the provider's clock. ``intended_ms``: the largest
    ``x-sandbox-intended-ms`` among the attempt's responses (sandbox targets only).
    ``ttfb_ms`` follows the protocol's definition (see README "What TTFB means"): headers of the first call
    minus its request-sent time, or, when the adapter marked ``ttfb``, that mark minus the request-sent
    time. Queue phases: ``submit_ms`` (start → submit acknowledged), ``queue_ms`` (→ first seen running),
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
    latency_with_connect_ms: float | None = None
    client_ms: float | None = None
    intended_ms: float | None = None


def _ms(a: int | None, b: int | None) -> float | None:
    if a is None or b is None:
        return None
    return (a - b) / 1e6


def provider_end(calls: list[CallTiming], t_ready: int, answered: bool) -> int:
    """Where the provider's part of an attempt ends: the latest last byte of its calls (cancel requests the
    harness sends after giving up excluded) when the answer was complete, else ``t_ready``."""
    answering = [c for c in calls if c.label != "cancel"]
    if not answered or not answering or any(c.t_last_byte is None for c in answering):
        return t_ready
    return max(c.t_last_byte for c in answering if c.t_last_byte is not None)


def _latency_origin(first: CallTiming | None, t0: int, end: int | None) -> int:
    """The latency origin: the first call's connection in hand (else the first call's start), never after
    the provider's end."""
    origin = first.t_conn if first is not None and first.t_conn is not None else t0
    return min(origin, end) if end is not None else origin


@dataclass(frozen=True, slots=True)
class _FirstCallMs:
    """The first call's points (ms), all ``None`` when the attempt made no call."""

    conn_ms: float | None = None
    hdr_ms: float | None = None
    first_byte_ms: float | None = None
    first_byte_ttfb_ms: float | None = None
    conn_reused: bool | None = None


def _first_call_ms(first: CallTiming | None, t0: int, origin: int) -> _FirstCallMs:
    if first is None:
        return _FirstCallMs()
    return _FirstCallMs(conn_ms=_ms(first.t_conn, t0), hdr_ms=_ms(first.t_hdr, origin),
                        first_byte_ms=_ms(first.t_first_byte, origin),
                        first_byte_ttfb_ms=_ms(first.t_first_byte, first.t_req_sent), conn_reused=first.conn_reused)


def _queue_phases_ms(marks: Mapping[str, int], origin: int,
                     ) -> tuple[float | None, float | None, float | None, float | None]:
    """A queue API's submit point and its queue, run and fetch durations (ms); all ``None`` for an attempt
    that was never queued."""
    queued = marks.get("queued")
    if queued is None:
        return None, None, None, None
    running, completed, fetched = marks.get("running"), marks.get("completed"), marks.get("fetched")
    return _ms(queued, origin), _ms(running, queued), _ms(completed, running), _ms(fetched, completed)


def _download_ms(calls: list[CallTiming]) -> float | None:
    """From the first image download's start to the last one's last byte; ``None`` unless every download
    completed."""
    downloads = [c for c in calls if c.label == "download"]
    download_start = min(c.t_start for c in downloads) if downloads else None
    download_ends = [c.t_last_byte for c in downloads if c.t_last_byte is not None]
    download_end = max(download_ends) if download_ends and len(download_ends) == len(downloads) else None
    return _ms(download_end, download_start)


def summarize(
    calls: list[CallTiming], marks: Mapping[str, int], t_start: int, t_ready: int | None, poll_interval_s: float | None,
    *, answered: bool = True,
) -> AttemptClock:
    """Attempt-level clock from the calls and marks of one attempt.

    Points are in ms from the latency origin, the first call's request headers going out on a connection in
    hand (its ``t_conn``), so the queue phases and ``last_byte_ms`` add up to ``latency_ms``; ``conn_ms`` is the
    set-up before that origin. ``t_start`` is when the attempt's timeout began (before the adapter built its
    request). ``t_ready`` is when the harness was done with the attempt (images validated, or the failure
    classified). ``answered`` is false when the failure came without a complete answer (timeout, connection
    error): then there is no last byte, and both latencies are the time the harness waited, ``t_start`` to
    ``t_ready`` (a timed-out attempt's latency is its timeout)."""
    first = calls[0] if calls else None
    last = calls[-1] if calls else None
    t0 = min(c.t_start for c in calls) if calls else t_start
    end = provider_end(calls, t_ready, answered) if t_ready is not None else None
    origin = _latency_origin(first, t0, end)
    req_sent = first.t_req_sent if first else None
    ttfb_point = marks.get("ttfb", first.t_hdr if first else None)
    head = _first_call_ms(first, t0, origin)
    submit, queue, run, fetch = _queue_phases_ms(marks, origin)
    intended = [c.intended_ms for c in calls if c.intended_ms is not None]
    latency = _ms(end, origin) if answered else _ms(end, t_start)
    with_connect = _ms(end, t0) if answered else latency
    return AttemptClock(
        conn_ms=head.conn_ms,
        req_sent_ms=_ms(req_sent, origin),
        hdr_ms=head.hdr_ms,
        first_byte_ms=head.first_byte_ms,
        last_byte_ms=_ms(last.t_last_byte, origin) if last else None,
        ttfb_ms=_ms(ttfb_point, req_sent),
        first_byte_ttfb_ms=head.first_byte_ttfb_ms,
        latency_ms=latency,
        first_partial_ms=_ms(marks.get("first_partial"), origin),
        submit_ms=submit,
        queue_ms=queue,
        run_ms=run,
        fetch_ms=fetch,
        download_ms=_download_ms(calls),
        poll_interval_ms=poll_interval_s * 1000.0 if poll_interval_s is not None else None,
        conn_reused=head.conn_reused,
        bytes_sent=sum(c.bytes_sent for c in calls),
        bytes_received=sum(c.bytes_received for c in calls),
        http_calls=len(calls),
        latency_with_connect_ms=with_connect,
        client_ms=_ms(t_ready, end),
        intended_ms=max(intended) if intended else None,
    )
