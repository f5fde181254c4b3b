"""The arrival-stamping socket backend every runner client reads through (harness.network).

Each test serves bytes from a raw asyncio server on loopback, so what the wire carries (a dropped connection,
a silent server, a 5 MB body, TLS) is exactly what the test wrote.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from harness.http_pool import ClientPool
from harness.network import READ_BUFFER_LIMIT, install, last_arrival_ns
from harness.providers.base import ErrorKind, GenerationRequest
from harness.providers.openai_images import OpenAIImagesProvider
from harness.run import AttemptOutcome, perform_attempt
from harness.timing import TimedHttp
from tests.certificates import make_certificates
from tests.delay_server import body_of_size

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def image_answer() -> bytes:
    """An OpenAI Images answer carrying a tiny PNG, as raw HTTP/1.1 bytes."""
    body = body_of_size(0)
    return (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            .encode() + body)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve ``handler`` per connection; on exit, stop handlers still running and close every connection."""
    running: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            running.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.sleep(0)


async def attempt(base: str, timeout: float = 5, **pool_kwargs: object) -> AttemptOutcome:
    async with ClientPool(1, timeout=timeout, **pool_kwargs) as pool, pool.lease() as client:
        return await perform_attempt(OpenAIImagesProvider(base + "/v1", "k"),
                                     GenerationRequest(model_id="m", prompt="p"), client, timeout)


def test_headers_are_stamped_when_they_reach_the_process_not_when_the_task_gets_to_them() -> None:
    """A busy event loop (a callback doing 5 ms of work per loop iteration, as hundreds of other responses
    being parsed would) runs at least one piece of that work between the bytes reaching the process and the
    attempt's task getting to its headers (httpx's response hook); the recorded header time is the former,
    and never earlier than the server wrote them."""
    written: list[int] = []
    busy_ends: list[int] = []
    hook_ran: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.05)
        written.append(time.perf_counter_ns())
        writer.write(image_answer())
        await writer.drain()

    async def headers_seen(response: httpx.Response) -> None:
        hook_ran.append(time.perf_counter_ns())

    async def go() -> AttemptOutcome:
        loop = asyncio.get_running_loop()

        def busy() -> None:
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass
            busy_ends.append(time.perf_counter_ns())
            if not hook_ran and len(busy_ends) < 2000:
                loop.call_soon(busy)

        async with raw_server(answer) as base, \
                ClientPool(1, timeout=5, event_hooks={"response": [headers_seen]}) as pool, pool.lease() as client:
            loop.call_later(0.02, busy)
            return await perform_attempt(OpenAIImagesProvider(base + "/v1", "k"),
                                         GenerationRequest(model_id="m", prompt="p"), client, 5)

    outcome = asyncio.run(go())
    assert outcome.error is None
    call = outcome.calls[0]
    assert call.arrival_stamps and call.t_hdr is not None
    assert written[0] <= call.t_hdr <= hook_ran[0]
    assert busy_ends[-1] > hook_ran[0], "the loop was not busy when the answer came"
    assert sum(call.t_hdr < end < hook_ran[0] for end in busy_ends) >= 1


def test_last_arrival_is_per_task_and_absent_before_any_read() -> None:
    async def go() -> tuple[int | None, int | None, int | None]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(image_answer())
            await writer.drain()

        async with raw_server(answer) as base, ClientPool(1, timeout=5) as pool, pool.lease() as client:
            before = last_arrival_ns()

            async def reader_task() -> int | None:
                await client.post(base + "/v1/images/generations", json={})
                return last_arrival_ns()

            inside = await asyncio.create_task(reader_task())
            return before, inside, last_arrival_ns()

    before, inside, after = asyncio.run(go())
    assert before is None and after is None
    assert inside is not None


def test_a_refused_connection_is_a_connection_error() -> None:
    async def go() -> AttemptOutcome:
        async with raw_server(lambda r, w: asyncio.sleep(0)) as base:
            pass
        return await attempt(base)

    outcome = asyncio.run(go())
    assert outcome.error is not None and outcome.error.kind == ErrorKind.CONNECTION
    assert "ConnectError" in outcome.error.message


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(3)


@pytest.mark.parametrize(("timeout", "named"), [(httpx.Timeout(0.3), None), (httpx.Timeout(5, read=0.2), "ReadTimeout")],
                         ids=["attempt deadline", "read timeout"])
def test_a_server_that_never_answers_times_out(timeout: httpx.Timeout, named: str | None) -> None:
    """Either the attempt's own deadline or the client's read timeout ends the wait; both are ``timeout``."""
    async def go() -> AttemptOutcome:
        async with raw_server(silent) as base, ClientPool(1, timeout=timeout) as pool, pool.lease() as client:
            return await perform_attempt(OpenAIImagesProvider(base + "/v1", "k"),
                                         GenerationRequest(model_id="m", prompt="p"), client, 0.3 if named is None else 5)

    outcome = asyncio.run(go())
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    if named:
        assert named in outcome.error.message


def test_a_connection_dropped_mid_body_is_a_connection_error_not_a_bad_image() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{\"data\": [")
        await writer.drain()
        writer.close()

    async def go() -> AttemptOutcome:
        async with raw_server(drop) as base:
            return await attempt(base)

    outcome = asyncio.run(go())
    assert outcome.error is not None and outcome.error.kind == ErrorKind.CONNECTION
    assert "RemoteProtocolError" in outcome.error.message


def test_a_body_larger_than_the_read_buffer_arrives_whole() -> None:
    """5 MB in one write: the protocol stops reading past its buffer limit and resumes as the task drains it;
    every byte arrives, in order."""
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    assert len(payload) > 4 * READ_BUFFER_LIMIT

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()

    async def go() -> bytes:
        async with raw_server(big) as base, ClientPool(1, timeout=10) as pool, pool.lease() as client:
            http = TimedHttp(client)
            answer = await http.request("GET", base + "/big")
            assert answer.timing.t_first_byte is not None and answer.timing.t_last_byte is not None
            assert answer.timing.t_hdr <= answer.timing.t_first_byte <= answer.timing.t_last_byte  # type: ignore[operator]
            return answer.content

    assert asyncio.run(go()) == payload


def test_an_upload_larger_than_the_socket_buffer_is_sent_whole() -> None:
    received: list[int] = []
    upload = b"x" * (8 * 1024 * 1024)

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        received.append(len(request.split(b"\r\n\r\n", 1)[1]))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def go() -> int:
        async with raw_server(sink) as base, ClientPool(1, timeout=10) as pool, pool.lease() as client:
            return (await client.post(base + "/up", content=upload)).status_code

    assert asyncio.run(go()) == 204
    assert received == [len(upload)]


def test_a_keep_alive_connection_the_server_closed_is_not_reused() -> None:
    """The server closes each connection after answering, without saying so: the idle connection reads as
    closed, so the next request opens a new one instead of failing on the dead one."""
    connections: list[int] = []

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(image_answer())
        await writer.drain()
        writer.close()

    async def go() -> list[AttemptOutcome]:
        async with raw_server(once) as base, ClientPool(1, timeout=5) as pool:
            outcomes = []
            for _ in range(3):
                async with pool.lease() as client:
                    outcomes.append(await perform_attempt(OpenAIImagesProvider(base + "/v1", "k"),
                                                          GenerationRequest(model_id="m", prompt="p"), client, 5))
                await asyncio.sleep(0.05)
            return outcomes

    outcomes = asyncio.run(go())
    assert [o.error for o in outcomes] == [None, None, None]
    assert len(connections) == 3


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1 and a client context trusting only its throwaway CA."""
    ca, cert, key = make_certificates(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(ca))


def test_https_goes_through_the_backend_with_verified_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(image_answer())
            await writer.drain()

    async def go() -> tuple[AttemptOutcome, AttemptOutcome, AttemptOutcome]:
        async with raw_server(answer, tls=server_ctx) as base:
            trusted = await attempt(base, verify=client_ctx)
            again = await attempt(base, verify=client_ctx)
            untrusted = await attempt(base)
            return trusted, again, untrusted

    trusted, again, untrusted = asyncio.run(go())
    assert trusted.error is None and again.error is None
    assert trusted.calls[0].arrival_stamps and trusted.calls[0].t_hdr is not None
    assert untrusted.error is not None and untrusted.error.kind == ErrorKind.CONNECTION
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error.message


def test_a_client_with_its_own_transport_keeps_it_and_is_timed_by_the_trace_hook() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200, content=body_of_size(0),
                                                              headers={"content-type": "application/json"}))

    async def go() -> tuple[bool, AttemptOutcome]:
        async with httpx.AsyncClient(transport=mock) as client:
            installed = install(client)
            outcome = await perform_attempt(OpenAIImagesProvider("http://mock/v1", "k"),
                                            GenerationRequest(model_id="m", prompt="p"), client, 5)
            return installed, outcome

    installed, outcome = asyncio.run(go())
    assert installed is False
    assert outcome.error is None and not outcome.calls[0].arrival_stamps
    assert outcome.calls[0].t_last_byte is not None


def test_requests_through_an_http_proxy_read_through_the_backend_too() -> None:
    """A user's ``HTTPS_PROXY``/``HTTP_PROXY`` (or ``proxy=``) makes httpx route through a proxy pool; that pool
    reads through the backend as well. The raw server plays the proxy and sees the absolute-form request."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await read_request(reader)).split(b"\r\n", 1)[0])
        writer.write(image_answer())
        await writer.drain()

    async def go() -> tuple[bool, AttemptOutcome]:
        async with raw_server(proxy) as proxy_url, ClientPool(1, timeout=5, proxy=proxy_url) as pool, \
                pool.lease() as client:
            outcome = await perform_attempt(OpenAIImagesProvider("http://images.example/v1", "k"),
                                            GenerationRequest(model_id="m", prompt="p"), client, 5)
            return pool.arrival_stamps, outcome

    stamped, outcome = asyncio.run(go())
    assert stamped and outcome.error is None
    assert outcome.calls[0].arrival_stamps
    assert seen == [b"POST http://images.example/v1/images/generations HTTP/1.1"]
