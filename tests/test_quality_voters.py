"""Voter quality flags: the simulated panel's noisy voters are found, a too-fast voter is flagged, and the
report says what removing them changes without removing anyone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.quality.voters import voter_quality
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel


def panel_votes(seed: int = 4) -> tuple[pd.DataFrame, VoterPanel]:
    panel = VoterPanel(PanelSettings(noisy_fraction=0.2, voters=30), seed=seed)
    battles = panel.simulate_battles(list(DEFAULT_STRENGTHS), 9000)
    outcome = battles["winner"].map({"model_a": "left", "model_b": "right"}).fillna("tie")
    return pd.DataFrame({"voter": battles["voter"], "left_model": battles["model_a"],
                         "right_model": battles["model_b"], "outcome": outcome,
                         "decision_ms": battles["decision_ms"]}), panel


def test_voters_at_chance_are_the_panel_s_noisy_ones_and_nobody_is_removed() -> None:
    votes, panel = panel_votes()
    report = voter_quality(votes)
    judged = {v["voter"]: v for v in report["voters"] if "agreement" in v}
    noisy = {v for v in judged if v in panel.noisy_voters}
    honest = set(judged) - noisy
    flagged = {v for v in judged if "at_chance" in judged[v]["flags"]}
    assert noisy and len(flagged & noisy) / len(noisy) >= 0.75
    assert len(flagged & honest) / len(honest) <= 0.15
    assert report["votes"] == len(votes) and "never removed" in report["note"]
    top, bottom = report["impact"][0], report["impact"][-1]
    assert top["change"] > 0 > bottom["change"], "noisy voters pull the ratings together"


def test_a_voter_faster_than_a_look_is_flagged() -> None:
    votes, _ = panel_votes(seed=5)
    fast = votes["voter"].iloc[0]
    votes.loc[votes["voter"] == fast, "decision_ms"] = 400.0
    report = voter_quality(votes, min_decision_ms=1500.0)
    entry = next(v for v in report["voters"] if v["voter"] == fast)
    assert "too_fast" in entry["flags"] and entry["median_decision_ms"] == 400.0
    assert sum("too_fast" in v["flags"] for v in report["voters"]) == 1


def test_a_voter_with_few_votes_is_not_judged(tmp_path: Path) -> None:
    votes = pd.DataFrame({"voter": ["v1"] * 5, "left_model": ["a", "b", "a", "b", "a"],
                          "right_model": ["b", "a", "b", "a", "b"], "outcome": ["left"] * 5,
                          "decision_ms": [5000.0] * 5})
    entry = voter_quality(votes)["voters"][0]
    assert entry["flags"] == [] and entry["note"].startswith("only 5")
