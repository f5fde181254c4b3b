"""The simulated voter panel votes like a careful crowd on real run outputs: fair pairs of the same
challenge and variant, random sides, distinct voters, realistic times, known strengths, and votes the
store accepts and the ratings read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.ratings import leaderboard, validate_battles
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel
from harness.store import Store
from harness.store.votes import battles_frame, insert_votes

TARGETS = {"gemini-2.5-flash-image@google": "gemini-2.5-flash-image",
           "gemini-2.5-flash-image@fal": "gemini-2.5-flash-image",
           "gpt-image-1@openai": "gpt-image-1", "flux-dev@fal": "flux-dev", "sd-3.5-large@replicate": "sd-3.5-large"}
CHALLENGES = {"logo": ("typography", "text-to-image"), "smile": ("portraiture", "edit")}


def outputs() -> pd.DataFrame:
    """Two challenges x two variants x five targets x two samples, like ``outputs_frame`` plus category/kind."""
    rows = []
    attempt = 0
    for challenge, (category, kind) in CHALLENGES.items():
        for variant in ("default", "terse"):
            for target, model in TARGETS.items():
                for _sample in range(2):
                    attempt += 1
                    rows.append({"attempt_id": attempt, "run_id": "run-1", "challenge_id": challenge,
                                 "variant": variant, "target": target, "model": model,
                                 "provider": target.split("@")[1], "sha256": f"{attempt:064x}",
                                 "category": category, "kind": kind})
    return pd.DataFrame(rows)


def test_votes_compare_outputs_of_one_challenge_variant_from_different_targets() -> None:
    frame = outputs().set_index("attempt_id")
    votes = VoterPanel(seed=1).cast(outputs(), 400)
    assert len(votes) == 400
    for v in votes:
        left, right = frame.loc[v.left_attempt_id], frame.loc[v.right_attempt_id]
        assert (left["challenge_id"], left["variant"]) == (right["challenge_id"], right["variant"])
        assert v.left_target != v.right_target
        assert (v.left_target, v.right_target) == (left["target"], right["target"])
        assert (v.left_sha, v.left_model) == (left["sha256"], left["model"])
        assert (v.category, v.kind) == CHALLENGES[v.challenge_id or ""]
        assert v.source == "simulated" and v.outcome in ("left", "right", "tie", "both_bad")
    left_share = np.mean([v.left_target < v.right_target for v in votes])
    assert 0.4 < left_share < 0.6


def test_votes_have_distinct_voters_and_realistic_times() -> None:
    panel = VoterPanel(PanelSettings(voters=12), seed=2)
    votes = panel.cast(outputs(), 500)
    assert len(panel.voters) == len(set(panel.voters)) == 12
    assert {v.voter for v in votes} <= set(panel.voters)
    assert len({v.vote_uid for v in votes}) == 500
    times = [v.voted_at for v in votes]
    assert times == sorted(times) and times[0] > panel.settings.start
    decisions = np.array([v.decision_ms for v in votes], dtype=float)
    assert 4000 < np.median(decisions) < 8000
    assert all(v.shown_at is not None and v.shown_at < v.voted_at for v in votes)


def test_the_same_seed_gives_the_same_votes() -> None:
    first = VoterPanel(seed=5).cast(outputs(), 50)
    again = VoterPanel(seed=5).cast(outputs(), 50)
    other = VoterPanel(seed=6).cast(outputs(), 50)
    assert first == again
    assert first != other


def test_outcome_law_keeps_the_expected_score_at_the_bradley_terry_probability() -> None:
    panel = VoterPanel(PanelSettings(position_bias=0.0, tie_rate=0.3), seed=0)
    left, right, tie = panel.outcome_probabilities("gemini-3-pro-image-preview", "sd-3.5-large")
    gap = DEFAULT_STRENGTHS["gemini-3-pro-image-preview"] - DEFAULT_STRENGTHS["sd-3.5-large"]
    expected = 1 / (1 + 10 ** (-gap / 400))
    assert left + right + tie == pytest.approx(1.0)
    assert left + tie / 2 == pytest.approx(expected)
    even = panel.outcome_probabilities("gpt-image-1", "gpt-image-1")
    assert even == pytest.approx((0.35, 0.35, 0.3))


def test_unknown_models_and_bad_settings_are_refused() -> None:
    frame = outputs()
    frame.loc[0, "model"] = "mystery-model"
    with pytest.raises(ConfigError, match="no strength for model 'mystery-model'"):
        VoterPanel(seed=0).cast(frame, 10)
    with pytest.raises(ConfigError, match="tie_rate"):
        PanelSettings(tie_rate=0.8)
    single = outputs()[outputs()["target"] == "flux-dev@fal"]
    with pytest.raises(ConfigError, match="two different targets"):
        VoterPanel(seed=0).cast(single, 1)


def test_simulated_votes_go_through_the_store_into_ratings(tmp_path: Path) -> None:
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=3)
    with Store.open(tmp_path / "harness.db") as store:
        assert insert_votes(store, panel.cast(outputs(), 3000)) == 3000
        by_model = validate_battles(battles_frame(store))
        by_target = validate_battles(battles_frame(store, by="target"))
    board = leaderboard(by_model)
    truth = panel.truth(list(board.models))
    assert board.models == ("gemini-2.5-flash-image", "gpt-image-1", "flux-dev", "sd-3.5-large")
    for row in board.rows:
        assert row.ci_low - 10 < truth[row.model] < row.ci_high + 10
    # Two providers of one model meet in some votes: they rate separately by target, not at all by model.
    assert board.self_votes > 0
    assert leaderboard(by_target).self_votes == 0
