"""A 64-bit difference hash (dHash), the perceptual fingerprint a recognition bot would keep.

The image is reduced to 9x8 grey pixels; each of the 64 bits says whether a pixel is brighter than its
right-hand neighbour (Krawetz, "Kind of like that", hackerfactor.com, 2013). Re-encoding, resizing and
mild colour changes flip few bits, so two files of the same picture are a small Hamming distance apart,
where unrelated pictures differ in about half of the bits. The arena treats outputs within
:data:`NEAR_BITS` of each other as one picture when it decides what a voter has already seen revealed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

NEAR_BITS = 10
"""Hamming distance (of 64 bits) at or below which two images count as the same picture."""


def dhash(image: Image.Image | bytes) -> int:
    """The 64-bit dHash of an image (a Pillow image or encoded bytes)."""
    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as opened:
            return dhash(opened.convert("L"))
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def distance(a: int, b: int) -> int:
    """Hamming distance between two hashes (0..64)."""
    return (a ^ b).bit_count()


def near(hashes: np.ndarray, h: int, bits: int = NEAR_BITS) -> np.ndarray:
    """Which of ``hashes`` (uint64 array) lie within ``bits`` of ``h``."""
    result: np.ndarray = np.bitwise_count(hashes ^ np.uint64(h)) <= bits
    return result
