"""The gate file: which changes count as regressions, and at what false-alarm level.

A YAML file (``harness compare --gate FILE``); every key is optional and the defaults apply without one::

    alpha: 0.05          # chance of a false alarm per comparison when nothing changed (family-wise)
    resamples: 2000      # bootstrap replicates per latency or score check (percentile method)
    seed: 0              # bootstrap seed (results are reproducible)
    slo: 10s             # latency objective for goodput (also --slo); without one, goodput is not checked
    slo_measure: time_to_image   # or latency: the time compared with the objective
    checks:
      latency_p50:  {max_increase: 0.15}   # relative: +15 % of the baseline's median latency
      latency_p95:  {max_increase: 0.15}
      success_rate: {max_decrease: 0.03}   # absolute: 3 percentage points (as a fraction)
      scores:       {max_decrease: 0.02}   # relative: 2 % of the baseline's mean score, every score metric
      goodput:      {max_decrease: 0.03}   # absolute: 3 points of the share succeeding within slo
      judge:        {max_decrease: 0.0}    # absolute: the candidate's win share may sink 0 points below 50 %
      # also: latency_p90, latency_p99, ttfb_p50, ttfb_p95, "score:<metric>" for one score metric;
      # a check set to null is switched off.

Goodput (the share of requests that succeeded within ``slo``, :mod:`harness.stats.goodput`) is checked only
when an objective is set, in the file or with ``--slo``; like success it is compared with Newcombe's interval.

The judge check (``judge: MODEL@PROVIDER`` in the file, or ``harness compare --judge``) reads the stored
verdicts of that vision-model judge between the baseline's and the candidate's outputs of the same challenge
(:mod:`harness.judge`); without a judge it is not checked. With ``min_agreement`` it counts only when the
voters agree with the judge (:mod:`harness.gate.trust`, signal ``judge:MODEL@PROVIDER``).

A check flags a regression only when the change is worse than its threshold **and** the data support a
worsening: the one-sided bound of the change at level ``alpha / m`` excludes zero, where ``m`` is the number
of checks evaluated in the comparison (Bonferroni). So ``alpha`` bounds the false-alarm rate of the whole
comparison, however many targets and checks it has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, HarnessError
from harness.stats.goodput import DEFAULT_MEASURE, Measure, parse_slo

QUANTILE_METRIC = re.compile(r"^(latency|ttfb)_p(50|90|95|99)$")
SCORE_METRIC = re.compile(r"^score:(.+)$")


class Threshold(BaseModel):
    """How much worse a metric may get before it counts: ``max_increase`` for latencies (relative, 0.15 =
    +15 %), ``max_decrease`` for success rate (absolute fraction, 0.03 = 3 points) and scores (relative)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_increase: float | None = Field(default=None, ge=0, le=10)
    max_decrease: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one(self) -> Threshold:
        if (self.max_increase is None) == (self.max_decrease is None):
            raise ValueError("give exactly one of max_increase (latency) or max_decrease (success, scores)")
        return self


DEFAULT_CHECKS: dict[str, Threshold | None] = {
    "latency_p50": Threshold(max_increase=0.15),
    "latency_p95": Threshold(max_increase=0.15),
    "success_rate": Threshold(max_decrease=0.03),
    "goodput": Threshold(max_decrease=0.03),
    "scores": Threshold(max_decrease=0.02),
    "judge": Threshold(max_decrease=0.0),
}


class GateConfig(BaseModel):
    """A parsed gate file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    resamples: int = Field(default=2000, ge=200, le=100_000)
    seed: int = 0
    checks: dict[str, Threshold | None] = Field(default_factory=lambda: dict(DEFAULT_CHECKS))
    slo_ms: float | None = Field(default=None, gt=0)
    """Latency objective (ms) of the goodput check (``slo`` in the file, ``--slo``); None: goodput unchecked."""
    slo_measure: Measure = DEFAULT_MEASURE
    """The time compared with the objective: time to image (retries and waits included) or latency."""
    min_agreement: float | None = Field(default=None, gt=0, lt=1)
    """A score check counts only when the metric's agreement with the human votes on the compared runs has
    a 95 % Wilson lower end at least this share (:mod:`harness.gate.trust`); None: every metric counts."""
    judge: str | None = None
    """The vision-model judge (``MODEL@PROVIDER``) whose stored verdicts between the two sides' outputs make
    the ``judge`` check; None: no judge check."""

    @field_validator("judge")
    @classmethod
    def _judge(cls, value: str | None) -> str | None:
        """``MODEL@PROVIDER`` with a judge adapter for the provider (as ``harness judge --judge`` takes it)."""
        if value is None:
            return None
        from harness.judge.target import JudgeTarget

        try:
            return JudgeTarget.parse(value).spec
        except HarnessError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _slo(cls, data: Any) -> Any:
        """``slo: 10s`` in the file becomes ``slo_ms``; a bare number is refused (seconds or milliseconds?)."""
        if isinstance(data, dict) and "slo" in data:
            data = dict(data)
            value = data.pop("slo")
            if value is not None:
                try:
                    value = parse_slo(str(value))
                except ValueError as exc:
                    raise ValueError(f"slo: {exc}") from None
            data["slo_ms"] = value
        return data

    @model_validator(mode="after")
    def _known(self) -> GateConfig:
        for name, threshold in self.checks.items():
            if QUANTILE_METRIC.match(name):
                if threshold is not None and threshold.max_increase is None:
                    raise ValueError(f"checks.{name}: latency checks take max_increase (relative, 0.15 = +15 %)")
            elif name in ("success_rate", "goodput", "scores", "judge") or SCORE_METRIC.match(name):
                if threshold is not None and threshold.max_decrease is None:
                    raise ValueError(f"checks.{name}: takes max_decrease (success, goodput and judge: points as a "
                                     "fraction; scores: relative)")
            else:
                raise ValueError(f"checks: unknown check {name!r}; known: latency_p50/p90/p95/p99, "
                                 "ttfb_p50/p95, success_rate, goodput, scores, score:<metric>, judge")
        return self

    def active(self) -> dict[str, Threshold]:
        """The checks that are switched on (goodput only with an objective, judge only with a judge)."""
        return {k: v for k, v in self.checks.items() if v is not None and (k != "goodput" or self.slo_ms is not None)
                and (k != "judge" or self.judge is not None)}

    def score_threshold(self, metric: str) -> Threshold | None:
        """Threshold for score metric ``metric``: its own ``score:<metric>`` entry, else ``scores``."""
        key = f"score:{metric}"
        if key in self.checks:
            return self.checks[key]
        return self.checks.get("scores")


def load_gate(path: Path | None) -> GateConfig:
    """The gate in ``path``; defaults (merged check by check) for what the file leaves out; ``None``: defaults."""
    if path is None:
        return GateConfig()
    if not path.is_file():
        raise ConfigError(f"gate file {path} not found")
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping with alpha, resamples, seed, checks")
    checks = doc.get("checks", {})
    if not isinstance(checks, dict):
        raise ConfigError(f"{path}: checks must map check names to thresholds")
    merged = {**doc, "checks": {**DEFAULT_CHECKS, **checks}}
    try:
        return GateConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'gate'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
