"""Everything a report shows, read from the store through the stages' own modules (never recomputed here).

Provider statistics come from :mod:`harness.stats`, ratings from :mod:`harness.ratings`, CLIP scores from
:mod:`harness.store.scores`. A stage that has no data yet (no votes, no scores) is recorded in
``ReportData.absent`` with what to do about it, and the page says so instead of showing an empty section.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from harness import __version__
from harness.outcomes import TileOutcome as Outcome
from harness.outcomes import tile_outcome
from harness.quality.section import quality_section
from harness.records import RunInfo
from harness.report.leaderboard import LeaderboardSection
from harness.report.quality import QualityView, quality_view
from harness.report.sections import (
    ConsistencySection,
    ModelSection,
    SweepSection,
    TrendSection,
    TurnStripItem,
    consistency_sections,
    model_sections,
    sweep_sections,
    trend_sections,
    turn_strip_items,
)
from harness.scoring.summary import ScoreSummaryRow, summarise_scores, summary_rows
from harness.stats.fidelity import fidelity_rows, fidelity_warning
from harness.stats.source import effective_timeout_ms
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store
from harness.store import runs as run_store
from harness.store.scores import latest_scorer, scores_frame

MAX_CURVE_POINTS = 400
"""Latency curves are reduced to at most this many quantile points per target (the page stays light)."""
TIME_BINS = 24

LIBRARIES = ("httpx", "pydantic", "pandas", "numpy", "scipy", "pillow", "jinja2", "plotly", "fastapi",
             "open-clip-torch", "torch")


@dataclass
class GalleryOutput:
    """One target's output for a challenge variant in one run (or why there is none).

    ``label``: the target as the page names it (:func:`target_label`); ``error_kind`` and ``error`` (the whole
    message, never cut) are set when ``outcome`` is not ``ok``."""

    target: str
    model: str
    provider: str
    sha256: str | None
    ext: str | None
    width: int | None
    height: int | None
    error: str | None
    scores: dict[str, float] = field(default_factory=dict)
    label: str = ""
    run_id: str = ""
    outcome: Outcome = "ok"
    error_kind: str | None = None


@dataclass
class GalleryItem:
    """One challenge variant with every target's output (of every run in the report)."""

    challenge_id: str
    title: str
    kind: str
    category: str
    variant: str
    prompt: str
    references: list[dict[str, Any]]
    mask: dict[str, Any] | None
    outputs: list[GalleryOutput]


@dataclass
class ReportData:
    """The content of a report; ``absent`` maps a section to the reason it has no data.

    ``provider_rows``: the stats module's typed rows, ``row_labels`` the page's name of each (same order);
    ``fidelity_warnings``: per sandbox run whose latencies strayed from the intended delays, what to do."""

    title: str
    generated_at: str
    runs: list[RunInfo]
    versions: dict[str, str]
    window: tuple[str | None, str | None]
    sandbox: bool
    simulated_votes: bool
    provider_rows: list[ProviderRow]
    latency_curves: dict[str, list[float]]
    ttfb_curves: dict[str, list[float]]
    success_over_time: dict[str, list[tuple[str | float, float, int]]]
    error_mix: dict[str, dict[str, int]]
    gallery: list[GalleryItem]
    leaderboard: LeaderboardSection | None
    score_summary: list[ScoreSummaryRow]
    absent: dict[str, str] = field(default_factory=dict)
    row_labels: list[str] = field(default_factory=list)
    fidelity_warnings: dict[str, str] = field(default_factory=dict)
    turn_strips: list[TurnStripItem] = field(default_factory=list)
    model_sections: list[ModelSection] = field(default_factory=list)
    sweeps: list[SweepSection] = field(default_factory=list)
    trends: list[TrendSection] = field(default_factory=list)
    consistency: list[ConsistencySection] = field(default_factory=list)
    quality: QualityView | None = None
    slo_ms: float | None = None


def library_versions() -> dict[str, str]:
    """Versions of Python, the harness and the libraries that shape the numbers."""
    found = {"python": platform.python_version(), "harness": __version__}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _curve(values: np.ndarray[Any, Any]) -> list[float]:
    """Sorted values, reduced to at most :data:`MAX_CURVE_POINTS` evenly spaced quantiles."""
    if values.size == 0:
        return []
    ordered = np.sort(values)
    if ordered.size > MAX_CURVE_POINTS:
        ordered = np.quantile(ordered, np.linspace(0, 1, MAX_CURVE_POINTS))
    return [round(float(v), 2) for v in ordered]


def _iso(ts: float | None) -> str | None:
    return None if ts is None or np.isnan(ts) else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def run_names(runs: Sequence[RunInfo]) -> dict[str, str]:
    """Run id → the name a multi-run report shows for it: its label, or its id when the label is missing or
    shared with another of the runs (two runs labelled "nightly" must stay apart)."""
    labels = [r.label for r in runs]
    return {r.id: r.label if r.label and labels.count(r.label) == 1 else r.id for r in runs}


def target_label(target: str, run_id: str, runs: Sequence[RunInfo]) -> str:
    """What the page calls a target: its name, with the run's name in brackets when the report has several
    runs (the same target in two runs is two series)."""
    return target if len(runs) == 1 else f"{target} [{run_names(runs)[run_id]}]"


def _label_column(frame: pd.DataFrame, runs: list[RunInfo]) -> pd.Series:
    """Per attempt, :func:`target_label`. The store's text columns are categoricals, which do not
    concatenate with strings; they are read as plain strings here."""
    target = frame["target"].astype(str)
    if len(runs) == 1:
        return target
    return target + " [" + frame["run_id"].astype(str).map(run_names(runs)) + "]"


def _success_over_time(final: pd.DataFrame, elapsed: bool = False) -> dict[str, list[tuple[str | float, float, int]]]:
    """Per target label, the success rate in :data:`TIME_BINS` bins of request start time: (bin start, rate,
    requests). One run: bins over the run's window, labelled by UTC time. Several runs (``elapsed``): each
    run's targets over that run's own window, labelled by seconds since its first request, so runs made on
    different days share one axis."""
    if final.empty:
        return {}
    out: dict[str, list[tuple[str | float, float, int]]] = {}
    groups = final.groupby("run_id", sort=False, observed=True) if elapsed else [("", final)]
    for _, run_final in groups:
        start, end = float(run_final["started_at"].min()), float(run_final["started_at"].max())
        edges = np.linspace(start, end + 1e-6, TIME_BINS + 1)
        for label, group in run_final.groupby("label", sort=False):
            bins = np.digitize(group["started_at"].to_numpy(dtype=float), edges) - 1
            ok = group["ok"].to_numpy()
            series: list[tuple[str | float, float, int]] = []
            for b in range(TIME_BINS):
                in_bin = ok[bins == b]
                if in_bin.size:
                    at: str | float = round(float(edges[b]) - start, 1) if elapsed else (_iso(float(edges[b])) or "")
                    series.append((at, float(in_bin.mean()), int(in_bin.size)))
            out[str(label)] = series
    return out


def _score_map(scores: pd.DataFrame | None) -> dict[int, dict[str, float]]:
    """Attempt id → metric → value of the first output's scores."""
    out: dict[int, dict[str, float]] = {}
    if scores is not None and not scores.empty:
        first = scores[scores["output_idx"] == 0] if "output_idx" in scores.columns else scores
        for attempt_id, metric, value in zip(first["attempt_id"], first["metric"], first["value"], strict=True):
            out.setdefault(int(attempt_id), {})[str(metric)] = float(value)
    return out


def _tile(store_target: dict[str, Any], run: RunInfo, runs: list[RunInfo], key: tuple[str, str, str, str],
          images: pd.DataFrame, failed: pd.DataFrame, score_map: dict[int, dict[str, float]]) -> GalleryOutput:
    name, model, provider = str(store_target["name"]), str(store_target["model"]), str(store_target["provider"])
    label = target_label(name, run.id, runs)
    if key in images.index:
        o = images.loc[key]
        return GalleryOutput(name, model, provider, str(o["sha256"]), str(o["ext"]), int(o["width"]),
                             int(o["height"]), None, score_map.get(int(o["attempt_id"]), {}), label, run.id)
    if key not in failed.index:
        return GalleryOutput(name, model, provider, None, None, None, None, "no attempt recorded", {}, label,
                             run.id, "not run")
    err = failed.loc[key]
    kind = None if pd.isna(err["error_kind"]) else str(err["error_kind"])
    message = "" if pd.isna(err["error_message"]) else str(err["error_message"])
    outcome: Outcome = tile_outcome(False, kind)
    return GalleryOutput(name, model, provider, None, None, None, None, message or (kind or "failed"), {}, label,
                         run.id, outcome, kind)


def _gallery(store: Store, runs: list[RunInfo], final: pd.DataFrame, outputs: pd.DataFrame,
             scores: pd.DataFrame | None) -> list[GalleryItem]:
    """Every challenge variant of every run (a challenge shared by several runs once, its tiles side by side)
    with the first sample's output or failure per target."""
    keys = ["run_id", "challenge_id", "variant", "target"]
    images = outputs.sort_values(["sample", "idx"]).drop_duplicates(keys).astype({k: str for k in keys})
    images = images.set_index(keys)
    failed = final[final["ok"] == 0].sort_values("sample").astype({k: str for k in keys})
    failed = failed.drop_duplicates(keys).set_index(keys)
    score_map = _score_map(scores)
    items: dict[tuple[str, str, str], GalleryItem] = {}
    for run in runs:
        targets = run_store.run_targets(store, run.id)
        for challenge in run_store.run_challenges(store, run.id):
            for variant, prompt in challenge["prompts"].items():
                ident = (str(challenge["id"]), str(variant), str(challenge.get("content_hash", "")))
                item = items.get(ident)
                if item is None:
                    item = items[ident] = GalleryItem(
                        challenge["id"], challenge["title"], challenge["kind"], challenge["category"], variant,
                        prompt, challenge["references"], challenge["mask"], [])
                item.outputs.extend(_tile(t, run, runs, (run.id, challenge["id"], variant, t["name"]), images,
                                          failed, score_map) for t in targets)
    return list(items.values())


def _fidelity_warnings(attempts: pd.DataFrame, runs: Sequence[RunInfo]) -> dict[str, str]:
    """Run id → the stats module's fidelity warning, for sandbox runs that measured this machine more than
    the simulated profiles."""
    out: dict[str, str] = {}
    if "intended_ms" not in attempts.columns:
        return out
    for run in runs:
        if run.sandbox and run.time_scale:
            warning = fidelity_warning(fidelity_rows(attempts[attempts["run_id"] == run.id]), float(run.time_scale))
            if warning:
                out[run.id] = warning
    return out


def _scores(store: Store, run_ids: list[str]) -> pd.DataFrame | None:
    """The most recent scorer's scores (scores of different backbones are on different scales)."""
    scorer = latest_scorer(store, run_ids)
    return None if scorer is None else scores_frame(store, run_ids, scorer=scorer)


def _score_summary(scores: pd.DataFrame | None) -> list[ScoreSummaryRow]:
    if scores is None or scores.empty:
        return []
    return summary_rows(summarise_scores(scores))


@dataclass
class _Measured:
    """The runs' attempts as the report's provider section reads them: every attempt (with its page
    ``label``), the final attempts, the outputs, and the stats module's rows, their labels and warnings."""

    attempts: pd.DataFrame
    final: pd.DataFrame
    outputs: pd.DataFrame
    rows: list[ProviderRow] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)


def _measured(store: Store, runs: list[RunInfo], slo_ms: float | None, absent: dict[str, str]) -> _Measured:
    """The runs' attempts and provider rows; with no attempts, the reason is recorded in ``absent``."""
    attempts = run_store.attempts_frame(store, [r.id for r in runs]) if runs else pd.DataFrame()
    if attempts.empty:
        absent["providers"] = "no attempts recorded: run `harness run` (or `harness run --sandbox`) first"
        return _Measured(attempts, attempts,
                         pd.DataFrame(columns=["run_id", "challenge_id", "variant", "target", "sample", "idx"]))
    attempts["label"] = _label_column(attempts, runs)
    by = ("run_id", "target") if len(runs) > 1 else ("target",)
    timeouts = [t for t in (effective_timeout_ms(r) for r in runs) if t is not None]
    rows = provider_rows(attempts, by=by, timeout_ms=max(timeouts) if timeouts else None, slo_ms=slo_ms)
    labels = [target_label(r.target, r.run_id or runs[0].id, runs) for r in rows]
    warnings = _fidelity_warnings(attempts, runs)
    return _Measured(attempts, attempts[attempts["final"] == 1], run_store.outputs_frame(store, [r.id for r in runs]),
                     rows, labels, warnings)


def _curves(final: pd.DataFrame, column: str, *, dropna: bool = False) -> dict[str, list[float]]:
    """Per target label, the :func:`_curve` of ``column`` over its successful final attempts (with ``dropna``,
    missing values left out)."""
    ok = final[final["ok"] == 1] if not final.empty else final
    if ok.empty:
        return {}
    return {str(k): _curve((g[column].dropna() if dropna else g[column]).to_numpy(dtype=float))
            for k, g in ok.groupby("label", sort=False)}


def _error_mix(final: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per target label, failed final attempts counted by error kind."""
    errors: dict[str, dict[str, int]] = {}
    if final.empty:
        return errors
    failed = final[final["ok"] == 0]
    for (label, kind), n in failed.groupby(["label", "error_kind"]).size().items():
        errors.setdefault(str(label), {})[str(kind)] = int(n)
    return errors


def _note_absent_stages(scores: pd.DataFrame | None, leaderboard: object | None, absent: dict[str, str]) -> None:
    """Record in ``absent`` the stages with no data yet (CLIP scores, votes) and what to do about it."""
    if scores is None or scores.empty:
        absent["scores"] = ("no CLIP scores: install the clip extra (pip install -e '.[clip]') and run "
                            "`harness score RUN_ID` with weights (see README, CLIP scores)")
    if leaderboard is None:
        absent.setdefault("leaderboard", "no votes yet: collect them with `harness arena serve` or import them "
                                         "with `harness votes import FILE`")


def _window(attempts: pd.DataFrame) -> tuple[str | None, str | None]:
    """UTC times of the first and last request start, ``(None, None)`` without attempts."""
    if attempts.empty:
        return None, None
    return _iso(float(attempts["started_at"].min())), _iso(float(attempts["started_at"].max()))


def _title(title: str | None, runs: Sequence[RunInfo]) -> str:
    return title or ("Image generation benchmark" + (f" — {runs[0].label}" if runs and runs[0].label else ""))


def _turn_strips(store: Store, runs: list[RunInfo]) -> list[TurnStripItem]:
    if not runs:
        return []
    labels = {(r.id, t["name"]): target_label(str(t["name"]), r.id, runs)
              for r in runs for t in run_store.run_targets(store, r.id)}
    return turn_strip_items(store, runs, labels)


def collect(store: Store, run_ids: list[str], *, title: str | None = None,
            leaderboard: LeaderboardSection | Mapping[str, Any] | None = None,
            simulated_votes: bool = False, slo_ms: float | None = None) -> ReportData:
    """Gather a report's content for ``run_ids`` (an empty list: the report still renders, and says so).

    ``leaderboard``: the section (:func:`harness.report.leaderboard.leaderboard_board`) or its dict form,
    validated against :class:`~harness.report.leaderboard.LeaderboardSection`. ``slo_ms``: a latency objective
    (ms) the provider rows' goodput is judged against (no goodput column without one)."""
    runs = [run_store.get_run(store, r) for r in run_ids]
    absent: dict[str, str] = {}
    m = _measured(store, runs, slo_ms, absent)
    final = m.final
    scores = _scores(store, [r.id for r in runs]) if runs else None
    _note_absent_stages(scores, leaderboard, absent)
    return ReportData(
        title=_title(title, runs),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        runs=runs, versions=library_versions(), window=_window(m.attempts), sandbox=any(r.sandbox for r in runs),
        simulated_votes=simulated_votes, provider_rows=m.rows, row_labels=m.labels, fidelity_warnings=m.warnings,
        latency_curves=_curves(final, "latency_ms"), ttfb_curves=_curves(final, "ttfb_ms", dropna=True),
        success_over_time=_success_over_time(final, elapsed=len(runs) > 1) if not final.empty else {},
        error_mix=_error_mix(final),
        gallery=_gallery(store, runs, final, m.outputs, scores) if runs and not m.attempts.empty else [],
        leaderboard=None if leaderboard is None else LeaderboardSection.of(leaderboard),
        score_summary=_score_summary(scores), absent=absent,
        turn_strips=_turn_strips(store, runs),
        model_sections=model_sections(m.attempts, runs, run_names(runs)) if runs else [],
        sweeps=sweep_sections(store, runs),
        trends=trend_sections(store, runs),
        consistency=consistency_sections(store, runs) if runs else [],
        quality=_quality(store, [r.id for r in runs]),
        slo_ms=slo_ms,
    )


def _quality(store: Store, run_ids: list[str]) -> QualityView | None:
    """The quality section (:func:`harness.quality.section.quality_section`) as the page shows it; ``None``
    when the runs have no votes."""
    if not run_ids:
        return None
    section = quality_section(store, run_ids)
    return None if section is None else quality_view(section)
