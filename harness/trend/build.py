"""A series' trend: each target's figures run by run, and each run checked against the series' recent history.

Figures per run and target are those ``harness stats`` prints (:func:`harness.stats.table.provider_rows`):
latency p50 and p95 of successful requests with distribution-free intervals (withheld below the n they need),
success rate with its Wilson interval, and cost per successful image with a percentile-bootstrap interval over
requests (:func:`harness.stats.pairwise.ratio_interval`, as in ``harness stats --by model``).

The history of a run is the last ``history`` earlier runs of the series that finished and measured alike
(:class:`harness.trend.series.Measurement`); their requests, pooled per target, are the baseline and the run is
the candidate of one ``harness compare`` (:func:`harness.gate.compare`): the same checks, thresholds and
tests, and the same Bonferroni correction over every check of that comparison, so ``alpha`` bounds the chance
that a run that did not change is flagged. A run is *flagged* when one of its checks is a regression or an
improvement the data support. Pooling treats the history's requests as one sample: day-to-day variation
between the history's runs is not modelled, so a series whose runs wander a little from day to day will be
flagged more often than ``alpha``; a longer history widens the baseline but does not remove that.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError
from harness.gate import GateConfig, Side
from harness.gate import compare as gate_compare
from harness.gate.evaluate import IMPROVED, OK, REGRESSION, SKIPPED, CheckResult
from harness.globs import select_names
from harness.stats.intervals import SuccessLatencyFigures
from harness.stats.pairwise import ratio_interval
from harness.stats.requests import INPUT_COLUMNS, logical_requests
from harness.stats.source import effective_timeout_ms, stats_frame_columns, stored_attempt_columns
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store
from harness.store import runs as run_store
from harness.trend.series import SeriesRun, series_runs

TREND_SCHEMA_VERSION: Final = 1
"""Version of the JSON form of :class:`Trend` (and its rows)."""
DEFAULT_HISTORY: Final = 5
"""Earlier runs a run is compared with, by default."""
NO_HISTORY: Final = "no history"

Verdict = Literal["regression", "improved", "ok", "skipped", "no history"]


class TrendCheck(BaseModel):
    """One check of a run against its history (a ``harness compare`` check: see ``docs/gate.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(description="latency_p50, latency_p95, success_rate, goodput …")
    status: str = Field(description="regression, improved, ok or skipped")
    baseline: float | None = Field(description="the history's value (ms, or a fraction of requests)")
    candidate: float | None = Field(description="this run's value (same unit)")
    change: float | None = Field(description="relative change (latency) or points as a fraction (rates)")
    change_low: float | None = Field(description="95 % interval of the change, lower end")
    change_high: float | None = Field(description="95 % interval of the change, upper end")
    test: str | None = Field(description="the test behind the verdict")
    p_value: float | None = Field(description="its two-sided p-value where it has one")
    reason: str = Field(description="the verdict in words")


class _TrendPointHead(BaseModel):
    """Which run, target and measurement a :class:`TrendPoint` describes (its first fields)."""

    schema_version: Literal[1] = Field(TREND_SCHEMA_VERSION, description="version of this row's JSON form")
    series: str
    run_id: str
    index: int = Field(description="the run's place in the series (0 = first)")
    created_at: str = Field(description="when the run was created (ISO 8601 UTC)")
    measurement: str = Field(description="what the figures mean (clock version, sandbox and time scale); runs "
                                         "of different measurements are never compared")
    target: str
    n: int = Field(description="logical requests sent (never-sent ones excluded)")


class TrendPoint(SuccessLatencyFigures, _TrendPointHead):
    """One target in one run of the series: its figures and its verdict against the history. ``*_ms`` in
    milliseconds, ``*_usd`` in US dollars; null where a figure does not exist or is withheld (reason in
    ``withheld``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_image_usd: float | None = Field(description="everything billed / successful images (USD)")
    cost_per_image_ci_low_usd: float | None = Field(description="bootstrap 95 % interval over requests, lower end")
    cost_per_image_ci_high_usd: float | None = Field(description="bootstrap 95 % interval over requests, upper end")
    goodput_slo_ms: float | None = Field(None, description="the objective goodput is measured against (ms)")
    goodput: float | None = Field(None, description="share of requests that succeeded within the objective")
    goodput_ci_low: float | None = None
    goodput_ci_high: float | None = None
    withheld: dict[str, str] = Field(description="{figure: reason} for every figure withheld")
    history_runs: list[str] = Field(description="the earlier runs this one was compared with (empty: none)")
    verdict: Verdict = Field(description="regression or improved (flagged), ok, skipped (the data could not "
                                         "answer) or no history")
    flagged: bool = Field(description="true when the run differs from its history on a check the data support")
    checks: list[TrendCheck] = Field(description="every check against the history")


class TrendRun(BaseModel):
    """One run of the series and its comparison with its history."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    index: int
    created_at: str
    status: str
    label: str | None
    measurement: str
    history_runs: list[str]
    tests: int = Field(description="checks evaluated in the run's comparison (Bonferroni denominator)")
    per_check_alpha: float | None = Field(description="one-sided level of each check (alpha / tests)")
    flagged: bool
    notes: list[str]


class Trend(BaseModel):
    """A series: its runs in order and one :class:`TrendPoint` per run and target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(TREND_SCHEMA_VERSION, description="version of this document's JSON form")
    series: str
    history: int = Field(description="earlier runs (finished, measured alike) each run is compared with")
    alpha: float = Field(description="false-alarm level of each run's comparison (family-wise)")
    resamples: int
    seed: int
    measurements: list[str] = Field(description="the measurements in the series, in order of first run")
    runs: list[TrendRun]
    points: list[TrendPoint]

    @property
    def flagged(self) -> list[TrendPoint]:
        return [p for p in self.points if p.flagged]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _seed(base: int, *parts: str) -> int:
    seq = np.random.SeedSequence([base, *(zlib.crc32(p.encode()) for p in parts)])
    return int(seq.generate_state(1)[0])


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _columns(store: Store) -> list[str]:
    readable = stored_attempt_columns(store)
    wanted = [*INPUT_COLUMNS, "variant", "challenge_id", *stats_frame_columns(store)]
    return [c for c in dict.fromkeys(wanted) if c in readable]


def _check(c: CheckResult) -> TrendCheck:
    return TrendCheck(check=c.check, status=c.status, baseline=_finite(c.baseline), candidate=_finite(c.candidate),
                      change=_finite(c.change), change_low=_finite(c.change_low), change_high=_finite(c.change_high),
                      test=c.test, p_value=_finite(c.p_value), reason=c.reason)


def _verdict(checks: Sequence[CheckResult]) -> Verdict:
    statuses = {c.status for c in checks}
    if REGRESSION in statuses:
        return "regression"
    if IMPROVED in statuses:
        return "improved"
    if OK in statuses:
        return "ok"
    return "skipped" if SKIPPED in statuses else NO_HISTORY


def _history(runs: Sequence[SeriesRun], current: SeriesRun, size: int) -> list[SeriesRun]:
    earlier = [r for r in runs[:current.index]
               if r.measurement == current.measurement and r.info.status == "finished"]
    return earlier[-size:] if size > 0 else []


def _cost_intervals(frame: pd.DataFrame, run_id: str, config: GateConfig) -> dict[str, tuple[float, float] | None]:
    requests = logical_requests(frame)
    if "not_sent" in requests.columns:
        requests = requests[~requests["not_sent"].to_numpy(dtype=bool)]
    out: dict[str, tuple[float, float] | None] = {}
    for target, group in requests.groupby("target", sort=True, observed=True):
        images = np.where(group["ok"].to_numpy(dtype=bool), group["n_images"].to_numpy(dtype=float), 0.0)
        out[str(target)] = ratio_interval(group["cost_usd"].to_numpy(dtype=float), images,
                                          resamples=config.resamples, seed=_seed(config.seed, run_id, str(target)))
    return out


def _point(series: str, run: SeriesRun, row: ProviderRow, cost: tuple[float, float] | None, history: list[str],
           checks: list[CheckResult], slo_ms: float | None) -> TrendPoint:
    verdict = _verdict(checks) if history else NO_HISTORY
    low, high = cost if cost else (None, None)
    goodput: dict[str, Any] = {}
    if slo_ms is not None:
        goodput = {"goodput_slo_ms": slo_ms, "goodput": row.goodput,
                   "goodput_ci_low": row.goodput_ci_low, "goodput_ci_high": row.goodput_ci_high}
    return TrendPoint(
        series=series, run_id=run.info.id, index=run.index, created_at=run.info.created_at,
        measurement=run.measurement.name, target=row.target, n=row.n, successes=row.successes,
        success_rate=row.success_rate, success_ci_low=row.success_ci_low, success_ci_high=row.success_ci_high,
        p50_ms=row.p50_ms, p50_ci_low_ms=row.p50_ci_low_ms, p50_ci_high_ms=row.p50_ci_high_ms, p95_ms=row.p95_ms,
        p95_ci_low_ms=row.p95_ci_low_ms, p95_ci_high_ms=row.p95_ci_high_ms,
        cost_per_image_usd=row.cost_per_image_usd, cost_per_image_ci_low_usd=_finite(low),
        cost_per_image_ci_high_usd=_finite(high), **goodput, withheld=dict(row.withheld), history_runs=history,
        verdict=verdict, flagged=verdict in ("regression", "improved"), checks=[_check(c) for c in checks])


def _target_frames(store: Store, series: str, runs: Sequence[SeriesRun], targets: Sequence[str],
                   ) -> dict[str, pd.DataFrame]:
    """Each run's attempts (by run id), of the ``targets`` chosen (names or globs; every target when empty)."""
    columns = _columns(store)
    frames: dict[str, pd.DataFrame] = {}
    for run in runs:
        frame = run_store.attempts_frame(store, [run.info.id], columns=columns)
        if targets:
            names = sorted(frame["target"].astype(str).unique())
            chosen, _ = select_names(names, list(targets))
            frame = frame[frame["target"].astype(str).isin(chosen)]
        frames[run.info.id] = frame
    if targets and all(f.empty for f in frames.values()):
        raise ConfigError(f"--target {', '.join(targets)} matches no target in series {series!r}")
    return frames


@dataclass(frozen=True)
class _HistoryComparison:
    """A run's gate comparison with its history, over the ``common`` targets (none compared when empty)."""

    common: list[str]
    checks: list[CheckResult] = field(default_factory=list)
    tests: int = 0
    per_check_alpha: float | None = None
    notes: list[str] = field(default_factory=list)


def _compare_with_history(series: str, run: SeriesRun, frame: pd.DataFrame, baseline: pd.DataFrame,
                          past_ids: list[str], config: GateConfig) -> _HistoryComparison:
    """The run's targets that its history also measured, compared under ``config`` (``harness compare``)."""
    common = sorted(set(frame["target"].astype(str)) & set(baseline["target"].astype(str)))
    if not common:
        return _HistoryComparison(common)
    side_a = Side(f"last {len(past_ids)} run(s) of {series}", baseline[baseline["target"].astype(str).isin(common)])
    side_b = Side(run.info.id, frame[frame["target"].astype(str).isin(common)])
    comparison = gate_compare(side_a, side_b, config)
    return _HistoryComparison(common, comparison.checks, comparison.tests, comparison.per_check_alpha,
                              list(comparison.notes))


def _run_points(series: str, run: SeriesRun, frame: pd.DataFrame, compared: _HistoryComparison,
                past_ids: list[str], config: GateConfig, slo_ms: float | None) -> list[TrendPoint]:
    """One point per target the run measured, with its verdict against the history."""
    if frame.empty:
        return []
    rows = provider_rows(frame, timeout_ms=effective_timeout_ms(run.info), slo_ms=slo_ms)
    costs = _cost_intervals(frame, run.info.id, config)
    return [_point(series, run, row, costs.get(row.target), past_ids if row.target in compared.common else [],
                   [c for c in compared.checks if c.pair == row.target], slo_ms) for row in rows]


def build_trend(store: Store, series: str, *, history: int = DEFAULT_HISTORY, gate: GateConfig | None = None,
                targets: Sequence[str] = (), slo_ms: float | None = None) -> Trend:
    """The trend of ``series`` in ``store``: every run's figures per target (``targets``: names or globs, all
    by default) and each run compared with its last ``history`` finished, alike-measured predecessors under
    ``gate`` (the default gate without one). ``slo_ms``: a latency objective (ms) for goodput columns."""
    if history < 1:
        raise ConfigError(f"--history must be at least 1 run, not {history}")
    config = gate or GateConfig()
    runs = series_runs(store, series)
    frames = _target_frames(store, series, runs, targets)
    points: list[TrendPoint] = []
    trend_runs: list[TrendRun] = []
    for run in runs:
        frame = frames[run.info.id]
        past_ids = [r.info.id for r in _history(runs, run, history)]
        baseline = pd.concat([frames[i] for i in past_ids], ignore_index=True) if past_ids else frame.iloc[0:0]
        compared = _compare_with_history(series, run, frame, baseline, past_ids, config)
        run_points = _run_points(series, run, frame, compared, past_ids, config, slo_ms)
        points.extend(run_points)
        trend_runs.append(TrendRun(run_id=run.info.id, index=run.index, created_at=run.info.created_at,
                                   status=run.info.status, label=run.info.label, measurement=run.measurement.name,
                                   history_runs=past_ids if compared.common else [], tests=compared.tests,
                                   per_check_alpha=compared.per_check_alpha,
                                   flagged=any(p.flagged for p in run_points), notes=compared.notes))
    measurements = list(dict.fromkeys(r.measurement.name for r in runs))
    return Trend(series=series, history=history, alpha=config.alpha, resamples=config.resamples, seed=config.seed,
                 measurements=measurements, runs=trend_runs, points=points)
