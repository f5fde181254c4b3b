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

Every client also enforces the origin rules of :mod:`harness.origins` for the adapter running in the task:
a redirect to an origin that may not receive the key drops every credential header (httpx drops only
``Authorization``), and a new direct connection to a host that is not the target's own is opened only to a
checked public address. Connections through an HTTP proxy (``HTTPS_PROXY``) are not checked: the proxy
resolves the name.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import certifi
import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION

from harness.network import ArrivalBackend, install
from harness.origins import CREDENTIAL_HEADERS, current_policy, redirect_keeps_credentials, resolve_public

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
        self.clients: list[httpx.AsyncClient] = [GuardedClient(limits=limits, **client_kwargs) for _ in range(count)]
        guarded, direct = GuardedBackend(), ArrivalBackend()
        if arrival_backend:
            self.arrival_stamps = all([install(client, guarded) for client in self.clients])
            for client in self.clients:
                for transport in client._mounts.values():
                    pool = getattr(transport, "_pool", None)
                    if isinstance(pool, httpcore.AsyncConnectionPool):
                        pool._network_backend = direct
        else:
            self.arrival_stamps = False
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


class GuardedClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose redirects keep credential headers only where the key may go."""

    def _redirect_headers(self, request: httpx.Request, url: httpx.URL, method: str) -> httpx.Headers:
        headers = super()._redirect_headers(request, url, method)
        policy = current_policy()
        if not redirect_keeps_credentials(policy, request.url, url):
            names = policy.credential_headers if policy is not None else CREDENTIAL_HEADERS
            for name in [n for n in headers if n.lower() in names]:
                del headers[name]
        return headers


class GuardedBackend(ArrivalBackend):
    """:class:`ArrivalBackend` that opens a connection to a host outside the running target's own only after
    resolving it once and checking every address (see :func:`harness.origins.resolve_public`); it then
    connects to the checked address, so the name is not resolved again. TLS still verifies the host name
    (httpcore passes it as ``server_hostname``)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        policy = current_policy()
        if policy is not None and not policy.trusts(host, port):
            try:
                async with asyncio.timeout(timeout):
                    addresses = await resolve_public(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out after {timeout} s") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
            host = addresses[0]
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's CA bundle, as httpx uses by default) for all the pool's clients: each
    client would otherwise parse the bundle again, about 25 ms apiece."""
    return ssl.create_default_context(cafile=certifi.where())
