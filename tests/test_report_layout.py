"""The report as a reader sees it in Debian's Chromium, at a desktop (1366 px) and a phone (390 px) width.

Every section fits its width (no horizontal overflow), every chart renders with its labels inside its panel
and its tick labels apart, plotly legends stay off the plot area, error tiles show their whole message once
opened, and the gallery's filters and pages work with no request leaving the folder. Screenshots of each
section go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report import build_report
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.conftest import in_ci
from tests.report_fixtures import build_store, rating_row

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not in_ci(),
                       reason="Debian chromium is not installed (apt-get install chromium); CI installs it"),
]

SECTIONS = ("providers", "charts", "leaderboard", "scores", "gallery", "provenance")
TARGETS = ["gemini-3-pro-image-preview@openrouter", "gemini-2.5-flash-image@google", "gemini-2.5-flash-image@fal",
           "gemini-2.5-flash-image@replicate", "gpt-image-1@openai"]
LONG_ERROR = ("upstream answered 400: " + "the prompt was rejected by the safety system; " * 6
              + "see https://example.invalid/" + "x" * 120 + " END")


def _leaderboard() -> dict[str, Any]:
    models = ["gemini-3-pro-image-preview", "gemini-2.5-flash-image", "gpt-image-1", "flux-dev"]
    ratings = [1110.0, 1040.0, 1020.0, 950.0]
    rows = [{"model": m, "rating": r, "ci_low": r - 25, "ci_high": r + 25, "votes": 300, "wins": 150, "ties": 20,
             "losses": 130, "rank_best": i + 1, "rank_worst": min(i + 2, 4), "provisional": False, "elo": r}
            for i, (m, r) in enumerate(zip(models, ratings, strict=True))]
    values = [[None if i == j else round(0.5 + (j - i) * 0.08, 2) for j in range(4)] for i in range(4)]
    return {"method": "Bradley–Terry", "by": "model", "votes": 600,
            "rows": [rating_row(r, i) for i, r in enumerate(rows, 1)], "has_elo": True,
            "best_for": [{"category": "portraiture", "model": models[0], "win_rate": 0.67, "votes": 120,
                          "rank_best": 1, "rank_worst": 1, "n_models": 4, "provisional": False, "supported": True},
                         {"category": "character", "model": "flux-dev", "win_rate": 0.625, "votes": 12,
                          "rank_best": 1, "rank_worst": 4, "n_models": 4, "provisional": True, "supported": False}],
            "matchups": [], "win_matrix": {"models": models, "values": values}, "notes": []}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("layout")
    db = tmp / "harness.db"
    first = build_store(db, challenges=20, targets=0, samples=2, success=0.7, run_id="run-monday",
                        label="monday", target_names=TARGETS, error_message=LONG_ERROR, seed=1)
    second = build_store(db, challenges=20, targets=0, samples=2, success=0.8, run_id="run-tuesday",
                         label="tuesday", target_names=[*TARGETS, "flux-dev@fal"], error_message="quota", seed=2)
    yield build_report(db, [first, second], tmp / "site", leaderboard=_leaderboard(), simulated_votes=True).index


OVERFLOW_JS = """sections => sections.map(id => {
  const s = document.getElementById(id);
  return [id, s.scrollWidth, s.clientWidth];
})"""

CHART_JS = """() => {
  // Two tick labels collide when their glyph boxes overlap. Labels of one axis share their rotation, so B's
  // box mapped into A's own (rotated) coordinates is axis-aligned there and a rectangle test is exact.
  const collide = (a, b) => {
    const m = a.getCTM().inverse().multiply(b.getCTM());
    const bb = b.getBBox(), ab = a.getBBox();
    const pts = [[bb.x, bb.y], [bb.x + bb.width, bb.y], [bb.x, bb.y + bb.height],
                 [bb.x + bb.width, bb.y + bb.height]].map(([x, y]) => new DOMPoint(x, y).matrixTransform(m));
    const xs = pts.map(p => p.x), ys = pts.map(p => p.y);
    return ab.x + 1 < Math.max(...xs) && Math.min(...xs) + 1 < ab.x + ab.width &&
           ab.y + 1 < Math.max(...ys) && Math.min(...ys) + 1 < ab.y + ab.height;
  };
  return Array.from(document.querySelectorAll('.chart')).map(div => {
    const box = div.getBoundingClientRect();
    const rect = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const shown = sel => Array.from(div.querySelectorAll(sel)).filter(e => e.textContent.trim() &&
        e.getBoundingClientRect().width > 0);
    const collisions = [];
    for (const sel of ['.xaxislayer-above .xtick text', '.yaxislayer-above .ytick text']) {
      const ticks = shown(sel);
      ticks.forEach((a, i) => ticks.slice(i + 1).forEach(b => {
        if (collide(a, b)) { collisions.push([a.textContent, b.textContent]); }
      }));
    }
    const plot = div.querySelector('.nsewdrag');
    const legend = div.querySelector('g.legend');
    return {id: div.id, box: [box.left, box.top, box.right, box.bottom], svg: !!div.querySelector('.main-svg'),
            labels: shown('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .gtitle, .legendtext')
              .map(e => [e.textContent, rect(e)]),
            collisions: collisions, plot: plot ? rect(plot) : null, legend: legend ? rect(legend) : null};
  });
}"""


def _overlap(a: list[float], b: list[float], slack: float = 1.0) -> bool:
    return a[0] + slack < b[2] and b[0] + slack < a[2] and a[1] + slack < b[3] and b[1] + slack < a[3]


def _inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


@pytest.mark.parametrize("width", [1366, 390])
def test_every_section_fits_and_every_chart_is_readable(site: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    folder = site.parent.resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(site.resolve().as_uri())
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.wait_for_function("document.querySelectorAll('.chart').length > 0 && "
                                   "document.querySelectorAll('.chart').length == "
                                   "document.querySelectorAll('.chart.js-plotly-plot').length", timeout=20_000)
            page.wait_for_timeout(300)
            for section, scroll, client in page.evaluate(OVERFLOW_JS, list(SECTIONS)):
                assert scroll <= client, f"{section} overflows at {width}px: {scroll} > {client}"
            whole = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert whole[0] <= whole[1], f"the page scrolls sideways at {width}px"

            charts = page.evaluate(CHART_JS)
            assert {c["id"] for c in charts} >= {"chart-latency", "chart-ttfb", "chart-success", "chart-errors",
                                                  "chart-rating_cost", "chart-rating_speed", "chart-heatmap"}
            for chart in charts:
                assert chart["svg"], f"{chart['id']} did not render"
                for text, box in chart["labels"]:
                    assert _inside(box, chart["box"]), f"{chart['id']}: label {text!r} clipped at {width}px"
                assert chart["collisions"] == [], f"{chart['id']}: tick labels collide at {width}px"
                if chart["legend"] and chart["plot"]:
                    assert not _overlap(chart["legend"], chart["plot"], 2.0), f"{chart['id']}: legend on the plot"
                    legend_h = chart["legend"][3] - chart["legend"][1]
                    assert legend_h <= 0.3 * (chart["box"][3] - chart["box"][1]), f"{chart['id']}: legend too tall"
            heat = page.locator("#chart-heatmap text.textpoint, #chart-heatmap .heatmaplayer text")
            assert heat.count() >= 12, "the heatmap prints its cells' percentages"

            tiles = page.locator("#gallery .failed details")
            assert tiles.count() > 0
            for i in range(min(tiles.count(), 6)):
                detail = tiles.nth(i)
                if detail.is_visible():
                    detail.locator("summary").click()
            failed = page.evaluate("""() => Array.from(document.querySelectorAll('#gallery .failed'))
                .filter(e => e.offsetParent !== null)
                .map(e => [e.scrollWidth, e.clientWidth, e.scrollHeight, e.clientHeight, e.innerText])""")
            assert failed
            for scroll_w, client_w, scroll_h, client_h, text in failed:
                assert scroll_w <= client_w and scroll_h <= client_h, f"error tile clips its text: {text[:60]!r}"
            assert any("END" in text for *_, text in failed), "an opened tile shows the message to its end"

            ARTIFACTS.mkdir(exist_ok=True)
            for section in SECTIONS:
                page.locator(f"#{section}").screenshot(path=str(ARTIFACTS / f"report-{width}-{section}.png"))
        finally:
            browser.close()
    assert problems == []
    outside = [u for u in requests if not u.startswith(folder)]
    assert outside == [], f"requests left the site folder: {outside[:5]}"


def test_gallery_filters_and_pages_without_the_network(site: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = site.parent.resolve().as_uri()
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(site.resolve().as_uri())
            visible = "() => Array.from(document.querySelectorAll('#gallery-items article')).filter(a => !a.hidden)"
            shown = page.evaluate(f"() => ({visible})().map(a => a.querySelector('h3').textContent.trim())")
            assert len(shown) == 8, "the first page shows 8 challenges"
            assert "page 1 of 3" in page.locator("#gallery-count").inner_text()
            page.locator("#gallery nav.pager").first.get_by_role("button", name="next ›").click()
            second = page.evaluate(f"() => ({visible})().map(a => a.querySelector('h3').textContent.trim())")
            assert len(second) == 8 and not set(second) & set(shown)
            page.wait_for_function("Array.from(document.querySelectorAll("
                                   "'#gallery-items article:not([hidden]) img')).slice(0, 3)"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=20_000)
            loaded = [u for u in requests if "/assets/thumbs/" in u]
            assert 0 < len(loaded) <= 2 * 8 * 11, "only shown pages' thumbnails are fetched"

            page.select_option("#gallery-filters select[name=outcome]", "failed")
            outcomes = page.evaluate("""() => Array.from(document.querySelectorAll('#gallery figure.tile'))
                .filter(t => !t.hidden && !t.closest('article').hidden).map(t => t.dataset.outcome)""")
            assert outcomes and set(outcomes) == {"failed"}
            page.select_option("#gallery-filters select[name=target]", "flux-dev@fal [tuesday]")
            targets = page.evaluate("""() => Array.from(document.querySelectorAll('#gallery figure.tile'))
                .filter(t => !t.hidden && !t.closest('article').hidden).map(t => t.dataset.target)""")
            assert set(targets) <= {"flux-dev@fal [tuesday]"}
            page.select_option("#gallery-filters select[name=outcome]", "")
            page.select_option("#gallery-filters select[name=challenge]", "c3")
            articles = page.evaluate(f"() => ({visible})().map(a => a.dataset.challenge)")
            assert articles == ["c3"]
            page.locator(".legend button").first.click()
            assert page.locator(".legend button").first.get_attribute("aria-pressed") == "false"
            hidden = page.evaluate("""() => document.getElementById('chart-latency').data
                .filter(t => t.visible === false).length""")
            assert hidden == 1, "the shared legend hides a target in the charts"
        finally:
            browser.close()
    outside = [u for u in requests if not u.startswith(folder)]
    assert outside == [], f"requests left the site folder: {outside[:5]}"
