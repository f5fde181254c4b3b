"""Image decoding for scoring: RGB loading, inpainting masks, mask crops and pixel preservation.

These functions do blocking decode work and run in the scoring pipeline's worker threads (Pillow releases
the GIL while it decodes and resizes).

Mask convention: a single-channel image, white (>= 128 after conversion to grey) marks the region to
repaint, the same size as ``references[0]``. Outputs may come back at another size; the mask is never
resampled:

* **preservation** (L1, PSNR outside the mask): the output is resized to the source's size (bicubic, a plain
  resize that stretches when the aspect ratios differ), then compared pixel by pixel where the mask is black;
* **mask crop**: the mask's bounding box is scaled to the output's size (edges rounded outwards) and that
  box of the output is cut out for CLIP-T.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.scoring.metrics import preservation

MASK_THRESHOLD = 128
"""Grey level from which a mask pixel counts as "repaint" (white)."""

Box = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in pixels, right and bottom exclusive (Pillow's crop convention)."""


@dataclass(frozen=True, slots=True)
class MaskInfo:
    """A mask's size and the bounding box of its white region (``None`` when nothing is white)."""

    width: int
    height: int
    box: Box | None


def load_rgb(path: Path) -> Image.Image:
    """Decode an image file fully, as RGB (an RGB file's decoded image is returned as it is, not copied)."""
    img = Image.open(io.BytesIO(path.read_bytes()))
    img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


def _mask_array(path: Path) -> np.ndarray[Any, Any]:
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) >= MASK_THRESHOLD


def read_mask(path: Path) -> MaskInfo:
    """The mask's size and white bounding box."""
    white = _mask_array(path)
    height, width = white.shape
    rows, cols = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
    if rows.size == 0:
        return MaskInfo(width, height, None)
    return MaskInfo(width, height, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def scale_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    """``box`` in a ``source``-sized image mapped onto a ``target``-sized one (``(width, height)``),
    rounded outwards so the scaled box covers the whole region and is never empty."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    left, top = math.floor(box[0] * sx), math.floor(box[1] * sy)
    right, bottom = math.ceil(box[2] * sx), math.ceil(box[3] * sy)
    left, top = min(max(left, 0), target[0] - 1), min(max(top, 0), target[1] - 1)
    return left, top, max(min(right, target[0]), left + 1), max(min(bottom, target[1]), top + 1)


def crop(path: Path, box: Box) -> Image.Image:
    """The ``box`` region of the image at ``path``, in RGB."""
    return load_rgb(path).crop(box)


def preservation_outside_mask(output: Path, source: Path, mask: Path) -> dict[str, float] | None:
    """L1 and PSNR of the output against the source where the mask is black (see :func:`preservation`).

    ``None`` when the mask is white everywhere. Raises ``ValueError`` when mask and source differ in size.
    """
    src = load_rgb(source)
    keep = ~_mask_array(mask)
    if keep.shape != (src.height, src.width):
        raise ValueError(f"mask is {keep.shape[1]}x{keep.shape[0]} but its source image is {src.width}x{src.height}")
    out = load_rgb(output)
    if out.size != src.size:
        out = out.resize(src.size, Image.Resampling.BICUBIC)
    as_unit = np.float32(1.0 / 255.0)
    return preservation(np.asarray(out, dtype=np.float32) * as_unit, np.asarray(src, dtype=np.float32) * as_unit,
                        keep)
