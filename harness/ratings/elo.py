"""Online Elo: the order-dependent "live" rating, kept as a secondary column beside Bradley–Terry.

Votes are replayed oldest first (``tstamp``; votes without one keep their file order, after the timed ones).
For a vote between ``a`` and ``b`` with score ``S_a`` (1 win, 0 loss, ½ tie or both bad)::

    E_a  = 1 / (1 + base^((R_b − R_a) / scale))
    R_a += K (S_a − E_a);   R_b −= K (S_a − E_a)

Defaults ``K = 4``, ``base = 10``, ``scale = 400``, initial 1000: FastChat's ``compute_elo`` since May 2023
(``fastchat/serve/monitor/rating_systems.py``, https://github.com/lm-sys/FastChat). Unlike Bradley–Terry the
result depends on the order of the votes — the reason LMArena moved its board to Bradley–Terry — which
:func:`online_elo` makes visible rather than hides.
With ``ties="drop"`` ties and both-bad votes update nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from harness.ratings.battles import model_codes, winner_codes
from harness.ratings.bradley_terry import RatingError

Array = np.ndarray[Any, np.dtype[np.float64]]

K_FACTOR = 4.0
"""Elo points moved by a fully unexpected result (FastChat's K since 2023-05-09)."""
BASE = 10.0
SCALE = 400.0
INITIAL = 1000.0


@dataclass(frozen=True)
class EloSettings:
    """Online Elo parameters: ``k`` (Elo points), ``base`` and ``scale`` (odds ``base`` per ``scale`` points),
    ``initial`` rating, and ``ties``: ``half`` scores a tie ½, ``drop`` skips it."""

    k: float = K_FACTOR
    base: float = BASE
    scale: float = SCALE
    initial: float = INITIAL
    ties: Literal["half", "drop"] = "half"

    def __post_init__(self) -> None:
        for name in ("k", "base", "scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0) or (name == "base" and value == 1):
                raise RatingError(f"Elo {name} must be a positive finite number (base ≠ 1), not {value}")


def replay_order(battles: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Row positions in replay order: by ``tstamp`` (stable), rows without one last in their given order."""
    if "tstamp" not in battles.columns:
        return np.arange(len(battles), dtype=np.intp)
    stamps = pd.to_numeric(battles["tstamp"], errors="coerce").to_numpy(dtype=float)
    return np.lexsort((np.arange(len(battles)), np.nan_to_num(stamps, nan=np.inf))).astype(np.intp)


def _encode(battles: pd.DataFrame, models: Sequence[str] | None
            ) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any], Array]:
    names, a, b = model_codes(battles, models)
    w = winner_codes(battles)
    score = np.array([1.0, 0.0, 0.5, 0.5])[w]
    return names, a, b, score


def online_elo(battles: pd.DataFrame, settings: EloSettings | None = None, *, ordered: bool = False,
               models: Sequence[str] | None = None) -> pd.Series:
    """Online Elo rating per model (Series indexed by model name, Elo points).

    ``ordered=True`` replays the rows exactly as given instead of sorting by ``tstamp``; ``models`` adds
    models that should appear (at the initial rating) even without votes.
    """
    settings = settings or EloSettings()
    if not ordered:
        battles = battles.iloc[replay_order(battles)]
    names, a, b, score = _encode(battles, models)
    keep = a != b
    if settings.ties == "drop":
        keep &= score != 0.5
    ratings = [settings.initial] * len(names)
    k, base, scale = settings.k, settings.base, settings.scale
    for i, j, s in zip(a[keep].tolist(), b[keep].tolist(), score[keep].tolist(), strict=True):
        ri, rj = ratings[i], ratings[j]
        expected = 1.0 / (1.0 + base ** ((rj - ri) / scale))
        delta = k * (s - expected)
        ratings[i] = ri + delta
        ratings[j] = rj - delta
    return pd.Series(ratings, index=pd.Index(names, name="model"), name="elo", dtype=float)


def elo_bootstrap(battles: pd.DataFrame, rounds: int, seed: int = 0, settings: EloSettings | None = None,
                  models: Sequence[str] | None = None) -> pd.DataFrame:
    """Online Elo on ``rounds`` resamples of the votes, each replayed in random order (FastChat's
    ``compute_bootstrap_elo``): a spread that mixes sampling noise with order dependence, hence wider than
    a Bradley–Terry interval. Rows: rounds; columns: models (Elo points). Step ``t`` of every replicate
    replays vote ``rng.integers(n, size=rounds)[r]``; vectorised over rounds, sequential over votes (a
    million votes take seconds, memory stays at a few vectors of ``rounds``)."""
    if rounds < 1:
        raise RatingError(f"bootstrap needs at least one round, not {rounds}")
    settings = settings or EloSettings()
    names, a, b, score = _encode(battles, models)
    keep = a != b
    if settings.ties == "drop":
        keep &= score != 0.5
    a, b, score = a[keep], b[keep], score[keep]
    out = np.full((rounds, len(names)), settings.initial)
    if a.size:
        rng = np.random.default_rng(seed)
        rows = np.arange(rounds)
        alpha = math.log(settings.base) / settings.scale
        for _ in range(a.size):
            idx = rng.integers(0, a.size, size=rounds)
            i, j, s = a[idx], b[idx], score[idx]
            expected = 1.0 / (1.0 + np.exp(alpha * (out[rows, j] - out[rows, i])))
            delta = settings.k * (s - expected)
            out[rows, i] += delta
            out[rows, j] -= delta
    return pd.DataFrame(out, columns=pd.Index(names, name="model"))
