"""A hostile client against a real arena (uvicorn on 127.0.0.1): it spoofs its address with
``X-Forwarded-For``, mints a fresh voter cookie per vote, and sends vote bodies of hundreds of megabytes,
declared or streamed. Each attack is refused; honest voting keeps working."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.server import BackgroundServer
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

GENEROUS = RateLimit(per_minute=1e6, burst=100_000)


@pytest.fixture(scope="module")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


@pytest.fixture
def fresh(tmp_path: Path, arena_store: ArenaStore) -> ArenaStore:
    return clone_store(arena_store, tmp_path / "store")


@contextmanager
def live(store: ArenaStore, **settings: Any) -> Iterator[str]:
    """The arena on a loopback port under uvicorn, as `harness arena serve` runs it."""
    options: dict[str, Any] = {"voter_votes": GENEROUS, "ip_votes": GENEROUS, "ip_new_voters": GENEROUS,
                               "reveal_memory": "off", **settings}
    app = create_app(ArenaConfig(db=store.db, cache_dir=store.cache_dir, **options))
    server = BackgroundServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()
        app.state.arena.close()


def spoofing_votes(url: str, n: int) -> int:
    """``n`` votes, each from a fresh cookie and a different forged ``X-Forwarded-For``; how many got in."""
    accepted = 0
    for i in range(n):
        forged = {"X-Forwarded-For": f"10.{i // 250}.{i % 250}.7"}
        with httpx.Client(base_url=url, timeout=10) as c:
            pair = c.get("/api/pair", headers=forged)
            if pair.status_code != 200:
                continue
            vote = c.post("/api/vote", json={"token": pair.json()["token"], "outcome": "left"}, headers=forged)
            accepted += vote.status_code == 200
    return accepted


def test_a_forged_forwarded_for_over_loopback_does_not_pick_the_clients_address(fresh: ArenaStore) -> None:
    """Uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the arena does not, unless the operator
    names the proxy: 30 spoofed votes meet the per-IP limit (burst 5 votes, 10 pairs) of the one real address."""
    with live(fresh, ip_votes=RateLimit(per_minute=1, burst=5)) as url:
        spoofed = spoofing_votes(url, 30)
    with live(clone_store(fresh, fresh.db.parent.parent / "proxied"), ip_votes=RateLimit(per_minute=1, burst=5),
              forwarded_allow_ips=("127.0.0.1",)) as url:
        behind_named_proxy = spoofing_votes(url, 30)
    assert spoofed == 5
    assert behind_named_proxy == 30  # a named proxy's header is believed: 30 different clients


def test_a_fresh_cookie_per_vote_does_not_reset_the_voter_limit(fresh: ArenaStore) -> None:
    """Dropping the cookie before every vote once gave a new per-voter bucket each time; new cookies are
    now themselves limited per address, so the cookie-cycler gets no more votes than the limits allow."""
    with live(fresh, voter_votes=RateLimit(per_minute=1, burst=3),
              ip_new_voters=RateLimit(per_minute=1, burst=3)) as url:
        cycled = 0
        for _ in range(30):
            with httpx.Client(base_url=url, timeout=10) as c:
                pair = c.get("/api/pair")
                if pair.status_code == 200:
                    cycled += c.post("/api/vote", json={"token": pair.json()["token"], "outcome": "left"}
                                     ).status_code == 200
                else:
                    assert pair.status_code == 429 and int(pair.headers["retry-after"]) >= 1
        with httpx.Client(base_url=url, timeout=10) as late:
            another_cookie = late.get("/api/pair").status_code
    assert cycled == 3
    assert another_cookie == 429  # the address has used its new-voter allowance


def raw_request(url: str, head: str, body_chunks: Iterator[bytes] | None = None,
                timeout_s: float = 10.0) -> tuple[int, int]:
    """Send ``head`` then as many chunks as the server takes; ``(status, bytes of body sent)``."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks or ():
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def vote_head(url: str, length_header: str) -> str:
    host = url.removeprefix("http://")
    return (f"POST /api/vote HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{length_header}\r\n"
            "\r\n")


def test_a_declared_400_megabyte_vote_is_refused_before_a_byte_of_it_is_read(fresh: ArenaStore) -> None:
    with live(fresh) as url:
        # Only the head is sent: a server that waited for the declared body would never answer, and the
        # socket's read timeout would end the test with an error instead of a status.
        status, _ = raw_request(url, vote_head(url, "Content-Length: 400000000"))
        with httpx.Client(base_url=url, timeout=10) as c:
            token = c.get("/api/pair").json()["token"]
            honest = c.post("/api/vote", json={"token": token, "outcome": "right"}).status_code
    assert status == 413
    assert honest == 200


def test_a_streamed_vote_without_length_is_cut_off_at_the_limit(fresh: ArenaStore) -> None:
    """A chunked body with no Content-Length is counted as it arrives: 413 once it passes 16 KiB, and the
    connection closes long before the hostile client has sent its 64 MB."""
    total = 64 * 1024 * 1024
    piece = b"A" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    def chunks() -> Iterator[bytes]:
        for _ in range(total // len(piece)):
            yield chunk
        yield b"0\r\n\r\n"

    with live(fresh) as url:
        status, sent = raw_request(url, vote_head(url, "Transfer-Encoding: chunked"), chunks())
        small = raw_request(url, vote_head(url, "Transfer-Encoding: chunked"),
                            iter([b"2\r\n{}\r\n", b"0\r\n\r\n"]))[0]
    assert status == 413
    assert sent < total / 4, f"the server kept reading: {sent} bytes accepted"
    assert small == 403  # a small streamed body is read and judged as usual (no voter cookie here)
