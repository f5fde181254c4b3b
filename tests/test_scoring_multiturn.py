"""A conversation is scored once, on its final image: against the final turn's instruction and, when it
started from an image, against that image; the images of earlier turns are neither scored nor paired."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scoring.backbone import BackboneSpec, load_backbone
from harness.scoring.pipeline import ScoreOptions, score_runs
from harness.store import Store
from harness.store import runs as run_store
from harness.store.scores import scores_frame
from tests.conftest import photo_like
from tests.test_scoring_support import KIND_METRICS, make_tiny_clip, sandbox_run

pytest.importorskip("open_clip")

SUITE = """
id: smile-then-night
title: Smile, then night
category: portraiture
kind: multi-turn
references: [start.png]
turns:
  - prompt: Make him smile
  - prompt: Make it night
params: {aspect_ratio: "1:1", seed: 5}
"""


def test_a_conversation_is_scored_once_on_its_final_image(tmp_path: Path,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "start.png").write_bytes(photo_like((96, 64), 1))
    (suite / "talk.yaml").write_text(SUITE, encoding="utf-8")
    db = tmp_path / "results" / "harness.db"
    run_id = sandbox_run(db, suite, ["gemini-2.5-flash-image@google"], samples=2)
    backbone = load_backbone(BackboneSpec(model=f"local-dir:{make_tiny_clip(tmp_path_factory)}"))
    with Store.open(db) as store:
        every_turn = run_store.outputs_frame(store, [run_id], final_only=False)
        finals = run_store.outputs_frame(store, [run_id])
        report = score_runs(store, [run_id], backbone, ScoreOptions(batch_size=4))
        frame = scores_frame(store, [run_id])
    assert len(every_turn) == 4 and len(finals) == 2, "two conversations of two turns, one final image each"
    assert report.outputs_scored == 2 and not report.problems
    assert set(frame["attempt_id"]) == set(finals["attempt_id"])
    for _, rows in frame.groupby("attempt_id"):
        assert set(rows["metric"]) == KIND_METRICS["edit"], "final instruction plus similarity to the start"
