"""The provider table: every column from the same requests, honest tails, retries, cost and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from rich.console import Console

from harness.cli import cli
from harness.stats import STATS_COLUMNS, provider_table
from harness.stats.intervals import quantile_interval, wilson
from harness.stats.requests import logical_requests
from harness.stats.table import NOT_RECORDED, ROW_SCHEMA_VERSION, ProviderRow, provider_rows
from tests.test_compare_sandbox import STEADY, TIME_SCALE, sandbox_run, write_suite


@pytest.fixture(scope="module")
def steady_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real sandbox run of both openai targets with two prompt variants: the store and the run id."""
    root = tmp_path_factory.mktemp("stats")
    profile = root / "steady.yaml"
    profile.write_text(STEADY, encoding="utf-8")
    db = root / "harness.db"
    return db, sandbox_run(db, write_suite(root / "suite"), profile, seed=1)


def attempt(i: int, **fields: Any) -> dict[str, Any]:
    """One stored attempt as ``attempts_frame`` returns it: a successful first attempt unless overridden."""
    row: dict[str, Any] = {
        "id": i, "run_id": "run-1", "challenge_id": "fox", "variant": "default", "target": "gpt-image-1@openai",
        "sample": i, "attempt": 1, "final": 1, "model": "gpt-image-1", "provider": "openai", "ok": 1,
        "error_kind": None, "latency_ms": 1000.0 + i, "ttfb_ms": 400.0, "n_images": 1, "cost_usd": 0.04,
        "billed": 1, "started_at": 1_700_000_000.0 + i, "sched_ms": 1000.0 * i, "start_ms": 1000.0 * i,
        "retry_wait_ms": None, "kind": "text-to-image", "category": "illustration",
    }
    row.update(fields)
    return row


def failed(i: int, kind: str = "server_error", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"ok": 0, "error_kind": kind, "n_images": 0, "cost_usd": 0.0, "billed": 0,
                                "ttfb_ms": None, "latency_ms": 50.0}
    return attempt(i, **{**defaults, **fields})


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_rows_keep_the_contract_columns() -> None:
    rows = provider_table(frame([attempt(i) for i in range(10)]))
    assert set(STATS_COLUMNS) <= set(rows[0])
    assert rows[0]["target"] == "gpt-image-1@openai" and rows[0]["n"] == 10


def test_retries_split_first_attempt_from_eventual_success_and_add_up_time_and_money() -> None:
    rows = [
        # request 0: rate limited, waited 2 s, then succeeded
        failed(0, "rate_limited", sample=0, final=0, latency_ms=30.0, cost_usd=0.0),
        attempt(1, sample=0, attempt=2, latency_ms=900.0, retry_wait_ms=2000.0),
        # request 1: fine at once
        attempt(2, sample=1, latency_ms=800.0),
        # request 2: a billed safety refusal, then a server error
        failed(3, "refused", sample=2, final=0, cost_usd=0.04, billed=1),
        failed(4, "server_error", sample=2, attempt=2, retry_wait_ms=1000.0),
    ]
    (row,) = provider_table(frame(rows))
    assert row["n"] == 3 and row["attempts"] == 5 and row["attempts_per_request"] == pytest.approx(5 / 3)
    assert row["success_rate"] == pytest.approx(2 / 3)
    assert row["first_attempt_success_rate"] == pytest.approx(1 / 3)
    assert row["rate_limited_share"] == pytest.approx(1 / 5)
    assert row["errors"] == {"server_error": 1}
    assert row["billed_failures"] == 1
    assert row["cost_total_usd"] == pytest.approx(0.04 * 3)
    assert row["cost_per_image_usd"] == pytest.approx(0.06)
    requests = logical_requests(frame(rows)).set_index("sample")
    assert requests.loc[0, "latency_ms"] == pytest.approx(30.0 + 2000.0 + 900.0)
    assert requests.loc[1, "latency_ms"] == pytest.approx(800.0)
    assert requests.loc[2, "latency_ms"] == pytest.approx(50.0 + 1000.0 + 50.0)


def test_an_unfinished_request_is_left_out_of_every_column_alike() -> None:
    done = [attempt(i) for i in range(8)]
    unfinished = failed(99, "server_error", sample=99, final=0, cost_usd=0.5, billed=1)
    with_it, without = provider_table(frame([*done, unfinished]))[0], provider_table(frame(done))[0]
    for column in ("n", "attempts", "success_rate", "p50_ms", "cost_total_usd", "rate_limited_share", "images"):
        assert with_it[column] == without[column], column


def test_percentiles_match_numpy_with_order_statistic_intervals() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(np.log(8000), 0.4, size=400)
    (row,) = provider_table(frame([attempt(i, latency_ms=float(v)) for i, v in enumerate(latencies)]),
                            timeout_ms=60_000.0)
    for p in (50, 90, 95, 99):
        assert row[f"p{p}_ms"] == pytest.approx(float(np.percentile(latencies, p)))
        ref = quantile_interval(latencies, p / 100)
        assert (row[f"p{p}_ci_low_ms"], row[f"p{p}_ci_high_ms"]) == (ref.low, ref.high)
        assert row[f"p{p}_ci_low_ms"] <= row[f"p{p}_ms"] <= row[f"p{p}_ci_high_ms"]
    assert row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert set(row["withheld"].values()) <= {NOT_RECORDED}, "only figures this frame has no column for"


def test_p95_is_withheld_with_a_reason_until_72_successes() -> None:
    short = provider_table(frame([attempt(i) for i in range(71)] + [failed(100 + i) for i in range(5)]))[0]
    assert short["p95_ms"] is None and short["p95_ci_low_ms"] is None
    assert "n=71 successful requests < 72" in short["withheld"]["p95_ms"]
    assert short["p50_ms"] is not None and short["p90_ms"] is not None
    enough = provider_table(frame([attempt(i) for i in range(72)]))[0]
    assert enough["p95_ms"] is not None and "p95_ms" not in enough["withheld"]


def test_success_rate_comes_with_its_wilson_interval() -> None:
    (row,) = provider_table(frame([attempt(i) for i in range(45)] + [failed(50 + i) for i in range(5)]))
    ref = wilson(45, 50)
    assert row["success_rate"] == pytest.approx(0.9)
    assert (row["success_ci_low"], row["success_ci_high"]) == (ref.low, ref.high)


def test_failures_count_at_the_timeout_in_the_failure_inclusive_p95() -> None:
    ok = [attempt(i, latency_ms=1000.0 + 10 * i) for i in range(97)]
    few = provider_table(frame(ok + [failed(200 + i) for i in range(3)]), timeout_ms=60_000.0)[0]
    values = np.array([1000.0 + 10 * i for i in range(97)] + [60_000.0] * 3)
    assert few["p95_with_failures_censored"] is False
    assert few["p95_with_failures_ms"] == pytest.approx(float(np.percentile(values, 95)))
    assert few["p95_with_failures_ms"] > few["p95_ms"], "failures are never dropped from the tail"
    many = provider_table(frame(ok[:90] + [failed(200 + i) for i in range(10)]), timeout_ms=60_000.0)[0]
    assert many["p95_with_failures_censored"] is True and many["p95_with_failures_ms"] == 60_000.0
    unknown = provider_table(frame(ok))[0]
    assert unknown["p95_with_failures_ms"] is None and "timeout" in unknown["withheld"]["p95_with_failures_ms"]


def test_throughput_is_successful_images_per_minute_from_first_schedule_to_last_ready() -> None:
    rows = [attempt(i, started_at=100.0 + 10 * i, sched_ms=0.0, start_ms=0.0, latency_ms=5000.0, n_images=2)
            for i in range(6)]
    (row,) = provider_table(frame(rows))
    window = (100.0 + 50 + 5.0) - 100.0
    assert row["window_s"] == pytest.approx(window)
    assert row["images"] == 12 and row["images_per_min"] == pytest.approx(12 / window * 60)


def test_invariant_violations_are_counted_and_named() -> None:
    rows = [attempt(i) for i in range(5)] + [attempt(7, ttfb_ms=5000.0, latency_ms=1000.0),
                                             attempt(8, ttfb_ms=-1.0)]
    (row,) = provider_table(frame(rows))
    assert row["invariant_violations"] == 2 and row["invariant_attempt_ids"] == [7, 8]
    clean = provider_table(frame(rows[:5]))[0]
    assert clean["invariant_violations"] == 0


def test_queue_apis_report_phase_medians_and_the_poll_interval() -> None:
    rows = [attempt(i, submit_ms=100.0, queue_ms=2000.0 + i, run_ms=6000.0, fetch_ms=50.0, download_ms=300.0,
                    poll_interval_ms=500.0, latency_ms=9000.0 + i) for i in range(10)]
    (row,) = provider_table(frame(rows))
    assert row["queue_p50_ms"] == pytest.approx(2004.5) and row["run_p50_ms"] == 6000.0
    assert row["poll_interval_ms"] == 500.0
    sync = provider_table(frame([attempt(i) for i in range(10)]))[0]
    assert sync["queue_p50_ms"] is None and "queue_p50_ms" not in sync["withheld"]


def test_rows_split_by_challenge_kind_category_or_variant() -> None:
    rows = [attempt(i, variant="default" if i % 2 else "terse", challenge_id=f"c{i % 3}") for i in range(30)]
    by_variant = provider_table(frame(rows), ("target", "variant"))
    assert [(r["variant"], r["n"]) for r in by_variant] == [("default", 15), ("terse", 15)]
    by_challenge = provider_table(frame(rows), ("target", "challenge"))
    assert [r["challenge_id"] for r in by_challenge] == ["c0", "c1", "c2"]
    with pytest.raises(ValueError, match="cannot group by colour"):
        provider_table(frame(rows), ("target", "colour"))


def test_stats_command_prints_the_table_and_json_for_a_real_sandbox_run(steady_run: tuple[Path, str]) -> None:
    db, run_id = steady_run
    runner = CliRunner()
    result = runner.invoke(cli, ["stats", run_id, "--json", "--by", "variant", "--db", str(db)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["variant"] for r in rows} == {"default", "terse"}
    for r in rows:
        assert r["invariant_violations"] == 0
        assert r["timeout_ms"] == pytest.approx(300.0 * TIME_SCALE * 1000.0)
        assert r["success_ci_low"] <= r["success_rate"] <= r["success_ci_high"]
    table = runner.invoke(cli, ["stats", run_id, "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "gpt-image-1@openai" in table.output and "n/a* p99: needs at least 368 values" in table.output
    bad = runner.invoke(cli, ["stats", run_id, "--by", "colour", "--db", str(db)])
    assert bad.exit_code == 2 and "--by: cannot group by colour" in bad.output


def test_stats_of_a_sandbox_run_agree_with_its_stored_attempts(steady_run: tuple[Path, str]) -> None:
    from harness.store import Store
    from harness.store import runs as run_store

    db, run_id = steady_run
    with Store.open(db, readonly=True) as store:
        attempts = run_store.attempts_frame(store, [run_id])
    attempts = attempts[attempts["target"] == "gpt-image-1@openai"]
    (row,) = provider_table(attempts)
    ok = attempts[attempts["ok"] == 1]
    assert row["n"] == len(attempts) and row["successes"] == len(ok)
    assert row["p50_ms"] == pytest.approx(float(np.percentile(ok["latency_ms"], 50)))
    assert row["ttfb_p50_ms"] == pytest.approx(float(np.percentile(ok["ttfb_ms"], 50)))


def test_json_rows_carry_schema_version_and_follow_the_schema_written_from_the_type(
        steady_run: tuple[Path, str]) -> None:
    import jsonschema_rs

    db, run_id = steady_run
    runner = CliRunner()
    schema = json.loads(runner.invoke(cli, ["stats", "--schema"]).output)
    assert schema["properties"]["schema_version"]["default"] == ROW_SCHEMA_VERSION
    validator = jsonschema_rs.validator_for(schema)
    for args in ([], ["--by", "variant"]):
        rows = json.loads(runner.invoke(cli, ["stats", run_id, "--json", *args, "--db", str(db)]).output)
        assert rows and all(r["schema_version"] == ROW_SCHEMA_VERSION for r in rows)
        for r in rows:
            validator.validate(r)
    mistyped = {**rows[0], "p50ms": 1.0}
    assert not validator.is_valid(mistyped), "a key the type does not declare is not a valid row"


def test_dict_rows_keep_todays_keys_and_group_keys_only_when_split() -> None:
    rows = [attempt(i, variant="terse" if i % 2 else "default") for i in range(12)]
    plain = provider_table(frame(rows))[0]
    split = provider_table(frame(rows), ("target", "variant"))[0]
    assert "schema_version" not in plain, "exports stamp their own version on dict rows"
    assert "variant" not in plain and "kind" not in plain and split["variant"] == "default"
    assert set(split) - set(plain) == {"variant"}
    typed = provider_rows(frame(rows))[0]
    assert typed.to_dict() == plain and ProviderRow.from_dict({**plain, "label": "ignored"}) == typed
    assert typed.to_json()["schema_version"] == ROW_SCHEMA_VERSION


def test_a_mistyped_or_missing_field_fails_when_the_row_is_built() -> None:
    good = provider_rows(frame([attempt(i) for i in range(6)]))[0].model_dump()
    with pytest.raises(ValidationError, match="p50ms"):
        ProviderRow(**{**good, "p50ms": 1.0})
    del good["ttfb_p50_ms"]
    with pytest.raises(ValidationError, match="ttfb_p50_ms"):
        ProviderRow(**good)


def test_a_sandbox_run_reports_fidelity_per_target_and_warns_only_when_a_target_strays(
        steady_run: tuple[Path, str]) -> None:
    from harness.cli.tables import print_run_stats
    from harness.stats.source import RunStats, run_stats
    from harness.store import Store
    from harness.store import runs as run_store

    db, run_id = steady_run
    with Store.open(db, readonly=True) as store:
        result = run_stats(store, run_store.get_run(store, run_id))
    assert result.rows and all(0 < r.fidelity_n <= r.successes for r in result.rows)
    assert (result.fidelity_warning is None) == all(r.fidelity_faithful for r in result.rows)
    buffer = io.StringIO()
    print_run_stats(RunStats(result.info, result.rows, "this machine cannot simulate scale 0.05 faithfully"),
                    "run", console=Console(file=buffer, width=120))
    assert "sandbox fidelity" in buffer.getvalue()
    assert "warning: this machine cannot simulate scale 0.05 faithfully" in buffer.getvalue()


def test_goodput_columns_follow_the_schema_and_keep_the_schema_version(steady_run: tuple[Path, str]) -> None:
    import jsonschema_rs

    db, run_id = steady_run
    runner = CliRunner()
    validator = jsonschema_rs.validator_for(json.loads(runner.invoke(cli, ["stats", "--schema"]).output))
    rows = json.loads(runner.invoke(cli, ["stats", run_id, "--slo", "10s", "--json", "--db", str(db)]).output)
    for r in rows:
        validator.validate(r)
        assert r["schema_version"] == ROW_SCHEMA_VERSION == 1, "added keys keep the version"
        assert r["slo_ms"] == 10_000.0 and r["goodput_n"] == r["n"]
        assert r["goodput_ci_low"] <= r["goodput"] <= r["goodput_ci_high"]
    assert not validator.is_valid({**rows[0], "goodput_measure": "wall"}), "the measure is one of two names"


def test_the_report_table_names_the_objective_in_its_goodput_heading() -> None:
    from harness.report.provider_columns import provider_page_table

    rows = provider_rows(frame([attempt(i, latency_ms=500.0 + 100 * i, time_to_image_ms=500.0 + 100 * i)
                                for i in range(10)]), slo_ms=1000.0)
    table = provider_page_table(rows, [r.target for r in rows])
    headers = [c.header for c in table.columns]
    assert "goodput ≤ 1 s (95 % CI)" in headers
    cell = table.rows[0][2][headers.index("goodput ≤ 1 s (95 % CI)")]
    assert cell.text == "60.0%" and cell.ci is not None  # 500 … 1000 ms of 500 … 1400 ms
    plain = provider_rows(frame([attempt(i) for i in range(3)]))
    assert not any(c.header.startswith("goodput") for c in provider_page_table(plain, ["t"]).columns)
