"""``harness demo``: the main job on the embedded sandbox, from benchmark to report."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, err_console, handle_errors
from harness.cli.run import ProgressObserver
from harness.cli.sweep import print_summary
from harness.cli.tables import print_model_views, print_stats_table
from harness.demo import (
    DEFAULT_SUITE,
    DEMO_SAMPLES,
    DEMO_SLO_MS,
    DEMO_TIME_SCALE,
    DEMO_VOTES,
    demo_estimate,
    fidelity,
    run_demo,
)
from harness.spend import format_estimate, format_totals
from harness.stats.bymodel import model_views
from harness.stats.fidelity import FidelityReport
from harness.stats.source import effective_timeout_ms, run_stats
from harness.store import Store
from harness.store import runs as run_store


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/demo"),
              show_default=True, help="Folder of the report.")
@click.option("--challenges", "suite", type=click.Path(path_type=Path), default=DEFAULT_SUITE, show_default=True)
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=DEMO_TIME_SCALE,
              show_default=True, help="Multiplies every simulated delay.")
@click.option("--samples", type=click.IntRange(1), default=DEMO_SAMPLES, show_default=True,
              help="Requests per challenge variant and target.")
@click.option("--votes", type=click.IntRange(0), default=DEMO_VOTES, show_default=True,
              help="Votes the simulated panel casts.")
@click.option("--seed", type=int, default=0, show_default=True)
@db_option
@handle_errors
def demo(out: Path, suite: Path, time_scale: float, samples: int, votes: int, seed: int, db: Path) -> None:
    """Sandbox run of the starter suite over several providers and models, simulated votes, ratings, CLIP
    scores when weights are available, a small concurrency sweep of one target, and the static report; prints
    the path of index.html."""
    console = err_console()
    console.print("estimate of the same requests against the real providers (nothing is sent to them):\n"
                  + format_estimate(demo_estimate(suite, samples=samples)), markup=False)
    result = run_demo(db, out, suite=suite, time_scale=time_scale, samples=samples, votes=votes, seed=seed,
                      observer=ProgressObserver(), say=lambda text: console.print(f"[bold]·[/] {text}"))
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, result.run.run_id)
        summary = run_stats(store, info, slo_ms=DEMO_SLO_MS * time_scale)
        views = model_views(run_store.attempts_frame(store, [info.id]), timeout_ms=effective_timeout_ms(info),
                            slo_ms=DEMO_SLO_MS * time_scale)
    print_stats_table(summary.rows, title=f"demo run {info.id} (sandbox, time scale {time_scale:g}; goodput "
                                          f"within {DEMO_SLO_MS / 1000:g} s of simulated time)")
    print_model_views(views, title="one model, every provider")
    if result.sweep is not None:
        print_summary(result.sweep)
    for line in fidelity_lines(fidelity(db, info.id)):
        console.print(line, markup=False)
    if result.run.spend is not None:
        console.print("simulated spend at catalog prices:\n" + format_totals(result.run.spend), markup=False)
    console.print(f"{result.votes} simulated votes; {result.scored} output(s) CLIP-scored; store {db}")
    for note in result.notes:
        console.print(note, markup=False)
    assert result.site is not None
    if result.site.size is not None:
        console.print(result.site.size.summary(), markup=False)
    click.echo(str(result.site.index.resolve()))


def fidelity_lines(report: FidelityReport | None) -> list[str]:
    """The demo's verdict on itself: how far measured latencies were from the sandbox's intended ones, and
    whether the p50 ranking is the profiles'."""
    if report is None or not report.rows:
        return ["fidelity: no successful attempt carried the sandbox's intended delay"]
    worst = max(report.rows, key=lambda r: abs(r.deviation_pct))
    lines = [f"fidelity: measured − intended, median per target within {abs(worst.deviation_pct):.1f} % of the "
             f"intended median (worst {worst.target}: {worst.deviation_p50_ms:+.1f} ms)"]
    checks = report.rank_checks
    if checks:
        agree = sum(c.agrees for c in checks)
        lines.append(f"ranking by p50 agrees with the profiles on {agree} of {len(checks)} pairs they separate "
                     "by more than this run's intervals")
        lines += [f"  out of order: {c.faster} (profile faster) measured {c.measured_faster_ms:.0f} ms vs "
                  f"{c.slower} {c.measured_slower_ms:.0f} ms" for c in checks if not c.agrees]
    if report.warning:
        lines.append("warning: " + report.warning)
    return lines
