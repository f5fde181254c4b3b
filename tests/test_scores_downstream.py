"""CLIP scores flow into `harness stats` (mean and interval per target) and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.report import build_report
from tests.test_scoring_support import make_tiny_clip, sandbox_run, write_suite

pytest.importorskip("open_clip", reason="the clip extra is part of the test install: pip install -e '.[clip,dev]'")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("scored")
    db = tmp / "r" / "harness.db"
    run_id = sandbox_run(db, write_suite(tmp / "suite"), ["gpt-image-1@openai", "gpt-image-1.5@openai"], samples=2)
    model = tiny_model
    result = CliRunner().invoke(cli, ["score", run_id, "--db", str(db), "--model", f"local-dir:{model}"])
    assert result.exit_code == 0, result.output
    return db, run_id


def test_stats_rows_carry_each_metrics_mean_and_interval(scored: tuple[Path, str]) -> None:
    db, run_id = scored
    result = CliRunner().invoke(cli, ["stats", run_id, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    for row in rows:
        assert row["score_scorer"].startswith("open_clip:")
        assert row["clip_t_cos_n"] > 0
        assert row["clip_t_cos_low"] <= row["clip_t_cos_mean"] <= row["clip_t_cos_high"]
        assert row["clipscore_mean"] == pytest.approx(2.5 * max(row["clip_t_cos_mean"], 0), abs=0.05) or \
            row["clipscore_mean"] >= 0
    table = CliRunner().invoke(cli, ["stats", run_id, "--db", str(db)])
    assert "CLIP scores" in table.output and "clip_t_cos" in table.output


def test_report_shows_the_score_summary_and_per_image_scores(scored: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = scored
    html = build_report(db, [run_id], tmp_path / "site").index.read_text(encoding="utf-8")
    assert "no CLIP scores" not in html
    assert "clip_t_cos" in html
    assert 'class="score"' in html


def test_score_json_is_versioned_typed_and_its_schema_comes_from_the_type(scored: tuple[Path, str],
                                                                          tiny_model: Path) -> None:
    from harness.scoring.summary import ScoreOutput, ScoreSummaryRow

    db, run_id = scored
    result = CliRunner().invoke(cli, ["score", run_id, "--db", str(db), "--json", "--model",
                                      f"local-dir:{tiny_model}"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and {r["schema_version"] for r in data["summary"]} == {1}
    rows = [ScoreSummaryRow.model_validate(r) for r in data["summary"]]
    assert {r.target for r in rows} == {"gpt-image-1@openai", "gpt-image-1.5@openai"}
    schema = json.loads(CliRunner().invoke(cli, ["score", "--schema"]).stdout)
    assert schema["$id"].endswith("score-output:v1") and set(schema["properties"]) == set(ScoreOutput.model_fields)
    assert CliRunner().invoke(cli, ["score"]).exit_code == 2
