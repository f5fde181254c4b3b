"""The newer figures per target: time to image, latency with connect, client time, size as asked, requests
never sent; and how a store from before them is shown (withheld with a reason, never a crash)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import cli
from harness.stats.intervals import quantile_interval, wilson
from harness.stats.source import stats_frame_columns, stored_attempt_columns
from harness.stats.table import NOT_RECORDED, provider_rows
from harness.store import Store
from harness.store import runs as run_store
from tests.test_stats_table import attempt, failed, frame

FIXTURE = Path(__file__).parent / "fixtures" / "store_schema1.db"


def test_time_to_image_includes_retries_and_waits_with_order_statistic_intervals() -> None:
    rng = np.random.default_rng(7)
    tti = rng.lognormal(np.log(9000), 0.5, size=80)
    rows = [attempt(i, latency_ms=float(v) / 2, time_to_image_ms=float(v)) for i, v in enumerate(tti)]
    (row,) = provider_rows(frame(rows))
    for p in (50, 90, 95):
        ref = quantile_interval(tti, p / 100)
        assert getattr(row, f"time_to_image_p{p}_ms") == pytest.approx(float(np.percentile(tti, p)))
        assert (getattr(row, f"time_to_image_p{p}_ci_low_ms"), getattr(row, f"time_to_image_p{p}_ci_high_ms")) \
            == (ref.low, ref.high)
    assert row.time_to_image_n == 80 and row.time_to_image_p99_ms is None
    assert "n=80 successful requests with a time to image < 368" in row.withheld["time_to_image_p99_ms"]
    assert row.time_to_image_p50_ms is not None and row.p50_ms is not None
    assert row.time_to_image_p50_ms > row.p50_ms


def test_failed_requests_have_no_time_to_image() -> None:
    rows = [attempt(i, time_to_image_ms=100.0 + i) for i in range(6)] + \
           [failed(10 + i, time_to_image_ms=99_999.0) for i in range(6)]
    (row,) = provider_rows(frame(rows))
    assert row.time_to_image_n == 6 and row.time_to_image_p50_ms == pytest.approx(102.5)


def test_size_as_asked_is_a_share_of_successful_requests_with_a_wilson_interval() -> None:
    rows = [attempt(i, size_as_asked=1 if i < 87 else 0) for i in range(100)] + \
           [attempt(200, size_as_asked=None), failed(300, size_as_asked=0)]
    (row,) = provider_rows(frame(rows))
    ref = wilson(87, 100)
    assert row.size_as_asked_n == 100 and row.size_as_asked == pytest.approx(0.87)
    assert (row.size_as_asked_ci_low, row.size_as_asked_ci_high) == (ref.low, ref.high)


def test_requests_never_sent_are_counted_apart_from_every_denominator() -> None:
    sent = [attempt(i) for i in range(6)] + [failed(6, "auth")]
    never = [failed(100 + i, "not_sent", latency_ms=None, ttfb_ms=None, error_message="dead target")
             for i in range(5)]
    (with_never,) = provider_rows(frame(sent + never))
    (without,) = provider_rows(frame(sent))
    assert with_never.not_sent == 5 and without.not_sent == 0
    assert with_never.n == without.n == 7
    assert with_never.success_rate == without.success_rate == pytest.approx(6 / 7)
    assert with_never.errors == {"auth": 1} and with_never.p50_ms == without.p50_ms


def test_a_target_with_nothing_sent_has_a_row_without_rates() -> None:
    never = [failed(i, "not_sent", latency_ms=None, ttfb_ms=None) for i in range(5)]
    (row,) = provider_rows(frame(never))
    assert row.n == 0 and row.not_sent == 5
    assert row.success_rate is None and row.success_ci_low is None and row.attempts_per_request is None


def test_client_time_and_latency_with_connect_when_the_clock_records_them() -> None:
    rows = [attempt(i, client_ms=3.0 + i % 3, latency_with_connect_ms=1100.0 + i) for i in range(10)]
    (row,) = provider_rows(frame(rows))
    assert row.client_n == 10 and row.client_p50_ms == pytest.approx(4.0)
    assert row.latency_with_connect_p50_ms == pytest.approx(1104.5)
    assert row.latency_with_connect_p95_ms is None and "latency_with_connect_p95_ms" in row.withheld


@pytest.mark.parametrize("column", ["time_to_image_ms", "latency_with_connect_ms", "client_ms", "size_as_asked"])
def test_a_figure_whose_column_is_absent_or_all_null_is_withheld_with_a_reason(column: str) -> None:
    absent = provider_rows(frame([attempt(i) for i in range(10)]))[0]
    null = provider_rows(frame([attempt(i, **{column: None}) for i in range(10)]))[0]
    stem = column.removesuffix("_ms")
    for row in (absent, null):
        reasons = {k: v for k, v in row.withheld.items() if k.startswith(stem)}
        assert reasons and set(reasons.values()) == {NOT_RECORDED}
        assert getattr(row, f"{stem}_n") == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([None, "server_error", "not_sent", "timeout"]),
                          st.floats(1.0, 1e5), st.sampled_from([None, 0, 1])), min_size=1, max_size=40))
def test_rows_build_from_any_mix_of_outcomes(outcomes: list[tuple[bool, str | None, float, int | None]]) -> None:
    rows = []
    for i, (ok, kind, ms, asked) in enumerate(outcomes):
        if ok and kind is None:
            rows.append(attempt(i, latency_ms=ms, time_to_image_ms=ms, size_as_asked=asked))
        else:
            rows.append(failed(i, kind or "server_error", latency_ms=ms, size_as_asked=asked))
    (row,) = provider_rows(frame(rows))
    never = sum(1 for ok, kind, _, _ in outcomes if not (ok and kind is None) and kind == "not_sent")
    assert row.not_sent == never and row.n == len(outcomes) - never
    assert row.successes <= row.n and row.time_to_image_n <= row.successes
    if row.size_as_asked is not None:
        assert row.size_as_asked_ci_low is not None and row.size_as_asked_ci_high is not None
        assert row.size_as_asked_ci_low <= row.size_as_asked <= row.size_as_asked_ci_high


def test_a_first_release_store_shows_its_table_and_says_what_it_never_recorded(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    shutil.copy(FIXTURE, db)
    (run_id,) = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM runs")]
    before = db.read_bytes()
    with Store.open(db, readonly=True) as store:
        assert "time_to_image_ms" in stored_attempt_columns(store), "read-only stores show new columns as nulls"
        old = run_store.attempts_frame(store, [run_id], columns=stats_frame_columns(store, ("target",)))
    assert db.read_bytes() == before, "a read-only opening changes nothing on disk"
    assert provider_rows(old)[0].withheld["time_to_image_p50_ms"] == NOT_RECORDED
    Store.open(db).close()  # any write opening migrates: the new columns arrive as nulls
    runner = CliRunner()
    table = runner.invoke(cli, ["stats", run_id, "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "time to image, latency with connect, client time, size as asked: " + NOT_RECORDED in table.output
    rows = json.loads(runner.invoke(cli, ["stats", run_id, "--json", "--db", str(db)]).output)
    for r in rows:
        assert r["time_to_image_p50_ms"] is None and r["withheld"]["time_to_image_p50_ms"] == NOT_RECORDED


def test_sandbox_fidelity_is_measured_minus_intended_per_target() -> None:
    rows = [attempt(i, intended_ms=1000.0, latency_ms=1000.0 + 10 * i) for i in range(10)] + \
           [attempt(20 + i, target="flux-dev@fal", model="flux-dev", provider="fal", intended_ms=2000.0,
                    latency_ms=2500.0) for i in range(6)]
    by_target = {r.target: r for r in provider_rows(frame(rows))}
    close, far = by_target["gpt-image-1@openai"], by_target["flux-dev@fal"]
    assert close.fidelity_n == 10 and close.fidelity_deviation_p50_ms == pytest.approx(45.0)
    assert close.fidelity_deviation_p95_ms == pytest.approx(float(np.percentile(np.arange(10) * 10.0, 95)))
    assert close.fidelity_faithful is True and close.fidelity_deviation_pct == pytest.approx(4.5)
    assert far.fidelity_deviation_p50_ms == pytest.approx(500.0) and far.fidelity_faithful is False


def test_fidelity_is_absent_from_real_runs_and_withheld_for_a_sandbox_target_without_it() -> None:
    (real,) = provider_rows(frame([attempt(i) for i in range(8)]))
    assert real.fidelity_n == 0 and real.fidelity_deviation_p50_ms is None
    assert not any(k.startswith("fidelity") for k in real.withheld), "real providers state no intended delay"
    mixed = [attempt(i, intended_ms=500.0) for i in range(6)] + \
            [attempt(10 + i, target="flux-dev@fal", intended_ms=None) for i in range(6)]
    lacking = {r.target: r for r in provider_rows(frame(mixed))}["flux-dev@fal"]
    assert "intended" in lacking.withheld["fidelity_deviation_p50_ms"]
