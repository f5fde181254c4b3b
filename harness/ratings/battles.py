"""Votes in the field's battle format: reading files, validating frames, aggregating into pair counts.

A battle is one pairwise vote: ``model_a`` (the left output), ``model_b`` (the right one) and ``winner`` in
``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` — the columns of FastChat's ``clean_battle`` files and of
:func:`harness.store.votes.battles_frame`. Optional columns: ``category``, ``kind``, ``challenge``,
``voter``, ``tstamp`` (Unix seconds, or an ISO-8601 time in files).

Every rating is fitted from :class:`PairCounts` — how often each unordered pair of models produced each
outcome — never from one row per vote: a million votes over 100 models become at most 4,950 pairs x 4
outcome counts, which is what makes a refresh on every vote affordable.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
"""Allowed ``winner`` values, in the order of the outcome codes used in :class:`PairCounts`."""
REQUIRED_COLUMNS = ("model_a", "model_b", "winner")
OPTIONAL_COLUMNS = ("category", "kind", "challenge", "voter", "tstamp")
BATTLE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_DENSE_LIMIT = 40_000_000
"""Above this many ``models² x 4`` cells, pair keys are counted with ``np.unique`` instead of a dense bincount."""


class BattleError(HarnessError):
    """A vote file or frame is not in the battle format; the message names the file, line and field."""


def read_battles(path: Path) -> pd.DataFrame:
    """Read votes from a CSV, JSONL (``.jsonl``/``.ndjson``) or JSON-list (``.json``) file, by extension.

    Returns a frame with every column of :data:`BATTLE_COLUMNS` (optional ones filled with missing values),
    in file order. Raises :class:`BattleError` naming the file, line (item for ``.json``) and field of the
    first bad row: a missing column, an empty model name, an unknown ``winner`` or an unreadable ``tstamp``.
    """
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BattleError(f"{path}: unknown vote file type {path.suffix!r}; use .csv, .jsonl or .json")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BattleError(f"{path}: vote file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BattleError(f"{path}: cannot read vote file ({exc})") from None
    if fmt == "csv":
        frame = _read_csv(text, path)
        csv_lines: list[int] = []

        def csv_where(i: int) -> str:
            if not csv_lines:
                csv_lines.extend(_csv_row_lines(text))
            return f"{path}: line {csv_lines[i]}"

        return _validate(frame, csv_where, str(path))
    frame, lines = _read_json_lines(text, path) if fmt == "jsonl" else _read_json_list(text, path)
    where = "line" if fmt == "jsonl" else "item"
    return _validate(frame, lambda i: f"{path}: {where} {lines[i]}", str(path))


def validate_battles(frame: pd.DataFrame, source: str = "votes") -> pd.DataFrame:
    """Check a battle frame built in memory (or read from the store) and normalise its columns.

    Same checks as :func:`read_battles`; rows are named by their position (``row 0`` is the first).
    """
    return _validate(frame.reset_index(drop=True), lambda i: f"{source}: row {i}", source)


def _read_csv(text: str, path: Path) -> pd.DataFrame:
    """Parse with pandas' C reader (a million rows in about a second); every cell stays a string."""
    if not text.strip():
        raise BattleError(f"{path}: empty file, expected a header with {', '.join(REQUIRED_COLUMNS)}")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise BattleError(f"{path}: not a readable CSV file ({str(exc).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_columns(list(frame.columns), str(path))
    return frame


def _csv_row_lines(text: str) -> list[int]:
    """The file line on which each data row starts (blank lines skipped, quoted newlines counted): only
    computed when an error has to name a line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    lines: list[int] = []
    start = reader.line_num + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            lines.append(start)
        start = reader.line_num + 1
    return lines


def _read_json_lines(text: str, path: Path) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BattleError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BattleError(f"{path}: line {number}: expected a JSON object, found {type(record).__name__}")
        _require_fields(record, f"{path}: line {number}")
        records.append(record)
        lines.append(number)
    return _records_frame(records), lines


def _read_json_list(text: str, path: Path) -> tuple[pd.DataFrame, list[int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BattleError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise BattleError(f"{path}: expected a JSON list of vote objects, found {type(data).__name__}")
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise BattleError(f"{path}: item {i}: expected a JSON object, found {type(record).__name__}")
        _require_fields(record, f"{path}: item {i}")
    return _records_frame(data), list(range(len(data)))


def _require_fields(record: dict[str, Any], where: str) -> None:
    for field in REQUIRED_COLUMNS:
        if field not in record:
            raise BattleError(f"{where}: field {field!r} is missing; votes need {', '.join(REQUIRED_COLUMNS)}")


def _records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in REQUIRED_COLUMNS})
    return pd.DataFrame.from_records(records)


def _check_columns(columns: Sequence[str], source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise BattleError(f"{source}: missing column {missing[0]!r} (found {found}); "
                          f"votes need {', '.join(REQUIRED_COLUMNS)}")


def _validate(frame: pd.DataFrame, where: Callable[[int], str], source: str) -> pd.DataFrame:
    _check_columns(list(frame.columns), source)
    out = pd.DataFrame(index=frame.index)
    for column in ("model_a", "model_b"):
        values = frame[column]
        bad = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BattleError(f"{where(i)}: field {column!r} is empty; every vote names both models")
        out[column] = values.astype(str).str.strip()
    winner = frame["winner"].astype(object)
    known = winner.isin(WINNERS).to_numpy()
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise BattleError(f"{where(i)}: field 'winner' is {winner.iloc[i]!r}; "
                          f"use one of {', '.join(repr(w) for w in WINNERS)}")
    out["winner"] = winner
    for column in ("category", "kind", "challenge", "voter"):
        if column in frame.columns:
            values = frame[column].astype(object)
            blank = values.isna() | (values.astype(str).str.strip() == "")
            out[column] = values.where(~blank, None).map(lambda v: v if v is None else str(v))
        else:
            out[column] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    out["tstamp"] = _timestamps(frame, where)
    for column in frame.columns:
        if column not in out.columns:
            out[column] = frame[column]
    return out.reset_index(drop=True)


def _timestamps(frame: pd.DataFrame, where: Callable[[int], str]) -> pd.Series:
    if "tstamp" not in frame.columns:
        return pd.Series(np.full(len(frame), np.nan), index=frame.index, dtype=float)
    raw = frame["tstamp"]
    numeric = pd.to_numeric(raw, errors="coerce")
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    unparsed = numeric.isna() & ~empty
    if unparsed.any():
        text = raw[unparsed].astype(str)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():
            i = int(np.flatnonzero(unparsed.to_numpy())[int(np.flatnonzero(parsed.isna().to_numpy())[0])])
            raise BattleError(f"{where(i)}: field 'tstamp' is {raw.iloc[i]!r}; "
                              "use Unix seconds or an ISO-8601 time")
        seconds = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        numeric = numeric.astype(float)
        numeric[unparsed] = seconds.to_numpy(dtype=float)
    values = numeric.astype(float)
    infinite = ~np.isfinite(values.to_numpy()) & ~values.isna().to_numpy()
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise BattleError(f"{where(i)}: field 'tstamp' is {raw.iloc[i]!r}, not a finite time")
    return values


@dataclass(frozen=True)
class PairCounts:
    """Outcome counts per unordered pair of models: the sufficient statistics of every rating model here.

    ``models`` is sorted; pair ``k`` is ``(models[first[k]], models[second[k]])`` with ``first < second``.
    ``wins_first`` counts votes the first model won (on either side), ``wins_second`` those the second won,
    ``ties`` plain ties and ``both_bad`` "both are bad" votes. Counts are floats so that resampled or
    weighted counts use the same type. ``self_votes`` counts votes left out because both sides were the same
    model (two providers of one model, when rating by model): they say nothing about the model's rating.
    """

    models: tuple[str, ...]
    first: np.ndarray[Any, np.dtype[np.intp]]
    second: np.ndarray[Any, np.dtype[np.intp]]
    wins_first: np.ndarray[Any, np.dtype[np.float64]]
    wins_second: np.ndarray[Any, np.dtype[np.float64]]
    ties: np.ndarray[Any, np.dtype[np.float64]]
    both_bad: np.ndarray[Any, np.dtype[np.float64]]
    self_votes: int = 0

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_pairs(self) -> int:
        return int(self.first.size)

    @property
    def totals(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Votes per pair, every outcome included."""
        return np.asarray(self.wins_first + self.wins_second + self.ties + self.both_bad, dtype=np.float64)

    @property
    def n_votes(self) -> float:
        """Votes between two different models."""
        return float(self.totals.sum())

    def cells(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The counts as a ``(pairs, 4)`` array: first wins, second wins, tie, both bad."""
        return np.stack([self.wins_first, self.wins_second, self.ties, self.both_bad], axis=1)

    def with_cells(self, cells: np.ndarray[Any, np.dtype[np.float64]]) -> PairCounts:
        """The same pairs with other counts (bootstrap replicates)."""
        return PairCounts(self.models, self.first, self.second, cells[:, 0], cells[:, 1], cells[:, 2],
                          cells[:, 3], self.self_votes)

    def per_model(self) -> pd.DataFrame:
        """Wins, losses, ties, both-bad votes and total votes per model (index: model)."""
        m = self.n_models

        def add(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return np.bincount(self.first, a, minlength=m) + np.bincount(self.second, b, minlength=m)

        wins = add(self.wins_first, self.wins_second)
        losses = add(self.wins_second, self.wins_first)
        ties = add(self.ties, self.ties)
        both_bad = add(self.both_bad, self.both_bad)
        frame = pd.DataFrame({"wins": wins, "losses": losses, "ties": ties + both_bad, "both_bad": both_bad},
                             index=pd.Index(self.models, name="model"))
        frame["votes"] = frame["wins"] + frame["losses"] + frame["ties"]
        return frame.round().astype(np.int64)


def model_codes(battles: pd.DataFrame, models: Sequence[str] | None = None
                ) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Sorted model names and the integer codes of ``model_a`` and ``model_b`` (−1: not in ``models``)."""
    codes_a, uniques_a = pd.factorize(battles["model_a"])
    codes_b, uniques_b = pd.factorize(battles["model_b"])
    found = {str(u) for u in uniques_a} | {str(u) for u in uniques_b}
    names = sorted(found) if models is None else sorted(models)
    position = {name: i for i, name in enumerate(names)}

    def mapped(codes: np.ndarray[Any, Any], uniques: Any) -> np.ndarray[Any, Any]:
        remap = np.array([position.get(str(u), -1) for u in uniques] + [-1], dtype=np.intp)
        return np.asarray(remap[codes], dtype=np.intp)

    return tuple(names), mapped(codes_a, uniques_a), mapped(codes_b, uniques_b)


def winner_codes(battles: pd.DataFrame) -> np.ndarray[Any, Any]:
    """0 ``model_a`` won, 1 ``model_b`` won, 2 tie, 3 both bad (the order of :data:`WINNERS`)."""
    codes, uniques = pd.factorize(battles["winner"])
    remap = np.array([WINNERS.index(u) if u in WINNERS else -1 for u in uniques] + [-1], dtype=np.intp)
    mapped = remap[codes]
    if (mapped < 0).any():
        i = int(np.flatnonzero(mapped < 0)[0])
        raise BattleError(f"row {i}: field 'winner' is {battles['winner'].iloc[i]!r}; "
                          f"use one of {', '.join(repr(w) for w in WINNERS)}")
    return np.asarray(mapped, dtype=np.intp)


def aggregate(battles: pd.DataFrame, models: Sequence[str] | None = None) -> PairCounts:
    """Count outcomes per unordered pair of models (vectorised: a million votes take about 0.1 s).

    ``models`` fixes the model list (e.g. the full board when counting one category, so that models without
    votes there still appear); votes naming another model are an error. Without it, the models are those
    with at least one vote against a different model. Votes where both sides are the same model are
    counted in ``self_votes`` only.
    """
    names, a, b = model_codes(battles, models)
    if ((a < 0) | (b < 0)).any():
        i = int(np.flatnonzero((a < 0) | (b < 0))[0])
        raise BattleError(f"row {i}: model not in the given model list "
                          f"({battles['model_a'].iloc[i]!r} vs {battles['model_b'].iloc[i]!r})")
    w = winner_codes(battles)
    same = a == b
    if same.any():
        a, b, w = a[~same], b[~same], w[~same]
    if models is None:
        present = np.bincount(np.concatenate([a, b]), minlength=len(names)) > 0
        if not present.all():
            index = np.cumsum(present) - 1
            a, b = index[a], index[b]
            names = tuple(n for n, keep in zip(names, present, strict=True) if keep)
    m = len(names)
    flip = a > b
    lo = np.where(flip, b, a)
    hi = np.where(flip, a, b)
    rel = np.where(flip & (w < 2), 1 - w, w)
    key = (lo.astype(np.int64) * m + hi) * 4 + rel
    if m * m * 4 <= _DENSE_LIMIT:
        cells = np.bincount(key, minlength=m * m * 4).reshape(m * m, 4).astype(np.float64)
        pair_keys = np.flatnonzero(cells.sum(axis=1))
        cells = cells[pair_keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
        pair_keys, inverse = np.unique(keys // 4, return_inverse=True)
        cells = np.zeros((pair_keys.size, 4))
        np.add.at(cells, (inverse, keys % 4), counts)
    first = (pair_keys // m).astype(np.intp)
    second = (pair_keys % m).astype(np.intp)
    return PairCounts(names, first, second, cells[:, 0].copy(), cells[:, 1].copy(), cells[:, 2].copy(),
                      cells[:, 3].copy(), int(same.sum()))
