"""Exports of a run: every attempt, and the provider statistics table, as CSV, Parquet or JSON Lines.

Every exported row carries ``schema_version`` (the store's) so readers can tell layouts apart. Times follow
the store: ``*_ms`` durations in milliseconds, ``started_at`` Unix seconds. In CSV and Parquet the nested
columns of the statistics (``errors``, ``withheld``, ``invariant_attempt_ids``) are JSON strings; JSON Lines
keeps them nested. Missing values are empty in CSV and null elsewhere. Parquet needs ``pyarrow`` (the
``parquet`` extra).

CSV text cells are made safe for spreadsheets (OWASP "CSV injection"): a text cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return (which Excel, LibreOffice and Google Sheets read as a
formula, e.g. a provider's error message ``=HYPERLINK("http://evil", "click")``) gets a leading single
quote, so it shows as text. Numeric columns are never touched, so ``-3.5`` stays a number. The escape is
reversible (:func:`unescape_cell`), which is how battle files round-trip. Files are written to a temporary name and renamed, so an interrupted export never
leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.errors import ConfigError
from harness.store.core import SCHEMA_VERSION

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "jsonl")
EXTENSIONS = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}
NESTED = ("errors", "withheld", "invariant_attempt_ids")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet evaluate a CSV cell (OWASP: CSV injection)."""
CSV_NEWLINE = "\r\n"
"""Rows end in CRLF (RFC 4180). Python's CSV writer quotes a cell holding a character of the line
terminator: with CRLF a bare carriage return inside provider text is quoted, where with ``\n`` it would be
written raw and split the row for a spreadsheet (starting a new row with whatever follows it)."""


def _needs_quote(text: str) -> bool:
    """True when ``text`` reads as a formula, or is already a quoted one (so unescaping stays exact)."""
    if text.startswith(FORMULA_STARTS):
        return True
    return text.startswith("'") and _needs_quote(text[1:])


def escape_cell(value: object) -> object:
    """A CSV cell safe to open in a spreadsheet: text that would be read as a formula gets a leading ``'``;
    anything that is not text (numbers, missing values) is returned unchanged."""
    if isinstance(value, str) and _needs_quote(value):
        return f"'{value}"
    return value


def unescape_cell(text: str) -> str:
    """The original text of a cell written by :func:`escape_cell` (the inverse, for text read back)."""
    if text.startswith("'") and _needs_quote(text[1:]):
        return text[1:]
    return text


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell passed through :func:`escape_cell`; numeric columns unchanged."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            continue
        out[column] = series.astype(object).map(escape_cell)
    return out


def stats_frame(rows: Sequence[dict[str, Any]], *, nested: bool) -> pd.DataFrame:
    """The statistics rows as a frame; nested columns become JSON strings unless ``nested``."""
    frame = pd.DataFrame([{"schema_version": SCHEMA_VERSION, **r} for r in rows])
    if not nested:
        for column in NESTED:
            if column in frame.columns:
                frame[column] = frame[column].map(lambda v: json.dumps(v, sort_keys=True))
    return frame


def with_schema(attempts: pd.DataFrame) -> pd.DataFrame:
    """Attempts with a leading ``schema_version`` column."""
    return pd.concat([pd.DataFrame({"schema_version": SCHEMA_VERSION}, index=attempts.index), attempts], axis=1)


def _parquet_engine() -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'image-arena-harness[parquet]'") from None


def write_frame(frame: pd.DataFrame, path: Path, fmt: Format) -> Path:
    """Write ``frame`` to ``path`` in ``fmt`` atomically; returns ``path``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "parquet":
        _parquet_engine()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            spreadsheet_safe(frame).to_csv(tmp, index=False, lineterminator=CSV_NEWLINE)
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False, double_precision=15)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def to_text(frame: pd.DataFrame, fmt: Format) -> str:
    """``frame`` as CSV or JSON Lines text (for writing to stdout)."""
    if fmt == "csv":
        return str(spreadsheet_safe(frame).to_csv(index=False, lineterminator=CSV_NEWLINE))
    if fmt == "jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
        return str(text) if text.endswith("\n") else f"{text}\n"
    raise ConfigError("Parquet is binary: write it to a file with --out")
