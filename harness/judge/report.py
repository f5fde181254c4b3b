"""What a judge's stored verdicts say: as battles (a distinct voter class), its position bias, and its
self-preference (how it rates outputs of its own model family against others, beside how the store's
voters rated the same match-ups)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pandas as pd

from harness.judge.target import family_of
from harness.stats.intervals import wilson
from harness.store import judgements as jstore
from harness.store import runs as run_store
from harness.store.core import Store
from harness.store.votes import battles_frame

JUDGE_SCHEMA_VERSION: Final = 1
"""Version of the JSON ``harness judge RUN --json`` (the summary of what was asked) and ``harness judge report
--json`` (position bias and self-preference) print."""
JUDGE_SOURCE = "judge"
"""The voter class judge verdicts carry when used as votes (never ``arena``, ``simulated`` or ``import``)."""
DECISIVE = ("first", "second", "tie")


def final_verdicts(store: Store, run_ids: Sequence[str], judge: str | None = None) -> pd.DataFrame:
    """The last try of every question asked about two outputs of ``run_ids`` (by any run: the cache is
    shared), one row per (judge, rubric, first, second) — columns of :class:`~harness.store.judgements.Judgement`."""
    outputs = run_store.outputs_frame(store, list(run_ids))
    shas = set(outputs["sha256"].astype(str))
    frame = jstore.judgements_frame(store, judge=judge)
    if frame.empty:
        return frame
    frame = frame[frame["first_sha"].isin(shas) & frame["second_sha"].isin(shas)]
    return frame.sort_values("try_no").groupby(["judge", "rubric", "first_sha", "second_sha"], sort=False).tail(1)


def as_battles(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts in battle format (``model_a`` shown first), ``source`` = :data:`JUDGE_SOURCE` and ``voter`` =
    the judge; unparseable and failed questions are left out."""
    rows = verdicts[verdicts["verdict"].isin(DECISIVE)]
    return pd.DataFrame({
        "model_a": rows["first_model"].astype(str).to_numpy(), "model_b": rows["second_model"].astype(str).to_numpy(),
        "winner": rows["verdict"].map({"first": "model_a", "second": "model_b", "tie": "tie"}).to_numpy(),
        "challenge": rows["challenge_id"].to_numpy(), "category": rows["category"].to_numpy(),
        "kind": rows["kind"].to_numpy(), "source": JUDGE_SOURCE, "voter": rows["judge"].to_numpy(),
        "left_sha": rows["first_sha"].to_numpy(), "right_sha": rows["second_sha"].to_numpy(),
    })


def _share(successes: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"n": 0, "share": None, "low": None, "high": None}
    iv = wilson(successes, n)
    return {"n": n, "share": iv.estimate, "low": iv.low, "high": iv.high}


def position_bias(verdicts: pd.DataFrame) -> dict[str, Any]:
    """How often the image shown first wins among decisive verdicts (0.5 is unbiased, Wilson interval), and
    how often the two orders of one pair name the same output (``consistent``)."""
    decided = verdicts[verdicts["verdict"].isin(("first", "second"))]
    first = _share(int((decided["verdict"] == "first").sum()), len(decided))
    keyed = {(r.first_sha, r.second_sha): r.verdict for r in verdicts.itertuples() if r.verdict in DECISIVE}
    both = [(v, keyed[(b, a)]) for (a, b), v in keyed.items() if a < b and (b, a) in keyed]
    flip = {"first": "second", "second": "first", "tie": "tie"}
    consistent = sum(1 for v, w in both if flip[v] == w)
    return {"first_wins": first, "consistent": _share(consistent, len(both)),
            "ties": int((verdicts["verdict"] == "tie").sum()),
            "unparseable": int((verdicts["verdict"] == "unparseable").sum()),
            "errors": int((verdicts["verdict"] == "error").sum())}


def _own_share(frame: pd.DataFrame, family: str) -> tuple[int, int, int]:
    """(own wins, decisive votes, ties) over battles with exactly one side of ``family``."""
    fa = frame["model_a"].map(family_of) == family
    fb = frame["model_b"].map(family_of) == family
    mixed = frame[fa != fb]
    own_a = (mixed["model_a"].map(family_of) == family)
    wins = int(((mixed["winner"] == "model_a") & own_a).sum() + ((mixed["winner"] == "model_b") & ~own_a).sum())
    decisive = int(mixed["winner"].isin(("model_a", "model_b")).sum())
    return wins, decisive, int(len(mixed) - decisive)


def self_preference(store: Store, run_ids: Sequence[str], judge: str) -> dict[str, Any]:
    """The judge's share of decisive verdicts won by its own family's outputs against other families, and the
    same share among the store's votes on the same runs (other voter classes), so the gap shows how much the
    judge favours its own. ``None`` shares when there is nothing to compare."""
    model = judge.rpartition("@")[0]
    family = family_of(model)
    verdicts = final_verdicts(store, run_ids, judge)
    battles = as_battles(verdicts) if not verdicts.empty else pd.DataFrame(columns=["model_a", "model_b", "winner"])
    j_wins, j_n, j_ties = _own_share(battles, family)
    votes = battles_frame(store, run_ids=list(run_ids))
    v_wins, v_n, v_ties = _own_share(votes, family) if not votes.empty else (0, 0, 0)
    judge_share, voter_share = _share(j_wins, j_n), _share(v_wins, v_n)
    gap = (judge_share["share"] - voter_share["share"]
           if judge_share["share"] is not None and voter_share["share"] is not None else None)
    return {"judge": judge, "family": family, "judge_own_wins": judge_share, "judge_ties": j_ties,
            "voters_own_wins": voter_share, "voter_ties": v_ties, "gap": gap}
