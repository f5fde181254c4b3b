"""Sample-size planning: how many requests per target a comparison needs before money is spent.

Two questions, each for a one-sided test at level ``alpha`` with the requested ``power``:

* **A relative change of a latency percentile** (``p50``/``p90``/``p95``/``p99``), by simulation. The test
  statistic is the log ratio of the candidate's to the baseline's sample percentile. Its null distribution is
  simulated (both samples drawn from the baseline distribution: lognormal with the given coefficient of
  variation, or resampled from a stored run's successful latencies); the critical value is its ``1 - alpha``
  quantile. Under a candidate that is ``(1 + change)`` times slower, every percentile scales by the same
  factor, so the statistic shifts by ``log(1 + change)`` and the power is the share of null draws above
  ``critical - log(1 + change)``. The smallest ``n`` (successful requests per side) reaching the power is
  found by doubling and bisection; it is never below the percentile's minimum sample
  (:func:`harness.stats.intervals.min_n_for_quantile`), under which ``harness compare`` skips the check.
  Requests to send are ``n / success rate``.
* **A drop in success rate**, in closed form (two proportions, normal approximation without continuity
  correction, Fleiss): ``n = (z_{1-α} √(2 p̄ (1 - p̄)) + z_{power} √(p₁(1 - p₁) + p₂(1 - p₂)))² / Δ²`` per side,
  with ``p₂ = p₁ - Δ`` and ``p̄`` their mean.

The gate flags a regression only when the change also exceeds its threshold; with the threshold equal to the
change to catch, no sample size gives more than about 50 % power. Plan for the change you want to catch and
set the gate's threshold below it. When the gate evaluates ``m`` checks it tests each at ``alpha / m``: pass
``checks=m`` to plan for that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from scipy import stats as sps

from harness.errors import ConfigError
from harness.globs import select_names
from harness.stats.intervals import CONFIDENCE, min_n_for_quantile

if TYPE_CHECKING:
    from harness.store import Store

Array = np.ndarray[Any, Any]
Sampler = Callable[[np.random.Generator, tuple[int, int]], Array]
"""Draws a ``(repetitions, n)`` array of latencies (ms) from the baseline distribution."""

DEFAULT_CV = 0.5
"""Coefficient of variation assumed without a stored run: the sandbox's openai profile (p95/p50 = 2.25) has
0.52; provider tables range from about 0.2 (gemini) to 0.8 (fal's queue)."""

PLAN_SCHEMA_VERSION: Final = 1
"""Version of ``harness plan --json``'s document (:func:`plan_document`). Bump it when a key is removed or
changes meaning; added keys keep the version."""

DEFAULT_REPETITIONS = 2000
MAX_N = 200_000


def lognormal_sampler(cv: float) -> Sampler:
    """Lognormal latencies with coefficient of variation ``cv`` (the median does not matter for ratios)."""
    if cv <= 0:
        raise ConfigError(f"--cv must be positive, got {cv}")
    sigma = math.sqrt(math.log1p(cv * cv))

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
        return rng.lognormal(0.0, sigma, size=shape)

    return draw


def empirical_sampler(latencies: Array) -> Sampler:
    """Resample a stored run's successful latencies, smoothed on the log scale.

    Plain resampling of a few dozen stored values makes a quantile of a large simulated sample settle on one or
    two of them: with an even count the median of each side jumps between the two middle values, so the
    simulated test's null spread never shrinks below their gap. The planned size then swung from 20 to 1,000
    requests between repeats of the same sandbox run, and when the gap exceeded the change to detect, no size
    was enough. Draws therefore come from the shrunk smoothed bootstrap (Silverman & Young, 1987) on log latency
    ``y``: ``ȳ + (y_i − ȳ + h·Z)·c``, Z standard normal, ``h`` Silverman's bandwidth over the ``m`` stored
    values and ``c`` the factor that gives the draws the stored values' unbiased variance. The kernel makes
    quantiles continuous; the shrinkage keeps the stored mean and spread (unshrunk, the kernel's variance would
    inflate the plan by about a quarter at m = 20). Scaling every latency scales every draw, so the plan
    depends on spread only.
    """
    values = np.asarray(latencies, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size < 2:
        raise ConfigError("the stored run has fewer than 2 successful latencies to resample")
    logs = np.log(values)
    centre = float(logs.mean())
    deviations = logs - centre
    bandwidth = silverman_bandwidth(logs)
    spread = float(deviations.var()) + bandwidth**2
    shrink = math.sqrt(float(logs.var(ddof=1)) / spread) if spread > 0 else 1.0

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
        picked = deviations[rng.integers(0, values.size, size=shape)]
        drawn: Array = np.exp(centre + (picked + bandwidth * rng.standard_normal(size=shape)) * shrink)
        return drawn

    return draw


def silverman_bandwidth(sample: Array) -> float:
    """Silverman's rule-of-thumb Gaussian kernel bandwidth, ``0.9·min(sd, IQR/1.349)·m^(-1/5)``; the standard
    deviation alone when the interquartile range is 0 (over half the values equal)."""
    sd = float(np.std(sample, ddof=1)) if sample.size > 1 else 0.0
    q75, q25 = (float(v) for v in np.percentile(sample, [75, 25]))
    iqr = (q75 - q25) / 1.349
    spread = min(sd, iqr) if iqr > 0 else sd
    return 0.9 * spread * math.pow(sample.size, -0.2)


def quantile_power(sampler: Sampler, n: int, q: float, change: float, alpha: float, *,
                   repetitions: int = DEFAULT_REPETITIONS, seed: int = 0) -> float:
    """Simulated power of the one-sided level-``alpha`` test of a ``change`` (relative) in quantile ``q``."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // (2 * n))
    stats: list[Array] = []
    for start in range(0, repetitions, chunk):
        reps = min(chunk, repetitions - start)
        a = np.quantile(sampler(rng, (reps, n)), q, axis=1, method="linear")
        b = np.quantile(sampler(rng, (reps, n)), q, axis=1, method="linear")
        stats.append(np.log(b) - np.log(a))
    null = np.concatenate(stats)
    critical = float(np.quantile(null, 1 - alpha))
    return float(np.mean(null + math.log1p(change) > critical))


def quantile_sample_size(sampler: Sampler, q: float, change: float, power: float, alpha: float, *,
                         repetitions: int = DEFAULT_REPETITIONS, seed: int = 0) -> tuple[int, float]:
    """Smallest successful requests per side giving ``power``, and the simulated power at that size."""
    if change <= 0:
        raise ConfigError(f"--relative-change must be positive, got {change}")
    low = min_n_for_quantile(q, CONFIDENCE)

    def pw(n: int) -> float:
        return quantile_power(sampler, n, q, change, alpha, repetitions=repetitions, seed=seed)

    p_low = pw(low)
    if p_low >= power:
        return low, p_low
    high = low
    p_high = p_low
    while p_high < power:
        low = high
        high *= 2
        if high > MAX_N:
            raise ConfigError(f"more than {MAX_N} requests per side would be needed to detect a "
                              f"{100 * change:g} % change with power {power}")
        p_high = pw(high)
    while high - low > max(1, low // 50):
        mid = (low + high) // 2
        p_mid = pw(mid)
        if p_mid >= power:
            high, p_high = mid, p_mid
        else:
            low = mid
    return high, p_high


def success_sample_size(baseline_rate: float, change: float, power: float, alpha: float) -> int:
    """Requests per side to detect a drop of ``change`` (fraction) from ``baseline_rate``, one-sided."""
    if not 0 < baseline_rate <= 1:
        raise ConfigError(f"--baseline-rate must be in (0, 1], got {baseline_rate}")
    if not 0 < change < baseline_rate:
        raise ConfigError(f"--change must be positive and below the baseline rate, got {change}")
    p1, p2 = baseline_rate, baseline_rate - change
    pbar = (p1 + p2) / 2
    za, zb = float(sps.norm.ppf(1 - alpha)), float(sps.norm.ppf(power))
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((root / change) ** 2)


@dataclass(frozen=True)
class TargetPlan:
    """The plan for one target (``target`` is ``None`` for a target-free plan).

    ``successes``: successful requests per side the test needs (for success-rate plans, equal to
    ``requests``); ``requests``: requests to send per side; ``power``: achieved (simulated for percentiles,
    nominal for success); ``cost_usd``: ``requests`` x ``price_per_request_usd`` when the price is known.
    """

    target: str | None
    successes: int
    requests: int
    power: float
    success_rate: float
    price_per_request_usd: float | None
    cost_usd: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(power: float, alpha: float, checks: int) -> float:
    """The per-check one-sided level ``alpha / checks``, after checking the inputs."""
    if not 0.5 <= power < 1:
        raise ConfigError(f"--power must be in [0.5, 1), got {power}")
    if not 0 < alpha < 0.5:
        raise ConfigError(f"--alpha must be in (0, 0.5), got {alpha}")
    if checks < 1:
        raise ConfigError(f"--checks must be at least 1, got {checks}")
    return alpha / checks


def plan_quantile(q: float, change: float, power: float, alpha: float, *, sampler: Sampler, success_rate: float,
                  price_per_request_usd: float | None, target: str | None, source: str,
                  repetitions: int = DEFAULT_REPETITIONS, seed: int = 0) -> TargetPlan:
    """Plan a latency-percentile comparison for one target."""
    if not 0 < success_rate <= 1:
        raise ConfigError(f"success rate must be in (0, 1], got {success_rate}")
    n, achieved = quantile_sample_size(sampler, q, change, power, alpha, repetitions=repetitions, seed=seed)
    requests = math.ceil(n / success_rate)
    cost = requests * price_per_request_usd if price_per_request_usd is not None else None
    return TargetPlan(target, n, requests, achieved, success_rate, price_per_request_usd, cost, source)


def plan_success(baseline_rate: float, change: float, power: float, alpha: float, *,
                 price_per_request_usd: float | None, target: str | None, source: str) -> TargetPlan:
    """Plan a success-rate comparison for one target."""
    n = success_sample_size(baseline_rate, change, power, alpha)
    cost = n * price_per_request_usd if price_per_request_usd is not None else None
    return TargetPlan(target, n, n, power, baseline_rate, price_per_request_usd, cost, source)


PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
"""The latency percentiles a plan can target, by name."""
Metric = Literal["p50", "p90", "p95", "p99", "success"]


@dataclass(frozen=True)
class Baseline:
    """What one target's plan starts from: its successful latencies (ms; ``None``: assume a lognormal
    spread), success rate, price per request (USD, ``None`` when unknown) and where these came from."""

    target: str | None
    latencies: Array | None
    success_rate: float
    price_usd: float | None
    source: str


def baselines_from_run(store: Store, run_id: str, patterns: Sequence[str] = ()) -> list[Baseline]:
    """Each target of the stored run ``run_id`` (those ``patterns`` select, names or globs) as a baseline:
    its successful requests' latencies to resample, its success rate and its mean cost per request."""
    from harness.stats.requests import INPUT_COLUMNS, logical_requests
    from harness.stats.table import provider_table
    from harness.store import runs as run_store

    info = run_store.get_run(store, run_id)
    frame = run_store.attempts_frame(store, [info.id], columns=list(INPUT_COLUMNS), with_challenge=False)
    if frame.empty:
        raise ConfigError(f"run {info.id} has no attempts to plan from")
    if patterns:
        keep, _ = select_names([str(t) for t in frame["target"].unique()], patterns)
        if not keep:
            raise ConfigError(f"--target {', '.join(patterns)} matches no target of run {info.id}")
        frame = frame[frame["target"].isin(keep)]
    rows = {r["target"]: r for r in provider_table(frame)}
    out = []
    for target, group in logical_requests(frame).groupby("target", sort=True):
        row = rows[str(target)]
        ok = group[group["ok"].astype(bool)]
        price = row["cost_total_usd"] / row["n"] if row["cost_total_usd"] else None
        out.append(Baseline(str(target), ok["latency_ms"].to_numpy(dtype=float), row["success_rate"], price,
                            f"run {info.id}: {len(ok)} successful latencies resampled"))
    return out


def assumed_baselines(patterns: Sequence[str], targets_file: Path | None, *, success_rate: float,
                      cv: float) -> list[Baseline]:
    """Baselines without a stored run: a lognormal spread with coefficient of variation ``cv``, the given
    success rate, and each selected catalog target's price (one target-free baseline without ``patterns``)."""
    from harness.targets import load_targets, select

    named: list[tuple[str | None, float | None]] = (
        [(t.name, t.price_per_image_usd) for t in select(load_targets(targets_file), tuple(patterns))]
        if patterns else [(None, None)])
    return [Baseline(name, None, success_rate, price, f"lognormal, cv {cv:g}") for name, price in named]


@dataclass(frozen=True)
class PlanAsk:
    """What a plan must detect, and how surely. ``relative_change``: the percentile's relative increase
    (0.15 = +15 %); ``change``: the success rate's drop (0.03 = 3 points); ``baseline_rate`` overrides each
    baseline's success rate; ``price_usd`` each baseline's price; ``level`` is the per-check one-sided alpha
    (:func:`validate`); ``from_run`` names the run the baselines came from, if any."""

    metric: Metric
    relative_change: float
    change: float
    power: float
    alpha: float
    checks: int
    level: float
    baseline_rate: float | None = None
    baseline_ms: float | None = None
    price_usd: float | None = None
    cv: float | None = None
    repetitions: int = DEFAULT_REPETITIONS
    seed: int = 0
    from_run: str | None = None


def plan_targets(baselines: Sequence[Baseline], ask: PlanAsk) -> list[TargetPlan]:
    """One :class:`TargetPlan` per baseline."""
    plans: list[TargetPlan] = []
    for base in baselines:
        price = ask.price_usd if ask.price_usd is not None else base.price_usd
        rate = ask.baseline_rate or base.success_rate
        if ask.metric == "success":
            basis = "closed form (Fleiss, no continuity correction)"
            if ask.from_run and ask.baseline_rate is None:
                basis += f"; success rate of run {ask.from_run}"
            plans.append(plan_success(rate, ask.change, ask.power, ask.level, price_per_request_usd=price,
                                      target=base.target, source=basis))
            continue
        sampler = empirical_sampler(base.latencies) if base.latencies is not None else \
            lognormal_sampler(ask.cv or DEFAULT_CV)
        plans.append(plan_quantile(PERCENTILES[ask.metric], ask.relative_change, ask.power, ask.level,
                                   sampler=sampler, success_rate=rate, price_per_request_usd=price,
                                   target=base.target, source=base.source, repetitions=ask.repetitions,
                                   seed=ask.seed))
    return plans


def plan_document(plans: Sequence[TargetPlan], ask: PlanAsk) -> dict[str, Any]:
    """The plan as ``harness plan --json`` prints it: the question, each target's plan and the totals
    (``total_cost_usd`` is ``None`` unless every target's price is known)."""
    costs = [p.cost_usd for p in plans]
    total = sum(c for c in costs if c is not None) if all(c is not None for c in costs) else None
    return {"schema_version": PLAN_SCHEMA_VERSION, "metric": ask.metric, "power": ask.power, "alpha": ask.alpha, "checks": ask.checks,
            "per_check_alpha": ask.level,
            "relative_change": ask.relative_change if ask.metric != "success" else None,
            "change": ask.change if ask.metric == "success" else None, "baseline_ms": ask.baseline_ms,
            "targets": [p.to_dict() for p in plans], "total_requests": sum(p.requests for p in plans),
            "total_cost_usd": total}
