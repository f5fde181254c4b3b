"""Goodput: the share of requests that succeeded within an objective, with its Wilson interval, in the table,
the JSON and the CLI; the objective parser refuses what it cannot read and names the option."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import cli
from harness.stats.goodput import (
    GoodputCounts,
    format_slo,
    goodput,
    goodput_counts,
    goodput_of,
    parse_slo,
)
from harness.stats.intervals import wilson
from harness.stats.requests import logical_requests
from harness.stats.table import provider_rows
from tests.test_stats_bymodel import FAST, SLOW, two_provider_run
from tests.test_stats_table import attempt, failed


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return two_provider_run(tmp_path_factory.mktemp("goodput"))


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# --- the objective ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ms"), [("10s", 10_000.0), ("1500ms", 1500.0), ("2.5s", 2500.0),
                                           (" 2.5 S ", 2500.0), ("1m", 60_000.0), ("0.5min", 30_000.0),
                                           (".5s", 500.0)])
def test_an_objective_reads_as_a_buyer_writes_it(text: str, ms: float) -> None:
    assert parse_slo(text) == ms


@pytest.mark.parametrize("text", ["10", "ten s", "10 sec", "-1s", "0ms", "1e3ms", "", "5h", "1s500ms", "25h",
                                  "100000m"])
def test_an_objective_without_a_unit_or_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"10s, 1500ms|longer than 0|at most 24 h"):
        parse_slo(text)


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value="0.001", max_value="86400", places=3), st.sampled_from(["ms", "s", "m", "min"]))
def test_any_written_duration_reads_back_in_milliseconds(value: Any, unit: str) -> None:
    scale = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0}[unit]
    expected = float(value) * scale
    text = f"{value}{unit}"
    if expected > 24 * 3600 * 1000:
        with pytest.raises(ValueError, match="at most 24 h"):
            parse_slo(text)
        return
    assert parse_slo(text) == pytest.approx(expected)
    assert parse_slo(format_slo(parse_slo(text)).replace(" ", "")) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_the_parser_never_fails_other_than_with_a_value_error(text: str) -> None:
    try:
        ms = parse_slo(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
    else:
        assert 0 < ms <= 24 * 3600 * 1000


# --- the share and its interval -----------------------------------------------------------------------------

def test_failures_are_misses_however_fast_and_requests_never_sent_are_left_out() -> None:
    rows = ([attempt(i, latency_ms=500.0, time_to_image_ms=500.0) for i in range(6)]
            + [attempt(10 + i, latency_ms=5000.0, time_to_image_ms=5000.0) for i in range(2)]
            + [failed(20 + i, latency_ms=10.0, time_to_image_ms=10.0) for i in range(2)]
            + [failed(30 + i, "not_sent", latency_ms=0.0) for i in range(5)])
    (result,) = goodput(frame(rows), 1000.0)
    assert (result.hits, result.n) == (6, 10)
    ref = wilson(6, 10)
    assert (result.share, result.low, result.high) == (ref.estimate, ref.low, ref.high)
    (row,) = provider_rows(frame(rows), slo_ms=1000.0)
    assert row.goodput == result.share and row.goodput_n == 10 and row.not_sent == 5
    assert (row.goodput_ci_low, row.goodput_ci_high) == (ref.low, ref.high)
    assert row.slo_ms == 1000.0 and row.goodput_measure == "time_to_image"


def test_time_to_image_counts_the_retry_that_latency_alone_would_also_count_but_connect_only_it_does() -> None:
    rows = [failed(0, "rate_limited", sample=0, final=0, latency_ms=30.0),
            attempt(1, sample=0, attempt=2, latency_ms=900.0, retry_wait_ms=2000.0, time_to_image_ms=2950.0),
            attempt(2, sample=1, latency_ms=800.0, time_to_image_ms=1200.0)]
    requests = logical_requests(frame(rows))
    assert goodput_counts(requests, 1000.0, "latency") == GoodputCounts(hits=1, n=2)
    assert goodput_counts(requests, 1000.0, "time_to_image") == GoodputCounts(hits=0, n=2)
    assert goodput_counts(requests, 3000.0, "time_to_image") == GoodputCounts(hits=2, n=2)


def test_a_run_without_time_to_image_withholds_goodput_and_names_the_other_measure() -> None:
    rows = [attempt(i) for i in range(8)] + [failed(20)]
    (row,) = provider_rows(frame(rows), slo_ms=2000.0)
    assert row.goodput is None and "measure goodput by latency" in row.withheld["goodput"]
    (by_latency,) = provider_rows(frame(rows), slo_ms=2000.0, goodput_measure="latency")
    assert by_latency.goodput == pytest.approx(8 / 9) and "goodput" not in by_latency.withheld


def test_without_an_objective_the_goodput_columns_are_empty() -> None:
    (row,) = provider_rows(frame([attempt(i) for i in range(6)]))
    assert row.slo_ms is None and row.goodput is None and "goodput" not in row.withheld


requests_strategy = st.lists(st.tuples(st.booleans(), st.floats(min_value=1.0, max_value=60_000.0)),
                             min_size=1, max_size=80)


def requests_frame(outcomes: list[tuple[bool, float]]) -> pd.DataFrame:
    return pd.DataFrame({"ok": [ok for ok, _ in outcomes], "latency_ms": [t for _, t in outcomes],
                         "time_to_image_ms": [t for _, t in outcomes], "not_sent": False})


@settings(max_examples=200, deadline=None)
@given(requests_strategy, st.floats(min_value=0.5, max_value=70_000.0), st.floats(min_value=0.0, max_value=10_000.0))
def test_goodput_is_a_share_inside_its_interval_and_never_falls_as_the_objective_loosens(
        outcomes: list[tuple[bool, float]], slo: float, more: float) -> None:
    requests = requests_frame(outcomes)
    tight = goodput_of(goodput_counts(requests, slo), "t", slo)
    loose = goodput_of(goodput_counts(requests, slo + more), "t", slo + more)
    for g in (tight, loose):
        assert g.share is not None and g.low is not None and g.high is not None
        assert 0.0 <= g.low <= g.share <= g.high <= 1.0
        assert g.n == len(outcomes)
        assert g.share <= sum(ok for ok, _ in outcomes) / len(outcomes), "never above the success rate"
    assert tight.low is not None and loose.low is not None and tight.high is not None and loose.high is not None
    assert tight.hits <= loose.hits and tight.low <= loose.low and tight.high <= loose.high


@settings(max_examples=100, deadline=None)
@given(requests_strategy)
def test_an_objective_beyond_every_request_gives_the_success_rate(outcomes: list[tuple[bool, float]]) -> None:
    g = goodput_of(goodput_counts(requests_frame(outcomes), 60_000.0), "t", 60_000.0)
    assert g.hits == sum(ok for ok, _ in outcomes)


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf")])
def test_a_bad_objective_passed_to_the_function_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive number of ms"):
        goodput(frame([attempt(0)]), bad)


# --- a real sandbox run -------------------------------------------------------------------------------------

def test_a_fast_flaky_provider_and_a_slow_reliable_one_trade_places_as_the_objective_loosens(
        run: tuple[Path, str]) -> None:
    """Between the two medians, only the fast provider's successes meet the objective; beyond the slow one's
    slowest request, goodput is each provider's success rate."""
    db, run_id = run
    runner = CliRunner()
    middle = json.loads(runner.invoke(cli, ["stats", run_id, "--slo", "120ms", "--json", "--db", str(db)]).output)
    by = {r["target"]: r for r in middle}
    fast, slow = by[FAST], by[SLOW]
    assert fast["slo_ms"] == 120.0 and fast["goodput_measure"] == "time_to_image"
    assert fast["goodput"] > slow["goodput"]
    assert slow["goodput_ci_low"] == 0.0 or slow["goodput"] < 0.2
    for r in middle:
        assert 0 <= r["goodput_ci_low"] <= r["goodput"] <= r["goodput_ci_high"] <= 1
        assert r["goodput"] <= r["success_rate"]
    loose = json.loads(runner.invoke(cli, ["stats", run_id, "--slo", "1m", "--json", "--db", str(db)]).output)
    for r in loose:
        assert r["goodput"] == r["success_rate"] and r["goodput_n"] == r["n"]
    assert {r["target"]: r["goodput"] for r in loose}[SLOW] > {r["target"]: r["goodput"] for r in loose}[FAST]


def test_the_table_shows_goodput_with_its_objective_and_interval(run: tuple[Path, str]) -> None:
    db, run_id = run
    result = CliRunner().invoke(cli, ["stats", run_id, "--slo", "2.5s", "--wide", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "goodput ≤ 2.5 s" in result.output and "time to image, 95% CI" in result.output
    without = CliRunner().invoke(cli, ["stats", run_id, "--wide", "--db", str(db)])
    assert "goodput" not in without.output


def test_a_bad_objective_on_the_command_line_names_the_option(run: tuple[Path, str]) -> None:
    db, run_id = run
    result = CliRunner().invoke(cli, ["stats", run_id, "--slo", "10", "--db", str(db)])
    assert result.exit_code == 2
    assert "--slo" in result.output and "number and a unit" in result.output


def test_goodput_by_provider_latency_on_request(run: tuple[Path, str]) -> None:
    db, run_id = run
    rows = json.loads(CliRunner().invoke(cli, ["stats", run_id, "--slo", "1m", "--slo-measure", "latency",
                                               "--json", "--db", str(db)]).output)
    assert {r["goodput_measure"] for r in rows} == {"latency"}
    assert all(np.isclose(r["goodput"], r["success_rate"]) for r in rows)
