"""HTTP clients leased per in-flight request, so the client never becomes the bottleneck it measures.

httpcore's connection pool examines every one of its connections each time a request is queued or a
connection is released (``_assign_requests_to_connections``, with a socket readability check per idle
connection), so one client with 200 connections spends more CPU choosing a connection than sending the
request. A :class:`ClientPool` instead keeps several small clients (``per_client`` connections each) and
leases them by slot: a request holds one slot for its whole logical exchange (polls and downloads
included), no client ever has more requests than connections, and the per-request pool work stays constant.
On two cores this lifts a loop of 100 KB image responses from about 230 to about 600 attempts/s.

Every client reads through :class:`harness.network.ArrivalBackend`, so the clock points of an attempt are
when its bytes arrived, not when its task was next scheduled.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import certifi
import httpx

from harness.network import ArrivalBackend, install

DEFAULT_PER_CLIENT = 2


class ClientPool:
    """``slots`` concurrent leases over ``ceil(slots / per_client)`` clients sharing ``client_kwargs``."""

    def __init__(self, slots: int, per_client: int = DEFAULT_PER_CLIENT, arrival_backend: bool = True,
                 **client_kwargs: Any) -> None:
        if slots < 1 or per_client < 1:
            raise ValueError("slots and per_client must be at least 1")
        count = -(-slots // per_client)
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        if "verify" not in client_kwargs:
            client_kwargs["verify"] = shared_ssl_context()
        self.clients = [httpx.AsyncClient(limits=limits, **client_kwargs) for _ in range(count)]
        backend = ArrivalBackend()
        self.arrival_stamps = arrival_backend and all([install(client, backend) for client in self.clients])
        """Whether every client reads through the arrival-stamping backend: ``False`` when asked not to (a
        benchmark's plain-httpx baseline) or when a client's transports are not httpx's own (a mock)."""
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for i in range(slots):
            self._free.put_nowait(self.clients[i % count])

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client with a free connection slot, held until the block exits."""
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's CA bundle, as httpx uses by default) for all the pool's clients: each
    client would otherwise parse the bundle again, about 25 ms apiece."""
    return ssl.create_default_context(cafile=certifi.where())
