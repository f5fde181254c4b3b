"""``harness plan``: requests per target needed to detect a latency or success-rate change, and their cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from harness.cli._common import db_option, handle_errors, out_console, print_json
from harness.cli.tables import fmt_pct, fmt_usd
from harness.errors import ConfigError
from harness.planning import (
    DEFAULT_CV,
    TargetPlan,
    empirical_sampler,
    lognormal_sampler,
    plan_quantile,
    plan_success,
    validate,
)
from harness.stats import provider_table
from harness.stats.requests import INPUT_COLUMNS
from harness.targets import load_targets, select

PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class _Baseline:
    target: str | None
    latencies: Any
    success_rate: float
    price: float | None
    source: str


def _from_run(db: Path, run_id: str, patterns: tuple[str, ...]) -> list[_Baseline]:
    import fnmatch

    from harness.stats.requests import logical_requests
    from harness.store import Store
    from harness.store import runs as run_store

    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [info.id], columns=list(INPUT_COLUMNS), with_challenge=False)
    if frame.empty:
        raise ConfigError(f"run {info.id} has no attempts to plan from")
    if patterns:
        keep = [t for t in frame["target"].unique() if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
        if not keep:
            raise ConfigError(f"--target {', '.join(patterns)} matches no target of run {info.id}")
        frame = frame[frame["target"].isin(keep)]
    rows = {r["target"]: r for r in provider_table(frame)}
    requests = logical_requests(frame)
    out = []
    for target, group in requests.groupby("target", sort=True):
        row = rows[str(target)]
        ok = group[group["ok"].astype(bool)]
        price = row["cost_total_usd"] / row["n"] if row["cost_total_usd"] else None
        out.append(_Baseline(str(target), ok["latency_ms"].to_numpy(dtype=float), row["success_rate"], price,
                             f"run {info.id}: {len(ok)} successful latencies resampled"))
    return out


def _catalog_prices(patterns: tuple[str, ...], targets_file: Path | None) -> list[tuple[str, float | None]]:
    chosen = select(load_targets(targets_file), patterns)
    return [(t.name, t.price_per_image_usd) for t in chosen]


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
        baselines = _from_run(db, from_run, patterns)
    else:
        names = _catalog_prices(patterns, targets_file) if patterns else [(None, None)]
        default_rate = 0.95 if metric == "success" else 1.0
        baselines = [_Baseline(name, None, baseline_rate or default_rate, price,
                               f"lognormal, cv {cv or DEFAULT_CV:g}") for name, price in names]
    plans: list[TargetPlan] = []
    for base in baselines:
        price = price_usd if price_usd is not None else base.price
        rate = baseline_rate or base.success_rate
        if metric == "success":
            basis = "closed form (Fleiss, no continuity correction)"
            if from_run and baseline_rate is None:
                basis += f"; success rate of run {from_run}"
            plans.append(plan_success(rate, change, power, level, price_per_request_usd=price, target=base.target,
                                      source=basis))
            continue
        sampler = empirical_sampler(base.latencies) if base.latencies is not None else \
            lognormal_sampler(cv or DEFAULT_CV)
        plans.append(plan_quantile(PERCENTILES[metric], relative_change, power, level, sampler=sampler,
                                   success_rate=rate, price_per_request_usd=price, target=base.target,
                                   source=base.source, repetitions=repetitions, seed=seed))
    costs = [p.cost_usd for p in plans]
    total = sum(c for c in costs if c is not None) if all(c is not None for c in costs) else None
    doc = {"metric": metric, "power": power, "alpha": alpha, "checks": checks, "per_check_alpha": level,
           "relative_change": relative_change if metric != "success" else None,
           "change": change if metric == "success" else None, "baseline_ms": baseline_ms,
           "targets": [p.to_dict() for p in plans], "total_requests": sum(p.requests for p in plans),
           "total_cost_usd": total}
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
