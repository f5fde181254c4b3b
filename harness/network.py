"""Sockets for httpcore that remember when each chunk of bytes arrived.

httpx reads a response in the task that sent the request: the bytes wait in the socket's buffer until the
event loop gets round to that task, and a clock read in a trace hook then measures the arrival *plus* the
harness's own queue of other responses to parse. With 256 requests in flight and answers a millisecond
apart, that queue is most of the error. This backend reads with an asyncio protocol instead, which the event
loop calls as soon as its poll reports the socket readable, stamps ``time.perf_counter_ns()`` there, and
hands the stamp to whoever reads the bytes: :func:`last_arrival_ns` is the arrival time of the newest chunk
the current task has read. It also drops anyio's per-read cancel scopes, the largest part of httpcore's
per-read cost on asyncio.

:func:`install` puts the backend into an ``httpx.AsyncClient``'s connection pools (proxy pools included),
leaving everything else about the client as configured.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION

READ_BUFFER_LIMIT = 1 << 20
"""Bytes buffered unread before the protocol stops reading from the socket (TCP flow control takes over)."""

_last_arrival: contextvars.ContextVar[int | None] = contextvars.ContextVar("harness_last_arrival_ns", default=None)


def last_arrival_ns() -> int | None:
    """``perf_counter_ns`` at which the newest chunk read by the current task reached the process, or ``None``
    when the task has read nothing through this backend."""
    return _last_arrival.get()


class _ArrivalProtocol(asyncio.Protocol):
    """Buffers received bytes with their arrival times and wakes one waiting reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.paused_reading = False
        self.paused_writing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((data, time.perf_counter_ns()))
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_LIMIT and self.transport is not None and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` buffered bytes; records the newest arrival among them for the reading task."""
        chunks = self.chunks
        data, arrived = chunks.popleft()
        if len(data) > max_bytes:
            chunks.appendleft((data[max_bytes:], arrived))
            data = data[:max_bytes]
        elif chunks and len(data) < max_bytes:
            parts = [data]
            size = len(data)
            while chunks and size + len(chunks[0][0]) <= max_bytes:
                more, arrived = chunks.popleft()
                parts.append(more)
                size += len(more)
            data = b"".join(parts)
        self.buffered -= len(data)
        if self.paused_reading and self.buffered <= READ_BUFFER_LIMIT // 2 and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()
        _last_arrival.set(arrived)
        return data


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _wait(future: asyncio.Future[None], timeout: float | None, exc_type: type[Exception], what: str) -> None:
    if timeout is None:
        await future
        return
    try:
        async with asyncio.timeout(timeout):
            await future
    except TimeoutError:
        raise exc_type(f"{what} timed out after {timeout} s") from None


class ArrivalStream(httpcore.AsyncNetworkStream):
    """One connection (plain or TLS) over an :class:`_ArrivalProtocol`."""

    def __init__(self, transport: asyncio.Transport, protocol: _ArrivalProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        protocol.transport = transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            protocol.reader = asyncio.get_running_loop().create_future()
            try:
                await _wait(protocol.reader, timeout, httpcore.ReadTimeout, "read")
            finally:
                protocol.reader = None
        if protocol.chunks:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(_describe(protocol.error))
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.paused_writing:
            protocol.drain = asyncio.get_running_loop().create_future()
            try:
                await _wait(protocol.drain, timeout, httpcore.WriteTimeout, "write")
            finally:
                protocol.drain = None
            if protocol.error is not None:
                raise httpcore.WriteError(_describe(protocol.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                                 server_hostname=server_hostname)
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake timed out after {timeout} s") from None
        except OSError as exc:
            self._transport.close()
            raise httpcore.ConnectError(_describe(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        return ArrivalStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            protocol = self._protocol
            return bool(protocol.chunks) or protocol.eof or transport.is_closing()
        return None


class ArrivalBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend producing :class:`ArrivalStream` connections (asyncio only)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        if isinstance(loop, asyncio.BaseEventLoop):
            opening = loop.create_connection(_ArrivalProtocol, host, port, local_addr=local, happy_eyeballs_delay=0.25)
        else:
            opening = loop.create_connection(_ArrivalProtocol, host, port, local_addr=local)
        return await _connected(opening, f"{host}:{port}", timeout, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SOCKET_OPTION] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        opening = asyncio.get_running_loop().create_unix_connection(_ArrivalProtocol, path)
        return await _connected(opening, path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(opening: Awaitable[tuple[asyncio.Transport, _ArrivalProtocol]], where: str,
                     timeout: float | None, socket_options: Iterable[SOCKET_OPTION] | None) -> ArrivalStream:
    """Await a connection being opened, with httpcore's exceptions for a timeout or a refusal."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"connecting to {where} timed out after {timeout} s") from None
    except OSError as exc:
        raise httpcore.ConnectError(_describe(exc)) from exc
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        for option in socket_options or ():
            sock.setsockopt(*option)
    return ArrivalStream(transport, protocol)


def install(client: httpx.AsyncClient, backend: ArrivalBackend | None = None) -> bool:
    """Use ``backend`` for every connection pool of ``client``; ``False`` (client unchanged) when the client's
    transports are not httpx's own, so timing falls back to the trace hook's clock."""
    backend = backend or ArrivalBackend()
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    pools = [getattr(t, "_pool", None) for t in transports]
    if not all(isinstance(p, httpcore.AsyncConnectionPool) for p in pools):
        return False
    for pool in pools:
        pool._network_backend = backend  # type: ignore[union-attr]
    return True
