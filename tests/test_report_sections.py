"""The report's sections that only some runs call for: a conversation shown turn by turn, one model across its
providers with the differences the data support, and a sweep's throughput with its knee. Each appears with the
stages' own figures when its runs are in the report, and is left out when none are."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from markupsafe import escape

from harness.challenges import load
from harness.cli.sweep import sweep
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, ProviderError
from harness.providers.gemini import GeminiProvider
from harness.report import build_report
from harness.run import RunOptions, start_run
from harness.stats.bymodel import model_views
from harness.stats.source import effective_timeout_ms
from harness.store import Store
from harness.store import runs as run_store
from harness.sweep import load_spec, summarize
from harness.targets import load_targets, resolve_keys, select
from harness.timing import TimedHttp
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.conftest import in_ci
from tests.report_fixtures import build_store
from tests.test_multiturn_run import write_talk_suite

CHART_DATA = re.compile(r'<script id="chart-data" type="application/json">(.*?)</script>', re.S)
TWO_PROVIDERS = ["flux-dev@fal", "flux-dev@replicate"]
SLOW_REPLICATE = """fal:
  latency: {median_s: 0.5, p95_s: 0.6}
  run: {median_s: 0.5, p95_s: 0.6}
  faults: {}
  model_speed: {}
replicate:
  latency: {median_s: 3.0, p95_s: 3.3}
  run: {median_s: 3.0, p95_s: 3.3}
  faults: {}
  model_speed: {}
"""
"""fal answers in about half a second, replicate in about three: the model view can tell them apart."""


def markup(text: str) -> str:
    return str(escape(text))


def charts_of(html: str) -> dict[str, Any]:
    match = CHART_DATA.search(html)
    assert match is not None
    return dict(json.loads(match.group(1)))


def section(html: str, ident: str) -> str:
    match = re.search(rf'<(section|div) id="{ident}">(.*?)</\1>\s*(?=<section|<div id="gallery-items"|{{%|$)', html,
                      re.S)
    assert match is not None, f"no #{ident} in the page"
    return match.group(2)


@pytest.fixture
def talk_suite(tmp_path: Path) -> Path:
    return write_talk_suite(tmp_path / "talk")


@pytest.fixture
def plain_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "plain"
    suite.mkdir()
    (suite / "fox.yaml").write_text("""
id: fox
title: Fox
category: illustration
kind: text-to-image
prompt: A watercolor fox reading a newspaper
params: {aspect_ratio: "1:1", seed: 1}
""", encoding="utf-8")
    return suite


def sandbox_run(db: Path, suite: Path, targets: list[str], **options: Any) -> str:
    chosen = select(load_targets(), targets)
    opts = RunOptions(sandbox=True, time_scale=0.01, sandbox_faults=False, **options)
    return start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), opts).run_id


@pytest.fixture
def refuse_one_scarf(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first conversation to reach its second turn is refused there; every other turn succeeds."""
    original = GeminiProvider.exchange
    refused: list[str] = []

    async def exchange(self: GeminiProvider, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        if len(request.history) == 1 and not refused:
            refused.append(request.prompt)
            raise ProviderError(ErrorKind.REFUSED, "output blocked (IMAGE_SAFETY)", http_status=200,
                                provider_code="IMAGE_SAFETY")
        return await original(self, request, http)

    monkeypatch.setattr(GeminiProvider, "exchange", exchange)


def sweep_run_ids(db: Path, suite: Path) -> tuple[str, list[str]]:
    result = CliRunner().invoke(sweep, ["--target", "flux-dev@fal", "--concurrency", "1,2", "--requests-per-level",
                                        "6", "--sandbox", "--time-scale", "0.02", "--challenges", str(suite),
                                        "--db", str(db), "--json"], catch_exceptions=False, env={"CI": "true"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return str(data["sweep_id"]), [str(level["run_id"]) for level in data["levels"]]


def test_a_conversation_shows_each_turn_with_its_instruction_and_where_it_stopped(
        tmp_path: Path, talk_suite: Path, refuse_one_scarf: None) -> None:
    db = tmp_path / "harness.db"
    run_id = sandbox_run(db, talk_suite, ["gemini-2.5-flash-image@google"])
    build_report(db, [run_id], tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    strips = section(html, "turn-strips")
    assert "Smile, scarf, night" in strips
    rows = re.findall(r'<div class="strip" data-target="([^"]+)" data-completed="(yes|no)">(.*?)</div>\s*</div>',
                      strips, re.S)
    assert sorted(done for _, done, _ in rows) == ["no", "yes"], "one conversation refused, the other completed"
    assert {target for target, _, _ in rows} == {"gemini-2.5-flash-image@google"}
    for _, done, body in rows:
        steps = re.findall(r'<figure class="step" data-turn="(\d)" data-ok="(yes|no)">(.*?)</figure>', body, re.S)
        starts = re.findall(r'<figure class="ref start">.*?src="assets/thumbs/([0-9a-f]{64})\.webp"', body, re.S)
        assert len(starts) == 1 and (tmp_path / "site" / "assets" / "thumbs" / f"{starts[0]}.webp").is_file()
        if done == "yes":
            assert [(t, ok) for t, ok, _ in steps] == [("1", "yes"), ("2", "yes"), ("3", "yes")]
            assert "completed 3 turn(s)" in body
            for _, _, step in steps:
                sha = re.search(r'src="assets/thumbs/([0-9a-f]{64})\.webp"', step)
                assert sha is not None and (tmp_path / "site" / "assets" / "thumbs" / f"{sha.group(1)}.webp").is_file()
        else:
            assert [(t, ok) for t, ok, _ in steps] == [("1", "yes"), ("2", "no")], "nothing after the failed turn"
            assert "stopped at turn 2 of 3" in body
            failed = steps[1][2]
            assert 'class="stopped"' in failed and "refused" in failed and "IMAGE_SAFETY" in failed
            assert "<img" not in failed
        assert "Add this scarf" in body, "each turn's instruction is under its image"
    assert "turn 3</strong>" in strips and ("Make it night" in strips)


def test_one_model_every_provider_shows_its_providers_and_the_supported_differences(
        tmp_path: Path, plain_suite: Path) -> None:
    db = tmp_path / "harness.db"
    (tmp_path / "profile.yaml").write_text(SLOW_REPLICATE, encoding="utf-8")
    run_id = sandbox_run(db, plain_suite, [*TWO_PROVIDERS, "gpt-image-1@openai"], samples=10, concurrency=8,
                         sandbox_profile=str(tmp_path / "profile.yaml"))
    build_report(db, [run_id], tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        views = model_views(run_store.attempts_frame(store, [run_id]), timeout_ms=effective_timeout_ms(info))
    shared = [v for v in views if len(v.providers) >= 2]
    assert [v.model for v in shared] == ["flux-dev"], "gpt-image-1 has one provider: no view of its own"
    view = shared[0]
    part = section(html, "by-model")
    assert part.count('class="chart-panel model-view"') == 1 and 'data-model="flux-dev"' in part
    assert "gpt-image-1" not in part
    statements = [d.statement for d in view.supported]
    assert statements, "0.5 s against 3 s over ten requests each is a supported difference"
    for statement in statements:
        assert f'<p class="statement">{markup(statement)}</p>' in part
    assert re.search(r"<li>.*@fal.*</li><li>.*@replicate", part), "fal ranks first on p50"
    spec = charts_of(html)["model-0"]
    left, right = spec["data"]
    assert left["text"] == [p.label for p in view.providers] and left["y"] == [p.p50_ms for p in view.providers]
    assert right["y"] == [p.success_rate for p in view.providers]
    first = view.providers[0]
    assert first.p50_ms is not None and first.p50_ci_high_ms is not None
    assert left["error_y"]["array"][0] == pytest.approx(first.p50_ci_high_ms - first.p50_ms)
    assert "Mann" in part, "the methods are stated"


def test_a_sweep_shows_throughput_by_level_and_its_knee(tmp_path: Path, plain_suite: Path) -> None:
    db = tmp_path / "harness.db"
    sweep_id, run_ids = sweep_run_ids(db, plain_suite)
    build_report(db, run_ids, tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    knee = summarize(db, load_spec(db, sweep_id)).knee.statement
    part = section(html, "sweeps")
    assert f'data-sweep="{sweep_id}"' in part and "flux-dev<wbr>@fal" in part
    assert str(markup(knee)) in part
    spec = charts_of(html)["sweep-0"]
    throughput, p50 = spec["data"]
    assert throughput["x"] == ["c=1", "c=2"] and all(v > 0 for v in throughput["y"])
    assert all(v > 0 for v in throughput["error_y"]["array"]), "each level has its interval"
    assert len(p50["y"]) == 2 and 'href="#sweeps"' in html
    assert 'id="by-model"' not in html and 'id="turn-strips"' not in html


def test_sections_are_left_out_when_no_run_calls_for_them(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    run_id = build_store(db, challenges=2, targets=0, samples=2, target_names=["flux-dev@fal", "gpt-image-1@openai"],
                         label="sweep: by hand, not a sweep level")
    build_report(db, [run_id], tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    for ident in ("turn-strips", "by-model", "sweeps"):
        assert f'id="{ident}"' not in html and f'href="#{ident}"' not in html
    assert not [name for name in charts_of(html) if name.startswith(("model-", "sweep-"))]


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM) and not in_ci(),
                    reason="Debian chromium is not installed (apt-get install chromium); CI installs it")
def test_the_new_sections_fit_a_phone(tmp_path: Path, talk_suite: Path, plain_suite: Path,
                                      refuse_one_scarf: None) -> None:
    from playwright.sync_api import sync_playwright

    db = tmp_path / "harness.db"
    talk = sandbox_run(db, talk_suite, ["gemini-2.5-flash-image@google"])
    shared = sandbox_run(db, plain_suite, TWO_PROVIDERS, samples=8)
    _, levels = sweep_run_ids(db, plain_suite)
    index = build_report(db, [talk, shared, *levels], tmp_path / "site").index
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 900})
            page.goto(index.resolve().as_uri())
            page.wait_for_function("document.querySelectorAll('.chart').length == "
                                   "document.querySelectorAll('.chart.js-plotly-plot').length", timeout=20_000)
            for ident in ("by-model", "sweeps", "gallery", "turn-strips"):
                scroll, client = page.evaluate(f"() => {{ const s = document.getElementById('{ident}'); "
                                               "return [s.scrollWidth, s.clientWidth]; }")
                assert scroll <= client, f"#{ident} overflows at 390px: {scroll} > {client}"
            whole = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert whole[0] <= whole[1], "the page scrolls sideways at 390px"
            ARTIFACTS.mkdir(exist_ok=True)
            for ident in ("by-model", "sweeps", "turn-strips"):
                page.locator(f"#{ident}").screenshot(path=str(ARTIFACTS / f"report-390-{ident}.png"))
        finally:
            browser.close()
