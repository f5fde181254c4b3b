"""The battle table: a battle file's votes held in columns, the one shape every reader produces.

Model names are integer codes into one sorted name list shared by ``model_a`` and ``model_b``; ``winner`` is
an integer outcome code (the index into :data:`WINNERS`); optional text fields are codes into their own
distinct values. A 1.67 M-vote file over 100 models is then a few arrays of small integers plus 100
names, which is what the rating fit counts — no per-vote Python object is ever built on the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError

SCHEMA_VERSION = 2
"""Version of the battle files this harness writes. 1: ``voter`` column, no ``anony``; 2: FastChat's
``judge`` and ``anony`` columns. Files of every version up to this one are read."""
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
"""Allowed ``winner`` values, in the order of the outcome codes (0 ``model_a`` won ... 3 both bad)."""
REQUIRED_FIELDS = ("model_a", "model_b", "winner")
TEXT_FIELDS = ("category", "kind", "challenge", "voter")
"""Optional text fields; ``voter`` is read from ``voter`` or, failing that, FastChat's ``judge``."""

Codes = np.ndarray[Any, np.dtype[np.int32]]


class BattleError(HarnessError):
    """Votes that are not in the battle format; the message names the file (or source), line and field."""


class BattleFileError(BattleError):
    """A battle file that cannot be read; the message names the file, line or item, and field."""


@dataclass(frozen=True)
class TextColumn:
    """An optional text field: ``codes[i]`` indexes ``values``; −1 means the vote has no value."""

    codes: Codes
    values: tuple[str, ...]

    @classmethod
    def empty(cls, rows: int) -> TextColumn:
        return cls(np.full(rows, -1, dtype=np.int32), ())

    def categorical(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.codes, categories=pd.Index(list(self.values), dtype=object))

    def objects(self) -> np.ndarray[Any, np.dtype[np.object_]]:
        """The values as an object array with None for missing (the shape store frames have)."""
        lookup = np.array([*self.values, None], dtype=object)
        return np.asarray(lookup[self.codes], dtype=object)

    def take(self, rows: np.ndarray[Any, Any]) -> TextColumn:
        return TextColumn(self.codes[rows], self.values)


@dataclass(frozen=True)
class BattleTable:
    """Validated votes in file order.

    ``models``: sorted distinct names of ``model_a`` and ``model_b``; ``model_a``/``model_b``: codes into
    it; ``winner``: codes into :data:`WINNERS`; ``tstamp``: Unix seconds, NaN when the vote has none;
    ``anony``: 1 anonymous (the voter did not know the models, FastChat's ``anony``), 0 not, −1 unknown;
    ``texts``: the optional text fields of :data:`TEXT_FIELDS`.
    """

    models: tuple[str, ...]
    model_a: Codes
    model_b: Codes
    winner: np.ndarray[Any, np.dtype[np.int8]]
    tstamp: np.ndarray[Any, np.dtype[np.float64]]
    anony: np.ndarray[Any, np.dtype[np.int8]]
    texts: dict[str, TextColumn] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.winner.size)

    def text(self, name: str) -> TextColumn:
        return self.texts.get(name) or TextColumn.empty(len(self))

    def to_frame(self, *, categorical: bool = True) -> pd.DataFrame:
        """The votes as a battle frame (:data:`harness.ratings.battles.BATTLE_COLUMNS`).

        ``categorical=True`` keeps the columns coded (pandas categoricals sharing one model list), which
        the rating fit reads without touching a string; ``False`` gives text columns as pandas infers
        them from the values (missing values are NA), the shape of :func:`harness.store.votes.battles_frame`."""
        names = pd.Index(list(self.models), dtype=object)
        if categorical:
            columns: dict[str, Any] = {
                "model_a": pd.Categorical.from_codes(self.model_a, categories=names),
                "model_b": pd.Categorical.from_codes(self.model_b, categories=names),
                "winner": pd.Categorical.from_codes(self.winner, categories=pd.Index(list(WINNERS), dtype=object)),
            }
            columns.update({name: self.text(name).categorical() for name in TEXT_FIELDS})
        else:
            lookup = np.array(list(self.models), dtype=object)
            columns = {"model_a": pd.Series(lookup[self.model_a]), "model_b": pd.Series(lookup[self.model_b]),
                       "winner": pd.Series(np.array(WINNERS, dtype=object)[self.winner], dtype=object)}
            columns.update({name: pd.Series(self.text(name).objects()) for name in TEXT_FIELDS})
        columns["tstamp"] = self.tstamp
        return pd.DataFrame(columns)
