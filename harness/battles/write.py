"""Writing battle files that FastChat's own pipeline reads.

Columns, in this order: FastChat's ``clean_battle`` fields ``model_a``, ``model_b``, ``winner``, ``judge``
(the voter; null when unknown), ``anony`` and ``tstamp`` (Unix seconds), then the harness's ``category``,
``kind``, ``challenge`` and ``schema_version``. Every vote the harness records is blind — the arena shows
the model names only after the vote — so ``anony`` is true unless the frame says otherwise (FastChat's
``elo_analysis`` keeps only ``anony`` rows and raises KeyError without the column).

``json`` writes a JSON array with one vote per line (``pandas.read_json`` and FastChat read it; so does the
harness's columnar reader, fast); ``jsonl`` JSON Lines; ``csv`` CSV with a header, CRLF rows, ``anony`` as
``true``/``false`` and formula-like text quoted by :func:`harness.export.escape_cell`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from typing import Any, TextIO

import pandas as pd

from harness.battles.detect import Shape
from harness.battles.table import SCHEMA_VERSION
from harness.export import CSV_NEWLINE, escape_cell

EXPORT_COLUMNS = ("model_a", "model_b", "winner", "judge", "anony", "tstamp", "category", "kind", "challenge",
                  "schema_version")
FASTCHAT_COLUMNS = EXPORT_COLUMNS[:6]
"""The fields of FastChat's ``clean_battle`` files (simple mode) that its ``elo_analysis`` reads, except
``language`` and ``turn``, which describe chat conversations."""


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def export_rows(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The rows of a battle frame (:func:`harness.store.votes.battles_frame`, or a table's frame) in file
    order, with :data:`EXPORT_COLUMNS`."""
    columns = {name: frame[name].astype(object).tolist() if name in frame.columns else [None] * len(frame)
               for name in ("model_a", "model_b", "winner", "voter", "anony", "tstamp", "category", "kind",
                            "challenge")}
    for i in range(len(frame)):
        anony = _clean(columns["anony"][i])
        tstamp = _clean(columns["tstamp"][i])
        yield {
            "model_a": _clean(columns["model_a"][i]), "model_b": _clean(columns["model_b"][i]),
            "winner": _clean(columns["winner"][i]), "judge": _clean(columns["voter"][i]),
            "anony": True if anony is None else bool(anony),
            "tstamp": None if tstamp is None else float(tstamp),
            "category": _clean(columns["category"][i]), "kind": _clean(columns["kind"][i]),
            "challenge": _clean(columns["challenge"][i]), "schema_version": SCHEMA_VERSION,
        }


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape_cell(value)


def write_battles(frame: pd.DataFrame, out: TextIO, fmt: Shape) -> int:
    """Write the votes of ``frame`` to ``out`` as ``csv``, ``jsonl`` or ``json``; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator=CSV_NEWLINE)
        writer.writerow(EXPORT_COLUMNS)
        for row in export_rows(frame):
            writer.writerow([_csv_cell(v) for v in row.values()])
            count += 1
        return count
    if fmt == "json":
        out.write("[")
    for row in export_rows(frame):
        text = json.dumps(row, allow_nan=False, ensure_ascii=False)
        if fmt == "json":
            out.write(("\n" if count == 0 else ",\n") + text)
        else:
            out.write(text + "\n")
        count += 1
    if fmt == "json":
        out.write("\n]\n" if count else "]\n")
    return count
