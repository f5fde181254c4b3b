"""The provider table shows a batch target beside its interactive twin: cost per successful image at the
batch price, per-request turnaround (its latency columns) and the median job turnaround."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from harness.batch.stats import with_batch
from harness.cli.tables import print_stats_table
from harness.report.provider_columns import provider_page_table
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store, batch_jobs
from harness.store import runs as run_store
from tests.test_batch_run import BATCH, TWIN, run, write_suite


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp_path = tmp_path_factory.mktemp("batch-table")
    suite = write_suite(tmp_path, {"fox": "a fox", "owl": "an owl", "cat": "a cat"})
    db, run_id, _ = run(tmp_path, suite, ["gpt-image-1.5@openai", BATCH, TWIN], samples=2)
    return db, run_id


def rows_of(db: Path, run_id: str) -> list[ProviderRow]:
    with Store.open(db, readonly=True) as store:
        rows = provider_rows(run_store.attempts_frame(store, [run_id]))
        return with_batch(store, [run_id], rows)


def test_the_batch_row_sits_right_after_its_interactive_twin_with_its_job_turnaround(
        batch_run: tuple[Path, str]) -> None:
    db, run_id = batch_run
    rows = rows_of(db, run_id)
    names = [r.target for r in rows]
    assert names.index(BATCH) == names.index(TWIN) + 1
    batch, twin = rows[names.index(BATCH)], rows[names.index(TWIN)]
    with Store.open(db, readonly=True) as store:
        (job,) = batch_jobs.jobs_of(store, [run_id])
    assert batch.mode == "batch" and batch.batch_of == TWIN and batch.batch_jobs == 1
    assert batch.job_turnaround_p50_ms == pytest.approx(job.turnaround_ms)
    assert twin.mode == "interactive" and twin.job_turnaround_p50_ms is None
    assert batch.cost_per_image_usd is not None and twin.cost_per_image_usd is not None
    assert batch.cost_per_image_usd == pytest.approx(twin.cost_per_image_usd / 2)
    assert batch.p50_ms is not None and batch.p50_ms >= twin.p50_ms  # type: ignore[operator]


def test_the_terminal_table_and_the_report_show_the_batch_columns(batch_run: tuple[Path, str]) -> None:
    db, run_id = batch_run
    rows = rows_of(db, run_id)
    out = io.StringIO()
    print_stats_table(rows, console=Console(file=out, width=400, color_system=None), wide=True)
    text = out.getvalue()
    assert "job turnaround" in text and "batch of" in text and "interactive" in text
    table = provider_page_table(rows, [r.target for r in rows])
    headers = [c.header for c in table.columns]
    assert "batch job turnaround (p50 ms)" in headers
    cells = {label: cells for label, _, cells in table.rows}
    batch_cell = cells[BATCH][headers.index("batch job turnaround (p50 ms)")]
    assert batch_cell.note is not None and f"batch of {TWIN}" in batch_cell.note


def test_a_table_without_batch_targets_shows_no_batch_columns(batch_run: tuple[Path, str]) -> None:
    db, run_id = batch_run
    rows = [r for r in rows_of(db, run_id) if r.target != BATCH]
    out = io.StringIO()
    print_stats_table(rows, console=Console(file=out, width=400, color_system=None), wide=True)
    assert "job turnaround" not in out.getvalue()
    table = provider_page_table(rows, [r.target for r in rows])
    assert "batch job turnaround (p50 ms)" not in [c.header for c in table.columns]


def test_the_row_schema_names_the_batch_columns() -> None:
    properties = ProviderRow.json_schema()["properties"]
    for name in ("mode", "batch_of", "batch_jobs", "job_turnaround_p50_ms", "job_turnaround_max_ms"):
        assert name in properties and properties[name].get("description")


def test_a_batch_rows_latency_intervals_are_withheld_because_its_requests_share_their_jobs_time(
        batch_run: tuple[Path, str]) -> None:
    db, run_id = batch_run
    rows = {r.target: r for r in rows_of(db, run_id)}
    batch, twin = rows[BATCH], rows[TWIN]
    assert batch.p50_ms is not None and batch.p50_ci_low_ms is None and batch.p50_ci_high_ms is None
    assert any("batch job" in reason for reason in batch.withheld.values())
    assert twin.p50_ci_low_ms is not None
