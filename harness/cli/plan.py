"""``harness plan``: requests per target needed to detect a latency or success-rate change, and their cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import click
from rich.table import Table

from harness.cli._common import db_option, handle_errors, out_console, print_json
from harness.cli.tables import fmt_pct, fmt_usd
from harness.errors import ConfigError
from harness.planning import (
    DEFAULT_CV,
    PERCENTILES,
    Metric,
    PlanAsk,
    TargetPlan,
    assumed_baselines,
    baselines_from_run,
    plan_document,
    plan_targets,
    validate,
)


@click.command()
@click.option("--metric", type=click.Choice([*PERCENTILES, "success"]), default="p95", show_default=True,
              help="What the comparison must detect a change in.")
@click.option("--relative-change", type=click.FloatRange(min=0, min_open=True), default=0.15, show_default=True,
              help="Percentile metrics: relative increase to detect (0.15 = +15 %).")
@click.option("--change", type=click.FloatRange(min=0, min_open=True, max=1), default=0.03, show_default=True,
              help="Success metric: drop to detect, as a fraction (0.03 = 3 points).")
@click.option("--baseline-rate", type=click.FloatRange(min=0, min_open=True, max=1),
              help="Baseline success rate (success metric; for percentiles it inflates requests). Default 0.95 "
                   "for success, 1.0 for percentiles, or the stored run's.")
@click.option("--baseline-ms", type=click.FloatRange(min=0, min_open=True),
              help="Baseline value of the percentile, only to show the change in ms.")
@click.option("--cv", type=click.FloatRange(min=0, min_open=True),
              help=f"Coefficient of variation of latency (lognormal) without --from-run [default {DEFAULT_CV}].")
@click.option("--from-run", "from_run", help="Estimate spread, success rate and price per target from this run.")
@click.option("--target", "patterns", multiple=True, help="Targets to plan for (names or globs; repeatable).")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file adding targets (for prices).")
@click.option("--price-usd", type=click.FloatRange(min=0), help="Price per request, overriding known prices.")
@click.option("--power", type=float, default=0.8, show_default=True, help="Chance of detecting the change.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="One-sided false-alarm level.")
@click.option("--checks", type=click.IntRange(1), default=1, show_default=True,
              help="Checks the gate will evaluate; alpha is split over them as the gate does (Bonferroni).")
@click.option("--repetitions", type=click.IntRange(200), default=2000, show_default=True,
              help="Simulated repetitions per candidate sample size (percentile metrics).")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulation seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@db_option
@handle_errors
def plan(metric: str, relative_change: float, change: float, baseline_rate: float | None, baseline_ms: float | None,
         cv: float | None, from_run: str | None, patterns: tuple[str, ...], targets_file: Path | None,
         price_usd: float | None, power: float, alpha: float, checks: int, repetitions: int, seed: int,
         as_json: bool, db: Path) -> None:
    """Requests per target needed to detect a change at a given power, before spending on a run."""
    level = validate(power, alpha, checks)
    if from_run and cv is not None:
        raise ConfigError("give --cv or --from-run, not both (a stored run supplies its own spread)")
    if from_run:
        from harness.store import Store

        with Store.open(db, readonly=True) as store:
            baselines = baselines_from_run(store, from_run, patterns)
    else:
        baselines = assumed_baselines(patterns, targets_file, cv=cv or DEFAULT_CV,
                                      success_rate=baseline_rate or (0.95 if metric == "success" else 1.0))
    ask = PlanAsk(metric=cast(Metric, metric), relative_change=relative_change, change=change, power=power,
                  alpha=alpha, checks=checks, level=level, baseline_rate=baseline_rate, baseline_ms=baseline_ms,
                  price_usd=price_usd, cv=cv, repetitions=repetitions, seed=seed, from_run=from_run)
    plans = plan_targets(baselines, ask)
    doc = plan_document(plans, ask)
    if as_json:
        print_json(doc)
        return
    _print(doc, plans, metric, relative_change, change, baseline_ms)


def _print(doc: dict[str, Any], plans: list[TargetPlan], metric: str, relative_change: float, change: float,
           baseline_ms: float | None) -> None:
    what = (f"a drop of {100 * change:g} points in success rate" if metric == "success"
            else f"a {100 * relative_change:+g} % change in {metric} latency")
    if baseline_ms is not None and metric != "success":
        what += f" ({baseline_ms:,.0f} → {baseline_ms * (1 + relative_change):,.0f} ms)"
    table = Table("target", "successes needed", "requests per side", "assumed success", "power", "price/request",
                  "cost per side", "basis",
                  title=f"to detect {what} with power {doc['power']:g} at one-sided α {doc['per_check_alpha']:.3g}")
    for p in plans:
        table.add_row(p.target or "(any)", f"{p.successes:,}", f"{p.requests:,}", fmt_pct(p.success_rate),
                      f"{p.power:.2f}", fmt_usd(p.price_per_request_usd), fmt_usd(p.cost_usd), p.source)
    console = out_console()
    console.print(table)
    total = doc["total_cost_usd"]
    console.print(f"total: {doc['total_requests']:,} requests per side"
                  + (f", about {fmt_usd(total)} per run" if total is not None else " (price unknown: --price-usd)"))
    if metric != "success":
        console.print("The gate also requires the change to exceed its threshold: set the threshold below the change "
                      "you plan for, or power is at most about 50 %.")
