"""``harness votes export|import``: battle files (CSV, JSONL) out of and into the store, without ever
losing or duplicating a recorded vote."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.arena.battlefile import BattleFileError, parse_tstamp, read_battles, write_battles
from harness.cli import cli
from harness.store import Store
from harness.store.votes import (
    OUTCOME_TO_WINNER,
    ServedPair,
    ServedSide,
    Vote,
    battles_frame,
    cast_vote,
    insert_votes,
    record_served_pair,
)

WINNERS = list(OUTCOME_TO_WINNER.values())


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def sample_votes() -> list[Vote]:
    models = [("gpt-image-1@openai", "gpt-image-1"), ("flux-dev@fal", "flux-dev"), ("nano-banana@gemini", "nano-banana")]
    votes = []
    for i in range(12):
        (lt, lm), (rt, rm) = models[i % 3], models[(i + 1) % 3]
        votes.append(Vote(vote_uid=f"v{i}", left_target=lt, right_target=rt, left_model=lm, right_model=rm,
                          outcome=("left", "right", "tie", "both_bad")[i % 4], voted_at=1_700_000_000 + i,
                          source="arena" if i % 2 else "simulated", run_id="r1", challenge_id=f"c{i % 2}",
                          category="photo" if i % 3 else "art", voter=f"voter{i % 4}"))
    return votes


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results" / "harness.db"
    with Store.open(path) as store:
        insert_votes(store, sample_votes())
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_into_another_store_gives_the_same_battles(tmp_path: Path, db: Path, fmt: str) -> None:
    out = tmp_path / f"battles.{fmt}"
    code, _, err = invoke("votes", "export", "--db", str(db), "--out", str(out))
    assert code == 0 and "exported 12 vote(s)" in err
    other = tmp_path / "other" / "harness.db"
    code, stdout, _ = invoke("votes", "import", str(out), "--db", str(other))
    assert code == 0 and json.loads(stdout) == {"schema_version": 1, "read": 12, "new": 12, "already_present": 0}
    with Store.open(db, readonly=True) as a, Store.open(other, readonly=True) as b:
        original, copied = battles_frame(a), battles_frame(b)
    columns = ["model_a", "model_b", "winner", "category", "challenge", "voter", "tstamp"]
    assert original[columns].to_dict("records") == copied[columns].to_dict("records")
    assert set(copied["source"]) == {"import"}


def test_importing_twice_adds_nothing_and_keeps_repeated_votes(tmp_path: Path, db: Path) -> None:
    """Identical rows are distinct votes (one voter may judge the same matchup twice); a second import of
    the same file is recognised row by row."""
    path = tmp_path / "b.jsonl"
    row = {"model_a": "a", "model_b": "b", "winner": "model_a"}
    path.write_text("\n".join(json.dumps(r) for r in (row, row, {**row, "winner": "tie (bothbad)"})) + "\n\n")
    first = json.loads(invoke("votes", "import", str(path), "--db", str(db))[1])
    second = json.loads(invoke("votes", "import", str(path), "--db", str(db))[1])
    assert first == {"schema_version": 1, "read": 3, "new": 3, "already_present": 0}
    assert second == {"schema_version": 1, "read": 3, "new": 0, "already_present": 3}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone() == (15,)
        assert conn.execute("SELECT outcome FROM votes WHERE source='import' ORDER BY voted_at").fetchall() == [
            ("left",), ("left",), ("both_bad",)]


def test_export_filters_by_source_category_and_names_targets_on_request(db: Path) -> None:
    code, stdout, _ = invoke("votes", "export", "--db", str(db), "--format", "csv", "--by", "target",
                             "--source", "arena", "--category", "photo")
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert code == 0 and rows
    assert all("@" in r["model_a"] and r["category"] == "photo" and r["schema_version"] == "2" for r in rows)
    assert {r["winner"] for r in rows} <= set(WINNERS)
    assert [float(r["tstamp"]) for r in rows] == sorted(float(r["tstamp"]) for r in rows)


def test_bad_battle_files_are_refused_naming_file_line_and_field(tmp_path: Path, db: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,winner,tstamp\na,b,model_a,\na,b,draw,\n,b,tie,\na,b,tie,yesterday\n")
    code, _, err = invoke("votes", "import", str(bad), "--db", str(db))
    assert code == 2
    assert "bad.csv: line 3: field 'winner' is 'draw'; use one of" in err
    assert "bad.csv: line 4: field 'model_a' is empty" in err
    assert "bad.csv: line 5: field 'tstamp' is 'yesterday'" in err
    no_header = tmp_path / "nh.csv"
    no_header.write_text("a,b,model_a\n")
    assert "missing columns 'model_b', 'winner' (found 'a', 'b', 'model_a')" in invoke(
        "votes", "import", str(no_header), "--db", str(db))[2]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"model_a": "a", "model_b": "b", "winner": "tie"}\n{oops\n[1]\n')
    err = invoke("votes", "import", str(broken), "--db", str(db))[2]
    assert "broken.jsonl: line 2: not valid JSON" in err
    future = tmp_path / "future.jsonl"
    future.write_text('{"model_a": "a", "model_b": "b", "winner": "tie", "schema_version": 9}\n')
    assert "newer than this harness" in invoke("votes", "import", str(future), "--db", str(db))[2]
    unknown = tmp_path / "votes.txt"
    unknown.write_text("")
    assert "pass --format csv, jsonl or json" in invoke("votes", "import", str(unknown), "--db", str(db))[2]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone() == (12,)  # nothing half-imported


def test_fastchat_style_rows_are_understood(tmp_path: Path) -> None:
    path = tmp_path / "fastchat.json"
    path.write_text(json.dumps({"model_a": "sdxl", "model_b": "dall-e-3", "winner": "tie (bothbad)",
                                "judge": "arena_user_12", "tstamp": "2024-02-20T10:00:00Z", "anony": True,
                                "turn": 1}) + "\n")
    (vote,) = read_battles(path, now=0.0)
    assert (vote.outcome, vote.voter, vote.voted_at, vote.source) == ("both_bad", "arena_user_12", 1708423200.0,
                                                                     "import")


def served(pair_id: str, left_run: str, right_run: str) -> ServedPair:
    return ServedPair(pair_id=pair_id, voter="v", matchup="c/default/abc", challenge_id="c", variant="default",
                      category="art", kind="text-to-image",
                      left=ServedSide(left_run, "a@p", "a", "p", 1, "0" * 64),
                      right=ServedSide(right_run, "b@p", "b", "p", 2, "1" * 64), served_at=1.0, expires_at=1e12)


def test_run_filter_keeps_cross_run_arena_votes_only_when_both_runs_are_chosen(tmp_path: Path) -> None:
    with Store.open(tmp_path / "h.db") as store:
        for pair_id, runs in (("p1", ("r1", "r1")), ("p2", ("r1", "r2")), ("p3", ("r2", "r2"))):
            record_served_pair(store, served(pair_id, *runs), [])
            assert cast_vote(store, pair_id=pair_id, voter="v", outcome="left", voted_at=2.0,
                             vote_uid=pair_id).status == "accepted"
        assert len(battles_frame(store, run_ids=["r1"])) == 1
        assert len(battles_frame(store, run_ids=["r2"])) == 1
        assert len(battles_frame(store, run_ids=["r1", "r2"])) == 3
        assert cast_vote(store, pair_id="p1", voter="v", outcome="tie", voted_at=3.0, vote_uid="x").status == "used"
        assert cast_vote(store, pair_id="zz", voter="v", outcome="tie", voted_at=3.0, vote_uid="y").status == "unknown"


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() != "")
optional = st.one_of(st.none(), names)


@given(rows=st.lists(st.fixed_dictionaries({
    "model_a": names, "model_b": names, "winner": st.sampled_from(WINNERS), "category": optional,
    "challenge": optional, "voter": optional,
    "tstamp": st.one_of(st.none(), st.floats(0, 4e9, allow_nan=False)),
}), max_size=15), fmt=st.sampled_from(["csv", "jsonl"]))
def test_any_battles_survive_a_write_and_read_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                                         rows: list[dict[str, object]], fmt: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "category", "challenge", "voter", "tstamp"])
    path = tmp_path_factory.mktemp("rt") / f"b.{fmt}"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_battles(frame, handle, fmt)
    votes = read_battles(path, now=5e9)
    assert len(votes) == len(rows)
    assert len({v.vote_uid for v in votes}) == len(votes)
    for row, vote in zip(rows, votes, strict=True):
        assert (vote.left_model, vote.right_model, OUTCOME_TO_WINNER[vote.outcome]) == (
            row["model_a"], row["model_b"], row["winner"])
        assert (vote.category, vote.challenge_id, vote.voter) == (row["category"], row["challenge"], row["voter"])
        expected = row["tstamp"]
        assert vote.voted_at == expected if expected is not None else vote.voted_at >= 5e9


@given(st.one_of(st.floats(allow_nan=True), st.text(max_size=30), st.integers(), st.booleans(), st.none()))
def test_tstamp_parsing_returns_a_finite_time_or_refuses(value: object) -> None:
    try:
        parsed = parse_tstamp(value)
    except (ValueError, OverflowError):
        return
    assert parsed is None or math.isfinite(parsed)


def test_unreadable_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BattleFileError, match="cannot read"):
        read_battles(tmp_path / "missing.csv", now=0)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("model_a,model_b,winner\nsch\xf6n,b,tie\n".encode("latin-1"))
    with pytest.raises(BattleFileError, match="not UTF-8"):
        read_battles(latin, now=0)


def test_a_vote_whose_voter_knew_the_models_stays_so_through_import_and_export(tmp_path: Path) -> None:
    path = tmp_path / "battles.jsonl"
    rows = [{"model_a": "a", "model_b": "b", "winner": "model_a", "anony": False},
            {"model_a": "b", "model_b": "a", "winner": "tie", "anony": True},
            {"model_a": "a", "model_b": "b", "winner": "model_b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "h.db"
    code, _, err = invoke("votes", "import", str(path), "--db", str(db))
    assert code == 0 and "1 of 3 vote(s) are marked anony=false" in err
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT anony FROM votes ORDER BY voted_at")] == [0, 1, None]
    out = tmp_path / "again.jsonl"
    assert invoke("votes", "export", "--db", str(db), "--out", str(out))[0] == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["anony"] for r in exported] == [False, True, True], "unknown is written as FastChat's default"


def test_every_json_listing_says_its_schema_version(tmp_path: Path, db: Path) -> None:
    code, out, _ = invoke("targets", "list", "--target", "*@fal", "--json")
    assert code == 0 and all(t["schema_version"] == 1 for t in json.loads(out))
    code, out, _ = invoke("runs", "--json", "--db", str(db))
    assert code == 0 and json.loads(out) == []
    code, out, _ = invoke("challenges", "list", "challenges/starter", "--json")
    assert code == 0 and {c["schema_version"] for c in json.loads(out)} == {1}
