"""The report shows what the other stages measured, when the runs have it: a series' trend with the runs that
moved, goodput against a latency objective, how far each quality signal and judge agrees with the votes beside
the style-controlled board, and how consistent conversations stay turn by turn. Each is built from real
sandbox data and left out when its data do not exist."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.quality.section import quality_section
from harness.report import build_report
from harness.report.consistency import consistency_sections
from harness.report.provider_columns import fmt_pct
from harness.sandbox.voters import VoterPanel
from harness.stats.goodput import format_slo
from harness.store import Store
from harness.store import runs as run_store
from harness.trend import build_trend
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.conftest import in_ci
from tests.report_fixtures import build_store
from tests.test_report_sections import TWO_PROVIDERS, charts_of, plain_suite, sandbox_run  # noqa: F401

SECTION = r'<{tag} id="{ident}"[^>]*>(.*?)</{tag}>\s*(?=<section|<div id="gallery-items"|</main>)'


def page(site: Path) -> str:
    return (site / "index.html").read_text(encoding="utf-8")


def part(html: str, ident: str, tag: str = "section") -> str:
    match = re.search(SECTION.format(tag=tag, ident=ident), html, re.S)
    assert match is not None, f"no #{ident} in the page"
    return match.group(1)


def pct(cell: dict[str, Any]) -> str:
    """A share and its interval as the page should write it, from the stage's own figures."""
    return f"{100 * cell['share']:.0f} % [{100 * cell['low']:.0f}–{100 * cell['high']:.0f}]"


def test_a_series_shows_its_trend_and_names_the_run_that_got_slower(
        series: dict[str, Any], tmp_path: Path) -> None:
    db = series["db"]
    build_report(db, [series["slow"]], tmp_path / "site")
    html = page(tmp_path / "site")
    trends = part(html, "trends")
    assert 'href="#trends"' in html
    with Store.open(db, readonly=True) as store:
        trend = build_trend(store, "nightly")
    assert f"series nightly · {len(trend.runs)} runs" in trends and "series weekly" not in trends
    flags = re.findall(r'<p class="statement flagged">(.*?)</p>', trends, re.S)
    assert flags and any(line.startswith(series["slow"]) for line in flags), "the slower run is named"
    assert len(flags) == len(trend.flagged)
    figure = charts_of(html)["trend-0"]
    p50 = [t for t in figure["data"] if t["name"].endswith(" p50")]
    assert p50, "a p50 line per target"
    assert series["slow"] in {p.run_id for p in trend.flagged}
    for trace in p50:
        assert len(set(trace["x"])) == len(trace["x"]), "each run at its own place on the axis"
        assert all(y is None or y > 0 for y in trace["y"])
    assert len({x for trace in p50 for x in trace["x"]}) == len(trend.runs), "every run of the series is drawn"
    sizes = {size for trace in p50 for size in trace["marker"]["size"]}
    assert len(sizes) == 2, "a flagged run is drawn larger than the others"


def test_a_run_of_no_series_has_no_trends(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    run_id = build_store(db, challenges=2, targets=2, samples=2)
    build_report(db, [run_id], tmp_path / "site")
    html = page(tmp_path / "site")
    for ident in ("trends", "quality", "consistency"):
        assert f'id="{ident}"' not in html and f'href="#{ident}"' not in html
    assert not [name for name in charts_of(html) if name.startswith(("trend-", "consistency-"))]
    head = part(html, "providers").split("<thead>")[1].split("</thead>")[0]
    assert "goodput" not in head, "no objective, no goodput column"
    assert "goodput objective" not in html


def test_goodput_against_an_objective_is_a_column_of_the_table_and_the_export(
        tmp_path: Path, plain_suite: Path) -> None:  # noqa: F811
    db = tmp_path / "harness.db"
    run_id = sandbox_run(db, plain_suite, TWO_PROVIDERS, samples=8)
    with Store.open(db, readonly=True) as store:
        attempts = run_store.attempts_frame(store, [run_id])
    final = attempts[attempts["final"] == 1]
    slo_ms = float(int(final["time_to_image_ms"].median()))
    result = CliRunner().invoke(cli, ["report", run_id, "--slo", f"{slo_ms:.0f}ms", "--out", str(tmp_path / "site"),
                                      "--db", str(db)])
    assert result.exit_code == 0, result.output
    html = page(tmp_path / "site")
    head = part(html, "providers").split("<thead>")[1].split("</thead>")[0]
    assert f"goodput ≤ {format_slo(slo_ms)} (95 % CI)" in head
    assert f"goodput objective</th><td>{format_slo(slo_ms)}" in part(html, "provenance")
    exported = {r["target"]: r for r in json.loads((tmp_path / "site" / "providers.json").read_text())["rows"]}
    assert set(exported) == set(TWO_PROVIDERS)
    for target, group in final.groupby("target", observed=True):
        made_it = int(((group["ok"] == 1) & (group["time_to_image_ms"] <= slo_ms)).sum())
        expected = made_it / len(group)
        row = exported[str(target)]
        assert row["slo_ms"] == slo_ms and row["goodput"] == pytest.approx(expected)
        assert row["goodput_ci_low"] <= expected <= row["goodput_ci_high"]
        assert fmt_pct(expected) in html

    bad = CliRunner().invoke(cli, ["report", run_id, "--slo", "10", "--out", str(tmp_path / "bad"), "--db", str(db)])
    assert bad.exit_code != 0 and "--slo" in bad.output and "unit" in bad.output
    assert not (tmp_path / "bad" / "index.html").exists()


def test_quality_signals_judges_and_the_style_controlled_board_are_shown_as_measured(
        judged_run: tuple[Path, str, VoterPanel], tmp_path: Path) -> None:
    db, run_id, _ = judged_run
    with Store.open(db, readonly=True) as store:
        expected = quality_section(store, [run_id])
    assert expected is not None
    build_report(db, [run_id], tmp_path / "site")
    html = page(tmp_path / "site")
    quality = part(html, "quality")
    assert 'href="#quality"' in html
    rows = dict(re.findall(r'<tr data-signal="([^"]+)">(.*?)</tr>', quality, re.S))
    assert set(rows) == {e["signal"] for e in expected["agreement"]["signals"]}
    for entry in expected["agreement"]["signals"]:
        overall, cells = entry["overall"], rows[entry["signal"]]
        shown = pct(overall) if "share" in overall else overall["withheld"]
        assert shown in cells, f"{entry['signal']}: {shown!r} not shown"
        assert f"<td>{overall['compared']}</td>" in cells
        board = entry["board"]
        assert (f"ρ = {board['spearman']:.2f}" if "spearman" in board else board["withheld"]) in cells
    assert any("share" in e["overall"] for e in expected["agreement"]["signals"]), "a measured share is shown"

    judges = dict(re.findall(r'<tr data-judge="([^"]+)">(.*?)</tr>', quality, re.S))
    assert set(judges) == set(expected["judges"]) and len(judges) == 2
    for judge, bias in expected["judges"].items():
        assert pct(bias["first_wins"]) in judges[judge]

    style = expected["style"]
    assert "withheld" not in style, style
    table = quality.split('id="style-table"')[1].split("</table>")[0]
    for styled in style["style"]["ratings"]:
        plain = next(r for r in style["plain"]["ratings"] if r["model"] == styled["model"])
        line = re.search(rf"<tr><td>[^<]*{re.escape(styled['model'].split('@')[0])}.*?</tr>", table, re.S)
        assert line is not None, styled["model"]
        assert f"{styled['rating']:.0f} [{styled['low']:.0f}–{styled['high']:.0f}]" in line.group(0)
        assert f"{plain['rating']:.0f} [{plain['low']:.0f}–{plain['high']:.0f}]" in line.group(0)
    for c in style["style"]["coefficients"]:
        assert f"<td>{c['covariate']}</td><td>{c['beta']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]</td>" in quality


def test_conversations_scored_turn_by_turn_show_their_consistency_after_the_strips(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("open_clip")
    from tests.test_consistency import TARGETS, preserving_talk_suite
    from tests.test_scoring_support import make_tiny_clip, sandbox_run

    clip = make_tiny_clip(tmp_path_factory)
    db = tmp_path / "results" / "harness.db"
    run_id = sandbox_run(db, preserving_talk_suite(tmp_path / "suite"), TARGETS)
    scored = CliRunner().invoke(cli, ["score", run_id, "--model", f"local-dir:{clip}", "--db", str(db)])
    assert scored.exit_code == 0, scored.output
    build_report(db, [run_id], tmp_path / "site")
    html = page(tmp_path / "site")
    assert html.index('id="turn-strips"') < html.index('id="consistency"') < html.index('id="gallery-items"')
    block = part(html, "consistency", "div")
    with Store.open(db, readonly=True) as store:
        (expected,) = consistency_sections(store, [run_store.get_run(store, run_id)])
    assert f"Consistency across turns · {expected.scorer}" in block
    figure = charts_of(html)["consistency-0"]
    traces = {t["name"]: t for t in figure["data"]}
    assert set(traces) == set(TARGETS)
    by_turn = {(r.target, r.turn): r.mean for r in expected.result.turns if r.metric == "clip_i_first"}
    for target, trace in traces.items():
        assert trace["x"] == [1, 2, 3] and trace["y"][0] == 1.0
        assert trace["y"][1:] == pytest.approx([by_turn[(target, k)] for k in (2, 3)])


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM) and not in_ci(),
                    reason="Debian chromium is not installed (apt-get install chromium); CI installs it")
def test_trends_and_quality_fit_a_phone(series: dict[str, Any], judged_run: tuple[Path, str, VoterPanel],
                                        tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    db, run_id, _ = judged_run
    sites = {"trends": build_report(series["db"], [series["slow"]], tmp_path / "trend").index,
             "quality": build_report(db, [run_id], tmp_path / "quality").index}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 900})
            for ident, index in sites.items():
                page.goto(index.resolve().as_uri())
                page.wait_for_function("document.querySelectorAll('.chart').length == "
                                       "document.querySelectorAll('.chart.js-plotly-plot').length", timeout=20_000)
                scroll, client = page.evaluate(f"() => {{ const s = document.getElementById('{ident}'); "
                                               "return [s.scrollWidth, s.clientWidth]; }")
                assert scroll <= client, f"#{ident} overflows at 390px: {scroll} > {client}"
                whole = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert whole[0] <= whole[1], f"the page with #{ident} scrolls sideways at 390px"
                ARTIFACTS.mkdir(exist_ok=True)
                page.locator(f"#{ident}").screenshot(path=str(ARTIFACTS / f"report-390-{ident}.png"))
        finally:
            browser.close()
