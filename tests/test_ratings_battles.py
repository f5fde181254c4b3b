"""Vote files in the battle format load from CSV, JSONL and JSON; every bad row is reported by file, line
and field; and aggregation into pair counts loses or invents nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.ratings import WINNERS, BattleError, aggregate, read_battles, validate_battles

ROWS = [
    {"model_a": "flux-dev", "model_b": "gpt-image-1", "winner": "model_b", "category": "typography",
     "challenge": "logo", "voter": "v1", "tstamp": 1_700_000_000.5},
    {"model_a": "gpt-image-1", "model_b": "flux-dev", "winner": "tie (bothbad)", "category": "typography",
     "challenge": "logo", "voter": "v2", "tstamp": 1_700_000_100},
    {"model_a": "sd-3.5-large", "model_b": "flux-dev", "winner": "tie", "category": "portraiture",
     "challenge": "smile", "voter": "v1", "tstamp": 1_700_000_200},
]


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_every_supported_file_type_reads_the_same_votes(tmp_path: Path, suffix: str) -> None:
    frame = read_battles(write(tmp_path / f"votes{suffix}", ROWS))
    assert frame["model_a"].tolist() == ["flux-dev", "gpt-image-1", "sd-3.5-large"]
    assert frame["winner"].tolist() == ["model_b", "tie (bothbad)", "tie"]
    assert frame["category"].tolist() == ["typography", "typography", "portraiture"]
    assert frame["tstamp"].tolist() == [1_700_000_000.5, 1_700_000_100.0, 1_700_000_200.0]
    assert frame["kind"].isna().all()


def test_optional_columns_may_be_absent_and_iso_times_are_read(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,winner,tstamp\nA,B,model_a,2024-01-01T00:00:00Z\nB,A,tie,\n",
                    encoding="utf-8")
    frame = read_battles(path)
    assert frame["tstamp"].iloc[0] == 1_704_067_200.0
    assert np.isnan(frame["tstamp"].iloc[1])
    assert frame["voter"].isna().all() and frame["challenge"].isna().all()


def test_unknown_winner_is_named_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,winner\nA,B,model_a\n\nA,B,left\n", encoding="utf-8")
    with pytest.raises(BattleError, match=r"votes\.csv: line 4: field 'winner' is 'left'; use one of"):
        read_battles(path)


def test_csv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text('model_a,model_b,winner,challenge\nA,B,model_a,"two\nlines"\nA,B,draw,x\n', encoding="utf-8")
    with pytest.raises(BattleError, match="line 4: field 'winner'"):
        read_battles(path)


def test_missing_column_is_named_with_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,result\nA,B,model_a\n", encoding="utf-8")
    with pytest.raises(BattleError, match=r"missing column 'winner' \(found 'model_a', 'model_b', 'result'\)"):
        read_battles(path)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "votes.jsonl"
    path.write_text('{"model_a": "A", "model_b": "B", "winner": "tie"}\n{"model_a": "A", "winner": "tie"}\n',
                    encoding="utf-8")
    with pytest.raises(BattleError, match="line 2: field 'model_b' is missing"):
        read_battles(path)
    path.write_text('{"model_a": "A", "model_b": "B", "winner": "tie"}\n{broken\n', encoding="utf-8")
    with pytest.raises(BattleError, match="line 2: not valid JSON"):
        read_battles(path)


def test_json_list_errors_name_the_item(tmp_path: Path) -> None:
    path = write(tmp_path / "votes.json", [*ROWS[:2], {"model_a": "", "model_b": "B", "winner": "tie"}])
    with pytest.raises(BattleError, match="item 2: field 'model_a' is empty"):
        read_battles(path)
    path.write_text('{"model_a": "A"}', encoding="utf-8")
    with pytest.raises(BattleError, match="expected a JSON list"):
        read_battles(path)


def test_bad_times_missing_files_and_unknown_types_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,winner,tstamp\nA,B,tie,yesterday\n", encoding="utf-8")
    with pytest.raises(BattleError, match="line 2: field 'tstamp' is 'yesterday'"):
        read_battles(path)
    with pytest.raises(BattleError, match="not found"):
        read_battles(tmp_path / "absent.csv")
    parquet = tmp_path / "votes.parquet"
    parquet.write_bytes(b"PAR1\x15\x04\x15\x10")
    with pytest.raises(BattleError, match=r"unknown vote file type '\.parquet'"):
        read_battles(parquet)


def test_in_memory_frames_are_checked_by_row() -> None:
    frame = pd.DataFrame({"model_a": ["A", "B"], "model_b": ["B", "A"], "winner": ["model_a", "B"]})
    with pytest.raises(BattleError, match="store: row 1: field 'winner' is 'B'"):
        validate_battles(frame, "store")


def test_votes_between_outputs_of_one_model_are_counted_but_not_paired() -> None:
    frame = pd.DataFrame({"model_a": ["A", "A", "C"], "model_b": ["A", "B", "C"],
                          "winner": ["model_a", "model_b", "tie"]})
    counts = aggregate(frame)
    assert counts.models == ("A", "B")
    assert counts.self_votes == 2
    assert counts.n_votes == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.sampled_from("ABCDE"), st.sampled_from(WINNERS)),
                min_size=1, max_size=200))
def test_aggregation_matches_a_vote_by_vote_count(rows: list[tuple[str, str, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    counts = aggregate(frame)
    expected: Counter[tuple[str, str, str]] = Counter()
    for a, b, w in rows:
        if a == b:
            continue
        first, second = sorted((a, b))
        if w in ("tie", "tie (bothbad)"):
            outcome = w
        else:
            outcome = "first" if (a if w == "model_a" else b) == first else "second"
        expected[(first, second, outcome)] += 1
    got: Counter[tuple[str, str, str]] = Counter()
    for f, s, cells in zip(counts.first, counts.second, counts.cells(), strict=True):
        for outcome, n in zip(("first", "second", "tie", "tie (bothbad)"), cells, strict=True):
            if n:
                got[(counts.models[f], counts.models[s], outcome)] += int(n)
    assert got == expected
    assert counts.self_votes == sum(a == b for a, b, _ in rows)
    per_model = counts.per_model()
    assert int(per_model["votes"].sum()) == 2 * int(counts.n_votes)
    assert (per_model["wins"].sum(), per_model["losses"].sum()) == (per_model["losses"].sum(),
                                                                      per_model["wins"].sum())


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
                max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(names, names, st.sampled_from(WINNERS), st.one_of(st.none(), names),
                          st.floats(0, 2e9, allow_nan=False)), min_size=1, max_size=30),
       st.sampled_from([".csv", ".jsonl", ".json"]))
def test_any_model_names_survive_a_round_trip_through_every_file_type(
        rows: list[tuple[str, str, str, str | None, float]], suffix: str) -> None:
    import tempfile

    records = [{"model_a": a, "model_b": b, "winner": w, "voter": v, "tstamp": t} for a, b, w, v, t in rows]
    with tempfile.TemporaryDirectory() as tmp:
        frame = read_battles(write(Path(tmp) / f"votes{suffix}", records))
    assert frame["model_a"].tolist() == [r[0] for r in rows]
    assert frame["model_b"].tolist() == [r[1] for r in rows]
    assert frame["winner"].tolist() == [r[2] for r in rows]
    assert [None if pd.isna(v) else v for v in frame["voter"]] == [r[3] for r in rows]
    np.testing.assert_allclose(frame["tstamp"].to_numpy(dtype=float), [r[4] for r in rows], rtol=1e-12)
