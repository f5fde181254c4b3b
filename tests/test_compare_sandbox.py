"""`harness compare` on real sandbox runs: the same setup passes, doubled latency or lower success fails."""

from __future__ import annotations

import json
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.run import RunOptions, start_run
from harness.targets import load_targets, resolve_keys, select

TARGETS = ["gpt-image-1@openai", "gpt-image-1.5@openai"]
STEADY = "openai: {faults: {}, latency: {median_s: 2.0, p95_s: 4.0}}\n"
FLAKY = "openai: {faults: {server_error: 0.5}, latency: {median_s: 2.0, p95_s: 4.0}}\n"
TIME_SCALE = 0.05
"""Simulated 2 s median becomes 100 ms: well above the ~20–40 ms of CPU work per request (render, base64,
decode) on a shared two-core machine, so doubling the time scale visibly doubles most of the latency."""


def write_suite(folder: Path) -> Path:
    """Three text-to-image challenges, one with a terse variant: four prompts per target and sample.

    A fixed seed lets the sandbox render each image once and serve it from its cache afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text("""challenges:
  - id: fox
    title: Fox
    category: illustration
    kind: text-to-image
    params: {seed: 7}
    prompt: "A watercolor fox reading a newspaper"
    variants: {terse: "fox, newspaper"}
  - id: owl
    title: Owl
    category: photorealism
    kind: text-to-image
    params: {seed: 7}
    prompt: "An owl on a lamp post at dusk, photographed"
  - id: kettle
    title: Kettle
    category: product
    kind: text-to-image
    params: {seed: 7}
    prompt: "A copper kettle on a white background"
""", encoding="utf-8")
    return folder


def sandbox_run(db: Path, suite: Path, profile: Path, *, seed: int, time_scale: float = TIME_SCALE,
                samples: int = 10, retries: int = 0) -> str:
    """A real sandbox run (both openai targets, two requests in flight each, no pacing) and its id."""
    chosen = select(load_targets(), TARGETS)
    options = RunOptions(sandbox=True, time_scale=time_scale, sandbox_profile=str(profile), samples=samples,
                         concurrency=2, respect_limits=False, seed=seed, retries=retries)
    return start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options).run_id


@pytest.fixture(scope="session")
def sandbox_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Five runs in one store: a baseline, two repeats with other seeds, one at doubled latency
    (``--time-scale`` doubled), and one whose profile fails half the requests."""
    root = tmp_path_factory.mktemp("compare")
    suite = write_suite(root / "suite")
    steady, flaky = root / "steady.yaml", root / "flaky.yaml"
    steady.write_text(STEADY, encoding="utf-8")
    flaky.write_text(FLAKY, encoding="utf-8")
    db = root / "results" / "harness.db"
    yield {
        "db": db, "root": root,
        "base": sandbox_run(db, suite, steady, seed=1),
        "same": sandbox_run(db, suite, steady, seed=2),
        "again": sandbox_run(db, suite, steady, seed=5),
        "slow": sandbox_run(db, suite, steady, seed=3, time_scale=2 * TIME_SCALE),
        "flaky": sandbox_run(db, suite, flaky, seed=4),
        "timeout_ms": 300.0 * TIME_SCALE * 1000.0,
    }


def compare(runs: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["compare", *args, "--json", "--db", str(runs["db"])])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)


def verdicts(doc: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["pair"], c["check"]): c["status"] for c in doc["checks"]}


@pytest.mark.parametrize(("base", "cand"), [("base", "same"), ("base", "again"), ("same", "again")])
def test_two_runs_of_one_sandbox_setup_pass_the_gate(sandbox_runs: dict[str, Any], base: str, cand: str) -> None:
    code, doc = compare(sandbox_runs, sandbox_runs[base], sandbox_runs[cand])
    assert code == 0 and doc["regressed"] is False
    assert {pair for pair, _ in verdicts(doc)} == set(TARGETS)
    assert all(status in ("ok", "skipped", "improved") for status in verdicts(doc).values())


def test_a_run_with_doubled_sandbox_latency_fails_on_median_latency(sandbox_runs: dict[str, Any]) -> None:
    code, doc = compare(sandbox_runs, sandbox_runs["base"], sandbox_runs["slow"])
    assert code == 1 and doc["regressed"] is True
    v = verdicts(doc)
    for target in TARGETS:
        assert v[(target, "latency_p50")] == "regression"
        assert v[(target, "success_rate")] == "ok"
        assert v[(target, "latency_p95")] == "skipped", "40 requests cannot bound a p95; the gate says so"
    p50 = [c for c in doc["checks"] if c["check"] == "latency_p50"]
    assert all(c["change"] > 0.15 and c["bound"] > 0 for c in p50)


def test_a_run_whose_profile_lowered_success_fails_on_success_rate(sandbox_runs: dict[str, Any]) -> None:
    code, doc = compare(sandbox_runs, sandbox_runs["base"], sandbox_runs["flaky"])
    assert code == 1
    v = verdicts(doc)
    assert all(v[(t, "success_rate")] == "regression" for t in TARGETS)
    success = [c for c in doc["checks"] if c["check"] == "success_rate"]
    assert all(c["baseline"] == 1.0 and c["candidate"] < 0.85 and c["bound"] < 0 for c in success)


def test_compare_writes_markdown_and_junit_for_ci(sandbox_runs: dict[str, Any], tmp_path: Path) -> None:
    junit, summary = tmp_path / "ci" / "compare.xml", tmp_path / "ci" / "summary.md"
    result = CliRunner().invoke(cli, ["compare", sandbox_runs["base"], sandbox_runs["slow"], "--junit", str(junit),
                                      "--markdown", str(summary), "--db", str(sandbox_runs["db"])])
    assert result.exit_code == 1
    assert result.output.startswith("## harness compare: REGRESSION")
    assert summary.read_text(encoding="utf-8") == result.output
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert root.get("tests") == str(len(cases)) == "6"
    assert root.get("failures") == str(len(failures)) == "2"
    assert {c.get("name") for c in failures} == {"latency_p50"}
    assert root.get("skipped") == str(len(skipped)) == "2"


def test_one_run_split_by_variant_or_by_target(sandbox_runs: dict[str, Any]) -> None:
    code, doc = compare(sandbox_runs, sandbox_runs["base"], "--a", "variant=default", "--b", "variant=terse")
    assert code == 0
    assert {c["n_a"] for c in doc["checks"] if c["check"] == "success_rate"} == {30}
    assert {c["n_b"] for c in doc["checks"] if c["check"] == "success_rate"} == {10}
    code, doc = compare(sandbox_runs, sandbox_runs["base"], "--a", f"target={TARGETS[0]}",
                        "--b", f"target={TARGETS[1]}")
    assert {c["pair"] for c in doc["checks"]} == {f"{TARGETS[0]} → {TARGETS[1]}"}
    code, doc = compare(sandbox_runs, "--a", f"run={sandbox_runs['base']},target={TARGETS[0]}",
                        "--b", f"run={sandbox_runs['slow']},target={TARGETS[0]}")
    assert code == 1 and {c["pair"] for c in doc["checks"]} == {TARGETS[0]}


@pytest.mark.parametrize(("args", "message"), [
    (["only-one-run"], "no run 'only-one-run'"),
    (["{base}"], "both sides are all of run"),
    (["{base}", "--a", "target=nope"], "--a 'target=nope' matched no attempts"),
    (["{base}", "--a", "colour=red", "--b", "variant=terse"], "unknown key 'colour'"),
    (["{base}", "{same}", "{slow}"], "at most two runs"),
    (["{base}", "{same}", "--gate", "{root}/missing.yaml"], "gate file"),
])
def test_usage_errors_exit_2_with_a_clear_message(sandbox_runs: dict[str, Any], args: list[str],
                                                  message: str) -> None:
    argv = [a.format(**{k: v for k, v in sandbox_runs.items() if isinstance(v, (str, Path))}) for a in args]
    result = CliRunner().invoke(cli, ["compare", *argv, "--db", str(sandbox_runs["db"])])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_gate_file_can_loosen_a_threshold_until_the_slow_run_passes(sandbox_runs: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    gate = tmp_path / "gate.yaml"
    gate.write_text("checks:\n  latency_p50: {max_increase: 3.0}\n", encoding="utf-8")
    code, doc = compare(sandbox_runs, sandbox_runs["base"], sandbox_runs["slow"], "--gate", str(gate))
    assert code == 0
    assert {c["threshold"] for c in doc["checks"] if c["check"] == "latency_p50"} == {3.0}


def test_runs_of_different_clock_versions_are_refused_unless_allowed(sandbox_runs: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    """A baseline measured before the latency definition changed (clock v1: decoding on the clock) would make
    every candidate look faster: compare refuses the pair and says why, or notes it when told to go on."""
    db = tmp_path / "harness.db"
    shutil.copy(sandbox_runs["db"], db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET clock_version = 1 WHERE id = ?", (sandbox_runs["base"],))
    args = ["compare", sandbox_runs["base"], sandbox_runs["same"], "--db", str(db)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert "clock v1" in refused.output and "clock v2" in refused.output
    assert "--allow-clock-mismatch" in refused.output
    allowed = CliRunner().invoke(cli, [*args, "--allow-clock-mismatch", "--json"])
    assert allowed.exit_code in (0, 1), allowed.output
    notes = json.loads(allowed.output)["notes"]
    assert notes and notes[0].startswith("clock versions differ")
    same_version = CliRunner().invoke(cli, ["compare", sandbox_runs["same"], sandbox_runs["again"], "--db", str(db)])
    assert same_version.exit_code == 0, same_version.output


def test_goodput_within_an_objective_passes_on_a_repeat_and_fails_at_doubled_latency(
        sandbox_runs: dict[str, Any], tmp_path: Path) -> None:
    """150 ms of scaled time sits between the steady profile's median (100 ms) and the doubled one's (200 ms):
    most steady requests make it, most slow ones do not."""
    code, doc = compare(sandbox_runs, sandbox_runs["base"], sandbox_runs["same"], "--slo", "150ms")
    assert code == 0 and doc["slo_ms"] == 150.0 and doc["slo_measure"] == "time_to_image"
    assert {v for (_, check), v in verdicts(doc).items() if check == "goodput"} <= {"ok", "improved"}
    assert {pair for pair, check in verdicts(doc) if check == "goodput"} == set(TARGETS)
    code, doc = compare(sandbox_runs, sandbox_runs["base"], sandbox_runs["slow"], "--slo", "150ms")
    assert code == 1
    goodput = [c for c in doc["checks"] if c["check"] == "goodput"]
    assert {c["status"] for c in goodput} == {"regression"}
    assert all(c["candidate"] < c["baseline"] and c["bound"] < 0 and c["unit"] == "rate" for c in goodput)
    gate = tmp_path / "gate.yaml"
    gate.write_text("slo: 150ms\nchecks:\n  latency_p50: null\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["compare", sandbox_runs["base"], sandbox_runs["slow"], "--gate", str(gate),
                                      "--db", str(sandbox_runs["db"])])
    assert result.exit_code == 1, "the gate file's objective alone catches the slower run"
    assert "within 150 ms of time to image" in result.output and "goodput | " in result.output
    bad = CliRunner().invoke(cli, ["compare", sandbox_runs["base"], sandbox_runs["same"], "--slo", "150",
                                   "--db", str(sandbox_runs["db"])])
    assert bad.exit_code == 2 and "--slo" in bad.output
