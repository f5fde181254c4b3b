"""The arrival-stamping socket backend every runner client reads through (harness.network).

Each test serves bytes from a raw asyncio server on loopback, so what the wire carries (a dropped connection,
a silent server, a 5 MB body, TLS) is exactly what the test wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import ssl
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from harness.challenges import load
from harness.http_pool import ClientPool
from harness.network import READ_BUFFER_LIMIT, install, last_arrival_ns
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult
from harness.providers.openai_images import OpenAIImagesProvider
from harness.run import RunOptions, start_run
from harness.run.attempt import AttemptOutcome, classify_exception, perform_attempt
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import Credential, Target
from harness.timing import ResponseLimits, TimedHttp
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


# Hostile answers: each limit of ResponseLimits fails its own attempt, classified, with memory bounded, while
# an ordinary request in flight beside it completes.

def peak_rss_bytes() -> int:
    """The process's peak resident set so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def nested_gzip_bomb(decoded_gib: int) -> bytes:
    """``Content-Encoding: gzip, gzip`` over ``decoded_gib`` GiB of zeros in a few KB. Each 16 MiB of zeros
    ends with a full flush, which resets the compressor, so every segment after the first is the same bytes;
    the trailer (never reached by a bounded reader) is not that of the whole stream."""
    zeros = bytes(16 << 20)
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = inner.compress(zeros) + inner.flush(zlib.Z_FULL_FLUSH)
    segment = inner.compress(zeros) + inner.flush(zlib.Z_FULL_FLUSH)
    body = head + segment * (decoded_gib * 64 - 1) + inner.flush()
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return outer.compress(body) + outer.flush()


def answer_with(head: str, body: bytes) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
    return answer


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes, piece: bytes,
                  pause_s: float = 0.0) -> None:
    """Answer with ``first``, then ``piece`` forever (until the client goes away)."""
    await read_request(reader)
    writer.write(first)
    while not writer.is_closing():
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(pause_s)


async def hostile_beside_honest(hostile: Handler, limits: ResponseLimits, *, stream: bool = False,
                                ) -> tuple[AttemptOutcome, AttemptOutcome, int]:
    """One attempt against ``hostile`` and one against an honest server at the same time, on one event loop
    (as two targets of one run); returns both outcomes and the peak-RSS growth in bytes."""
    async def honest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.2)
        writer.write(image_answer())
        await writer.drain()

    before = peak_rss_bytes()
    async with raw_server(hostile) as bad, raw_server(honest) as good, ClientPool(2, timeout=20) as pool:
        async def one(base: str, streaming: bool) -> AttemptOutcome:
            async with pool.lease() as client:
                return await perform_attempt(OpenAIImagesProvider(base + "/v1", "k"),
                                             GenerationRequest(model_id="m", prompt="p", stream=streaming), client,
                                             20, limits=limits)

        bad_outcome, good_outcome = await asyncio.gather(one(bad, stream), one(good, False))
    return bad_outcome, good_outcome, peak_rss_bytes() - before


def assert_limit_hit(outcome: AttemptOutcome, code: str) -> None:
    assert outcome.error is not None, "the hostile answer was accepted"
    assert (outcome.error.kind, outcome.error.provider_code) == (ErrorKind.BAD_OUTPUT, code), outcome.error
    assert outcome.clock.latency_ms is not None and outcome.clock.client_ms is not None


def test_a_nested_gzip_bomb_fails_its_attempt_without_inflating() -> None:
    bomb = nested_gzip_bomb(2)
    assert len(bomb) < 16_000
    hostile = answer_with("content-type: application/json\r\ncontent-encoding: gzip, gzip\r\n", bomb)
    bad, good, growth = asyncio.run(hostile_beside_honest(hostile, ResponseLimits()))
    assert_limit_hit(bad, "response_too_large")
    assert "decompresses more than" in bad.error.message if bad.error else False
    assert good.error is None
    assert growth < 200 << 20, f"peak RSS grew {growth >> 20} MiB on a 2 GiB bomb"


def test_a_gzip_body_under_the_limits_decodes_as_before() -> None:
    body = body_of_size(100)
    packed = zlib.compressobj(6, zlib.DEFLATED, 31)
    hostile = answer_with("content-type: application/json\r\ncontent-encoding: gzip\r\n",
                          packed.compress(body) + packed.flush())
    bad, good, _ = asyncio.run(hostile_beside_honest(hostile, ResponseLimits()))
    assert bad.error is None and good.error is None
    assert bad.calls[0].bytes_received == len(body)


@pytest.mark.parametrize("raw_deflate", [False, True])
def test_deflate_bodies_decode_with_or_without_the_zlib_wrapper(raw_deflate: bool) -> None:
    body = body_of_size(0)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15 if raw_deflate else 15)
    hostile = answer_with("content-type: application/json\r\ncontent-encoding: deflate\r\n",
                          packer.compress(body) + packer.flush())
    bad, _, _ = asyncio.run(hostile_beside_honest(hostile, ResponseLimits()))
    assert bad.error is None, bad.error


def test_an_endless_body_stops_at_the_size_limit() -> None:
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await endless(reader, writer, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"data\": \"",
                      b"A" * 65536)

    bad, good, growth = asyncio.run(hostile_beside_honest(hostile, ResponseLimits(max_body_bytes=8 << 20)))
    assert_limit_hit(bad, "response_too_large")
    assert (7 << 20) < bad.calls[0].bytes_received <= 8 << 20
    assert good.error is None
    assert growth < 100 << 20


def test_a_body_over_the_limit_with_its_length_declared_is_refused_at_the_limit() -> None:
    hostile = answer_with("content-type: application/json\r\n", body_of_size(3000))
    bad, good, _ = asyncio.run(hostile_beside_honest(hostile, ResponseLimits(max_body_bytes=1 << 20)))
    assert_limit_hit(bad, "response_too_large")
    assert good.error is None


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


@pytest.mark.parametrize(("piece", "pause_s", "limits", "said"), [
    (b'data: {"type": "keepalive"}\n\n', 0.0, ResponseLimits(max_stream_events=2000), "events"),
    (b": still working\n\n", 0.0, ResponseLimits(max_stream_events=2000), "events"),
    (b'data: {"type": "keepalive"}\n\n', 0.01, ResponseLimits(max_stream_s=0.5), "stayed open"),
    (b"data: " + b"A" * 65536, 0.0, ResponseLimits(max_stream_bytes=4 << 20), "byte limit"),
], ids=["events", "comments", "duration", "one-endless-line"])
def test_an_endless_event_stream_fails_its_attempt(piece: bytes, pause_s: float, limits: ResponseLimits,
                                                   said: str) -> None:
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await endless(reader, writer, SSE_HEAD, piece, pause_s)

    bad, good, growth = asyncio.run(hostile_beside_honest(hostile, limits, stream=True))
    code = "response_too_large" if said == "byte limit" else "stream_too_long"
    assert_limit_hit(bad, code)
    assert bad.error is not None and said in bad.error.message
    assert good.error is None
    assert growth < 100 << 20


def test_response_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        ResponseLimits(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_stream_s"):
        ResponseLimits(max_stream_s=-1.0)


def test_memory_error_in_an_adapter_fails_only_that_attempt() -> None:
    class Greedy(OpenAIImagesProvider):
        async def generate(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
            raise MemoryError

    async def go() -> AttemptOutcome:
        async with httpx.AsyncClient() as client:
            return await perform_attempt(Greedy("http://127.0.0.1:9/v1", "k"),
                                         GenerationRequest(model_id="m", prompt="p"), client, 5)

    outcome = asyncio.run(go())
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.provider_code) == (ErrorKind.BAD_OUTPUT, "out_of_memory")
    assert classify_exception(MemoryError()).provider_code == "out_of_memory"


def test_the_sandbox_intended_delay_is_the_largest_over_the_attempts_calls() -> None:
    """A URL answer: the generate call and the download each carry ``x-sandbox-intended-ms``; the attempt keeps
    the largest, and a header that is not a finite number ≥ 0 counts as absent."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        port = writer.get_extra_info("sockname")[1]
        if b"/img.png" in request.split(b"\r\n", 1)[0]:
            png = base64.b64decode(json.loads(body_of_size(0))["data"][0]["b64_json"])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\nx-sandbox-intended-ms: nan\r\n"
                         + f"content-length: {len(png)}\r\n\r\n".encode() + png)
        else:
            body = json.dumps({"data": [{"url": f"http://127.0.0.1:{port}/img.png"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-sandbox-intended-ms: 812.5\r\n"
                         + f"content-length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def go() -> AttemptOutcome:
        async with raw_server(answer) as base, ClientPool(1, timeout=5) as pool, pool.lease() as client:
            provider = OpenAIImagesProvider(base + "/v1", "k", {"response_format": "url"})
            return await perform_attempt(provider, GenerationRequest(model_id="m", prompt="p"), client, 5)

    outcome = asyncio.run(go())
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls] == ["generate", "download"]
    assert [c.intended_ms for c in outcome.calls] == [812.5, None]
    assert outcome.clock.intended_ms == 812.5
    assert outcome.clock.latency_ms == pytest.approx((outcome.calls[1].t_last_byte or 0) / 1e6
                                                     - (outcome.calls[0].t_conn or 0) / 1e6)


@contextmanager
def served_in_thread(handler: Handler) -> Iterator[str]:
    """``raw_server(handler)`` on its own event loop in a thread, for code that runs its own loop (a run)."""
    ready = threading.Event()
    found: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with raw_server(handler) as base:
            found.append(base)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        yield found[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_a_gzip_bomb_target_fails_its_requests_and_the_other_target_of_the_run_finishes(tmp_path: Path) -> None:
    """Issue 12: one bomb answer used to take a run to 2.3 GB (or a MemoryError that failed the whole run)."""
    bomb = nested_gzip_bomb(2)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "s.yaml").write_text("challenges:\n" + "".join(
        f"  - {{id: c{i}, title: c, category: other, kind: text-to-image, prompt: 'p {i}'}}\n" for i in range(3)),
        encoding="utf-8")
    before = peak_rss_bytes()
    with served_in_thread(answer_with("content-type: application/json\r\ncontent-encoding: gzip, gzip\r\n",
                                      bomb)) as bad, served_in_thread(answer_with(
                                          "content-type: application/json\r\n", body_of_size(0))) as good:
        targets = [Target(name=name, model="m", provider="local", protocol="openai-images", base_url=f"{base}/v1",
                          api_key_env=("LOCAL_KEY",), price_per_image_usd=0.0)
                   for name, base in (("bomb@local", bad), ("honest@local", good))]
        result = start_run(tmp_path / "harness.db", load(suite), targets,
                           {t.name: Credential(t.name, "LOCAL_KEY", "k") for t in targets},
                           RunOptions(concurrency=4, respect_limits=False, retries=0))
    growth = peak_rss_bytes() - before
    assert result.status == "finished"
    with Store.open(tmp_path / "harness.db", readonly=True) as store:
        frame = run_store.attempts_frame(store, [result.run_id])
    by_target = {name: rows for name, rows in frame.groupby("target", observed=True)}
    assert list(by_target["bomb@local"]["provider_code"]) == ["response_too_large"] * 3
    assert set(by_target["bomb@local"]["error_kind"]) == {"bad_output"}
    assert by_target["honest@local"]["ok"].astype(bool).all() and len(by_target["honest@local"]) == 3
    assert growth < 300 << 20, f"peak RSS grew {growth >> 20} MiB"


def test_requests_ask_only_for_encodings_the_bounded_reader_decodes() -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(image_answer())
        await writer.drain()

    async def go() -> AttemptOutcome:
        async with raw_server(answer) as base:
            return await attempt(base)

    assert asyncio.run(go()).error is None
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in seen[0].lower()
