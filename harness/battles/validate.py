"""The one set of rules that turns raw cells into a :class:`~harness.battles.table.BattleTable`.

Both readers (the columnar one and the plain one) hand over :class:`RawBattles`: each field as codes into
its distinct raw cell values (or as numbers), so every rule below runs once per distinct value, not once
per vote, and the two readers cannot disagree on what a cell means. Rules:

* ``model_a``, ``model_b``: text (a JSON number is read as its text), not blank; kept exactly as written.
* ``winner``: one of :data:`~harness.battles.table.WINNERS`, exactly.
* ``category``, ``kind``, ``challenge``, ``voter`` (else FastChat's ``judge``): text or absent; a blank cell
  is absent.
* ``tstamp``: Unix seconds (a number or a numeric string) or an ISO-8601 time (UTC when it has no offset);
  blank is absent; it must be finite.
* ``anony``: true/false (``true``, ``false``, ``1``, ``0`` in CSV); absent is unknown.
* ``schema_version``: absent, or a version up to :data:`~harness.battles.table.SCHEMA_VERSION`.
* In CSV, a text cell written with a leading ``'`` by :func:`harness.export.escape_cell` (a formula-like
  name) is read back without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from harness.battles.table import (
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    TEXT_FIELDS,
    WINNERS,
    BattleFileError,
    BattleTable,
    Codes,
    TextColumn,
)
from harness.export import unescape_cell

NULL = -1
"""Code of a null or empty cell."""
ABSENT = -2
"""Code of a field a JSON object does not have (or a CSV row too short to reach)."""
MAX_PROBLEMS = 10


@dataclass
class Coded:
    """A field's cells as ``codes`` into ``values`` (its distinct raw values); :data:`NULL`, :data:`ABSENT`."""

    codes: Codes
    values: list[Any]


@dataclass
class Numbers:
    """A numeric field's cells; ``null`` marks cells without a value."""

    values: np.ndarray[Any, np.dtype[np.float64]]
    null: np.ndarray[Any, np.dtype[np.bool_]]


RawColumn = Coded | Numbers


@dataclass
class RawBattles:
    """What a reader found: ``rows`` votes, each field by name; ``header``: the CSV header (None for JSON);
    ``where``: the place of row ``i`` for an error message (``votes.csv: line 4``); ``csv``: cells are CSV
    text (formula quoting applies)."""

    rows: int
    columns: dict[str, RawColumn]
    where: Callable[[int], str]
    source: str
    header: tuple[str, ...] | None = None
    csv: bool = False


@dataclass
class _Problems:
    found: list[tuple[int, int, str]] = field(default_factory=list)
    total: int = 0

    def add(self, rows: np.ndarray[Any, Any], order: int, message: Callable[[int], str]) -> None:
        self.total += int(rows.size)
        self.found.extend((int(r), order, message(int(r))) for r in rows[:MAX_PROBLEMS])


def parse_tstamp(value: Any) -> float | None:
    """Unix seconds from a number, a numeric string or an ISO-8601 time (UTC when no offset is given);
    None for a missing or blank value. Raises ValueError for anything else or a non-finite time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a time, not true/false")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            number = moment.timestamp()
    else:
        raise ValueError(f"a time, not a JSON {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError("not a finite time")
    return number


def _text(value: Any) -> str | None:
    """The text of a cell (None when blank); raises TypeError for a value that is not text or a number."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(type(value).__name__ if value is not None else "null")


def _rows_with(codes: Codes, bad: Sequence[int]) -> np.ndarray[Any, Any]:
    if not bad:
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(np.isin(codes, np.asarray(bad, dtype=codes.dtype)))


def _unescaped(column: RawColumn) -> RawColumn:
    if isinstance(column, Coded):
        return Coded(column.codes, [unescape_cell(v) if isinstance(v, str) else v for v in column.values])
    return column


def _as_coded(column: RawColumn) -> Coded:
    if isinstance(column, Coded):
        return column
    values, inverse = np.unique(column.values, return_inverse=True)
    codes = inverse.astype(np.int32)
    codes[column.null] = NULL
    return Coded(codes, values.tolist())


def _texts(values: list[Any]) -> tuple[tuple[str, ...], Codes, dict[int, str]]:
    """Distinct texts of ``values``, the code each value maps to (blank → −1; the last two entries map the
    null and absent codes) and the values that are not text. Distinct text values (what every reader
    hands over) keep their positions, so the common case costs one pass and no dictionary."""
    if all(type(v) is str for v in values) and len(set(values)) == len(values):
        keep = np.array([bool(v.strip()) for v in values], dtype=bool)
        if keep.all():
            remap = np.append(np.arange(len(values), dtype=np.int32), np.array([NULL, NULL], dtype=np.int32))
            return tuple(values), remap, {}
        position = (np.cumsum(keep) - 1).astype(np.int32)
        position[~keep] = NULL
        kept = tuple(v for v, k in zip(values, keep, strict=True) if k)
        return kept, np.append(position, np.array([NULL, NULL], dtype=np.int32)), {}
    texts: dict[str, int] = {}
    remap = np.full(len(values) + 2, NULL, dtype=np.int32)
    wrong: dict[int, str] = {}
    for i, value in enumerate(values):
        try:
            text = _text(value)
        except TypeError as exc:
            wrong[i] = str(exc)
            continue
        if text is not None:
            remap[i] = texts.setdefault(text, len(texts))
    return tuple(texts), remap, wrong


def _text_field(raw: RawBattles, name: str, problems: _Problems, order: int, *, required: bool
                ) -> TextColumn | None:
    """A text field as codes into its distinct texts (blank → −1), None when the file lacks an optional
    field; notes every bad row."""
    column = raw.columns.get(name)
    if column is None:
        if not required:
            return None
        if raw.header is None:
            problems.add(np.arange(raw.rows), order, lambda r: f"{raw.where(r)}: field {name!r} is missing; "
                         f"votes need {', '.join(REQUIRED_FIELDS)}")
        return TextColumn.empty(raw.rows)
    coded = _as_coded(column)
    texts, remap, wrong = _texts(coded.values)
    codes = remap[coded.codes]
    if wrong:
        problems.add(_rows_with(coded.codes, list(wrong)), order,
                     lambda r: f"{raw.where(r)}: field {name!r} must be text, not {wrong[int(coded.codes[r])]}")
    if required:
        absent = np.flatnonzero(coded.codes == ABSENT)
        problems.add(absent, order, lambda r: f"{raw.where(r)}: field {name!r} is missing; "
                     f"votes need {', '.join(REQUIRED_FIELDS)}")
        empty = (codes == NULL) & (coded.codes != ABSENT)
        if wrong:
            empty &= ~np.isin(coded.codes, list(wrong))
        empty = np.flatnonzero(empty)
        problems.add(empty, order, lambda r: f"{raw.where(r)}: field {name!r} is empty; every vote names "
                     "both models")
    return TextColumn(codes, texts)


def _winner(raw: RawBattles, problems: _Problems) -> np.ndarray[Any, np.dtype[np.int8]]:
    column = raw.columns.get("winner")
    if column is None:
        if raw.header is None:
            problems.add(np.arange(raw.rows), 2, lambda r: f"{raw.where(r)}: field 'winner' is missing; "
                         f"votes need {', '.join(REQUIRED_FIELDS)}")
        return np.zeros(raw.rows, dtype=np.int8)
    coded = _as_coded(column)
    lookup = {w: i for i, w in enumerate(WINNERS)}
    remap = np.array([lookup.get(v, -1) if isinstance(v, str) else -1 for v in coded.values] + [-1, -1],
                     dtype=np.int8)
    winner = remap[coded.codes]
    bad = np.flatnonzero(winner < 0)
    shown = {ABSENT: "missing"}

    def message(r: int) -> str:
        code = int(coded.codes[r])
        if code == ABSENT:
            return f"{raw.where(r)}: field 'winner' is {shown[code]}; votes need {', '.join(REQUIRED_FIELDS)}"
        value = None if code == NULL else coded.values[code]
        return f"{raw.where(r)}: field 'winner' is {value!r}; use one of {', '.join(repr(w) for w in WINNERS)}"

    problems.add(bad, 2, message)
    return winner


def _tstamp(raw: RawBattles, problems: _Problems) -> np.ndarray[Any, np.dtype[np.float64]]:
    column = raw.columns.get("tstamp")
    if column is None:
        return np.full(raw.rows, np.nan)
    if isinstance(column, Numbers):
        values = np.where(column.null, np.nan, column.values)
        bad = np.flatnonzero(~column.null & ~np.isfinite(column.values))
        problems.add(bad, 7, lambda r: f"{raw.where(r)}: field 'tstamp' is {column.values[r]!r}, "
                     "not a finite time")
        return np.asarray(values, dtype=np.float64)
    parsed = np.full(len(column.values) + 2, np.nan)
    wrong: list[int] = []
    for i, value in enumerate(column.values):
        try:
            seconds = parse_tstamp(value)
        except (ValueError, OverflowError):
            wrong.append(i)
            continue
        if seconds is not None:
            parsed[i] = seconds
    problems.add(_rows_with(column.codes, wrong), 7,
                 lambda r: f"{raw.where(r)}: field 'tstamp' is {column.values[int(column.codes[r])]!r}; "
                 "use Unix seconds or an ISO-8601 time")
    return np.asarray(parsed[column.codes], dtype=np.float64)


_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _anony(raw: RawBattles, problems: _Problems) -> np.ndarray[Any, np.dtype[np.int8]]:
    column = raw.columns.get("anony")
    if column is None:
        return np.full(raw.rows, -1, dtype=np.int8)
    coded = _as_coded(column)
    remap = np.full(len(coded.values) + 2, -1, dtype=np.int8)
    wrong: list[int] = []
    for i, value in enumerate(coded.values):
        text = str(value).strip().lower() if isinstance(value, str | bool | int | float) else None
        if text in _TRUE or value is True:
            remap[i] = 1
        elif text in _FALSE or value is False:
            remap[i] = 0
        elif not (isinstance(value, str) and not value.strip()):
            wrong.append(i)
    problems.add(_rows_with(coded.codes, wrong), 8,
                 lambda r: f"{raw.where(r)}: field 'anony' is {coded.values[int(coded.codes[r])]!r}; "
                 "use true or false")
    return np.asarray(remap[coded.codes], dtype=np.int8)


def _known_version(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value in range(1, SCHEMA_VERSION + 1)
    if isinstance(value, str):
        text = value.strip()
        return not text or text in {str(v) for v in range(1, SCHEMA_VERSION + 1)}
    return False


def _schema_version(raw: RawBattles, problems: _Problems) -> None:
    column = raw.columns.get("schema_version")
    if column is None:
        return
    coded = _as_coded(column)
    wrong = [i for i, value in enumerate(coded.values) if not _known_version(value)]
    problems.add(_rows_with(coded.codes, wrong), 0,
                 lambda r: f"{raw.where(r)}: schema_version {coded.values[int(coded.codes[r])]!r} is newer than "
                 f"this harness understands ({SCHEMA_VERSION}) or not a version")


def _voter(raw: RawBattles, problems: _Problems) -> TextColumn | None:
    voter = _text_field(raw, "voter", problems, 6, required=False)
    judge = _text_field(raw, "judge", problems, 6, required=False)
    if voter is None or judge is None:
        return voter or judge
    values = list(voter.values)
    index = {v: i for i, v in enumerate(values)}
    remap = np.array([index.setdefault(v, len(index)) for v in judge.values] + [NULL], dtype=np.int32)
    codes = np.where(voter.codes >= 0, voter.codes, remap[judge.codes]).astype(np.int32)
    return TextColumn(codes, tuple(index))


def _shared_models(a: TextColumn, b: TextColumn) -> tuple[tuple[str, ...], Codes, Codes]:
    models = tuple(sorted(set(a.values) | set(b.values)))
    position = {name: i for i, name in enumerate(models)}

    def recode(column: TextColumn) -> Codes:
        remap = np.array([position[v] for v in column.values] + [NULL], dtype=np.int32)
        return np.asarray(remap[column.codes], dtype=np.int32)

    return models, recode(a), recode(b)


def _report(problems: _Problems) -> Iterator[str]:
    for _, _, message in sorted(problems.found)[:MAX_PROBLEMS]:
        yield message
    if problems.total > MAX_PROBLEMS:
        yield f"... {problems.total - MAX_PROBLEMS} more problem(s)"


def check_header(header: Sequence[str], source: str) -> None:
    """Refuse a CSV header without the required columns, naming what it has."""
    missing = [c for c in REQUIRED_FIELDS if c not in header]
    if missing:
        found = ", ".join(repr(c) for c in header) or "none"
        raise BattleFileError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(c) for c in missing)} (found {found}); votes need "
                              f"{', '.join(REQUIRED_FIELDS)}")


def build_table(raw: RawBattles) -> BattleTable:
    """Apply the rules to ``raw``; raises :class:`BattleFileError` listing up to ten bad rows in file order."""
    if raw.header is not None:
        check_header(raw.header, raw.source)
    if raw.csv:
        raw = RawBattles(raw.rows, {k: _unescaped(v) for k, v in raw.columns.items()}, raw.where, raw.source,
                         raw.header, raw.csv)
    problems = _Problems()
    _schema_version(raw, problems)
    a = _text_field(raw, "model_a", problems, 1, required=True) or TextColumn.empty(raw.rows)
    b = _text_field(raw, "model_b", problems, 1, required=True) or TextColumn.empty(raw.rows)
    winner = _winner(raw, problems)
    texts = {name: _text_field(raw, name, problems, 3 + i, required=False) for i, name in enumerate(TEXT_FIELDS[:3])}
    texts["voter"] = _voter(raw, problems)
    tstamp = _tstamp(raw, problems)
    anony = _anony(raw, problems)
    if problems.total:
        raise BattleFileError("; ".join(_report(problems)))
    models, codes_a, codes_b = _shared_models(a, b)
    return BattleTable(models, codes_a, codes_b, winner, tstamp, anony,
                       {name: column for name, column in texts.items() if column is not None})
