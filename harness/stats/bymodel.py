"""One model, every provider: ``harness stats RUN --by model``.

Targets that serve the same model (the attempts' ``model`` column, the catalog's canonical ``model_name``)
are ranked against each other. Per model, a :class:`ModelView` holds its providers in rank order with the
provider table's own figures and intervals (:class:`harness.stats.table.ProviderRow`), a bootstrap interval
of the cost per successful image, and a pairwise test of every two providers saying which differences the
data support:

* **latency** (p50; TTFB or time to image p50 too when ranking by them): the Mann–Whitney U test of
  ``harness compare`` (:func:`harness.stats.twosample.quantile_shift`), Holm-adjusted across the model's
  pairs; a difference is *supported* when the adjusted p-value is below ``alpha`` **and** the percentile-bootstrap
  95 % interval of the median ratio (faster / slower − 1) lies below 0, so the statement is about medians and
  not only about the distributions' order. Pairs where a side has fewer than 6 successful requests (the p50's
  own minimum) are not tested;
* **success** (and **goodput** when an objective is set): Newcombe's hybrid score interval of the difference
  of the rates, its dual p-value (:func:`harness.stats.pairwise.newcombe_p`), Holm-adjusted across the
  model's pairs.

Holm (step-down Bonferroni) controls the family-wise error rate per model and metric, as ``compare``'s
Bonferroni does, and never finds less. Cost per image is ranked and shown with its interval but not tested.
A model with one provider is listed with a note and not ranked.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from itertools import combinations
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.stats.bootstrap import DEFAULT_RESAMPLES
from harness.stats.goodput import DEFAULT_MEASURE, Measure, format_slo
from harness.stats.intervals import CONFIDENCE, SuccessLatencyFigures, min_n_for_quantile
from harness.stats.pairwise import holm, newcombe_p, ratio_interval
from harness.stats.requests import logical_requests
from harness.stats.table import ProviderRow, provider_rows
from harness.stats.twosample import quantile_shift, rate_shift

MODEL_VIEW_SCHEMA_VERSION: Final = 1
"""Version of a model view's JSON form (``harness stats RUN --by model --json``)."""

RankBy = Literal["p50", "success", "cost", "ttfb", "time_to_image", "goodput"]
RANK_BY: Final[dict[str, tuple[str, bool, str]]] = {
    "p50": ("p50_ms", False, "latency p50 (fastest first)"),
    "success": ("success_rate", True, "success rate (most reliable first)"),
    "cost": ("cost_per_image_usd", False, "cost per successful image (cheapest first)"),
    "ttfb": ("ttfb_p50_ms", False, "TTFB p50 (first byte soonest first)"),
    "time_to_image": ("time_to_image_p50_ms", False, "time to image p50 (fastest first)"),
    "goodput": ("goodput", True, "goodput within {slo} (most often within first)"),
}
"""``--rank-by`` names: the row field ranked on, whether higher is better, and how the title says it."""

TIE: Final = 1e-9
"""Relative difference below which two figures tie (sums of the same price differ in their last bits)."""

Metric = Literal["latency_p50", "success_rate", "goodput", "ttfb_p50", "time_to_image_p50"]
_SAMPLE_COLUMNS: Final[dict[str, str]] = {"latency_p50": "latency_ms", "ttfb_p50": "ttfb_ms",
                                          "time_to_image_p50": "time_to_image_ms"}
_METRIC_WORDS: Final[dict[str, tuple[str, str]]] = {
    "latency_p50": ("faster than", "p50"), "ttfb_p50": ("first byte sooner than", "TTFB p50"),
    "time_to_image_p50": ("image sooner than", "time to image p50"),
    "success_rate": ("more reliable than", "success"),
    "goodput": ("more often within the objective than", "goodput"),
}
LATENCY_METHOD: Final = ("Mann–Whitney U, Holm-adjusted across the model's pairs; stated when the adjusted p < "
                         "{alpha:g} and the percentile-bootstrap 95 % interval of the median ratio excludes 0")
SUCCESS_METHOD: Final = ("Newcombe's hybrid score interval of the difference, dual p-value Holm-adjusted across "
                         "the model's pairs; stated when the adjusted p < {alpha:g}")
COST_METHOD: Final = "percentile bootstrap over requests of Σ cost / Σ images (shown, not tested)"


class _ModelProviderHead(BaseModel):
    """Which provider of a model a :class:`ModelProvider` describes, and its rank (its first fields)."""

    rank: int | None = Field(description="1 = best on the ranked figure; ties share a rank; null when the "
                                         "figure is withheld or the model has one provider")
    target: str = Field(description="the target (model@provider)")
    provider: str = Field(description="the target's provider")
    label: str = Field(description="how lines name it: @provider, or the target when two share a provider")
    n: int = Field(description="logical requests sent")
    not_sent: int = Field(description="requests recorded as never sent (left out of every other figure)")


class ModelProvider(SuccessLatencyFigures, _ModelProviderHead):
    """One provider of a model, with the provider table's figures (95 % intervals) and its rank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttfb_p50_ms: float | None
    ttfb_p50_ci_low_ms: float | None
    ttfb_p50_ci_high_ms: float | None
    time_to_image_p50_ms: float | None
    time_to_image_p50_ci_low_ms: float | None
    time_to_image_p50_ci_high_ms: float | None
    cost_per_image_usd: float | None = Field(description="everything billed / successful images (USD)")
    cost_per_image_ci_low_usd: float | None = Field(description="bootstrap 95 % interval, lower end (USD)")
    cost_per_image_ci_high_usd: float | None = Field(description="bootstrap 95 % interval, upper end (USD)")
    slo_ms: float | None = None
    goodput: float | None = None
    goodput_ci_low: float | None = None
    goodput_ci_high: float | None = None
    withheld: dict[str, str] = Field(description="{field: reason} for every figure withheld (the row's own)")


class PairwiseDifference(BaseModel):
    """One metric compared between two providers of a model.

    ``better``/``worse`` are the targets in the order the estimate favours; ``estimate`` and its interval are
    ``better / worse − 1`` of the medians for latency metrics (negative: faster) and ``better − worse`` of the
    rates for success (positive). ``supported``: the data support the difference at family-wise ``alpha``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Metric
    better: str
    worse: str
    n_better: int = Field(description="observations of the better side (successes for latency, requests for success)")
    n_worse: int
    change_kind: Literal["relative", "points"]
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    test: str | None = Field(None, description="Mann-Whitney U or Newcombe; null when not tested")
    p_value: float | None = None
    p_adjusted: float | None = Field(None, description="Holm-adjusted across the model's pairs for this metric")
    supported: bool = False
    statement: str = Field("", description="the difference in words (empty when not tested)")
    reason: str = Field("", description="why the pair was not tested")


class ModelView(BaseModel):
    """The providers of one model in rank order and the differences between them the data support."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(MODEL_VIEW_SCHEMA_VERSION, description="version of this JSON form")
    model: str
    rank_by: RankBy
    ranked_on: str = Field(description="the ranked figure in words")
    providers: list[ModelProvider]
    differences: list[PairwiseDifference]
    note: str | None = Field(None, description="why the model is not ranked (one provider)")
    alpha: float = Field(description="family-wise error rate per model and metric")
    resamples: int
    seed: int
    methods: dict[str, str] = Field(description="{metric: how it was tested}")

    @property
    def supported(self) -> list[PairwiseDifference]:
        return [d for d in self.differences if d.supported]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:model-view:v{MODEL_VIEW_SCHEMA_VERSION}"
        schema["title"] = "ModelView"
        schema["description"] = ("One element of `harness stats RUN --by model --json`: the providers of one model "
                                 "in rank order and the pairwise differences the data support. *_ms in ms, *_usd "
                                 "in US dollars.")
        return schema


def _seed(base: int, *parts: str) -> int:
    seq = np.random.SeedSequence([base, *(zlib.crc32(p.encode()) for p in parts)])
    return int(seq.generate_state(1)[0])


def _labels(rows: Sequence[ProviderRow]) -> dict[str, str]:
    providers = [r.provider for r in rows]
    return {r.target: f"@{r.provider}" if providers.count(r.provider) == 1 else r.target for r in rows}


def _ranks(rows: Sequence[ProviderRow], rank_by: str) -> list[tuple[int | None, ProviderRow]]:
    field, higher, _ = RANK_BY[rank_by]
    valued = [(getattr(r, field), r) for r in rows]
    known = sorted(((v, r) for v, r in valued if v is not None), key=lambda vr: (-vr[0] if higher else vr[0],
                                                                                  vr[1].target))
    ranked: list[tuple[int | None, ProviderRow]] = []
    for i, (value, row) in enumerate(known):
        rank = ranked[-1][0] if i and math.isclose(value, known[i - 1][0], rel_tol=TIE) else i + 1
        ranked.append((rank, row))
    ranked.extend((None, r) for v, r in sorted(valued, key=lambda vr: vr[1].target) if v is None)
    return ranked


def _entry(rank: int | None, row: ProviderRow, label: str, cost_ci: tuple[float, float] | None) -> ModelProvider:
    keep = {k: getattr(row, k) for k in ModelProvider.model_fields if k in ProviderRow.model_fields}
    low, high = cost_ci if cost_ci else (None, None)
    return ModelProvider(**{**keep, "rank": rank, "label": label, "cost_per_image_ci_low_usd": _finite(low),
                            "cost_per_image_ci_high_usd": _finite(high)})


def _finite(value: float | None) -> float | None:
    """``None`` for a bound that is not a number (a resample without an image has no cost per image)."""
    return value if value is not None and math.isfinite(value) else None


def _pct(x: float) -> str:
    return f"{100 * x:+.0f} %".replace("-", "−")


def _points(x: float) -> str:
    return f"{100 * x:+.1f}".replace("-", "−")


def _p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def _latency_pairs(metric: Metric, requests: dict[str, pd.DataFrame], labels: dict[str, str], targets: list[str],
                   alpha: float, resamples: int, seed: int) -> list[PairwiseDifference]:
    column = _SAMPLE_COLUMNS[metric]
    samples: dict[str, Any] = {}
    for t in targets:
        group = requests[t]
        values = group.loc[group["ok"].to_numpy(dtype=bool), column] if column in group.columns else pd.Series([])
        samples[t] = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    need = min_n_for_quantile(0.5, CONFIDENCE)
    out: list[PairwiseDifference | None] = []
    tested: list[tuple[int, Any]] = []
    for a, b in combinations(targets, 2):
        xa, xb = samples[a], samples[b]
        if min(xa.size, xb.size) < need:
            out.append(PairwiseDifference(
                metric=metric, better=a, worse=b, n_better=int(xa.size), n_worse=int(xb.size),
                change_kind="relative", reason=f"needs at least {need} successful requests with a value per side "
                                               f"({labels[a]} {xa.size}, {labels[b]} {xb.size})"))
            continue
        faster, slower = (a, b) if np.median(xa) <= np.median(xb) else (b, a)
        shift = quantile_shift(samples[slower], samples[faster], 0.5, resamples=resamples,
                               seed=_seed(seed, metric, slower, faster))
        tested.append((len(out), (faster, slower, shift)))
        out.append(None)
    adjusted = holm([t[1][2].mw_p if math.isfinite(t[1][2].mw_p) else 1.0 for t in tested])
    words, figure = _METRIC_WORDS[metric]
    for (i, (faster, slower, shift)), p_adj in zip(tested, adjusted, strict=True):
        rel = shift.relative
        finite = math.isfinite(rel.estimate)
        supported = finite and p_adj < alpha and rel.high < 0
        statement = (f"{labels[faster]} {words} {labels[slower]}: {figure} {_pct(rel.estimate)} "
                     f"[{_pct(rel.low)}, {_pct(rel.high)}], Holm-adjusted {_p(p_adj)}") if finite else ""
        out[i] = PairwiseDifference(
            metric=metric, better=faster, worse=slower, n_better=shift.n_b, n_worse=shift.n_a,
            change_kind="relative", estimate=rel.estimate if finite else None,
            ci_low=rel.low if finite else None, ci_high=rel.high if finite else None, test="Mann-Whitney U",
            p_value=_finite(shift.mw_p), p_adjusted=p_adj, supported=supported, statement=statement)
    return [d for d in out if d is not None]


def _counts(row: ProviderRow, metric: Metric) -> tuple[int, int]:
    """``(successes, trials)`` of a proportion metric: success, or goodput against the objective."""
    if metric == "goodput":
        return (row.goodput_hits or 0, row.goodput_n or 0) if row.goodput is not None else (0, 0)
    return row.successes, row.n


def _rate_pairs(metric: Metric, rows: dict[str, ProviderRow], labels: dict[str, str], targets: list[str],
                alpha: float) -> list[PairwiseDifference]:
    out: list[PairwiseDifference | None] = []
    tested: list[tuple[int, str, str, float]] = []
    for a, b in combinations(targets, 2):
        (ka, na), (kb, nb) = _counts(rows[a], metric), _counts(rows[b], metric)
        if min(na, nb) == 0:
            why = "a side sent no request" if metric == "success_rate" else "a side's goodput is withheld"
            out.append(PairwiseDifference(metric=metric, better=a, worse=b, n_better=na, n_worse=nb,
                                          change_kind="points", reason=why))
            continue
        better, worse = (a, b) if ka * nb >= kb * na else (b, a)
        (kw, nw), (kbt, nbt) = _counts(rows[worse], metric), _counts(rows[better], metric)
        tested.append((len(out), better, worse, newcombe_p(kw, nw, kbt, nbt)))
        out.append(None)
    adjusted = holm([t[3] for t in tested])
    words, figure = _METRIC_WORDS[metric]
    for (i, better, worse, p), p_adj in zip(tested, adjusted, strict=True):
        (kw, nw), (kbt, nbt) = _counts(rows[worse], metric), _counts(rows[better], metric)
        diff = rate_shift(kw, nw, kbt, nbt).difference
        supported = p_adj < alpha and diff.estimate > 0
        statement = (f"{labels[better]} {words} {labels[worse]}: {figure} {_points(diff.estimate)} points "
                     f"[{_points(diff.low)}, {_points(diff.high)}], Holm-adjusted {_p(p_adj)}")
        out[i] = PairwiseDifference(
            metric=metric, better=better, worse=worse, n_better=nbt, n_worse=nw, change_kind="points",
            estimate=diff.estimate, ci_low=diff.low, ci_high=diff.high, test="Newcombe", p_value=p,
            p_adjusted=p_adj, supported=supported, statement=statement)
    return [d for d in out if d is not None]


def _cost_interval(group: pd.DataFrame, resamples: int, seed: int) -> tuple[float, float] | None:
    images = np.where(group["ok"].to_numpy(dtype=bool), group["n_images"].to_numpy(dtype=float), 0.0)
    return ratio_interval(group["cost_usd"].to_numpy(dtype=float), images, resamples=resamples, seed=seed)


def _check_view_options(rank_by: RankBy, slo_ms: float | None, alpha: float) -> None:
    if rank_by not in RANK_BY:
        raise ValueError(f"cannot rank by {rank_by!r}; choose from {', '.join(RANK_BY)}")
    if rank_by == "goodput" and slo_ms is None:
        raise ValueError("ranking by goodput needs an objective (slo_ms; --slo on the command line)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")


def _compared_metrics(rank_by: RankBy, slo_ms: float | None) -> list[Metric]:
    """The metrics a model's providers are compared on: p50 latency and success always, goodput with an
    objective, and the ranked latency when it is another one."""
    metrics: list[Metric] = ["latency_p50", "success_rate"]
    if slo_ms is not None:
        metrics.append("goodput")
    if rank_by in ("ttfb", "time_to_image"):
        metrics.append("ttfb_p50" if rank_by == "ttfb" else "time_to_image_p50")
    return metrics


def _methods(metrics: Sequence[Metric], alpha: float) -> dict[str, str]:
    """The method behind each compared metric's statements, and the cost interval's."""
    methods: dict[str, str] = {m: (LATENCY_METHOD if m in _SAMPLE_COLUMNS else SUCCESS_METHOD).format(alpha=alpha)
                               for m in metrics}
    methods["cost_per_image"] = COST_METHOD
    return methods


def _differences(metrics: Sequence[Metric], members: Sequence[ProviderRow], order: list[str],
                 samples: dict[str, pd.DataFrame], labels: dict[str, str], alpha: float, resamples: int,
                 seed: int) -> list[PairwiseDifference]:
    """Every pairwise difference of a model's providers (in rank ``order``) on each metric."""
    row_of = {r.target: r for r in members}
    differences: list[PairwiseDifference] = []
    for metric in metrics:
        if metric not in _SAMPLE_COLUMNS:
            differences.extend(_rate_pairs(metric, row_of, labels, order, alpha))
        else:
            differences.extend(_latency_pairs(metric, samples, labels, order, alpha, resamples, seed))
    return differences


def model_views(attempts: pd.DataFrame, *, rank_by: RankBy = "p50", timeout_ms: float | None = None,
                slo_ms: float | None = None, goodput_measure: Measure = DEFAULT_MEASURE, alpha: float = 0.05,
                resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> list[ModelView]:
    """One :class:`ModelView` per model of ``attempts`` (an ``attempts_frame`` of one or more runs): models
    with two or more providers first, each ranked on ``rank_by``, then models with one provider, each group
    sorted by name. ``slo_ms`` adds each provider's goodput; ``alpha`` is the family-wise level of the
    pairwise statements per model and metric; the bootstraps are seeded by ``seed``."""
    _check_view_options(rank_by, slo_ms, alpha)
    if attempts.empty:
        return []
    rows = provider_rows(attempts, timeout_ms=timeout_ms, slo_ms=slo_ms, goodput_measure=goodput_measure)
    requests = logical_requests(attempts)
    requests = requests[~requests["not_sent"].to_numpy(dtype=bool)]
    per_target = {str(t): g for t, g in requests.groupby("target", sort=True, observed=True)}
    empty = requests.iloc[0:0]
    metrics = _compared_metrics(rank_by, slo_ms)
    methods = _methods(metrics, alpha)
    ranked_on = RANK_BY[rank_by][2].format(slo=format_slo(slo_ms) if slo_ms is not None else "")
    by_model: dict[str, list[ProviderRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    views: list[ModelView] = []
    for model in sorted(by_model, key=lambda m: (len(by_model[m]) < 2, m)):
        members = by_model[model]
        labels = _labels(members)
        costs = {r.target: _cost_interval(per_target.get(r.target, empty), resamples, _seed(seed, "cost", r.target))
                 for r in members}
        head = dict(model=model, rank_by=rank_by, ranked_on=ranked_on, alpha=alpha, resamples=resamples, seed=seed,
                    methods=methods)
        if len(members) < 2:
            only = members[0]
            views.append(ModelView(
                **head, providers=[_entry(None, only, labels[only.target], costs[only.target])], differences=[],
                note=f"one provider ({only.provider}) serves {model} in this run: nothing to rank"))
            continue
        ranked = _ranks(members, rank_by)
        order = [r.target for _, r in ranked]
        differences = _differences(metrics, members, order, {t: per_target.get(t, empty) for t in order}, labels,
                                   alpha, resamples, seed)
        views.append(ModelView(**head, providers=[_entry(rank, r, labels[r.target], costs[r.target])
                                                  for rank, r in ranked], differences=differences))
    return views
