"""``harness demo``: the main job on the embedded sandbox."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, err_console, handle_errors
from harness.cli.run import ProgressObserver
from harness.cli.tables import print_stats_table
from harness.demo import DEFAULT_SUITE, DEMO_TIME_SCALE, run_benchmark
from harness.stats import provider_table
from harness.stats.source import effective_timeout_ms
from harness.store import Store
from harness.store import runs as run_store


@click.command()
@click.option("--challenges", "suite", type=click.Path(path_type=Path), default=DEFAULT_SUITE, show_default=True)
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=DEMO_TIME_SCALE,
              show_default=True, help="Multiplies every simulated delay.")
@click.option("--seed", type=int, default=0, show_default=True)
@db_option
@handle_errors
def demo(suite: Path, time_scale: float, seed: int, db: Path) -> None:
    """Sandbox run of the starter suite over several simulated providers and models; prints the table."""
    result = run_benchmark(db, suite, time_scale=time_scale, observer=ProgressObserver(), seed=seed)
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, result.run.run_id)
        rows = provider_table(run_store.attempts_frame(store, [info.id]), timeout_ms=effective_timeout_ms(info))
    print_stats_table(rows, title=f"demo run {result.run.run_id} (sandbox, time scale {time_scale:g})")
    err_console().print(f"store: {db} (run id {result.run.run_id})")
