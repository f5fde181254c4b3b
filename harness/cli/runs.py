"""``harness runs``: the runs in the store, oldest first."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
from rich.table import Table

from harness.cli._common import db_option, handle_errors, out_console, print_json
from harness.records import RunInfo
from harness.store import Store
from harness.store import runs as run_store

RUNS_JSON_SCHEMA_VERSION = 1
"""Version of ``harness runs --json``: one object per run (its listing fields and ``spend_usd``)."""


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
@db_option
@handle_errors
def runs(as_json: bool, db: Path) -> None:
    """List runs (id, status, requests done/planned, sandbox or real, spend in USD as the harness computes it).

    A run whose process died or was stopped shows ``interrupted`` with when it last did something; finish it
    with ``harness run --resume RUN_ID``. A ``running`` run names the process executing it."""
    with Store.open(db, readonly=True) as store:
        found = run_store.list_runs(store)
        spend = run_store.spend_by_run(store)
    if as_json:
        print_json([{"schema_version": RUNS_JSON_SCHEMA_VERSION, **asdict(r), "spend_usd": spend.get(r.id, 0.0)}
                    for r in found])
        return
    table = Table("id", "created (UTC)", "status", "requests", "attempts", "mode", "spend (USD)", "label")
    for r in found:
        mode = f"sandbox x{r.time_scale:g}" if r.sandbox else "live"
        table.add_row(r.id, r.created_at, _status(r), f"{r.requests_done}/{r.requests_planned}", str(r.attempts),
                      mode, f"{spend.get(r.id, 0.0):.4f}", r.label or "")
    out_console().print(table)


def _status(run: RunInfo) -> str:
    if run.status == "interrupted" and run.interrupted_at:
        return f"interrupted {run.interrupted_at[:19].replace('T', ' ')}"
    return run.status
