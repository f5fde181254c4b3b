"""`harness store scrub` cleans stores, exports and reports written before keys were redacted at the source."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.test_redaction_providers import KEY, echo, hostile_server, leaks_in, png_with_key, run_against

OTHER_KEY = "r8_OtherProviderToken0123456789"


def leaky_store(tmp_path: Path) -> tuple[Path, str]:
    """A store as an earlier version left it: keys in messages, codes, ids and JSON columns."""
    with hostile_server(echo) as server:
        db, run_id = run_against(tmp_path, "openai-images", server.root)
    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE attempts SET error_message=?, provider_code=?, request_id=?, usage_json=? WHERE run_id=?",
                     (f"401 You sent: {{'authorization': 'Bearer {KEY}'}} basic={basic}", KEY,
                      f"req-{quote(KEY, safe='')}", json.dumps({"echo": KEY, "other": f"Token {OTHER_KEY}"}),
                      run_id))
    return db, run_id


def publish(db: Path, run_id: str, tmp_path: Path) -> Path:
    runner = CliRunner()
    for fmt in ("csv", "jsonl", "parquet"):
        out = db.parent / "exports" / fmt
        result = runner.invoke(cli, ["export", run_id, "--format", fmt, "--out", str(out), "--db", str(db)])
        assert result.exit_code == 0, result.output
    report = tmp_path / "report"
    result = runner.invoke(cli, ["report", run_id, "--out", str(report), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return report


def dump(db: Path) -> list[str]:
    """The store's content (its file's bytes change when SQLite folds the write-ahead log in on close)."""
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def everything(db: Path, report: Path) -> list[Path]:
    return [p for folder in (db.parent, report) for p in folder.rglob("*") if p.is_file()]


def test_scrub_removes_every_key_from_store_exports_and_report_and_counts_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id = leaky_store(tmp_path)
    report = publish(db, run_id, tmp_path)
    assert [p for p in everything(db, report) if leaks_in(p.read_bytes())], "the fixture holds keys"
    monkeypatch.setenv("LEAKED_KEY", KEY)
    key_file = tmp_path / "keys.env"
    key_file.write_text(f"# keys to remove\nREPLICATE_API_TOKEN={OTHER_KEY}\nHARNESS_DB=harness.db\n", encoding="utf-8")

    result = CliRunner().invoke(cli, ["store", "scrub", "--key-env", "LEAKED_KEY", "--key-file", str(key_file),
                                      "--report", str(report), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    removed = counts["removed"]
    assert removed["harness.db attempts.error_message"] >= 2 and removed["harness.db attempts.usage_json"] >= 2
    assert removed["harness.db attempts.provider_code"] >= 1 and removed["harness.db attempts.request_id"] >= 1
    assert any(p.endswith(".csv") for p in removed) and any(p.endswith(".jsonl") for p in removed)
    assert any(p.endswith(".parquet") for p in removed) and any(p.endswith("index.html") for p in removed)
    assert counts["remaining"] == {} and counts["keys"] == 2, "HARNESS_* lines of a key file are options, not keys"
    assert KEY not in result.output and OTHER_KEY not in result.output

    assert [str(p) for p in everything(db, report) if leaks_in(p.read_bytes()) or OTHER_KEY.encode() in
            p.read_bytes()] == []
    with sqlite3.connect(db) as conn:
        message = conn.execute("SELECT error_message FROM attempts WHERE run_id=?", (run_id,)).fetchone()[0]
    assert message.startswith("401 You sent: {'authorization': 'Bearer [REDACTED]'}"), "only the key goes"
    again = CliRunner().invoke(cli, ["store", "scrub", "--key-env", "LEAKED_KEY", "--report", str(report),
                                     "--db", str(db), "--dry-run"])
    assert again.exit_code == 0, again.output


def test_a_dry_run_counts_changes_nothing_and_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = leaky_store(tmp_path)
    before = dump(db)
    monkeypatch.setenv("LEAKED_KEY", KEY)
    result = CliRunner().invoke(cli, ["store", "scrub", "--key-env", "LEAKED_KEY", "--db", str(db), "--dry-run",
                                      "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["removed"]["harness.db attempts.error_message"] >= 1
    assert dump(db) == before


def test_a_key_inside_an_image_file_is_reported_as_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = leaky_store(tmp_path)
    (db.parent / "images").mkdir(exist_ok=True)
    (db.parent / "images" / "abc.png").write_bytes(png_with_key(KEY))
    monkeypatch.setenv("LEAKED_KEY", KEY)
    result = CliRunner().invoke(cli, ["store", "scrub", "--key-env", "LEAKED_KEY", "--db", str(db), "--json"])
    assert result.exit_code == 1
    assert list(json.loads(result.stdout)["remaining"]) == [str(db.parent / "images" / "abc.png")]


@pytest.mark.parametrize(("args", "message"), [
    ([], "no key to scrub"),
    (["--key-env", "SURELY_UNSET_VARIABLE_123"], "SURELY_UNSET_VARIABLE_123 is not set"),
    (["--key-file", "missing.txt"], "not found"),
])
def test_keys_come_only_from_variables_or_files(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "harness.db"
    sqlite3.connect(db).close()
    result = CliRunner().invoke(cli, ["store", "scrub", *args, "--db", str(db)])
    assert result.exit_code == 2 and message in result.output


def test_there_is_no_option_that_takes_a_key_itself() -> None:
    result = CliRunner().invoke(cli, ["store", "scrub", "--help"])
    assert "--key-env" in result.output and "--key-file" in result.output
    assert "--key " not in result.output and "--key=" not in result.output
