"""A report a buyer can publish: several runs side by side, "best for" only where the votes single a model out,
a gallery that filters and pages, typed provider columns, and a site whose weight is stated and bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from markupsafe import escape
from PIL import Image

from harness.cli import cli
from harness.ratings import RatingOptions, leaderboards_by, validate_battles
from harness.report import build_report, human_bytes
from harness.report.charts import merge_points, rating_scatter
from harness.report.gallery import PREVIEW_CHARS
from harness.report.leaderboard import best_for_entries
from harness.report.provider_columns import COLUMNS, FIELDS, NOT_FIGURES
from harness.report.site import PLOTLY_JS
from harness.stats.table import GROUP_FIELDS, ProviderRow
from tests.report_fixtures import build_store
from tests.test_report import hand_leaderboard

CHART_DATA = re.compile(r'<script id="chart-data" type="application/json">(.*?)</script>', re.S)


def charts_of(html: str) -> dict[str, Any]:
    match = CHART_DATA.search(html)
    assert match is not None
    return dict(json.loads(match.group(1)))


def exported(site: Path) -> list[dict[str, Any]]:
    return list(json.loads((site / "providers.json").read_text(encoding="utf-8"))["rows"])


def test_two_runs_of_the_same_targets_report_side_by_side(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    names = ["flux-dev@fal", "flux-dev@replicate"]
    first = build_store(db, challenges=3, targets=0, samples=2, run_id="run-monday", label="monday",
                        target_names=names, seed=1)
    second = build_store(db, challenges=3, targets=0, samples=2, run_id="run-tuesday", label="tuesday",
                         target_names=names, seed=2, success=0.5)
    result = CliRunner().invoke(cli, ["report", first, second, "--db", str(db), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    rows = exported(site)
    assert sorted((r["run_id"], r["target"]) for r in rows) == sorted(
        (run, name) for run in (first, second) for name in names)
    assert {r["label"] for r in rows} == {f"{n} [{day}]" for n in names for day in ("monday", "tuesday")}
    html = (site / "index.html").read_text(encoding="utf-8")
    charts = charts_of(html)
    assert {t["name"] for t in charts["latency"]["data"]} <= {r["label"] for r in rows}
    assert len(charts["latency"]["data"]) == 4
    success = charts["success"]
    assert all(isinstance(x, (int, float)) and x >= 0 for trace in success["data"] for x in trace["x"]), \
        "runs on different days share one axis: seconds since each run's first request"
    assert success["layout"]["xaxis"]["title"]["text"].startswith("seconds since")
    assert html.count('class="tile"') == 3 * 2 * 2, "each challenge shows both runs' tiles"
    assert len(re.findall(r'data-target="flux-dev@fal \[monday\]"', html)) >= 3


def test_two_runs_of_different_targets_keep_each_runs_targets(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    first = build_store(db, challenges=2, targets=0, samples=1, run_id="run-a", target_names=["gpt-image-1@openai"],
                        success=1.0)
    second = build_store(db, challenges=2, targets=0, samples=1, run_id="run-b",
                         target_names=["gemini-2.5-flash-image@google", "gemini-2.5-flash-image@fal"], success=1.0)
    result = build_report(db, [first, second], tmp_path / "site")
    rows = exported(tmp_path / "site")
    assert sorted((r["run_id"], r["target"]) for r in rows) == [
        ("run-a", "gpt-image-1@openai"), ("run-b", "gemini-2.5-flash-image@fal"),
        ("run-b", "gemini-2.5-flash-image@google")]
    assert {r["label"] for r in rows} == {"gpt-image-1@openai [run-a]", "gemini-2.5-flash-image@google [run-b]",
                                          "gemini-2.5-flash-image@fal [run-b]"}, "same labels: runs go by id"
    html = result.index.read_text(encoding="utf-8")
    assert html.count('class="tile"') == 2 * 3
    assert 'data-outcome="not run"' not in html, "a target is only shown for the runs that had it"


def test_provider_table_columns_are_row_fields_and_show_the_newer_figures(tmp_path: Path) -> None:
    assert all(f in ProviderRow.model_fields for c in COLUMNS for f in c.fields)
    assert all(c.description == FIELDS[c.fields[0]].description for c in COLUMNS)
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=4, targets=2, samples=3, success=0.7)
    html = build_report(db, [run_id], tmp_path / "site").index.read_text(encoding="utf-8")
    table = html[html.index('id="provider-table"'):html.index("</table>", html.index('id="provider-table"'))]
    assert "time to image p50 ms" not in table, "the fixture run recorded no time to image: no empty column"
    assert f'title="{escape(FIELDS["success_rate"].description or "")}"' in table
    shown = {c.fields[0] for c in COLUMNS if f'title="{escape(c.description)}"' in table}
    for name, info in ProviderRow.model_fields.items():
        if name in NOT_FIGURES:
            continue
        assert (f'title="{escape(info.description or "")}"' in table if name in shown else f"<code>{name}</code>" in html), \
            f"row field {name} is neither a column nor in the list of every figure"
    row = exported(tmp_path / "site")[0]
    assert set(ProviderRow.model_fields) - {"schema_version", *GROUP_FIELDS} <= set(row), \
        "exports carry every row field"


def test_newer_figures_appear_when_recorded(tmp_path: Path) -> None:
    from harness.report.provider_columns import provider_page_table
    from harness.stats.table import provider_rows
    from harness.store import Store
    from harness.store import runs as run_store

    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=3, targets=1, samples=3, success=1.0)
    with Store.open(db, readonly=True) as store:
        (measured,) = provider_rows(run_store.attempts_frame(store, [run_id]))
    row = measured.model_copy(update={
        "not_sent": 3, "time_to_image_n": 9, "time_to_image_p50_ms": 1234.0, "size_as_asked_n": 9,
        "size_as_asked": 7 / 9, "size_as_asked_ci_low": 0.45, "size_as_asked_ci_high": 0.94, "fidelity_n": 9,
        "fidelity_deviation_p50_ms": 80.0, "fidelity_deviation_pct": 8.0, "fidelity_intended_p50_ms": 1000.0,
        "fidelity_faithful": False})
    assert "time to image p50 ms" not in [c.header for c in provider_page_table([measured], ["m"]).columns]
    table = provider_page_table([row], ["m@p"])
    cells = {c.header: cell for c, cell in zip(table.columns, table.rows[0][2], strict=True)}
    assert cells["time to image p50 ms"].text == "1,234"
    assert cells["size as asked"].text == "77.8%" and cells["size as asked"].warn
    assert cells["not sent"].text == "3" and cells["not sent"].warn
    fidelity = cells["sandbox fidelity (measured − intended p50)"]
    assert fidelity.text == "+80 ms (+8.0%)" and fidelity.warn and "this machine" in (fidelity.note or "")


def _battles(votes: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(votes, columns=["model_a", "model_b", "winner", "category"])
    frame["kind"] = "text-to-image"
    return validate_battles(frame)


def test_best_for_cites_the_models_own_votes_and_only_when_its_interval_supports_it() -> None:
    votes: list[tuple[str, str, str, str]] = []
    for _ in range(120):  # portraiture: alpha beats everyone clearly, many votes
        votes += [("alpha", "beta", "model_a", "portraiture"), ("alpha", "gamma", "model_a", "portraiture"),
                  ("beta", "gamma", "model_a", "portraiture"), ("beta", "gamma", "model_b", "portraiture")]
    for _ in range(40):  # character: beta and gamma trade wins; alpha leads on 6 votes only
        votes += [("beta", "gamma", "model_a", "character"), ("gamma", "beta", "model_a", "character")]
    votes += [("alpha", "beta", "model_a", "character")] * 4 + [("alpha", "gamma", "model_b", "character")] * 2
    battles = _battles(votes)
    options = RatingOptions()
    items = {b["category"]: b for b in best_for_entries(battles, options)}
    boards = leaderboards_by(battles, "category", options)
    for category in ("portraiture", "character"):
        item, board = items[category], boards[category]
        assert item["votes"] == board.row(item["model"]).votes, "the model's own votes, not the category's"
        assert item["votes"] < board.n_votes
        assert item["supported"] == (board.row(item["model"]).rank_worst == 1
                                     and not board.row(item["model"]).provisional)
    assert items["portraiture"]["supported"] and items["portraiture"]["model"] == "alpha"
    assert not items["character"]["supported"]


def test_best_for_wording_follows_the_interval(tmp_path: Path) -> None:
    lb = hand_leaderboard()
    lb["best_for"] = [
        {"category": "portraiture", "model": "gpt-image-1.5", "win_rate": 0.7, "votes": 20, "rank_best": 1,
         "rank_worst": 1, "n_models": 2, "provisional": False, "supported": True},
        {"category": "character", "model": "gpt-image-1", "win_rate": 0.625, "votes": 12, "rank_best": 1,
         "rank_worst": 2, "n_models": 2, "provisional": True, "supported": False},
        {"category": "legacy", "model": "gpt-image-1", "win_rate": 0.6, "votes": 131},
    ]
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=2, targets=2, samples=1)
    html = build_report(db, [run_id], tmp_path / "site", leaderboard=lb).index.read_text(encoding="utf-8")
    best = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html[html.index('<ul class="bestfor">'):]
                                      .split("</ul>")[0]))
    assert "portraiture: gpt-image-1.5 (alone at rank 1" in best and "over its 20 votes" in best
    assert "character: no clear best — gpt-image-1 leads (rank 1–2 of 2; 62.5% win rate over its 12 votes, " \
           "provisional)" in best
    assert "legacy: no clear best" in best, "an entry without its interval is never called best"


def test_gallery_offers_filters_and_pages_and_error_tiles_keep_the_whole_message(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    message = "upstream said: " + "the request was refused because " * 12 + "END-OF-MESSAGE"
    run_id = build_store(db, challenges=20, targets=3, samples=1, success=0.6, error_message=message)
    html = build_report(db, [run_id], tmp_path / "site").index.read_text(encoding="utf-8")
    assert html.count('<article class="challenge"') == 20
    assert 'data-page-size="8"' in html
    for name in ("target", "challenge", "outcome"):
        assert f'<select name="{name}">' in html
    assert '<option value="failed">failed (' in html and '<option value="ok">ok (' in html
    failed = html.count('data-outcome="failed"')
    assert failed > 0
    assert html.count("END-OF-MESSAGE") == failed, "every failed tile holds the whole message"
    assert html.count("<details><summary>") == failed
    summary = re.search(r"<details><summary>(.*?)</summary>", html)
    assert summary is not None and len(summary.group(1)) <= PREVIEW_CHARS


def test_site_size_is_stated_and_bounded(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=6, targets=2, samples=1, success=1.0, photos=True)
    originals = sum(p.stat().st_size for p in (tmp_path / "images").rglob("*.png"))
    result = CliRunner().invoke(cli, ["report", run_id, "--db", str(db), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    on_disk = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    html = (site / "index.html").read_text(encoding="utf-8")
    stated = re.search(r"this site weighs ([0-9.]+ [kMG]?B)", html)
    assert stated is not None and stated.group(1) == human_bytes(on_disk)
    assert f"site size: {human_bytes(on_disk)} in all" in " ".join(result.output.split())
    plotly = (site / "assets" / PLOTLY_JS).stat().st_size
    full = list((site / "assets" / "full").iterdir())
    thumbs = list((site / "assets" / "thumbs").iterdir())
    assert len(full) == len(thumbs) == 12, "each image once"
    assert all(p.suffix == ".webp" for p in full)
    for thumb in thumbs:
        with Image.open(thumb) as img:
            assert max(img.size) <= 512
    full_bytes = sum(p.stat().st_size for p in full)
    assert full_bytes <= 0.25 * originals, (full_bytes, originals)
    assert on_disk - plotly <= 0.35 * originals + 200_000, "the site beyond plotly.js stays a fraction of the images"
    assert 'href="assets/full/' in html and "data:image" not in html

    again = CliRunner().invoke(cli, ["report", run_id, "--db", str(db), "--out", str(site), "--full-images",
                                     "original"])
    assert again.exit_code == 0, again.output
    kept = {p.name for p in (site / "assets" / "full").iterdir()}
    assert kept == {f"{p.stem}.png" for p in (tmp_path / "images").rglob("*.png")}, "no stale view copies"
    none = build_report(db, [run_id], site, full_images="none")
    assert list((site / "assets" / "full").iterdir()) == []
    assert 'href="assets/full/' not in none.index.read_text(encoding="utf-8")


def test_a_full_image_is_never_larger_than_its_original(tmp_path: Path) -> None:
    from harness.report.thumbs import ImageRef, publish_images

    images = tmp_path / "images"
    images.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype="uint8"))
    noise.save(images / "n.png")  # random noise: lossless PNG beats a q90 WebP only sometimes
    published = publish_images([ImageRef("n", "png")], images, tmp_path / "cache", tmp_path / "assets")
    placed = tmp_path / "assets" / "full" / published.full["n"]
    assert placed.stat().st_size <= (images / "n.png").stat().st_size


@pytest.mark.parametrize("log_x", [False, True])
def test_targets_on_one_spot_become_one_labelled_marker(log_x: bool) -> None:
    points = [{"label": f"flash@{p}", "model": "flash", "provider": p, "rating": 1040.0, "ci_low": 1030.0,
               "ci_high": 1050.0, "cost": 0.039 + d} for p, d in (("google", 0), ("fal", 0), ("replicate", 0.00001),
                                                                   ("openrouter", 0.0))]
    points.append({"label": "pro@google", "model": "pro", "provider": "google", "rating": 1110.0, "ci_low": 1090.0,
                   "ci_high": 1130.0, "cost": 0.134})
    merged = merge_points(points, "cost", log_x)
    assert len(merged) == 2
    flash = next(m for m in merged if m["model"] == "flash")
    assert sorted(flash["providers"]) == ["fal", "google", "openrouter", "replicate"]
    figure = rating_scatter(points, "cost", "Rating vs cost", "USD", log_x=log_x)
    texts = [t for trace in figure["data"] for t in trace["text"]]
    assert any(t.endswith("×4") for t in texts)
    symbols = {trace["marker"]["symbol"] for trace in figure["data"]}
    assert len(symbols) == 2, "each model its own marker shape"


def test_images_missing_from_the_store_or_unreadable_become_tiles_that_say_so(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=3, targets=2, samples=1, success=1.0)
    pngs = sorted((tmp_path / "images").rglob("*.png"))
    pngs[0].unlink()
    pngs[1].write_bytes(b"not a png [bold]at all[/]")
    result = CliRunner().invoke(cli, ["report", run_id, "--db", str(db), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "2 image(s) could not be shown" in result.output and "Traceback" not in result.output
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert html.count("image unavailable") == 2
    assert f"images/{pngs[0].name} is not in the store" in html and f"images/{pngs[1].name} cannot be read" in html
    assert len(list((tmp_path / "site" / "assets" / "thumbs").iterdir())) == len(pngs) - 2
