"""The report's sections that only some runs call for, read through the stages' own modules:

* turn strips (:func:`turn_strip_items`): multi-turn challenges, conversation by conversation, from
  :func:`harness.stats.turns.turn_strips`;
* one model, every provider (:func:`model_sections`): models served by two or more providers, from
  :func:`harness.stats.bymodel.model_views` (rank order, intervals and the pairwise statements the data
  support);
* sweeps (:func:`sweep_sections`): runs that are levels of a concurrency or rate sweep, or have a sweep
  attached (the demo's), from :mod:`harness.sweep` (figures per level and the knee);
* trends (:func:`trend_sections`, from :mod:`harness.report.trend`): every series a report's run belongs to,
  each target's p50/p95 over the series' runs and the runs flagged against their history;
* consistency (:func:`consistency_sections`, from :mod:`harness.report.consistency`): multi-turn
  conversations scored by ``harness score``.

Each returns an empty list when the report's runs do not call for the section; the page then leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.records import RunInfo
from harness.report.consistency import ConsistencySection, consistency_sections
from harness.report.trend import TrendSection, trend_sections
from harness.stats.bymodel import ModelView, model_views
from harness.stats.source import effective_timeout_ms
from harness.stats.turns import STRIP_COLUMNS, Strip, turn_strips
from harness.store import Store
from harness.store import runs as run_store
from harness.sweep import SweepLevel, find_knee, sweep_levels
from harness.sweep.results import sweep_runs
from harness.sweep.spec import SweepSpec, attached_sweep_id, is_sweep_label, parse_label

__all__ = ["ConsistencySection", "ModelSection", "SweepSection", "TrendSection", "TurnStripItem",
           "consistency_sections", "model_sections", "sweep_sections", "trend_sections", "turn_strip_items"]

MULTI_TURN = "multi-turn"


@dataclass
class TurnStripItem:
    """One multi-turn challenge variant: its title, and per target (page label) one conversation's strip (the
    first sample)."""

    challenge_id: str
    title: str
    variant: str
    strips: list[tuple[str, Strip]] = field(default_factory=list)


@dataclass
class ModelSection:
    """One model served by two or more providers: ``title`` names it (and its run in a multi-run report)."""

    title: str
    view: ModelView


@dataclass
class SweepSection:
    """One sweep with levels in the report: its levels (ascending) and the knee in one sentence."""

    sweep_id: str
    target: str
    levels: list[SweepLevel]
    knee: str


def turn_strip_items(store: Store, runs: Sequence[RunInfo], labels: dict[tuple[str, str], str]) -> list[TurnStripItem]:
    """Every multi-turn challenge variant of ``runs`` with the first sample's strip per target. ``labels``
    maps (run id, target) to the page's name of the target."""
    frozen: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for challenge in run_store.run_challenges(store, run.id):
            if challenge.get("kind") == MULTI_TURN:
                frozen[(run.id, str(challenge["id"]))] = challenge
    if not frozen:
        return []
    run_ids = sorted({run_id for run_id, _ in frozen})
    attempts = run_store.attempts_frame(store, run_ids, columns=list(STRIP_COLUMNS), with_challenge=False)
    outputs = run_store.outputs_frame(store, run_ids, final_only=False)
    strips = turn_strips(attempts, outputs, frozen)
    items: dict[tuple[str, str], TurnStripItem] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for strip in sorted(strips, key=lambda s: (s.challenge_id, s.variant, s.run_id, s.target, s.sample)):
        key = (strip.run_id, strip.challenge_id, strip.variant, strip.target)
        if key in seen:
            continue
        seen.add(key)
        challenge = frozen.get((strip.run_id, strip.challenge_id), {})
        item = items.setdefault((strip.challenge_id, strip.variant), TurnStripItem(
            strip.challenge_id, str(challenge.get("title") or strip.challenge_id), strip.variant))
        item.strips.append((labels.get((strip.run_id, strip.target), strip.target), strip))
    return list(items.values())


def model_sections(attempts: pd.DataFrame, runs: Sequence[RunInfo], names: dict[str, str]) -> list[ModelSection]:
    """Per run, every model its attempts reach through two or more providers (``names``: run id → the page's
    name of the run, shown when the report has several)."""
    out: list[ModelSection] = []
    if attempts.empty:
        return out
    for run in runs:
        if is_sweep_label(run.label):
            continue
        frame = attempts[attempts["run_id"].astype(str) == run.id]
        if frame.empty or frame["provider"].astype(str).nunique() < 2:
            continue
        for view in model_views(frame, timeout_ms=effective_timeout_ms(run), slo_ms=None):
            if len(view.providers) >= 2:
                title = view.model if len(runs) == 1 else f"{view.model} [{names.get(run.id, run.id)}]"
                out.append(ModelSection(title, view))
    return out


def sweep_sections(store: Store, runs: Sequence[RunInfo]) -> list[SweepSection]:
    """Every sweep one of ``runs`` is a level of or is attached to (:func:`harness.sweep.spec.attached_sweep_id`),
    with all its stored levels and its knee. A run whose label only looks like a sweep label (it does not parse)
    is no sweep level."""
    specs: dict[str, SweepSpec | None] = {}
    for run in runs:
        if is_sweep_label(run.label):
            try:
                spec, _ = parse_label(str(run.label), run.id)
            except ConfigError:
                continue  # a label that merely starts with "sweep:" (set by hand): an ordinary run
            specs.setdefault(spec.sweep_id, spec)
        else:
            specs.setdefault(attached_sweep_id(run.id), None)
    out: list[SweepSection] = []
    if any(known is None for known in specs.values()):
        stored = {str(r.label).split(":")[1] for r in run_store.list_runs(store) if is_sweep_label(r.label)}
        specs = {k: v for k, v in specs.items() if v is not None or k in stored}
    for sweep_id, known in specs.items():
        if known is None:
            try:
                known = sweep_runs(store, sweep_id)[0]
            except ConfigError:
                continue  # an attached sweep whose labels this harness cannot read
        levels = sweep_levels(store, sweep_id)
        if not levels:
            continue
        out.append(SweepSection(sweep_id, levels[0].target, levels, find_knee(levels, known.min_gain).statement))
    return out
