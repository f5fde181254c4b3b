"""`harness trend SERIES`: a series of sandbox runs, one made slower by its profile, is flagged on that run
alone; runs measured otherwise are shown apart and never compared; an unknown series names the known ones."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.run import RunOptions, start_run
from harness.targets import load_targets, resolve_keys, select
from tests.test_compare_sandbox import write_suite

TARGET = "gpt-image-1@openai"
STEADY = "openai: {faults: {}, latency: {median_s: 2.0, p95_s: 4.0}}\n"
SLOWER = "openai: {faults: {}, latency: {median_s: 4.0, p95_s: 8.0}}\n"
TIME_SCALE = 0.05
"""As in the compare tests: a simulated 2 s median becomes 100 ms, well above this machine's own work."""


def series_run(db: Path, suite: Path, profile: Path, *, seed: int, series: str = "nightly",
               time_scale: float = TIME_SCALE) -> str:
    chosen = select(load_targets(), [TARGET])
    options = RunOptions(sandbox=True, time_scale=time_scale, sandbox_profile=str(profile), samples=10,
                         concurrency=2, respect_limits=False, seed=seed, series=series)
    return start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options).run_id


def build_series(root: Path) -> dict[str, Any]:
    """Series ``nightly``: three steady runs, one whose profile doubles the latency, one steady again, and one
    at another time scale (another measurement); series ``weekly``: one run. Built once per test process by
    the session fixture ``series`` (tests/conftest.py): the report's tests read the same runs."""
    suite = write_suite(root / "suite")
    steady, slower = root / "steady.yaml", root / "slower.yaml"
    steady.write_text(STEADY, encoding="utf-8")
    slower.write_text(SLOWER, encoding="utf-8")
    db = root / "harness.db"
    runs = [series_run(db, suite, steady, seed=s) for s in (1, 2, 3)]
    runs.append(series_run(db, suite, slower, seed=4))
    runs.append(series_run(db, suite, steady, seed=5))
    other_scale = series_run(db, suite, steady, seed=6, time_scale=2 * TIME_SCALE)
    series_run(db, suite, steady, seed=7, series="weekly")
    return {"db": db, "runs": runs, "slow": runs[3], "other_scale": other_scale}


def trend(data: dict[str, Any], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["trend", *args, "--db", str(data["db"])])
    return result.exit_code, result.output


def test_the_run_made_slower_is_flagged_and_the_equal_runs_are_not(series: dict[str, Any]) -> None:
    code, out = trend(series, "nightly", "--json", "--history", "3")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["series"] == "nightly"
    points = {p["run_id"]: p for p in doc["points"] if p["target"] == TARGET}
    slow = points[series["slow"]]
    assert slow["flagged"] and slow["verdict"] == "regression"
    p50 = next(c for c in slow["checks"] if c["check"] == "latency_p50")
    assert p50["status"] == "regression" and p50["change_low"] > 0 and p50["p_value"] < 0.05
    steady = [points[r] for r in series["runs"] if r != series["slow"]]
    assert steady[0]["verdict"] == "no history" and steady[0]["history_runs"] == []
    assert all(not p["flagged"] for p in steady), [(p["run_id"], p["verdict"]) for p in steady]
    assert all(p["verdict"] in ("ok", "skipped") for p in steady[1:])
    assert points[series["runs"][4]]["history_runs"] == series["runs"][1:4], "the last three finished runs"


def test_every_point_has_its_figures_with_intervals(series: dict[str, Any]) -> None:
    doc = json.loads(trend(series, "nightly", "--json")[1])
    for p in doc["points"]:
        assert p["n"] == 40 and p["success_rate"] == 1.0
        assert p["p50_ci_low_ms"] <= p["p50_ms"] <= p["p50_ci_high_ms"]
        assert p["success_ci_low"] <= p["success_rate"] <= p["success_ci_high"]
        assert p["cost_per_image_ci_low_usd"] <= p["cost_per_image_usd"] <= p["cost_per_image_ci_high_usd"]
        assert p["p95_ms"] is None and "p95_ms" in p["withheld"], "40 requests cannot bound a p95"
    slow = next(p for p in doc["points"] if p["run_id"] == series["slow"])
    first = next(p for p in doc["points"] if p["run_id"] == series["runs"][0])
    assert slow["p50_ci_low_ms"] > first["p50_ci_high_ms"], "the slower profile shows in the figures too"


def test_a_run_measured_at_another_time_scale_is_shown_apart_and_never_compared(series: dict[str, Any]) -> None:
    doc = json.loads(trend(series, "nightly", "--json")[1])
    assert len(doc["measurements"]) == 2
    other = next(p for p in doc["points"] if p["run_id"] == series["other_scale"])
    assert other["measurement"] != doc["points"][0]["measurement"]
    assert other["verdict"] == "no history" and other["history_runs"] == [] and not other["flagged"]
    code, table = trend(series, "nightly")
    assert code == 0, table
    assert table.count("series nightly — clock") == 2, "one table per measurement"
    assert "FLAG: worse (latency_p50)" in table and series["slow"] in table


def test_the_newest_run_fails_the_check_only_when_it_is_the_flagged_one(series: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    code, out = trend(series, "nightly", "--fail-on-flag")
    assert code == 0, out
    db = tmp_path / "harness.db"
    shutil.copy(series["db"], db)
    with sqlite3.connect(db) as conn:  # the slow run becomes the newest: the runs after it move to the start
        conn.executemany("UPDATE runs SET created_at = ? WHERE id = ?",
                         [("2000-01-01T00:00:00.000+00:00", series["runs"][4]),
                          ("2000-01-01T00:00:01.000+00:00", series["other_scale"])])
    code, out = trend({**series, "db": db}, "nightly", "--fail-on-flag", "--history", "3")
    assert code == 1 and f"newest run {series['slow']} is worse than its history" in out


def test_an_unknown_series_is_an_error_naming_the_known_ones(series: dict[str, Any]) -> None:
    code, out = trend(series, "nighty")
    assert code == 2
    assert "no series 'nighty'" in out and "did you mean nightly" in out and "weekly (1 run)" in out


def test_goodput_joins_the_figures_and_the_checks_with_an_objective(series: dict[str, Any]) -> None:
    doc = json.loads(trend(series, "nightly", "--json", "--slo", "150ms")[1])
    slow = next(p for p in doc["points"] if p["run_id"] == series["slow"])
    assert slow["goodput_slo_ms"] == 150.0 and slow["goodput_ci_low"] <= slow["goodput"] <= slow["goodput_ci_high"]
    assert next(c for c in slow["checks"] if c["check"] == "goodput")["status"] == "regression"


def test_the_report_section_draws_each_targets_p50_over_the_series_and_marks_the_flagged_run(
        series: dict[str, Any]) -> None:
    from harness.report.sections import trend_sections
    from harness.store import Store
    from harness.store import runs as run_store

    with Store.open(series["db"], readonly=True) as store:
        runs = run_store.list_runs(store)
        (section,) = trend_sections(store, [r for r in runs if r.id == series["slow"]])
        assert trend_sections(store, []) == []
    assert section.series == "nightly" and len(section.trend.runs) == 6
    p50 = [t for t in section.figure["data"] if t["name"].endswith(" p50")]
    assert len(p50) == 2, "one line per measurement, never joined"
    main = max(p50, key=lambda t: len(t["y"]))
    assert len(main["y"]) == 5 and main["marker"]["symbol"][3] == "circle-open"
    assert len(set(main["x"])) == 5, "runs of the same minute still get an x of their own"
    assert main["marker"]["symbol"].count("circle-open") == 1
    assert all(e >= 0 for e in main["error_y"]["array"] + main["error_y"]["arrayminus"])
    assert len(section.flags) == 1 and series["slow"] in section.flags[0] and "latency_p50" in section.flags[0]
