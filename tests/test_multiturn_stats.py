"""Statistics of conversations: success and latency by turn, the turn where a conversation failed, time to the
final image, and the whole conversation's cost (retries and failed turns included), in the CLI and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli.stats import stats as stats_command
from harness.stats.turns import SequenceRow, TurnRow, turn_stats


def attempt(sample: int, attempt: int, turn: int, *, ok: bool = True, turn_final: bool = True, final: bool = False,
            latency: float = 100.0, cost: float = 0.04, tokens: int = 100, target: str = "t@g",
            time_to_image: float | None = None, error_kind: str | None = None) -> dict[str, Any]:
    return {"challenge_id": "talk", "variant": "default", "target": target, "sample": sample, "attempt": attempt,
            "final": int(final), "ok": int(ok), "error_kind": error_kind if not ok else None, "latency_ms": latency,
            "time_to_image_ms": time_to_image, "bytes_sent": 1000 * turn, "cost_usd": cost,
            "usage_json": json.dumps({"input_tokens": tokens}),
            "provider_timings_json": json.dumps({"sequence": {"version": 1, "turn": turn, "turns": 3,
                                                              "turn_final": turn_final}})}


def frame() -> pd.DataFrame:
    rows = [
        # sample 0: three good turns, latency and tokens growing with the history
        attempt(0, 1, 1, latency=100, tokens=100), attempt(0, 2, 2, latency=150, tokens=400),
        attempt(0, 3, 3, latency=200, tokens=700, final=True, time_to_image=480),
        # sample 1: turn 2 fails once (retried), then for good: the conversation ends at turn 2
        attempt(1, 1, 1, latency=120, tokens=100),
        attempt(1, 2, 2, ok=False, turn_final=False, cost=0.0, error_kind="server_error"),
        attempt(1, 3, 2, ok=False, final=True, cost=0.01, error_kind="refused", time_to_image=600),
        # sample 2: three good turns
        attempt(2, 1, 1, latency=80, tokens=100), attempt(2, 2, 2, latency=130, tokens=400),
        attempt(2, 3, 3, latency=220, tokens=700, final=True, time_to_image=520),
        # a single request of another challenge is not a conversation
        {**attempt(0, 1, 1, final=True), "challenge_id": "single", "provider_timings_json": None},
    ]
    return pd.DataFrame(rows)


def test_success_latency_bytes_and_tokens_are_shown_turn_by_turn() -> None:
    result = turn_stats(frame())
    by_turn = {r.turn: r for r in result.turns}
    assert [(r.turn, r.n, r.successes) for r in result.turns] == [(1, 3, 3), (2, 3, 2), (3, 2, 2)]
    assert by_turn[1].latency_p50_ms == 100 and by_turn[3].latency_p50_ms == 210
    assert by_turn[2].success_rate == pytest.approx(2 / 3)
    assert by_turn[2].success_low is not None and by_turn[2].success_low < 2 / 3 < (by_turn[2].success_high or 0)
    assert [r.bytes_sent_mean for r in result.turns] == [1000, 2000, 3000]
    assert by_turn[2].cost_mean_usd == pytest.approx((0.04 + 0.01 + 0.04) / 3), "a turn's retries count in its cost"


def test_a_conversation_counts_once_with_the_turn_it_failed_at_and_its_whole_cost() -> None:
    (row,) = turn_stats(frame()).sequences
    assert (row.n, row.completed, row.failed_at_turn) == (3, 2, {"2": 1})
    assert row.completed_share == pytest.approx(2 / 3)
    assert row.time_to_final_image_p50_ms == 500, "failed conversations have no final image"
    assert row.cost_mean_usd == pytest.approx((0.12 + 0.05 + 0.12) / 3)
    assert row.cost_per_completed_usd == pytest.approx(0.29 / 2)
    assert row.latency_growth == pytest.approx(210 / 100)
    assert row.input_token_growth == pytest.approx(7.0)


def test_rows_are_versioned_json_and_the_cli_prints_both_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = turn_stats(frame()).to_json()
    assert data["schema_version"] == 1
    assert all(TurnRow.model_validate(r).schema_version == 1 for r in data["turns"])
    assert all(SequenceRow.model_validate(r).schema_version == 1 for r in data["sequences"])
    runner = CliRunner()
    out = runner.invoke(stats_command, ["--by", "turn", "--schema"])
    assert out.exit_code == 0 and set(json.loads(out.output)) == {"turn", "sequence"}
    mixed = runner.invoke(stats_command, ["RUN", "--by", "turn,kind"])
    assert mixed.exit_code != 0 and "--by turn" in mixed.output
