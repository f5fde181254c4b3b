"""Deterministic synthetic images for the sandbox providers, carrying quality a checker can read back.

The same (model, prompt, seed, size, references) always gives the same bytes; different simulated models
look visibly different (each has its own palette and motif), so the arena and CLIP stages have something to
tell apart. Edits and compositions derive from their reference images (resized to the output, tinted in the
model's palette, with the model's motif over them); inpainting repaints only the masked region.

**Quality the pictures carry.** A prompt names elements (:func:`elements`: its content words, in order, at
most :data:`MAX_ELEMENTS`; a colour word colours the element after it). A picture renders each element as a
*mark* — a two-coloured patch in that element's slot (:func:`slot_box`), the element's colour (the one the
prompt names, else the slot's own) on the left and the slot's code colour on the right — or leaves the slot
alone. A model renders a share of the elements close to :func:`render_probability` of its true strength
(:data:`DEFAULT_STRENGTHS`; :func:`marks_for` says which), so a stronger model's pictures show more of what
was asked for. An edit also *disturbs* what it should keep: the model's palette and motif are laid over the reference with an opacity
(:func:`disturbance`) that falls with strength. :func:`read` measures both from pixels alone (which marks
are there; how far the output strayed from the reference outside the marks), and :func:`expected_quality`
is the truth the simulation knows, so estimators built on the reading can be tested against it.

Rendering is CPU work, and a simulated provider's latency must not depend on this machine's CPU: the cache
keys a request's image by model, size, format and references plus one of :data:`VARIANTS` variants picked by
the prompt and seed, and by the marks the drawing shows. The marks depend on a prompt only through its
number of elements, the colours it names and one of :data:`MARK_BUCKETS` buckets (:func:`marks_for`), so a
model makes a handful of drawings per size, each drawn and encoded once (in a worker thread, off the
server's event loop), and every later request reuses its pixels; the unmarked drawing is kept too, so new
marks cost an encoding only. Each
answer still gets bytes of its own — a metadata record naming its model, prompt and seed (a PNG ``tEXt``
chunk, a JPEG comment, a WebP chunk) is spliced into the cached file, which costs a copy, not an encoding —
so two requests never share an image file (the store keeps files by content hash) while their pixels come
from the same drawing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
import re
import struct
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from threading import Lock
from types import MappingProxyType
from typing import Any

import numpy as np
import pybase64
from PIL import Image, ImageDraw, ImageOps

PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "gemini-2.5": ((250, 204, 21), (234, 88, 12), (30, 64, 175), (15, 23, 42)),
    "gemini-3.1": ((56, 189, 248), (14, 165, 233), (250, 250, 250), (3, 105, 161)),
    "gemini-3-pro": ((168, 85, 247), (236, 72, 153), (253, 224, 71), (30, 27, 75)),
    "gpt-image-1.5": ((16, 185, 129), (5, 150, 105), (236, 253, 245), (6, 78, 59)),
    "gpt-image": ((244, 244, 245), (113, 113, 122), (24, 24, 27), (220, 38, 38)),
    "flux": ((249, 115, 22), (251, 191, 36), (124, 45, 18), (255, 247, 237)),
    "sd-3.5": ((132, 204, 22), (77, 124, 15), (190, 242, 100), (26, 46, 5)),
    "stable-diffusion": ((132, 204, 22), (77, 124, 15), (190, 242, 100), (26, 46, 5)),
    "nano-banana-pro": ((168, 85, 247), (236, 72, 153), (253, 224, 71), (30, 27, 75)),
    "nano-banana-2": ((56, 189, 248), (14, 165, 233), (250, 250, 250), (3, 105, 161)),
    "nano-banana": ((250, 204, 21), (234, 88, 12), (30, 64, 175), (15, 23, 42)),
}
MOTIFS = ("circles", "stripes", "grid", "rings", "diagonals", "blobs")

DEFAULT_STRENGTHS: Mapping[str, float] = MappingProxyType({
    "gemini-3-pro-image-preview": 1235.0,
    "gemini-3.1-flash-image-preview": 1190.0,
    "gpt-image-1.5": 1170.0,
    "gemini-2.5-flash-image": 1150.0,
    "gpt-image-1": 1120.0,
    "flux-dev": 1040.0,
    "sd-3.5-large": 940.0,
})
"""True strengths (Elo points) of the sandbox's simulated models. Sources, all LMArena text-to-image
board snapshots as committed to ``data/leaderboard-image.json`` of https://github.com/lmarena/arena-catalog:

* ``gemini-3-pro-image-preview`` 1235 — "nano-banana-pro" 1234.33 on 2025-12-11;
* ``gemini-2.5-flash-image`` 1150 — "nano-banana" 1145.14 (2025-11-05) and 1155.87 (2025-12-11);
* ``gpt-image-1`` 1120 — 1124.93 (2025-11-05) and 1116.59 (2025-12-11);
* ``sd-3.5-large`` 940 — "stable-diffusion-v35-large" 937.26 (2025-11-05) and 940.70 (2025-12-11).

Placed by assumption, for lack of a published figure in our sources: ``gemini-3.1-flash-image-preview``
1190 (Nano Banana 2, between Pro and the 2.5 model, as Google positions it), ``gpt-image-1.5`` 1170
(the successor of gpt-image-1; Lumenfall's arena, https://lumenfall.ai/models/google/gemini-2.5-flash-image,
shows it beating Nano Banana in its top matchups)
and ``flux-dev`` 1040 (FLUX.1 [dev], the open-weights sibling, below the 1073.80 of flux-1-kontext-max).
"""

FAMILIES: tuple[tuple[str, str], ...] = (
    ("gemini-3-pro", "gemini-3-pro-image-preview"), ("nano-banana-pro", "gemini-3-pro-image-preview"),
    ("gemini-3.1", "gemini-3.1-flash-image-preview"), ("nano-banana-2", "gemini-3.1-flash-image-preview"),
    ("gpt-image-1.5", "gpt-image-1.5"), ("gemini-2.5", "gemini-2.5-flash-image"),
    ("nano-banana", "gemini-2.5-flash-image"), ("gpt-image", "gpt-image-1"), ("flux", "flux-dev"),
    ("sd-3.5", "sd-3.5-large"), ("stable-diffusion", "sd-3.5-large"),
)
"""Which simulated model a provider's model id is (first substring that matches): ``fal-ai/flux/dev`` and
``black-forest-labs/flux-dev`` are both ``flux-dev``."""

UNKNOWN_STRENGTH = 1000.0
"""Strength of a model id no family matches."""

CACHE_SIZE = 256
DRAWING_CACHE_SIZE = 32
"""Unmarked drawings kept (decoded, at most :data:`WORK_PIXELS` pixels each: about 1.2 MB)."""
VARIANTS = 2
"""Distinct images the cache draws per model, size, format, references and marks; a request's prompt and
seed pick one (deterministically). Two keep a model's outputs from being all alike while a short run still
serves many requests from the cache; every miss is CPU that a busy machine may not finish before the
simulated delay ends."""
WORK_PIXELS = 640 * 640
"""Larger images are drawn at half size and enlarged (nearest neighbour): the sandbox's rendering CPU, not
the simulated provider, must not set the latency of a scaled run (a 1024² photo edit: 111 ms -> ~45 ms)."""

MAX_ELEMENTS = 6
"""Elements read from a prompt (the slots a picture has: 3 columns by 2 rows)."""
MARK_BUCKETS = 2
"""Independent sets of mark draws per model, element count and variant (see :func:`marks_for`)."""
COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "red": (220, 38, 38), "orange": (249, 115, 22), "yellow": (250, 204, 21), "gold": (202, 138, 4),
    "golden": (202, 138, 4), "green": (22, 163, 74), "teal": (13, 148, 136), "cyan": (6, 182, 212),
    "blue": (37, 99, 235), "navy": (30, 58, 138), "purple": (126, 34, 206), "violet": (139, 92, 246),
    "pink": (236, 72, 153), "magenta": (192, 38, 211), "brown": (120, 53, 15), "black": (12, 12, 12),
    "white": (248, 248, 248), "grey": (115, 115, 115), "gray": (115, 115, 115), "silver": (176, 176, 176),
})
"""Colour words a prompt may use, with the colour a mark shows for them."""
CODES: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128),
)
"""Well separated colours. Slot ``i``'s mark shows ``CODES[i]`` on its right half (or the first of the later
ones far enough from the left half's colour) and, when the prompt names no colour for the element,
``CODES[i + 6]`` on its left half."""
_STOPWORD_TEXT = """
a an the and or of in on at to with without from by for into onto over under above below beside behind
near next its it this that these those is are was were be been being as his her their our your my some any
each every very make makes made making add adds adding remove change turn replace keep keeping put give
show shows showing set use same while only more less than one two three four five six image photo picture
style scene view which who whose where when then there here them they he she we you not but also just like
all both other into out off up down about after before between through during same such own should would
can could will must may might does did done has have had having onto upon across along around against
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that are never elements (function words and edit verbs)."""
TOLERANCE = 60.0
"""Largest distance (Euclidean, 0–255 RGB) between a half-mark's mean colour and the expected colour for
:func:`read` to count the mark: wide enough for JPEG and WebP at the sandbox's qualities."""

CONTRAST = 150.0
"""Least distance between a mark's two colours (an element's code colour is the first, from its slot's
on, this far from its own colour), and :func:`read` wants the halves at least half this far apart: a
patch of background in one colour never passes for a mark."""

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Look:
    """A simulated model's visual identity."""

    palette: tuple[tuple[int, int, int], ...]
    motif: str


@dataclass(frozen=True)
class Element:
    """One thing a prompt asks for: its word, the colour its mark shows (named or its slot's) and its slot's
    code colour."""

    word: str
    colour: tuple[int, int, int]
    code: tuple[int, int, int]


@dataclass(frozen=True)
class Reading:
    """What :func:`read` sees in a picture: which of the prompt's elements are rendered (in order) and, for
    an edit or composition, ``disturbance`` — the mean absolute difference (0–1) from the reference outside
    the marks' slots (``None`` without references or with a mask)."""

    rendered: tuple[bool, ...]
    disturbance: float | None = None

    @property
    def found(self) -> int:
        return sum(self.rendered)

    @property
    def total(self) -> int:
        return len(self.rendered)

    @property
    def share(self) -> float | None:
        """Share of the prompt's elements rendered (``None`` when the prompt names none)."""
        return self.found / self.total if self.rendered else None

    @property
    def quality(self) -> float:
        """One figure, higher is better: the share rendered (1 when the prompt names nothing) less twice
        the disturbance (an edit that repaints what it should keep loses what it added)."""
        share = 1.0 if self.share is None else self.share
        return share - 2.0 * (self.disturbance or 0.0)


def look_for(model: str) -> Look:
    """Palette and motif for a model id (known families by substring, anything else by hash)."""
    digest = int(hashlib.sha256(model.encode()).hexdigest(), 16)
    for key in sorted(PALETTES, key=len, reverse=True):
        if key in model:
            return Look(PALETTES[key], MOTIFS[list(PALETTES).index(key) % len(MOTIFS)])
    rng = random.Random(digest)
    palette = tuple((rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(4))
    return Look(palette, MOTIFS[digest % len(MOTIFS)])


def simulated_model(model: str) -> str | None:
    """The simulated model (a key of :data:`DEFAULT_STRENGTHS`) a provider's model id is, if any."""
    if model in DEFAULT_STRENGTHS:
        return model
    return next((name for key, name in FAMILIES if key in model), None)


def strength_of(model: str) -> float:
    """True strength (Elo points) behind a provider's model id (:data:`UNKNOWN_STRENGTH` if unknown)."""
    name = simulated_model(model)
    return float(DEFAULT_STRENGTHS[name]) if name is not None else UNKNOWN_STRENGTH


def render_probability(model: str) -> float:
    """Chance that ``model`` renders one element of a prompt: ``1 / (1 + 10^(-(S − 1000)/250))`` of its
    strength ``S`` (0.90 for 1235 points, 0.75 for 1120, 0.37 for 940)."""
    return float(1.0 / (1.0 + 10.0 ** (-(strength_of(model) - 1000.0) / 250.0)))


def disturbance(model: str) -> float:
    """Opacity (0–1) with which ``model`` lays its palette and motif over the image an edit should keep:
    ``0.1 + 0.6 · (1 − p)`` for render probability ``p``."""
    return 0.1 + 0.6 * (1.0 - render_probability(model))


def expected_quality(model: str, edit: bool = False) -> float:
    """The expected share of elements rendered (``p``), and for an edit the opacity of its disturbance
    subtracted: the truth :class:`Reading` estimates (its disturbance also depends on the reference)."""
    p = render_probability(model)
    return p - disturbance(model) if edit else p


def elements(prompt: str) -> tuple[Element, ...]:
    """The prompt's elements: content words (not :data:`STOPWORDS`, not colour words, three letters or
    more) in order of first use, at most :data:`MAX_ELEMENTS`; a colour word right before one colours it."""
    out: list[Element] = []
    seen: set[str] = set()
    colour: tuple[int, int, int] | None = None
    for word in _WORD.findall(prompt.lower()):
        if word in COLOURS:
            colour = COLOURS[word]
            continue
        if len(word) < 3 or word in STOPWORDS:
            colour = None
            continue
        if word not in seen:
            seen.add(word)
            i = len(out)
            own = colour if colour is not None else CODES[i + MAX_ELEMENTS]
            code = next(c for k in range(len(CODES)) if math.dist(c := CODES[(i + k) % len(CODES)], own) >= CONTRAST)
            out.append(Element(word, own, code))
            if len(out) == MAX_ELEMENTS:
                break
        colour = None
    return tuple(out)


Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` as fractions of the picture's width and height."""


WHOLE: Box = (0.0, 0.0, 1.0, 1.0)


def slot_box(index: int, stage: Box = WHOLE) -> Box:
    """Where element ``index``'s mark goes: cells of 3 columns by 2 rows over ``stage`` (the whole picture,
    or an inpainting mask's white box), the mark a centred 60 % × 50 % of its cell."""
    col, row = index % 3, index // 3
    left, top, right, bottom = stage
    cw, ch = (right - left) / 3, (bottom - top) / 2
    x0, y0 = left + col * cw + 0.2 * cw, top + row * ch + 0.25 * ch
    return (x0, y0, x0 + 0.6 * cw, y0 + 0.5 * ch)


def _pixels(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    return (round(box[0] * w), round(box[1] * h), max(round(box[2] * w), round(box[0] * w) + 1),
            max(round(box[3] * h), round(box[1] * h) + 1))


def mask_stage(mask: bytes | None) -> Box:
    """The white box of an inpainting mask as fractions of its size (the whole picture without a mask or
    with nothing white)."""
    if mask is None:
        return (0.0, 0.0, 1.0, 1.0)
    with Image.open(io.BytesIO(mask)) as m:
        grey = m.convert("L")
        box = grey.point(lambda v: 255 if v >= 128 else 0).getbbox()
        w, h = grey.size
    if box is None:
        return (0.0, 0.0, 1.0, 1.0)
    return (box[0] / w, box[1] / h, box[2] / w, box[3] / h)


def marks_for(model: str, prompt: str, seed: int | None) -> tuple[bool, ...]:
    """Which of ``prompt``'s elements ``model`` renders: ``⌊p·n + u⌋`` of the ``n`` elements (``u`` uniform, so
    the expected share is exactly the :func:`render_probability` ``p`` and a picture never strays far from
    it), chosen at random; seeded by the model, the number of elements, one of :data:`MARK_BUCKETS` buckets
    the elements' words fall in, and ``seed``. The buckets bound how many distinct drawings a model makes (so the cache still
    serves most requests); within a bucket, prompts with as many elements get the same draws."""
    found = elements(prompt)
    bucket = zlib.crc32("\x00".join(e.word for e in found).encode()) % MARK_BUCKETS
    rng = random.Random(hashlib.sha256(f"{model}\x00{len(found)}\x00{bucket}\x00{seed}".encode()).digest())
    p = render_probability(model)
    count = min(len(found), math.floor(p * len(found) + rng.random()))
    chosen = set(rng.sample(range(len(found)), count))
    return tuple(i in chosen for i in range(len(found)))


def _draw_marks(image: Image.Image, found: tuple[Element, ...], shown: tuple[bool, ...], stage: Box) -> None:
    draw = ImageDraw.Draw(image)
    for i, (element, show) in enumerate(zip(found, shown, strict=True)):
        if not show:
            continue
        left, top, right, bottom = _pixels(slot_box(i, stage), image.size)
        middle = (left + right) // 2
        draw.rectangle((left, top, middle - 1, bottom - 1), fill=element.colour)
        draw.rectangle((middle, top, right - 1, bottom - 1), fill=element.code)


def _background(look: Look, size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    top, bottom = look.palette[0], look.palette[3]
    gradient = Image.linear_gradient("L").resize((w, h))
    if rng.random() < 0.5:
        gradient = gradient.transpose(Image.Transpose.ROTATE_90).resize((w, h))
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)


def _motif(draw: ImageDraw.ImageDraw, look: Look, size: tuple[int, int], rng: random.Random) -> None:
    w, h = size
    colors = look.palette
    count = 6 + rng.randrange(10)
    unit = max(4, min(w, h) // 12)
    for i in range(count):
        color = colors[(i + 1) % len(colors)]
        x, y = rng.randrange(w), rng.randrange(h)
        r = unit * (1 + rng.random() * 2)
        if look.motif == "circles":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
        elif look.motif == "stripes":
            draw.rectangle((0, y, w, y + unit // 2), fill=color)
        elif look.motif == "grid":
            draw.rectangle((x, y, x + 2 * r, y + 2 * r), outline=color, width=max(2, unit // 6))
        elif look.motif == "rings":
            draw.ellipse((x - r, y - r, x + r, y + r), outline=color, width=max(2, unit // 4))
        elif look.motif == "diagonals":
            draw.line((x - r * 3, y - r * 3, x + r * 3, y + r * 3), fill=color, width=max(2, unit // 3))
        else:
            draw.polygon([(x + rng.uniform(-r, r), y + rng.uniform(-r, r)) for _ in range(5)], fill=color)


def reference_base(references: tuple[bytes, ...], size: tuple[int, int]) -> Image.Image:
    """What an edit or composition starts from at ``size``: the first reference fitted to it, later ones
    (up to three) as insets along the bottom."""
    with Image.open(io.BytesIO(references[0])) as ref:
        base = ImageOps.fit(ref.convert("RGB"), size)
    if len(references) > 1:
        w, h = size
        for i, extra in enumerate(references[1:4], start=1):
            with Image.open(io.BytesIO(extra)) as im:
                inset = ImageOps.fit(im.convert("RGB"), (w // 3, h // 3))
            base.paste(inset, ((i - 1) * w // 3, h - h // 3))
    return base


def _work_size(size: tuple[int, int]) -> tuple[int, int]:
    if size[0] * size[1] > WORK_PIXELS:
        return (max(1, size[0] // 2), max(1, size[1] // 2))
    return size


def draw(model: str, prompt: str, seed: int | None, size: tuple[int, int], references: tuple[bytes, ...] = (),
         mask: bytes | None = None) -> Image.Image:
    """The unmarked picture at its working size (:data:`WORK_PIXELS`): background or reference, the
    model's tint and motif (over an edit with the model's :func:`disturbance` as opacity)."""
    digest = hashlib.sha256(f"{model}\x00{prompt}\x00{seed}".encode()).digest()
    rng = random.Random(digest)
    look = look_for(model)
    size = _work_size(size)
    if references:
        base = reference_base(references, size)
        canvas = Image.blend(base, Image.new("RGB", size, look.palette[1]), 0.25)
    else:
        canvas = _background(look, size, rng)
    overlay = canvas.copy()
    _motif(ImageDraw.Draw(overlay), look, size, rng)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as m:
            region = m.convert("L").resize(size)
        return Image.composite(overlay, canvas if not references else base, region)
    return Image.blend(base, overlay, disturbance(model)) if references else overlay


def finish(drawing: Image.Image, full: tuple[int, int], found: tuple[Element, ...], shown: tuple[bool, ...],
           stage: Box, fmt: str) -> bytes:
    """``drawing`` with its marks, at the requested size, encoded (``fmt``: PNG, JPEG or WEBP)."""
    result = drawing.copy() if any(shown) else drawing
    _draw_marks(result, found, shown, stage)
    if result.size != full:
        result = result.resize(full, Image.Resampling.NEAREST)
    out = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG"):
        result.save(out, format="JPEG", quality=85)
    elif fmt.upper() == "WEBP":
        result.save(out, format="WEBP", quality=80, method=0)
    else:
        result.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def render(model: str, prompt: str, seed: int | None, size: tuple[int, int],
           references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG",
           elements_of: str | None = None, drawing: Image.Image | None = None) -> bytes:
    """Render and encode one image (``fmt``: PNG, JPEG or WEBP); its marks are those of ``elements_of``
    (default: ``prompt``) as :func:`marks_for` draws them for ``seed``. ``drawing``: the unmarked picture
    (:func:`draw` of the same inputs) when the caller kept it."""
    source = prompt if elements_of is None else elements_of
    if drawing is None:
        drawing = draw(model, prompt, seed, size, references, mask)
    return finish(drawing, size, elements(source), marks_for(model, source, seed), mask_stage(mask), fmt)


def read(image: bytes | Image.Image, prompt: str, references: tuple[bytes, ...] = (),
         mask: bytes | None = None) -> Reading:
    """Measure a picture from its pixels alone: which of ``prompt``'s elements have their mark in their
    slot (both halves' mean colours within :data:`TOLERANCE` of the expected ones, read from the middle
    of each half; for an inpainting, slots inside the mask's box or, where a provider could only send the
    mask as one more image, over the whole picture), and for an edit or composition without a mask how much it disturbed the reference
    outside the slots. Works for any picture, sandbox-drawn or not (a real one simply shows no marks)."""
    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as im:
            im.draft("RGB", (READ_SIDE, READ_SIDE))
            full = im.size
            picture = _reduced(im.convert("RGB"), full)
    else:
        full = image.size
        picture = _reduced(image.convert("RGB"), full)
    pixels = np.asarray(picture, dtype=np.float32)
    stage = mask_stage(mask)
    found = elements(prompt)
    stages = [stage] if stage == WHOLE else [stage, WHOLE]
    rendered = [any(_has_mark(pixels, element, slot_box(i, at), picture.size) for at in stages)
                for i, element in enumerate(found)]
    moved = None
    if references and mask is None:
        base = _base_pixels(references, full, picture.size)
        keep = np.ones(pixels.shape[:2], dtype=bool)
        for i in range(len(found)):
            left, top, right, bottom = _pixels(slot_box(i, stage), picture.size)
            keep[top:bottom, left:right] = False
        moved = float(np.abs(pixels[keep] - base[keep]).mean() / 255.0) if keep.any() else 0.0
    return Reading(tuple(rendered), moved)


READ_SIDE = 320
""":func:`read` looks at a picture shrunk (box filter) to about this many pixels a side: marks stay tens of
pixels wide, and reading a run's pictures costs a decode each, not full-size arithmetic."""


def _reduced(picture: Image.Image, full: tuple[int, int]) -> Image.Image:
    """``picture`` (possibly already shrunk by a JPEG draft) box-filtered to the reading size of a ``full``
    picture: the same size for the output and its reference, whatever decoder shortcuts were taken."""
    factor = max(1, math.ceil(max(full) / READ_SIDE))
    target = (max(1, full[0] // factor), max(1, full[1] // factor))
    return picture if picture.size == target else picture.resize(target, Image.Resampling.BOX)


@lru_cache(maxsize=32)
def _base_pixels(references: tuple[bytes, ...], full: tuple[int, int], size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """The reference an edit starts from, at the full output size then shrunk like the output (cached: every
    output of one edit challenge compares with the same one)."""
    base = np.asarray(_reduced(reference_base(references, full), full), dtype=np.float32)
    base.flags.writeable = False
    if base.shape[:2] != (size[1], size[0]):
        raise ValueError(f"reference shrunk to {base.shape[1]}x{base.shape[0]}, picture to {size[0]}x{size[1]}")
    return base


def _has_mark(pixels: np.ndarray[Any, Any], element: Element, box: Box, size: tuple[int, int]) -> bool:
    left, top, right, bottom = _pixels(box, size)
    middle = (left + right) // 2
    one, other = _mean(pixels, (left, top, middle, bottom)), _mean(pixels, (middle, top, right, bottom))
    return (one is not None and other is not None and math.dist(one, other) >= CONTRAST / 2
            and math.dist(one, element.colour) <= TOLERANCE and math.dist(other, element.code) <= TOLERANCE)


def _mean(pixels: np.ndarray[Any, Any], box: tuple[int, int, int, int]) -> list[float] | None:
    """Mean colour of the middle half of ``box`` (``None`` when the box holds no pixel)."""
    left, top, right, bottom = box
    dx, dy = (right - left) // 4, (bottom - top) // 4
    inner = pixels[top + dy:max(bottom - dy, top + dy + 1), left + dx:max(right - dx, left + dx + 1)]
    if inner.size == 0:
        return None
    return [float(v) for v in inner.reshape(-1, 3).mean(axis=0)]


def variant(prompt: str, seed: int | None) -> int:
    """Which of the :data:`VARIANTS` cached images a prompt and seed get (consecutive seeds, as in a request
    for several images, get different ones)."""
    return (zlib.crc32(prompt.encode()) + (seed or 0)) % VARIANTS


_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def mark(data: bytes, fmt: str, note: bytes) -> bytes:
    """``data`` with ``note`` spliced in as metadata its decoders ignore (pixels unchanged); unknown layouts
    are returned as they are."""
    kind = fmt.upper()
    if kind == "PNG" and data.endswith(_PNG_IEND):
        body = b"harness\x00" + note
        chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
        return data[:-len(_PNG_IEND)] + chunk + _PNG_IEND
    if kind in ("JPEG", "JPG") and data.startswith(b"\xff\xd8") and len(note) < 60_000:
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + data[2:]
    if kind == "WEBP" and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        body = note + (b"\x00" if len(note) % 2 else b"")
        chunk = b"HRNS" + struct.pack("<I", len(body)) + body
        size = struct.unpack("<I", data[4:8])[0] + len(chunk)
        return data[:4] + struct.pack("<I", size) + data[8:] + chunk
    return data


class ImageCache:
    """A thread-safe LRU of drawn images, keyed by everything that determines the pixels (the prompt and seed
    only through :func:`variant` and the marks they ask for), plus a smaller LRU of unmarked drawings; each
    request gets the drawing marked with its own inputs (:func:`mark`)."""

    def __init__(self, size: int = CACHE_SIZE, drawings: int = DRAWING_CACHE_SIZE) -> None:
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._drawings: OrderedDict[tuple[object, ...], Image.Image] = OrderedDict()
        self._size = size
        self._drawings_size = drawings
        self._lock = Lock()

    @staticmethod
    def _drawing_key(model: str, prompt: str, seed: int | None, size: tuple[int, int],
                     references: tuple[bytes, ...], mask: bytes | None) -> tuple[object, ...]:
        return (model, variant(prompt, seed), size, tuple(hash(r) for r in references),
                hash(mask) if mask is not None else None)

    @classmethod
    def _key(cls, model: str, prompt: str, seed: int | None, size: tuple[int, int], references: tuple[bytes, ...],
             mask: bytes | None, fmt: str) -> tuple[object, ...]:
        shown = marks_for(model, prompt, variant(prompt, seed))
        looks = tuple((e.colour, e.code) for e, s in zip(elements(prompt), shown, strict=True) if s)
        slots = tuple(i for i, s in enumerate(shown) if s)
        return (*cls._drawing_key(model, prompt, seed, size, references, mask), looks, slots, fmt.upper())

    def cached(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
               references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG") -> bytes | None:
        """The drawing (unmarked) if it was drawn before, else ``None`` (never renders)."""
        key = self._key(model, prompt, seed, size, references, mask, fmt)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def _drawing(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
                 references: tuple[bytes, ...], mask: bytes | None) -> Image.Image:
        key = self._drawing_key(model, prompt, seed, size, references, mask)
        with self._lock:
            hit = self._drawings.get(key)
            if hit is not None:
                self._drawings.move_to_end(key)
                return hit
        v = variant(prompt, seed)
        drawn = draw(model, f"variant {v}", v, size, references, mask)
        with self._lock:
            hit = self._drawings.setdefault(key, drawn)
            while len(self._drawings) > self._drawings_size:
                self._drawings.popitem(last=False)
        return hit

    def get_or_render(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
                      references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG") -> bytes:
        """The request's own image: the cached drawing (drawn now on a miss) marked with its inputs."""
        hit = self.cached(model, prompt, seed, size, references, mask, fmt)
        if hit is None:
            v = variant(prompt, seed)
            encoded = render(model, f"variant {v}", v, size, references, mask, fmt, elements_of=prompt,
                             drawing=self._drawing(model, prompt, seed, size, references, mask))
            key = self._key(model, prompt, seed, size, references, mask, fmt)
            with self._lock:
                hit = self._items.setdefault(key, encoded)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        note = hashlib.sha256(f"{model}\x00{prompt}\x00{seed}\x00{size}".encode()
                              + b"".join(hashlib.sha256(r).digest() for r in references)).hexdigest()[:32]
        return mark(hit, fmt, f"sandbox {note}".encode())

    async def render_async(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
                           references: tuple[bytes, ...] = (), mask: bytes | None = None,
                           fmt: str = "PNG") -> bytes:
        """The request's image; a drawing not yet cached is made in a worker thread so the server's event loop
        is never blocked."""
        if self.cached(model, prompt, seed, size, references, mask, fmt) is not None:
            return self.get_or_render(model, prompt, seed, size, references, mask, fmt)
        return await asyncio.to_thread(self.get_or_render, model, prompt, seed, size, references, mask, fmt)

    @staticmethod
    def b64(data: bytes) -> str:
        """``data`` as base64 text (SIMD-encoded: about a millisecond per megabyte, a copy's cost)."""
        return pybase64.b64encode(data).decode("ascii")
