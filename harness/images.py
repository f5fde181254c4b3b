"""Validation of returned images: decodable, the expected count, within the pixel limit, and whether their
size is the one asked for.

Validation happens after the provider's last byte, off the provider's clock (its time is the attempt's
``client_ms``). Decoding is CPU work, so images over :data:`THREAD_THRESHOLD` bytes decode in a worker thread
and never block the event loop. Hashing for the image store is not validation: the store writer's thread does it.

Size conformance is a measure, not a failure: an answer with the expected number of decodable images
succeeds whatever its size, and :class:`SizeCheck` records what was asked and whether every image matches
(``strict`` turns a mismatch into a ``bad_output`` failure with ``provider_code`` ``size_mismatch``).
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from harness.providers.base import ErrorKind, OutputImage, ProviderError

THREAD_THRESHOLD = 256 * 1024
FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "AVIF": "avif"}
DEFAULT_MAX_PIXELS = 8192 * 8192
"""Four times the largest output a provider documents (Gemini 3 Pro Image at 4K, 4096x4096); see
:class:`harness.timing.ResponseLimits`."""
ASPECT_TOLERANCE = 0.01
"""Relative difference of width/height below which an image has the requested aspect ratio."""

_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """A decodable image with its real format."""

    data: bytes
    ext: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class SizeAsked:
    """What size a request asked for: ``label`` is ``"WxH"`` for a pixel size, ``"W:H"`` for an aspect ratio.
    ``pixels`` is the exact size expected (the request's own ``WxH``, or the size the provider documents for
    the requested ratio and tier), ``ratio`` the width/height asked."""

    label: str
    pixels: tuple[int, int] | None
    ratio: float

    def matches(self, width: int, height: int) -> bool:
        """Exactly the expected pixels, or, where only a ratio is known, the ratio within 1 %."""
        if self.pixels is not None:
            return (width, height) == self.pixels
        return height > 0 and abs(width / height - self.ratio) <= ASPECT_TOLERANCE * self.ratio


def size_asked(size: str | None, aspect_ratio: str | None, expected: tuple[int, int] | None) -> SizeAsked | None:
    """The size a request asked for, from its ``size`` (``"1536x1024"``; a tier such as ``"2K"`` says no
    shape), its ``aspect_ratio`` (``"16:9"``) and the adapter's ``expected_size`` for those parameters.
    A ratio is recorded as asked (the provider's documented pixels for it, e.g. Google's 1344x768 for 16:9,
    are what it must match); ``None`` when the request left the size to the provider and nothing is known."""
    if size and (m := _WXH.match(size)):
        w, h = int(m.group(1)), int(m.group(2))
        if w > 0 and h > 0:
            return SizeAsked(f"{w}x{h}", (w, h), w / h)
    if aspect_ratio and (r := _RATIO.match(aspect_ratio)):
        w_r, h_r = float(r.group(1)), float(r.group(2))
        if w_r > 0 and h_r > 0:
            return SizeAsked(aspect_ratio.strip(), expected, w_r / h_r)
    if expected is not None and expected[0] > 0 and expected[1] > 0:
        return SizeAsked(f"{expected[0]}x{expected[1]}", expected, expected[0] / expected[1])
    return None


@dataclass(frozen=True, slots=True)
class SizeCheck:
    """An attempt's size conformance: what was asked (``None``: nothing) and whether every image matches."""

    requested: str | None
    as_asked: bool | None


def check_image(image: OutputImage, index: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Decode one image fully; ``bad_output`` when it is not an image (HTML error page, truncated file …),
    and ``bad_output``/``image_too_large`` when its header declares more than ``max_pixels`` pixels, found
    before any pixel is decoded (Pillow's open reads the header only)."""
    try:
        with Image.open(io.BytesIO(image.data)) as img:
            fmt = img.format or ""
            width, height = img.size
            if width * height > max_pixels:
                raise _too_large(index, width, height, max_pixels)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {index} is too large to decode ({exc})",
                            provider_code="image_too_large") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        head = image.data[:40]
        raise ProviderError(ErrorKind.BAD_OUTPUT,
                            f"image {index} is not a decodable image ({type(exc).__name__}; starts {head!r})") from exc
    if fmt not in FORMAT_EXT:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {index} has unsupported format {fmt or 'unknown'}")
    return CheckedImage(image.data, FORMAT_EXT[fmt], width, height)


def _too_large(index: int, width: int, height: int, max_pixels: int) -> ProviderError:
    return ProviderError(ErrorKind.BAD_OUTPUT,
                         f"image {index} is {width}x{height}, over the {max_pixels} pixel limit (ResponseLimits)",
                         provider_code="image_too_large")


def check_images(images: Sequence[OutputImage], expected_count: int, asked: SizeAsked | None = None, *,
                 strict: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[CheckedImage], SizeCheck]:
    """Validate count and decodability of a result's images and check their size against ``asked``."""
    if len(images) < expected_count:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"expected {expected_count} image(s), got {len(images)}")
    checked = [check_image(img, i, max_pixels) for i, img in enumerate(images[:expected_count])]
    if asked is None:
        return checked, SizeCheck(None, None)
    misfits = [(i, c) for i, c in enumerate(checked) if not asked.matches(c.width, c.height)]
    if misfits and strict:
        i, c = misfits[0]
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {i} is {c.width}x{c.height}, asked {asked.label}"
                            + (f" ({asked.pixels[0]}x{asked.pixels[1]})" if asked.pixels and ":" in asked.label
                               else ""), provider_code="size_mismatch")
    return checked, SizeCheck(asked.label, not misfits)


async def check_images_async(images: Sequence[OutputImage], expected_count: int, asked: SizeAsked | None = None,
                             *, strict: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
                             ) -> tuple[list[CheckedImage], SizeCheck]:
    """:func:`check_images`, in a worker thread when the images are large."""
    if sum(len(i.data) for i in images) > THREAD_THRESHOLD:
        return await asyncio.to_thread(check_images, images, expected_count, asked, strict=strict,
                                       max_pixels=max_pixels)
    return check_images(images, expected_count, asked, strict=strict, max_pixels=max_pixels)
