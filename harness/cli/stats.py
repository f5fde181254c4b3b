"""``harness stats RUN_ID``: the provider performance table of a run."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, handle_errors, print_json
from harness.cli.tables import print_run_stats, print_scores_table
from harness.errors import ConfigError
from harness.scoring.summary import summarise_scores, summary_columns, summary_records
from harness.stats.source import run_stats
from harness.stats.table import BY_ALIASES, ProviderRow, resolve_by, rows_json
from harness.store import Store
from harness.store import runs as run_store
from harness.store.scores import latest_scorer, scores_frame


def parse_by(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--by challenge --by kind`` or ``--by challenge,kind`` to attempt columns, always led by ``target``."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    try:
        return resolve_by(["target", *names])
    except ValueError as exc:
        raise ConfigError(f"--by: {exc}") from None


@click.command()
@click.argument("run_id", required=False)
@click.option("--by", "by", multiple=True, metavar="NAME",
              help=f"Also split rows by {', '.join(n for n in BY_ALIASES if n not in ('target', 'challenge_id', 'run_id'))}"
                   " (repeatable or comma-separated).")
@click.option("--json", "as_json", is_flag=True, help="Print rows as a JSON list (each row with schema_version).")
@click.option("--wide", is_flag=True, help="One table with every column and full names, however wide the terminal.")
@click.option("--schema", "schema", is_flag=True, help="Print the JSON schema of a --json row and exit.")
@db_option
@handle_errors
def stats(run_id: str | None, by: tuple[str, ...], as_json: bool, wide: bool, schema: bool, db: Path) -> None:
    """Per target: success with Wilson intervals, latency percentiles with order-statistic intervals,
    failure-inclusive p95, TTFB, time to image, size as asked, queue phases, throughput and cost per image.

    Tables never cut a name or a price: when the terminal is too narrow for one table, the columns are split
    over several tables, long target names are shortened to their unique part (… marks what is left out),
    and below that each row is printed as a block."""
    if schema:
        print_json(ProviderRow.json_schema())
        return
    if run_id is None:
        raise click.UsageError("Missing argument 'RUN_ID'.")
    columns = parse_by(by)
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        result = run_stats(store, info, columns)
        scorer = latest_scorer(store, [info.id])
        scores = scores_frame(store, [info.id], scorer=scorer) if scorer else None
    rows = result.rows
    summary = summarise_scores(scores) if scores is not None and not scores.empty else None
    per_target = summary_columns(summary) if summary is not None and columns == ("target",) else {}
    if as_json:
        print_json(rows_json(rows, per_target))
        return
    print_run_stats(result, title=f"run {info.id}", wide=wide)
    if summary is not None:
        print_scores_table(summary_records(summarise_scores(scores, by=columns) if scores is not None
                                           and columns != ("target",) else summary),
                           title=f"CLIP scores ({scorer}); mean and 95 % interval")
