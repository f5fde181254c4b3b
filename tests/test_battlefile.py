"""One battle-file reader and writer for every command: a file is recognised by its content as much as its
name, FastChat's own files import unchanged, our export is what FastChat's pipeline reads, and the fast
columnar reader and the plain reader agree on every file — the same votes, or the same clear error."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.battles import (
    EXPORT_COLUMNS,
    FASTCHAT_COLUMNS,
    WINNERS,
    BattleFileError,
    BattleTable,
    read_battle_file,
    write_battles,
)
from harness.battles import columnar as columnar_module
from harness.cli import cli
from harness.ratings import read_battles
from harness.store import Store
from harness.store.votes import Vote, battles_frame, insert_votes

FASTCHAT_BATTLES = [
    {"model_a": "sdxl", "model_b": "dall-e-3", "winner": "model_b", "judge": "arena_user_7f3a", "turn": 1,
     "anony": True, "language": "English", "tstamp": 1708423200.123},
    {"model_a": "dall-e-3", "model_b": "playground-v2.5", "winner": "tie (bothbad)", "judge": "arena_user_91c2",
     "turn": 1, "anony": True, "language": "Chinese", "tstamp": 1708423260.5},
    {"model_a": "playground-v2.5", "model_b": "sdxl", "winner": "tie", "judge": "arena_user_7f3a", "turn": 2,
     "anony": False, "language": "English", "tstamp": 1708423321},
]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def votes_of(table: BattleTable) -> list[tuple[Any, ...]]:
    """Every vote of a table as plain values, for comparing readers and round trips."""
    frame = table.to_frame(categorical=False)
    tstamps = [None if np.isnan(t) else float(t) for t in frame["tstamp"]]
    texts = frame[["model_a", "model_b", "winner", "category", "kind", "challenge", "voter"]].astype(object)
    return [(*(None if pd.isna(v) else v for v in row), t, int(an)) for row, t, an in zip(
        texts.itertuples(index=False, name=None), tstamps, table.anony, strict=True)]


def both_readers(path: Path, fmt: str | None = None) -> BattleTable:
    """Read with the columnar and the plain reader; they must agree, on votes or on the error."""
    try:
        fast = read_battle_file(path, fmt)
    except BattleFileError as exc:
        with pytest.raises(BattleFileError) as plain_error:
            read_battle_file(path, fmt, engine="plain")
        assert str(plain_error.value) == str(exc)
        raise
    plain = read_battle_file(path, fmt, engine="plain")
    assert votes_of(fast) == votes_of(plain)
    assert fast.models == plain.models
    return fast


@contextlib.contextmanager
def arrow(installed: bool) -> Iterator[None]:
    """As if pyarrow were (not) installed: without it, CSV goes through pandas' C parser."""
    with pytest.MonkeyPatch.context() as patch:
        if not installed:
            patch.setattr(columnar_module, "available", lambda: False)
        yield


@pytest.fixture
def store_with_votes(tmp_path: Path) -> Path:
    db = tmp_path / "harness.db"
    votes = [Vote(vote_uid=f"v{i}", left_target=f"{a}@p", right_target=f"{b}@p", left_model=a, right_model=b,
                  outcome=("left", "right", "tie", "both_bad")[i % 4], voted_at=1_700_000_000.25 + i,
                  source="arena" if i % 3 else "simulated", challenge_id=f"c{i % 2}", category="photo",
                  kind="text-to-image", voter=None if i == 5 else f"=voter{i % 3}")
             for i, (a, b) in enumerate([("flux-dev", "gpt-image-1"), ("gpt-image-1", "sd-3.5"),
                                         ("sd-3.5", "flux-dev")] * 4)]
    with Store.open(db) as store:
        insert_votes(store, votes)
    return db


@pytest.mark.parametrize("layout", ["simple", "conv_release"])
def test_fastchat_clean_battle_json_imports_unchanged(tmp_path: Path, layout: str) -> None:
    """clean_battle_data.py writes ``json.dump(battles, indent=2, ensure_ascii=False)``; conv_release keeps
    the conversations (nested objects), which only the plain reader can take — and does."""
    battles = [dict(b) for b in FASTCHAT_BATTLES]
    if layout == "conv_release":
        for b in battles:
            b["question_id"] = "q1"
            b["conversation_a"] = [{"role": "user", "content": "a cat, }, {", "num_tokens": 5},
                                   {"role": "assistant", "content": "<image>", "num_tokens": 1}]
    path = tmp_path / "clean_battle_20240220.json"
    path.write_text(json.dumps(battles, indent=2, ensure_ascii=False), encoding="utf-8")
    table = both_readers(path)
    assert votes_of(table) == [
        ("sdxl", "dall-e-3", "model_b", None, None, None, "arena_user_7f3a", 1708423200.123, 1),
        ("dall-e-3", "playground-v2.5", "tie (bothbad)", None, None, None, "arena_user_91c2", 1708423260.5, 1),
        ("playground-v2.5", "sdxl", "tie", None, None, None, "arena_user_7f3a", 1708423321.0, 0)]
    db = tmp_path / "h.db"
    code, out, err = invoke("votes", "import", str(path), "--db", str(db))
    assert code == 0 and json.loads(out) == {"schema_version": 1, "read": 3, "new": 3, "already_present": 0}
    assert "1 of 3 vote(s) are marked anony=false" in err
    code, out, _ = invoke("ratings", "--votes", str(path), "--json", "--min-votes", "0")
    assert code == 0 and sum(r["votes"] for r in json.loads(out)) == 6


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_our_export_is_what_fastchats_pipeline_reads_and_imports_back_identical(
        tmp_path: Path, store_with_votes: Path, suffix: str) -> None:
    out = tmp_path / f"battles{suffix}"
    code, _, err = invoke("votes", "export", "--db", str(store_with_votes), "--out", str(out))
    assert code == 0 and "exported 12 vote(s)" in err
    if suffix == ".json":
        battles = pd.read_json(out)  # elo_analysis.py: battles = pd.read_json(args.clean_battle_file)
        assert out.read_text(encoding="utf-8").startswith("[")
    elif suffix == ".jsonl":
        battles = pd.read_json(out, lines=True)
    else:
        battles = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(battles.columns[:len(FASTCHAT_COLUMNS)]) == list(FASTCHAT_COLUMNS)
    assert list(battles.columns) == list(EXPORT_COLUMNS)
    assert battles["anony"].dtype == bool and battles["tstamp"].dtype == np.float64
    assert set(battles["winner"]) <= set(WINNERS)
    assert all(isinstance(m, str) for m in [*battles["model_a"], *battles["model_b"]])
    # what report_elo_analysis_results does with them
    kept = battles.sort_values(ascending=True, by=["tstamp"])
    kept = kept[kept["anony"]].reset_index(drop=True)
    no_ties = kept[~kept["winner"].str.contains("tie")]
    assert len(kept) == 12 and len(no_ties) == 6
    assert kept["judge"].value_counts().sum() == 11
    # FastChat (JSON only) rewrites its battles with json.dump(indent=2): that file imports to the same votes
    fastchat_file = tmp_path / "clean_battle.json"
    records = json.loads(battles.to_json(orient="records"))
    fastchat_file.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    for path in (out, fastchat_file) if suffix != ".csv" else (out,):
        other = tmp_path / f"other-{path.name}.db"
        code, stdout, _ = invoke("votes", "import", str(path), "--db", str(other))
        assert code == 0 and json.loads(stdout)["new"] == 12
        with Store.open(store_with_votes, readonly=True) as a, Store.open(other, readonly=True) as b:
            columns = ["model_a", "model_b", "winner", "category", "kind", "challenge", "voter", "tstamp"]
            assert battles_frame(a)[columns].to_dict("records") == battles_frame(b)[columns].to_dict("records")


@pytest.mark.parametrize(("name", "content"), [
    ("votes.json", '{"model_a": "A", "model_b": "B", "winner": "tie"}\n{"model_a": "B", "model_b": "A", '
                   '"winner": "model_a"}\n'),
    ("votes.jsonl", '[\n{"model_a": "A", "model_b": "B", "winner": "tie"},\n{"model_a": "B", "model_b": "A", '
                    '"winner": "model_a"}\n]\n'),
    ("votes.ndjson", '[{"model_a": "A", "model_b": "B", "winner": "tie"}, {"model_a": "B", "model_b": "A", '
                     '"winner": "model_a"}]'),
    ("votes.txt", "model_a,model_b,winner\r\nA,B,tie\r\nB,A,model_a\r\n"),
    ("votes.csv", '\ufeff[{"model_a": "A", "model_b": "B", "winner": "tie"},\n {"model_a": "B", "model_b": "A", '
                  '"winner": "model_a"}]'),
])
def test_files_are_recognised_by_content_as_well_as_name(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    table = both_readers(path)
    assert [v[:3] for v in votes_of(table)] == [("A", "B", "tie"), ("B", "A", "model_a")]
    assert read_battles(path)["winner"].tolist() == ["tie", "model_a"]


def test_a_wrapper_object_and_unknown_content_are_refused_by_name(tmp_path: Path) -> None:
    wrapper = tmp_path / "votes.json"
    wrapper.write_text(json.dumps({"battles": FASTCHAT_BATTLES}, indent=2), encoding="utf-8")
    with pytest.raises(BattleFileError, match=r"votes\.json: expected a JSON list .* without model_a"):
        read_battle_file(wrapper)
    notes = tmp_path / "notes.md"
    notes.write_text("# my votes\n", encoding="utf-8")
    with pytest.raises(BattleFileError, match=r"notes\.md: unknown vote file type '\.md'.*--format"):
        read_battle_file(notes)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert len(read_battle_file(empty)) == 0


def test_errors_name_file_line_and_field_for_every_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "votes.jsonl"
    rows = [{"model_a": "A", "model_b": "B", "winner": "tie"}] * 3 + [
        {"model_a": "A", "model_b": "B", "winner": "left"}, {"model_a": "A", "winner": "tie"},
        {"model_a": True, "model_b": "B", "winner": "tie"}, {"model_a": "A", "model_b": "B", "winner": "tie",
                                                             "anony": "maybe"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(BattleFileError) as error:
        both_readers(path)
    message = str(error.value)
    assert f"{path}: line 4: field 'winner' is 'left'" in message
    assert f"{path}: line 5: field 'model_b' is missing" in message
    assert f"{path}: line 6: field 'model_a' must be text, not bool" in message
    assert f"{path}: line 7: field 'anony' is 'maybe'; use true or false" in message
    many = tmp_path / "many.csv"
    many.write_text("model_a,model_b,winner\n" + "A,B,draw\n" * 25, encoding="utf-8")
    with pytest.raises(BattleFileError, match=r"line 11: .*\.\.\. 15 more problem\(s\)"):
        both_readers(many)


def test_without_pyarrow_csv_goes_through_pandas_and_json_through_the_plain_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,winner,judge,tstamp\nA,B,tie,u1,1.5\nB,A,model_b,,\n", encoding="utf-8")
    with_arrow = votes_of(read_battle_file(path))
    monkeypatch.setattr(columnar_module, "available", lambda: False)
    assert columnar_module.read_columnar(path.read_bytes(), "jsonl", str(path)) is None
    assert votes_of(read_battle_file(path)) == with_arrow == [
        ("A", "B", "tie", None, None, None, "u1", 1.5, -1), ("B", "A", "model_b", None, None, None, None, None, -1)]


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s.strip() != "")
optional = st.one_of(st.none(), names)
battle = st.fixed_dictionaries({
    "model_a": names, "model_b": names, "winner": st.sampled_from(WINNERS), "category": optional,
    "kind": optional, "challenge": optional, "voter": optional, "anony": st.one_of(st.none(), st.booleans()),
    "tstamp": st.one_of(st.none(), st.floats(-1e10, 4e9, allow_nan=False)),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(battle, max_size=12), fmt=st.sampled_from(["csv", "jsonl", "json"]), pyarrow=st.booleans())
def test_any_valid_battles_round_trip_through_every_format(rows: list[dict[str, Any]], fmt: str,
                                                           pyarrow: bool) -> None:
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "category", "kind", "challenge", "voter",
                                        "anony", "tstamp"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"b.{fmt}"
        with path.open("w", encoding="utf-8", newline="") as handle:
            assert write_battles(frame, handle, fmt) == len(rows)  # type: ignore[arg-type]
        with arrow(pyarrow):
            table = both_readers(path)
    expected = [(r["model_a"], r["model_b"], r["winner"], r["category"], r["kind"], r["challenge"], r["voter"],
                 r["tstamp"], 1 if r["anony"] is None else int(r["anony"])) for r in rows]
    assert votes_of(table) == expected


garbage_cells = st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans(), st.none(),
                          st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))
fields = st.sampled_from(["model_a", "model_b", "winner", "judge", "voter", "tstamp", "anony", "schema_version",
                          "category", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.lists(st.dictionaries(fields, garbage_cells, max_size=6), max_size=5).map(
        lambda rows: "".join(json.dumps(r) + "\n" for r in rows)),
    st.lists(st.dictionaries(fields, garbage_cells, max_size=6), max_size=5).map(lambda rows: json.dumps(rows)),
    st.lists(st.lists(st.text(alphabet='ab,"\n =+-\'t', max_size=6), max_size=4), max_size=5).map(
        lambda rows: "model_a,model_b,winner,tstamp\n" + "\n".join(",".join(r) for r in rows)),
), suffix=st.sampled_from([".csv", ".json", ".jsonl", ".dat"]), pyarrow=st.booleans())
def test_garbage_gives_a_clear_error_never_a_traceback(content: bytes | str, suffix: str, pyarrow: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"votes{suffix}"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        try:
            with arrow(pyarrow):
                table = both_readers(path)
        except BattleFileError as exc:
            assert str(path) in str(exc)
            return
    assert len(table.model_a) == len(table.winner) == len(table.tstamp)
    assert not np.isinf(table.tstamp).any()


def test_formula_like_names_are_quoted_in_csv_and_read_back_exactly(tmp_path: Path) -> None:
    frame = pd.DataFrame([{"model_a": "=HYPERLINK(\"x\")", "model_b": "-1", "winner": "model_a",
                           "voter": "+v", "tstamp": 1.5e9}])
    text = io.StringIO()
    write_battles(frame, text, "csv")
    assert "'=HYPERLINK" in text.getvalue() and ",'-1," in text.getvalue()
    path = tmp_path / "b.csv"
    path.write_text(text.getvalue(), encoding="utf-8")
    assert votes_of(both_readers(path)) == [("=HYPERLINK(\"x\")", "-1", "model_a", None, None, None, "+v",
                                             1.5e9, 1)]
