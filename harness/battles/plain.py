"""The plain reader: the standard library's ``csv`` and ``json`` modules, one row at a time.

It is the reference: it runs when pyarrow is not installed, and whenever the columnar reader declines a
file or finds a bad row, so that every error names the exact line (CSV lines count quoted newlines; JSON
Lines count blank lines) or, in a JSON array, the item (0 is the first).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.battles.detect import Shape
from harness.battles.table import BattleFileError
from harness.battles.validate import ABSENT, NULL, Coded, Numbers, RawBattles, RawColumn, check_header

FIELDS = ("model_a", "model_b", "winner", "category", "kind", "challenge", "voter", "judge", "tstamp", "anony",
          "schema_version")
"""Every field a battle file may carry that the harness reads; others are ignored."""


def _coded_text(cells: Sequence[Any]) -> Coded:
    codes, uniques = pd.factorize(np.array(cells, dtype=object), use_na_sentinel=True)
    return Coded(np.asarray(codes, dtype=np.int32), list(uniques))


def _coded_json(cells: list[Any]) -> Coded:
    """Codes that keep JSON types apart (``1``, ``1.0`` and ``true`` are different cells)."""
    index: dict[tuple[str, Any], int] = {}
    values: list[Any] = []
    codes = np.empty(len(cells), dtype=np.int32)
    for i, cell in enumerate(cells):
        if cell is None:
            codes[i] = NULL
        elif cell is _ABSENT:
            codes[i] = ABSENT
        else:
            try:
                key: tuple[str, Any] = (type(cell).__name__, cell)
                hash(key)
            except TypeError:
                key = ("unhashable", id(cell))
            code = index.get(key)
            if code is None:
                code = index[key] = len(values)
                values.append(cell)
            codes[i] = code
    return Coded(codes, values)


_ABSENT = object()


def _json_column(name: str, cells: list[Any]) -> RawColumn:
    if name == "tstamp" and all(c is None or c is _ABSENT or type(c) in (int, float) for c in cells):
        null = np.array([c is None or c is _ABSENT for c in cells], dtype=bool)
        return Numbers(np.array([0.0 if n else c for c, n in zip(cells, null, strict=True)], dtype=np.float64),
                       null)
    return _coded_json(cells)


def _records(records: list[Any], where: list[str], source: str) -> RawBattles:
    present = {name for record in records if isinstance(record, dict) for name in FIELDS if name in record}
    columns: dict[str, list[Any]] = {name: [] for name in FIELDS if name in present}
    for record, place in zip(records, where, strict=True):
        if not isinstance(record, dict):
            raise BattleFileError(f"{place}: expected a JSON object, found {type(record).__name__}")
        for name, cells in columns.items():
            cells.append(record.get(name, _ABSENT))
    raw = {name: _json_column(name, cells) for name, cells in columns.items()}
    return RawBattles(len(records), raw, lambda i: where[i], source)


def _json_lines(text: str, source: str) -> RawBattles:
    records: list[Any] = []
    where: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BattleFileError(f"{source}: line {number}: not valid JSON ({exc.msg})") from None
        where.append(f"{source}: line {number}")
    return _records(records, where, source)


def _json_array(text: str, source: str) -> RawBattles:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BattleFileError(f"{source}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise BattleFileError(f"{source}: expected a JSON list of vote objects, found {type(data).__name__}")
    return _records(data, [f"{source}: item {i}" for i in range(len(data))], source)


def _row_lines(text: str) -> list[int]:
    """The line on which each data row starts (blank lines skipped, quoted line breaks counted): worked out
    only when a message has to name a line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    lines: list[int] = []
    start = reader.line_num + 1
    for row in reader:
        if not _blank(row):
            lines.append(start)
        start = reader.line_num + 1
    return lines


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def csv_tstamp(cells: Sequence[str | None]) -> RawColumn:
    """Unix seconds in C (``float()`` on every cell) when every cell is a number or empty; else the cells,
    for the per-value rules."""
    values = np.array(cells, dtype=object)
    null = (values == "") | pd.isna(values)
    try:
        numbers = np.where(null, "0", values).astype(np.float64)
    except (ValueError, TypeError):
        return _coded_text(cells)
    return Numbers(numbers, np.asarray(null, dtype=bool))


def _csv(text: str, source: str) -> RawBattles:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
        rows = [row for row in reader if len(row) > 1 or (row and row[0].strip())]
    except StopIteration:
        raise BattleFileError(f"{source}: empty file, expected a header with model_a, model_b, winner") from None
    except csv.Error as exc:
        raise BattleFileError(f"{source}: line {reader.line_num}: not readable CSV ({exc})") from None
    check_header(header, source)
    lines: list[int] = []

    def where(i: int) -> str:
        if not lines:
            lines.extend(_row_lines(text))
        return f"{source}: line {lines[i]}"

    width = len(header)
    if set(map(len, rows)) - {width}:
        for i, row in enumerate(rows):
            if len(row) > width:
                raise BattleFileError(f"{where(i)}: {len(row)} cells where the header has {width}")
        rows = [row + [None] * (width - len(row)) for row in rows]  # type: ignore[list-item]
    raw: dict[str, RawColumn] = {}
    for name in FIELDS:
        if name in header:
            position = header.index(name)
            cells = [row[position] for row in rows]
            raw[name] = csv_tstamp(cells) if name == "tstamp" else _coded_text(cells)
    return RawBattles(len(rows), raw, where, source, tuple(header), csv=True)


def read_plain(text: str, shape: Shape, source: str) -> RawBattles:
    """The cells of ``text`` (a battle file's content) in the given shape; structural problems (bad JSON,
    a row that is not an object, a CSV row longer than its header) raise :class:`BattleFileError` at once."""
    if shape == "csv":
        return _csv(text, source)
    if shape == "json":
        return _json_array(text, source)
    return _json_lines(text, source)
