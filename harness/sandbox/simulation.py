"""The runtime shared by the simulated provider servers: what happens to each request, and when.

A :class:`SimulatedProvider` draws, per request, its latency components from the provider's profile and
whether (and which) fault it suffers, enforces the profile's rate limit per API key, and sleeps in scaled
simulated time. Protocol servers (one module per provider) only turn those decisions into wire bytes.

Timing is scheduled against deadlines, not chained sleeps: each request's timeline starts when it arrives
(the outermost middleware stamps it) and every :meth:`SimulatedProvider.sleep` moves that timeline's cursor
by the scaled duration and sleeps until the cursor. Work the server does in between (reading the body,
encoding an answer) and the event loop's own lateness are absorbed instead of added, so a response goes out
when the profile says, not when the sum of its sleeps and the server's work says.

Every response carries :data:`INTENDED_HEADER`: the delay (ms, already time-scaled) the sandbox intended for
the generation the response belongs to — for a synchronous API the response's own delay (generation plus
body transfer), for a queue API from the job's submit to its result being available. The client compares it
with what it measured (:mod:`harness.stats.fidelity`). Responses that belong to no generation (a rejected key,
an unknown model) carry ``0``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import random
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from harness.sandbox.faults import Fault, forced_fault
from harness.sandbox.imagery import ImageCache
from harness.sandbox.profiles import ProviderProfile

INTENDED_HEADER = "x-sandbox-intended-ms"
"""Response header: the delay (ms, time-scaled) the sandbox intended for the generation the response belongs
to (see the module docstring)."""

INVALID_KEY = "invalid"
"""The one key every sandbox server rejects as wrong (any other non-empty key is accepted)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class SandboxSettings:
    """Settings of one sandbox instance. ``time_scale`` multiplies every simulated delay."""

    time_scale: float = 1.0
    faults: bool = True
    seed: int = 0


@dataclass(frozen=True)
class RequestPlan:
    """What will happen to one request, in simulated seconds (scale is applied when sleeping).

    ``latency_s``: until the result is ready (headers of a sync API); ``queue_s``/``run_s``: its split for
    queue APIs; ``transfer_s``: body streaming after headers; ``first_event_s``: first streamed event.
    """

    request_id: str
    latency_s: float
    queue_s: float
    run_s: float
    transfer_s: float
    first_event_s: float
    fault: Fault | None

    def intended_s(self) -> float:
        """Simulated seconds the sandbox intends from the request's arrival to its result being complete:
        the generation (queue wait and run for queue APIs) plus the body's transfer after the headers."""
        return self.latency_s + body_seconds(self)


@dataclass
class _Intended:
    """The intended delay (ms) of the response being built; shared by every task of one request."""

    ms: float | None = None


_CURSOR: ContextVar[float | None] = ContextVar("sandbox_cursor", default=None)
"""Monotonic time (s) the current request's simulated timeline has reached (per task: a task started by a
request continues its timeline from where the request was when it started the task)."""
_INTENDED: ContextVar[_Intended | None] = ContextVar("sandbox_intended", default=None)


def start_timeline(now: float | None = None) -> None:
    """Start the current request's timeline at ``now`` (its arrival; default: this moment)."""
    _CURSOR.set(time.monotonic() if now is None else now)


def declare_intended(ms: float) -> None:
    """Set the :data:`INTENDED_HEADER` value of the response being built in this request."""
    cell = _INTENDED.get()
    if cell is not None:
        cell.ms = ms


class AbortConnection(Exception):
    """Raised by a protocol app to drop the TCP connection (reset, or a body cut short)."""


class TokenBucket:
    """Requests-per-minute limiter in simulated time; ``try_take`` returns the wait (s) when empty."""

    def __init__(self, rpm: float, time_scale: float) -> None:
        self.rate = rpm / 60.0 / time_scale
        self.capacity = max(1.0, rpm / 60.0 * 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def try_take(self) -> float | None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@dataclass
class SimulatedProvider:
    """Per-provider state: deterministic random draws, rate limiters per key, rendered-image cache."""

    name: str
    profile: ProviderProfile
    settings: SandboxSettings
    images: ImageCache = field(default_factory=ImageCache)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _active: dict[str, int] = field(default_factory=dict)

    def rng(self) -> random.Random:
        return random.Random(f"{self.settings.seed}:{self.name}:{next(self._counter)}")

    def new_id(self, prefix: str = "") -> str:
        return prefix + secrets.token_hex(12)

    def plan(self, model: str, headers: Mapping[str, str], prompt: str | None) -> RequestPlan:
        """Draw latency and fault for a request to ``model``."""
        rng = self.rng()
        p = self.profile
        speed = p.speed(model)
        latency = p.latency.sample(rng) * speed
        run = min(latency, p.run.sample(rng) * speed) if p.run is not None else latency
        transfer = p.transfer.sample(rng) if p.transfer is not None else 0.0
        fault = forced_fault(headers, prompt)
        if fault is None and self.settings.faults:
            draw = rng.random()
            acc = 0.0
            for candidate, rate in p.faults.items():
                acc += rate
                if draw < acc:
                    fault = candidate
                    break
        plan = RequestPlan(
            request_id=self.new_id(), latency_s=latency, queue_s=max(0.0, latency - run), run_s=run,
            transfer_s=transfer, first_event_s=latency * p.first_event_fraction, fault=fault,
        )
        declare_intended(self.intended_ms(plan))
        return plan

    def intended_ms(self, plan: RequestPlan) -> float:
        """What :data:`INTENDED_HEADER` says for a response that belongs to ``plan``'s generation."""
        return round(plan.intended_s() * self.settings.time_scale * 1000, 3)

    async def sleep(self, simulated_s: float) -> None:
        """Advance this request's timeline by ``simulated_s`` of simulated time and sleep until it.

        The deadline is the timeline's cursor plus the scaled duration, so time spent working since the last
        deadline (or a late wake-up) is not added on top; without a timeline the cursor starts now. An event
        loop whose timers round to the millisecond (uvloop) may wake a little early: the sleep then goes on.
        """
        if simulated_s <= 0:
            return
        now = time.monotonic()
        cursor = _CURSOR.get()
        deadline = (now if cursor is None else cursor) + simulated_s * self.settings.time_scale
        _CURSOR.set(deadline)
        while now < deadline:
            await asyncio.sleep(deadline - now)
            now = time.monotonic()

    @staticmethod
    def resume() -> None:
        """Restart this request's timeline now, after a wait that is not simulated time (a free runner)."""
        start_timeline()

    def scaled(self, simulated_s: float) -> float:
        """Real seconds for a simulated duration."""
        return simulated_s * self.settings.time_scale

    def rate_limited(self, key: str) -> float | None:
        """Simulated seconds to wait when ``key`` is over the profile's rpm, else ``None``."""
        if self.profile.rpm is None:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.profile.rpm, self.settings.time_scale)
        wait = bucket.try_take()
        return None if wait is None else wait / self.settings.time_scale

    def check_key(self, key: str | None) -> str:
        """``"ok"``, ``"missing"`` or ``"invalid"`` for the key a request carried."""
        if not key:
            return "missing"
        return "invalid" if key == INVALID_KEY else "ok"


def _abort(send: Send) -> bool:
    """Reset the connection under uvicorn's send callable (RST via SO_LINGER 0); False if not possible."""
    owner = getattr(send, "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


ABORT_KEY = "sandbox.abort"


class ConnectionFaults:
    """Outermost ASGI middleware: gives apps a way to drop the TCP connection for real.

    It stores, in the scope under :data:`ABORT_KEY`, a function that resets the connection through the
    server's own ``send`` (which only the outermost layer holds), and swallows the :class:`AbortConnection`
    an app raises afterwards so the server logs no error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start_timeline()
        intended = _Intended()
        _INTENDED.set(intended)
        scope[ABORT_KEY] = lambda: _abort(send)

        async def send_with_intended(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = str(round(intended.ms or 0.0, 3)).encode()
                message = {**message, "headers": [*message.get("headers", []), (INTENDED_HEADER.encode(), value)]}
            await send(message)

        with contextlib.suppress(AbortConnection):
            await self.app(scope, receive, send_with_intended)


async def abort_connection(scope: Scope) -> None:
    """Reset the client's connection now (before or in the middle of a response), then unwind the app."""
    abort = scope.get(ABORT_KEY)
    if abort is None or not abort():
        raise RuntimeError("connection faults need the ConnectionFaults middleware under uvicorn")
    await asyncio.sleep(0)
    raise AbortConnection()


DRIP_CHUNKS = 8
SLOW_DRIP_S = 2.0
"""Simulated seconds a ``slow_drip`` body takes at least (20x its normal transfer time otherwise)."""


def body_seconds(plan: RequestPlan) -> float:
    """Simulated seconds a response body takes after its headers (20x slower under ``slow_drip``)."""
    if plan.fault == Fault.SLOW_DRIP:
        return max(plan.transfer_s * 20, SLOW_DRIP_S)
    return plan.transfer_s


async def drip(sim: SimulatedProvider, data: bytes, seconds: float) -> AsyncIterator[bytes]:
    """Send ``data`` in :data:`DRIP_CHUNKS` pieces spread over ``seconds`` of simulated time."""
    if seconds <= 0:
        yield data
        return
    step = max(1, len(data) // DRIP_CHUNKS)
    for i in range(0, len(data), step):
        yield data[i:i + step]
        await sim.sleep(seconds / DRIP_CHUNKS)


async def truncated(scope: Scope, data: bytes) -> AsyncIterator[bytes]:
    """Send half of ``data`` and reset the connection (a body cut short; headers promised all of it)."""
    yield data[: len(data) // 2]
    await abort_connection(scope)


def data_url_bytes(url: str) -> bytes | None:
    """Bytes of a base64 ``data:`` URL, or ``None`` when it is not one (or not valid base64)."""
    header, sep, payload = url.partition(",")
    if not header.startswith("data:") or not sep or ";base64" not in header:
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


HANG_S = 3600.0
"""Simulated seconds a request is held unanswered under the ``timeout`` fault (clients time out first)."""


async def hang_until_disconnected(sim: SimulatedProvider, receive: Receive) -> None:
    """Hold a request unanswered (the ``timeout`` fault) until its client goes away, at most :data:`HANG_S`.

    Waiting for the ``http.disconnect`` message (the request body must already be read) frees the handler as
    soon as the client gives up, instead of leaving it asleep until the server shuts down.
    """

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), sim.scaled(HANG_S))
