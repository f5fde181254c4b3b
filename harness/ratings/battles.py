"""Votes in the field's battle format for rating: loading, validating frames, aggregating into pair counts.

A battle is one pairwise vote: ``model_a`` (the left output), ``model_b`` (the right one) and ``winner`` in
``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` — the columns of FastChat's ``clean_battle`` files and of
:func:`harness.store.votes.battles_frame`. Optional columns: ``category``, ``kind``, ``challenge``,
``voter``, ``tstamp`` (Unix seconds). Files are read by :mod:`harness.battles`, the one battle-file reader.

Every rating is fitted from :class:`PairCounts` — how often each unordered pair of models produced each
outcome — never from one row per vote: a million votes over 100 models become at most 4,950 pairs x 4
outcome counts, which is what makes a refresh on every vote affordable. A frame read from a file keeps its
models and outcomes as codes (pandas categoricals), so counting reads integer arrays, never strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.battles import WINNERS, BattleError, read_battle_file
from harness.battles.table import REQUIRED_FIELDS, TEXT_FIELDS
from harness.battles.validate import Coded, Numbers, RawBattles, RawColumn, build_table

REQUIRED_COLUMNS = REQUIRED_FIELDS
OPTIONAL_COLUMNS = (*TEXT_FIELDS, "tstamp")
BATTLE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_DENSE_LIMIT = 40_000_000
"""Above this many ``models² x 4`` cells, pair keys are counted with ``np.unique`` instead of a dense bincount."""

__all__ = ["BATTLE_COLUMNS", "WINNERS", "BattleError", "PairCounts", "aggregate", "aggregate_codes", "load_battles",
           "model_codes", "read_battles", "validate_battles", "winner_codes"]


def read_battles(path: Path, fmt: str | None = None) -> pd.DataFrame:
    """Votes from a battle file (CSV, JSON Lines or a JSON array: see :mod:`harness.battles`), in file order,
    with every column of :data:`BATTLE_COLUMNS`; models, outcomes and text fields are categoricals.

    Raises :class:`BattleError` naming the file, line (item in a JSON array) and field of the bad rows."""
    return read_battle_file(path, fmt).to_frame()


def _raw_column(name: str, values: pd.Series) -> RawColumn:
    if name == "tstamp" and (pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype)):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        return Numbers(numbers, np.isnan(numbers))
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    return Coded(np.asarray(codes, dtype=np.int32), list(uniques))


def validate_battles(frame: pd.DataFrame, source: str = "votes") -> pd.DataFrame:
    """Check a battle frame built in memory (or read from the store) and normalise its columns.

    The rules of a battle file apply (:mod:`harness.battles.validate`); rows are named by their position
    (``row 0`` is the first). Text columns come back as objects (None when missing), other columns as given.
    """
    frame = frame.reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    fields = ("model_a", "model_b", "winner", *TEXT_FIELDS, "tstamp")
    raw = RawBattles(len(frame), {name: _raw_column(name, frame[name]) for name in fields if name in columns},
                     lambda i: f"{source}: row {i}", source, header=tuple(columns))
    out = build_table(raw).to_frame(categorical=False)
    for column in frame.columns:
        if column not in out.columns:
            out[column] = frame[column]
    return out


MULTI_TURN = "multi-turn"
SINGLE_TURN = "single-turn"
"""``kind`` filter value meaning every challenge kind but ``multi-turn``: votes on single images, as opposed
to votes on whole sequences (the arena's multi-turn pairs)."""


def keep_kind(frame: pd.DataFrame, kind: str, source: str) -> pd.DataFrame:
    """The votes of ``frame`` on challenges of ``kind`` (``single-turn``: every kind but ``multi-turn``);
    raises :class:`BattleError` naming ``source`` when its votes carry no kind."""
    if "kind" not in frame.columns or frame["kind"].isna().all():
        if len(frame) == 0:
            return frame
        raise BattleError(f"{source}: the votes carry no 'kind' column, so they cannot be split by kind")
    kinds = frame["kind"].astype(object)
    keep = (kinds != MULTI_TURN) & kinds.notna() if kind == SINGLE_TURN else kinds == kind
    return frame[keep.to_numpy(dtype=bool)].reset_index(drop=True)


def load_battles(votes: Path | None, db: Path, *, by: str | None = None, category: str | None = None,
                 run_ids: Sequence[str] = (), sources: Sequence[str] = (), kind: str | None = None) -> pd.DataFrame:
    """The votes to rate: from the battle file ``votes`` when given, else from the store at ``db`` (``by``,
    ``run_ids`` and ``sources`` select store votes), keeping only ``category`` and ``kind`` (a challenge kind,
    or ``single-turn`` for every kind but ``multi-turn``) when given."""
    if votes is not None:
        frame = read_battles(votes)
        if category is not None:
            frame = frame[(frame["category"] == category).to_numpy(dtype=bool)].reset_index(drop=True)
        return frame if kind is None else keep_kind(frame, kind, str(votes))
    from harness.store import Store
    from harness.store.votes import battles_frame

    with Store.open(db, readonly=True) as store:
        frame = battles_frame(store, by=by or "model", category=category, run_ids=list(run_ids) or None,
                              sources=list(sources) or None)
    frame = validate_battles(frame, f"votes in {db}")
    return frame if kind is None else keep_kind(frame, kind, f"votes in {db}")


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


def _shared_categories(battles: pd.DataFrame) -> tuple[Any, np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """The categories and codes of ``model_a``/``model_b`` when both are categoricals over one list."""
    a, b = battles["model_a"], battles["model_b"]
    if not (isinstance(a.dtype, pd.CategoricalDtype) and isinstance(b.dtype, pd.CategoricalDtype)):
        return None
    if not a.cat.categories.equals(b.cat.categories):
        return None
    return a.cat.categories, a.cat.codes.to_numpy(), b.cat.codes.to_numpy()


def model_codes(battles: pd.DataFrame, models: Sequence[str] | None = None
                ) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Sorted model names and the integer codes of ``model_a`` and ``model_b`` (−1: not in ``models``).

    Without ``models`` the names are those that occur in the frame. Categorical columns (a frame read from
    a file) are recoded through their categories only; other columns are factorised."""
    shared = _shared_categories(battles)
    if shared is not None:
        categories, codes_a, codes_b = shared
        uniques_a = uniques_b = categories
        if models is None:
            used = np.bincount(codes_a[codes_a >= 0], minlength=len(categories)) > 0
            used |= np.bincount(codes_b[codes_b >= 0], minlength=len(categories)) > 0
            if not used.all():
                uniques_a = uniques_b = categories[used]
                index = np.append(np.cumsum(used) - 1, -1)
                codes_a, codes_b = index[codes_a], index[codes_b]
    else:
        codes_a, uniques_a = pd.factorize(battles["model_a"])
        codes_b, uniques_b = pd.factorize(battles["model_b"])
    found = {str(u) for u in uniques_a} | {str(u) for u in uniques_b}
    names = sorted(found) if models is None else sorted(models)
    position = {name: i for i, name in enumerate(names)}

    def mapped(codes: np.ndarray[Any, Any], uniques: Any) -> np.ndarray[Any, Any]:
        remap = np.array([position.get(str(u), -1) for u in uniques] + [-1], dtype=np.intp)
        if np.array_equal(remap[:-1], np.arange(len(remap) - 1)):
            return np.asarray(codes, dtype=np.intp)
        return np.asarray(remap[codes], dtype=np.intp)

    return tuple(names), mapped(codes_a, uniques_a), mapped(codes_b, uniques_b)


def winner_codes(battles: pd.DataFrame) -> np.ndarray[Any, Any]:
    """0 ``model_a`` won, 1 ``model_b`` won, 2 tie, 3 both bad (the order of :data:`WINNERS`)."""
    column = battles["winner"]
    if isinstance(column.dtype, pd.CategoricalDtype) and tuple(column.cat.categories) == WINNERS:
        mapped = column.cat.codes.to_numpy().astype(np.intp)
    else:
        codes, uniques = pd.factorize(column)
        remap = np.array([WINNERS.index(u) if u in WINNERS else -1 for u in uniques] + [-1], dtype=np.intp)
        mapped = remap[codes]
    if (mapped < 0).any():
        i = int(np.flatnonzero(mapped < 0)[0])
        raise BattleError(f"row {i}: field 'winner' is {column.iloc[i]!r}; "
                          f"use one of {', '.join(repr(w) for w in WINNERS)}")
    return np.asarray(mapped, dtype=np.intp)


def aggregate(battles: pd.DataFrame, models: Sequence[str] | None = None) -> PairCounts:
    """Count outcomes per unordered pair of models (vectorised: a million coded votes take about 0.05 s).

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
    return aggregate_codes(names, a, b, winner_codes(battles), fixed=models is not None)


def aggregate_codes(names: Sequence[str], a: np.ndarray[Any, Any], b: np.ndarray[Any, Any],
                    w: np.ndarray[Any, Any], *, fixed: bool = False) -> PairCounts:
    """:func:`aggregate` on arrays: ``a``/``b`` index ``names`` (sorted), ``w`` is the outcome code.
    ``fixed=False`` drops the names without a vote against another model."""
    names = tuple(names)
    same = a == b
    if same.any():
        a, b, w = a[~same], b[~same], w[~same]
    if not fixed:
        present = (np.bincount(a, minlength=len(names)) + np.bincount(b, minlength=len(names))) > 0
        if not present.all():
            index = np.cumsum(present) - 1
            a, b = index[a], index[b]
            names = tuple(n for n, keep in zip(names, present, strict=True) if keep)
    m = len(names)
    wide = np.int64 if m * m * 4 >= 2**31 else np.int32
    lo = np.minimum(a, b).astype(wide)
    hi = np.maximum(a, b).astype(wide)
    rel = w.astype(wide) ^ ((a > b) & (w < 2)).astype(wide)
    key = (lo * m + hi) * 4 + rel
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
