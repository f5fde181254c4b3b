"""The report opened from file:// in Debian's Chromium: nothing leaves the folder, tables and charts render."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.challenges import load
from harness.report import build_report
from harness.run import RunOptions, start_run
from harness.targets import load_targets, resolve_keys, select
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.conftest import in_ci
from tests.test_report import hand_leaderboard

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not in_ci(),
                       reason="Debian chromium is not installed (apt-get install chromium); CI installs it"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("report")
    suite = tmp / "suite"
    shutil.copytree(Path(__file__).resolve().parents[1] / "challenges" / "starter", suite)
    shutil.copytree(Path(__file__).resolve().parents[1] / "challenges" / "assets", tmp / "assets")
    chosen = select(load_targets(), ["gpt-image-1@openai", "gpt-image-1.5@openai"])
    challenges = [c for c in load(suite) if c.id in ("paladin-portrait", "thick-hair-edit", "caffe-florian-logo")]
    if len(challenges) < 2:
        challenges = load(suite)[:3]
    db = tmp / "r" / "harness.db"
    run = start_run(db, challenges, chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.002, samples=3, seed=2))
    yield build_report(db, [run.run_id], tmp / "site", leaderboard=hand_leaderboard(), simulated_votes=True).index


def test_report_opens_from_file_with_no_request_outside_its_folder(site: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = site.parent.resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(site.resolve().as_uri())
            page.wait_for_selector("#chart-latency .main-svg", timeout=20_000)
            charts = page.locator(".chart")
            rendered = page.locator(".chart .main-svg")
            assert charts.count() >= 5
            page.wait_for_function("document.querySelectorAll('.chart').length == "
                                   "document.querySelectorAll('.chart.js-plotly-plot').length", timeout=20_000)
            assert rendered.count() >= charts.count()
            rows = page.locator("#provider-table tbody tr")
            assert rows.count() == 2
            header = page.locator("#provider-table thead th").filter(has_text=re.compile(r"^p50 ms"))
            assert header.count() == 1
            header.click()
            assert header.get_attribute("aria-sort") == "ascending"
            header.click()
            assert header.get_attribute("aria-sort") == "descending"
            assert page.locator("#leaderboard-table tbody tr").count() == 2
            page.locator("#gallery a.zoom").first.click()
            assert page.locator("dialog#zoom").evaluate("d => d.open")
            page.keyboard.press("Escape")
            page.evaluate("window.scrollTo(0, 0)")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        finally:
            browser.close()
    assert problems == []
    outside = [u for u in requests if not u.startswith(folder)]
    assert outside == [], f"requests left the site folder: {outside[:5]}"
    assert any(u.endswith("plotly.min.js") for u in requests)
