"""Baseline-versus-candidate checks and the regression verdict.

The two sides are paired by target (the same target in two runs, or under two prompt variants), or form a
single pair when each side holds one target (two targets compared head to head). For each pair every active
check of the gate (:mod:`harness.gate.config`) is evaluated on the logical requests of each side:

* ``latency_pXX`` / ``ttfb_pXX``: successful requests; bootstrap interval of the quantile difference, the
  relative change from the same replicates, and a Mann–Whitney U test. Skipped (never a regression) when a
  side has fewer requests than the percentile needs (the same rule ``harness stats`` uses to withhold it);
* ``success_rate``: eventual success, Newcombe interval of the difference;
* ``goodput`` (only with an objective, ``slo_ms``): the share of requests that succeeded within it
  (:func:`harness.stats.goodput.goodput_counts`), Newcombe interval of the difference. Skipped when a side has
  successes without the measured time (a run recorded before it was measured);
* ``score:<metric>``: per-challenge means of each side (challenge and variant when both sides have the same
  variants), paired; bootstrap over pairs of the mean difference, Wilcoxon signed-rank. Needs at least
  :data:`MIN_PAIRS` pairs. Absent when neither side has scores.
* ``judge`` (only with a judge, ``GateConfig.judge``): the judge's stored final verdicts between a baseline
  output and a candidate output of the same challenge (:func:`harness.judge.report.final_verdicts`). Each
  pair of images is one unit scored by the candidate's wins over the orders it was asked in (a tie counts
  half), so asking both orders never doubles the count; the candidate's win share gets a Wilson interval.
  A regression when the one-sided upper bound lies below ``0.5 - max_decrease``. Skipped without verdicts.

Verdict per check: ``regression`` when the change is worse than the threshold and the one-sided bound at
``alpha / m`` excludes no change (``m`` = checks evaluated); ``improved`` for the mirror image; ``ok``
otherwise; ``skipped`` when the data cannot answer.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.gate.config import QUANTILE_METRIC, GateConfig, Threshold
from harness.gate.trust import judge_signal, signal_name
from harness.stats.goodput import format_slo, goodput_counts
from harness.stats.intervals import CONFIDENCE, min_n_for_quantile, wilson
from harness.stats.requests import logical_requests
from harness.stats.twosample import paired_shift, quantile_shift, rate_shift

MIN_PAIRS = 6
"""Fewest matched challenges for a score check: below six, no two-sided 95 % sign-based interval exists."""

REGRESSION, IMPROVED, OK, SKIPPED = "regression", "improved", "ok", "skipped"

COMPARISON_SCHEMA_VERSION = 1
"""Version of :meth:`Comparison.to_dict`, the object ``harness compare --json`` prints."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its attempts, optional scores and the content hash of each challenge.

    ``scores`` has at least ``attempt_id, challenge_id, variant, metric, value`` (one row per scored image).
    """

    label: str
    attempts: pd.DataFrame
    scores: pd.DataFrame | None = None
    challenge_hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """One check of one pair.

    ``change`` is relative (``B / A - 1``) for latency and scores, absolute (fraction of requests) for success;
    ``change_low``/``change_high`` its 95 % interval; ``bound`` the one-sided bound at ``alpha / m`` the
    verdict rests on (lower for latency, upper for success and scores). ``baseline``/``candidate`` are in
    ``unit`` (ms, fraction of requests, score units). ``worse`` is the direction that counts against the
    candidate (``up`` for latency and lower-is-better scores, ``down`` for success and other scores).
    """

    pair: str
    check: str
    status: str
    unit: str
    change_kind: str
    threshold: float
    n_a: int
    n_b: int
    baseline: float | None = None
    candidate: float | None = None
    change: float | None = None
    change_low: float | None = None
    change_high: float | None = None
    bound: float | None = None
    test: str | None = None
    p_value: float | None = None
    reason: str = ""
    worse: str = "up"

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    """Every check of a comparison, the gate it used and notes about what could not be paired."""

    baseline: str
    candidate: str
    gate: GateConfig
    tests: int
    checks: list[CheckResult]
    notes: list[str]

    @property
    def per_check_alpha(self) -> float:
        """One-sided level of each evaluated check (Bonferroni)."""
        return self.gate.alpha / max(self.tests, 1)

    @property
    def regressions(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == REGRESSION]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "baseline": self.baseline, "candidate": self.candidate, "regressed": self.regressed,
            "alpha": self.gate.alpha, "tests": self.tests, "per_check_alpha": self.per_check_alpha,
            "resamples": self.gate.resamples, "seed": self.gate.seed, "bootstrap": "percentile",
            "slo_ms": self.gate.slo_ms, "slo_measure": self.gate.slo_measure if self.gate.slo_ms else None,
            "checks": [c.to_dict() for c in self.checks], "notes": self.notes,
        }


@dataclass(frozen=True)
class _Pair:
    label: str
    a: pd.DataFrame
    b: pd.DataFrame


def _pairs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[_Pair], list[str]]:
    targets_a, targets_b = sorted(a["target"].unique()), sorted(b["target"].unique())
    if len(targets_a) == 1 and len(targets_b) == 1:
        label = targets_a[0] if targets_a == targets_b else f"{targets_a[0]} → {targets_b[0]}"
        return [_Pair(label, a, b)], []
    common = [t for t in targets_a if t in set(targets_b)]
    notes = [f"only in {side}: {', '.join(only)}" for side, only in
             (("baseline", [t for t in targets_a if t not in common]),
              ("candidate", [t for t in targets_b if t not in common])) if only]
    if not common:
        raise ConfigError(f"nothing to compare: baseline targets ({', '.join(targets_a)}) and candidate targets "
                          f"({', '.join(targets_b)}) have none in common; select one target per side with --a/--b")
    return [_Pair(t, a[a["target"] == t], b[b["target"] == t]) for t in common], notes


def _seed(base: int, *parts: str) -> int:
    seq = np.random.SeedSequence([base, *(zlib.crc32(p.encode()) for p in parts)])
    return int(seq.generate_state(1)[0])


_Pending = tuple[str, str, Threshold, Callable[[float], CheckResult]]


def _quantile_check(pair: _Pair, name: str, threshold: Threshold, config: GateConfig) -> _Pending | CheckResult:
    match = QUANTILE_METRIC.match(name)
    assert match is not None and threshold.max_increase is not None
    column = "latency_ms" if match.group(1) == "latency" else "ttfb_ms"
    q = int(match.group(2)) / 100
    xa = pair.a.loc[pair.a["ok"].astype(bool), column].dropna().to_numpy(dtype=float)
    xb = pair.b.loc[pair.b["ok"].astype(bool), column].dropna().to_numpy(dtype=float)
    limit = threshold.max_increase
    need = min_n_for_quantile(q, CONFIDENCE)
    head = CheckResult(pair=pair.label, check=name, status=SKIPPED, unit="ms", change_kind="relative",
                       threshold=limit, n_a=int(xa.size), n_b=int(xb.size))
    if min(xa.size, xb.size) < need:
        return replace(head, reason=f"p{round(100 * q)} needs at least {need} successful requests per side "
                       f"(baseline {xa.size}, candidate {xb.size})")

    def run(alpha: float) -> CheckResult:
        shift = quantile_shift(xa, xb, q, resamples=config.resamples, seed=_seed(config.seed, pair.label, name))
        low, high = shift.relative_bounds(alpha)
        change = shift.relative.estimate
        status = OK
        if change > limit and low > 0:
            status = REGRESSION
        elif change < -limit and high < 0:
            status = IMPROVED
        return replace(
            head, status=status, baseline=shift.a, candidate=shift.b, change=change, change_low=shift.relative.low,
            change_high=shift.relative.high, bound=low, test="Mann-Whitney U", p_value=shift.mw_p,
            reason=f"{_pct(change)} vs allowed +{100 * limit:g} %; one-sided lower bound {_pct(low)}")

    return pair.label, name, threshold, run


def _success_check(pair: _Pair, threshold: Threshold) -> _Pending:
    assert threshold.max_decrease is not None
    limit = threshold.max_decrease
    ka, na = int(pair.a["ok"].astype(bool).sum()), len(pair.a)
    kb, nb = int(pair.b["ok"].astype(bool).sum()), len(pair.b)

    def run(alpha: float) -> CheckResult:
        shift = rate_shift(ka, na, kb, nb)
        high, low = shift.upper_bound(alpha), shift.lower_bound(alpha)
        change = shift.difference.estimate
        status = OK
        if change < -limit and high < 0:
            status = REGRESSION
        elif change > limit and low > 0:
            status = IMPROVED
        return CheckResult(
            pair=pair.label, check="success_rate", status=status, unit="rate", change_kind="points",
            threshold=limit, worse="down", n_a=na, n_b=nb, baseline=shift.a, candidate=shift.b, change=change,
            change_low=shift.difference.low, change_high=shift.difference.high, bound=high, test="Newcombe",
            reason=f"{_points(change)} vs allowed −{100 * limit:g} points; one-sided upper bound {_points(high)}")

    return pair.label, "success_rate", threshold, run


def _goodput_check(pair: _Pair, threshold: Threshold, config: GateConfig) -> _Pending | CheckResult:
    """Share of requests that succeeded within the objective, compared like the success rate."""
    assert threshold.max_decrease is not None and config.slo_ms is not None
    limit, slo = threshold.max_decrease, config.slo_ms
    ca = goodput_counts(pair.a, slo, config.slo_measure)
    cb = goodput_counts(pair.b, slo, config.slo_measure)
    within = f"within {format_slo(slo)} ({config.slo_measure.replace('_', ' ')})"
    head = CheckResult(pair=pair.label, check="goodput", status=SKIPPED, unit="rate", change_kind="points",
                       threshold=limit, worse="down", n_a=ca.n, n_b=cb.n)
    if ca.unjudged or cb.unjudged:
        return replace(head, reason=f"goodput {within} cannot be judged: {ca.unjudged + cb.unjudged} successful "
                       f"request(s) have no recorded {config.slo_measure.replace('_', ' ')}; set slo_measure to "
                       "latency for runs recorded before it was measured")
    if ca.n == 0 or cb.n == 0:
        return replace(head, reason="a side sent no request")

    def run(alpha: float) -> CheckResult:
        shift = rate_shift(ca.hits, ca.n, cb.hits, cb.n)
        high, low = shift.upper_bound(alpha), shift.lower_bound(alpha)
        change = shift.difference.estimate
        status = OK
        if change < -limit and high < 0:
            status = REGRESSION
        elif change > limit and low > 0:
            status = IMPROVED
        return replace(
            head, status=status, baseline=shift.a, candidate=shift.b, change=change,
            change_low=shift.difference.low, change_high=shift.difference.high, bound=high, test="Newcombe",
            reason=f"share {within}: {_points(change)} vs allowed −{100 * limit:g} points; one-sided upper bound "
                   f"{_points(high)}")

    return pair.label, "goodput", threshold, run


def _unit_means(scores: pd.DataFrame, units: list[str]) -> pd.Series:
    """Mean score per pairing unit (challenge, or challenge and variant) over its samples and images."""
    means: pd.Series = scores.groupby(units, observed=True)["value"].mean()
    return means


def _score_groups(sa: pd.DataFrame, sb: pd.DataFrame) -> list[tuple[str, str | None, bool]]:
    """``(metric, scorer, higher_is_better)`` for every score series present on either side; values of
    different scorers are on different scales and are never pooled."""
    both = pd.concat([sa, sb], ignore_index=True)
    if "scorer" not in both.columns:
        both = both.assign(scorer=None)
    if "higher_is_better" not in both.columns:
        both = both.assign(higher_is_better=True)
    groups = both.groupby(["metric", "scorer"], dropna=False, observed=True, sort=True)["higher_is_better"].first()
    return [(str(m), None if pd.isna(sc) else str(sc), bool(h)) for (m, sc), h in groups.items()]


def _score_checks(pair: _Pair, sa: pd.DataFrame, sb: pd.DataFrame, config: GateConfig,
                  trust: Mapping[str, str | None] | None = None) -> list[_Pending | CheckResult]:
    out: list[_Pending | CheckResult] = []
    ids_a = set(pair.a["id"].tolist()) if "id" in pair.a.columns else set()
    ids_b = set(pair.b["id"].tolist()) if "id" in pair.b.columns else set()
    sa = sa[sa["attempt_id"].isin(ids_a)]
    sb = sb[sb["attempt_id"].isin(ids_b)]
    same_variants = set(sa["variant"]) == set(sb["variant"])
    units = ["challenge_id", "variant"] if same_variants else ["challenge_id"]
    groups = _score_groups(sa, sb)
    scorers = {scorer for _, scorer, _ in groups}
    for metric, scorer, higher_is_better in groups:
        threshold = config.score_threshold(metric)
        if threshold is None or threshold.max_decrease is None:
            continue
        name = f"score:{metric}" + (f" [{scorer}]" if len(scorers) > 1 and scorer else "")

        def select(frame: pd.DataFrame, metric: str = metric, scorer: str | None = scorer) -> pd.DataFrame:
            mask = frame["metric"] == metric
            if scorer is not None and "scorer" in frame.columns:
                mask &= frame["scorer"] == scorer
            return frame[mask]

        joined = pd.concat([_unit_means(select(sa), units).rename("a"), _unit_means(select(sb), units).rename("b")],
                           axis=1, join="inner")
        head = CheckResult(pair=pair.label, check=name, status=SKIPPED, unit=metric, change_kind="relative",
                           threshold=threshold.max_decrease, n_a=len(joined), n_b=len(joined),
                           worse="down" if higher_is_better else "up")
        if trust is not None:
            signal = signal_name(metric, scorer)
            distrust = trust.get(signal, f"no votes on these runs measure {signal}")
            if distrust is not None:
                out.append(replace(head, reason=f"not used: {distrust}"))
                continue
        if len(joined) < MIN_PAIRS:
            out.append(replace(head, reason=f"needs at least {MIN_PAIRS} challenges scored on both sides, found "
                               f"{len(joined)}"))
            continue
        if float(joined["a"].mean()) <= 0:
            out.append(replace(head, reason="the baseline's mean score is not positive, so a relative change is "
                               "undefined"))
            continue
        xa, xb = joined["a"].to_numpy(dtype=float), joined["b"].to_numpy(dtype=float)
        out.append((pair.label, name, threshold, _score_run(xa, xb, head, higher_is_better, config)))
    return out


def _score_run(xa: Any, xb: Any, head: CheckResult, higher_is_better: bool, config: GateConfig
               ) -> Callable[[float], CheckResult]:
    """The deferred paired check; for a lower-is-better metric a rise is the regression."""
    limit = head.threshold
    sign = 1.0 if higher_is_better else -1.0

    def run(alpha: float) -> CheckResult:
        shift = paired_shift(xa, xb, resamples=config.resamples, seed=_seed(config.seed, head.pair, head.check))
        low, high = shift.lower_bound(alpha) / shift.a, shift.upper_bound(alpha) / shift.a
        change = shift.relative.estimate
        worse_bound = high if higher_is_better else low
        better_bound = low if higher_is_better else high
        status = OK
        if sign * change < -limit and sign * worse_bound < 0:
            status = REGRESSION
        elif sign * change > limit and sign * better_bound > 0:
            status = IMPROVED
        direction = "−" if higher_is_better else "+"
        side = "upper" if higher_is_better else "lower"
        return replace(
            head, status=status, baseline=shift.a, candidate=shift.b, change=change,
            change_low=shift.relative.low, change_high=shift.relative.high, bound=worse_bound,
            test="Wilcoxon signed-rank", p_value=shift.wilcoxon_p,
            reason=f"{_pct(change)} vs allowed {direction}{100 * limit:g} %; one-sided {side} bound "
                   f"{_pct(worse_bound)}")

    return run


def _judge_check(pair: _Pair, verdicts: pd.DataFrame | None, judge: str, threshold: Threshold,
                 trust: Mapping[str, str | None] | None) -> _Pending | CheckResult:
    """The candidate's win share in the judge's verdicts between the pair's baseline and candidate outputs."""
    assert threshold.max_decrease is not None
    limit = threshold.max_decrease
    ids_a = set(pair.a["id"].tolist()) if "id" in pair.a.columns else set()
    ids_b = set(pair.b["id"].tolist()) if "id" in pair.b.columns else set()
    units: dict[tuple[int, int], list[float]] = {}
    for row in (verdicts.itertuples() if verdicts is not None else ()):
        if row.verdict not in ("first", "second", "tie"):
            continue
        first, second = row.first_attempt_id, row.second_attempt_id
        if first in ids_a and second in ids_b:
            key, cand_first = (int(first), int(second)), False
        elif first in ids_b and second in ids_a:
            key, cand_first = (int(second), int(first)), True
        else:
            continue
        won = 0.5 if row.verdict == "tie" else float((row.verdict == "first") == cand_first)
        units.setdefault(key, []).append(won)
    n = len(units)
    head = CheckResult(pair=pair.label, check="judge", status=SKIPPED, unit="rate", change_kind="points",
                       threshold=limit, worse="down", n_a=n, n_b=n)
    if trust is not None:
        signal = judge_signal(judge)
        distrust = trust.get(signal, f"no votes on these runs measure {signal}")
        if distrust is not None:
            return replace(head, reason=f"not used: {distrust}")
    if n == 0:
        return replace(head, reason=f"no stored verdict of {judge} between a baseline and a candidate output of "
                       f"the same challenge; ask it with `harness judge RUN --judge {judge}` (targets of one run)")
    wins = sum(sum(v) / len(v) for v in units.values())

    def run(alpha: float) -> CheckResult:
        interval, bounds = wilson(wins, n), wilson(wins, n, 1 - 2 * alpha)
        share = interval.estimate
        status = OK
        if bounds.high < 0.5 - limit:
            status = REGRESSION
        elif bounds.low > 0.5 + limit:
            status = IMPROVED
        return replace(
            head, status=status, baseline=1 - share, candidate=share, change=share - 0.5,
            change_low=interval.low - 0.5, change_high=interval.high - 0.5, bound=bounds.high - 0.5, test="Wilson",
            reason=f"{judge} prefers the candidate in {100 * share:.0f} % of {n} image pairs (ties half) vs allowed "
                   f"{100 * (0.5 - limit):g} %; one-sided upper bound {100 * bounds.high:.0f} %")

    return pair.label, "judge", threshold, run


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f} %"


def _points(x: float) -> str:
    return f"{100 * x:+.1f} points"


def compare(a: Side, b: Side, config: GateConfig | None = None,
            trust: Mapping[str, str | None] | None = None, verdicts: pd.DataFrame | None = None) -> Comparison:
    """Evaluate every active check of ``config`` (defaults without one) between baseline ``a`` and candidate ``b``.

    ``trust`` (:func:`harness.gate.trust.metric_trust`, when the gate sets ``min_agreement``): per quality
    signal, ``None`` if the gate may use it, else the reason it may not; a score check whose metric is not
    trusted is reported skipped with that reason and not counted among the tests; so is the judge check.
    ``verdicts``: the final verdicts of ``config.judge`` on the two sides' outputs (columns of
    :class:`harness.store.judgements.Judgement`), for the judge check."""
    config = config or GateConfig()
    for side, name in ((a, "baseline"), (b, "candidate")):
        if side.attempts.empty:
            raise ConfigError(f"the {name} ({side.label}) has no attempts")
    req_a, req_b = logical_requests(a.attempts), logical_requests(b.attempts)
    pairs, notes = _pairs(req_a, req_b)
    changed = sorted(c for c, h in a.challenge_hashes.items() if c in b.challenge_hashes and b.challenge_hashes[c] != h)
    if changed:
        notes.append(f"{len(changed)} challenge(s) differ in content between the sides (prompt or references "
                     f"changed): {', '.join(changed[:10])}{' …' if len(changed) > 10 else ''}")
    scored = a.scores is not None and b.scores is not None and not a.scores.empty and not b.scores.empty
    if (a.scores is not None and not a.scores.empty) != (b.scores is not None and not b.scores.empty):
        notes.append("scores exist on one side only: run `harness score` on both runs to compare quality")
    items: list[_Pending | CheckResult] = []
    for pair in pairs:
        for name, threshold in config.active().items():
            if QUANTILE_METRIC.match(name):
                items.append(_quantile_check(pair, name, threshold, config))
            elif name == "success_rate":
                items.append(_success_check(pair, threshold))
            elif name == "goodput" and config.slo_ms is not None:
                items.append(_goodput_check(pair, threshold, config))
            elif name == "judge" and config.judge is not None:
                items.append(_judge_check(pair, verdicts, config.judge, threshold, trust))
        if scored:
            assert a.scores is not None and b.scores is not None
            items.extend(_score_checks(pair, a.scores, b.scores, config, trust))
    tests = sum(1 for item in items if not isinstance(item, CheckResult))
    alpha = config.alpha / max(tests, 1)
    results = [item if isinstance(item, CheckResult) else item[3](alpha) for item in items]
    return Comparison(a.label, b.label, config, tests, results, notes)
