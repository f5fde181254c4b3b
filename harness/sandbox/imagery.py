"""Deterministic synthetic images for the sandbox providers.

The same (model, prompt, seed, size, references) always gives the same bytes; different simulated models
look visibly different (each has its own palette and motif), so the arena and CLIP stages have something to
tell apart. Edits and compositions derive from their reference images (resized to the output, tinted in the
model's palette, with the prompt's motif over them); inpainting repaints only the masked region.

Rendering is CPU work, and a simulated provider's latency must not depend on this machine's CPU: the cache
keys a request's image by model, size, format and references plus one of :data:`VARIANTS` variants picked by
the prompt and seed, so each variant is drawn and encoded once (in a worker thread, off the server's event
loop) and every later request reuses its pixels. Each answer still gets bytes of its own — a metadata record
naming its model, prompt and seed (a PNG ``tEXt`` chunk, a JPEG comment, a WebP chunk) is spliced into the
cached file, which costs a copy, not an encoding — so two requests never share an image file (the store keeps
files by content hash) while their pixels come from the same drawing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

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
CACHE_SIZE = 256
VARIANTS = 2
"""Distinct images the cache draws per model, size, format and references; a request's prompt and seed pick
one (deterministically). Two keep a model's outputs from being all alike while a short run (the demo: about
45 requests a target over a handful of sizes) still serves most requests from the cache; every miss is CPU
that a busy machine may not finish before the simulated delay ends."""
WORK_PIXELS = 640 * 640
"""Larger images are drawn at half size and enlarged (nearest neighbour): the sandbox's rendering CPU, not
the simulated provider, must not set the latency of a scaled run (a 1024² photo edit: 111 ms -> ~45 ms)."""


@dataclass(frozen=True)
class Look:
    """A simulated model's visual identity."""

    palette: tuple[tuple[int, int, int], ...]
    motif: str


def look_for(model: str) -> Look:
    """Palette and motif for a model id (known families by substring, anything else by hash)."""
    digest = int(hashlib.sha256(model.encode()).hexdigest(), 16)
    for key in sorted(PALETTES, key=len, reverse=True):
        if key in model:
            return Look(PALETTES[key], MOTIFS[list(PALETTES).index(key) % len(MOTIFS)])
    rng = random.Random(digest)
    palette = tuple((rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(4))
    return Look(palette, MOTIFS[digest % len(MOTIFS)])


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


def render(model: str, prompt: str, seed: int | None, size: tuple[int, int],
           references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG") -> bytes:
    """Render and encode one image (``fmt``: PNG, JPEG or WEBP)."""
    digest = hashlib.sha256(f"{model}\x00{prompt}\x00{seed}".encode()).digest()
    rng = random.Random(digest)
    look = look_for(model)
    full = size
    if size[0] * size[1] > WORK_PIXELS:
        size = (max(1, size[0] // 2), max(1, size[1] // 2))
    if references:
        with Image.open(io.BytesIO(references[0])) as ref:
            base = ImageOps.fit(ref.convert("RGB"), size)
        if len(references) > 1:
            w, h = size
            for i, extra in enumerate(references[1:4], start=1):
                with Image.open(io.BytesIO(extra)) as im:
                    inset = ImageOps.fit(im.convert("RGB"), (w // 3, h // 3))
                base.paste(inset, ((i - 1) * w // 3, h - h // 3))
        tint = Image.new("RGB", size, look.palette[1])
        canvas = Image.blend(base, tint, 0.25)
    else:
        canvas = _background(look, size, rng)
    overlay = canvas.copy()
    _motif(ImageDraw.Draw(overlay), look, size, rng)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as m:
            region = m.convert("L").resize(size)
        result = Image.composite(overlay, canvas if not references else base, region)
    else:
        result = Image.blend(canvas, overlay, 0.85) if references else overlay
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
    only through :func:`variant`); each request gets the drawing marked with its own inputs (:func:`mark`)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = size
        self._lock = Lock()

    @staticmethod
    def _key(model: str, prompt: str, seed: int | None, size: tuple[int, int], references: tuple[bytes, ...],
             mask: bytes | None, fmt: str) -> tuple[object, ...]:
        return (model, variant(prompt, seed), size, tuple(hash(r) for r in references),
                hash(mask) if mask is not None else None, fmt.upper())

    def cached(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
               references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG") -> bytes | None:
        """The drawing (unmarked) if it was drawn before, else ``None`` (never renders)."""
        key = self._key(model, prompt, seed, size, references, mask, fmt)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def get_or_render(self, model: str, prompt: str, seed: int | None, size: tuple[int, int],
                      references: tuple[bytes, ...] = (), mask: bytes | None = None, fmt: str = "PNG") -> bytes:
        """The request's own image: the cached drawing (drawn now on a miss) marked with its inputs."""
        hit = self.cached(model, prompt, seed, size, references, mask, fmt)
        if hit is None:
            v = variant(prompt, seed)
            drawn = render(model, f"variant {v}", v, size, references, mask, fmt)
            key = self._key(model, prompt, seed, size, references, mask, fmt)
            with self._lock:
                hit = self._items.setdefault(key, drawn)
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
