"""Reports render from fixture stores (empty, partial, full) and untrusted text cannot inject markup."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from harness.challenges import load
from harness.cli import cli
from harness.report import build_report
from harness.run import RunOptions, start_run
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from tests.report_fixtures import build_store, rating_row

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def local_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def assert_self_contained(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    for url in local_urls(html):
        assert not re.match(r"^[a-z]+://", url) and not url.startswith("//"), url
        if not url.startswith("#"):
            assert (site / url).exists(), f"{url} is referenced but missing"
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000


def test_a_run_without_attempts_renders_and_says_what_is_absent(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with Store.open(db) as store:
        run_store.create_run(store, run_id="r-empty", created_at="2026-01-01T00:00:00+00:00", harness_version="t",
                             sandbox=False, time_scale=None, label=None, planned=0, config={}, challenges=[],
                             targets=[])
    result = build_report(db, ["r-empty"], tmp_path / "site")
    html = result.index.read_text(encoding="utf-8")
    assert "no attempts recorded" in html
    assert "no votes yet" in html and "no CLIP scores" in html
    assert "Sandbox data" not in html
    assert_self_contained(tmp_path / "site")
    providers = json.loads((tmp_path / "site" / "providers.json").read_text())
    assert providers["rows"] == [] and providers["schema_version"] == 1


def test_a_run_where_everything_failed_still_reports_the_failures(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=3, targets=2, samples=2, success=0.0)
    site = tmp_path / "site"
    html = build_report(db, [run_id], site).index.read_text(encoding="utf-8")
    assert "0.0%" in html
    assert html.count('class="failed"') == 6
    assert "server_error" in html
    rows = json.loads((site / "providers.json").read_text())["rows"]
    assert all(r["success_rate"] == 0 and r["p50_ms"] is None for r in rows)


def test_full_sandbox_run_report_has_every_section(tmp_path: Path, tiny_suite: Path) -> None:
    db = tmp_path / "r" / "harness.db"
    chosen = select(load_targets(), ["gpt-image-1@openai", "gpt-image-1.5@openai"])
    run = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.002, samples=2, sandbox_faults=False))
    leaderboard = hand_leaderboard()
    result = CliRunner().invoke(cli, ["report", run.run_id, "--db", str(db), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "Sandbox data" in html
    for section in ("providers", "charts", "leaderboard", "scores", "gallery", "provenance"):
        assert f'id="{section}"' in html
    assert html.count('class="ref"') == 5  # edit 1 + compose 2 + inpaint 1 + its mask
    for url in local_urls(html):
        if url.startswith("assets/thumbs/"):
            with Image.open(site / url) as thumb:
                assert thumb.format == "WEBP" and max(thumb.size) <= 512
    assert "data:image" not in html, "no image may be inlined into the page"
    assert_self_contained(site)
    charts = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))  # type: ignore[union-attr]
    assert {"latency", "ttfb", "success"} <= set(charts)
    with (site / "providers.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {"target", "model", "provider", "n", "success_rate", "p50_ms", "p95_ms", "ttfb_p50_ms",
            "cost_per_image_usd"} <= set(rows[0])

    second = build_report(db, [run.run_id], tmp_path / "site2", leaderboard=leaderboard, simulated_votes=True)
    assert second.thumbnails_made == 0 and second.thumbnails_reused > 0
    html2 = second.index.read_text(encoding="utf-8")
    assert "Simulated voters" in html2 and "gpt-image-1.5" in html2
    assert {"rating_cost", "rating_speed", "heatmap"} <= set(json.loads(re.search(
        r'<script id="chart-data" type="application/json">(.*?)</script>', html2, re.S).group(1)))  # type: ignore[union-attr]
    exported = json.loads((tmp_path / "site2" / "leaderboard.json").read_text())
    assert exported["simulated_votes"] is True and exported["rows"][0]["model"] == "gpt-image-1.5"


def hand_leaderboard() -> dict[str, Any]:
    rows = [
        {"model": "gpt-image-1.5", "rating": 1080.0, "ci_low": 1050.0, "ci_high": 1110.0, "votes": 40, "wins": 25,
         "ties": 5, "losses": 10, "rank_best": 1, "rank_worst": 1, "provisional": False, "elo": 1012.0},
        {"model": "gpt-image-1", "rating": 920.0, "ci_low": 890.0, "ci_high": 950.0, "votes": 40, "wins": 10,
         "ties": 5, "losses": 25, "rank_best": 2, "rank_worst": 2, "provisional": False, "elo": 988.0},
    ]
    return {"method": "Bradley-Terry", "votes": 40, "rows": [rating_row(r, i) for i, r in enumerate(rows, 1)],
            "has_elo": True,
            "best_for": [{"category": "portraiture", "model": "gpt-image-1.5", "win_rate": 0.7, "votes": 20}],
            "matchups": [{"challenge": "smile", "model": "gpt-image-1.5", "opponent": "gpt-image-1", "votes": 10,
                          "win": 0.6, "loss": 0.3, "tie": 0.1}],
            "win_matrix": {"models": ["gpt-image-1.5", "gpt-image-1"], "values": [[None, 0.7], [0.3, None]]},
            "notes": []}


@pytest.mark.parametrize("where", ["prompt", "error"])
def test_untrusted_text_cannot_inject_markup(tmp_path: Path, where: str) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=2, targets=2, samples=1, success=0.5,
                         prompt=HOSTILE if where == "prompt" else "plain prompt",
                         error_message=HOSTILE if where == "error" else "plain error")
    lb = hand_leaderboard()
    lb["rows"][0]["model"] = HOSTILE
    lb["matchups"][0]["challenge"] = HOSTILE
    lb["win_matrix"]["models"][0] = HOSTILE
    html = build_report(db, [run_id], tmp_path / "site", leaderboard=lb).index.read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert" in html
    (chart_json,) = re.findall(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S)
    assert "<" not in chart_json and ">" not in chart_json
    assert HOSTILE in json.loads(chart_json)["heatmap"]["data"][0]["x"], "the text survives, escaped"


def test_leaderboard_section_comes_from_the_stores_votes(tmp_path: Path, tiny_suite: Path) -> None:
    from harness.report.leaderboard import leaderboard_section
    from harness.sandbox.voters import PanelSettings, VoterPanel
    from harness.store.votes import insert_votes

    db = tmp_path / "r" / "harness.db"
    chosen = select(load_targets(), ["gpt-image-1@openai", "gpt-image-1.5@openai", "gemini-2.5-flash-image@google"])
    run = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.002, samples=2, sandbox_faults=False,
                               respect_limits=False))
    with Store.open(db) as store:
        panel = VoterPanel(PanelSettings(noisy_fraction=0.0, position_bias=0.0), seed=3)
        assert insert_votes(store, panel.cast(run_store.outputs_frame(store, [run.run_id]), 900)) == 900
        section = leaderboard_section(store, [run.run_id])
    assert section is not None and section["votes"] == 900 and section["simulated"] is True
    ratings = {r["model"]: r["rating"] for r in section["rows"]}
    truth = panel.truth(list(ratings))
    assert max(ratings, key=ratings.__getitem__) == max(truth, key=truth.__getitem__)
    pairs = [(m["challenge"], frozenset((m["model"], m["opponent"]))) for m in section["matchups"]]
    assert len(pairs) == len(set(pairs)), "each head-to-head appears once"
    order = [r["model"] for r in section["rows"]]
    assert all(order.index(m["model"]) < order.index(m["opponent"]) for m in section["matchups"])
    assert {b["category"] for b in section["best_for"]} >= {"illustration", "portraiture", "kind: edit"}
    assert section["win_matrix"]["models"] == order
    html = build_report(db, [run.run_id], tmp_path / "site").index.read_text(encoding="utf-8")
    assert "Simulated voters" in html and "Head-to-head" in html


def test_every_failure_class_has_its_own_colour_in_the_failures_chart() -> None:
    from harness.outcomes import ERROR_KINDS
    from harness.report.charts import ERROR_COLORS, error_mix

    figure = error_mix({"a@x": dict.fromkeys(sorted(ERROR_KINDS), 1), "b@y": {"from_a_newer_store": 2}})
    colours = {bar["name"]: bar["marker"]["color"] for bar in figure["data"]}
    assert set(colours) == {*ERROR_KINDS, "from_a_newer_store"}
    assert len({colours[k] for k in ERROR_KINDS}) == len(ERROR_KINDS), "no two outcomes share a colour"
    assert all(colours[k] == ERROR_COLORS[k] for k in ERROR_KINDS), "the same colour in every report"
    assert colours["from_a_newer_store"], "an unknown word still gets a colour"
