"""A run's state is honest: one live process holds it, a dead one reads as interrupted, SIGTERM is Ctrl-C,
and a resume continues each request (its retry count, its Retry-After, its time to image) instead of
starting it over. Every scenario uses a real `harness run` process."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import ExitCode, RunLockedError
from harness.run.lock import FileRunLocks

GPT = "gpt-image-1@openai"
ENV = {**os.environ, "CI": "true"}


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def start(db: Path, suite: Path, profile: str, *extra: str, tmp_path: Path) -> subprocess.Popen[str]:
    prof = tmp_path / "profile.yaml"
    prof.write_text(profile, encoding="utf-8")
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--challenges", str(suite), "--target", GPT,
                             "--sandbox", "--sandbox-profile", str(prof), "--db", str(db), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for_attempts(db: Path, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"run ended before the test could act: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run never recorded enough attempts"
        time.sleep(0.05)
        if not db.exists():
            continue
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] >= count:
                    return
        except sqlite3.OperationalError:
            pass


def runs_json(db: Path) -> list[dict[str, object]]:
    listed = harness("runs", "--json", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, object]] = json.loads(listed.stdout)
    return rows


def attempts(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()


def one_final_per_request(db: Path) -> bool:
    finals = Counter((r["challenge_id"], r["variant"], r["target"], r["sample"]) for r in attempts(db) if r["final"])
    return set(finals.values()) == {1}


SLOW = "openai: {faults: {}, rpm: null, latency: {median_s: 10.0, p95_s: 12.0}}"


def test_a_second_resume_is_refused_while_the_first_runs_and_a_killed_run_reads_interrupted(
        tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "s" / "harness.db"
    first = start(db, tiny_suite, SLOW, "--samples", "8", "--concurrency", "2", "--time-scale", "0.02",
                  tmp_path=tmp_path)
    try:
        wait_for_attempts(db, first, 2)
        (listed,) = runs_json(db)
        assert listed["status"] == "running" and f"process {first.pid} " in str(listed["held_by"])
        run_id = str(listed["id"])
        before = len(attempts(db))
        second = harness("run", "--resume", run_id, "--db", str(db))
        assert second.returncode == ExitCode.RUN_LOCKED
        assert f"run {run_id} is being run by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr and second.stderr.count("error:") == 1
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    killed = attempts(db)
    assert len(killed) >= before
    (listed,) = runs_json(db)
    assert listed["status"] == "interrupted"
    last_end = max(r["started_at"] + r["latency_ms"] / 1000 for r in killed)
    assert listed["interrupted_at"] is not None
    assert abs(_unix(str(listed["interrupted_at"])) - last_end) < 1.0
    table = harness("runs", "--db", str(db))
    assert "interrupted" in table.stdout and "running" not in table.stdout

    resumed = harness("run", "--resume", run_id, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    after = attempts(db)
    assert [tuple(r) for r in after[: len(killed)]] == [tuple(r) for r in killed]
    assert one_final_per_request(db) and len(after) == 40
    (listed,) = runs_json(db)
    assert listed["status"] == "finished"


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_sigterm_ends_a_run_like_ctrl_c_and_resume_finishes_it(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "s" / "harness.db"
    proc = start(db, tiny_suite, SLOW, "--samples", "8", "--concurrency", "2", "--time-scale", "0.02",
                 tmp_path=tmp_path)
    wait_for_attempts(db, proc, 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    with sqlite3.connect(db) as conn:
        run_id, status = conn.execute("SELECT id, status FROM runs").fetchone()
    assert status == "interrupted"
    committed = attempts(db)
    assert 3 <= len(committed) < 40
    resumed = harness("run", "--resume", run_id, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert [tuple(r) for r in attempts(db)[: len(committed)]] == [tuple(r) for r in committed]
    assert one_final_per_request(db) and len(attempts(db)) == 40


def test_resume_keeps_each_requests_retry_budget_and_waits_out_its_retry_after(
        tmp_path: Path, tiny_suite: Path) -> None:
    """`--retries 2` against an always-429 server (Retry-After 12 s, x0.25 = 3 s), killed after every
    request's first attempt, then resumed: each request ends with exactly 3 attempts, the resumed attempt
    waits until 3 s after the answer that asked for it, and time to image spans both processes."""
    db = tmp_path / "s" / "harness.db"
    proc = start(db, tiny_suite, "openai: {faults: {rate_limited: 1.0}, rpm: null}", "--retries", "2",
                 "--concurrency", "5", "--ignore-limits", "--variant", "default", "--time-scale", "0.25",
                 tmp_path=tmp_path)
    try:
        wait_for_attempts(db, proc, 4)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed = attempts(db)
    assert killed and not any(r["final"] for r in killed), "the kill should land before any request is final"
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    resumed = harness("run", "--resume", run_id, "--db", str(db), timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    rows = attempts(db)
    by_request: dict[tuple[str, int], list[sqlite3.Row]] = {}
    for r in rows:
        by_request.setdefault((r["challenge_id"], r["sample"]), []).append(r)
    assert len(by_request) == 4
    for group in by_request.values():
        assert [r["attempt"] for r in group] == [1, 2, 3]
        assert [r["final"] for r in group] == [0, 0, 1]
        assert all(r["retry_after_ms"] == 12000.0 for r in group)
        for earlier, later in itertools.pairwise(group):
            answered = earlier["started_at"] + earlier["latency_ms"] / 1000
            assert later["started_at"] >= answered + 3.0 - 0.05, "a retry went out before its Retry-After"
        final = group[-1]
        spanned = (final["started_at"] - group[0]["started_at"]) * 1000 + final["latency_ms"]
        assert final["time_to_image_ms"] == pytest.approx(spanned, abs=50)
        assert final["time_to_image_ms"] >= 6000
    resumed_ids = {r["id"] for r in rows} - {r["id"] for r in killed}
    assert resumed_ids and all(r["time_to_image_ms"] is None for r in rows if not r["final"])


def test_a_run_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    locks = FileRunLocks(db)
    held = locks.acquire("r1")
    assert locks.holder("r1") == held.holder and held.holder.pid == os.getpid()
    with pytest.raises(RunLockedError, match=f"run r1 is being run by process {os.getpid()}"):
        locks.acquire("r1")
    assert locks.acquire("r2").holder.pid == os.getpid()
    child = os.fork()
    if child == 0:  # a forked helper closes its copy: the lock must not outlive the parent's release
        time.sleep(1.5)
        os._exit(0)
    held.release()
    assert locks.holder("r1") is None
    again = locks.acquire("r1")
    again.release()
    os.waitpid(child, 0)


def test_a_killed_holder_releases_its_lock(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    code = (f"from pathlib import Path; from harness.run.lock import FileRunLocks; import time\n"
            f"FileRunLocks(Path({str(db)!r})).acquire('r1'); print('held', flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert FileRunLocks(db).holder("r1") is not None
        finally:
            holder.kill()
            holder.wait()
    assert FileRunLocks(db).holder("r1") is None
    last = FileRunLocks(db).last_holder("r1")
    assert last is not None and last.pid == holder.pid
    FileRunLocks(db).acquire("r1").release()


def test_time_to_image_spans_every_retry_and_wait_of_a_request(tmp_path: Path, tiny_suite: Path) -> None:
    from harness.challenges import load
    from harness.run import RunOptions, start_run
    from harness.targets import load_targets, resolve_keys, select

    prof = tmp_path / "p.yaml"
    prof.write_text("openai: {faults: {rate_limited: 1.0}, rpm: null}", encoding="utf-8")
    db = tmp_path / "r" / "harness.db"
    chosen = select(load_targets(), [GPT])
    result = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                       RunOptions(sandbox=True, time_scale=0.005, retries=2, sandbox_profile=str(prof),
                                  variants=("default",)))
    assert result.status == "finished"
    rows = attempts(db)
    for final in (r for r in rows if r["final"]):
        group = [r for r in rows if (r["challenge_id"], r["sample"]) == (final["challenge_id"], final["sample"])]
        assert [r["attempt"] for r in group] == [1, 2, 3]
        waits = sum(r["retry_wait_ms"] for r in group[1:])
        assert waits == pytest.approx(2 * 60.0)  # Retry-After 12 s x 0.005, twice
        wall = (final["started_at"] - group[0]["started_at"]) * 1000 + final["latency_ms"]
        assert final["time_to_image_ms"] >= waits + sum(r["latency_ms"] for r in group) - 1
        assert final["time_to_image_ms"] == pytest.approx(wall, abs=15)
    assert all(r["time_to_image_ms"] is None for r in rows if not r["final"])
