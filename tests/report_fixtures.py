"""Fixture stores for report tests and benchmarks, written through the store's own functions."""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from harness.records import AttemptRecord, OutputRecord, RequestKey
from harness.store import Store
from harness.store import runs as run_store
from harness.timing import AttemptClock


def small_png(seed: int, size: int = 96) -> bytes:
    img = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    draw = ImageDraw.Draw(img)
    draw.ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(255, 255, 255))
    x, y = seed % (size - 8), (seed // (size - 8) * 8) % (size - 8)
    draw.rectangle((x, y, x + 6, y + 6), fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def photo_png(seed: int, width: int = 1024, height: int = 768) -> bytes:
    """A PNG that compresses like a photograph: smooth, never repeating, so lossless PNG stays large (~400 kB
    at 1024 x 768) while a lossy WebP of it is small."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3))
    for c in range(3):
        for _ in range(6):
            a, b, phase = rng.uniform(0.002, 0.03), rng.uniform(0.002, 0.03), rng.uniform(0, 6)
            img[..., c] += np.sin(a * x + b * y + phase)
    pixels = ((img - img.min()) / (img.max() - img.min()) * 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class Pictures:
    """``make(0)``, ``make(1)``, … in order, made ahead on a thread per core: Pillow's PNG encoder releases the
    GIL, and encoding is most of the cost of a large fixture store (5,000 images at 640 px: ~20 s on one core).
    The bytes are exactly those of ``make(i)`` called in turn; none is made at or past ``limit``."""

    AHEAD = 64

    def __init__(self, make: Callable[[int], bytes], limit: int) -> None:
        self.make, self.limit = make, limit
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.pending: dict[int, Future[bytes]] = {}
        self.submitted = 0

    def __enter__(self) -> Pictures:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pool.shutdown(wait=True)

    def get(self, index: int) -> bytes:
        while self.submitted <= min(index + self.AHEAD, self.limit - 1):
            self.pending[self.submitted] = self.pool.submit(self.make, self.submitted)
            self.submitted += 1
        return self.pending.pop(index).result()


def clock(latency: float, ttfb: float) -> AttemptClock:
    return AttemptClock(conn_ms=0.2, req_sent_ms=0.5, hdr_ms=ttfb + 0.5, first_byte_ms=ttfb + 0.6,
                        last_byte_ms=latency - 1, ttfb_ms=ttfb, first_byte_ttfb_ms=ttfb + 0.1, latency_ms=latency,
                        first_partial_ms=None, submit_ms=None, queue_ms=None, run_ms=None, fetch_ms=None,
                        download_ms=None, poll_interval_ms=None, conn_reused=True, bytes_sent=200,
                        bytes_received=50_000, http_calls=1)


def build_store(db: Path, *, challenges: int, targets: int, samples: int, success: float = 0.9,
                prompt: str = "A watercolor fox reading a newspaper", error_message: str = "upstream failure",
                run_id: str = "20260101T000000Z-fix0", image_px: int = 96, seed: int = 0,
                first_sample_ok: bool = False, target_names: list[str] | None = None, photos: bool = False,
                label: str | None = "fixture") -> str:
    """A finished sandbox-looking run with ``challenges x targets x samples`` attempts; the first sample of
    each (challenge, target) gets its own image when it succeeds (``photos``: photo-like 1024 x 768 PNGs).
    ``target_names`` replaces the generated ``model-i@provider-j`` names (and ``targets``)."""
    rng = random.Random(seed)
    target_names = target_names or [f"model-{t % max(1, targets // 2)}@provider-{t}" for t in range(targets)]
    targets = len(target_names)
    frozen_challenges: list[dict[str, Any]] = [{
        "id": f"c{c}", "version": 1, "title": f"Challenge {c}", "category": ("portraiture", "typography")[c % 2],
        "kind": "text-to-image", "prompts": {"default": f"{prompt} #{c}"}, "templates": {}, "params": {},
        "references": [], "mask": None, "captions": None, "tags": [], "source_file": "fixture.yaml",
        "content_hash": hashlib.sha256(f"c{c}".encode()).hexdigest(),
    } for c in range(challenges)]
    frozen_targets = [{"name": n, "model": n.split("@")[0], "model_id": n.split("@")[0],
                       "provider": n.split("@")[1], "protocol": "openai-images", "base_url": "http://x"}
                      for n in target_names]
    def make(index: int) -> bytes:
        return photo_png(index + 1000 * seed) if photos else small_png(index, image_px)

    with Store.open(db) as store, Pictures(make, challenges * targets) as pictures:
        run_store.create_run(store, run_id=run_id, created_at="2026-01-01T00:00:00.000+00:00",
                             harness_version="test", sandbox=True, time_scale=0.01, label=label,
                             planned=challenges * targets * samples,
                             config={"timeout_s": 300.0, "samples": samples}, challenges=frozen_challenges,
                             targets=frozen_targets)
        batch: list[AttemptRecord] = []
        image_index = 0
        for c in range(challenges):
            for name in target_names:
                for s in range(samples):
                    ok = (first_sample_ok and s == 0) or rng.random() < success
                    latency = rng.lognormvariate(8.9, 0.3)
                    outputs: list[OutputRecord] = []
                    if ok and s == 0:
                        data = pictures.get(image_index)
                        width, height = (1024, 768) if photos else (image_px, image_px)
                        image_index += 1
                        sha = store.put_image(data, "png")
                        outputs = [OutputRecord(0, sha, "png", width, height, len(data))]
                    batch.append(AttemptRecord(
                        run_id=run_id, key=RequestKey(f"c{c}", "default", name, s), model=name.split("@")[0],
                        provider=name.split("@")[1], protocol="openai-images", attempt=1, final=True, ok=ok,
                        started_at=1_767_225_600 + c * 10 + s, sched_ms=0.0, start_ms=0.0,
                        clock=clock(latency, latency * 0.9), error_kind=None if ok else "server_error",
                        http_status=200 if ok else 500, error_message=None if ok else error_message,
                        n_images=1 if ok else 0, width=(1024 if photos else image_px) if ok else None,
                        height=(768 if photos else image_px) if ok else None,
                        cost_usd=0.04 if ok else 0.0, cost_source="per_image" if ok else "none", billed=ok,
                        outputs=outputs))
                    if len(batch) >= 5000:
                        run_store.insert_attempts(store, batch)
                        batch = []
        run_store.insert_attempts(store, batch)
        run_store.set_run_status(store, run_id, "finished", "2026-01-01T01:00:00.000+00:00")
    return run_id


def rating_row(row: dict[str, Any], rank: int) -> dict[str, Any]:
    """A hand-written leaderboard row completed into a whole :class:`harness.ratings.RatingRow` dict (the
    report validates handed-in sections): ``std_error`` from a 95 % interval, no both-bad votes, the win
    rate from the counts, centred intervals."""
    return {"std_error": (row["ci_high"] - row["ci_low"]) / (2 * 1.959963984540054), "both_bad": 0,
            "win_rate": (row["wins"] + row["ties"] / 2) / row["votes"], "rank": rank, "confidence": 0.95,
            "intervals": "centred", **row}
