"""Reading a comparison's two sides from the store: attempts, optional scores and challenge hashes."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import pandas as pd

from harness.errors import ConfigError
from harness.gate.evaluate import Side
from harness.gate.selectors import Selector
from harness.stats.requests import INPUT_COLUMNS, OPTIONAL_COLUMNS
from harness.stats.source import stored_attempt_columns
from harness.store import Store
from harness.store import runs as run_store

SCORE_COLUMNS = ("attempt_id", "challenge_id", "variant", "metric", "value")


def read_scores(store: Store, run_ids: Sequence[str]) -> pd.DataFrame | None:
    """Scores of ``run_ids`` from ``harness.store.scores.scores_frame`` when that stage exists, else ``None``."""
    try:
        module = importlib.import_module("harness.store.scores")
    except ModuleNotFoundError:
        return None
    reader = getattr(module, "scores_frame", None)
    if reader is None:
        return None
    frame = reader(store, list(run_ids))
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return None
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"scores in {store.path} lack column(s) {', '.join(missing)}")
    return frame


def load_side(store: Store, run_id: str, selector: Selector, name: str) -> Side:
    """The attempts of ``run_id`` (or the selector's ``run=``) matching ``selector``; ``name`` is the option."""
    info = run_store.get_run(store, selector.run or run_id)
    present = set(stored_attempt_columns(store))
    optional = [c for c in OPTIONAL_COLUMNS if c in present]  # time to image, for goodput
    wanted = [c for c in dict.fromkeys([*INPUT_COLUMNS, "variant", "challenge_id", *optional])]
    frame = run_store.attempts_frame(store, [info.id], columns=wanted)
    chosen = selector.apply(frame)
    where = f"run {info.id}" + (f" [{selector.text}]" if selector.text else "")
    if chosen.empty:
        targets = ", ".join(sorted(frame["target"].unique())) if not frame.empty else "none"
        variants = ", ".join(sorted(frame["variant"].unique())) if not frame.empty else "none"
        raise ConfigError(f"{name} {selector.text or info.id!r} matched no attempts in run {info.id} "
                          f"(its targets: {targets}; variants: {variants})")
    scores = read_scores(store, [info.id])
    hashes = {c["id"]: c.get("content_hash", "") for c in run_store.run_challenges(store, info.id)}
    return Side(where, chosen, scores, hashes)
