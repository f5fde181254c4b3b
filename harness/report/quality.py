"""The report's quality section, typed for the page: each automatic signal's agreement with the votes, each
judge's position bias and consistency, and the style-controlled board beside the plain one.

The figures are :func:`harness.quality.section.quality_section`'s (schema version 1), never recomputed here;
this module only reads that dict and writes each figure as the page shows it ("71 % [66–76]": the share and
its 95 % interval in percent), or the reason it was withheld.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.quality.section import QUALITY_SECTION_SCHEMA_VERSION


class QualityViewError(HarnessError):
    """The quality section's dict is of a version this page cannot read."""


@dataclass(frozen=True)
class AgreementRow:
    """One signal (a CLIP metric, a pixel reading, a judge): its overall agreement with the decisive votes
    (``share``, or ``withheld`` with the reason), the votes compared and the ties left out, whether the board it
    implies ranks models as the votes' board does (``board``: Spearman's ρ, or why not), and the same share per
    category and challenge kind (``groups``: (name, text))."""

    signal: str
    family: str
    share: str | None
    withheld: str | None
    compared: int
    signal_ties: int
    vote_ties: int
    board: str
    groups: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class JudgeRow:
    """One judge: how often the image shown first wins among its decisive verdicts (50 % is unbiased), how
    often the two orders of one pair name the same output, and its ties, unparseable answers and errors."""

    judge: str
    first_wins: str
    consistent: str
    ties: int
    unparseable: int
    errors: int


@dataclass(frozen=True)
class StyleRow:
    """One model on the plain board and on the style-controlled one (Elo scale, 95 % intervals)."""

    model: str
    plain: str
    style: str


@dataclass(frozen=True)
class CoefficientRow:
    """One style covariate: its coefficient (log-odds per SD of the feature's difference) with its interval,
    ``+0.04 [-0.09, +0.17]`` (a comma, not a dash, between signed ends)."""

    covariate: str
    beta: str


@dataclass(frozen=True)
class QualityView:
    """What the quality section shows; ``style_withheld`` is set when no style-controlled board could be
    fitted (then ``style`` and ``coefficients`` are empty)."""

    votes: int
    method: str
    agreement: list[AgreementRow]
    judges: list[JudgeRow]
    style: list[StyleRow]
    coefficients: list[CoefficientRow]
    style_withheld: str | None = None
    style_votes: int | None = None


def share_text(cell: Mapping[str, Any]) -> str | None:
    """``71 % [66–76]`` from a cell with ``share``/``low``/``high`` (fractions); ``None`` when it has no share."""
    share, low, high = cell.get("share"), cell.get("low"), cell.get("high")
    if share is None:
        return None
    if low is None or high is None:
        return f"{100 * float(share):.0f} %"
    return f"{100 * float(share):.0f} % [{100 * float(low):.0f}–{100 * float(high):.0f}]"


def _cell_text(cell: Mapping[str, Any]) -> str:
    return share_text(cell) or str(cell.get("withheld") or "no votes")


def _board_text(board: Mapping[str, Any]) -> str:
    if "spearman" in board:
        return f"ρ = {float(board['spearman']):.2f} over {int(board['models'])} models"
    return str(board.get("withheld") or "not fitted")


def _rating(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "—"
    return f"{float(entry['rating']):.0f} [{float(entry['low']):.0f}–{float(entry['high']):.0f}]"


def _agreement(entry: Mapping[str, Any]) -> AgreementRow:
    overall = entry["overall"]
    groups = [(f"{column.removeprefix('by_')} {name}", _cell_text(cell))
              for column in ("by_category", "by_kind") for name, cell in entry.get(column, {}).items()]
    return AgreementRow(str(entry["signal"]), str(entry.get("family", "")), share_text(overall),
                        None if "share" in overall else str(overall.get("withheld") or "no votes"),
                        int(overall.get("compared", 0)), int(overall.get("signal_ties", 0)),
                        int(overall.get("vote_ties", 0)), _board_text(entry.get("board", {})), groups)


def _judge(name: str, bias: Mapping[str, Any]) -> JudgeRow:
    first, consistent = bias["first_wins"], bias["consistent"]
    return JudgeRow(name, share_text(first) or "no decisive verdict",
                    share_text(consistent) or "no pair asked in both orders", int(bias.get("ties", 0)),
                    int(bias.get("unparseable", 0)), int(bias.get("errors", 0)))


def quality_view(section: Mapping[str, Any]) -> QualityView:
    """The page's view of ``section`` (:func:`harness.quality.section.quality_section`'s dict)."""
    version = section.get("schema_version")
    if version != QUALITY_SECTION_SCHEMA_VERSION:
        raise QualityViewError(f"quality section schema_version {version!r}: this report reads version "
                               f"{QUALITY_SECTION_SCHEMA_VERSION}")
    agreement = section["agreement"]
    style = section.get("style", {})
    judges = [_judge(name, bias) for name, bias in sorted(section.get("judges", {}).items())]
    view = QualityView(int(agreement.get("votes", 0)), str(agreement.get("method", "")),
                       [_agreement(e) for e in agreement.get("signals", [])], judges, [], [])
    if "withheld" in style or "style" not in style:
        return QualityView(view.votes, view.method, view.agreement, judges, [], [],
                           str(style.get("withheld") or "no style-controlled board"))
    styled, plain = style["style"], style.get("plain", {})
    plain_by = {str(r["model"]): r for r in plain.get("ratings", [])}
    rows = [StyleRow(str(r["model"]), _rating(plain_by.get(str(r["model"]))), _rating(r))
            for r in styled.get("ratings", [])]
    coefficients = [CoefficientRow(str(c["covariate"]),
                                   f"{float(c['beta']):+.2f} [{float(c['low']):+.2f}, {float(c['high']):+.2f}]")
                    for c in styled.get("coefficients", [])]
    return QualityView(view.votes, view.method, view.agreement, judges, rows, coefficients,
                       style_votes=int(styled.get("n_votes", 0)) or None)
