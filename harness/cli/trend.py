"""``harness trend SERIES``: each target's figures across a series' runs, and the runs that differ from their
recent history (exit 0 whether or not a run is flagged; ``--fail-on-flag`` exits 1 when the newest is)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import (
    EXIT_CHECK_FAILED,
    db_option,
    err_console,
    handle_errors,
    print_json,
    slo_option,
)
from harness.cli.tables import WITHHELD, Column, Sheet, fmt_ms, fmt_pct, fmt_usd, print_sheet
from harness.gate import load_gate
from harness.stats.goodput import format_slo
from harness.store import Store
from harness.trend import Trend, TrendPoint, build_trend
from harness.trend.build import DEFAULT_HISTORY

FLAG_MARK = {"regression": "FLAG: worse", "improved": "FLAG: better", "ok": "ok", "skipped": "skipped",
             "no history": "—"}


def _ms(point: TrendPoint, name: str) -> str:
    if f"{name}_ms" in point.withheld:
        return WITHHELD
    value, low, high = (getattr(point, f"{name}_ms"), getattr(point, f"{name}_ci_low_ms"),
                        getattr(point, f"{name}_ci_high_ms"))
    if value is None:
        return "—"
    return fmt_ms(value) + (f" ({fmt_ms(low)}–{fmt_ms(high)})" if low is not None and high is not None else "")


def _rate(value: float | None, low: float | None, high: float | None) -> str:
    return fmt_pct(value) + (f" ({fmt_pct(low)}–{fmt_pct(high)})" if value is not None and low is not None
                             and high is not None else "")


def _flag(point: TrendPoint) -> str:
    mark = FLAG_MARK[point.verdict]
    if point.flagged:
        moved = [c.check for c in point.checks if c.status in ("regression", "improved")]
        mark += f" ({', '.join(moved)})"
    return mark


def trend_sheets(trend: Trend) -> list[Sheet]:
    """One table per measurement (runs measured otherwise are shown apart): a row per target and run."""
    goodput = any(p.goodput_slo_ms is not None for p in trend.points)
    columns = [Column("n", "figures"), Column("p50 ms (95 % CI)", "figures", field="p50_ms"),
               Column("p95 ms (95 % CI)", "figures", field="p95_ms"), Column("success (95 % CI)", "figures"),
               Column("cost/image (95 % CI)", "figures")]
    if goodput:
        slo = next(p.goodput_slo_ms for p in trend.points if p.goodput_slo_ms is not None)
        assert slo is not None
        columns.append(Column(f"goodput ≤ {format_slo(slo)} (95 % CI)", "figures"))
    columns.append(Column(f"vs last {trend.history} runs", "against history"))
    sheets: list[Sheet] = []
    for measurement in trend.measurements:
        sheet = Sheet(f"series {trend.series} — {measurement}", ("target", "run"), tuple(columns))
        points = sorted((p for p in trend.points if p.measurement == measurement), key=lambda p: (p.target, p.index))
        for p in points:
            cost = fmt_usd(p.cost_per_image_usd) + (
                f" ({fmt_usd(p.cost_per_image_ci_low_usd)}–{fmt_usd(p.cost_per_image_ci_high_usd)})"
                if p.cost_per_image_ci_low_usd is not None and p.cost_per_image_ci_high_usd is not None else "")
            cells = [str(p.n), _ms(p, "p50"), _ms(p, "p95"),
                     _rate(p.success_rate, p.success_ci_low, p.success_ci_high), cost]
            if goodput:
                cells.append(_rate(p.goodput, p.goodput_ci_low, p.goodput_ci_high))
            cells.append(_flag(p))
            sheet.rows.append(((p.target, p.run_id), tuple(cells)))
        sheets.append(sheet)
    return sheets


def flag_lines(trend: Trend) -> list[str]:
    """One sentence per flagged run and target, naming the checks that moved and by how much."""
    lines = []
    for p in trend.flagged:
        moved = [c for c in p.checks if c.status in ("regression", "improved")]
        what = "; ".join(f"{c.check}: {c.reason} ({c.test}{'' if c.p_value is None else f' p={c.p_value:.3g}'})"
                         for c in moved)
        lines.append(f"{p.run_id} {p.target} differs from its last {len(p.history_runs)} run(s): {what}")
    return lines


@click.command()
@click.argument("series")
@click.option("--history", type=click.IntRange(1, 100), default=DEFAULT_HISTORY, show_default=True,
              help="Earlier runs (finished, measured alike) each run is compared with.")
@click.option("--target", "target_patterns", multiple=True, help="Only these targets (name or glob, repeatable).")
@click.option("--gate", "gate_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Gate file of `harness compare` (checks, thresholds, alpha); defaults without one.")
@click.option("--slo", "slo_ms", callback=slo_option, metavar="DURATION",
              help="Latency objective: adds goodput (share of requests succeeding within it) to the table and "
                   "to the checks (10s, 1500ms).")
@click.option("--json", "as_json", is_flag=True, help="Print the trend as JSON (schema_version, typed rows).")
@click.option("--fail-on-flag", is_flag=True, help="Exit 1 when the series' newest run is flagged worse.")
@db_option
@handle_errors
def trend(series: str, history: int, target_patterns: tuple[str, ...], gate_file: Path | None,
          slo_ms: float | None, as_json: bool, fail_on_flag: bool, db: Path) -> None:
    """Each target's p50/p95 latency, success and cost per successful image across the runs of SERIES (runs
    started with `harness run --series SERIES`), with 95 % intervals; a run that differs from its recent
    history on the checks of `harness compare` is flagged. Runs of another clock version or time scale are
    shown apart and never compared."""
    gate = load_gate(gate_file)
    if slo_ms is not None:
        gate = gate.model_copy(update={"slo_ms": slo_ms})
    with Store.open(db, readonly=True) as store:
        result = build_trend(store, series, history=history, gate=gate, targets=target_patterns,
                             slo_ms=gate.slo_ms)
    if as_json:
        print_json(result.to_json())
    else:
        for sheet in trend_sheets(result):
            print_sheet(sheet)
        shown = {"p50_ms", "p95_ms"}
        reasons = {k: v for p in result.points for k, v in p.withheld.items() if k in shown}
        for _, why in sorted(reasons.items()):
            click.echo(f"{WITHHELD}: {why}")
        for line in flag_lines(result):
            click.echo(line)
        click.echo(f"{len(result.runs)} run(s); each compared with up to {history} earlier finished run(s) measured "
                   f"alike at false-alarm level {result.alpha:g} per run (Bonferroni over its checks)")
    newest = result.runs[-1] if result.runs else None
    if fail_on_flag and newest is not None and any(
            p.verdict == "regression" for p in result.points if p.run_id == newest.run_id):
        err_console().print(f"newest run {newest.run_id} is worse than its history", markup=False)
        raise SystemExit(EXIT_CHECK_FAILED)
