"""Plotly figure specifications as plain dicts (``data`` + ``layout``), rendered in the page by plotly.js.

Keeping them as data makes them testable without a browser and keeps the Python side free of plotly's
figure machinery; the page calls ``Plotly.newPlot(div, spec.data, spec.layout, config)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Figure = dict[str, Any]

_BASE_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "autosize": True,
    "legend": {"orientation": "h", "y": -0.2},
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "hovermode": "closest",
}


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {**_BASE_LAYOUT, "title": {"text": title}, "xaxis": {"title": {"text": x}},
            "yaxis": {"title": {"text": y}}, **extra}


def ecdf(curves: Mapping[str, Sequence[float]], title: str, x_label: str) -> Figure:
    """Empirical CDF per target (curves are sorted values or evenly spaced quantiles)."""
    data = []
    for name, values in curves.items():
        n = len(values)
        if n == 0:
            continue
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": list(values),
                     "y": [(i + 1) / n for i in range(n)], "line": {"shape": "hv"}})
    return {"data": data, "layout": _layout(title, x_label, "share of successful requests ≤ x",
                                            xaxis={"title": {"text": x_label}, "type": "log"})}


def success_over_time(series: Mapping[str, Sequence[tuple[str, float, int]]]) -> Figure:
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": [s[0] for s in points],
             "y": [s[1] for s in points], "text": [f"n={s[2]}" for s in points]}
            for name, points in series.items() if points]
    return {"data": data, "layout": _layout("Success rate over time", "time (UTC)", "success rate",
                                            yaxis={"title": {"text": "success rate"}, "range": [0, 1.05]})}


def error_mix(errors: Mapping[str, Mapping[str, int]]) -> Figure:
    kinds = sorted({k for counts in errors.values() for k in counts})
    targets = list(errors)
    data = [{"type": "bar", "name": kind, "x": targets, "y": [errors[t].get(kind, 0) for t in targets]}
            for kind in kinds]
    return {"data": data, "layout": _layout("Failures by class", "target", "failed requests", barmode="stack")}


def rating_scatter(points: Sequence[Mapping[str, Any]], x_key: str, title: str, x_label: str,
                   log_x: bool = False) -> Figure:
    """Rating (with its interval) against cost or speed: one trace per target, so the legend names each
    point even when several sit together (one model at one price across providers)."""
    data = [{
        "type": "scatter", "mode": "markers", "name": p["label"], "x": [p[x_key]], "y": [p["rating"]],
        "error_y": {"type": "data", "symmetric": False, "array": [p["ci_high"] - p["rating"]],
                    "arrayminus": [p["rating"] - p["ci_low"]]},
        "marker": {"size": 11},
        "hovertemplate": f"{p['label']}<br>%{{x}}<br>rating %{{y:.0f}}<extra></extra>",
    } for p in points if p.get(x_key) is not None and p.get("rating") is not None]
    xaxis: dict[str, Any] = {"title": {"text": x_label}, "automargin": True}
    if log_x:
        xaxis["type"] = "log"
    return {"data": data, "layout": _layout(title, x_label, "rating", xaxis=xaxis)}


def heatmap(models: Sequence[str], matrix: Sequence[Sequence[float | None]], title: str) -> Figure:
    """Row model's win rate against column model."""
    return {"data": [{"type": "heatmap", "x": list(models), "y": list(models), "z": [list(r) for r in matrix],
                      "zmin": 0, "zmax": 1, "colorscale": "RdBu", "reversescale": False,
                      "hovertemplate": "%{y} beats %{x}: %{z:.0%}<extra></extra>"}],
            "layout": _layout(title, "opponent", "model", yaxis={"autorange": "reversed", "automargin": True},
                              xaxis={"automargin": True, "tickangle": -30})}
