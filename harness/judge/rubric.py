"""The fixed, versioned rubrics a judge is asked with, and the parser of its answers.

One rubric per challenge kind. The text of a rubric never changes under its version: a changed rubric is a
new version, so cached verdicts (keyed by judge, rubric id and image hashes) are never reused across texts.
The judge is shown the request, any source images, then "Image A" and "Image B", and asked to end with a
line ``WINNER: A``, ``WINNER: B`` or ``WINNER: TIE``. The pairwise form follows the finding that pairwise
vision-language judging tracks LMArena's human ranking far better than pointwise scoring (Spearman 0.86
against 0.36, https://arxiv.org/abs/2602.06013); no judge is trusted blindly, though: GPT-4o agreed with
GenAI-Arena's human votes 49 % of the time on average (https://arxiv.org/abs/2406.04485), which is why
:mod:`harness.quality.agreement` measures every judge against the store's own voters.

An answer the parser cannot read is ``None`` — recorded as unparseable, never guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from harness.providers.base import ChallengeKind

Verdict = Literal["A", "B", "tie"]

_COMMON = (
    "You are judging two images produced for the same request. Look at both carefully.\n"
    "Request: {request}\n"
)
_ENDING = (
    "Explain briefly, then end your answer with exactly one line: WINNER: A, WINNER: B or WINNER: TIE "
    "(TIE only when neither is better)."
)


@dataclass(frozen=True)
class Rubric:
    """A rubric: ``id`` (``kind/vN``, stored with every verdict) and its text with a ``{request}`` field."""

    kind: str
    version: int
    text: str
    uses_sources: bool = False
    """The judge is also shown the challenge's reference images (edits, compositions, inpainting)."""

    @property
    def id(self) -> str:
        return f"{self.kind}/v{self.version}"

    def prompt(self, request: str) -> str:
        return self.text.format(request=request)


RUBRICS: dict[str, Rubric] = {
    ChallengeKind.TEXT_TO_IMAGE.value: Rubric(ChallengeKind.TEXT_TO_IMAGE.value, 1, _COMMON + (
        "Which image better follows the request: every element it names present, with the colours, counts "
        "and relations asked for, and no visible defects?\n") + _ENDING),
    ChallengeKind.EDIT.value: Rubric(ChallengeKind.EDIT.value, 1, _COMMON + (
        "The first image shown is the source; the request is an edit of it. Which of A and B better makes "
        "the requested change while keeping everything the request does not ask to change as it was in the "
        "source?\n") + _ENDING, uses_sources=True),
    ChallengeKind.COMPOSE.value: Rubric(ChallengeKind.COMPOSE.value, 1, _COMMON + (
        "The first images shown are the references to combine. Which of A and B better combines them as "
        "requested, keeping each reference's subject recognisable?\n") + _ENDING, uses_sources=True),
    ChallengeKind.INPAINT.value: Rubric(ChallengeKind.INPAINT.value, 1, _COMMON + (
        "The first image shown is the source; the request repaints one region of it. Which of A and B "
        "better fills that region as requested while leaving the rest of the source untouched?\n") + _ENDING,
        uses_sources=True),
    ChallengeKind.MULTI_TURN.value: Rubric(ChallengeKind.MULTI_TURN.value, 1, _COMMON + (
        "Both images are the final result of a conversation whose last instruction is the request. Which "
        "better satisfies it?\n") + _ENDING),
}
"""The rubric of each challenge kind (the current version of each)."""


def rubric_for(kind: str | None) -> Rubric:
    """The rubric for a challenge kind (text-to-image when the kind is unknown)."""
    return RUBRICS.get(kind or "", RUBRICS[ChallengeKind.TEXT_TO_IMAGE.value])


_WINNER = re.compile(r"WINNER\s*[:=]\s*\**\s*(A|B|TIE)\b", re.IGNORECASE)


def parse_verdict(answer: str | None) -> Verdict | None:
    """The verdict of an answer: its last ``WINNER: A|B|TIE`` line, or a JSON object's ``winner`` field when
    the whole answer is one; ``None`` when neither is there (or the answer names two different winners in
    ``WINNER`` lines, which is no verdict)."""
    if not answer:
        return None
    found = [m.upper() for m in _WINNER.findall(answer)]
    if found:
        if len(set(found)) > 1:
            return None
        return _verdict(found[-1])
    try:
        body = json.loads(answer)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("winner"), str):
        return _verdict(body["winner"].strip().upper())
    return None


def _verdict(word: str) -> Verdict | None:
    return {"A": "A", "B": "B", "TIE": "tie"}.get(word)  # type: ignore[return-value]
