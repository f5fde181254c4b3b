"""One list of columns draws the board in the terminal and on the report page: a column added there shows in
both, and its cells read typed row fields."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.ratings import validate_battles
from harness.ratings.leaderboard import BOARD_COLUMNS, BoardColumn, board_columns
from harness.report import build_report
from harness.sandbox.voters import DEFAULT_STRENGTHS, PanelSettings, VoterPanel
from tests.report_fixtures import build_store
from tests.test_report import hand_leaderboard


def test_a_column_added_to_the_list_shows_in_the_terminal_and_on_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = BoardColumn("std_error", "SE", "std. error", lambda r: f"{r.std_error:.2f}", sort=lambda r: r.std_error)
    module = importlib.import_module("harness.ratings.leaderboard")  # the package re-exports a function of that name
    monkeypatch.setattr(module, "BOARD_COLUMNS", (*BOARD_COLUMNS, extra))
    votes = tmp_path / "votes.csv"
    panel = VoterPanel(PanelSettings(position_bias=0.0, noisy_fraction=0.0), seed=1)
    validate_battles(panel.simulate_battles(list(DEFAULT_STRENGTHS), 400)).to_csv(votes, index=False)
    result = CliRunner().invoke(cli, ["ratings", "--votes", str(votes)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "SE" in result.stdout
    db = tmp_path / "h.db"
    run_id = build_store(db, challenges=2, targets=2, samples=1)
    html = build_report(db, [run_id], tmp_path / "site", leaderboard=hand_leaderboard()).index.read_text("utf-8")
    assert '<th data-type="num">std. error</th>' in html
    assert f'<td data-sort="{hand_leaderboard()["rows"][0]["std_error"]}">' in html


def test_the_terminal_and_the_page_show_their_usual_columns() -> None:
    assert [c.title("cli", 0.95) for c in board_columns("cli")] == [
        "Rank", "Model", "Rating", "95% CI", "Votes", "W / T / L", "Win %", "Elo"]
    assert [c.title("page", 0.9) for c in board_columns("page")] == [
        "rank", "model", "rating", "90 % interval", "votes", "W", "T", "L", "online Elo"]
    with pytest.raises(ValueError, match="win_rate"):
        next(c for c in BOARD_COLUMNS if c.key == "win_rate").title("page", 0.95)
