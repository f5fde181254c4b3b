"""``harness run``: challenges x targets x samples, recorded in the store; ``--resume`` finishes a run."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.batch.stats import with_batch
from harness.challenges import Challenge
from harness.challenges import load as load_challenges
from harness.cli._common import db_option, err_console, handle_errors, plain_output, print_json
from harness.cli.challenges import OUTSIDE_REFS
from harness.cli.tables import print_stats_table
from harness.errors import ConfigError, ExitCode, HarnessError
from harness.outcomes import NOT_SENT
from harness.records import AttemptRecord
from harness.run import RunObserver, RunOptions, RunResult, resume_run, start_run
from harness.run.items import plan_items, refusal
from harness.run.options import DEFAULT_DEAD_TARGET_AFTER
from harness.spend import SpendCaps, check_caps, estimate, format_estimate, format_totals, plans_for
from harness.stats.source import effective_timeout_ms
from harness.stats.table import provider_rows, rows_json
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import Credential, Target, load_targets, resolve_keys, select
from harness.timing import DEFAULT_LIMITS, MIB, ResponseLimits


class ProgressObserver(RunObserver):
    """Rich progress bar with ETA, successes and failures on stderr; plain lines when not a terminal."""

    def __init__(self) -> None:
        self.console = err_console()
        self.plain = plain_output()
        self.ok = 0
        self.failed = 0
        self.not_sent = 0
        self.retried = 0
        self.done = 0
        self.total = 0
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = 0.0

    def on_start(self, run_id: str, total: int, already_done: int) -> None:
        self.total, self.done = total, already_done
        self.console.print(f"run {run_id}: {total} request(s), {already_done} already done")
        if self.plain:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
        )
        self._progress.start()
        self._task = self._progress.add_task("generating", total=total, completed=already_done, ok=0, failed=0)

    def on_attempt(self, record: AttemptRecord) -> None:
        if not record.final:
            self.retried += 1
            return
        self.done += 1
        if record.ok:
            self.ok += 1
        elif record.error_kind == NOT_SENT:
            self.not_sent += 1
        else:
            self.failed += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, ok=self.ok, failed=self.failed)
        elif time.monotonic() - self._last_line > 5 or self.done == self.total:
            self._last_line = time.monotonic()
            not_sent = f", {self.not_sent} not sent" if self.not_sent else ""
            self.console.print(f"  {self.done}/{self.total} done, {self.ok} ok, {self.failed} failed{not_sent}")

    def on_target_stopped(self, target: str, reason: str) -> None:
        self.console.print(f"{target} {reason}; sending it nothing more", markup=False)

    def on_finish(self, run_id: str, status: str) -> None:
        if self._progress is not None:
            self._progress.stop()
        retried = f", {self.retried} retried attempt(s)" if self.retried else ""
        not_sent = f", {self.not_sent} not sent" if self.not_sent else ""
        self.console.print(f"run {run_id} {status}: {self.ok} ok, {self.failed} failed{not_sent}{retried}")


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter("use the form i/N, e.g. 0/4", param_hint="--shard") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"shard index must be in 0..{count - 1}", param_hint="--shard")
    return index, count


RUN_JSON_SCHEMA_VERSION = 1
"""Version of the object ``harness run --json`` prints (its rows carry their own ``schema_version``)."""

RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What ``--run-id`` accepts: it names files and appears in URLs and commands, so no spaces or slashes."""


def _run_id(value: str | None) -> str | None:
    if value is not None and not RUN_ID.fullmatch(value):
        raise click.BadParameter("use 1 to 64 letters, digits, '.', '_' or '-'", param_hint="--run-id")
    return value


def _name(value: str | None, option: str) -> str | None:
    """A series or region label as given, stripped; an empty or blank one is a usage error."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("must not be empty", param_hint=option)
    return value.strip()


def report_unsupported(challenges: Sequence[Challenge], targets: Sequence[Target]) -> None:
    """Say which challenges each target is skipped for, and why (a kind it does not take, a conversation its
    protocol cannot keep, a conversation over its request-size limit), once per reason."""
    skipped: dict[str, Counter[str]] = {}
    for challenge in challenges:
        for target in targets:
            reason = refusal(challenge, target)
            if reason is not None:
                skipped.setdefault(target.name, Counter())[reason] += 1
    for counts in skipped.values():
        for reason, n in sorted(counts.items()):
            err_console().print(f"{reason}; skipped {n} challenge(s)", markup=False)


def credentials_for(targets: Sequence[Target], sandbox: bool) -> dict[str, Credential]:
    return resolve_keys(targets, sandbox=sandbox)


@click.command()
@click.option("--challenges", "challenges_path", type=click.Path(path_type=Path), default=Path("challenges/starter"),
              show_default=True, help="Challenge suite folder or file.")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file adding or overriding targets.")
@click.option("--target", "target_patterns", multiple=True, help="Target name or glob (repeatable); default all.")
@click.option("--samples", type=click.IntRange(1), default=1, show_default=True, help="Requests per challenge variant.")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="Requests in flight per target (capped by the target's published limit).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.001), default=300.0, show_default=True,
              help="Total seconds per attempt (also the read timeout).")
@click.option("--retries", type=click.IntRange(0), default=0, show_default=True,
              help="Retries of retryable failures, honouring Retry-After; every attempt is recorded.")
@click.option("--stream/--no-stream", default=None, help="Use the protocol's streaming mode where it has one.")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), help="Pace every target at this many requests/min.")
@click.option("--ignore-limits", is_flag=True, help="Ignore targets' published rpm and concurrency limits.")
@click.option("--variant", "variants", multiple=True, help="Only these prompt variants (repeatable).")
@click.option("--shard", help="Run only shard i of N (deterministic split of requests), e.g. 0/4.")
@click.option("--sandbox", is_flag=True, help="Send every target to the embedded sandbox servers.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiplies every simulated delay in the sandbox (0.4 keeps every catalog target faithful on "
                   "two cores; smaller scales are for smoke tests and are warned about).")
@click.option("--sandbox-profile", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML overriding sandbox provider profiles (latency, faults, limits).")
@click.option("--faults/--no-faults", default=True, show_default=True, help="Sandbox fault injection.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sandbox's random draws.")
@click.option("--label", help="A label stored with the run (e.g. the template version).")
@click.option("--series", help="The trend series this run belongs to (`harness trend SERIES` follows it over runs).")
@click.option("--region", help="A free label for where this run or shard runs (e.g. eu-west).")
@click.option("--run-id", "new_run_id", envvar="HARNESS_RUN_ID", callback=lambda ctx, param, value: _run_id(value),
              help="Start the run under this id; shards started with the same --run-id and --shard i/N fill one "
                   "run (docs/sharding.md).")
@click.option("--resume", "resume_id", help="Finish the interrupted run RUN_ID (other options are ignored).")
@click.option("--http2", is_flag=True, help="Use HTTP/2 where the server offers it (needs the h2 package).")
@click.option("--dead-target-after", type=click.IntRange(0), default=DEFAULT_DEAD_TARGET_AFTER, show_default=True,
              help="Stop sending to a target whose first N final attempts all fail with the same client error "
                   "(401, 403, 404, a 400 naming the model or a parameter; never 429, 5xx or timeouts); "
                   "its remaining requests are recorded as not sent and the run exits 3. 0 never stops.")
@click.option("--max-response-mb", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_LIMITS.max_body_bytes / MIB, show_default=True,
              help="Largest response body (and event stream) one attempt may receive, in MiB; a larger one fails "
                   "that attempt.")
@click.option("--max-image-megapixels", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_LIMITS.max_image_pixels / 1e6, show_default=True,
              help="Largest image one attempt may return, in megapixels (checked before decoding).")
@click.option("--strict-size", is_flag=True,
              help="Count an image of another size than requested as a failed request (default: a success, "
                   "shown as 'size as asked').")
@click.option("--max-spend", "max_spend", type=float, metavar="USD",
              help="Never spend more than this on the run (as the harness computes cost); targets whose next "
              "request could pass it are stopped and their rest recorded as not sent (exit 6).")
@click.option("--max-spend-per-target", "max_spend_per_target", type=float, metavar="USD",
              help="Never spend more than this on any one target in the run.")
@click.option("--dry-run", is_flag=True,
              help="Print requests, estimated cost range and wall time per target, then exit; nothing is sent.")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Do not ask before an uncapped run against real keys (non-interactive use never asks).")
@OUTSIDE_REFS
@click.option("--json", "as_json", is_flag=True, help="Print the run id and its provider table as JSON.")
@db_option
@handle_errors
def run(challenges_path: Path, targets_file: Path | None, target_patterns: tuple[str, ...], samples: int,
        concurrency: int, timeout_s: float, retries: int, stream: bool | None, rpm: float | None,
        ignore_limits: bool, variants: tuple[str, ...], shard: str | None, sandbox: bool, time_scale: float,
        sandbox_profile: Path | None, faults: bool, seed: int, label: str | None, series: str | None,
        region: str | None, new_run_id: str | None, resume_id: str | None, http2: bool, dead_target_after: int, max_response_mb: float, max_image_megapixels: float,
        strict_size: bool, max_spend: float | None, max_spend_per_target: float | None, dry_run: bool,
        assume_yes: bool, allow_outside_refs: bool, as_json: bool, db: Path) -> None:
    """Run challenges against targets and record every attempt in the store.

    Exit status (docs/exit-codes.md): 0 every request has a final attempt, 3 a target was stopped as dead,
    6 a spend cap stopped a target, 4 the run is held by another process, 5 the store could not be written,
    130 interrupted (Ctrl-C or SIGTERM; finish with --resume), 2 a usage or configuration error."""
    observer = ProgressObserver()
    caps = SpendCaps(run_usd=max_spend, per_target_usd=max_spend_per_target)
    try:
        result = _run_or_resume(observer, challenges_path, targets_file, target_patterns, samples, concurrency,
                                timeout_s, retries, stream, rpm, ignore_limits, variants, shard, sandbox,
                                time_scale, sandbox_profile, faults, seed, label, resume_id, http2,
                                dead_target_after, strict_size, db,
                                _limits(max_response_mb, max_image_megapixels), caps, dry_run, assume_yes,
                                allow_outside_refs, series=_name(series, "--series"),
                                region=_name(region, "--region"), run_id=new_run_id)
    except KeyboardInterrupt:
        err_console().print("interrupted: what was recorded is kept; finish it with "
                            f"`harness run --resume {_interrupted_id(db, resume_id)}`", markup=False)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    if result is None:  # --dry-run
        return
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, result.run_id)
        typed = with_batch(store, [info.id], provider_rows(run_store.attempts_frame(store, [info.id]),
                                                           timeout_ms=effective_timeout_ms(info)))
    rows = [r.to_dict() for r in typed]
    spend = result.spend
    if as_json:
        print_json({"schema_version": RUN_JSON_SCHEMA_VERSION, "run_id": result.run_id, "status": result.status,
                    "rows": rows_json(typed),
                    "stopped_targets": result.stopped_targets, "not_sent": result.not_sent,
                    "spend": None if spend is None else {"per_target_usd": spend.per_target_usd,
                                                         "total_usd": spend.total_usd,
                                                         "overrun_usd": spend.overrun_usd}})
    else:
        print_stats_table(rows, title=f"run {result.run_id} ({result.status})")
        click.echo(result.run_id)
    if spend is not None:
        err_console().print(format_totals(spend, RunOptions.from_config(info.config).spend_caps), markup=False)
    dead = {t: r for t, r in result.stopped_targets.items() if t not in result.spend_capped}
    for target, reason in result.stopped_targets.items():
        err_console().print(f"{target} {reason.removeprefix(f'not sent: {target} ')}", markup=False)
    if dead:
        err_console().print(f"{result.not_sent} request(s) not sent to {len(result.stopped_targets)} stopped "
                            "target(s); fix them (key, model name) and start a new run", markup=False)
        raise SystemExit(int(ExitCode.DEAD_TARGET))
    if result.spend_capped:
        err_console().print(f"{result.not_sent} request(s) not sent: the spend cap stopped "
                            f"{', '.join(result.spend_capped)}; raise --max-spend in a new run to send them",
                            markup=False)
        raise SystemExit(int(ExitCode.SPEND_CAP))


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _limits(max_response_mb: float, max_image_megapixels: float) -> ResponseLimits:
    body = max(1, int(max_response_mb * MIB))
    return replace(DEFAULT_LIMITS, max_body_bytes=body, max_stream_bytes=body,
                   max_image_pixels=max(1, int(max_image_megapixels * 1e6)))


def _interrupted_id(db: Path, resume_id: str | None) -> str:
    """The id of the run just interrupted (the newest run when it was a new one)."""
    if resume_id:
        return resume_id
    try:
        with Store.open(db, readonly=True) as store:
            return run_store.get_run(store, "latest").id
    except HarnessError:
        return "RUN_ID"


def _run_or_resume(observer: ProgressObserver, challenges_path: Path, targets_file: Path | None,
                   target_patterns: tuple[str, ...], samples: int, concurrency: int, timeout_s: float, retries: int,
                   stream: bool | None, rpm: float | None, ignore_limits: bool, variants: tuple[str, ...],
                   shard: str | None, sandbox: bool, time_scale: float, sandbox_profile: Path | None, faults: bool,
                   seed: int, label: str | None, resume_id: str | None, http2: bool, dead_target_after: int,
                   strict_size: bool, db: Path, limits: ResponseLimits, caps: SpendCaps, dry_run: bool,
                   assume_yes: bool, allow_outside_refs: bool, *, series: str | None = None,
                   region: str | None = None, run_id: str | None = None) -> RunResult | None:
    if resume_id:
        return resume_run(db, resume_id, credentials_for, observer)
    else:
        if http2:
            import importlib.util

            if importlib.util.find_spec("h2") is None:
                raise ConfigError("--http2 needs the h2 package: pip install 'httpx[http2]'")
        challenges = load_challenges(challenges_path, allow_outside_refs=allow_outside_refs)
        targets = select(load_targets(targets_file), target_patterns)
        options = RunOptions(
            samples=samples, concurrency=concurrency, timeout_s=timeout_s, retries=retries, stream=stream, rpm=rpm,
            respect_limits=not ignore_limits, variants=variants, shard=_shard(shard), sandbox=sandbox,
            time_scale=time_scale, sandbox_profile=str(sandbox_profile) if sandbox_profile else None,
            sandbox_faults=faults, seed=seed, label=label, http2=http2, dead_target_after=dead_target_after,
            strict_size=strict_size, limits=limits, max_spend_usd=caps.run_usd,
            max_spend_per_target_usd=caps.per_target_usd, series=series, region=region,
        )
        report_unsupported(challenges, targets)
        if sandbox:
            from harness.sandbox.scale import time_scale_warning

            warning = time_scale_warning(targets, concurrency=concurrency, time_scale=time_scale,
                                         respect_limits=not ignore_limits)
            if warning:
                err_console().print(f"warning: {warning}", markup=False)
        credentials = {} if dry_run else resolve_keys(targets, sandbox=sandbox)
        plans = plans_for(plan_items(challenges, targets, options), targets, options)
        if caps.any:
            check_caps(plans, caps)
        if dry_run or (not sandbox and not caps.any):
            est = estimate(plans, retries=retries, concurrency=concurrency, rpm=rpm, respect_limits=not ignore_limits)
            err_console().print(("Dry run: nothing is sent.\n" if dry_run else "Estimate (no --max-spend):\n")
                                + format_estimate(est), markup=False)
            if dry_run:
                return None
            if not assume_yes and _interactive():
                total = sum(r.requests for r in est.rows)
                at_most = "an unknown amount" if est.high_usd is None else f"at most ${est.high_usd:,.2f}"
                if not click.confirm(f"Send {total} requests to real providers ({at_most})?", default=False,
                                     err=True):
                    raise ConfigError("not confirmed: nothing was sent (use --max-spend to cap the run, or "
                                      "--yes to skip this question)")
        return start_run(db, challenges, targets, credentials, options, challenges_path=str(challenges_path),
                         targets_file=str(targets_file) if targets_file else None, observer=observer,
                         run_id=run_id)
