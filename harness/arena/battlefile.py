"""Votes as battle files, the field's exchange format (FastChat, LMArena, GenAI-Arena): one row per vote
with ``model_a`` (the left output), ``model_b`` (the right one) and ``winner`` in ``model_a``, ``model_b``,
``tie``, ``tie (bothbad)``; optional ``category``, ``challenge``, ``voter`` (FastChat calls it ``judge``)
and ``tstamp`` (Unix seconds, or ISO-8601 on import; a time without offset is read as UTC). Files are CSV
with a header or JSON Lines, and carry a ``schema_version`` column. CSV text cells that a spreadsheet
would read as a formula (leading ``=``, ``+``, ``-``, ``@``, tab, CR) are written with a leading ``'`` and
read back without it (:func:`harness.export.escape_cell`), so a model or voter name cannot run as a formula.

Import is idempotent: each row's id is a hash of its content and of how many identical rows came before
it in the file, so importing a file twice adds nothing the second time, while genuinely repeated votes in
one file are all kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness.errors import HarnessError
from harness.export import CSV_NEWLINE, escape_cell, unescape_cell
from harness.store.votes import WINNER_TO_OUTCOME, Vote

SCHEMA_VERSION = 1
BATTLE_COLUMNS = ("model_a", "model_b", "winner", "category", "challenge", "voter", "tstamp")
FORMATS = ("csv", "jsonl")
MAX_PROBLEMS = 10


class BattleFileError(HarnessError):
    """A battle file that cannot be read; the message names the file, line and field."""


def format_for(path: Path | None, fmt: str | None) -> str:
    """The explicit format, else the file's extension (``.csv``; ``.jsonl``/``.json``/``.ndjson``)."""
    if fmt:
        if fmt not in FORMATS:
            raise BattleFileError(f"unknown battle format {fmt!r}: use csv or jsonl")
        return fmt
    suffix = path.suffix.lower() if path else ""
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise BattleFileError(f"cannot tell the format of {path or 'standard output'}: pass --format csv or jsonl")


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def battle_rows(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Rows of a :func:`harness.store.votes.battles_frame` in file order and columns."""
    for record in frame.to_dict("records"):
        row = {c: _clean(record.get(c)) for c in BATTLE_COLUMNS}
        row["schema_version"] = SCHEMA_VERSION
        yield row


def write_battles(frame: pd.DataFrame, out: TextIO, fmt: str) -> int:
    """Write the battles to ``out``; returns how many rows were written."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=[*BATTLE_COLUMNS, "schema_version"],
                                lineterminator=CSV_NEWLINE)
        writer.writeheader()
        for row in battle_rows(frame):
            writer.writerow({k: "" if v is None else escape_cell(v) for k, v in row.items()})
            count += 1
    else:
        for row in battle_rows(frame):
            out.write(json.dumps(row, allow_nan=False, ensure_ascii=False) + "\n")
            count += 1
    return count


def _records(path: Path, fmt: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise BattleFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            if fmt == "csv":
                reader = csv.DictReader(handle)
                missing = [c for c in ("model_a", "model_b", "winner") if c not in (reader.fieldnames or [])]
                if missing:
                    raise BattleFileError(f"{path}: the CSV header lacks {', '.join(missing)}")
                for row in reader:
                    yield reader.line_num, {k: (unescape_cell(v) if v != "" else None) for k, v in row.items()
                                            if k is not None and isinstance(v, str)}
                return
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BattleFileError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
                if not isinstance(data, dict):
                    raise BattleFileError(f"{path} line {number}: each line must be a JSON object")
                yield number, data
        except UnicodeDecodeError:
            raise BattleFileError(f"{path}: not UTF-8 text") from None


def parse_tstamp(value: Any) -> float | None:
    """Unix seconds from a number, a numeric string or an ISO-8601 time (UTC when no offset is given)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a time, not true/false")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            number = moment.timestamp()
    if not math.isfinite(number):
        raise ValueError("not a finite time")
    return number


def _text(value: Any, name: str, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{name} is missing")
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be text")
    return str(value)


def _vote(row: Mapping[str, Any], now: float, index: int, seen: Counter[str]) -> Vote:
    version = row.get("schema_version")
    if version is not None and str(version) not in {str(v) for v in range(1, SCHEMA_VERSION + 1)}:
        raise ValueError(f"schema_version {version!r} is newer than this harness understands ({SCHEMA_VERSION})")
    model_a = _text(row.get("model_a"), "model_a", True) or ""
    model_b = _text(row.get("model_b"), "model_b", True) or ""
    winner = row.get("winner")
    if not isinstance(winner, str) or winner not in WINNER_TO_OUTCOME:
        raise ValueError(f"winner {winner!r} is not one of {', '.join(WINNER_TO_OUTCOME)}")
    category = _text(row.get("category"), "category", False)
    challenge = _text(row.get("challenge"), "challenge", False)
    voter = _text(row.get("voter", row.get("judge")), "voter", False)
    try:
        tstamp = parse_tstamp(row.get("tstamp"))
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"tstamp {row.get('tstamp')!r} is not Unix seconds or an ISO-8601 time ({exc})") from None
    content = json.dumps([model_a, model_b, winner, category, challenge, voter, tstamp])
    seen[content] += 1
    uid = hashlib.sha256(f"{content}#{seen[content]}".encode()).hexdigest()[:32]
    return Vote(
        vote_uid=f"import-{uid}", left_target=model_a, right_target=model_b, left_model=model_a,
        right_model=model_b, outcome=WINNER_TO_OUTCOME[str(winner)],
        voted_at=tstamp if tstamp is not None else now + index * 1e-6, source="import", category=category,
        challenge_id=challenge, voter=voter,
    )


def read_battles(path: Path, fmt: str | None = None, *, now: float) -> list[Vote]:
    """Every row of a battle file as a vote (``source="import"``; model names stand in for targets).
    Rows without ``tstamp`` get ``now`` plus a microsecond per row, keeping file order. Raises
    :class:`BattleFileError` listing up to ten bad rows by line."""
    kind = format_for(path, fmt)
    votes: list[Vote] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for index, (line, row) in enumerate(_records(path, kind)):
        try:
            votes.append(_vote(row, now, index, seen))
        except ValueError as exc:
            problems.append(f"{path} line {line}: {exc}")
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise BattleFileError("; ".join(problems) + ("; ..." if len(problems) >= MAX_PROBLEMS else ""))
    return votes
