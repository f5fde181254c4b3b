"""``harness arena serve`` as a user runs it: a real process on loopback, stopped and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.conftest import free_port
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", "arena", "serve", *args]


@contextmanager
def serving(db: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(command("--db", str(db), "--port", str(port), *args), cwd=ROOT,
                            env={**os.environ, "CI": "true", **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(root + "/api/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"arena did not start: {proc.communicate()}") from None
                time.sleep(0.1)
        yield root
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells how it ended
        assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err


def test_serve_votes_then_a_restart_with_the_same_secret_keeps_voters_and_pending_pairs(
        tmp_path: Path, arena_store: ArenaStore) -> None:
    store = clone_store(arena_store, tmp_path / "store")
    env = {"HARNESS_ARENA_SECRET": "kept in the deployment's environment"}
    with serving(store.db, "--runs", "latest", "--targets", "gpt-image-1*,dalle3@openai", env=env) as root, \
            httpx.Client(base_url=root) as voter:
        health = voter.get("/api/health").json()
        assert health["targets"] == 3
        page = voter.get("/")
        assert page.status_code == 200 and "server" not in page.headers
        token = page.text.split('data-token="')[1].split('"')[0]
        assert voter.post("/api/vote", json={"token": token, "outcome": "left"}).status_code == 200
        pending = voter.get("/api/pair").json()["token"]
        cookies = voter.cookies
    with serving(store.db, env=env) as root, httpx.Client(base_url=root, cookies=cookies) as voter:
        answer = voter.post("/api/vote", json={"token": pending, "outcome": "right"})
        assert answer.status_code == 200, answer.text
        assert voter.get("/api/health").json()["votes"] == 2


def test_without_a_secret_pairs_do_not_survive_a_restart(tmp_path: Path, arena_store: ArenaStore) -> None:
    store = clone_store(arena_store, tmp_path / "store")
    with serving(store.db) as root, httpx.Client(base_url=root) as voter:
        pending = voter.get("/api/pair").json()["token"]
        cookies = voter.cookies
    with serving(store.db) as root, httpx.Client(base_url=root, cookies=cookies) as voter:
        assert voter.post("/api/vote", json={"token": pending, "outcome": "right"}).status_code == 403


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "{tmp}/none.db"], "does not exist"),
    (["--targets", "flux*"], "matches no target"),
    (["--runs", "20990101T000000Z-0000"], "no run '20990101T000000Z-0000'"),
    (["--ip-limit", "lots"], "--ip-limit: 'lots' is not PER_MINUTE"),
    (["--secret", "short"], "at least 16 characters"),
    (["--forwarded-allow-ips", "my-proxy"], "'my-proxy' is not an IP address or network"),
    (["--new-voter-limit", "0"], "--new-voter-limit: rate limit needs a positive rate"),
])
def test_configuration_errors_exit_2_with_a_clear_message(tmp_path: Path, arena_store: ArenaStore,
                                                         args: list[str], message: str) -> None:
    full = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--db" not in full:
        full = ["--db", str(arena_store.db), *full]
    result = CliRunner().invoke(cli, ["arena", "serve", *full], catch_exceptions=False)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
