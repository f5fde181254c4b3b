"""Thumbnails and full images for the static site.

Thumbnails are WebP, at most 512 px on the longer side, cached by content hash next to the store
(``results/thumbs/<sha256>.webp``) so rebuilding a report only converts new images. Each image appears once
in the site, however many tiles show it.

Full-size images dominate a site's weight (the providers' PNGs are 1–3 MB each, lossless). What the gallery
links to as "full size" follows a :data:`FullImages` policy:

* ``view`` (default): lossless originals larger than :data:`VIEW_MIN_BYTES` become a WebP at their own
  resolution, quality :data:`VIEW_QUALITY` (about a fifth of the PNG's bytes, cached like thumbnails);
  JPEG/WebP originals (already lossy), small files and any whose WebP would not be smaller are linked as
  they are, so no full-size file is larger than its original. The originals stay in the store
  (``harness export``).
* ``original``: the providers' bytes, unchanged.
* ``none``: thumbnails only; tiles do not link anywhere.

Files are hard-linked from the store or cache into the site when the file system allows (no extra space),
copied otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from harness.store.images import image_label, image_name

THUMB_MAX_PX = 512
THUMB_QUALITY = 80
THUMB_METHOD = 2
"""libwebp effort (0–6): 2 halves the encode time of the default 4 for a ~5 % larger file."""


FullImages = Literal["view", "original", "none"]
FULL_IMAGE_POLICIES: tuple[FullImages, ...] = ("view", "original", "none")
VIEW_QUALITY = 90
VIEW_METHOD = 4
VIEW_MIN_BYTES = 64 * 1024
"""Lossless originals up to this size (bytes) are linked as they are: re-encoding saves a few kB each."""
LOSSY = frozenset({"jpg", "jpeg", "webp", "avif"})


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image of the store to show: ``sha256`` and ``ext`` name the file ``images/<sha256>.<ext>``."""

    sha256: str
    ext: str


def make_thumbnail(source: Path, target: Path, max_px: int = THUMB_MAX_PX) -> None:
    """Write a WebP thumbnail of ``source`` (atomically) unless it exists already."""
    if target.exists():
        return
    with Image.open(source) as img:
        img.draft("RGB", (max_px, max_px))
        thumb = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
        thumb.thumbnail((max_px, max_px), Image.Resampling.BILINEAR, reducing_gap=3.0)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    thumb.save(tmp, format="WEBP", quality=THUMB_QUALITY, method=THUMB_METHOD)
    os.replace(tmp, target)


def place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a hard link when possible, else a copy."""
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_view_copy(source: Path, target: Path) -> None:
    """Write a full-resolution WebP of ``source`` (atomically) unless it exists already."""
    if target.exists():
        return
    with Image.open(source) as img:
        view = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    view.save(tmp, format="WEBP", quality=VIEW_QUALITY, method=VIEW_METHOD)
    os.replace(tmp, target)


def full_name(ref: ImageRef, source: Path, policy: FullImages) -> str | None:
    """The file name of ``ref``'s full-size image in ``assets/full`` under ``policy`` (``None``: not published)."""
    if policy == "none":
        return None
    if policy == "original" or ref.ext.lower() in LOSSY or source.stat().st_size <= VIEW_MIN_BYTES:
        return image_name(ref.sha256, ref.ext)
    return image_name(ref.sha256, "view.webp")


@dataclass(frozen=True)
class Published:
    """What :func:`publish_images` did: thumbnails made and reused, view copies made, per image the file
    name of its full-size image in ``assets/full`` (absent under the ``none`` policy), and the images that
    could not be shown with the reason (a file missing from the store or unreadable)."""

    thumbnails_made: int
    thumbnails_reused: int
    views_made: int
    full: dict[str, str]
    unavailable: dict[str, str] = field(default_factory=dict)


_UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)


def publish_images(images: Iterable[ImageRef], images_dir: Path, cache_dir: Path, site_assets: Path,
                   workers: int = 2, full_images: FullImages = "view") -> Published:
    """Thumbnails (cached) and full-size images (by ``full_images``) for every referenced image. An image
    whose file is missing or unreadable is reported in ``unavailable``, never an error: the rest of the
    report still builds."""
    unique = {i.sha256: i for i in images}
    thumbs_out = site_assets / "thumbs"
    full_out = site_assets / "full"
    for folder in (cache_dir, thumbs_out, full_out):
        folder.mkdir(parents=True, exist_ok=True)

    def source(ref: ImageRef) -> Path:
        return images_dir / image_name(ref.sha256, ref.ext)

    unavailable = {ref.sha256: f"{image_label(ref.sha256, ref.ext)} is not in the store" for ref in unique.values()
                   if not source(ref).is_file()}
    missing = [i for i in unique.values() if not (cache_dir / f"{i.sha256}.webp").exists()]
    full: dict[str, str] = {}
    for ref in unique.values():
        if ref.sha256 not in unavailable:
            name = full_name(ref, source(ref), full_images)
            if name is not None:
                full[ref.sha256] = name
    views = [r for r in unique.values() if full.get(r.sha256, "").endswith(".view.webp")
             and not (cache_dir / full[r.sha256]).exists()]

    def convert(ref: ImageRef) -> tuple[str, str] | None:
        try:
            make_thumbnail(source(ref), cache_dir / f"{ref.sha256}.webp")
        except _UNREADABLE as exc:
            return ref.sha256, f"{image_label(ref.sha256, ref.ext)} cannot be read ({type(exc).__name__}: {exc})"
        return None

    def view(ref: ImageRef) -> None:
        try:
            make_view_copy(source(ref), cache_dir / full[ref.sha256])
        except _UNREADABLE:
            full[ref.sha256] = source(ref).name

    todo = [r for r in missing if r.sha256 not in unavailable]
    if todo or views:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            unavailable.update(p for p in pool.map(convert, todo) if p is not None)
            list(pool.map(view, views))
    for ref in unique.values():
        if ref.sha256 in unavailable:
            full.pop(ref.sha256, None)
            continue
        place(cache_dir / f"{ref.sha256}.webp", thumbs_out / f"{ref.sha256}.webp")
        name = full.get(ref.sha256)
        if name is None:
            continue
        original = source(ref)
        placed = cache_dir / name if name.endswith(".view.webp") else original
        if placed != original and placed.stat().st_size >= original.stat().st_size:
            name = full[ref.sha256] = original.name
            placed = original
        place(placed, full_out / name)
    made = len(todo) - sum(1 for r in todo if r.sha256 in unavailable)
    return Published(made, len(unique) - len(missing), len(views), full, unavailable)
