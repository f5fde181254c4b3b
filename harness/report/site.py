"""Writes the static site: ``index.html``, ``assets/`` (CSS, JS, plotly.js once, thumbnails, full images) and
machine-readable exports next to the page (``providers.json/.csv``, ``leaderboard.json/.csv``).

The site is self-contained: every URL in it is relative and inside the folder, so it opens from ``file://``
and can be published as-is on any static host.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from harness.report import charts
from harness.report.collect import ReportData
from harness.report.thumbs import ImageRef, publish_images

EXPORT_SCHEMA_VERSION = 1
PLOTLY_JS = "plotly.min.js"


@dataclass(frozen=True)
class SiteResult:
    """Where the site went and what building it did (thumbnails made vs reused from the cache)."""

    index: Path
    thumbnails_made: int
    thumbnails_reused: int


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(pct=_pct, ms=_ms, usd=_usd)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}
    return env


PROVIDER_ROW_KEYS = (
    "success_ci_low", "success_ci_high", "p50_ci_low_ms", "p50_ci_high_ms", "p95_ci_low_ms", "p95_ci_high_ms",
    "p95_with_failures_ms", "p95_with_failures_censored", "submit_p50_ms", "queue_p50_ms", "run_p50_ms",
    "fetch_p50_ms", "download_p50_ms", "poll_interval_ms", "invariant_violations", "errors",
)
"""Optional provider-table keys the page shows; absent ones render as a dash."""


def _page_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        filled = {key: None for key in PROVIDER_ROW_KEYS} | dict(row)
        filled["withheld"] = dict(row.get("withheld") or {})
        filled.setdefault("label", row["target"])
        out.append(filled)
    return out


def _chart_specs(data: ReportData) -> dict[str, charts.Figure]:
    specs: dict[str, charts.Figure] = {}
    if data.latency_curves:
        specs["latency"] = charts.ecdf(data.latency_curves, "Latency distribution (successful requests)", "ms")
    if any(data.ttfb_curves.values()):
        specs["ttfb"] = charts.ecdf(data.ttfb_curves, "Time to first byte", "ms")
    if data.success_over_time:
        specs["success"] = charts.success_over_time(data.success_over_time)
    if data.error_mix:
        specs["errors"] = charts.error_mix(data.error_mix)
    lb = data.leaderboard
    if lb and data.provider_rows:
        ratings = {r["model"]: r for r in lb["rows"]}
        points = []
        for row in data.provider_rows:
            rated = ratings.get(row["model"])
            if rated is None:
                continue
            points.append({"label": row["label"], "rating": rated["rating"], "ci_low": rated["ci_low"],
                           "ci_high": rated["ci_high"], "cost": row.get("cost_per_image_usd"),
                           "speed": row.get("p50_ms")})
        if points:
            specs["rating_cost"] = charts.rating_scatter(points, "cost", "Rating vs cost", "USD per successful image")
            specs["rating_speed"] = charts.rating_scatter(points, "speed", "Rating vs speed", "p50 latency (ms)",
                                                          log_x=True)
    if lb and lb.get("win_matrix"):
        matrix = lb["win_matrix"]
        specs["heatmap"] = charts.heatmap(matrix["models"], matrix["values"], "Win rate (row beats column)")
    return specs


def _images(data: ReportData) -> Iterable[ImageRef]:
    for item in data.gallery:
        for ref in item.references:
            yield ImageRef(ref["sha256"], ref["ext"])
        if item.mask:
            yield ImageRef(item.mask["sha256"], item.mask["ext"])
        for out in item.outputs:
            if out.sha256 and out.ext:
                yield ImageRef(out.sha256, out.ext)


def _flat(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, allow_nan=False, default=str)
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN becomes null (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def _write_exports(out: Path, name: str, rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    payload = {"schema_version": EXPORT_SCHEMA_VERSION, **meta, "rows": _clean(list(rows))}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _flat(v) for k, v in row.items()})
    (out / f"{name}.csv").write_text(buffer.getvalue(), encoding="utf-8")


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise FileNotFoundError(f"plotly.js not found at {path}; reinstall the plotly package")
    return path


def write_site(data: ReportData, out: Path, images_dir: Path, thumbs_cache: Path) -> SiteResult:
    """Render ``data`` into the folder ``out`` (created; files it owns are replaced)."""
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    static = resources.files("harness.report").joinpath("static")
    for name in ("report.css", "report.js"):
        (assets / name).write_text(static.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
    plotly_target = assets / PLOTLY_JS
    source = _plotly_js()
    if not plotly_target.exists() or plotly_target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, plotly_target)
    made, reused = publish_images(_images(data), images_dir, thumbs_cache, assets)
    specs = _chart_specs(data)
    page = dataclasses.replace(data, provider_rows=_page_rows(data.provider_rows))
    html = _environment().get_template("index.html").render(data=page, charts=_clean(specs))
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    meta = {"generated_at": data.generated_at, "runs": [r.id for r in data.runs], "sandbox": data.sandbox}
    _write_exports(out, "providers", data.provider_rows, meta)
    if data.leaderboard:
        _write_exports(out, "leaderboard", data.leaderboard["rows"],
                       {**meta, "method": data.leaderboard.get("method"), "votes": data.leaderboard.get("votes"),
                        "simulated_votes": data.simulated_votes})
    return SiteResult(index, made, reused)
