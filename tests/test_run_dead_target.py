"""A target that can never answer (unknown model, bad key) is stopped after its first few requests instead of
burning the whole run; errors that clear with time (429, 5xx, timeouts) never stop one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.records import NOT_SENT, AttemptRecord, RequestKey
from harness.run.execute import DeadTargetWatch
from harness.timing import AttemptClock


class AlwaysFailing(ThreadingHTTPServer):
    """Answers every request with one error status and an OpenAI-shaped error body; counts requests."""

    def __init__(self, status: int, message: str, code: str | None) -> None:
        self.status, self.message, self.code = status, message, code
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: AlwaysFailing

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.requests += 1
        body = json.dumps({"error": {"message": self.server.message, "type": "invalid_request_error",
                                     "code": self.server.code}}).encode()
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server(request: pytest.FixtureRequest) -> Iterator[AlwaysFailing]:
    status, message, code = request.param
    server = AlwaysFailing(status, message, code)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


MISSING_MODEL = (404, "The model 'gpt-image-9' does not exist or you do not have access to it.", "model_not_found")


def run_against(tmp_path: Path, suite: Path, sandbox_root: str, gateway: str, *extra: str) -> tuple[
        subprocess.CompletedProcess[str], Path]:
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"""targets:
  - name: gateway
    model: gpt-image-9
    provider: mygateway
    protocol: openai-images
    base_url: {gateway}
    api_key_env: GATEWAY_KEY
  - name: healthy
    model: gpt-image-1
    provider: openai
    protocol: openai-images
    base_url: {sandbox_root}/openai/v1
    api_key_env: GATEWAY_KEY
""", encoding="utf-8")
    db = tmp_path / "r" / "harness.db"
    env = {**os.environ, "GATEWAY_KEY": "k-test", "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(suite), "--targets",
                           str(targets), "--target", "gateway", "--target", "healthy", "--samples", "3",
                           "--concurrency", "1", "--db", str(db), "--json", *extra],
                          capture_output=True, text=True, env=env, timeout=180)
    return proc, db


def finals(db: Path, target: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM attempts WHERE target=? AND final=1 ORDER BY id", (target,)).fetchall()


@pytest.mark.parametrize("failing_server", [MISSING_MODEL], indirect=True)
def test_a_missing_model_is_stopped_after_five_requests_and_the_rest_recorded_not_sent(
        tmp_path: Path, tiny_suite: Path, sandbox: object, failing_server: AlwaysFailing) -> None:
    proc, db = run_against(tmp_path, tiny_suite, sandbox.root, failing_server.url)  # type: ignore[attr-defined]
    assert proc.returncode == 3, proc.stderr
    assert failing_server.requests == 5
    rows = finals(db, "gateway")
    assert len(rows) == 15  # 5 challenge variants x 3 samples: every request has its final attempt
    sent, unsent = rows[:5], rows[5:]
    assert all(r["http_status"] == 404 and r["error_kind"] == "invalid_request" for r in sent)
    assert all(r["error_kind"] == NOT_SENT and r["http_calls"] == 0 and r["ok"] == 0 for r in unsent)
    assert all("404" in r["error_message"] and "does not exist" in r["error_message"] for r in unsent)
    assert all(r["ok"] for r in finals(db, "healthy")) and len(finals(db, "healthy")) == 15
    out = json.loads(proc.stdout)
    assert out["status"] == "finished" and out["not_sent"] == 10 and list(out["stopped_targets"]) == ["gateway"]
    assert "gateway stopped after its first 5 requests" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("failing_server", [MISSING_MODEL], indirect=True)
def test_dead_target_after_zero_sends_everything(tmp_path: Path, tiny_suite: Path, sandbox: object,
                                                 failing_server: AlwaysFailing) -> None:
    proc, db = run_against(tmp_path, tiny_suite, sandbox.root, failing_server.url,  # type: ignore[attr-defined]
                           "--dead-target-after", "0")
    assert proc.returncode == 0, proc.stderr
    assert failing_server.requests == 15
    assert not any(r["error_kind"] == NOT_SENT for r in finals(db, "gateway"))


@pytest.mark.parametrize("failing_server", [(429, "Rate limit reached for requests", "rate_limit_exceeded"),
                                            (503, "The model is overloaded", None)], indirect=True)
def test_rate_limits_and_server_errors_never_stop_a_target(tmp_path: Path, tiny_suite: Path, sandbox: object,
                                                           failing_server: AlwaysFailing) -> None:
    proc, db = run_against(tmp_path, tiny_suite, sandbox.root, failing_server.url)  # type: ignore[attr-defined]
    assert proc.returncode == 0, proc.stderr
    assert failing_server.requests == 15
    assert len(finals(db, "gateway")) == 15


def _clock() -> AttemptClock:
    from harness.run.execute import _unsent_clock

    return _unsent_clock()


def _final(status: int | None, kind: str | None, message: str = "x", code: str | None = None,
           challenge: str = "c1") -> AttemptRecord:
    return AttemptRecord(run_id="r", key=RequestKey(challenge, "default", "t", 0), model="m", provider="p",
                         protocol="openai-images", attempt=1, final=True, ok=kind is None, started_at=0.0,
                         sched_ms=0.0, start_ms=0.0, clock=_clock(), error_kind=kind, http_status=status,
                         provider_code=code, error_message=message)


TRANSIENT = st.sampled_from([(429, "rate_limited"), (500, "server_error"), (503, "server_error"),
                             (None, "timeout"), (None, "connection"), (200, None), (200, "bad_output")])


@given(st.lists(TRANSIENT, min_size=1, max_size=30), st.integers(1, 8))
def test_transient_errors_or_successes_never_mark_a_target_dead(outcomes: list[tuple[int | None, str | None]],
                                                                 after: int) -> None:
    watch = DeadTargetWatch(after, several_challenges=False)
    assert all(watch.observe(_final(status, kind)) is None for status, kind in outcomes)


@given(st.integers(1, 8), st.sampled_from([(401, "auth"), (403, "auth"), (404, "invalid_request")]))
def test_the_same_client_error_n_times_marks_a_target_dead_on_the_nth(after: int, error: tuple[int, str]) -> None:
    watch = DeadTargetWatch(after, several_challenges=True)
    verdicts = [watch.observe(_final(error[0], error[1], "no such model")) for _ in range(after)]
    assert verdicts[:-1] == [None] * (after - 1)
    assert verdicts[-1] is not None and str(error[0]) in verdicts[-1]


def test_a_different_first_outcome_closes_the_watch() -> None:
    watch = DeadTargetWatch(3, several_challenges=False)
    assert watch.observe(_final(404, "invalid_request")) is None
    assert watch.observe(_final(200, None)) is None
    assert all(watch.observe(_final(404, "invalid_request")) is None for _ in range(10))


def test_a_400_about_one_challenge_needs_a_second_challenge_to_stop_the_target() -> None:
    prompt_error = _final(400, "invalid_request", "Invalid value for parameter 'size'", challenge="c1")
    watch = DeadTargetWatch(2, several_challenges=True)
    assert [watch.observe(prompt_error) for _ in range(5)] == [None] * 5
    assert watch.observe(_final(400, "invalid_request", "Invalid value for parameter 'size'", challenge="c2"))
    unrelated = DeadTargetWatch(2, several_challenges=False)
    assert [unrelated.observe(_final(400, "invalid_request", "Your prompt is too long")) for _ in range(3)] == [
        None] * 3


@pytest.mark.parametrize("failing_server", [MISSING_MODEL], indirect=True)
def test_a_resume_counts_the_first_failures_of_the_earlier_process(
        tmp_path: Path, tiny_suite: Path, sandbox: object, failing_server: AlwaysFailing,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after its five 404s but before the rest was recorded: the resume sends the dead target nothing."""
    from harness.run import resume_run
    from harness.targets import resolve_keys

    proc, db = run_against(tmp_path, tiny_suite, sandbox.root, failing_server.url)  # type: ignore[attr-defined]
    assert proc.returncode == 3, proc.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM attempts WHERE error_kind=?", (NOT_SENT,))
        conn.execute("UPDATE runs SET status='running'")
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    monkeypatch.setenv("GATEWAY_KEY", "k-test")
    result = resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))
    assert failing_server.requests == 5
    assert result.not_sent == 10 and list(result.stopped_targets) == ["gateway"]
    rows = finals(db, "gateway")
    assert len(rows) == 15 and sum(r["error_kind"] == NOT_SENT for r in rows) == 10
