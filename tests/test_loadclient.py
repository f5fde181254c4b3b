"""The load benches' own HTTP client (tests/loadclient.py) reads answers the way real servers frame them:
a real uvicorn server on 127.0.0.1 (the arena's framework stack), and a raw socket server for framings
uvicorn does not choose itself (chunked with extensions and trailers, a body ended by closing)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.loadclient import LoadClient, LoadClientError, read_chunked


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app() -> FastAPI:
    app = FastAPI()
    connections: set[tuple[str, int]] = set()

    @app.get("/login")
    async def login() -> Response:
        response = JSONResponse({"ok": True})
        response.set_cookie("voter", "v1", httponly=True, samesite="strict")
        return response

    @app.get("/logout")
    async def logout() -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie("voter")
        return response

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | int | None]:
        assert request.client is not None
        connections.add((request.client.host, request.client.port))
        return {"voter": request.cookies.get("voter"), "connections": len(connections)}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type=request.headers.get("content-type", ""))

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> object:
            for i in range(5):
                yield bytes([i]) * (1000 * i)
        return StreamingResponse(parts(), media_type="application/octet-stream")  # type: ignore[arg-type]

    @app.get("/empty", status_code=204)
    async def empty() -> Response:
        return Response(status_code=204)

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def test_a_visitor_keeps_its_cookie_and_one_connection(server: str) -> None:
    async def visit() -> tuple[list[dict[str, object]], int]:
        client = LoadClient(server)
        try:
            (await client.get("/login")).raise_for_status()
            seen = [(await client.get("/whoami")).json() for _ in range(20)]
            return seen, client.opened
        finally:
            await client.aclose()

    seen, opened = asyncio.run(visit())
    assert all(s["voter"] == "v1" for s in seen)
    assert opened == 1
    assert seen[-1]["connections"] == 1


def test_a_deleted_cookie_is_no_longer_sent(server: str) -> None:
    async def visit() -> object:
        client = LoadClient(server)
        try:
            await client.get("/login")
            await client.get("/logout")
            return (await client.get("/whoami")).json()["voter"]
        finally:
            await client.aclose()

    assert asyncio.run(visit()) is None


def test_concurrent_requests_open_more_connections_and_reuse_them(server: str) -> None:
    async def burst() -> int:
        client = LoadClient(server)
        try:
            for _ in range(3):
                replies = await asyncio.gather(*(client.get("/whoami") for _ in range(4)))
                assert {r.status for r in replies} == {200}
            return client.opened
        finally:
            await client.aclose()

    assert asyncio.run(burst()) == 4


def test_json_bodies_streams_and_empty_answers_arrive_whole(server: str) -> None:
    async def exchange() -> None:
        client = LoadClient(server)
        try:
            echoed = await client.post("/echo", json={"token": "abc", "outcome": "left"})
            assert echoed.json() == {"token": "abc", "outcome": "left"}
            assert echoed.headers["content-type"] == "application/json"
            streamed = await client.get("/stream")
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert streamed.body == b"".join(bytes([i]) * (1000 * i) for i in range(5))
            assert (await client.get("/empty")).status == 204
            assert (await client.get("/whoami")).status == 200  # the connection is still in step
            assert client.opened == 1
        finally:
            await client.aclose()

    asyncio.run(exchange())


def test_an_error_status_is_raised_with_the_request_named(server: str) -> None:
    async def missing() -> None:
        client = LoadClient(server)
        try:
            (await client.get("/nowhere")).raise_for_status()
        finally:
            await client.aclose()

    with pytest.raises(LoadClientError, match=r"GET /nowhere: HTTP 404"):
        asyncio.run(missing())


def _raw_server(answer: bytes) -> tuple[str, threading.Thread]:
    """A one-shot server that reads a request head and writes ``answer`` as it is, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", thread


@pytest.mark.parametrize(("answer", "body"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", b"abc"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread until closed", b"read until closed"),
])
def test_framings_uvicorn_does_not_choose(answer: bytes, body: bytes) -> None:
    url, thread = _raw_server(answer)

    async def fetch() -> bytes:
        client = LoadClient(url)
        try:
            return (await client.get("/")).body
        finally:
            await client.aclose()

    assert asyncio.run(fetch()) == body
    thread.join(5)


@pytest.mark.parametrize("answer", [b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_a_malformed_answer_is_an_error_naming_the_request(answer: bytes) -> None:
    url, thread = _raw_server(answer)

    async def fetch() -> None:
        client = LoadClient(url, timeout_s=5)
        try:
            await client.get("/pair")
        finally:
            await client.aclose()

    with pytest.raises(LoadClientError, match=r"^GET /pair: "):
        asyncio.run(fetch())
    thread.join(5)


def test_a_server_that_never_answers_times_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def fetch() -> None:
        client = LoadClient(url, timeout_s=0.2)
        try:
            await client.get("/slow")
        finally:
            await client.aclose()

    with listener, pytest.raises(LoadClientError, match=r"GET /slow: no answer within 0.2 s"):
        asyncio.run(fetch())


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=3000), cuts=st.lists(st.integers(1, 700), max_size=10),
       extension=st.sampled_from(["", ";a=b", ";x"]))
def test_any_chunking_of_a_body_reads_back_the_same_bytes(body: bytes, cuts: list[int], extension: str) -> None:
    wire = bytearray()
    rest = body
    for size in cuts:
        piece, rest = rest[:size], rest[size:]
        if piece:
            wire += f"{len(piece):x}{extension}\r\n".encode() + piece + b"\r\n"
    if rest:
        wire += f"{len(rest):X}\r\n".encode() + rest + b"\r\n"
    wire += b"0\r\n\r\n"

    async def read() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(bytes(wire))
        reader.feed_eof()
        return await read_chunked(reader, "GET /")

    assert asyncio.run(read()) == body
