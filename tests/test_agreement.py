"""Each automatic signal's agreement with the votes, checked against what the simulation knows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.judge.ask import JudgeOptions
from harness.judge.target import JudgeTarget
from harness.quality.agreement import agreement, trusted, votes_frame
from harness.quality.readings import pixel_looks
from harness.quality.signals import Signal, all_signals, per_image
from harness.run import RunOptions, start_run
from harness.sandbox.voters import PanelSettings, VoterPanel
from harness.store import Store
from harness.store import runs as run_store
from harness.store.votes import insert_votes
from harness.targets import load_targets, resolve_keys, select
from tests.test_judge import TARGETS, ask, write_suite


def synthetic_votes(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    outcome = rng.choice(["left", "right", "tie"], size=n, p=[0.45, 0.45, 0.1])
    return pd.DataFrame({"left_sha": [f"l{i}" for i in range(n)], "right_sha": [f"r{i}" for i in range(n)],
                         "outcome": outcome, "left_model": rng.choice(["m1", "m2", "m3"], size=n),
                         "right_model": rng.choice(["m4", "m5"], size=n),
                         "category": rng.choice(["a", "b"], size=n), "kind": "text-to-image", "source": "simulated"})


def flipping_signal(votes: pd.DataFrame, p_agree: float, seed: int = 1) -> Signal:
    """A signal that agrees with each decisive vote with probability ``p_agree`` (ties on tied votes)."""
    rng = np.random.default_rng(seed)
    table = {}
    for row in votes.itertuples():
        want = {"left": 1, "right": -1}.get(row.outcome, 0)
        table[(row.left_sha, row.right_sha)] = want if rng.random() < p_agree else -want
    return Signal("synthetic", "clip", lambda a, b: table.get((a, b)))


@pytest.mark.parametrize("truth", [0.5, 0.7, 0.9])
def test_the_measured_share_brackets_a_known_agreement_rate(truth: float) -> None:
    votes = synthetic_votes(2000, seed=int(truth * 10))
    cell = agreement(votes, [flipping_signal(votes, truth)])["signals"][0]["overall"]
    assert cell["low"] <= truth <= cell["high"]
    assert cell["vote_ties"] == int((votes["outcome"] == "tie").sum()) and cell["signal_ties"] == 0
    assert cell["compared"] == int(votes["outcome"].isin(["left", "right"]).sum())


def test_too_few_overlapping_votes_withhold_the_share_with_the_reason() -> None:
    votes = synthetic_votes(40)
    values = {f"l{i}": 1.0 for i in range(5)} | {f"r{i}": 0.0 for i in range(5)}
    report = agreement(votes, [per_image("sparse", "clip", values, True)], min_votes=30)
    cell = report["signals"][0]["overall"]
    assert "share" not in cell and cell["withheld"].startswith("only") and cell["no_opinion"] == 35
    assert report["signals"][0]["board"]["withheld"]
    assert not trusted(report, "sparse", 0.5)


def test_signal_ties_are_counted_apart_and_lower_is_better_metrics_flip() -> None:
    votes = pd.DataFrame({"left_sha": ["a", "b", "c"], "right_sha": ["x", "y", "z"], "outcome": ["left"] * 3,
                          "left_model": "m1", "right_model": "m2", "category": "c", "kind": "edit",
                          "source": "arena"})
    error = per_image("l1", "pixel", {"a": 0.1, "x": 0.3, "b": 0.2, "y": 0.2, "c": 0.5, "z": 0.1}, False)
    cell = agreement(votes, [error], min_votes=1)["signals"][0]["overall"]
    assert (cell["compared"], cell["agree"], cell["signal_ties"]) == (2, 1, 1)


def build_judged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, VoterPanel]:
    """A sandboxed run, votes of a panel that looks at the pictures, and two judges' verdicts. Built once per
    test process by the session fixture ``judged_run`` (tests/conftest.py): the gate's and the report's tests
    read the same store, and no test writes to it."""
    suite = write_suite(tmp_path_factory.mktemp("suite"))
    db = tmp_path_factory.mktemp("store") / "harness.db"
    chosen = select(load_targets(), TARGETS)
    run = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.01, samples=3, sandbox_faults=False,
                               respect_limits=False))
    panel = VoterPanel(PanelSettings(noisy_fraction=0.1), seed=5)
    with Store.open(db) as store:
        outputs = run_store.outputs_frame(store, [run.run_id])
        insert_votes(store, panel.cast(outputs, 3000, looks=pixel_looks(store, outputs)))
    for judge in ("google/gemini-2.5-flash", "openai/gpt-4o-mini"):
        ask(db, run.run_id, JudgeTarget(judge, "openrouter"), JudgeOptions(pairs=60))
    return db, run.run_id, panel


def expected_agreement(votes: pd.DataFrame, prefs: list[int | None], panel: VoterPanel,
                       looks: dict[str, float], draws: int = 4000) -> float:
    """What the simulation says the reading's agreement should be: for each compared vote, the chance its
    voter (honest or noisy, known by id) voted the side the signal prefers, given a decisive vote."""
    s = panel.settings
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, s.perception_sd, size=(draws, 2))
    total = weight = 0.0
    for row, pref in zip(votes.itertuples(), prefs, strict=True):
        if row.outcome not in ("left", "right") or not pref:
            continue
        if row.voter in panel.noisy_voters:
            gap = np.full(draws, -s.position_bias)
        else:
            seen = noise + np.array([looks[row.left_sha], looks[row.right_sha]])
            gap = s.quality_points * (seen[:, 1] - seen[:, 0]) - s.position_bias
        e = 1.0 / (1.0 + 10.0 ** (gap / 400.0))
        p_left = float(np.mean(e - s.tie_rate * 2.0 * e * (1.0 - e)))
        p_right = float(np.mean(1.0 - e - s.tie_rate * 2.0 * e * (1.0 - e)))
        total += (p_left if pref > 0 else p_right) / (p_left + p_right)
        weight += 1.0
    return total / weight


def test_the_pixel_reading_agrees_with_the_panel_as_often_as_the_simulation_says(
        judged_run: tuple[Path, str, VoterPanel]) -> None:
    db, run_id, panel = judged_run
    with Store.open(db, readonly=True) as store:
        votes = votes_frame(store, [run_id])
        cur = store.conn.execute("SELECT voter FROM votes WHERE run_id=? ORDER BY voted_at, id", (run_id,))
        votes["voter"] = [r[0] for r in cur.fetchall()]
        looks = pixel_looks(store, run_store.outputs_frame(store, [run_id]))
        signals = {s.name: s for s in all_signals(store, [run_id])}
    reading = signals["reading:sandbox"]
    cell = agreement(votes, [reading])["signals"][0]["overall"]
    truth = expected_agreement(votes, [reading.prefer(a, b) for a, b in zip(votes["left_sha"], votes["right_sha"],
                                                                          strict=True)], panel, looks)
    se = math.sqrt(truth * (1 - truth) / cell["compared"])
    assert abs(cell["share"] - truth) <= 3 * se, (cell, truth)  # a 99.7 % check: one fixed seed, no retries
    assert cell["share"] > 0.6


def test_a_noisier_judge_agrees_less_and_the_report_says_so_per_category_and_kind(
        judged_run: tuple[Path, str, VoterPanel]) -> None:
    db, run_id, _ = judged_run
    with Store.open(db, readonly=True) as store:
        report = agreement(votes_frame(store, [run_id]), all_signals(store, [run_id]), runs=[run_id])
    by = {e["signal"]: e for e in report["signals"]}
    assert {"reading:sandbox", "pixel:edit_l1_to_source", "judge:google/gemini-2.5-flash@openrouter",
            "judge:openai/gpt-4o-mini@openrouter"} <= set(by)
    good, poor = by["judge:google/gemini-2.5-flash@openrouter"], by["judge:openai/gpt-4o-mini@openrouter"]
    assert good["overall"]["share_ties_half"] > poor["overall"]["share_ties_half"] > 0.5
    assert poor["overall"]["signal_ties"] > good["overall"]["signal_ties"], "the noisy judge contradicts itself more"
    assert good["board"]["models"] == 4 and -1.0 <= good["board"]["spearman"] <= 1.0
    assert set(good["by_kind"]) == {"text-to-image", "edit", "inpaint"}
    assert any("withheld" in c for c in good["by_kind"].values()) or all("share" in c for c in good["by_kind"].values())
    assert trusted(report, "judge:google/gemini-2.5-flash@openrouter", 0.5)
    assert not math.isnan(good["overall"]["low"])


def test_the_cli_prints_and_exports_agreement(judged_run: tuple[Path, str, VoterPanel]) -> None:
    db, run_id, _ = judged_run
    runner = CliRunner()
    result = runner.invoke(cli, ["judge", "agreement", run_id, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["votes"] == 3000
    table = runner.invoke(cli, ["judge", "agreement", run_id, "--db", str(db), "--source", "arena"])
    assert table.exit_code == 0 and "withheld" in table.stdout


def test_the_style_board_stands_beside_the_plain_one_on_a_sandboxed_run(
        judged_run: tuple[Path, str, VoterPanel]) -> None:
    db, run_id, _ = judged_run
    result = CliRunner().invoke(cli, ["judge", "style", run_id, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["style"]["n_votes"] == data["plain"]["n_votes"] > 2000
    assert {c["covariate"] for c in data["style"]["coefficients"]} >= {"file_size", "sharpness", "latency"}
    assert data["plain"]["coefficients"] == []
    assert {r["model"] for r in data["style"]["ratings"]} == {r["model"] for r in data["plain"]["ratings"]}
    table = CliRunner().invoke(cli, ["judge", "style", run_id, "--db", str(db)])
    assert table.exit_code == 0 and "Style coefficients" in table.stdout


def test_the_cli_flags_voters_and_shows_what_removing_them_changes(judged_run: tuple[Path, str, VoterPanel]) -> None:
    db, run_id, _ = judged_run
    result = CliRunner().invoke(cli, ["judge", "voters", run_id, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["votes"] == 3000 and len(data["impact"]) == 4
    assert set(data["flagged"]) <= {v["voter"] for v in data["voters"]}
    text = CliRunner().invoke(cli, ["judge", "voters", run_id, "--db", str(db)])
    assert text.exit_code == 0 and "never removed" in text.stdout


def test_the_quality_section_gathers_agreement_style_and_judges(judged_run: tuple[Path, str, VoterPanel]) -> None:
    from harness.quality.section import quality_section

    db, run_id, _ = judged_run
    with Store.open(db, readonly=True) as store:
        section = quality_section(store, [run_id])
        assert quality_section(store, ["no-such-run"]) is None
    assert section is not None and section["agreement"]["votes"] == 3000
    assert "coefficients" in section["style"]["style"]
    assert set(section["judges"]) == {"google/gemini-2.5-flash@openrouter", "openai/gpt-4o-mini@openrouter"}
