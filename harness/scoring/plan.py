"""What scoring one output image needs: which image and text embeddings, and which pixel comparison.

Embedding keys are content keys, shared by every run in the store: an image's SHA-256 (``SHA#crop=l,t,r,b``
for the inpainting mask crop of an output) and a text's SHA-256. The same prompt or reference used by many
outputs (or many runs) is embedded once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.providers.base import ChallengeKind
from harness.scoring.pixels import Box, MaskInfo, scale_box
from harness.scoring.prompts import sentence_chunks

SPECIAL_TOKENS = 2
"""Start- and end-of-text tokens CLIP adds around every text."""


@dataclass(frozen=True, slots=True)
class TextPlan:
    """A text to score against: its key, token count (with start/end-of-text, ``None`` when the tokenizer
    cannot count), whether CLIP sees it truncated, and its sentence chunks when it is."""

    text: str
    key: str
    tokens: int | None
    truncated: bool | None
    chunks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where an image embedding's pixels come from: a stored file, optionally cropped to ``box``."""

    path: Path
    box: Box | None = None


@dataclass(frozen=True, slots=True)
class PixelJob:
    """Inputs of the preservation metrics of one inpainting output."""

    output: Path
    source: Path
    mask: Path


@dataclass(frozen=True, slots=True)
class OutputJob:
    """One output image to score and everything its challenge kind needs."""

    attempt_id: int
    output_idx: int
    image_sha: str
    kind: ChallengeKind
    image_key: str
    prompt: TextPlan
    reference_keys: tuple[str, ...] = ()
    crop_key: str | None = None
    source_caption: TextPlan | None = None
    target_caption: TextPlan | None = None
    pixels: PixelJob | None = None
    sources: tuple[tuple[str, ImageSource], ...] = ()

    def image_keys(self) -> list[str]:
        return [key for key, _ in self.sources]

    def texts(self) -> list[TextPlan]:
        return [p for p in (self.prompt, self.source_caption, self.target_caption) if p is not None]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def crop_key(image_sha: str, box: Box) -> str:
    return f"{image_sha}#crop={box[0]},{box[1]},{box[2]},{box[3]}"


class TextPlanner:
    """Plans texts once each: token count, truncation and chunks (for a ``context_length``-token model)."""

    def __init__(self, count: Callable[[str], int | None], context_length: int) -> None:
        self._count = count
        self._context = context_length
        self._plans: dict[str, TextPlan] = {}

    def _known_count(self, text: str) -> int:
        """Token count for chunking (only called once counting has worked for the whole prompt)."""
        return self._count(text) or 0

    def plan(self, text: str) -> TextPlan:
        """The plan of ``text`` (computed on first use)."""
        found = self._plans.get(text)
        if found is not None:
            return found
        n = self._count(text)
        tokens = None if n is None else n + SPECIAL_TOKENS
        truncated = None if tokens is None else tokens > self._context
        chunks: tuple[str, ...] = ()
        if truncated:
            chunks = tuple(sentence_chunks(text, self._known_count, self._context - SPECIAL_TOKENS))
        plan = TextPlan(text, text_key(text), tokens, truncated, chunks)
        self._plans[text] = plan
        return plan


class PlanError(Exception):
    """An output cannot be scored (its challenge lacks what its kind needs); the message says why."""


def plan_output(row: Mapping[str, Any], challenge: Mapping[str, Any], image_path: Callable[[str, str], Path],
                masks: Mapping[str, MaskInfo], texts: TextPlanner) -> OutputJob:
    """The job for one row of ``outputs_frame`` of a run whose frozen challenge is ``challenge``.

    ``masks`` maps a mask's SHA-256 to its decoded :class:`MaskInfo` (needed for inpainting crops).
    """
    kind = ChallengeKind(challenge["kind"])
    variant = str(row["variant"])
    prompts = challenge.get("prompts") or {}
    if variant not in prompts:
        raise PlanError(f"challenge {challenge.get('id')!r} has no prompt for variant {variant!r}")
    sha = str(row["sha256"])
    out_path = image_path(sha, str(row["ext"]))
    sources: list[tuple[str, ImageSource]] = [(sha, ImageSource(out_path))]
    base: dict[str, Any] = {
        "attempt_id": int(row["attempt_id"]), "output_idx": int(row["idx"]), "image_sha": sha, "kind": kind,
        "image_key": sha, "prompt": texts.plan(str(prompts[variant])),
    }
    refs = list(challenge.get("references") or [])
    if kind == ChallengeKind.MULTI_TURN:
        return _final_turn_job(base, sources, challenge, variant, refs, image_path, texts)
    if kind == ChallengeKind.TEXT_TO_IMAGE:
        return OutputJob(**base, sources=tuple(sources))
    if not refs:
        raise PlanError(f"{kind.value} challenge {challenge.get('id')!r} has no reference image")
    ref_sources = [(str(r["sha256"]), ImageSource(image_path(str(r["sha256"]), str(r["ext"])))) for r in refs]
    if kind == ChallengeKind.EDIT:
        captions = challenge.get("captions")
        if captions:
            base["source_caption"] = texts.plan(str(captions["source"]))
            base["target_caption"] = texts.plan(str(captions["target"]))
        return OutputJob(**base, reference_keys=(ref_sources[0][0],), sources=(*sources, ref_sources[0]))
    if kind == ChallengeKind.COMPOSE:
        return OutputJob(**base, reference_keys=tuple(k for k, _ in ref_sources), sources=(*sources, *ref_sources))
    mask = challenge.get("mask")
    if not mask:
        raise PlanError(f"inpaint challenge {challenge.get('id')!r} has no mask")
    info = masks[str(mask["sha256"])]
    pixels = PixelJob(out_path, ref_sources[0][1].path, image_path(str(mask["sha256"]), str(mask["ext"])))
    key = None
    if info.box is not None:
        box = scale_box(info.box, (info.width, info.height), (int(row["width"]), int(row["height"])))
        key = crop_key(sha, box)
        sources.append((key, ImageSource(out_path, box)))
    return OutputJob(**base, crop_key=key, pixels=pixels, sources=tuple(sources))


def _final_turn_job(base: dict[str, Any], sources: list[tuple[str, ImageSource]], challenge: Mapping[str, Any],
                    variant: str, refs: list[Mapping[str, Any]], image_path: Callable[[str, str], Path],
                    texts: TextPlanner) -> OutputJob:
    """A conversation's output is its final turn's image: scored against that turn's instruction and, when the
    conversation started from images, against the first of them (how much of the start survived)."""
    turns = list(challenge.get("turns") or [])
    if turns:
        last = turns[-1]
        prompts = last.get("prompts") or {}
        text = prompts.get(variant) or next(iter(prompts.values()), None)
        if text:
            base = {**base, "prompt": texts.plan(str(text))}
    if not refs:
        return OutputJob(**base, sources=tuple(sources))
    first = (str(refs[0]["sha256"]), ImageSource(image_path(str(refs[0]["sha256"]), str(refs[0]["ext"]))))
    return OutputJob(**base, reference_keys=(first[0],), sources=(*sources, first))
