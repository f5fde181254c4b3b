"""Everything a report shows, read from the store through the stages' own modules (never recomputed here).

Provider statistics come from :mod:`harness.stats`, ratings from :mod:`harness.ratings`, CLIP scores from
:mod:`harness.store.scores`. A stage that has no data yet (no votes, no scores) is recorded in
``ReportData.absent`` with what to do about it, and the page says so instead of showing an empty section.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from harness import __version__
from harness.records import RunInfo
from harness.scoring.summary import summarise_scores, summary_records
from harness.stats import provider_table
from harness.stats.source import effective_timeout_ms
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
    """One target's output for a challenge variant (or why there is none)."""

    target: str
    model: str
    provider: str
    sha256: str | None
    ext: str | None
    width: int | None
    height: int | None
    error: str | None
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class GalleryItem:
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
    """The content of a report; ``absent`` maps a section to the reason it has no data."""

    title: str
    generated_at: str
    runs: list[RunInfo]
    versions: dict[str, str]
    window: tuple[str | None, str | None]
    sandbox: bool
    simulated_votes: bool
    provider_rows: list[dict[str, Any]]
    latency_curves: dict[str, list[float]]
    ttfb_curves: dict[str, list[float]]
    success_over_time: dict[str, list[tuple[str, float, int]]]
    error_mix: dict[str, dict[str, int]]
    gallery: list[GalleryItem]
    leaderboard: dict[str, Any] | None
    score_summary: list[dict[str, Any]]
    absent: dict[str, str] = field(default_factory=dict)


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


def _label_column(frame: pd.DataFrame, runs: list[RunInfo]) -> pd.Series:
    if len(runs) == 1:
        return frame["target"]
    names = {r.id: (r.label or r.id) for r in runs}
    return frame["target"] + " [" + frame["run_id"].map(names) + "]"


def _success_over_time(final: pd.DataFrame) -> dict[str, list[tuple[str, float, int]]]:
    if final.empty:
        return {}
    start, end = float(final["started_at"].min()), float(final["started_at"].max())
    edges = np.linspace(start, end + 1e-6, TIME_BINS + 1)
    out: dict[str, list[tuple[str, float, int]]] = {}
    for label, group in final.groupby("label", sort=False):
        bins = np.digitize(group["started_at"].to_numpy(dtype=float), edges) - 1
        series = []
        for b in range(TIME_BINS):
            in_bin = group["ok"].to_numpy()[bins == b]
            if in_bin.size:
                series.append((_iso(float(edges[b])) or "", float(in_bin.mean()), int(in_bin.size)))
        out[str(label)] = series
    return out


def _gallery(store: Store, runs: list[RunInfo], final: pd.DataFrame, outputs: pd.DataFrame,
             scores: pd.DataFrame | None) -> list[GalleryItem]:
    items: list[GalleryItem] = []
    run = runs[0]
    by_key = outputs[outputs["run_id"] == run.id].sort_values(["sample", "idx"]).drop_duplicates(
        ["challenge_id", "variant", "target"])
    by_key = by_key.set_index(["challenge_id", "variant", "target"])
    failed = final[(final["run_id"] == run.id) & (final["ok"] == 0)].drop_duplicates(
        ["challenge_id", "variant", "target"]).set_index(["challenge_id", "variant", "target"])
    score_map: dict[int, dict[str, float]] = {}
    if scores is not None and not scores.empty:
        first = scores[scores["output_idx"] == 0] if "output_idx" in scores.columns else scores
        for attempt_id, metric, value in zip(first["attempt_id"], first["metric"], first["value"], strict=True):
            score_map.setdefault(int(attempt_id), {})[str(metric)] = float(value)
    targets = run_store.run_targets(store, run.id)
    for challenge in run_store.run_challenges(store, run.id):
        for variant, prompt in challenge["prompts"].items():
            row_outputs = []
            for t in targets:
                key = (challenge["id"], variant, t["name"])
                if key in by_key.index:
                    o = by_key.loc[key]
                    attempt_id = int(o["attempt_id"])
                    metrics = score_map.get(attempt_id, {})
                    row_outputs.append(GalleryOutput(t["name"], t["model"], t["provider"], str(o["sha256"]),
                                                     str(o["ext"]), int(o["width"]), int(o["height"]), None,
                                                     metrics))
                else:
                    err = failed.loc[key] if key in failed.index else None
                    reason = (f"{err['error_kind']}: {err['error_message'] or ''}".strip(": ")
                              if err is not None else "not run")
                    row_outputs.append(GalleryOutput(t["name"], t["model"], t["provider"], None, None, None, None,
                                                     reason))
            items.append(GalleryItem(challenge["id"], challenge["title"], challenge["kind"], challenge["category"],
                                     variant, prompt, challenge["references"], challenge["mask"], row_outputs))
    return items


def _scores(store: Store, run_ids: list[str]) -> pd.DataFrame | None:
    """The most recent scorer's scores (scores of different backbones are on different scales)."""
    scorer = latest_scorer(store, run_ids)
    return None if scorer is None else scores_frame(store, run_ids, scorer=scorer)


def _score_summary(scores: pd.DataFrame | None) -> list[dict[str, Any]]:
    if scores is None or scores.empty:
        return []
    return [{**r, "ci_low": r["low"], "ci_high": r["high"], "n": r["n_images"]}
            for r in summary_records(summarise_scores(scores))]


def collect(store: Store, run_ids: list[str], *, title: str | None = None,
            leaderboard: dict[str, Any] | None = None, simulated_votes: bool = False) -> ReportData:
    """Gather a report's content for ``run_ids`` (an empty list: the report still renders, and says so)."""
    runs = [run_store.get_run(store, r) for r in run_ids]
    absent: dict[str, str] = {}
    attempts = run_store.attempts_frame(store, [r.id for r in runs]) if runs else pd.DataFrame()
    if attempts.empty:
        absent["providers"] = "no attempts recorded: run `harness run` (or `harness run --sandbox`) first"
        rows: list[dict[str, Any]] = []
        final = attempts
        outputs = pd.DataFrame(columns=["run_id", "challenge_id", "variant", "target", "sample", "idx"])
    else:
        attempts["label"] = _label_column(attempts, runs)
        by = ("run_id", "target") if len(runs) > 1 else ("target",)
        timeouts = [t for t in (effective_timeout_ms(r) for r in runs) if t is not None]
        rows = provider_table(attempts, by=by, timeout_ms=max(timeouts) if timeouts else None)
        labels = dict(zip(zip(attempts["run_id"], attempts["target"], strict=True), attempts["label"], strict=True))
        for row in rows:
            row["label"] = labels.get((row.get("run_id", runs[0].id), row["target"]), row["target"])
        final = attempts[attempts["final"] == 1]
        outputs = run_store.outputs_frame(store, [r.id for r in runs])
    ok = final[final["ok"] == 1] if not final.empty else final
    latency = {str(k): _curve(g["latency_ms"].to_numpy(dtype=float)) for k, g in ok.groupby("label", sort=False)} \
        if not ok.empty else {}
    ttfb = {str(k): _curve(g["ttfb_ms"].dropna().to_numpy(dtype=float)) for k, g in ok.groupby("label", sort=False)} \
        if not ok.empty else {}
    errors: dict[str, dict[str, int]] = {}
    if not final.empty:
        failed = final[final["ok"] == 0]
        for (label, kind), n in failed.groupby(["label", "error_kind"]).size().items():
            errors.setdefault(str(label), {})[str(kind)] = int(n)
    scores = _scores(store, [r.id for r in runs]) if runs else None
    if scores is None or scores.empty:
        absent["scores"] = ("no CLIP scores: install the clip extra (pip install -e '.[clip]') and run "
                            "`harness score RUN_ID` with weights (see README, CLIP scores)")
    if leaderboard is None:
        absent.setdefault("leaderboard", "no votes yet: collect them with `harness arena serve` or import them "
                                         "with `harness votes import FILE`")
    window = (_iso(float(attempts["started_at"].min())) if not attempts.empty else None,
              _iso(float(attempts["started_at"].max())) if not attempts.empty else None)
    return ReportData(
        title=title or ("Image generation benchmark" + (f" — {runs[0].label}" if runs and runs[0].label else "")),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        runs=runs, versions=library_versions(), window=window, sandbox=any(r.sandbox for r in runs),
        simulated_votes=simulated_votes, provider_rows=rows, latency_curves=latency, ttfb_curves=ttfb,
        success_over_time=_success_over_time(final) if not final.empty else {}, error_mix=errors,
        gallery=_gallery(store, runs, final, outputs, scores) if runs and not attempts.empty else [],
        leaderboard=leaderboard, score_summary=_score_summary(scores), absent=absent,
    )
