"""How often each automatic signal agrees with the store's pairwise votes — measured on your own voters.

Published evidence says no automatic metric can be trusted blindly (GPT-4o as a judge agreed with
GenAI-Arena's human votes 49 % of the time on average, https://arxiv.org/abs/2406.04485; VIEScore reaches
Spearman 0.4 where humans reach 0.45 and "struggles in editing tasks", https://tiger-ai-lab.github.io/VIEScore/),
so this module measures each signal (:mod:`harness.quality.signals`) against the votes the store holds.

For each vote whose two outputs the signal has an opinion on:

* a decisive vote (left or right) and a decisive signal **agree** or **disagree**; the share agreeing is
  reported with a Wilson interval (Wilson 1927, as :func:`harness.stats.intervals.wilson`);
* a decisive vote where the signal ties is counted as ``signal_ties`` and left out of the share; since a
  cautious signal (one that ties whenever unsure) would look better for it, ``share_ties_half`` also gives
  the share over every decisive vote with the signal's ties counted as half an agreement (no interval);
* a tie or "both bad" vote is counted as ``vote_ties`` and left out (no side to agree with).

Overall, per category and per challenge kind. A cell with fewer than ``min_votes`` compared votes is
**withheld** with the reason (as the statistics withhold a percentile from too few samples). The board a
signal implies — Bradley–Terry fitted to the signal's own preferences on the voted pairs — is compared with
the votes' board by Spearman rank correlation over the models both rank (withheld below three models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd
from scipy.stats import spearmanr

from harness.quality.signals import Signal
from harness.ratings.battles import aggregate
from harness.ratings.bradley_terry import RatingError, fit
from harness.stats.intervals import CONFIDENCE, wilson
from harness.store.core import Store

AGREEMENT_SCHEMA_VERSION: Final = 1
"""Version of the agreement report's JSON (``harness judge agreement --json``, :func:`agreement`)."""
MIN_VOTES = 30
"""Compared votes below which a share is withheld: under 30 a Wilson interval is wider than ±18 points."""
MIN_MODELS = 3
"""Models two boards must share for a rank correlation."""


def votes_frame(store: Store, run_ids: Sequence[str], sources: Sequence[str] | None = None) -> pd.DataFrame:
    """The store's votes on outputs of ``run_ids`` with both image hashes (columns ``left_sha``,
    ``right_sha``, ``outcome``, ``left_model``, ``right_model``, ``category``, ``kind``, ``source``)."""
    where = [f"run_id IN ({', '.join('?' * len(run_ids))})", "left_sha IS NOT NULL", "right_sha IS NOT NULL"]
    args: list[Any] = list(run_ids)
    if sources:
        where.append(f"source IN ({', '.join('?' * len(sources))})")
        args.extend(sources)
    cur = store.conn.execute(
        "SELECT left_sha, right_sha, outcome, left_model, right_model, category, kind, source FROM votes"
        f" WHERE {' AND '.join(where)} ORDER BY voted_at, id", args)
    return pd.DataFrame.from_records(cur.fetchall(), columns=["left_sha", "right_sha", "outcome", "left_model",
                                                              "right_model", "category", "kind", "source"])


@dataclass(frozen=True)
class Cell:
    """Agreement in one slice: ``agree`` of ``compared`` decisive votes (the signal decisive too)."""

    compared: int
    agree: int
    signal_ties: int
    vote_ties: int
    no_opinion: int

    def as_dict(self, min_votes: int) -> dict[str, Any]:
        base: dict[str, Any] = {"compared": self.compared, "agree": self.agree, "signal_ties": self.signal_ties,
                                "vote_ties": self.vote_ties, "no_opinion": self.no_opinion}
        if self.compared < min_votes:
            base["withheld"] = (f"only {self.compared} vote(s) to compare (at least {min_votes} needed)")
            return base
        iv = wilson(self.agree, self.compared)
        half = (self.agree + self.signal_ties / 2) / (self.compared + self.signal_ties)
        return {**base, "share": iv.estimate, "low": iv.low, "high": iv.high, "share_ties_half": half}


def _cell(outcomes: pd.Series, prefs: pd.Series) -> Cell:
    decisive = outcomes.isin(("left", "right"))
    known = prefs.notna()
    want = outcomes.map({"left": 1, "right": -1})
    compared = decisive & known & (prefs != 0)
    agree = int((compared & (prefs == want)).sum())
    return Cell(compared=int(compared.sum()), agree=agree, signal_ties=int((decisive & known & (prefs == 0)).sum()),
                vote_ties=int((~decisive & known).sum()), no_opinion=int((~known).sum()))


def _board(battles: pd.DataFrame) -> dict[str, float] | None:
    try:
        result = fit(aggregate(battles))
    except (RatingError, ValueError):
        return None
    return {m: float(r) for m, r in zip(result.models, result.ratings, strict=True)}


def _boards(votes: pd.DataFrame, prefs: pd.Series, min_votes: int) -> dict[str, Any]:
    if int(prefs.notna().sum()) < min_votes:
        return {"withheld": f"the signal has an opinion on {int(prefs.notna().sum())} voted pair(s) "
                            f"(at least {min_votes} needed)"}
    human = pd.DataFrame({"model_a": votes["left_model"], "model_b": votes["right_model"],
                          "winner": votes["outcome"].map({"left": "model_a", "right": "model_b"}).fillna("tie")})
    known = prefs.notna()
    signal = pd.DataFrame({"model_a": votes.loc[known, "left_model"], "model_b": votes.loc[known, "right_model"],
                           "winner": prefs[known].map({1: "model_a", -1: "model_b", 0: "tie"})})
    a, b = _board(human), (_board(signal) if len(signal) else None)
    if a is None or b is None:
        return {"withheld": "a board cannot be fitted (too few votes or models)"}
    common = sorted(set(a) & set(b))
    if len(common) < MIN_MODELS:
        return {"withheld": f"the boards share {len(common)} model(s) (at least {MIN_MODELS} needed)"}
    rho = spearmanr([a[m] for m in common], [b[m] for m in common]).statistic
    return {"spearman": float(rho), "models": len(common),
            "votes_order": sorted(common, key=lambda m: -a[m]), "signal_order": sorted(common, key=lambda m: -b[m])}


def agreement(votes: pd.DataFrame, signals: Sequence[Signal], *, min_votes: int = MIN_VOTES,
              runs: Sequence[str] = ()) -> dict[str, Any]:
    """The agreement report (JSON-ready, ``schema_version`` 1) of every signal with ``votes``."""
    report: dict[str, Any] = {
        "schema_version": AGREEMENT_SCHEMA_VERSION, "runs": list(runs), "votes": len(votes), "min_votes": min_votes,
        "confidence": CONFIDENCE,
        "method": ("share of decisive votes the signal agrees with, among votes where the signal is decisive; "
                   "signal ties and tied votes are counted and left out; Wilson interval"),
        "signals": [],
    }
    for signal in signals:
        prefs = pd.Series([signal.prefer(str(a), str(b)) for a, b in zip(votes["left_sha"], votes["right_sha"],
                                                                           strict=True)], index=votes.index,
                          dtype="float64")
        entry: dict[str, Any] = {"signal": signal.name, "family": signal.family,
                                 "overall": _cell(votes["outcome"], prefs).as_dict(min_votes)}
        for column in ("category", "kind"):
            entry[f"by_{column}"] = {
                str(key): _cell(group["outcome"], prefs[group.index]).as_dict(min_votes)
                for key, group in votes.groupby(votes[column].fillna("(none)"), sort=True)}
        entry["board"] = _boards(votes, prefs, min_votes) if len(votes) else {"withheld": "no votes"}
        report["signals"].append(entry)
    return report


def trusted(report: dict[str, Any], signal: str, level: float, *, category: str | None = None) -> bool:
    """Whether ``signal``'s agreement (overall, or in ``category``) is measured and its interval's lower end
    is at least ``level``: what a gate asks before using a metric or judge as a quality check."""
    for entry in report["signals"]:
        if entry["signal"] == signal:
            cell = entry["overall"] if category is None else entry["by_category"].get(category, {})
            return "low" in cell and float(cell["low"]) >= level
    return False
