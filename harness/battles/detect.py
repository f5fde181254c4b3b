"""Which of the three battle-file shapes a file holds, from its content first and its name second.

Reading: ``--format csv`` is obeyed; otherwise the first character that is not whitespace (after a UTF-8
byte-order mark) decides: ``[`` is a JSON array, ``{`` is JSON Lines — whatever the name, so a ``.json``
file holding JSON Lines and a ``.jsonl`` file holding an array both read. A ``.json`` file that is one
JSON object is one vote when it has ``model_a``, ``model_b`` and ``winner``, and is refused otherwise (a
wrapper such as ``{"battles": [...]}`` is not a battle file). Anything else
is CSV when the name ends in ``.csv`` (or the first line is a header naming ``model_a``), JSON when it ends
in ``.json``/``.jsonl``/``.ndjson`` (giving a "not valid JSON" error with the line), and an error naming
the file otherwise. A blank JSON file holds no votes; a blank CSV file is an error (it lacks its header).

Writing: the explicit format, else the name: ``.csv`` CSV, ``.jsonl``/``.ndjson`` JSON Lines, ``.json``
a JSON array (what ``pandas.read_json`` and FastChat's pipeline read).
"""

from __future__ import annotations

import json
import mmap
import re
from pathlib import Path
from typing import Literal

from harness.battles.table import REQUIRED_FIELDS, BattleFileError

Shape = Literal["csv", "jsonl", "json"]
Content = bytes | mmap.mmap
"""A battle file's bytes: in memory, or memory-mapped (slicing either gives bytes)."""
FORMATS: tuple[Shape, ...] = ("csv", "jsonl", "json")
SUFFIXES: dict[str, Shape] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
BOM = b"\xef\xbb\xbf"
_NON_SPACE = re.compile(rb"\S")
_NON_SPACE_TEXT = re.compile(r"\S")


def check_format(fmt: str | None) -> Shape | None:
    if fmt is None:
        return None
    if fmt not in FORMATS:
        raise BattleFileError(f"unknown battle format {fmt!r}: use {', '.join(FORMATS)}")
    return fmt


def format_for_writing(path: Path | None, fmt: str | None) -> Shape:
    """The explicit format, else the one the file name asks for."""
    explicit = check_format(fmt)
    if explicit:
        return explicit
    suffix = path.suffix.lower() if path else ""
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    raise BattleFileError(f"cannot tell the format of {path or 'standard output'} from its name: "
                          f"pass --format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")


def _lone_object_lacks(data: Content, start: int) -> list[str]:
    """The required fields a file that is one JSON object lacks (empty when it is not one object)."""
    try:
        text = bytes(data).decode("utf-8")
        value, end = json.JSONDecoder().raw_decode(text, start)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []
    if _NON_SPACE_TEXT.search(text, end) is not None or not isinstance(value, dict):
        return []
    return [name for name in REQUIRED_FIELDS if name not in value]


def _csv_header(data: bytes) -> bool:
    first = data[:65536].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    names = {cell.strip().strip('"') for cell in first.split(",")}
    return all(name in names for name in REQUIRED_FIELDS)


def detect_shape(path: Path, data: Content, fmt: str | None = None) -> Shape:
    """The shape of ``data`` (a file's bytes without its byte-order mark); see the module docstring."""
    explicit = check_format(fmt)
    if explicit == "csv":
        return "csv"
    suffix = path.suffix.lower()
    named = SUFFIXES.get(suffix)
    json_named = explicit is not None or named in ("json", "jsonl")
    first = _NON_SPACE.search(data)
    if first is None:
        if json_named:
            return "jsonl"
        if named == "csv":
            return "csv"
    else:
        char = data[first.start():first.start() + 1]
        if char == b"[":
            return "json"
        if char == b"{":
            lacks = _lone_object_lacks(data, first.start()) if (explicit or named) == "json" else []
            if lacks:
                raise BattleFileError(f"{path}: expected a JSON list of vote objects (or JSON Lines), found one "
                                      f"JSON object without {', '.join(lacks)}")
            return "jsonl"
        if json_named:
            return "json" if (explicit or named) == "json" else "jsonl"
        if named == "csv" or _csv_header(data[first.start():first.start() + 65536]):
            return "csv"
    raise BattleFileError(f"{path}: unknown vote file type {suffix!r}: the content is neither a CSV with a "
                          f"{', '.join(REQUIRED_FIELDS)} header, a JSON array nor JSON Lines; pass --format "
                          f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
