"""The report's leaderboard is the ratings' own typed board: its rows are :class:`RatingRow`, a handed-in
section with a misspelt or mistyped key is refused (never a blank cell), and the page and its export say
what the intervals are relative to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.ratings import RatingOptions, RatingRow
from harness.report import build_report
from harness.report.leaderboard import LeaderboardSection, leaderboard_board
from harness.sandbox.voters import PanelSettings, VoterPanel
from harness.store import Store
from harness.store import runs as run_store
from harness.store.votes import insert_votes
from tests.report_fixtures import build_store
from tests.test_report import hand_leaderboard


def test_a_misspelt_or_mistyped_row_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=2, targets=2, samples=1)
    misspelt = hand_leaderboard()
    misspelt["rows"][0]["ratng"] = misspelt["rows"][0].pop("rating")
    with pytest.raises(ValidationError, match="ratng"):
        build_report(db, [run_id], tmp_path / "a", leaderboard=misspelt)
    mistyped = hand_leaderboard()
    mistyped["rows"][1]["votes"] = "forty"
    with pytest.raises(ValidationError, match="votes"):
        build_report(db, [run_id], tmp_path / "b", leaderboard=mistyped)
    assert all(isinstance(r, RatingRow) for r in LeaderboardSection.of(hand_leaderboard()).rows)


def test_the_page_and_the_export_say_the_intervals_are_anchored(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=6, targets=0, samples=2, success=1.0,
                         target_names=["gpt-image-1@openai", "gpt-image-1.5@openai", "flux-dev@fal",
                                       "sd-3.5-large@fal"])
    with Store.open(db) as store:
        panel = VoterPanel(PanelSettings(noisy_fraction=0.0, position_bias=0.0), seed=3)
        insert_votes(store, panel.cast(run_store.outputs_frame(store, [run_id]), 400))
        centred = leaderboard_board(store, [run_id])
        assert centred is not None and centred.intervals == "centred"
        anchor = centred.rows[-1].model
        section = leaderboard_board(store, [run_id], options=RatingOptions(anchor=(anchor, 1000.0)))
    assert section is not None
    pinned = next(r for r in section.rows if r.model == anchor)
    assert pinned.ci_low == pinned.ci_high == 1000.0
    site = build_report(db, [run_id], tmp_path / "site", leaderboard=section.model_dump()).index
    html = site.read_text(encoding="utf-8")
    assert f"Intervals: anchored at {anchor}=1000." in html
    exported = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))
    assert exported["intervals"] == f"anchored at {anchor}=1000"
    assert {r["intervals"] for r in exported["rows"]} == {f"anchored at {anchor}=1000"}
    assert exported["ratings_schema_version"] == 1 and exported["schema_version"] == 1
