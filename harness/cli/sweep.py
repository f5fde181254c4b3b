"""``harness sweep``: find a target's concurrency or rate knee with one bounded run per level."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.challenges import load as load_challenges
from harness.cli._common import db_option, err_console, handle_errors, print_json
from harness.cli.challenges import OUTSIDE_REFS
from harness.cli.run import ProgressObserver, credentials_for
from harness.cli.tables import WITHHELD, Column, Sheet, fmt_ms, fmt_pct, fmt_usd, print_sheet
from harness.errors import ConfigError, ExitCode
from harness.run import RunOptions, new_run_id
from harness.store import Store
from harness.store import runs as run_store
from harness.sweep import SweepPlan, SweepSpec, base_options, load_spec, parse_levels, run_sweep, summarize
from harness.sweep.execute import pick_challenge
from harness.sweep.results import SweepLevel, SweepSummary
from harness.sweep.spec import (
    DEFAULT_MAX_429_SHARE,
    DEFAULT_MIN_GAIN,
    DEFAULT_REQUESTS_PER_LEVEL,
    MAX_REQUESTS_PER_LEVEL,
    Mode,
    attached_sweep_id,
)
from harness.targets import load_targets, select


def _attached_run(db: Path, run_id: str) -> str:
    """The id of the stored run ``run_id`` (``latest`` works) that a sweep is attached to."""
    with Store.open(db, readonly=True) as store:
        return run_store.get_run(store, run_id).id


def _levels(concurrency: str | None, rpm: str | None) -> tuple[Mode, tuple[float, ...]]:
    if concurrency is not None and rpm is not None:
        raise ConfigError("give the levels with --concurrency or --rpm, not both")
    if concurrency is None and rpm is None:
        raise ConfigError("no levels: give them with --concurrency 1,2,4,8 or --rpm 30,60,120")
    mode: Mode = "concurrency" if concurrency is not None else "rpm"
    return mode, parse_levels(concurrency if concurrency is not None else str(rpm), mode)


def _interval(value: float | None, low: float | None, high: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    text = format(value, fmt)
    return text + (f" ({format(low, fmt)}–{format(high, fmt)})" if low is not None and high is not None else "")


def _ms(level: SweepLevel, name: str) -> str:
    if name in level.withheld:
        return WITHHELD
    value = getattr(level, name)
    if value is None:
        return "—"
    low, high = getattr(level, f"{name[:-3]}_ci_low_ms"), getattr(level, f"{name[:-3]}_ci_high_ms")
    return fmt_ms(value) + (f" ({fmt_ms(low)}–{fmt_ms(high)})" if low is not None and high is not None else "")


def sweep_sheet(summary: SweepSummary) -> Sheet:
    """The per-level table of a sweep."""
    scale = next((lv.time_scale for lv in summary.levels if lv.time_scale), None)
    per = "img/s" + (f" at scale {scale:g}" if scale else "")
    columns = (Column("run"), Column("status"), Column("n"), Column("success (95 % CI)"), Column("429 share"),
               Column("p50 ms (95 % CI)", field="p50_ms"), Column("p95 ms (95 % CI)", field="p95_ms"),
               Column(f"throughput {per} (95 % CI)"), Column("cost"))
    sheet = Sheet(f"sweep {summary.sweep_id}: {summary.target}, {summary.requests_per_level} requests per level",
                  ("level",), columns)
    for lv in summary.levels:
        success = fmt_pct(lv.success_rate) + (f" ({fmt_pct(lv.success_ci_low)}–{fmt_pct(lv.success_ci_high)})"
                                              if lv.success_ci_low is not None else "")
        share = "—" if lv.rate_limited_share is None else f"{fmt_pct(lv.rate_limited_share)} ({lv.rate_limited})"
        n = f"{lv.n}" + (f" +{lv.not_sent} not sent" if lv.not_sent else "")
        sheet.rows.append(((lv.name,), (lv.run_id, lv.status, n, success, share, _ms(lv, "p50_ms"),
                                        _ms(lv, "p95_ms"),
                                        _interval(lv.throughput_per_s, lv.throughput_ci_low, lv.throughput_ci_high,
                                                  ".3g"),
                                        fmt_usd(lv.cost_usd))))
    return sheet


def print_summary(summary: SweepSummary) -> None:
    print_sheet(sweep_sheet(summary))
    for level in summary.levels:
        if level.fidelity_warning:
            err_console().print(f"warning: {level.name}: {level.fidelity_warning}", markup=False)
    click.echo(summary.knee.statement)
    if summary.stopped:
        click.echo(summary.stopped)
    if not summary.complete:
        click.echo(f"levels left to run: finish with `harness sweep --resume {summary.sweep_id}`")
    if summary.max_spend_usd is not None:
        click.echo(f"spent {fmt_usd(summary.spent_usd)} of the sweep's ${summary.max_spend_usd:g}")


def _level_line(level: SweepLevel) -> None:
    tput = "—" if level.throughput_per_s is None else f"{level.throughput_per_s:.3g} images/s"
    err_console().print(f"{level.name}: {level.successes}/{level.n} ok, {fmt_pct(level.rate_limited_share)} 429, "
                        f"{tput}", markup=False)


@click.command()
@click.option("--target", "target_name", help="The one target to sweep (a name from `harness targets list`).")
@click.option("--concurrency", "concurrency_levels", metavar="LEVELS",
              help="Requests in flight per level, increasing, e.g. 1,2,4,8,16.")
@click.option("--rpm", "rpm_levels", metavar="LEVELS", help="Requests per minute per level, increasing, e.g. 30,60,120.")
@click.option("--requests-per-level", type=click.IntRange(1, MAX_REQUESTS_PER_LEVEL),
              default=DEFAULT_REQUESTS_PER_LEVEL, show_default=True, help="Requests each level sends.")
@click.option("--max-429-share", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_MAX_429_SHARE,
              show_default=True, help="Run no higher level after one whose share of 429 answers exceeds this.")
@click.option("--min-gain", type=click.FloatRange(0), default=DEFAULT_MIN_GAIN, show_default=True,
              help="Throughput gain over the best lower level a level needs to count as still rising (0.1 = 10 %).")
@click.option("--max-spend", type=click.FloatRange(min=0, min_open=True), metavar="USD",
              help="Never spend more than this on the whole sweep; each level is capped at what is left.")
@click.option("--challenges", "challenges_path", type=click.Path(path_type=Path), default=Path("challenges/starter"),
              show_default=True, help="Challenge suite folder or file.")
@click.option("--challenge", "challenge_id", help="The challenge every request sends (default: the suite's first "
                                                  "text-to-image challenge).")
@click.option("--variant", default="default", show_default=True, help="The prompt variant sent.")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file adding or overriding targets.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.001), default=300.0, show_default=True,
              help="Total seconds per attempt.")
@click.option("--stream/--no-stream", default=None, help="Use the protocol's streaming mode where it has one.")
@click.option("--sandbox", is_flag=True, help="Send the target to the embedded sandbox servers.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiplies every simulated delay in the sandbox (0.01 = 100x faster).")
@click.option("--sandbox-profile", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML overriding sandbox provider profiles (latency, faults, rpm and concurrency limits).")
@click.option("--faults/--no-faults", default=True, show_default=True, help="Sandbox fault injection.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sandbox's random draws.")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds to wait between levels (lets a real provider's per-minute window empty).")
@click.option("--resume", "resume_id", metavar="SWEEP_ID",
              help="Continue the sweep SWEEP_ID at its first level without a finished run (other options ignored).")
@click.option("--attach", "attach_to", metavar="RUN_ID",
              help="Attach the sweep to run RUN_ID (its id becomes RUN_ID.sweep): that run's report shows it.")
@click.option("--show", "show_id", metavar="SWEEP_ID", help="Print the stored sweep SWEEP_ID; send nothing.")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Do not ask before an uncapped sweep against real keys (non-interactive use never asks).")
@OUTSIDE_REFS
@click.option("--json", "as_json", is_flag=True, help="Print the sweep as JSON (schema_version 1).")
@db_option
@handle_errors
def sweep(target_name: str | None, concurrency_levels: str | None, rpm_levels: str | None,
          requests_per_level: int, max_429_share: float, min_gain: float, max_spend: float | None,
          challenges_path: Path, challenge_id: str | None, variant: str, targets_file: Path | None, timeout_s: float,
          stream: bool | None, sandbox: bool, time_scale: float, sandbox_profile: Path | None, faults: bool, seed: int,
          cooldown_s: float, resume_id: str | None, attach_to: str | None, show_id: str | None, assume_yes: bool,
          allow_outside_refs: bool, as_json: bool, db: Path) -> None:
    """Sweep one target over increasing concurrency (or request rate) levels: one bounded run per level, with
    latency percentiles, success, 429 share and throughput per level, and the knee where throughput stops rising
    or 429s begin. Climbing stops once a level's 429 share passes --max-429-share.

    Every level is an ordinary run (`harness stats RUN_ID` works on it), labelled with the sweep. Exit status:
    0 done (including a stop on 429s), 6 the spend cap stopped it, 3 a dead target stopped it, 130 interrupted
    (continue with --resume SWEEP_ID), 2 a usage or configuration error."""
    if show_id is not None:
        summary = summarize(db, load_spec(db, show_id))
    else:
        summary = _sweep(target_name, concurrency_levels, rpm_levels, requests_per_level, max_429_share, min_gain,
                         max_spend, challenges_path, challenge_id, variant, targets_file, timeout_s, stream, sandbox,
                         time_scale, sandbox_profile, faults, seed, cooldown_s, resume_id, assume_yes,
                         allow_outside_refs, db, attach_to=attach_to)
    if as_json:
        print_json(summary.model_dump(mode="json"))
    else:
        print_summary(summary)
    if show_id is None:
        if summary.stop_cause == "spend_cap":
            raise SystemExit(int(ExitCode.SPEND_CAP))
        if summary.stop_cause == "dead_target":
            raise SystemExit(int(ExitCode.DEAD_TARGET))


def _sweep(target_name: str | None, concurrency_levels: str | None, rpm_levels: str | None, requests_per_level: int,
           max_429_share: float, min_gain: float, max_spend: float | None, challenges_path: Path,
           challenge_id: str | None, variant: str, targets_file: Path | None, timeout_s: float, stream: bool | None,
           sandbox: bool, time_scale: float, sandbox_profile: Path | None, faults: bool, seed: int,
           cooldown_s: float, resume_id: str | None, assume_yes: bool, allow_outside_refs: bool,
           db: Path, *, attach_to: str | None = None) -> SweepSummary:
    plan: SweepPlan | None = None
    if resume_id is not None:
        spec = load_spec(db, resume_id)
    else:
        mode, levels = _levels(concurrency_levels, rpm_levels)
        if not target_name:
            raise ConfigError("--target: name the one target to sweep")
        known = load_targets(targets_file)
        try:
            targets = select(known, [target_name])
        except ConfigError as exc:
            raise ConfigError(f"--target: {exc}") from None
        if len(targets) != 1:
            raise ConfigError(f"--target {target_name!r} matches {len(targets)} targets "
                              f"({', '.join(t.name for t in targets)}); a sweep measures one")
        sweep_id = new_run_id() if attach_to is None else attached_sweep_id(_attached_run(db, attach_to))
        spec = SweepSpec(sweep_id=sweep_id, mode=mode, levels=levels, requests=requests_per_level,
                         max_429_share=max_429_share, min_gain=min_gain, max_spend_usd=max_spend)
        challenge = pick_challenge(load_challenges(challenges_path, allow_outside_refs=allow_outside_refs),
                                   challenge_id, str(challenges_path))
        if variant not in challenge.prompts:
            raise ConfigError(f"--variant: challenge {challenge.id} has no variant {variant!r} "
                              f"(it has {', '.join(challenge.prompts)})")
        if not targets[0].supports(challenge.kind):
            raise ConfigError(f"--challenge: {targets[0].name} does not take {challenge.kind.value} challenges")
        options = RunOptions(timeout_s=timeout_s, stream=stream, sandbox=sandbox, time_scale=time_scale,
                             sandbox_profile=str(sandbox_profile) if sandbox_profile else None,
                             sandbox_faults=faults, seed=seed)
        plan = SweepPlan(challenge, targets[0], base_options(spec, options, variant), str(challenges_path),
                         str(targets_file) if targets_file else None)
        if not sandbox and max_spend is None and not assume_yes and sys.stdin.isatty():
            total = len(levels) * requests_per_level
            if not click.confirm(f"Send up to {total} requests to {targets[0].name} with no --max-spend?",
                                 default=False, err=True):
                raise ConfigError("not confirmed: nothing was sent (use --max-spend to cap the sweep, or --yes)")
        err_console().print(f"sweep {spec.sweep_id}: {targets[0].name}, {spec.mode} levels "
                            f"{', '.join(spec.level_name(v) for v in levels)}", markup=False)
    try:
        return run_sweep(db, spec, plan, credentials_for, observer=ProgressObserver, on_level=_level_line,
                         cooldown_s=cooldown_s)
    except KeyboardInterrupt:
        err_console().print("interrupted: what was recorded is kept; continue the sweep with "
                            f"`harness sweep --resume {spec.sweep_id}`", markup=False)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
