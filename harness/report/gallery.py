"""What the gallery's filters offer and how its tiles are paged.

Every tile is in the page (it reads without JavaScript); ``report.js`` filters tiles by target, challenge and
outcome and shows :data:`GALLERY_PAGE_SIZE` challenges at a time. Hidden tiles' thumbnails are never
fetched (``loading="lazy"`` images in hidden elements are not loaded), so the first view loads one page.
An error tile shows the error class and the start of the message; the whole message opens on demand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.outcomes import TILE_OUTCOMES
from harness.report.collect import GalleryItem

GALLERY_PAGE_SIZE = 8
"""Challenge variants per gallery page."""
PREVIEW_CHARS = 90
"""Characters of an error message a tile shows before "whole message"."""


@dataclass(frozen=True)
class GalleryFilters:
    """Choices of the gallery's filters, each with its tile count: ``targets`` (page labels), ``challenges``
    (id, title), ``outcomes``."""

    targets: list[tuple[str, int]]
    challenges: list[tuple[str, str, int]]
    outcomes: list[tuple[str, int]]


def gallery_filters(items: Sequence[GalleryItem]) -> GalleryFilters:
    targets: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    challenges: dict[str, tuple[str, int]] = {}
    for item in items:
        title, count = challenges.get(item.challenge_id, (item.title, 0))
        challenges[item.challenge_id] = (title, count + len(item.outputs))
        for out in item.outputs:
            targets[out.label or out.target] += 1
            outcomes[out.outcome] += 1
    order: dict[str, int] = {outcome: i for i, outcome in enumerate(TILE_OUTCOMES)}
    return GalleryFilters(list(targets.items()), [(c, t, n) for c, (t, n) in challenges.items()],
                          sorted(outcomes.items(), key=lambda kv: order.get(kv[0], 9)))


def preview(message: str | None, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """The start of an error message for its tile and whether there is more to show."""
    text = " ".join((message or "").split())
    if len(text) <= limit:
        return text, False
    return text[: limit - 1].rstrip() + "…", True
