"""How faithfully a sandbox run reproduced its provider profiles (only sandbox runs have an answer).

Every sandbox response states the delay the sandbox intended for its generation (``x-sandbox-intended-ms``,
stored per attempt as ``intended_ms``, the largest over the attempt's calls). What the client measured
beyond that is this machine's doing — loopback, HTTP parsing, the event loop, a CPU shared with other work —
and not the profile's. Per target, over its successful attempts:

* ``deviation_p50_ms`` / ``deviation_p95_ms``: median and 95th percentile of ``latency_ms − intended_ms −
  allowance``. For a queue API that polls (fal's default), the client learns that a job finished only at the
  next status poll, so its latency carries a wait spread uniformly over one poll interval; the allowance is
  half the attempt's ``poll_interval_ms`` (the mean of that wait) when the client saw the job queued or
  running, and 0 otherwise (a synchronous answer, Replicate's ``Prefer: wait`` returning the output, fal's
  status stream, whose ``poll_interval_ms`` is 0). The p95 still includes the other half of that spread.
* ``deviation_pct``: ``deviation_p50_ms`` as a percentage of the median intended delay. Above
  :data:`MAX_DEVIATION_PCT` the run measured this machine rather than the profile, and
  :func:`fidelity_warning` says which time scale to use instead.
* ``ks_statistic`` / ``ks_p_value`` at ``ks_n``: two-sample Kolmogorov–Smirnov test of the measured latencies
  (back in simulated seconds, allowance removed) against :data:`PROFILE_DRAWS` draws from the target's
  profile (``scipy.stats.ks_2samp``). With hundreds of requests it detects shifts of a few percent, so a small
  p-value next to a small deviation means "measurably off, by that much", not "wrong".
* :class:`RankCheck`: for every pair of targets whose profile medians differ by more than the sum of the
  run's interval half-widths for their measured medians, whether the measured order matches the profiles'.

:func:`fidelity_for_run` is the one to call for a stored run (``RunInfo``, its attempts frame and
``run_store.run_targets``); :func:`fidelity_report` takes the pieces; :func:`fidelity_rows` needs only the
attempts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.records import RunInfo
from harness.stats.intervals import quantile_interval

if TYPE_CHECKING:
    from harness.sandbox.profiles import ProviderProfile

Array = np.ndarray[Any, Any]

MAX_DEVIATION_PCT = 5.0
"""Largest median deviation (percent of the median intended delay) a faithful run may show."""
PROFILE_DRAWS = 20_000
"""Draws from a profile the KS test compares the measured latencies with."""
SCALE_LADDER = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)
"""Time scales a recommendation is rounded up to."""
SCALE_MARGIN = 1.5
"""Safety factor of a recommended scale: the machine's own delay is not constant, and a slower scale also
asks less of the client per second."""


@dataclass(frozen=True)
class FidelityRow:
    """One target's fidelity in a sandbox run. Times in ms of real (scaled) time.

    ``n``: successful attempts that carry an intended delay. ``intended_p50_ms``/``measured_p50_ms``: medians
    of what the sandbox intended and what the client measured; ``allowance_ms``: mean poll-quantisation
    allowance subtracted (0 for synchronous APIs); ``deviation_*``: of measured − intended − allowance, with
    the distribution-free 95 % interval of the median deviation (``None`` below the 6 attempts it needs);
    ``faithful``: ``deviation_pct`` within :data:`MAX_DEVIATION_PCT`. ``profile_p50_ms``, ``ks_*``: against
    the profile's own distribution (``None`` without the run's targets or for an unknown protocol).
    """

    target: str
    n: int
    intended_p50_ms: float
    measured_p50_ms: float
    allowance_ms: float
    deviation_p50_ms: float
    deviation_p95_ms: float
    deviation_pct: float
    faithful: bool
    deviation_p50_low_ms: float | None = None
    deviation_p50_high_ms: float | None = None
    profile_p50_ms: float | None = None
    ks_n: int = 0
    ks_statistic: float | None = None
    ks_p_value: float | None = None


@dataclass(frozen=True)
class RankCheck:
    """Two targets whose profile medians differ by more than the run can resolve: does the run agree?

    ``faster``/``slower`` by profile; ``profile_gap_ms``: difference of the profile medians (scaled);
    ``resolution_ms``: sum of the half-widths of the two measured medians' 95 % intervals; ``agrees``: the
    measured medians are in the profiles' order.
    """

    faster: str
    slower: str
    profile_gap_ms: float
    resolution_ms: float
    measured_faster_ms: float
    measured_slower_ms: float
    agrees: bool


@dataclass(frozen=True)
class FidelityReport:
    """A sandbox run's fidelity: rows per target, ranking checks, and the warning to show (if any)."""

    time_scale: float
    rows: list[FidelityRow]
    rank_checks: list[RankCheck] = field(default_factory=list)
    warning: str | None = None
    recommended_time_scale: float | None = None

    @property
    def faithful(self) -> bool:
        return all(r.faithful for r in self.rows)

    @property
    def ranking_agrees(self) -> bool:
        return all(c.agrees for c in self.rank_checks)


def poll_allowance_ms(frame: pd.DataFrame) -> Array:
    """Per attempt: half its poll interval when it polled a queued or running job, else 0 (see module)."""
    n = len(frame)
    poll = pd.to_numeric(frame["poll_interval_ms"], errors="coerce").fillna(0).to_numpy(float) \
        if "poll_interval_ms" in frame.columns else np.zeros(n)
    seen = np.zeros(n, dtype=bool)
    for column in ("queue_ms", "run_ms"):
        if column in frame.columns:
            seen |= pd.to_numeric(frame[column], errors="coerce").notna().to_numpy()
    return np.where(seen & (poll > 0), poll / 2, 0.0)


def _usable(attempts: pd.DataFrame) -> pd.DataFrame:
    if "intended_ms" not in attempts.columns or attempts.empty:
        return attempts.iloc[0:0]
    ok = attempts["ok"].astype(bool)
    intended = pd.to_numeric(attempts["intended_ms"], errors="coerce")
    latency = pd.to_numeric(attempts["latency_ms"], errors="coerce")
    return attempts[ok & (intended > 0) & latency.notna()]


def fidelity_rows(attempts: pd.DataFrame) -> list[FidelityRow]:
    """Measured versus intended, per target, over successful attempts with an ``intended_ms`` (any other
    attempt is left out; a frame without the column gives no rows)."""
    usable = _usable(attempts)
    rows = []
    for target, group in usable.groupby("target", observed=True, sort=True):
        measured = group["latency_ms"].to_numpy(float)
        intended = group["intended_ms"].to_numpy(float)
        allowance = poll_allowance_ms(group)
        excess = measured - intended - allowance
        intended_p50 = float(np.median(intended))
        dev50 = float(np.median(excess))
        pct = 100 * dev50 / intended_p50 if intended_p50 > 0 else math.inf
        interval = quantile_interval(excess, 0.5)
        rows.append(FidelityRow(
            target=str(target), n=int(measured.size), intended_p50_ms=intended_p50,
            measured_p50_ms=float(np.median(measured)), allowance_ms=float(np.mean(allowance)),
            deviation_p50_ms=dev50, deviation_p95_ms=float(np.percentile(excess, 95)), deviation_pct=pct,
            faithful=abs(pct) <= MAX_DEVIATION_PCT, deviation_p50_low_ms=interval.low,
            deviation_p50_high_ms=interval.high))
    return rows


def profile_for(target: Mapping[str, Any], profiles: Mapping[str, ProviderProfile]
                ) -> tuple[ProviderProfile, str] | None:
    """The profile a frozen target is simulated with and the model name its speed factor is matched on, or
    ``None`` for a protocol the sandbox does not simulate."""
    from harness.sandbox.servers import PROTOCOL_TO_PROVIDER
    from harness.wire import fal as fal_wire

    provider = PROTOCOL_TO_PROVIDER.get(str(target.get("protocol")))
    if provider is None or provider not in profiles:
        return None
    model = str(target.get("model") or "")
    if provider == "fal":
        model = fal_wire.gemini_model(model) or model
    return profiles[provider], model


def profile_draws(profile: ProviderProfile, model: str, n: int = PROFILE_DRAWS, seed: int = 0) -> Array:
    """``n`` end-to-end delays (simulated seconds) as the sandbox draws them for ``model``: generation times
    its speed factor, plus the body's transfer where the profile has one."""
    rng = np.random.default_rng(seed)
    lat = profile.latency
    draws = rng.lognormal(math.log(lat.median_s), lat.sigma, n) * profile.speed(model)
    if profile.transfer is not None:
        draws += rng.lognormal(math.log(profile.transfer.median_s), profile.transfer.sigma, n)
    return draws


def _rank_checks(usable: pd.DataFrame, profile_p50: Mapping[str, float]) -> list[RankCheck]:
    medians: dict[str, tuple[float, float]] = {}
    for target, group in usable.groupby("target", observed=True, sort=True):
        if str(target) not in profile_p50:
            continue
        q = quantile_interval(group["latency_ms"].to_numpy(float), 0.5)
        if q.value is None or q.low is None or q.high is None:
            continue
        medians[str(target)] = (q.value, (q.high - q.low) / 2)
    checks = []
    names = sorted(medians, key=lambda t: profile_p50[t])
    for i, fast in enumerate(names):
        for slow in names[i + 1:]:
            gap = profile_p50[slow] - profile_p50[fast]
            resolution = medians[fast][1] + medians[slow][1]
            if gap <= resolution:
                continue
            checks.append(RankCheck(faster=fast, slower=slow, profile_gap_ms=gap, resolution_ms=resolution,
                                    measured_faster_ms=medians[fast][0], measured_slower_ms=medians[slow][0],
                                    agrees=medians[fast][0] < medians[slow][0]))
    return checks


def recommend_time_scale(rows: Sequence[FidelityRow], time_scale: float) -> float | None:
    """The smallest scale of :data:`SCALE_LADDER` at which the worst target's deviation, taken as a fixed
    number of ms (the machine's delay does not shrink with the scale), would stay under
    :data:`MAX_DEVIATION_PCT` with :data:`SCALE_MARGIN` to spare; ``None`` when every row is faithful."""
    worst = max((r.deviation_pct for r in rows), default=0.0)
    if worst <= MAX_DEVIATION_PCT:
        return None
    need = time_scale * worst / MAX_DEVIATION_PCT * SCALE_MARGIN
    return next((s for s in SCALE_LADDER if s >= need), 1.0)


def fidelity_warning(rows: Sequence[FidelityRow], time_scale: float) -> str | None:
    """The warning to show when a target's median deviation exceeds :data:`MAX_DEVIATION_PCT`."""
    bad = [r for r in rows if not r.faithful]
    if not bad:
        return None
    worst = max(bad, key=lambda r: abs(r.deviation_pct))
    use = recommend_time_scale(rows, time_scale)
    advice = f"use ≥ {use:g}" if use is not None and use > time_scale else "use a larger scale"
    return (f"this machine cannot simulate scale {time_scale:g} faithfully; {advice} "
            f"({len(bad)} target(s) off by more than {MAX_DEVIATION_PCT:g} % of the intended median, worst "
            f"{worst.target}: {worst.deviation_pct:+.1f} %, {worst.deviation_p50_ms:+.1f} ms)")


def fidelity_report(attempts: pd.DataFrame, *, time_scale: float, targets: Sequence[Mapping[str, Any]] = (),
                    profiles: Mapping[str, ProviderProfile] | None = None, seed: int = 0) -> FidelityReport:
    """Rows, KS tests against the profiles, ranking checks and warning for one sandbox run.

    ``targets``: the run's frozen targets (``name``, ``protocol``, ``model``), to find each target's profile;
    ``profiles``: the profiles the run used (the defaults when ``None``; a run with ``--sandbox-profile``
    should pass its own).
    """
    if profiles is None:
        from harness.sandbox.profiles import DEFAULT_PROFILES

        profiles = DEFAULT_PROFILES
    rows = fidelity_rows(attempts)
    usable = _usable(attempts)
    by_name = {str(t.get("name")): t for t in targets}
    profile_p50: dict[str, float] = {}
    out = []
    for row in rows:
        spec = profile_for(by_name[row.target], profiles) if row.target in by_name else None
        if spec is None:
            out.append(row)
            continue
        draws = profile_draws(*spec, seed=seed)
        p50 = float(np.median(draws)) * time_scale * 1000
        profile_p50[row.target] = p50
        group = usable[usable["target"] == row.target]
        measured_s = (group["latency_ms"].to_numpy(float) - poll_allowance_ms(group)) / 1000 / time_scale
        ks = sps.ks_2samp(measured_s, draws)
        out.append(FidelityRow(**{**row.__dict__, "profile_p50_ms": p50, "ks_n": int(measured_s.size),
                                  "ks_statistic": float(ks.statistic), "ks_p_value": float(ks.pvalue)}))
    return FidelityReport(time_scale=time_scale, rows=out, rank_checks=_rank_checks(usable, profile_p50),
                          warning=fidelity_warning(out, time_scale),
                          recommended_time_scale=recommend_time_scale(out, time_scale))


def fidelity_for_run(info: RunInfo, attempts: pd.DataFrame, targets: Sequence[Mapping[str, Any]]
                     ) -> FidelityReport | None:
    """:func:`fidelity_report` for a stored run (``None`` unless it ran on the sandbox), with the profiles it
    ran with: the defaults, overridden by its ``--sandbox-profile`` file when that file is still readable (if
    not, the defaults, and the warning says the profile comparison may not be the run's)."""
    if not info.sandbox:
        return None
    from harness.errors import ConfigError
    from harness.sandbox.profiles import load_profiles

    note = None
    profile_file = info.config.get("sandbox_profile")
    try:
        profiles = load_profiles(Path(profile_file) if profile_file else None)
    except ConfigError as exc:
        profiles, note = load_profiles(None), f"profile file not readable, compared with default profiles: {exc}"
    report = fidelity_report(attempts, time_scale=info.time_scale or 1.0, targets=targets, profiles=profiles)
    if note is None:
        return report
    return replace(report, warning="; ".join(w for w in (report.warning, note) if w))
