"""``harness run`` under a spend cap, against the sandbox: the cap is never passed, what it stops is recorded as
not sent, the run exits 6, a resume counts what was already spent, and --dry-run sends nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records import NOT_SENT
from harness.spend import SPEND_CAP_REASON

TARGET = "gemini-2.5-flash-image@fal"  # $0.039 per image, every challenge kind: 5 requests a sample
PRICE = 0.039


def harness(tmp_path: Path, suite: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    env.pop("FAL_KEY", None)
    return subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(suite), "--target", TARGET,
                           "--db", str(tmp_path / "r" / "harness.db"), *args],
                          capture_output=True, text=True, env=env, timeout=180, input=stdin)


def attempts(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()


@pytest.mark.parametrize("faults", ["--no-faults", "--faults"])
def test_a_cap_that_stops_mid_run_is_never_passed_and_the_rest_is_not_sent(tmp_path: Path, tiny_suite: Path,
                                                                           faults: str) -> None:
    proc = harness(tmp_path, tiny_suite, "--sandbox", "--time-scale", "0.01", "--samples", "4", "--concurrency",
                   "3", "--retries", "1", faults, "--max-spend", "0.30", "--json")
    assert proc.returncode == 6, proc.stderr
    rows = attempts(tmp_path / "r" / "harness.db")
    spent = sum(r["cost_usd"] for r in rows)
    assert 0 < spent <= 0.30
    finals = [r for r in rows if r["final"]]
    assert len({(r["challenge_id"], r["variant"], r["sample"]) for r in finals}) == 20  # every request final
    unsent = [r for r in finals if r["error_kind"] == NOT_SENT]
    assert unsent and all(r["http_calls"] == 0 and r["ok"] == 0 and r["cost_usd"] == 0 for r in unsent)
    assert all(r["error_message"].startswith(SPEND_CAP_REASON) for r in unsent)
    if faults == "--no-faults":
        assert sum(r["ok"] for r in finals) == 7  # 7 x $0.039 = $0.273; an 8th could reach $0.312
    out = json.loads(proc.stdout)
    assert out["spend"]["total_usd"] == pytest.approx(spent)
    assert out["not_sent"] == len(unsent) and list(out["stopped_targets"]) == [TARGET]
    assert "Spend (computed by the harness" in proc.stderr and "of $0.3 cap" in proc.stderr
    assert "spend cap stopped" in proc.stderr and "Traceback" not in proc.stderr


def test_a_resume_counts_what_the_run_already_spent(tmp_path: Path, tiny_suite: Path) -> None:
    from harness.run import resume_run
    from harness.targets import resolve_keys

    proc = harness(tmp_path, tiny_suite, "--sandbox", "--time-scale", "0.01", "--samples", "4", "--no-faults",
                   "--max-spend", "0.30")
    assert proc.returncode == 6, proc.stderr
    db = tmp_path / "r" / "harness.db"
    before = attempts(db)
    sent_before = [r for r in before if r["error_kind"] != NOT_SENT]
    with sqlite3.connect(db) as conn:  # as if the process died before recording what the cap stopped
        conn.execute("DELETE FROM attempts WHERE error_kind=?", (NOT_SENT,))
        conn.execute("UPDATE runs SET status='running'")
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    result = resume_run(db, run_id, lambda targets, sandbox: resolve_keys(targets, sandbox=sandbox))
    after = attempts(db)
    assert [dict(r) for r in after if r["error_kind"] != NOT_SENT] == [dict(r) for r in sent_before]  # none sent
    assert result.spend_capped and result.not_sent == 20 - len(sent_before)
    assert result.spend is not None and result.spend.total_usd == pytest.approx(sum(r["cost_usd"] for r in after))
    assert sum(r["cost_usd"] for r in after) <= 0.30


def test_a_cap_below_one_request_is_refused_naming_the_option(tmp_path: Path, tiny_suite: Path) -> None:
    proc = harness(tmp_path, tiny_suite, "--sandbox", "--max-spend", "0.01")
    assert proc.returncode == 2, proc.stderr
    assert "--max-spend $0.01 is below one request's bound for gemini-2.5-flash-image@fal ($0.0390)" in proc.stderr
    assert "Nothing was sent" in proc.stderr
    assert not (tmp_path / "r" / "harness.db").exists() or not attempts(tmp_path / "r" / "harness.db")


def test_a_token_priced_target_without_an_output_cap_is_refused_by_name(tmp_path: Path, tiny_suite: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  - name: gemini-2.5-flash-image@google\n    output_tokens_per_image: {}\n"
                       "    max_output_tokens: null\n",
                       encoding="utf-8")
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--targets",
                           str(targets), "--target", "gemini-2.5-flash-image@google", "--sandbox", "--max-spend",
                           "5", "--db", str(tmp_path / "r" / "harness.db")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "gemini-2.5-flash-image@google" in proc.stderr and "max_output_tokens" in proc.stderr


def test_dry_run_prints_the_estimate_and_sends_nothing(tmp_path: Path, tiny_suite: Path) -> None:
    proc = harness(tmp_path, tiny_suite, "--samples", "2", "--retries", "2", "--dry-run")  # no key needed
    assert proc.returncode == 0, proc.stderr
    assert "Dry run: nothing is sent." in proc.stderr
    assert TARGET in proc.stderr and "      10 " in proc.stderr  # 5 challenges-variants x 2 samples
    assert "$0.3900" in proc.stderr and "Assumptions:" in proc.stderr and "retried up to 2" in proc.stderr
    assert not (tmp_path / "r" / "harness.db").exists()


def test_an_uncapped_real_run_prints_the_estimate_and_non_interactive_use_goes_on(tmp_path: Path,
                                                                                   tiny_suite: Path) -> None:
    """Without a terminal there is no question; with no key the run then stops at the key check."""
    proc = harness(tmp_path, tiny_suite, stdin="")
    assert proc.returncode == 2
    assert "missing API key" in proc.stderr


def test_runs_shows_each_runs_spend(tmp_path: Path, tiny_suite: Path) -> None:
    proc = harness(tmp_path, tiny_suite, "--sandbox", "--time-scale", "0.01", "--no-faults")
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "r" / "harness.db"
    listed = subprocess.run([sys.executable, "-m", "harness", "runs", "--db", str(db), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["spend_usd"] == pytest.approx(5 * PRICE)


def gateway_targets(tmp_path: Path, sandbox_root: str) -> Path:
    """A real (not --sandbox) target: a gateway on 127.0.0.1 that happens to be the sandbox's OpenAI server."""
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"""targets:
  - name: local-gateway
    model: gpt-image-1
    provider: mygateway
    protocol: openai-images
    base_url: {sandbox_root}/openai/v1
    api_key_env: GATEWAY_KEY
    price_per_image_usd: 0.04
""", encoding="utf-8")
    return targets


def test_an_uncapped_real_run_prints_its_estimate_and_goes_on_without_a_terminal(
        tmp_path: Path, tiny_suite: Path, sandbox: object) -> None:
    targets = gateway_targets(tmp_path, sandbox.root)  # type: ignore[attr-defined]
    env = {**os.environ, "CI": "true", "GATEWAY_KEY": "k-test"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--targets",
                           str(targets), "--target", "local-gateway", "--db", str(tmp_path / "r" / "h.db")],
                          capture_output=True, text=True, env=env, timeout=180, input="")
    assert proc.returncode == 0, proc.stderr
    assert "Estimate (no --max-spend):" in proc.stderr and "local-gateway" in proc.stderr
    assert "Send " not in proc.stderr  # no question without a terminal
    assert "total: $0.2000" in proc.stderr  # 5 requests x $0.04, every run ends with its spend


@pytest.mark.parametrize(("answer", "assume_yes", "sent"), [("n\n", False, False), ("y\n", False, True),
                                                            ("", True, True)])
def test_on_a_terminal_an_uncapped_real_run_asks_first(tmp_path: Path, tiny_suite: Path, sandbox: object,
                                                       monkeypatch: pytest.MonkeyPatch, answer: str,
                                                       assume_yes: bool, sent: bool) -> None:
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.cli import run as run_cli

    monkeypatch.setattr(run_cli, "_interactive", lambda: True)
    monkeypatch.setenv("GATEWAY_KEY", "k-test")
    targets = gateway_targets(tmp_path, sandbox.root)  # type: ignore[attr-defined]
    db = tmp_path / "r" / "h.db"
    args = ["run", "--challenges", str(tiny_suite), "--targets", str(targets), "--target", "local-gateway",
            "--db", str(db), *(["--yes"] if assume_yes else [])]
    result = CliRunner().invoke(cli, args, input=answer)
    if sent:
        assert result.exit_code == 0, result.output
        assert len(attempts(db)) >= 5
    else:
        assert result.exit_code == 2
        assert "not confirmed: nothing was sent" in result.output
        assert not db.exists() or not attempts(db)
    assert ("Send 5 requests to real providers (at most $0.20)?" in result.output) == (not assume_yes)


def test_a_per_target_cap_holds_for_each_target(tmp_path: Path, tiny_suite: Path) -> None:
    proc = harness(tmp_path, tiny_suite, "--target", "flux-dev@replicate", "--sandbox", "--time-scale", "0.01",
                   "--samples", "3", "--concurrency", "4", "--max-spend-per-target", "0.10", "--json")
    assert proc.returncode == 6, proc.stderr
    rows = attempts(tmp_path / "r" / "harness.db")
    for name in (TARGET, "flux-dev@replicate"):
        spent = sum(r["cost_usd"] for r in rows if r["target"] == name)
        assert 0 < spent <= 0.10, (name, spent)
        assert any(r["error_kind"] == NOT_SENT for r in rows if r["target"] == name)
    assert set(json.loads(proc.stdout)["stopped_targets"]) == {TARGET, "flux-dev@replicate"}
