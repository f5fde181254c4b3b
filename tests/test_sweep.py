"""A buyer sweeps one target over rising concurrency against the sandbox: each level is a stored run, the sweep
stops climbing once 429s pass the allowed share, finds the knee where throughput saturates, stays under its spend
cap, and an interrupted sweep continues without redoing finished levels."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from harness.cli.run import credentials_for
from harness.cli.stats import stats
from harness.cli.sweep import sweep
from harness.errors import ExitCode
from harness.store import Store
from harness.sweep import load_spec, run_sweep, summarize, sweep_levels
from harness.sweep.results import SweepLevel, SweepSummary

ENV = {**os.environ, "CI": "true"}
FAL = "flux-dev@fal"

SATURATING = """fal:
  latency: {median_s: 2.0, p95_s: 2.2}
  run: {median_s: 2.0, p95_s: 2.2}
  faults: {}
  model_speed: {}
  concurrency: 2
"""
"""fal runs at most two jobs per key at once and queues the rest: throughput saturates at two jobs per 2 s."""

QUEUED = "targets:\n  - name: flux-dev@fal\n    options: {status_updates: stream}\n"
"""The fal target follows its job by the status stream (no poll quantization in the latency)."""
SYNC = "targets:\n  - name: flux-dev@fal\n    options: {mode: sync}\n"
"""The fal target calls the synchronous endpoint, which answers 429 when both of the key's runners are busy."""


def files(tmp_path: Path, targets: str, profile: str = SATURATING) -> list[str]:
    (tmp_path / "targets.yaml").write_text(targets, encoding="utf-8")
    (tmp_path / "profile.yaml").write_text(profile, encoding="utf-8")
    return ["--targets", str(tmp_path / "targets.yaml"), "--sandbox-profile", str(tmp_path / "profile.yaml")]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(sweep, list(args), catch_exceptions=False, env={"CI": "true"})


def sweep_json(result: Result) -> dict[str, Any]:
    assert result.exit_code in (0, ExitCode.SPEND_CAP), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def run_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY created_at, id")]


def started_runs(db: Path) -> list[str]:
    """The runs of a store another process is creating (none while its tables do not exist yet)."""
    try:
        return run_ids(db)
    except sqlite3.OperationalError:
        return []


def attempt_rows(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY id", (run_id,))]


def one_final_per_request(db: Path, run_id: str) -> bool:
    with sqlite3.connect(db) as conn:
        finals = Counter(conn.execute("SELECT challenge_id, variant, sample FROM attempts WHERE run_id=? AND final=1",
                                      (run_id,)).fetchall())
    return set(finals.values()) == {1}


def test_sweep_stops_climbing_once_429s_pass_the_share(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    result = invoke("--target", FAL, "--concurrency", "1,2,4,8", "--requests-per-level", "16", "--sandbox",
                    "--time-scale", "0.05", "--challenges", str(tiny_suite), "--db", str(db), "--json",
                    *files(tmp_path, SYNC))
    data = sweep_json(result)
    assert data["schema_version"] == 1 and data["complete"] is True
    levels = data["levels"]
    shares = [lv["rate_limited_share"] for lv in levels]
    assert shares[-1] > 0.1, "the last level run is the one whose 429s passed --max-429-share"
    assert all(s <= 0.1 for s in shares[:-1])
    assert levels[-1]["level"] < 8, "no level above the one with too many 429s ran"
    assert [lv["level"] for lv in levels] == [1.0, 2.0, 4.0][: len(levels)]
    assert data["stop_cause"] == "rate_limited" and "--max-429-share 10%" in data["stopped"]
    knee = data["knee"]
    first_429 = next(lv for lv in levels if lv["rate_limited"] > 0)
    assert knee["cause"] in ("rate_limited", "both")
    assert knee["level"] is None or knee["level"] < first_429["level"]
    assert f"429s begin at c={first_429['level']:g}" in knee["statement"]
    assert len(run_ids(db)) == len(levels)

    limited = levels[-1]
    shown = CliRunner().invoke(stats, [limited["run_id"], "--db", str(db), "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.stdout)
    assert row["rate_limited_share"] == pytest.approx(limited["rate_limited_share"])
    assert row["n"] == limited["n"] == 16


def test_the_knee_is_where_throughput_stops_rising_on_a_saturating_target(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    result = invoke("--target", FAL, "--concurrency", "1,2,4,8", "--requests-per-level", "16", "--sandbox",
                    "--time-scale", "0.1", "--challenges", str(tiny_suite), "--db", str(db), "--json",
                    *files(tmp_path, QUEUED))
    data = sweep_json(result)
    assert SweepSummary.model_validate_json(result.stdout).model_dump(mode="json") == data, "typed and versioned"
    levels = {lv["level"]: lv for lv in data["levels"]}
    assert sorted(levels) == [1.0, 2.0, 4.0, 8.0] and data["stopped"] is None
    assert all(lv["rate_limited"] == 0 and lv["successes"] == 16 for lv in levels.values())
    knee = data["knee"]
    assert knee["cause"] == "saturated", knee
    # Two runners serve the key: throughput saturates at 2 in flight, or at 4, where the queue also hides the
    # client's own turnaround between jobs; never still rising at 8.
    assert knee["level"] in (2.0, 4.0), knee
    top = levels[8.0]["throughput_per_s"]
    assert top < (1 + data["min_gain"]) * levels[knee["level"]]["throughput_per_s"]
    assert levels[2.0]["throughput_per_s"] > 1.5 * levels[1.0]["throughput_per_s"]
    assert levels[8.0]["p50_ms"] > 1.5 * levels[2.0]["p50_ms"], "beyond the knee more in flight only queues"
    assert "throughput stops rising" in knee["statement"]
    for lv in levels.values():
        assert lv["throughput_ci_low"] < lv["throughput_per_s"] < lv["throughput_ci_high"]

    with Store.open(db, readonly=True) as store:
        drawn = sweep_levels(store, data["sweep_id"])
    assert [d.run_id for d in drawn] == [levels[k]["run_id"] for k in sorted(levels)]
    assert all(isinstance(d, SweepLevel) and d.schema_version == 1 for d in drawn)

    shown = invoke("--show", data["sweep_id"], "--db", str(db))
    assert shown.exit_code == 0 and knee["statement"] in shown.stdout and "c=8" in shown.stdout


def test_the_spend_cap_holds_across_the_whole_sweep(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    result = invoke("--target", FAL, "--concurrency", "1,2,4", "--requests-per-level", "8", "--max-spend", "0.3",
                    "--sandbox", "--time-scale", "0.02", "--challenges", str(tiny_suite), "--db", str(db), "--json",
                    *files(tmp_path, QUEUED))
    assert result.exit_code == ExitCode.SPEND_CAP, result.output
    data = sweep_json(result)
    assert data["stop_cause"] == "spend_cap" and data["spent_usd"] <= 0.3
    assert data["levels"][0]["not_sent"] == 0 and data["levels"][-1]["not_sent"] > 0
    with sqlite3.connect(db) as conn:
        caps = [json.loads(r[0])["max_spend_usd"] for r in conn.execute("SELECT config_json FROM runs ORDER BY id")]
    assert caps[0] == 0.3 and caps[1] == pytest.approx(0.3 - data["levels"][0]["cost_usd"])


def test_a_sweep_stopped_between_levels_continues_at_the_next_one(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    first = invoke("--target", FAL, "--concurrency", "1", "--requests-per-level", "4", "--sandbox", "--time-scale",
                   "0.02", "--challenges", str(tiny_suite), "--db", str(db), "--json", *files(tmp_path, QUEUED))
    spec = load_spec(db, sweep_json(first)["sweep_id"])
    # The same sweep, told to stop (Ctrl-C) as soon as its first level is done.
    wider = type(spec)(sweep_id="wide", mode=spec.mode, levels=(1.0, 2.0, 4.0), requests=4)

    def interrupt(level: SweepLevel) -> None:
        raise KeyboardInterrupt

    from harness.sweep.execute import SweepPlan, stored_plan

    with Store.open(db) as store:
        plan: SweepPlan = stored_plan(store, spec)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(db, wider, plan, credentials_for, on_level=interrupt)
    level_one = attempt_rows(db, "wide-c1")
    assert len(level_one) == 4 and "wide-c2" not in run_ids(db)
    summary = run_sweep(db, wider, None, credentials_for)
    assert [lv.run_id for lv in summary.levels] == ["wide-c1", "wide-c2", "wide-c4"] and summary.complete
    assert attempt_rows(db, "wide-c1") == level_one, "the finished level was not run again"
    before = {r: attempt_rows(db, r) for r in run_ids(db)}
    again = run_sweep(db, wider, None, credentials_for)
    assert again.complete and {r: attempt_rows(db, r) for r in run_ids(db)} == before, "a done sweep sends nothing"


def wait_for_attempts(db: Path, proc: subprocess.Popen[str], run_id: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the sweep ended before the test could act: {proc.communicate()}"
        assert time.monotonic() < deadline, "the sweep never reached the level"
        time.sleep(0.02)
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute("SELECT COUNT(*) FROM attempts WHERE run_id=?", (run_id,)).fetchone()[0] >= count:
                    return
        except sqlite3.OperationalError:
            pass


def test_an_interrupted_sweep_resumes_its_level_and_never_redoes_a_finished_one(
        tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", "--target", FAL, "--concurrency", "1,2,4", "--requests-per-level",
         "12", "--sandbox", "--time-scale", "0.1", "--challenges", str(tiny_suite), "--db", str(db),
         *files(tmp_path, QUEUED)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not (db.exists() and started_runs(db)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        sweep_id = run_ids(db)[0].removesuffix("-c1")
        wait_for_attempts(db, proc, f"{sweep_id}-c2", 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert f"harness sweep --resume {sweep_id}" in stderr and "Traceback" not in stderr
    level_one = attempt_rows(db, f"{sweep_id}-c1")
    level_two = attempt_rows(db, f"{sweep_id}-c2")
    assert len(level_one) == 12 and 2 <= len(level_two) < 12
    with Store.open(db, readonly=True) as store:
        partial = summarize(db, load_spec(db, sweep_id))
        assert not partial.complete and [lv.status for lv in partial.levels] == ["finished", "interrupted"]
        assert len(sweep_levels(store, sweep_id)) == 2

    resumed = subprocess.run([sys.executable, "-m", "harness", "sweep", "--resume", sweep_id, "--db", str(db),
                              "--json"], capture_output=True, text=True, env=ENV, timeout=120)
    data = sweep_json_text(resumed)
    assert [lv["run_id"] for lv in data["levels"]] == [f"{sweep_id}-c1", f"{sweep_id}-c2", f"{sweep_id}-c4"]
    assert data["complete"] and all(lv["status"] == "finished" for lv in data["levels"])
    assert attempt_rows(db, f"{sweep_id}-c1") == level_one, "the finished level was not run again"
    assert attempt_rows(db, f"{sweep_id}-c2")[: len(level_two)] == level_two, "what level 2 recorded is kept"
    assert all(one_final_per_request(db, lv["run_id"]) for lv in data["levels"])
    assert sorted(run_ids(db)) == sorted(lv["run_id"] for lv in data["levels"])


def sweep_json_text(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", ""], "--concurrency: no levels given"),
    (["--concurrency", " , "], "--concurrency: no levels given"),
    (["--concurrency", "1,,2"], "--concurrency: empty level"),
    (["--rpm", ""], "--rpm: no levels given"),
    ([], "no levels: give them with --concurrency"),
    (["--concurrency", "1,4,2"], "--concurrency: levels must increase, but 2 follows 4"),
    (["--concurrency", "2,2"], "--concurrency: levels must increase, but 2 follows 2"),
    (["--concurrency", "0,1"], "--concurrency: level 0 must be positive"),
    (["--rpm", "-30,60"], "--rpm: level -30 must be positive"),
    (["--concurrency", "1.5,3"], "--concurrency: level 1.5 must be a whole number"),
    (["--concurrency", "1,x"], "--concurrency: 'x' is not a number"),
    (["--concurrency", "1,2", "--rpm", "30"], "not both"),
    (["--concurrency", "1,64"], "--concurrency level 64 exceeds --requests-per-level 20"),
    (["--concurrency", ",".join(str(i) for i in range(1, 15)), "--requests-per-level", "20"], "at most 12"),
])
def test_bad_levels_are_refused_naming_the_option_and_nothing_is_sent(
        tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "harness.db"
    result = invoke("--target", FAL, "--sandbox", "--db", str(db), *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr, result.stderr
    assert not db.exists() or run_ids(db) == []


def test_an_unknown_target_or_sweep_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    unknown = invoke("--target", "flux-dv@fal", "--concurrency", "1,2", "--sandbox", "--db", str(db))
    assert unknown.exit_code == ExitCode.USAGE and "--target: unknown target 'flux-dv@fal'" in unknown.stderr
    assert "Did you mean flux-dev@fal" in unknown.stderr
    several = invoke("--target", "*@fal", "--concurrency", "1,2", "--sandbox", "--db", str(db))
    assert several.exit_code == ExitCode.USAGE and "a sweep measures one" in several.stderr
    missing = invoke("--concurrency", "1,2", "--sandbox", "--db", str(db))
    assert missing.exit_code == ExitCode.USAGE and "--target" in missing.stderr
    with Store.open(db):
        pass
    nothing = invoke("--resume", "no-such-sweep", "--db", str(db))
    assert nothing.exit_code == ExitCode.USAGE and "no sweep 'no-such-sweep'" in nothing.stderr


RATE_LIMITED = "openai:\n  latency: {median_s: 2.0, p95_s: 2.4}\n  faults: {}\n  rpm: 6\n"
"""The OpenAI sandbox admits 6 requests per minute per key (a one-request bucket): faster rates get 429s."""


def test_a_rate_sweep_climbs_until_the_providers_limit_answers_429(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "harness.db"
    result = invoke("--target", "gpt-image-1@openai", "--rpm", "3,12,48", "--requests-per-level", "6", "--sandbox",
                    "--time-scale", "0.01", "--challenges", str(tiny_suite), "--db", str(db), "--json",
                    "--sandbox-profile", str(_profile(tmp_path, RATE_LIMITED)))
    data = sweep_json(result)
    assert data["mode"] == "rpm" and [lv["level"] for lv in data["levels"]] == [3.0, 12.0]
    slow, fast = data["levels"]
    assert slow["rate_limited"] == 0 and fast["rate_limited_share"] > 0.1
    assert data["knee"]["level"] == 3.0 and data["stop_cause"] == "rate_limited"
    with sqlite3.connect(db) as conn:
        configs = [json.loads(r[0]) for r in conn.execute("SELECT config_json FROM runs ORDER BY id")]
    assert sorted(c["rpm"] for c in configs) == [3.0, 12.0]
    assert all(c["respect_limits"] is False and c["retries"] == 0 for c in configs)


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rate-profile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_target_that_rejects_the_key_stops_the_sweep_at_its_first_level(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("challenges:\n  - id: locked\n    title: Locked\n    category: illustration\n"
                     "    kind: text-to-image\n    prompt: 'A fox [sandbox-fault:auth]'\n", encoding="utf-8")
    db = tmp_path / "harness.db"
    result = invoke("--target", FAL, "--concurrency", "1,2", "--requests-per-level", "8", "--sandbox",
                    "--time-scale", "0.02", "--challenges", str(suite), "--db", str(db), "--json",
                    *files(tmp_path, QUEUED))
    assert result.exit_code == ExitCode.DEAD_TARGET, result.output
    data = json.loads(result.stdout)
    (only,) = data["levels"]
    assert only["not_sent"] == 3 and only["n"] == 5 and only["successes"] == 0
    assert data["stop_cause"] == "dead_target" and "HTTP 401" in data["stopped"]
    assert run_ids(db) == [only["run_id"]]


def test_a_sweep_attached_to_a_run_is_named_after_it_and_shown_with_it(tmp_path: Path, tiny_suite: Path) -> None:
    from harness.cli import cli
    from harness.report.sections import sweep_sections
    from harness.store import runs as run_store

    db = tmp_path / "harness.db"
    started = CliRunner().invoke(cli, ["run", "--sandbox", "--time-scale", "0.01", "--target", FAL, "--no-faults",
                                       "--challenges", str(tiny_suite), "--db", str(db)], env={"CI": "true"})
    assert started.exit_code == 0, started.output
    data = sweep_json(invoke("--target", FAL, "--concurrency", "1,2", "--requests-per-level", "2", "--sandbox",
                             "--time-scale", "0.01", "--no-faults", "--challenges", str(tiny_suite), "--attach",
                             "latest", "--db", str(db), "--json"))
    with Store.open(db, readonly=True) as store:
        runs = run_store.list_runs(store)
        (run,) = [r for r in runs if not str(r.label or "").startswith("sweep:")]
        shown = sweep_sections(store, [run])
        alone = sweep_sections(store, [])
    assert data["sweep_id"] == f"{run.id}.sweep"
    assert [s.sweep_id for s in shown] == [data["sweep_id"]] and [lv.level for lv in shown[0].levels] == [1.0, 2.0]
    assert alone == []
    unknown = CliRunner().invoke(sweep, ["--target", FAL, "--concurrency", "1", "--sandbox", "--attach", "nope",
                                         "--db", str(db)], env={"CI": "true"})
    assert unknown.exit_code == 2 and "nope" in unknown.output
