"""Which quality metrics the gate may use: those your own voters agree with.

No automatic image metric can be trusted blindly: GPT-4o as a judge agreed with GenAI-Arena's human votes 49 %
of the time on average (Jiang et al., "GenAI Arena", 2024, https://arxiv.org/abs/2406.04485), and CLIPScore
rewards change even where an edit should preserve. With ``min_agreement`` set (gate file or
``--min-agreement``), a score check counts only when that metric's agreement with the human votes on the
compared runs' outputs (:mod:`harness.quality.agreement`: share of decisive votes it agrees with, 95 % Wilson
interval) has its *lower* end at or above the level. Any other metric is reported as not used, with the reason
(too few overlapping votes, or agreement too low), and is left out of the Bonferroni count, so an untrusted
metric can neither fail nor pass a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.store import Store

HUMAN_SOURCES = ("arena", "import")
"""Votes that count as human: cast in the arena, or imported from a battle file."""


def signal_name(metric: str, scorer: str | None) -> str:
    """The agreement report's name of a stored score series (``clip:<scorer>:<metric>``)."""
    return f"clip:{scorer}:{metric}"


def judge_signal(judge: str) -> str:
    """The agreement report's name of a judge's verdicts (``judge:<MODEL@PROVIDER>``)."""
    return f"judge:{judge}"


def distrust_reasons(report: Mapping[str, Any], level: float) -> dict[str, str | None]:
    """Per signal of an agreement report: ``None`` when its overall agreement's lower end is at least
    ``level``, else why the gate will not use it."""
    reasons: dict[str, str | None] = {}
    for entry in report["signals"]:
        cell = entry["overall"]
        if "low" not in cell:
            reasons[entry["signal"]] = f"its agreement with the votes is not measured: {cell.get('withheld')}"
        elif float(cell["low"]) < level:
            reasons[entry["signal"]] = (f"voters agree with it {cell['share']:.0%} [{cell['low']:.0%}–"
                                        f"{cell['high']:.0%}] of the time, below the gate's {level:.0%}")
        else:
            reasons[entry["signal"]] = None
    return reasons


def metric_trust(store: Store, run_ids: Sequence[str], level: float,
                 sources: Sequence[str] | None = HUMAN_SOURCES) -> dict[str, str | None]:
    """:func:`distrust_reasons` for every signal the runs have, measured on their votes from ``sources``
    (``None``: every vote, simulated panels included — for sandbox demonstrations)."""
    from harness.quality.agreement import agreement, votes_frame
    from harness.quality.signals import all_signals

    report = agreement(votes_frame(store, run_ids, sources), all_signals(store, run_ids), runs=run_ids)
    return distrust_reasons(report, level)
