"""The runner's promises: nothing lost or repeated across a crash, honest retries, timeouts and schedules."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.challenges import load
from harness.run import RunOptions, start_run
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select

GPT = ["gpt-image-1@openai", "gpt-image-1.5@openai"]


def profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sandbox_run(tmp_path: Path, suite: Path, *, targets: list[str] = GPT, profile_file: Path | None = None,
                **options: object) -> tuple[Path, str]:
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(), targets)
    opts = RunOptions(sandbox=True, time_scale=float(options.pop("time_scale", 0.005)),  # type: ignore[arg-type]
                      sandbox_profile=str(profile_file) if profile_file else None, **options)  # type: ignore[arg-type]
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts)
    return db, result.run_id


def final_keys(db: Path, run_id: str) -> Counter[tuple[str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT challenge_id, variant, target, sample FROM attempts WHERE run_id=? AND final=1",
                            (run_id,)).fetchall()
    return Counter(tuple(r) for r in rows)  # type: ignore[misc]


def test_every_planned_request_gets_exactly_one_final_attempt(tmp_path: Path, tiny_suite: Path) -> None:
    db, run_id = sandbox_run(tmp_path, tiny_suite, samples=2, profile_file=profile(tmp_path, "openai: {faults: {}}"))
    keys = final_keys(db, run_id)
    assert len(keys) == 5 * 2 * 2  # 5 challenge variants x 2 targets x 2 samples
    assert set(keys.values()) == {1}
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [run_id])
        outputs = run_store.outputs_frame(store, [run_id])
    assert info.status == "finished" and info.requests_planned == 20 and info.requests_done == 20
    assert frame["ok"].all()
    assert (frame["latency_ms"] >= frame["ttfb_ms"]).all() and (frame["ttfb_ms"] >= 0).all()
    assert len(outputs) == 20
    for sha, ext in zip(outputs["sha256"], outputs["ext"], strict=True):
        assert (db.parent / "images" / f"{sha}.{ext}").is_file()


def test_resume_after_crash_loses_nothing(tmp_path: Path, tiny_suite: Path) -> None:
    """A real `harness run` killed with SIGKILL mid-run, then `--resume`: every committed attempt survives
    unchanged, and every (challenge, variant, target, sample) ends with exactly one final attempt."""
    db = tmp_path / "store" / "harness.db"
    prof = profile(tmp_path, "openai: {faults: {}, rpm: null}")
    cmd = [sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--target", GPT[0],
           "--target", GPT[1], "--samples", "12", "--concurrency", "2", "--sandbox", "--time-scale", "0.02",
           "--sandbox-profile", str(prof), "--db", str(db)]
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 15:
        assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
        if db.exists():
            with sqlite3.connect(db, timeout=5) as conn:
                try:
                    committed = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
                except sqlite3.OperationalError:
                    committed = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
        before = conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()
        planned = conn.execute("SELECT planned, status FROM runs").fetchone()
    assert planned == (120, "running")
    assert 15 <= len(before) < 120, "the kill should land mid-run"

    resumed = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", run_id, "--db", str(db), "--json"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()
        status = conn.execute("SELECT status FROM runs").fetchone()[0]
    assert after[: len(before)] == before, "an attempt committed before the crash changed"
    keys = final_keys(db, run_id)
    assert len(keys) == 120 and set(keys.values()) == {1}
    assert len(after) == 120
    assert status == "finished"


def test_resume_of_a_finished_run_sends_nothing(tmp_path: Path, tiny_suite: Path) -> None:
    db, run_id = sandbox_run(tmp_path, tiny_suite, targets=[GPT[0]])
    from harness.run import resume_run

    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    result = resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))
    assert result.requests == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == before


def test_retries_honour_retry_after_and_record_every_attempt(tmp_path: Path, tiny_suite: Path) -> None:
    prof = profile(tmp_path, "openai: {faults: {rate_limited: 1.0}, rpm: null}")
    db, run_id = sandbox_run(tmp_path, tiny_suite, targets=[GPT[0]], retries=2, profile_file=prof, time_scale=0.001)
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [run_id])
    assert len(frame) == 5 * 3
    for _, group in frame.groupby(["challenge_id", "variant"]):
        assert sorted(group["attempt"]) == [1, 2, 3]
        assert list(group.sort_values("attempt")["final"]) == [0, 0, 1]
        retried = group[group["attempt"] > 1]
        assert retried["retry_wait_ms"].tolist() == pytest.approx([12.0, 12.0])  # Retry-After 12 s x scale 0.001
    assert (frame["error_kind"] == "rate_limited").all()
    assert (frame["retry_after_ms"] == 12000.0).all()
    assert (frame["http_status"] == 429).all()


def test_timeouts_are_recorded_as_failures_at_the_timeout(tmp_path: Path, tiny_suite: Path) -> None:
    prof = profile(tmp_path, "openai: {faults: {timeout: 1.0}, rpm: null}")
    db, run_id = sandbox_run(tmp_path, tiny_suite, targets=[GPT[0]], profile_file=prof, timeout_s=40.0,
                             time_scale=0.01, variants=("default",))
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [run_id])
    assert (frame["error_kind"] == "timeout").all()
    assert frame["ok"].sum() == 0
    assert frame["latency_ms"].min() >= 400 - 5  # 40 s x 0.01
    assert frame["latency_ms"].max() < 400 + 500


def test_open_loop_schedule_and_queueing_delay_are_recorded(tmp_path: Path, tiny_suite: Path) -> None:
    prof = profile(tmp_path, "openai: {faults: {}, latency: {median_s: 2.0, p95_s: 2.2}, rpm: null}")
    db, run_id = sandbox_run(tmp_path, tiny_suite, targets=[GPT[0]], profile_file=prof, rpm=600, concurrency=1,
                             samples=2, time_scale=0.02)
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [run_id]).sort_values("sched_ms")
    gaps = frame["sched_ms"].diff().dropna()
    assert gaps.tolist() == pytest.approx([2.0] * len(gaps), abs=1e-6)  # 60/600 s x time scale 0.02 = 2 ms apart
    assert (frame["start_ms"] >= frame["sched_ms"] - 0.5).all()
    waited = frame["start_ms"] - frame["sched_ms"]
    assert waited.iloc[-1] > 100, "with concurrency 1 and 40 ms requests, later requests queue client-side"


def test_concurrency_never_exceeds_the_limit(tmp_path: Path, tiny_suite: Path) -> None:
    prof = profile(tmp_path, "openai: {faults: {}, latency: {median_s: 2.0, p95_s: 3.0}, rpm: null}")
    db, run_id = sandbox_run(tmp_path, tiny_suite, targets=[GPT[0]], profile_file=prof, concurrency=3, respect_limits=False,
                             samples=4, time_scale=0.01)
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [run_id])
    events = sorted([(s, 1) for s in frame["start_ms"]] + [(s + lat, -1) for s, lat in
                                                          zip(frame["start_ms"], frame["latency_ms"], strict=True)])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == 3


def test_api_key_is_never_written_to_the_store_or_output(tmp_path: Path, tiny_suite: Path, sandbox: object) -> None:
    secret = "sk-live-DO-NOT-LEAK-4c1d8e"
    root = sandbox.root  # type: ignore[attr-defined]
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"""targets:
  - name: my-gateway
    model: gpt-image-1
    provider: mygateway
    protocol: openai-images
    base_url: {root}/openai/v1
    api_key_env: MY_GATEWAY_KEY
    price_per_image_usd: 0.04
""", encoding="utf-8")
    db = tmp_path / "r" / "harness.db"
    env = {**os.environ, "MY_GATEWAY_KEY": secret, "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--targets",
                           str(targets), "--target", "my-gateway", "--db", str(db), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    for path in db.parent.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"key found in {path}"
    assert '"cost_per_image_usd": 0.04' in proc.stdout


def test_missing_key_fails_before_any_request_and_names_the_variable(tmp_path: Path, tiny_suite: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "FAL_KEY")}
    db = tmp_path / "r" / "harness.db"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--target",
                           "gpt-image-1@openai", "--target", "flux-dev@fal", "--db", str(db)],
                          capture_output=True, text=True, env={**env, "CI": "true"}, timeout=60)
    assert proc.returncode == 2
    assert "gpt-image-1@openai (set OPENAI_API_KEY)" in proc.stderr
    assert "flux-dev@fal (set FAL_KEY)" in proc.stderr
    assert not db.exists()


def test_unknown_target_is_an_error_with_a_suggestion(tmp_path: Path, tiny_suite: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--target",
                           "gpt-image1@openai", "--sandbox", "--db", str(tmp_path / "x.db")],
                          capture_output=True, text=True, env={**os.environ, "CI": "true"}, timeout=60)
    assert proc.returncode == 2
    assert "unknown target 'gpt-image1@openai'" in proc.stderr and "gpt-image-1@openai" in proc.stderr
