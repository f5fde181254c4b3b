"""``harness export RUN_ID``: the run's attempts and statistics table as CSV, Parquet or JSON Lines."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from harness.cli._common import db_option, err_console, handle_errors
from harness.cli.stats import parse_by
from harness.errors import ConfigError
from harness.export import FORMATS, Format, stats_frame, to_text, with_schema, write_frame
from harness.stats import provider_table
from harness.stats.source import effective_timeout_ms
from harness.store import Store
from harness.store import runs as run_store
from harness.store.url import parse_location


@click.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--table", type=click.Choice(["attempts", "stats", "all"]), default="all", show_default=True,
              help="Which table to export.")
@click.option("--by", "by", multiple=True, metavar="NAME", help="Split the stats rows as `harness stats --by` does.")
@click.option("--out", "out", type=click.Path(path_type=Path),
              help="Folder for --table all; a file (or - for stdout) for one table. "
                   "Default: exports/<run id>/ beside the store.")
@db_option
@handle_errors
def export(run_id: str, fmt: str, table: str, by: tuple[str, ...], out: Path | None, db: Path) -> None:
    """Export every attempt (one row each, retries included) and the provider statistics of a run."""
    form = cast(Format, fmt)
    columns = parse_by(by)
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        attempts = run_store.attempts_frame(store, [info.id])
    frames = {}
    if table in ("attempts", "all"):
        frames["attempts"] = with_schema(attempts)
    if table in ("stats", "all"):
        rows = provider_table(attempts, columns, timeout_ms=effective_timeout_ms(info))
        frames["stats"] = stats_frame(rows, nested=form == "jsonl")
    if out is not None and str(out) == "-":
        if len(frames) != 1:
            raise ConfigError("--out - writes one table to stdout: add --table attempts or --table stats")
        click.echo(to_text(next(iter(frames.values())), form), nl=False)
        return
    if len(frames) == 1 and out is not None and not out.is_dir():
        paths = [write_frame(next(iter(frames.values())), out, form)]
    else:
        folder = out or parse_location(db).home / "exports" / info.id
        paths = [write_frame(frame, folder / f"{name}.{form}", form) for name, frame in frames.items()]
    console = err_console()
    for path in paths:
        console.print(f"wrote {path}")
