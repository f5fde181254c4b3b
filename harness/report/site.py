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
import markupsafe

from harness.ratings import RATINGS_SCHEMA_VERSION
from harness.ratings.leaderboard import board_columns
from harness.report import charts
from harness.report.collect import ReportData
from harness.report.gallery import GALLERY_PAGE_SIZE, gallery_filters, preview
from harness.report.provider_columns import (
    all_figures,
    export_rows,
    fmt_ms,
    fmt_pct,
    fmt_usd,
    provider_page_table,
)
from harness.report.thumbs import FullImages, ImageRef, publish_images
from harness.stats.goodput import format_slo

EXPORT_SCHEMA_VERSION = 1
PLOTLY_JS = "plotly.min.js"
IMAGE_FOLDERS = ("thumbs", "full")


@dataclass(frozen=True)
class SiteSize:
    """What the site weighs, in bytes of the files it publishes (a hard-linked image counts in full: a copy
    on a web host costs that much). ``first_view``: what a browser loads before the first scroll (page,
    scripts, styles, the first gallery page's thumbnails at most)."""

    page: int
    scripts: int
    thumbnails: int
    thumbnail_files: int
    full_images: int
    full_image_files: int
    exports: int
    first_view: int

    @property
    def total(self) -> int:
        return self.page + self.scripts + self.thumbnails + self.full_images + self.exports

    def summary(self) -> str:
        """One line: total and its parts."""
        return (f"{human_bytes(self.total)} in all: page {human_bytes(self.page)}, scripts "
                f"{human_bytes(self.scripts)}, {self.thumbnail_files} thumbnail(s) {human_bytes(self.thumbnails)}, "
                f"{self.full_image_files} full-size image(s) {human_bytes(self.full_images)}, exports "
                f"{human_bytes(self.exports)}")


def human_bytes(n: int) -> str:
    """``n`` bytes in decimal units (what a web host bills): 1.2 MB, 830 kB, 12 B."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class SiteResult:
    """Where the site went and what building it did (thumbnails made vs reused from the cache), its size, and
    the images it could not show."""

    index: Path
    thumbnails_made: int
    thumbnails_reused: int
    size: SiteSize | None = None
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)
    """Images the page could not show (sha256 → why: missing from the store, unreadable)."""


def breakable(text: str) -> markupsafe.Markup:
    """``text`` escaped, with a line-break opportunity before each "@" and "[" (target names wrap between
    model, provider and run rather than mid-word)."""
    escaped = markupsafe.escape(text)
    return markupsafe.Markup(escaped.replace("@", markupsafe.Markup("<wbr>@")).replace(
        " [", markupsafe.Markup(" <wbr>[")))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(pct=fmt_pct, ms=fmt_ms, usd=fmt_usd, human_bytes=human_bytes, preview=preview,
                       breakable=breakable, slo=format_slo)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}
    return env


def _rated_points(data: ReportData) -> list[dict[str, Any]]:
    """Per provider row with a rating: its model's (or, rated by target, its own) rating and interval beside
    its cost per image and p50 latency."""
    lb = data.leaderboard
    if not lb:
        return []
    ratings = {r.model: r for r in lb.rows}
    points = []
    for row, label in zip(data.provider_rows, data.row_labels, strict=True):
        rated = ratings.get(row.target) if lb.by == "target" else ratings.get(row.model)
        if rated is None:
            rated = ratings.get(row.model) or ratings.get(row.target)
        if rated is None:
            continue
        points.append({"label": label, "model": rated.model, "provider": row.provider, "rating": rated.rating,
                       "ci_low": rated.ci_low, "ci_high": rated.ci_high, "cost": row.cost_per_image_usd,
                       "speed": row.p50_ms})
    return points


def _chart_specs(data: ReportData, colors: dict[str, dict[str, str]]) -> dict[str, charts.Figure]:
    specs: dict[str, charts.Figure] = {}
    if data.latency_curves:
        specs["latency"] = charts.ecdf(data.latency_curves, "Latency (successful requests)", "ms", colors)
    if any(data.ttfb_curves.values()):
        specs["ttfb"] = charts.ecdf(data.ttfb_curves, "Time to first byte", "ms", colors)
    if data.success_over_time:
        specs["success"] = charts.success_over_time(data.success_over_time, colors)
    if data.error_mix:
        specs["errors"] = charts.error_mix(data.error_mix)
    points = _rated_points(data)
    if points:
        specs["rating_cost"] = charts.rating_scatter(points, "cost", "Rating vs cost", "USD per successful image")
        specs["rating_speed"] = charts.rating_scatter(points, "speed", "Rating vs speed", "p50 latency (ms)",
                                                      log_x=True)
    lb = data.leaderboard
    if lb and lb.win_matrix and lb.win_matrix.models:
        matrix = lb.win_matrix
        specs["heatmap"] = charts.heatmap(matrix.models, matrix.values, "Win rate (row beats column)")
    return specs


def _section_specs(data: ReportData) -> dict[str, charts.Figure]:
    """One small chart per model served by several providers, per sweep, per series (trends) and per scorer of
    conversations (consistency across turns); see :mod:`.sections`."""
    specs: dict[str, charts.Figure] = {}
    for i, section in enumerate(data.model_sections):
        ps = section.view.providers
        specs[f"model-{i}"] = charts.side_by_side(
            section.title, [p.label for p in ps],
            ("p50 latency (ms)", [p.p50_ms for p in ps], [p.p50_ci_low_ms for p in ps],
             [p.p50_ci_high_ms for p in ps]),
            ("success rate", [p.success_rate for p in ps], [p.success_ci_low for p in ps],
             [p.success_ci_high for p in ps]), right_percent=True)
    for i, sweep in enumerate(data.sweeps):
        lv = sweep.levels
        specs[f"sweep-{i}"] = charts.side_by_side(
            f"sweep {sweep.sweep_id}", [level.name for level in lv],
            ("images per second", [level.throughput_per_s for level in lv], [level.throughput_ci_low for level in lv],
             [level.throughput_ci_high for level in lv]),
            ("p50 latency (ms)", [level.p50_ms for level in lv], [level.p50_ci_low_ms for level in lv],
             [level.p50_ci_high_ms for level in lv]), x_label="level")
    for i, trend in enumerate(data.trends):
        specs[f"trend-{i}"] = trend.figure
    for i, scored in enumerate(data.consistency):
        specs[f"consistency-{i}"] = scored.figure
    return specs


def strip_exts(data: ReportData) -> dict[str, str]:
    """SHA-256 → file extension of every image a turn strip shows (starting images are the challenge's
    references, whose extension the gallery knows)."""
    exts = {str(r["sha256"]): str(r["ext"]) for item in data.gallery for r in item.references}
    for talk in data.turn_strips:
        for _, strip in talk.strips:
            exts.update({s.image_sha256: s.image_ext for s in strip.steps if s.image_sha256 and s.image_ext})
    return exts


def _images(data: ReportData) -> Iterable[ImageRef]:
    exts = strip_exts(data)
    for talk in data.turn_strips:
        for _, strip in talk.strips:
            for sha in strip.start_images:
                if sha in exts:
                    yield ImageRef(sha, exts[sha])
            for step in strip.steps:
                if step.image_sha256 and step.image_ext:
                    yield ImageRef(step.image_sha256, step.image_ext)
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


def _prune(assets: Path, keep: set[str]) -> None:
    """Remove image files of earlier builds that this page no longer shows (the folder is published as is)."""
    for folder in IMAGE_FOLDERS:
        for path in (assets / folder).iterdir():
            if path.is_file() and f"{folder}/{path.name}" not in keep:
                path.unlink()


def _bytes(paths: Iterable[Path]) -> tuple[int, int]:
    sizes = [p.stat().st_size for p in paths if p.is_file()]
    return sum(sizes), len(sizes)


def measure(out: Path, first_page_thumbs: Sequence[str] = ()) -> SiteSize:
    """What the site in ``out`` weighs (see :class:`SiteSize`)."""
    assets = out / "assets"
    page = (out / "index.html").stat().st_size if (out / "index.html").exists() else 0
    scripts, _ = _bytes(p for p in assets.iterdir() if p.suffix in (".js", ".css"))
    thumbs, n_thumbs = _bytes((assets / "thumbs").iterdir())
    full, n_full = _bytes((assets / "full").iterdir())
    exports, _ = _bytes(p for p in out.iterdir() if p.suffix in (".json", ".csv"))
    first, _ = _bytes(assets / "thumbs" / name for name in dict.fromkeys(first_page_thumbs))
    return SiteSize(page, scripts, thumbs, n_thumbs, full, n_full, exports, page + scripts + first)


def _first_page_thumbs(data: ReportData) -> list[str]:
    names: list[str] = []
    for item in data.gallery[:GALLERY_PAGE_SIZE]:
        names.extend(f"{r['sha256']}.webp" for r in item.references)
        if item.mask:
            names.append(f"{item.mask['sha256']}.webp")
        names.extend(f"{o.sha256}.webp" for o in item.outputs if o.sha256)
    return names


def write_site(data: ReportData, out: Path, images_dir: Path, thumbs_cache: Path,
               full_images: FullImages = "view") -> SiteResult:
    """Render ``data`` into the folder ``out`` (created; files it owns are replaced).

    ``full_images``: what a tile links to as its full-size image (:data:`harness.report.thumbs.FullImages`).
    """
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    static = resources.files("harness.report").joinpath("static")
    for name in ("report.css", "report.js"):
        (assets / name).write_text(static.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
    plotly_target = assets / PLOTLY_JS
    source = _plotly_js()
    if not plotly_target.exists() or plotly_target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, plotly_target)
    published = publish_images(_images(data), images_dir, thumbs_cache, assets, full_images=full_images)
    keep = {f"thumbs/{sha}.webp" for sha in {r.sha256 for r in _images(data)} - set(published.unavailable)}
    keep |= {f"full/{name}" for name in published.full.values()}
    _prune(assets, keep)
    colors = charts.target_colors(data.row_labels)
    specs = _chart_specs(data, colors)
    meta = {"generated_at": data.generated_at, "runs": [r.id for r in data.runs], "sandbox": data.sandbox}
    _write_exports(out, "providers", export_rows(data.provider_rows, data.row_labels), meta)
    if data.leaderboard:
        lb = data.leaderboard
        _write_exports(out, "leaderboard", [r.as_dict() for r in lb.rows],
                       {**meta, "method": lb.method, "votes": lb.votes, "intervals": lb.intervals,
                        "confidence": lb.confidence, "ratings_schema_version": RATINGS_SCHEMA_VERSION,
                        "simulated_votes": data.simulated_votes})
    first = _first_page_thumbs(data)
    template = _environment().get_template("index.html")
    table = provider_page_table(data.provider_rows, data.row_labels)
    sections = _section_specs(data)
    context = {"data": data, "charts": _clean(specs), "all_charts": _clean({**specs, **sections}),
               "strip_exts": strip_exts(data), "table": table, "rating_columns": board_columns("page"),
               "figures": all_figures(data.provider_rows, table.columns),
               "legend": [(label, style) for label, style in colors.items()
                          if label in data.latency_curves or label in data.success_over_time],
               "filters": gallery_filters(data.gallery), "page_size": GALLERY_PAGE_SIZE,
               "full": published.full, "full_images": full_images, "unavailable": published.unavailable}
    index = out / "index.html"
    size = measure(out, first)
    for _ in range(3):
        index.write_text(template.render(**context, size=size), encoding="utf-8")
        measured = measure(out, first)
        if measured == size:
            break
        size = measured
    return SiteResult(index, published.thumbnails_made, published.thumbnails_reused, size, published.unavailable)
