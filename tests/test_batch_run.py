"""A ``mode: batch`` target inside a run, against the sandbox: its requests go out as batch jobs, each job is in
the store the moment it is accepted, every request gets one final attempt (success or the job's reason), a
stopped run collects its jobs on resume without resubmitting them, and the spend cap holds a job's whole bound."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness.challenges import load
from harness.errors import ConfigError
from harness.records import NOT_SENT
from harness.run import RunOptions, resume_run, start_run
from harness.sandbox.servers import SandboxServer
from harness.store import Store, batch_jobs
from harness.targets import load_targets, resolve_keys, select

BATCH = "gpt-image-1@openai-batch"
TWIN = "gpt-image-1@openai"


def write_suite(tmp_path: Path, prompts: dict[str, str]) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    entries = "".join(f"  - id: {cid}\n    title: {cid}\n    category: other\n    kind: text-to-image\n"
                      f"    prompt: \"{prompt}\"\n    params: {{aspect_ratio: \"1:1\"}}\n"
                      for cid, prompt in prompts.items())
    (suite / "suite.yaml").write_text("challenges:\n" + entries, encoding="utf-8")
    return suite


def options(**extra: object) -> RunOptions:
    return RunOptions(sandbox=True, time_scale=float(extra.pop("time_scale", 0.01)),  # type: ignore[arg-type]
                      sandbox_faults=False, **extra)  # type: ignore[arg-type]


def run(tmp_path: Path, suite: Path, names: list[str], **extra: object) -> tuple[Path, str, object]:
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(), names)
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options(**extra))
    return db, result.run_id, result


def finals(db: Path, run_id: str, target: str = BATCH) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM attempts WHERE run_id=? AND target=? AND final=1 ORDER BY id",
                            (run_id, target)).fetchall()


def jobs(db: Path, run_id: str) -> list[batch_jobs.BatchJobRow]:
    with Store.open(db, readonly=True) as store:
        return batch_jobs.jobs_of(store, [run_id])


def test_a_batch_target_sends_its_requests_as_one_job_and_records_each_result_at_half_price(
        tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl", "cat": "a cat"})
    db, run_id, _ = run(tmp_path, suite, [BATCH, TWIN], samples=2)
    rows = finals(db, run_id)
    assert len(rows) == 6 and all(r["ok"] for r in rows)
    stored = jobs(db, run_id)
    assert len(stored) == 1 and stored[0].state == "completed" and stored[0].collected
    assert len(stored[0].keys) == 6
    assert stored[0].turnaround_ms is not None and stored[0].turnaround_ms > 0
    assert all(r["latency_ms"] == pytest.approx(stored[0].turnaround_ms, abs=1) for r in rows)
    twin = finals(db, run_id, TWIN)
    assert len(twin) == 6
    batch_cost = sorted(r["cost_usd"] for r in rows)
    twin_cost = sorted(r["cost_usd"] for r in twin)
    assert batch_cost == pytest.approx([c / 2 for c in twin_cost])


def test_requests_beyond_the_job_size_go_out_as_several_bounded_jobs(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl"})
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"targets:\n  - name: {BATCH}\n    batch_max_requests: 2\n", encoding="utf-8")
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(targets), [BATCH])
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options(samples=3))
    stored = jobs(db, result.run_id)
    assert [len(j.keys) for j in stored] == [2, 2, 2]
    assert len(finals(db, result.run_id)) == 6


def test_an_expired_job_records_every_request_it_did_not_finish_as_a_failed_final_attempt(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"a": "a fox [sandbox-batch:expire]", "b": "an owl", "c": "a cat", "d": "a dog"})
    db, run_id, _ = run(tmp_path, suite, [BATCH])
    rows = finals(db, run_id)
    assert len(rows) == 4
    failed = [r for r in rows if not r["ok"]]
    assert len(failed) == 2 and all(r["provider_code"] == "batch_expired" and r["error_kind"] == "timeout"
                                    and r["cost_usd"] == 0 for r in failed)
    assert jobs(db, run_id)[0].state == "expired"


def test_a_request_the_provider_refuses_fails_alone_while_its_job_succeeds(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"a": "a fox [sandbox-fault:refused]", "b": "an owl"})
    db, run_id, _ = run(tmp_path, suite, [BATCH])
    by_challenge = {r["challenge_id"]: r for r in finals(db, run_id)}
    assert by_challenge["a"]["error_kind"] == "refused" and by_challenge["a"]["provider_code"] == "moderation_blocked"
    assert by_challenge["b"]["ok"] == 1


def test_a_job_that_fails_validation_fails_each_request_with_the_jobs_reason(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"a": "a fox [sandbox-batch:fail]", "b": "an owl"})
    db, run_id, _ = run(tmp_path, suite, [BATCH])
    rows = finals(db, run_id)
    assert len(rows) == 2 and not any(r["ok"] for r in rows)
    assert all(r["provider_code"] == "batch_failed" for r in rows)


class ProcessStopped(Exception):
    """Stands for the process dying between a job's submit and its collection."""


def test_resume_collects_a_submitted_job_without_resubmitting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              sandbox: SandboxServer) -> None:
    """The first process stops right after the job is accepted (as a crash would); the resume follows the stored
    job to its end and submits nothing. The provider here outlives both processes (the session's sandbox, used as
    a real endpoint), as a real provider's jobs do."""
    from harness.batch import runner as batch_runner

    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl"})
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"targets:\n  - name: {BATCH}\n    base_url: {sandbox.base_urls()['openai']}\n"
                       "    batch_poll_s: 0.05\n    api_key_env: BATCH_TEST_KEY\n", encoding="utf-8")
    monkeypatch.setenv("BATCH_TEST_KEY", "sk-batch-test")
    submitted: list[str] = []
    original_submit = batch_runner.BatchTargetRun._submit

    async def submit_then_stop(self: batch_runner.BatchTargetRun, chunk: list[object], index: int) -> object:
        job = await original_submit(self, chunk, index)  # type: ignore[arg-type]
        submitted.append(job.job_id)  # type: ignore[union-attr]
        raise ProcessStopped  # the process stops here: the job is stored, nothing collected

    monkeypatch.setattr(batch_runner.BatchTargetRun, "_submit", submit_then_stop)
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(targets), [BATCH])
    with pytest.raises(ProcessStopped):
        start_run(db, load(suite), chosen, resolve_keys(chosen), RunOptions(samples=2))
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    assert len(submitted) == 1 and [j.job_id for j in jobs(db, run_id)] == submitted
    assert finals(db, run_id) == []

    calls: list[int] = []

    async def never(self: batch_runner.BatchTargetRun, chunk: list[object], index: int) -> object:
        calls.append(index)
        raise AssertionError("a resumed run submitted a job again")

    monkeypatch.setattr(batch_runner.BatchTargetRun, "_submit", never)
    result = resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets))
    assert result.status == "finished" and calls == []
    rows = finals(db, run_id)
    assert len(rows) == 4 and all(r["ok"] for r in rows)
    assert {r["sample"] for r in rows} == {0, 1}
    stored = jobs(db, run_id)
    assert [j.job_id for j in stored] == submitted and stored[0].collected


def test_a_job_the_provider_no_longer_knows_fails_each_request_on_resume(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandboxed run resumed in a new process meets a new sandbox that never saw the job: a 404 on the poll,
    recorded as each request's failure (nothing lost, nothing resubmitted)."""
    from harness.batch import runner as batch_runner

    suite = write_suite(tmp_path, {"fox": "a fox"})
    original_submit = batch_runner.BatchTargetRun._submit

    async def submit_then_stop(self: batch_runner.BatchTargetRun, chunk: list[object], index: int) -> object:
        await original_submit(self, chunk, index)  # type: ignore[arg-type]
        raise ProcessStopped

    monkeypatch.setattr(batch_runner.BatchTargetRun, "_submit", submit_then_stop)
    db = tmp_path / "results" / "harness.db"
    chosen = select(load_targets(), [BATCH])
    with pytest.raises(ProcessStopped):
        start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options())
    monkeypatch.setattr(batch_runner.BatchTargetRun, "_submit", original_submit)
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=True))
    rows = finals(db, run_id)
    assert len(rows) == 1 and rows[0]["ok"] == 0 and "unknown to the provider" in rows[0]["error_message"]
    assert len(jobs(db, run_id)) == 1


def test_the_spend_cap_reserves_a_jobs_whole_bound_and_leaves_the_rest_not_sent(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl"})
    target = load_targets()[BATCH]
    from harness.pricing import RequestShape, request_bound

    bound = request_bound(target, RequestShape(size=None, prompt_bytes=len("an owl")))
    cap = bound * 2.5  # room for two requests' bounds, not three
    db, run_id, result = run(tmp_path, suite, [BATCH], samples=2, max_spend_usd=cap)
    rows = finals(db, run_id)
    assert len(rows) == 4
    sent = [r for r in rows if r["error_kind"] != NOT_SENT]
    assert len(sent) == 2 and all(r["ok"] for r in sent)
    assert sum(r["cost_usd"] for r in rows) <= cap
    assert len(jobs(db, run_id)[0].keys) == 2
    assert BATCH in result.spend_capped  # type: ignore[attr-defined]


def test_a_batch_target_on_a_protocol_without_batch_mode_is_a_config_error_naming_it(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  - name: flux-dev@fal\n    mode: batch\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"flux-dev@fal.*mode batch.*fal.*no batch mode"):
        load_targets(targets)


def test_edit_challenges_are_skipped_for_an_openai_batch_target_with_the_reason(tmp_path: Path,
                                                                                 tiny_suite: Path) -> None:
    db, run_id, _ = run(tmp_path, tiny_suite, [BATCH])
    kinds = {r["challenge_id"] for r in finals(db, run_id)}
    assert kinds and all(r["ok"] for r in finals(db, run_id))
    with sqlite3.connect(db) as conn:
        planned = conn.execute("SELECT planned FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    assert planned == len(finals(db, run_id))



GEMINI = "gemini-2.5-flash-image@google-batch"
GEMINI_TWIN = "gemini-2.5-flash-image@google"


def test_a_gemini_batch_target_sends_inline_requests_and_records_each_answer_at_half_price(tmp_path: Path,
                                                                                            tiny_suite: Path) -> None:
    db, run_id, _ = run(tmp_path, tiny_suite, [GEMINI, GEMINI_TWIN])
    rows = finals(db, run_id, GEMINI)
    assert {r["challenge_id"] for r in rows} == {"fox", "smile", "together"}  # inpaint and multi-turn are skipped
    assert len(rows) == 4 and all(r["ok"] for r in rows)  # fox has two variants
    stored = jobs(db, run_id)
    assert len(stored) == 1 and stored[0].protocol == "gemini" and stored[0].state == "BATCH_STATE_SUCCEEDED"
    twin = {(r["challenge_id"], r["variant"]): r for r in finals(db, run_id, GEMINI_TWIN)}
    for r in rows:
        assert r["cost_usd"] == pytest.approx(twin[(r["challenge_id"], r["variant"])]["cost_usd"] / 2)


def test_an_expired_gemini_job_fails_every_request_with_nothing_to_retrieve(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"a": "a fox [sandbox-batch:expire]", "b": "an owl"})
    db, run_id, _ = run(tmp_path, suite, [GEMINI])
    rows = finals(db, run_id, GEMINI)
    assert len(rows) == 2 and all(r["error_kind"] == "timeout" and r["provider_code"] == "batch_expired"
                                  and r["cost_usd"] == 0 for r in rows)


def test_a_gemini_request_that_fails_inside_its_job_is_classified_as_the_interactive_error(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, {"a": "a fox [sandbox-fault:server_error]", "b": "an owl [sandbox-fault:refused]",
                                   "c": "a cat"})
    db, run_id, _ = run(tmp_path, suite, [GEMINI])
    by = {r["challenge_id"]: r for r in finals(db, run_id, GEMINI)}
    assert by["a"]["error_kind"] == "server_error" and by["a"]["provider_code"] == "INTERNAL"
    assert by["b"]["error_kind"] == "refused" and by["b"]["provider_code"] == "PROHIBITED_CONTENT"
    assert by["c"]["ok"] == 1


def test_a_job_id_that_carries_the_key_is_never_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile provider names its job with the caller's key: the harness keeps no trace of it, and records each
    request's failure (counted at its bound: the job may still run and be billed)."""
    from harness.batch.openai import OpenAIBatch
    from harness.targets import SANDBOX_KEY

    original = OpenAIBatch.submit

    async def hostile(self: OpenAIBatch, client: object, lines: object, name: str) -> str:
        job_id = await original(self, client, lines, name)  # type: ignore[arg-type]
        return f"{job_id}-{SANDBOX_KEY}"

    monkeypatch.setattr(OpenAIBatch, "submit", hostile)
    suite = write_suite(tmp_path, {"fox": "a fox"})
    db, run_id, _ = run(tmp_path, suite, [BATCH])
    rows = finals(db, run_id)
    assert len(rows) == 1 and rows[0]["provider_code"] == "key_in_output" and rows[0]["cost_usd"] > 0
    assert jobs(db, run_id) == []
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert SANDBOX_KEY not in dump


def test_polls_that_fail_for_a_while_are_retried_and_the_job_is_still_collected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.batch.openai import OpenAIBatch
    from harness.providers.base import ErrorKind, ProviderError

    original = OpenAIBatch.poll
    failures = [0]

    async def flaky(self: OpenAIBatch, client: object, job_id: str) -> object:
        if failures[0] < 3:
            failures[0] += 1
            raise ProviderError(ErrorKind.SERVER_ERROR, "upstream hiccup", http_status=503)
        return await original(self, client, job_id)  # type: ignore[arg-type]

    monkeypatch.setattr(OpenAIBatch, "poll", flaky)
    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl"})
    db, run_id, _ = run(tmp_path, suite, [BATCH])
    assert failures[0] == 3
    assert [r["ok"] for r in finals(db, run_id)] == [1, 1]


def test_a_poll_refused_for_good_stops_the_run_and_keeps_the_job_for_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.batch.openai import OpenAIBatch
    from harness.errors import HarnessError
    from harness.providers.base import ErrorKind, ProviderError

    async def refused(self: OpenAIBatch, client: object, job_id: str) -> object:
        raise ProviderError(ErrorKind.AUTH, "Incorrect API key provided", http_status=401)

    monkeypatch.setattr(OpenAIBatch, "poll", refused)
    suite = write_suite(tmp_path, {"fox": "a fox"})
    with pytest.raises(HarnessError, match=r"cannot be polled.*--resume"):
        run(tmp_path, suite, [BATCH])
    db = tmp_path / "results" / "harness.db"
    with sqlite3.connect(db) as conn:
        run_id, status = conn.execute("SELECT id, status FROM runs").fetchone()
    assert status == "failed" and len(jobs(db, run_id)) == 1 and finals(db, run_id) == []


def test_a_run_killed_while_its_job_runs_is_collected_by_resume_with_one_job_in_all(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """A real `harness run` killed with SIGKILL while it waits on its job, then `harness run --resume`: the job
    submitted before the kill is the run's only job (resume submits none), and every request ends with one final
    attempt. The provider (the session's sandbox as a real endpoint) outlives both processes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl"})
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"targets:\n  - name: {BATCH}\n    base_url: {sandbox.base_urls()['openai']}\n"
                       "    batch_poll_s: 30\n    api_key_env: BATCH_TEST_KEY\n", encoding="utf-8")
    db = tmp_path / "store" / "harness.db"
    env = {**os.environ, "CI": "true", "BATCH_TEST_KEY": "sk-batch-test"}
    cmd = [sys.executable, "-m", "harness", "run", "--challenges", str(suite), "--targets", str(targets),
           "--target", BATCH, "--samples", "3", "--db", str(db), "--yes"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    stored: list[batch_jobs.BatchJobRow] = []
    while not stored:
        assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    run_id = conn.execute("SELECT id FROM runs").fetchone()
                stored = jobs(db, run_id[0]) if run_id else []
            except sqlite3.OperationalError:
                stored = []
    time.sleep(0.3)  # past the first poll: the process now sleeps out its 30 s poll interval
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    run_id = stored[0].run_id
    assert finals(db, run_id) == []
    resumed = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", run_id, "--db", str(db), "--json"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    rows = finals(db, run_id)
    assert len(rows) == 6 and all(r["ok"] for r in rows)
    after = jobs(db, run_id)
    assert [j.job_id for j in after] == [stored[0].job_id] and after[0].collected
