"""The report's consistency section: for runs with multi-turn conversations that ``harness score`` has scored,
each target's CLIP-I to the first turn's image by turn index (with its 95 % cluster-bootstrap interval), and
per target its conversations summarised (mean over turns, worst turn, last turn, change first to last).

Figures come from :func:`harness.scoring.consistency.consistency` with the scorer that last scored the runs,
read from the embedding cache and the image store: no model is loaded. Targets are pooled over the report's
runs, as the score summaries are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.records import RunInfo
from harness.scoring.consistency import consistency
from harness.scoring.summary import ConsistencyOutput, ConsistencyTurnRow
from harness.store import Store
from harness.store.scores import latest_scorer

Figure = dict[str, Any]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""Colours by target, in order of first appearance (Tableau 10, as the report's other charts)."""
HEIGHT = 300
CHART_METRIC = "clip_i_first"


@dataclass
class ConsistencySection:
    """The runs' conversation consistency under one scorer: the chart spec (``figure``), the typed figures
    (``result``) and one sentence per conversation scored on fewer turns than it has (``notes``)."""

    scorer: str
    result: ConsistencyOutput
    figure: Figure
    notes: list[str] = field(default_factory=list)


def _error(rows: Sequence[ConsistencyTurnRow]) -> dict[str, Any]:
    """Error bars of the turn-1 point (none) and of each row (its interval, 0 where it has none)."""
    return {"type": "data", "symmetric": False, "thickness": 1.2, "width": 3,
            "array": [0.0, *(r.high - r.mean if r.high is not None else 0.0 for r in rows)],
            "arrayminus": [0.0, *(r.mean - r.low if r.low is not None else 0.0 for r in rows)]}


def consistency_figure(result: ConsistencyOutput) -> Figure:
    """CLIP-I of each turn's image to the first turn's, by turn index, one line per target (turn 1 is 1 by
    definition and drawn as such); error bars are the 95 % intervals, hover gives the images counted."""
    by_target: dict[str, list[ConsistencyTurnRow]] = {}
    for row in result.turns:
        if row.metric == CHART_METRIC:
            by_target.setdefault(row.target, []).append(row)
    traces: list[dict[str, Any]] = []
    for i, (target, rows) in enumerate(by_target.items()):
        rows = sorted(rows, key=lambda r: r.turn)
        colour = PALETTE[i % len(PALETTE)]
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": target,
            "x": [1, *(r.turn for r in rows)], "y": [1.0, *(r.mean for r in rows)],
            "text": ["by definition", *(f"{r.n_images} image(s), {r.n_prompts} prompt(s)" for r in rows)],
            "line": {"color": colour, "width": 1.5}, "marker": {"color": colour, "size": 6},
            "error_y": {**_error(rows), "color": colour},
            "hovertemplate": f"{target}<br>turn %{{x}}: CLIP-I to turn 1 %{{y:.3f}}<br>%{{text}}<extra></extra>"})
    layout = {
        "meta": {"title": f"CLIP-I to the first turn, by turn ({result.scorer})", "narrow": {}},
        "margin": {"l": 8, "r": 12, "t": 12, "b": 8}, "autosize": True, "height": HEIGHT, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.3}, "hovermode": "closest",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "xaxis": {"automargin": True, "dtick": 1, "title": {"text": "turn", "standoff": 8}},
        "yaxis": {"automargin": True, "title": {"text": "CLIP-I to turn 1 (cosine, 95 % CI)", "standoff": 8}},
    }
    return {"data": traces, "layout": layout}


def consistency_sections(store: Store, runs: Sequence[RunInfo]) -> list[ConsistencySection]:
    """The section for ``runs`` (a list of one), or ``[]`` when they hold no conversation or were never
    scored. Turns whose embeddings are missing (scored before consistency existed) are named in ``notes``."""
    run_ids = [r.id for r in runs]
    scorer_id = latest_scorer(store, run_ids)
    if scorer_id is None:
        return []
    result = consistency(store, run_ids, scorer_id)
    if result is None or not result.turns:
        return []
    notes = [f"{c.target} · {c.challenge_id}/{c.variant} sample {c.sample}: {c.note}"
             for c in result.conversations if c.note]
    if result.problems:
        notes.append(f"{len(result.problems)} turn(s) lack embeddings or pixels (first: {result.problems[0]}); "
                     "run harness score on these runs again")
    return [ConsistencySection(result.scorer, result, consistency_figure(result), notes)]
