"""``harness stats RUN_ID``: the provider performance table of a run."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, handle_errors, print_json
from harness.cli.tables import print_stats_table
from harness.stats import provider_table
from harness.store import Store
from harness.store import runs as run_store


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print rows as a JSON list.")
@db_option
@handle_errors
def stats(run_id: str, as_json: bool, db: Path) -> None:
    """Per-target n, success rate, p50/p95 latency, TTFB p50 and cost per successful image."""
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        rows = provider_table(run_store.attempts_frame(store, [info.id]))
    if as_json:
        print_json(rows)
    else:
        print_stats_table(rows, title=f"run {info.id}")
