"""Voter quality: flag voters whose votes agree with the consensus no better than chance, or who vote
faster than a person can look at two pictures; report what removing them would change — never remove
anyone silently.

* **Consensus**: the Bradley–Terry board fitted to every vote (ties half). A voter's decisive vote agrees
  when it picks the model the board rates higher. A voter with at least ``min_votes`` decisive votes is
  flagged ``at_chance`` when the Wilson interval of their agreement reaches down to one half *and* stays
  below the agreement of all votes together (``typical_agreement``): consistent with coin-flipping and
  distinguishable from the typical voter. (Where voters judge pictures rather than model names, even a
  careful voter agrees with the board's favourite only part of the time, so one half alone would flag the
  careful ones who voted little.) Fewer votes are reported as too few to judge, not flagged.
* **Speed**: a voter whose median decision time is under ``min_decision_ms`` (default 1 500 ms) is flagged
  ``too_fast``. Looking at two images and choosing takes people seconds (the simulated panel's median is 6 s).
* **Impact**: the board refitted without the flagged voters, beside the full one, per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from harness.ratings.battles import aggregate
from harness.ratings.bradley_terry import RatingError, fit
from harness.stats.intervals import wilson
from harness.store.core import Store

VOTER_QUALITY_SCHEMA_VERSION: Final = 1
"""Version of the JSON ``harness judge voters --json`` prints."""
MIN_VOTES = 20
MIN_DECISION_MS = 1500.0


def voter_votes(store: Store, run_ids: Sequence[str], sources: Sequence[str] | None = None) -> pd.DataFrame:
    """Votes of ``run_ids`` with their voter and decision time."""
    where = [f"run_id IN ({', '.join('?' * len(run_ids))})"]
    args: list[Any] = list(run_ids)
    if sources:
        where.append(f"source IN ({', '.join('?' * len(sources))})")
        args.extend(sources)
    cur = store.conn.execute("SELECT voter, left_model, right_model, outcome, decision_ms FROM votes"
                             f" WHERE {' AND '.join(where)} ORDER BY voted_at, id", args)
    return pd.DataFrame.from_records(cur.fetchall(), columns=["voter", "left_model", "right_model", "outcome",
                                                              "decision_ms"])


def _board(votes: pd.DataFrame) -> dict[str, float]:
    battles = pd.DataFrame({"model_a": votes["left_model"], "model_b": votes["right_model"],
                            "winner": votes["outcome"].map({"left": "model_a", "right": "model_b"}).fillna("tie")})
    try:
        result = fit(aggregate(battles))
    except (RatingError, ValueError):
        return {}
    return {m: float(r) for m, r in zip(result.models, result.ratings, strict=True)}


def voter_quality(votes: pd.DataFrame, *, min_votes: int = MIN_VOTES,
                  min_decision_ms: float = MIN_DECISION_MS) -> dict[str, Any]:
    """The voter-quality report of ``votes`` (columns of :func:`voter_votes`)."""
    board = _board(votes)
    decisive = votes[votes["outcome"].isin(("left", "right"))].copy()
    left_r = decisive["left_model"].map(board)
    right_r = decisive["right_model"].map(board)
    favourite_left = left_r > right_r
    decisive["agrees"] = np.where(decisive["outcome"] == "left", favourite_left, ~favourite_left).astype(float)
    decisive.loc[left_r == right_r, "agrees"] = np.nan
    known = decisive["agrees"].dropna()
    typical = float(known.mean()) if len(known) else 1.0
    voters: list[dict[str, Any]] = []
    for voter, rows in votes.groupby(votes["voter"].fillna("(unknown)"), sort=True):
        mine = decisive[decisive["voter"].fillna("(unknown)") == voter]["agrees"].dropna()
        entry: dict[str, Any] = {"voter": str(voter), "votes": len(rows), "decisive": len(mine), "flags": []}
        if len(mine) >= min_votes:
            iv = wilson(int(mine.sum()), len(mine))
            entry.update(agreement=iv.estimate, low=iv.low, high=iv.high)
            if iv.low <= 0.5 and iv.high < typical:
                entry["flags"].append("at_chance")
        else:
            entry["note"] = f"only {len(mine)} decisive vote(s) (at least {min_votes} needed to judge agreement)"
        times = pd.to_numeric(rows["decision_ms"], errors="coerce").dropna()
        if len(times):
            entry["median_decision_ms"] = float(times.median())
            if entry["median_decision_ms"] < min_decision_ms:
                entry["flags"].append("too_fast")
        voters.append(entry)
    flagged = {v["voter"] for v in voters if v["flags"]}
    kept = votes[~votes["voter"].fillna("(unknown)").isin(flagged)]
    without = _board(kept) if len(kept) else {}
    return {
        "schema_version": VOTER_QUALITY_SCHEMA_VERSION, "votes": len(votes), "min_votes": min_votes,
        "min_decision_ms": min_decision_ms, "typical_agreement": typical, "flagged": sorted(flagged),
        "flagged_votes": int(len(votes) - len(kept)), "voters": voters,
        "impact": [{"model": m, "rating": r, "without_flagged": without.get(m),
                    "change": (without[m] - r) if m in without else None}
                   for m, r in sorted(board.items(), key=lambda kv: -kv[1])],
        "note": "flagged voters are reported, never removed: rate with and without them to decide",
    }
