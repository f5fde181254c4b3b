"""Validation of returned images: decodable, the expected count and size.

Validation is part of the timed region (success means a usable image is in hand). Decoding is CPU work,
so images over :data:`THREAD_THRESHOLD` bytes decode in a worker thread and never block the event loop.
Hashing for the image store is not validation: the store writer's thread does it (see ``runner.StoreWriter``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from harness.providers.base import ErrorKind, OutputImage, ProviderError

THREAD_THRESHOLD = 256 * 1024
FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "AVIF": "avif"}
Image.MAX_IMAGE_PIXELS = 8192 * 8192


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """A decodable image with its real format."""

    data: bytes
    ext: str
    width: int
    height: int


def check_image(image: OutputImage, index: int) -> CheckedImage:
    """Fully decode one image; ``bad_output`` when it is not an image (HTML error page, truncated file …)."""
    try:
        with Image.open(io.BytesIO(image.data)) as img:
            fmt = img.format or ""
            img.load()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        head = image.data[:40]
        raise ProviderError(ErrorKind.BAD_OUTPUT,
                            f"image {index} is not a decodable image ({type(exc).__name__}; starts {head!r})") from exc
    if fmt not in FORMAT_EXT:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {index} has unsupported format {fmt or 'unknown'}")
    return CheckedImage(image.data, FORMAT_EXT[fmt], width, height)


def check_images(images: Sequence[OutputImage], expected_count: int,
                 expected_size: tuple[int, int] | None) -> list[CheckedImage]:
    """Validate count, decodability and size of a result's images."""
    if len(images) < expected_count:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"expected {expected_count} image(s), got {len(images)}")
    checked = [check_image(img, i) for i, img in enumerate(images[:expected_count])]
    if expected_size is not None:
        for i, c in enumerate(checked):
            if (c.width, c.height) != expected_size:
                raise ProviderError(
                    ErrorKind.BAD_OUTPUT,
                    f"image {i} is {c.width}x{c.height}, expected {expected_size[0]}x{expected_size[1]}",
                )
    return checked


async def check_images_async(images: Sequence[OutputImage], expected_count: int,
                             expected_size: tuple[int, int] | None) -> list[CheckedImage]:
    """:func:`check_images`, in a worker thread when the images are large."""
    if sum(len(i.data) for i in images) > THREAD_THRESHOLD:
        return await asyncio.to_thread(check_images, images, expected_count, expected_size)
    return check_images(images, expected_count, expected_size)
