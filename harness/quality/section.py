"""One JSON-ready summary of a run's quality signals, for a report section: each signal's agreement with
the votes, the style-controlled board beside the plain one, and each judge's position bias."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from harness.judge.report import final_verdicts, position_bias
from harness.quality.agreement import agreement, votes_frame
from harness.quality.covariates import style_report
from harness.quality.signals import all_signals
from harness.ratings.style import StyleError
from harness.store.core import Store

QUALITY_SECTION_SCHEMA_VERSION: Final = 1
"""Version of :func:`quality_section`'s dict (a report section's input)."""


def quality_section(store: Store, run_ids: Sequence[str]) -> dict[str, Any] | None:
    """``None`` when the runs have no votes; else ``agreement`` (:func:`harness.quality.agreement.agreement`),
    ``style`` (:func:`harness.quality.covariates.style_report`, or ``{"withheld": reason}``) and ``judges``
    (judge -> :func:`harness.judge.report.position_bias`)."""
    ids = list(run_ids)
    votes = votes_frame(store, ids)
    if votes.empty:
        return None
    try:
        style: dict[str, Any] = style_report(store, votes, ids)
    except StyleError as exc:
        style = {"withheld": str(exc)}
    verdicts = final_verdicts(store, ids)
    judges = ({str(j): position_bias(rows) for j, rows in verdicts.groupby("judge", sort=True)}
              if not verdicts.empty else {})
    return {"schema_version": QUALITY_SECTION_SCHEMA_VERSION, "runs": ids,
            "agreement": agreement(votes, all_signals(store, ids), runs=ids), "style": style, "judges": judges}
