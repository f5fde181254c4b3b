"""``harness stats RUN_ID``: the provider performance table of a run, its goodput against an objective, and
the per-model view (``--by model``) that ranks the providers of each model."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from harness.cli._common import db_option, handle_errors, print_json, slo_option
from harness.cli.tables import print_model_views, print_run_stats, print_scores_table
from harness.errors import ConfigError
from harness.scoring.summary import summarise_scores, summary_columns, summary_records
from harness.stats.bymodel import RANK_BY, ModelView, RankBy, model_views
from harness.stats.byregion import RegionView, run_region_views
from harness.stats.goodput import DEFAULT_MEASURE, MEASURES, Measure
from harness.stats.source import RunStats, effective_timeout_ms, run_stats, stats_frame_columns
from harness.stats.table import BY_ALIASES, ProviderRow, resolve_by, rows_json
from harness.stats.turns import COLUMNS as TURN_COLUMNS
from harness.stats.turns import SequenceRow, TurnRow, print_turn_stats, turn_stats
from harness.store import Store
from harness.store import runs as run_store
from harness.store.scores import latest_scorer, scores_frame

MODEL_VIEW = "model"
"""``--by model`` asks for the per-model view rather than a split of the provider table."""
TURN_VIEW = "turn"
"""``--by turn`` asks for the multi-turn view: success and latency by turn, and each target's conversations."""
REGION_VIEW = "region"
"""``--by region`` prints one provider table per region the run's shards ran in (docs/sharding.md)."""


def wants_region_view(values: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """Whether ``--by`` asks for one table per region, and the other splits each table keeps."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return REGION_VIEW in names, tuple(n for n in names if n != REGION_VIEW)


def wants_turn_view(values: tuple[str, ...]) -> bool:
    """Whether ``--by`` asks for the multi-turn view; ``--by turn`` with other splits is an error."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if TURN_VIEW not in names:
        return False
    if set(names) != {TURN_VIEW}:
        raise ConfigError("--by turn shows the multi-turn view and cannot be combined with other splits "
                          f"({', '.join(n for n in names if n != TURN_VIEW)})")
    return True


def parse_by(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--by challenge --by kind`` or ``--by challenge,kind`` to attempt columns, always led by ``target``."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    try:
        return resolve_by(["target", *names])
    except ValueError as exc:
        raise ConfigError(f"--by: {exc}") from None


def wants_model_view(values: tuple[str, ...]) -> bool:
    """Whether ``--by`` asks for the per-model view; ``--by model`` with other splits is an error."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if MODEL_VIEW not in names:
        return False
    if set(names) != {MODEL_VIEW}:
        raise ConfigError("--by model ranks each model's providers and cannot be combined with other splits "
                          f"({', '.join(n for n in names if n != MODEL_VIEW)})")
    return True


@click.command()
@click.argument("run_id", required=False)
@click.option("--by", "by", multiple=True, metavar="NAME",
              help=f"Also split rows by {', '.join(n for n in BY_ALIASES if n not in ('target', 'challenge_id', 'run_id', 'model'))}"
                   " (repeatable or comma-separated). --by region prints one table per region the run's shards "
                   "ran in (hosts named). --by model instead ranks the providers of each model "
                   "served by two or more, with the differences the data support; --by turn shows multi-turn "
                   "challenges turn by turn and per conversation.")
@click.option("--rank-by", type=click.Choice(list(RANK_BY)), default="p50", show_default=True,
              help="With --by model: the figure providers are ranked on.")
@click.option("--slo", "slo_ms", callback=slo_option, metavar="DURATION",
              help="Latency objective for goodput, the share of requests that succeeded within it "
                   "(10s, 1500ms, 2.5s); failures count as misses.")
@click.option("--slo-measure", type=click.Choice(list(MEASURES)), default=DEFAULT_MEASURE, show_default=True,
              help="The time compared with --slo: time to image (retries and waits included) or provider latency.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as a JSON list (each row with schema_version).")
@click.option("--wide", is_flag=True, help="One table with every column and full names, however wide the terminal.")
@click.option("--schema", "schema", is_flag=True,
              help="Print the JSON schema of a --json row (of a model view with --by model) and exit.")
@db_option
@handle_errors
def stats(run_id: str | None, by: tuple[str, ...], rank_by: str, slo_ms: float | None, slo_measure: str,
          as_json: bool, wide: bool, schema: bool, db: Path) -> None:
    """Per target: success with Wilson intervals, latency percentiles with order-statistic intervals,
    failure-inclusive p95, TTFB, time to image, size as asked, queue phases, throughput and cost per image;
    with --slo, goodput with its Wilson interval.

    Tables never cut a name or a price: when the terminal is too narrow for one table, the columns are split
    over several tables, long target names are shortened to their unique part (… marks what is left out),
    and below that each row is printed as a block."""
    if wants_turn_view(by):
        if schema:
            print_json({"turn": TurnRow.model_json_schema(), "sequence": SequenceRow.model_json_schema()})
            return
        if run_id is None:
            raise click.UsageError("Missing argument 'RUN_ID'.")
        _turn_view(run_id, as_json, db)
        return
    by_model = wants_model_view(by)
    measure = cast(Measure, slo_measure)
    if schema:
        if wants_region_view(by)[0]:
            print_json(RegionView.model_json_schema())
            return
        print_json(ModelView.json_schema() if by_model else ProviderRow.json_schema())
        return
    if run_id is None:
        raise click.UsageError("Missing argument 'RUN_ID'.")
    if by_model:
        if rank_by == "goodput" and slo_ms is None:
            raise ConfigError("--rank-by goodput needs --slo (the objective goodput is measured against)")
        _model_view(run_id, cast(RankBy, rank_by), slo_ms, measure, as_json, wide, db)
        return
    if rank_by != "p50":
        raise ConfigError("--rank-by applies to --by model only")
    by_region, by = wants_region_view(by)
    if by_region:
        _region_view(run_id, parse_by(by), slo_ms, measure, as_json, wide, db)
        return
    columns = parse_by(by)
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        result = run_stats(store, info, columns, slo_ms=slo_ms, goodput_measure=measure)
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


def _region_view(run_id: str, columns: tuple[str, ...], slo_ms: float | None, measure: Measure, as_json: bool,
                 wide: bool, db: Path) -> None:
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        views, warning = run_region_views(store, info, columns, slo_ms=slo_ms, goodput_measure=measure)
    if as_json:
        print_json([v.to_json() for v in views])
        return
    for i, view in enumerate(views):
        hosts = f"; hosts {', '.join(view.hosts)}" if view.hosts else ""
        print_run_stats(RunStats(info, view.rows, warning if i == len(views) - 1 else None),
                        title=f"run {info.id}, region {view.label} ({view.requests} requests{hosts})", wide=wide)


def _model_view(run_id: str, rank_by: RankBy, slo_ms: float | None, measure: Measure, as_json: bool, wide: bool,
                db: Path) -> None:
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [info.id], columns=stats_frame_columns(store, ("target",)))
    views = model_views(frame, rank_by=rank_by, timeout_ms=effective_timeout_ms(info), slo_ms=slo_ms,
                        goodput_measure=measure)
    if as_json:
        print_json([v.to_json() for v in views])
        return
    print_model_views(views, title=f"run {info.id}", wide=wide)


def _turn_view(run_id: str, as_json: bool, db: Path) -> None:
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [info.id], columns=list(TURN_COLUMNS), with_challenge=False)
    result = turn_stats(frame)
    if as_json:
        print_json(result.to_json())
        return
    print_turn_stats(result, title=f"run {info.id}")
