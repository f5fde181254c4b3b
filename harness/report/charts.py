"""Plotly figure specifications as plain dicts (``data`` + ``layout``), rendered in the page by plotly.js.

Keeping them as data makes them testable without a browser and keeps the Python side free of plotly's
figure machinery; the page calls ``Plotly.newPlot(div, spec.data, spec.layout, config)``.

Readable at a glance, at 1366 px and on a 390 px phone:

* The per-target charts (latency, TTFB, success over time) draw no legend inside the panel: one HTML legend
  above them names every target with a fixed colour (:func:`target_colors`), wraps with the page, and hides or
  shows a target in all of them at once. The plot area keeps its height whatever the number of targets.
* A chart's title is the page's heading above its panel (``layout.meta.title``), never inside the figure
  where a legend could run into it; every axis takes the margin its tick labels and title need
  (``automargin``), and a legend outside the plot pushes the margin rather than covering the plot.
* Failures by class are horizontal bars, one row per target, so long target names never collide.
* Rating scatters give each model a colour and a marker shape (a small legend above), label each point with
  its provider(s), and draw targets that fall on the very same point as one marker ("×4" in its label), so
  four providers of one model at one price are visibly four.
* The win-rate heatmap prints each cell's percentage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.outcomes import NOT_SENT, ErrorKind

Figure = dict[str, Any]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#e7969c", "#637939", "#fdae6b", "#3182bd", "#843c39")
"""Colours in order of first appearance (Tableau 10, then darker and lighter tones for larger reports)."""
DASHES = ("solid", "dash", "dot", "dashdot")
"""Beyond the palette, lines repeat its colours with these dash patterns."""
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "triangle-down", "pentagon", "cross",
           "hexagon")
ERROR_COLORS: dict[str, str] = {
    ErrorKind.SERVER_ERROR: "#d62728", ErrorKind.RATE_LIMITED: "#ff7f0e", ErrorKind.TIMEOUT: "#9467bd",
    ErrorKind.CONNECTION: "#8c564b", ErrorKind.REFUSED: "#e377c2", ErrorKind.NO_IMAGE: "#7f7f7f",
    NOT_SENT: "#bcbd22", ErrorKind.QUOTA_EXHAUSTED: "#17becf", ErrorKind.AUTH: "#393b79",
    ErrorKind.INVALID_REQUEST: "#e7969c", ErrorKind.BAD_OUTPUT: "#637939"}
"""A fixed colour per outcome of :mod:`harness.outcomes` (every error kind and "not sent"), the same in every
report; a word outside that vocabulary (a store written by another version) takes a palette colour."""
NARROW_PX = 520
"""Panels narrower than this (a phone) apply a figure's ``layout.meta.narrow`` overrides: plotly relayout keys
under ``layout`` and restyle keys under ``style`` (shorter tick labels, smaller cell text)."""
PLOT_HEIGHT = 320
"""Height (px) of a line chart's panel; its legend lives outside it."""
TICK_CHARS = 30
"""Category tick labels longer than this are shortened (the hover shows the whole name)."""

_FONT = {"family": "system-ui, sans-serif", "size": 12}


def _layout(title: str, x: str, y: str, *, height: int = PLOT_HEIGHT, xaxis: Mapping[str, Any] | None = None,
            yaxis: Mapping[str, Any] | None = None, narrow: Mapping[str, Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    axis = {"automargin": True, "title": {"standoff": 8}}
    return {
        "meta": {"title": title, "narrow": dict(narrow or {})},
        "margin": {"l": 8, "r": 12, "t": 12, "b": 8},
        "autosize": True, "height": height, "showlegend": False, "font": _FONT, "hovermode": "closest",
        "xaxis": {**axis, **(xaxis or {}), "title": {"text": x, "standoff": 8}},
        "yaxis": {**axis, **(yaxis or {}), "title": {"text": y, "standoff": 8}},
        **extra,
    }


def target_colors(labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """A fixed colour (and, beyond the palette, a dash pattern) per target label, in the given order."""
    out: dict[str, dict[str, str]] = {}
    for i, label in enumerate(dict.fromkeys(labels)):
        out[label] = {"color": PALETTE[i % len(PALETTE)], "dash": DASHES[(i // len(PALETTE)) % len(DASHES)]}
    return out


def _style(colors: Mapping[str, Mapping[str, str]], name: str) -> dict[str, str]:
    return dict(colors.get(name) or {"color": PALETTE[0], "dash": "solid"})


def short(text: str, limit: int = TICK_CHARS) -> str:
    """``text`` cut to ``limit`` characters. A target label (``model@provider [run]``) loses the end of its
    model name, so provider and run stay readable; other text loses its middle."""
    if len(text) <= limit:
        return text
    model, at, rest = text.partition("@")
    if at and len(rest) + 1 <= limit - 9:
        return model[: limit - len(rest) - 2] + "…@" + rest
    keep = limit - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]


def _tick_text(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def log_ticks(values: Sequence[float]) -> tuple[list[float], list[str]]:
    """Tick positions for a log axis over ``values`` that stay apart on a phone: per decade 1-2-5 over up to
    1.5 decades (1-1.5-2-3-5-7 under 0.7), 1-3 up to 3 decades, powers of ten beyond. Empty when fewer than
    three would fall in the range (a narrow range): :func:`log_axis` then leaves four ticks to plotly."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return [], []
    low, high = min(positive), max(positive)
    decades = math.log10(high / low) if high > low else 0.0
    mantissas = ((1, 1.5, 2, 3, 5, 7) if decades < 0.7 else (1, 2, 5) if decades <= 1.5 else (1, 3)
                 if decades <= 3 else (1,))
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in mantissas]
    inside = [t for t in ticks if low / 1.05 <= t <= high * 1.05]
    if len(inside) < 3:
        return [], []
    return inside, [_tick_text(t) for t in inside]


def log_axis(values: Sequence[float]) -> dict[str, Any]:
    """A log x axis over ``values`` with :func:`log_ticks` (or at most four of plotly's own)."""
    ticks, labels = log_ticks(values)
    return {"type": "log", "tickvals": ticks, "ticktext": labels} if ticks else {"type": "log", "nticks": 4}


def ecdf(curves: Mapping[str, Sequence[float]], title: str, x_label: str,
         colors: Mapping[str, Mapping[str, str]] | None = None) -> Figure:
    """Empirical CDF per target (curves are sorted values or evenly spaced quantiles), log x axis."""
    colors = colors or target_colors(list(curves))
    data = []
    for name, values in curves.items():
        n = len(values)
        if n == 0:
            continue
        line: dict[str, Any] = {"shape": "hv", "width": 2, **_style(colors, name)}
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": list(values),
                     "y": [(i + 1) / n for i in range(n)], "line": line,
                     "hovertemplate": f"%{{fullData.name}}<br>%{{x:,.0f}} {x_label}: %{{y:.0%}}<extra></extra>"})
    return {"data": data, "shared_legend": True,
            "layout": _layout(title, f"{x_label} (log scale)", "share ≤ x",
                              xaxis=log_axis([v for values in curves.values() for v in values]),
                              yaxis={"range": [0, 1.02], "tickformat": ".0%"})}


def success_over_time(series: Mapping[str, Sequence[tuple[str | float, float, int]]],
                      colors: Mapping[str, Mapping[str, str]] | None = None) -> Figure:
    """Success rate per time bin and target; bins are UTC times (one run) or seconds since each run's first
    request (several runs)."""
    colors = colors or target_colors(list(series))
    elapsed = any(isinstance(s[0], (int, float)) for points in series.values() for s in points)
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": [s[0] for s in points],
             "y": [s[1] for s in points], "customdata": [s[2] for s in points],
             "line": _style(colors, name), "marker": {"size": 5},
             "hovertemplate": "%{fullData.name}<br>%{x}<br>%{y:.0%} of %{customdata}<extra></extra>"}
            for name, points in series.items() if points]
    return {"data": data, "shared_legend": True,
            "layout": _layout("Success rate over time",
                              "seconds since the run's first request" if elapsed else "time (UTC)", "success rate",
                              yaxis={"range": [0, 1.05], "tickformat": ".0%"}, xaxis={"nticks": 5})}


def error_mix(errors: Mapping[str, Mapping[str, int]]) -> Figure:
    """Failed requests per target (one horizontal bar each), stacked by error class."""
    kinds = sorted({k for counts in errors.values() for k in counts})
    targets = list(errors)
    ticks = [short(t) for t in targets]
    data = [{"type": "bar", "orientation": "h", "name": kind, "y": targets,
             "x": [errors[t].get(kind, 0) for t in targets],
             "marker": {"color": ERROR_COLORS.get(kind, PALETTE[i % len(PALETTE)])},
             "hovertemplate": "%{y}: %{x} %{fullData.name}<extra></extra>"} for i, kind in enumerate(kinds)]
    height = 90 + 26 * len(targets) + 22 * math.ceil(len(kinds) / 2)
    narrow = {"layout": {"yaxis.ticktext": [short(t, 20) for t in targets], "yaxis.tickfont.size": 10}}
    return {"data": data, "layout": _layout(
        "Failures by class", "failed requests", "", height=height, barmode="stack", showlegend=True, narrow=narrow,
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 11}},
        yaxis={"autorange": "reversed", "tickvals": targets, "ticktext": ticks, "tickfont": {"size": 11}},
        xaxis={"rangemode": "tozero"})}


def _spread(values: Sequence[float], log: bool) -> float:
    finite = [math.log10(v) if log else v for v in values if v is not None and (not log or v > 0)]
    return (max(finite) - min(finite)) if len(finite) > 1 else 1.0


MERGE_SHARE = 0.01
"""Targets of one model closer than this share of the x axis's span are drawn as one marker."""


def merge_points(points: Sequence[Mapping[str, Any]], x_key: str, log_x: bool = False) -> list[dict[str, Any]]:
    """Targets of one model (so one rating) that fall on the same spot of the x axis (within
    :data:`MERGE_SHARE` of its span; on a log axis, of its log span) as one point listing them all, at their
    mean position; points without an x or a rating left out."""
    usable = [p for p in points if p.get(x_key) is not None and p.get("rating") is not None
              and (not log_x or float(p[x_key]) > 0)]

    def pos(p: Mapping[str, Any]) -> float:
        return math.log10(float(p[x_key])) if log_x else float(p[x_key])

    span = _spread([float(p[x_key]) for p in usable], log_x) or 1.0
    merged: list[dict[str, Any]] = []
    for p in sorted(usable, key=lambda p: (str(p["model"]), pos(p))):
        last = merged[-1] if merged else None
        gap = pos(p) - last["_pos"][-1] if last is not None else math.inf
        if last is not None and last["model"] == p["model"] and (gap <= MERGE_SHARE * span or gap <= _EPS * abs(pos(p))):
            last["_pos"].append(pos(p))
            last["providers"].append(str(p["provider"]))
            last["labels"].append(f"{p['label']}: {float(p[x_key]):.4g}")
        else:
            merged.append({**p, "_pos": [pos(p)], "providers": [str(p["provider"])],
                           "labels": [f"{p['label']}: {float(p[x_key]):.4g}"]})
    for m in merged:
        centre = sum(m.pop("_pos")) / len(m["providers"])
        m["x"] = 10 ** centre if log_x else centre
    return merged


_EPS = 1e-9
"""Relative difference below which two x values are the same number (float noise of a division)."""

POSITIONS = ("top center", "bottom center", "middle right", "middle left")


def _text_positions(points: Sequence[Mapping[str, Any]], log_x: bool) -> list[str]:
    """A label position per point that keeps labels of nearby points apart: each point takes the first
    position no earlier neighbour (within 12 % of the x spread and 8 % of the y spread) uses."""
    xs = [math.log10(p["x"]) if log_x and p["x"] > 0 else p["x"] for p in points]
    x_span = _spread([p["x"] for p in points], log_x) or 1.0
    y_span = _spread([p["rating"] for p in points], False) or 1.0
    chosen: list[str] = []
    for i, p in enumerate(points):
        near = {chosen[j] for j in range(i) if abs(xs[j] - xs[i]) < 0.12 * x_span
                and abs(points[j]["rating"] - p["rating"]) < 0.08 * y_span}
        chosen.append(next((pos for pos in POSITIONS if pos not in near), POSITIONS[i % len(POSITIONS)]))
    return chosen


def rating_scatter(points: Sequence[Mapping[str, Any]], x_key: str, title: str, x_label: str,
                   log_x: bool = False) -> Figure:
    """Rating (with its interval) against cost or speed. A model has one colour and marker shape (legend
    above the plot); each point is labelled with its provider(s); targets on the same spot
    (:func:`merge_points`) are one marker labelled with all their providers and "×n", each one's own x in
    its hover text."""
    merged = sorted(merge_points(points, x_key, log_x), key=lambda p: (p["x"], -p["rating"]))
    positions = _text_positions(merged, log_x)
    models = list(dict.fromkeys(str(p["model"]) for p in sorted(merged, key=lambda p: -p["rating"])))
    data = []
    for m, model in enumerate(models):
        mine = [(p, pos) for p, pos in zip(merged, positions, strict=True) if p["model"] == model]
        data.append({
            "type": "scatter", "mode": "markers+text", "name": model, "legendgroup": model,
            "x": [p["x"] for p, _ in mine], "y": [p["rating"] for p, _ in mine],
            "text": [", ".join(dict.fromkeys(p["providers"])) + (f" ×{len(p['providers'])}"
                                                                    if len(p["providers"]) > 1 else "")
                     for p, _ in mine],
            "textposition": [pos for _, pos in mine], "textfont": {"size": 10},
            "customdata": ["<br>".join(p["labels"]) for p, _ in mine],
            "error_y": {"type": "data", "symmetric": False, "thickness": 1,
                        "array": [p["ci_high"] - p["rating"] for p, _ in mine],
                        "arrayminus": [p["rating"] - p["ci_low"] for p, _ in mine]},
            "marker": {"size": [10 + 3 * (len(p["providers"]) - 1) for p, _ in mine],
                       "symbol": SYMBOLS[m % len(SYMBOLS)], "color": PALETTE[m % len(PALETTE)],
                       "line": {"width": 1, "color": "#ffffff"}},
            "cliponaxis": False,
            "hovertemplate": "%{customdata}<br>rating %{y:.0f}<extra></extra>",
        })
    xaxis: dict[str, Any] = log_axis([p["x"] for p in merged]) if log_x else {"nticks": 6}
    xs = [p["x"] for p in merged]
    if xs and max(xs) - min(xs) <= _EPS * max(abs(x) for x in xs):
        # One x for every point (one price for all): plotly cannot scale an empty range; give it ±25 %.
        x = xs[0] or 1.0
        xaxis["range"] = ([math.log10(abs(x) * 0.75), math.log10(abs(x) * 1.25)] if log_x
                          else [x - 0.25 * abs(x), x + 0.25 * abs(x)])
    rows = math.ceil(len(models) / 2) + 1
    return {"data": data, "layout": _layout(
        title, x_label, "rating (95 % interval)", height=PLOT_HEIGHT + 22 * rows, xaxis=xaxis,
        showlegend=True, legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 11},
                                 "itemsizing": "constant"},
        margin={"l": 8, "r": 24, "t": 12, "b": 8})}


def heatmap(models: Sequence[str], matrix: Sequence[Sequence[float | None]], title: str) -> Figure:
    """Row model's win rate against column model, each cell labelled with its percentage. Models are in
    rating order; rows are named "1 model", columns by that number only, so the columns need no rotated
    labels on a phone (the hover names both models). The cells carry the numbers, so no colour bar."""
    z = [list(r) for r in matrix]
    text = [["" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%" for v in row]
            for row in z]
    numbers = [str(i + 1) for i in range(len(models))]
    rows = [f"{i + 1} {short(m, 24)}" for i, m in enumerate(models)]
    narrow = {"layout": {"yaxis.ticktext": [f"{i + 1} {m if len(m) <= 15 else m[:14] + '…'}"
                                            for i, m in enumerate(models)],
                         "yaxis.tickfont.size": 10},
              "style": {"textfont.size": 9 if len(models) > 4 else 10}}
    height = 150 + 32 * len(models)
    return {"data": [{"type": "heatmap", "x": list(models), "y": list(models), "z": z, "text": text,
                      "texttemplate": "%{text}", "textfont": {"size": 11},
                      "zmin": 0, "zmax": 1, "colorscale": "RdBu", "reversescale": False, "xgap": 1, "ygap": 1,
                      "showscale": False, "hovertemplate": "%{y} beats %{x}: %{z:.0%}<extra></extra>"}],
            "layout": _layout(title, "opponent (by rank)", "", height=height, narrow=narrow,
                              yaxis={"autorange": "reversed", "tickvals": list(models), "ticktext": rows},
                              xaxis={"tickvals": list(models), "ticktext": numbers, "side": "bottom"})}


def _interval(values: Sequence[float | None], lows: Sequence[float | None],
              highs: Sequence[float | None]) -> dict[str, Any]:
    """A plotly asymmetric error bar from point estimates and interval ends (missing ends draw no bar)."""
    return {"type": "data", "symmetric": False, "thickness": 1.5, "width": 4,
            "array": [h - v if h is not None and v is not None else 0 for v, h in zip(values, highs, strict=True)],
            "arrayminus": [v - lo if lo is not None and v is not None else 0 for v, lo in zip(values, lows, strict=True)]}


def side_by_side(title: str, names: Sequence[str], left: tuple[str, Sequence[float | None], Sequence[float | None],
                                                               Sequence[float | None]],
                 right: tuple[str, Sequence[float | None], Sequence[float | None], Sequence[float | None]],
                 *, right_percent: bool = False, x_label: str = "") -> Figure:
    """Two small panels over the same categories (``names``): each a point per category with its 95 %
    interval as an error bar. ``left``/``right``: (axis title, estimates, interval lows, interval highs)."""
    ticks = [short(n, 18) for n in names]
    span = [-0.5, len(names) - 0.5]
    traces: list[dict[str, Any]] = []
    for i, (axis_title, values, lows, highs) in enumerate((left, right)):
        suffix = "" if i == 0 else "2"
        traces.append({"type": "scatter", "mode": "markers", "x": ticks, "y": list(values), "name": axis_title,
                       "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "text": list(names),
                       "hovertemplate": "%{text}: %{y}<extra></extra>", "marker": {"size": 9, "color": PALETTE[i]},
                       "error_y": {**_interval(values, lows, highs), "color": PALETTE[i]}})
    layout = _layout(title, x_label, left[0], height=260,
                     xaxis={"domain": [0, 0.38], "type": "category", "tickangle": -30, "range": span},
                     narrow={"layout": {"xaxis.tickangle": -60, "xaxis2.tickangle": -60}})
    layout["xaxis2"] = {"domain": [0.64, 1], "type": "category", "automargin": True, "tickangle": -30, "anchor": "y2",
                        "range": span,
                        "title": {"text": x_label, "standoff": 8}}
    layout["yaxis2"] = {"anchor": "x2", "automargin": True, "title": {"text": right[0], "standoff": 8},
                        **({"tickformat": ".0%", "range": [0, 1.05]} if right_percent else {})}
    layout["yaxis"]["rangemode"] = "tozero"
    return {"data": traces, "layout": layout}
