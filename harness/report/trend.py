"""The report's trend section: for every series the report's runs belong to, each target's p50 and p95 latency
over the series' runs (with their 95 % intervals) and the runs flagged against their history
(:func:`harness.trend.build_trend`, the figures and verdicts ``harness trend`` prints).

A target measured under two measurements (another clock version or time scale) gets one line per
measurement: points of different measurements are never joined, as they are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.records import RunInfo
from harness.store import Store
from harness.trend import Trend, TrendPoint, build_trend, series_of

Figure = dict[str, Any]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""Colours by target, in order of first appearance (Tableau 10, as the report's other charts)."""
HEIGHT = 300


@dataclass
class TrendSection:
    """One series in the report: its trend, the chart spec (``figure``) and one sentence per flagged run and
    target (``flags``)."""

    series: str
    trend: Trend
    figure: Figure
    flags: list[str] = field(default_factory=list)


def _error(points: Sequence[TrendPoint], name: str) -> dict[str, Any]:
    values = [getattr(p, f"{name}_ms") for p in points]
    lows = [getattr(p, f"{name}_ci_low_ms") for p in points]
    highs = [getattr(p, f"{name}_ci_high_ms") for p in points]
    return {"type": "data", "symmetric": False, "thickness": 1.2, "width": 3,
            "array": [h - v if h is not None and v is not None else 0 for v, h in zip(values, highs, strict=True)],
            "arrayminus": [v - lo if lo is not None and v is not None else 0
                           for v, lo in zip(values, lows, strict=True)]}


def trend_figure(trend: Trend) -> Figure:
    """Latency over the series' runs: per target and measurement, p50 (solid, with its interval) and p95
    (dotted, where not withheld); flagged runs drawn as larger open markers."""
    ticks = {r.index: f"#{r.index + 1} {r.created_at[:16].replace('T', ' ')}" for r in trend.runs}
    colours: dict[str, str] = {}
    traces: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[TrendPoint]] = {}
    for p in trend.points:
        groups.setdefault((p.target, p.measurement), []).append(p)
    several = len(trend.measurements) > 1
    for (target, measurement), points in groups.items():
        points = sorted(points, key=lambda p: p.index)
        colour = colours.setdefault(target, PALETTE[len(colours) % len(PALETTE)])
        name = target + (f" [{measurement}]" if several else "")
        x = [ticks[p.index] for p in points]
        text = [f"{p.run_id}: {p.verdict}" for p in points]
        for figure, dash, error in (("p50", "solid", True), ("p95", "dot", True)):
            y = [getattr(p, f"{figure}_ms") for p in points]
            if all(v is None for v in y):
                continue
            trace: dict[str, Any] = {
                "type": "scatter", "mode": "lines+markers", "x": x, "y": y, "name": f"{name} {figure}",
                "text": text, "line": {"color": colour, "dash": dash, "width": 1.5},
                "marker": {"color": colour, "size": [12 if p.flagged else 6 for p in points],
                           "symbol": ["circle-open" if p.flagged else "circle" for p in points]},
                "hovertemplate": f"{name} {figure}: %{{y:,.0f}} ms<br>%{{text}}<extra></extra>",
                "connectgaps": False}
            if error:
                trace["error_y"] = {**_error(points, figure), "color": colour}
            traces.append(trace)
    layout = {
        "meta": {"title": f"series {trend.series}: latency over runs", "narrow": {}},
        "margin": {"l": 8, "r": 12, "t": 12, "b": 8}, "autosize": True, "height": HEIGHT, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.3}, "hovermode": "closest",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "xaxis": {"automargin": True, "type": "category", "title": {"text": "run (#, created UTC)", "standoff": 8}},
        "yaxis": {"automargin": True, "rangemode": "tozero",
                  "title": {"text": "latency (ms): p50 solid, p95 dotted", "standoff": 8}},
    }
    return {"data": traces, "layout": layout}


def flag_sentences(trend: Trend) -> list[str]:
    """One sentence per flagged run and target: which checks moved and by how much."""
    out = []
    for p in trend.flagged:
        moved = [c for c in p.checks if c.status in ("regression", "improved")]
        out.append(f"{p.run_id} · {p.target}: " + "; ".join(f"{c.check} {c.reason}" for c in moved)
                   + f" (against its last {len(p.history_runs)} run(s))")
    return out


def trend_sections(store: Store, runs: Sequence[RunInfo]) -> list[TrendSection]:
    """Every series one of ``runs`` belongs to, in order of first appearance, with its whole trend."""
    names = list(dict.fromkeys(name for name in (series_of(r) for r in runs) if name is not None))
    out = []
    for name in names:
        trend = build_trend(store, name)
        out.append(TrendSection(name, trend, trend_figure(trend), flag_sentences(trend)))
    return out
