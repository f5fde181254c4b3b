"""Blind images: every output re-encoded to one format and size class with no metadata at all.

Provider outputs carry tell-tale signs besides their pixels: the file format, dimensions, EXIF fields,
PNG text chunks (``parameters``, ``Software``), XMP and C2PA provenance manifests naming the model. The
arena therefore decodes each image, applies its EXIF orientation, converts it to sRGB (when it has an ICC
profile) and RGB (alpha flattened onto white), and encodes the bare pixels as WebP: a fresh image object
with no ancillary data, so no chunk besides the bitstream (``VP8``) is written.

Geometry is a tell too: models differ in the aspect ratios they return, and letterbox bars would show each
image's own ratio. Both sides of a pair are therefore **centre-cropped to the challenge's requested aspect
ratio** and resampled to one canvas (its longest side ``side`` pixels), so they fill identical boxes and
nothing visible depends on the native ratio (see :func:`pair_canvas`). A model that ignored the request
loses its margins, never the centre of its image.

Every format that output validation accepts (PNG, JPEG, WebP, GIF, AVIF) can be shown; AVIF only when
this Pillow was built with it (:func:`can_decode`), otherwise the arena leaves such outputs out of pairing.

Re-encoded bytes are cached on disk under the store's folder (``arena-cache/<sha256>-<size>.webp``,
written atomically) and in a small in-memory LRU, so an output always has the same blind bytes. Encoding
is CPU work: call :meth:`BlindImages.get` from a worker thread.
"""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, features

from harness.arena.memo import BoundedMemo
from harness.images import FORMAT_EXT
from harness.store.images import image_name

MEDIA_TYPE = "image/webp"
WEBP_QUALITY = 90
"""Lossy WebP quality (0-100): visually lossless for judging, about a tenth of a PNG's size."""

_SHA = re.compile(r"^[0-9a-f]{64}$")
_EXTS = frozenset({*FORMAT_EXT.values(), "jpeg", "bmp", "tiff"})
"""Every extension output validation stores (one source: :data:`harness.images.FORMAT_EXT`), plus older ones."""
DEFAULT_RATIO = (1, 1)
"""The ratio a pair is cropped to when its challenge names none: every supported API's default output is
square."""


def can_decode(ext: str) -> tuple[bool, str]:
    """Whether this Pillow can decode stored images with extension ``ext``, and if not, why."""
    if ext not in _EXTS:
        return False, f"the arena does not show .{ext} images"
    if ext == "avif" and not features.check("avif"):
        return False, "this Pillow was built without AVIF support (PIL.features.check('avif') is False)"
    return True, ""


def _to_srgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode=img.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img
    return converted if converted is not None else img


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def blind_size(width: int, height: int, side: int) -> tuple[int, int]:
    """Pixel size of an image after resampling its longest side to ``side``."""
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def pair_canvas(ratio: tuple[int, int], side: int) -> tuple[int, int]:
    """The one canvas both images of a pair are cropped to: aspect ratio ``ratio`` (width, height), longest
    side ``side`` pixels. It depends on the challenge only, never on either output."""
    return blind_size(ratio[0], ratio[1], side)


def reencode(data: bytes, side: int, quality: int = WEBP_QUALITY, canvas: tuple[int, int] | None = None) -> bytes:
    """The blind version of an image file: WebP, pixels only, longest side ``side`` px; or, with
    ``canvas`` (width, height), centre-cropped to the canvas's aspect ratio and resampled to exactly its
    size, so both images of a pair fill the same box whatever aspect ratio each model chose."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        oriented = ImageOps.exif_transpose(opened)
        if "icc_profile" not in oriented.info and "icc_profile" in opened.info:
            oriented.info["icc_profile"] = opened.info["icc_profile"]
        rgb = _flatten(_to_srgb(oriented))
    if canvas is None:
        size = blind_size(*rgb.size, side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    else:
        rgb = ImageOps.fit(rgb, canvas, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    bare = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    out = io.BytesIO()
    bare.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()


class BlindImages:
    """Re-encoded images by the SHA-256 of their source file, cached on disk and in memory."""

    def __init__(self, images_dir: Path, cache_dir: Path, side: int, *, memory_items: int = 128) -> None:
        self.images_dir = images_dir
        self.cache_dir = cache_dir
        self.side = side
        self._memory: BoundedMemo[str, bytes] = BoundedMemo(memory_items)

    def _key(self, sha256: str, canvas: tuple[int, int] | None) -> str:
        return f"{sha256}-{self.side}" if canvas is None else f"{sha256}-{canvas[0]}x{canvas[1]}"

    def cached(self, sha256: str, canvas: tuple[int, int] | None = None) -> bytes | None:
        """The blind bytes if they are in memory now, else None: never touches the disk, so the event loop
        may call it (a miss goes through :meth:`get` on a worker thread)."""
        return self._memory.get(self._key(sha256, canvas))

    def get(self, sha256: str, ext: str, canvas: tuple[int, int] | None = None) -> bytes:
        """Blind bytes of a stored image (on ``canvas`` when given, see :func:`reencode`). Hash and
        extension are checked before any path is built, so nothing outside the image store can be read
        whatever the caller passes."""
        if not _SHA.match(sha256) or ext not in _EXTS:
            raise ValueError(f"not a stored image name: {sha256!r}.{ext!r}")
        if canvas is not None and not (1 <= canvas[0] <= self.side and 1 <= canvas[1] <= self.side):
            raise ValueError(f"canvas {canvas} outside 1..{self.side} pixels")
        key = self._key(sha256, canvas)
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        path = self.cache_dir / f"{key}.webp"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = reencode((self.images_dir / image_name(sha256, ext)).read_bytes(), self.side, canvas=canvas)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        self._memory.put(key, data)
        return data
