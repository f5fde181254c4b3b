"""``harness ratings`` as a user runs it: from a vote file or the store, JSON rows with the contract's
fields, a readable table, exit code 2 with a one-line reason for bad input, and an empty board (not an
error) for a store without votes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel
from harness.store import Store
from harness.store.votes import Vote, insert_votes

CONTRACT = {"model", "rating", "ci_low", "ci_high", "votes", "rank_best", "rank_worst", "wins", "ties", "losses"}


@pytest.fixture
def vote_file(tmp_path: Path) -> Path:
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=4)
    frame = panel.simulate_battles(list(DEFAULT_STRENGTHS), 2000)
    frame["category"] = ["typography" if i % 2 else "portraiture" for i in range(len(frame))]
    path = tmp_path / "votes.csv"
    frame.to_csv(path, index=False)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["ratings", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_rows_have_the_contract_fields(vote_file: Path) -> None:
    code, out, _ = run("--votes", str(vote_file), "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == len(DEFAULT_STRENGTHS)
    assert set(rows[0]) >= CONTRACT
    assert rows[0]["model"] == "gemini-3-pro-image-preview"
    assert sum(r["votes"] for r in rows) == 2 * 2000


def test_options_reach_the_fit(vote_file: Path) -> None:
    code, out, _ = run("--votes", str(vote_file), "--json", "--anchor", "sd-3.5-large=940", "--ci", "bootstrap",
                       "--rounds", "50", "--ties", "davidson", "--min-votes", "10000", "--category", "typography")
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["sd-3.5-large"]["rating"] == pytest.approx(940.0)
    assert all(r["provisional"] for r in rows.values())
    assert sum(r["votes"] for r in rows.values()) == 2 * 1000


def test_table_output_lists_every_model(vote_file: Path) -> None:
    code, out, _ = run("--votes", str(vote_file), "--min-votes", "600")
    assert code == 0
    for model in DEFAULT_STRENGTHS:
        assert model in out
    assert "95% CI" in out and "provisional" in out


@pytest.mark.parametrize(("content", "message"), [
    ("model_a,model_b,winner\nA,B,model_a\nA,B,left\n", "votes.csv: line 3: field 'winner' is 'left'"),
    ("model_a,model_b\nA,B\n", "missing column 'winner'"),
])
def test_bad_vote_files_exit_2_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "votes.csv"
    path.write_text(content, encoding="utf-8")
    code, out, err = run("--votes", str(path), "--json")
    assert code == 2
    assert out == ""
    assert message in err


def test_missing_file_bad_anchor_and_store_only_flags_exit_2(vote_file: Path, tmp_path: Path) -> None:
    code, _, err = run("--votes", str(tmp_path / "nope.csv"))
    assert code == 2 and "not found" in err
    code, _, err = run("--votes", str(vote_file), "--anchor", "sd-3.5-large")
    assert code == 2 and "MODEL=VALUE" in err
    code, _, err = run("--votes", str(vote_file), "--anchor", "nobody=1000")
    assert code == 2 and "anchor model 'nobody' has no votes" in err
    code, _, err = run("--votes", str(vote_file), "--by", "target")
    assert code == 2 and "--by applies to votes from the store" in err


def test_a_store_without_votes_prints_an_empty_board(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    Store.open(db).close()
    code, out, err = run("--db", str(db), "--json")
    assert code == 0
    assert json.loads(out) == []
    assert "no votes" in err
    code, _, err = run("--db", str(tmp_path / "absent.db"))
    assert code == 2 and "does not exist" in err


def test_store_votes_rate_models_or_targets(tmp_path: Path) -> None:
    db = tmp_path / "harness.db"
    rows = []
    for i, (left, right, outcome) in enumerate([("m1@p", "m2@p", "left"), ("m2@q", "m1@p", "right"),
                                                ("m1@p", "m2@q", "tie"), ("m2@p", "m1@q", "left")] * 5):
        rows.append(Vote(vote_uid=f"v{i}", left_target=left, right_target=right, left_model=left.split("@")[0],
                         right_model=right.split("@")[0], outcome=outcome, voted_at=1000.0 + i, source="arena",
                         category="typography", voter=f"voter-{i % 3}"))
    with Store.open(db) as store:
        insert_votes(store, rows)
    code, out, _ = run("--db", str(db), "--json")
    assert code == 0
    models = pd.DataFrame(json.loads(out))
    assert sorted(models["model"]) == ["m1", "m2"]
    assert int(models["votes"].sum()) == 40
    code, out, _ = run("--db", str(db), "--json", "--by", "target", "--source", "arena")
    assert code == 0
    assert sorted(r["model"] for r in json.loads(out)) == ["m1@p", "m1@q", "m2@p", "m2@q"]
    code, out, _ = run("--db", str(db), "--json", "--source", "simulated")
    assert code == 0 and json.loads(out) == []
