"""A sweep's figures per level, read back from the store, and the knee.

Each level's figures come from the same provider statistics ``harness stats`` prints for its run
(:func:`harness.stats.source.run_stats`): latency percentiles with distribution-free intervals, success with its
Wilson interval, the share of attempts answered 429, and throughput — successful images per second of the
level's wall time (first request scheduled to last request ended).

Throughput's interval treats the level's successful images as a Poisson count over its window and gives the
exact (Garwood) interval of that count divided by the window. Completions of a closed loop are more regular
than a Poisson process, so the interval is conservative (wider than needed).

The knee (:func:`find_knee`) is read from point estimates, in level order: the last level before the first one
that either (a) raises throughput by less than ``min_gain`` over the level below it, or not at all (throughput
stops rising; the levels below all rose, so the one below is the best so far)
or (b) has any attempt answered 429 (rate limiting begins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from harness.errors import ConfigError
from harness.records import RunInfo
from harness.stats.intervals import CONFIDENCE
from harness.stats.source import run_stats
from harness.stats.table import ProviderRow
from harness.store import Store
from harness.store import runs as run_store
from harness.sweep.spec import Mode, SweepSpec, is_sweep_label, number, parse_label

SCHEMA_VERSION: Final = 1
"""Version of the JSON form of :class:`SweepLevel` and :class:`SweepSummary`."""


class SweepLevel(BaseModel):
    """One level of a sweep: its run and what it measured. ``*_ms`` in milliseconds, ``*_usd`` in US dollars,
    throughput in successful images per second of wall time (sandbox runs: of scaled time, see ``time_scale``);
    null where a figure does not exist or is withheld (the reason in ``withheld``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="version of this row's JSON form")
    sweep_id: str = Field(description="the sweep this level belongs to")
    mode: Mode = Field(description="what the level sets: requests in flight or requests per minute")
    level: float = Field(description="the level's concurrency (requests in flight) or rate (requests/min)")
    run_id: str = Field(description="the level's run (`harness stats RUN_ID` shows it in full)")
    status: str = Field(description="the run's status: finished, interrupted, failed or running")
    target: str = Field(description="the target swept")
    time_scale: float | None = Field(description="sandbox runs: the time scale every simulated delay was "
                                                 "multiplied by (null for real targets)")
    planned: int = Field(description="requests the level plans")
    n: int = Field(description="requests sent with a final attempt (never-sent ones excluded)")
    not_sent: int = Field(description="requests recorded as never sent (spend cap, dead target)")
    attempts: int = Field(description="HTTP attempts")
    successes: int = Field(description="requests that succeeded")
    success_rate: float | None = Field(description="successes / n")
    success_ci_low: float | None = Field(description="Wilson 95 % interval of the success rate, lower end")
    success_ci_high: float | None = Field(description="Wilson 95 % interval of the success rate, upper end")
    rate_limited: int = Field(description="attempts answered 429 (rate limited)")
    rate_limited_share: float | None = Field(description="rate_limited / attempts")
    p50_ms: float | None = Field(description="latency p50 of successful requests (ms)")
    p50_ci_low_ms: float | None = Field(description="lower end of the p50's 95 % interval (ms)")
    p50_ci_high_ms: float | None = Field(description="upper end of the p50's 95 % interval (ms)")
    p95_ms: float | None = Field(description="latency p95 of successful requests (ms); withheld below 72")
    p95_ci_low_ms: float | None = Field(description="lower end of the p95's 95 % interval (ms)")
    p95_ci_high_ms: float | None = Field(description="upper end of the p95's 95 % interval (ms)")
    images: int = Field(description="successful images")
    window_s: float | None = Field(description="first request scheduled to last request ended, wall clock (s)")
    throughput_per_s: float | None = Field(description="images / window_s")
    throughput_ci_low: float | None = Field(description="exact Poisson 95 % interval of the throughput, lower end")
    throughput_ci_high: float | None = Field(description="exact Poisson 95 % interval of the throughput, upper end")
    cost_usd: float = Field(description="what the level cost, failures included (USD, as the harness computes)")
    withheld: dict[str, str] = Field(description="{figure: reason} for every figure withheld")
    fidelity_warning: str | None = Field(None, description="sandbox runs: set when this machine could not keep "
                                                           "the sandbox's delays at its time scale (the level's "
                                                           "figures then measure the machine, not the profile)")

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def name(self) -> str:
        """``c=8`` or ``rpm=30``."""
        return f"{'c' if self.mode == 'concurrency' else 'rpm'}={number(self.level)}"


class Knee(BaseModel):
    """Where throughput stops rising or 429s begin. ``level`` is the knee (the highest level worth running);
    null when there is none within the levels measured (``statement`` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: float | None = Field(description="the knee level; null when none was found")
    cause: Literal["saturated", "rate_limited", "both", "none"] = Field(
        description="saturated: the next level raised throughput by less than min_gain; rate_limited: the next "
                    "level had 429s; both; none: throughput still rose at every level measured")
    statement: str = Field(description="the knee in one sentence, with the figures that decided it")


StopCause = Literal["rate_limited", "spend_cap", "dead_target"]
"""Why a sweep ran no higher level: too many 429s, its spend cap, or a target stopped as dead."""


class SweepSummary(BaseModel):
    """A sweep as `harness sweep --json` prints it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="version of this object's JSON form")
    sweep_id: str
    target: str
    mode: Mode
    levels_planned: list[float] = Field(description="every level the sweep may run, ascending")
    requests_per_level: int
    max_429_share: float = Field(description="the sweep runs no higher level after one with more 429s than this")
    min_gain: float = Field(description="relative throughput gain a level needs to count as still rising")
    max_spend_usd: float | None = Field(description="cap over the whole sweep (USD); null: none")
    spent_usd: float = Field(description="what the sweep's levels cost so far (USD)")
    levels: list[SweepLevel]
    knee: Knee
    stopped: str | None = Field(description="why the sweep ran no higher level, when it stopped early")
    stop_cause: StopCause | None = Field(description="rate_limited (429 share above max_429_share), spend_cap or "
                                                     "dead_target; null when it did not stop early")
    complete: bool = Field(description="true when no level is left to run (finished or stopped early)")


def sweep_runs(store: Store, sweep_id: str) -> tuple[SweepSpec, dict[float, RunInfo]]:
    """The sweep ``sweep_id`` as its runs' labels define it, and its level runs by level. A clear error when the
    store holds no such sweep (with the sweep ids it does hold) or its runs disagree about the sweep."""
    spec, runs = find_sweep_runs(store, sweep_id)
    if spec is None:
        known = sorted({str(i.label).split(":")[1] for i in run_store.list_runs(store) if is_sweep_label(i.label)})
        hint = f" Sweeps in this store: {', '.join(known)}." if known else " It holds no sweep."
        raise ConfigError(f"no sweep {sweep_id!r} in {store.path}.{hint}")
    return spec, runs


def find_sweep_runs(store: Store, sweep_id: str) -> tuple[SweepSpec | None, dict[float, RunInfo]]:
    """:func:`sweep_runs`, with ``(None, {})`` when the store has no run of the sweep yet."""
    spec: SweepSpec | None = None
    runs: dict[float, RunInfo] = {}
    for info in run_store.list_runs(store):
        if not is_sweep_label(info.label):
            continue
        assert info.label is not None
        if not info.label.startswith(f"sweep:{sweep_id}:"):
            continue
        level_spec, level = parse_label(info.label, info.id)
        if spec is None:
            spec = level_spec
        elif level_spec != spec:
            raise ConfigError(f"run {info.id} describes sweep {sweep_id} differently from its other levels")
        if level in runs:
            raise ConfigError(f"sweep {sweep_id} has two runs of level {level_spec.level_name(level)}: "
                              f"{runs[level].id} and {info.id}")
        runs[level] = info
    return spec, runs


def _poisson_rate(count: int, window_s: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate: ``count`` events in ``window_s`` seconds."""
    alpha = 1 - confidence
    low = 0.0 if count == 0 else float(sps.chi2.ppf(alpha / 2, 2 * count)) / 2
    high = float(sps.chi2.ppf(1 - alpha / 2, 2 * count + 2)) / 2
    return low / window_s, high / window_s


_ROW_COUNTS: Final = ("n", "not_sent", "successes")
"""Counts a level copies from its provider row (0 when the run has no row yet)."""
_ROW_FIGURES: Final = ("success_rate", "success_ci_low", "success_ci_high", "p50_ms", "p50_ci_low_ms",
                       "p50_ci_high_ms", "p95_ms", "p95_ci_low_ms", "p95_ci_high_ms")
"""Figures with their intervals a level copies from its provider row (null when the run has no row yet)."""


def _row_figures(row: ProviderRow | None) -> dict[str, Any]:
    """The counts and figures a level takes from its run's provider row as they are."""
    return {**{k: getattr(row, k) if row else 0 for k in _ROW_COUNTS},
            **{k: getattr(row, k) if row else None for k in _ROW_FIGURES}}


def _throughput(images: int, window: float | None) -> tuple[float | None, float | None, float | None]:
    """Images per second over ``window`` seconds with its exact Poisson interval; nulls without a window."""
    if not window:
        return None, None, None
    low, high = _poisson_rate(images, window)
    return images / window, low, high


def _level_withheld(row: ProviderRow | None, window: float | None) -> dict[str, str]:
    """{figure: reason} for the level's withheld figures: the row's own that a level has, and throughput
    while no request has ended."""
    withheld = {k: v for k, v in row.withheld.items() if k in SweepLevel.model_fields} if row is not None else {}
    if window is None:
        withheld["throughput_per_s"] = "no request ended yet"
    return withheld


def level_of(store: Store, spec: SweepSpec, level: float, info: RunInfo) -> SweepLevel:
    """The figures of one level's run."""
    stats = run_stats(store, info)
    targets = run_store.run_targets(store, info.id)
    target = str(targets[0]["name"]) if targets else "?"
    row = stats.rows[0] if stats.rows else None
    window = row.window_s if row is not None else None
    images = row.images if row is not None else 0
    throughput, low, high = _throughput(images, window)
    attempts = row.attempts if row is not None else 0
    share = row.rate_limited_share if row is not None else None
    return SweepLevel(
        sweep_id=spec.sweep_id, mode=spec.mode, level=level, run_id=info.id, status=info.status, target=target,
        time_scale=info.time_scale if info.sandbox else None, planned=info.requests_planned,
        attempts=attempts, rate_limited=round(share * attempts) if share is not None else 0,
        rate_limited_share=share, images=images, window_s=window, throughput_per_s=throughput,
        throughput_ci_low=low, throughput_ci_high=high, cost_usd=row.cost_total_usd if row else 0.0,
        withheld=_level_withheld(row, window), fidelity_warning=stats.fidelity_warning, **_row_figures(row),
    )


def sweep_levels(store: Store, sweep_id: str) -> list[SweepLevel]:
    """Every level of the sweep ``sweep_id`` that has a run, in ascending order, with its figures (the rows
    ``harness sweep --json`` prints and the report draws)."""
    spec, runs = sweep_runs(store, sweep_id)
    return [level_of(store, spec, level, runs[level]) for level in sorted(runs)]


def _tput(level: SweepLevel) -> float:
    return level.throughput_per_s if level.throughput_per_s is not None else 0.0


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def find_knee(levels: Sequence[SweepLevel], min_gain: float) -> Knee:
    """The knee of ``levels`` (ascending; only finished levels count), by the rule in the module docstring."""
    done = [lv for lv in levels if lv.finished and lv.n > 0]
    if not done:
        return Knee(level=None, cause="none", statement="no level has finished yet: no knee to read")
    for i, lv in enumerate(done):
        below = done[i - 1] if i > 0 else None
        limited = lv.rate_limited > 0
        saturated = below is not None and not (_tput(lv) >= (1 + min_gain) * _tput(below) and _tput(lv) > _tput(below))
        if not (limited or saturated):
            continue
        parts = []
        if saturated and below is not None:
            gain = _tput(lv) / _tput(below) - 1 if _tput(below) > 0 else math.inf
            parts.append(f"throughput stops rising at {lv.name}: {_fmt(_tput(lv))} images/s, "
                         f"{gain:+.0%} on {below.name}'s {_fmt(_tput(below))} (a level must add {min_gain:.0%})")
        if limited:
            parts.append(f"429s begin at {lv.name}: {lv.rate_limited} of {lv.attempts} attempts "
                         f"({lv.rate_limited_share or 0:.0%})")
        cause: Literal["saturated", "rate_limited", "both"] = (
            "both" if limited and saturated else "rate_limited" if limited else "saturated")
        if below is None:
            return Knee(level=None, cause=cause,
                        statement=f"no knee within the levels: {'; '.join(parts)}, the lowest level; sweep lower")
        return Knee(level=below.level, cause=cause,
                    statement=f"knee at {below.name} ({_fmt(_tput(below))} images/s): {'; '.join(parts)}")
    top = done[-1]
    return Knee(level=None, cause="none",
                statement=f"no knee within the levels: throughput still rose at {top.name} "
                          f"({_fmt(_tput(top))} images/s) without 429s; sweep higher")
