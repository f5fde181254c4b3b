"""Running a sweep: one bounded run per level, climbing until the levels are done or a stop rule holds, and
continuing an interrupted sweep where it stopped.

Every level is a run made by :func:`harness.run.start_run` (so the store, its lock, the spend ledger and
``harness stats`` treat it like any run); a level whose run was interrupted is finished with
:func:`harness.run.resume_run`, never started again. The sweep's state is read from the store before each
step, so a new sweep and a resumed one follow the same path.

A sweep ignores the target's published concurrency and rate limits (finding the real ones is its purpose);
it protects the key instead by running no higher level once a level's share of 429 answers passes
``max_429_share``, and it sends nothing beyond its spend cap: each level's run is capped at what is left of
the sweep's ``max_spend_usd``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from harness.challenges import Challenge
from harness.errors import ConfigError
from harness.outcomes import NOT_SENT
from harness.providers.base import ChallengeKind
from harness.records import RunInfo
from harness.run import RunObserver, RunOptions, plan_items, resume_run, start_run, thaw_challenges
from harness.run.lifecycle import thaw_target
from harness.spend import SPEND_CAP_REASON, SpendCaps, check_caps, plans_for
from harness.store import Store
from harness.store import runs as run_store
from harness.sweep.results import (
    StopCause,
    SweepLevel,
    SweepSummary,
    find_knee,
    find_sweep_runs,
    level_of,
    sweep_runs,
)
from harness.sweep.spec import SweepSpec
from harness.targets import Credential, Target

CredentialsFor = Callable[[Sequence[Target], bool], dict[str, Credential]]
"""Finds the keys of targets (``sandbox``: the sandbox's key); the same callable ``resume_run`` takes."""


@dataclass(frozen=True)
class SweepPlan:
    """What every level of a sweep sends: ``requests`` samples of one challenge's one variant to one target,
    with the run options shared by the levels (each level then sets its concurrency or rate, label and cap)."""

    challenge: Challenge
    target: Target
    options: RunOptions
    challenges_path: str | None = None
    targets_file: str | None = None


def pick_challenge(challenges: Sequence[Challenge], challenge_id: str | None, where: str) -> Challenge:
    """The challenge a sweep sends: ``challenge_id``, else the first text-to-image one, else the first; a clear
    error naming ``where`` (the suite) when there is none."""
    if challenge_id is not None:
        for c in challenges:
            if c.id == challenge_id:
                return c
        raise ConfigError(f"--challenge: no challenge {challenge_id!r} in {where}")
    for c in challenges:
        if c.kind is ChallengeKind.TEXT_TO_IMAGE:
            return c
    if not challenges:
        raise ConfigError(f"--challenges: {where} holds no challenge")
    return challenges[0]


def base_options(spec: SweepSpec, options: RunOptions, variant: str) -> RunOptions:
    """``options`` as a sweep's levels share them: ``spec.requests`` samples of ``variant``, no retries (a retry
    would hide the 429 it answers), the target's published limits ignored, no shard."""
    return replace(options, samples=spec.requests, variants=(variant,), retries=0, respect_limits=False,
                   shard=None)


def level_options(spec: SweepSpec, options: RunOptions, level: float, remaining_usd: float | None) -> RunOptions:
    """The options of ``level``'s run: its concurrency (or its rate, with every request allowed in flight), its
    sweep label and the sweep's remaining budget as its cap."""
    if spec.mode == "concurrency":
        options = replace(options, concurrency=int(level), rpm=None)
    else:
        options = replace(options, concurrency=spec.requests, rpm=level)
    return replace(options, label=spec.label(level), max_spend_usd=remaining_usd, max_spend_per_target_usd=None)


@dataclass(frozen=True)
class Step:
    """What the sweep does next: ``start`` a level's run, ``resume`` its interrupted run, or nothing (``done``,
    with ``stopped`` saying why when it stopped before its last level)."""

    action: Literal["start", "resume", "done"]
    level: float | None = None
    run_id: str | None = None
    remaining_usd: float | None = None
    stopped: str | None = None
    stop_cause: StopCause | None = None


def _not_sent_reason(store: Store, run_id: str) -> str:
    frame = run_store.attempts_frame(store, [run_id], columns=["error_kind", "error_message"], with_challenge=False)
    messages = frame.loc[frame["error_kind"] == NOT_SENT, "error_message"].dropna()
    return str(messages.iloc[0]) if len(messages) else "its target was stopped"


def stop_after(store: Store, spec: SweepSpec, level: SweepLevel) -> tuple[StopCause, str] | None:
    """Why no level above the finished ``level`` may run (its cause and a sentence), or ``None`` when the sweep
    may climb on."""
    share = level.rate_limited_share or 0.0
    if share > spec.max_429_share:
        return "rate_limited", (f"stopped after {level.name}: {level.rate_limited} of its {level.attempts} attempts "
                                f"({share:.0%}) were answered 429, above --max-429-share {spec.max_429_share:.0%}")
    if level.not_sent:
        reason = _not_sent_reason(store, level.run_id)
        cause: StopCause = "spend_cap" if reason.startswith(SPEND_CAP_REASON) else "dead_target"
        return cause, f"stopped after {level.name}: {level.not_sent} of its requests were not sent ({reason})"
    return None


def spent_usd(store: Store, runs: Sequence[RunInfo]) -> float:
    """What the sweep's runs have cost so far (USD, as the harness computes cost)."""
    by_run = run_store.spend_by_run(store)
    return sum(by_run.get(info.id, 0.0) for info in runs)


def _level_runs(store: Store, spec: SweepSpec) -> dict[float, RunInfo]:
    found, runs = find_sweep_runs(store, spec.sweep_id)
    if found is not None and found != spec:
        raise ConfigError(f"sweep {spec.sweep_id} in {store.path} was started with other settings")
    return runs


def next_step(store: Store, spec: SweepSpec) -> Step:
    """The sweep's next step, from what the store holds."""
    runs = _level_runs(store, spec)
    for level in spec.levels:
        info = runs.get(level)
        if info is None:
            remaining = None
            if spec.max_spend_usd is not None:
                remaining = spec.max_spend_usd - spent_usd(store, list(runs.values()))
                if remaining <= 0:
                    return Step("done", stop_cause="spend_cap", stopped=f"stopped before "
                                f"{spec.level_name(level)}: the sweep's --max-spend ${spec.max_spend_usd:g} is spent")
            return Step("start", level=level, run_id=spec.run_id(level), remaining_usd=remaining)
        if info.status != "finished":
            return Step("resume", level=level, run_id=info.id)
        stop = stop_after(store, spec, level_of(store, spec, level, info))
        if stop is not None:
            return Step("done", stop_cause=stop[0], stopped=stop[1])
    return Step("done")


def stored_plan(store: Store, spec: SweepSpec) -> SweepPlan:
    """The plan of a sweep that has a level run: its challenge, target and options, as that run stored them."""
    runs = _level_runs(store, spec)
    if not runs:
        raise ConfigError(f"no sweep {spec.sweep_id!r} in {store.path}")
    info = runs[min(runs)]
    challenges = thaw_challenges(store, run_store.run_challenges(store, info.id))
    targets = [thaw_target(t) for t in run_store.run_targets(store, info.id)]
    if len(challenges) != 1 or len(targets) != 1:
        raise ConfigError(f"run {info.id} of sweep {spec.sweep_id} does not hold one challenge and one target")
    config = info.config
    return SweepPlan(challenges[0], targets[0], RunOptions.from_config(config),
                     config.get("challenges_path"), config.get("targets_file"))


def check_budget(plan: SweepPlan, options: RunOptions) -> str | None:
    """Why ``options``' spend cap cannot cover one request of the level, or ``None`` when it can."""
    if options.max_spend_usd is None:
        return None
    items = plan_items([plan.challenge], [plan.target], options)
    try:
        check_caps(plans_for(items, [plan.target], options), SpendCaps(run_usd=options.max_spend_usd))
    except ConfigError as exc:
        return f"the sweep's remaining budget cannot cover a request: {exc}"
    return None


ObserverFactory = Callable[[], RunObserver]


def run_sweep(db: Path, spec: SweepSpec, plan: SweepPlan | None, credentials_for: CredentialsFor, *,
              observer: ObserverFactory = RunObserver, on_level: Callable[[SweepLevel], None] | None = None,
              cooldown_s: float = 0.0) -> SweepSummary:
    """Run (or continue) the sweep ``spec`` until no step is left; returns its summary.

    ``plan`` is needed for a sweep that has no level run yet; once one exists, its stored challenge, target and
    options are used (so a resumed sweep sends what the first level sent). ``on_level`` is told each level that
    finishes; ``cooldown_s`` is waited between two levels run by this call (a real provider's per-minute window
    then does not carry one level's requests into the next). A Ctrl-C leaves the level's run interrupted:
    calling this again resumes it."""
    credentials: dict[str, Credential] | None = None
    ran = False
    while True:
        with Store.open(db) as store:
            step = next_step(store, spec)
            if step.action != "done" and _level_runs(store, spec):
                plan = stored_plan(store, spec)
        if step.action == "done":
            break
        assert step.level is not None and step.run_id is not None
        if plan is None:
            raise ConfigError(f"sweep {spec.sweep_id} has no level run yet: start it with its levels")
        if ran and cooldown_s > 0:
            time.sleep(cooldown_s)
        if step.action == "resume":
            resume_run(db, step.run_id, credentials_for, observer())
        else:
            options = level_options(spec, plan.options, step.level, step.remaining_usd)
            short = check_budget(plan, options)
            if short is not None:
                return summarize(db, spec, stopped=("spend_cap",
                                                    f"stopped before {spec.level_name(step.level)}: {short}"))
            if credentials is None:
                credentials = credentials_for([plan.target], options.sandbox)
            start_run(db, [plan.challenge], [plan.target], credentials, options, challenges_path=plan.challenges_path,
                      targets_file=plan.targets_file, observer=observer(), run_id=step.run_id)
        ran = True
        if on_level is not None:
            with Store.open(db, readonly=True) as store:
                info = run_store.get_run(store, step.run_id)
                on_level(level_of(store, spec, step.level, info))
    return summarize(db, spec)


def summarize(db: Path, spec: SweepSpec, *, stopped: tuple[StopCause, str] | None = None) -> SweepSummary:
    """The sweep as stored: its levels, knee, spend and whether (and why) it stopped."""
    with Store.open(db, readonly=True) as store:
        runs = _level_runs(store, spec)
        levels = [level_of(store, spec, level, runs[level]) for level in sorted(runs)]
        step = next_step(store, spec)
        spent = spent_usd(store, list(runs.values()))
        target = levels[0].target if levels else "?"
    complete = step.action == "done" or stopped is not None
    return SweepSummary(
        sweep_id=spec.sweep_id, target=target, mode=spec.mode, levels_planned=list(spec.levels),
        requests_per_level=spec.requests, max_429_share=spec.max_429_share, min_gain=spec.min_gain,
        max_spend_usd=spec.max_spend_usd, spent_usd=spent, levels=levels, knee=find_knee(levels, spec.min_gain),
        stopped=stopped[1] if stopped else step.stopped, stop_cause=stopped[0] if stopped else step.stop_cause,
        complete=complete,
    )


def load_spec(db: Path, sweep_id: str) -> SweepSpec:
    """The stored sweep ``sweep_id`` (a clear error naming the store when there is none)."""
    with Store.open(db, readonly=True) as store:
        spec, _ = sweep_runs(store, sweep_id)
    return spec
