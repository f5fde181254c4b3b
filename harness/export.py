"""Exports of a run: every attempt, and the provider statistics table, as CSV, Parquet or JSON Lines.

Every exported row carries ``schema_version`` (the store's) so readers can tell layouts apart. Times follow
the store: ``*_ms`` durations in milliseconds, ``started_at`` Unix seconds. In CSV and Parquet the nested
columns of the statistics (``errors``, ``withheld``, ``invariant_attempt_ids``) are JSON strings; JSON Lines
keeps them nested. Missing values are empty in CSV and null elsewhere. Parquet needs ``pyarrow`` (the
``parquet`` extra). Files are written to a temporary name and renamed, so an interrupted export never
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
            frame.to_csv(tmp, index=False)
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
        return str(frame.to_csv(index=False))
    if fmt == "jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
        return str(text) if text.endswith("\n") else f"{text}\n"
    raise ConfigError("Parquet is binary: write it to a file with --out")
