"""Building the report for 100,000 attempts and 5,000 images: time, peak memory, and page weight.

The first build makes 5,000 WebP thumbnails (≤ 512 px) from 640 px PNGs; the rebuild finds them in the
content-addressed thumbnail cache. Peak memory is the Python heap's peak during the build (tracemalloc).
The site's weight is what the report states about itself; the first view (page, scripts, the first gallery
page's thumbnails) must not grow with the number of images beyond the page's own markup.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from harness.report import build_report
from tests.report_fixtures import build_store

CHALLENGES, TARGETS, SAMPLES = 100, 50, 20


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("bigreport") / "harness.db"
    run_id = build_store(db, challenges=CHALLENGES, targets=TARGETS, samples=SAMPLES, success=0.9, image_px=640,
                         first_sample_ok=True)
    return db, run_id


def test_report_for_100k_attempts_and_5000_images(benchmark: Any, big_store: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    db, run_id = big_store
    figures: dict[str, float] = {}

    def first_build() -> None:
        tracemalloc.start()
        t = time.perf_counter()
        result = build_report(db, [run_id], tmp_path / "site")
        figures["first_build_s"] = time.perf_counter() - t
        figures["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        figures["thumbnails_made"] = result.thumbnails_made

    benchmark.pedantic(first_build, rounds=1, iterations=1)
    t = time.perf_counter()
    again = build_report(db, [run_id], tmp_path / "site2")
    figures["rebuild_s"] = time.perf_counter() - t
    html = again.index.read_text(encoding="utf-8")
    figures["index_kib"] = len(html.encode()) / 1024
    assert again.size is not None
    figures["site_mb"] = again.size.total / 1e6
    figures["first_view_mb"] = again.size.first_view / 1e6
    images = len(re.findall(r'src="assets/thumbs/', html))
    benchmark.extra_info.update(figures, attempts=CHALLENGES * TARGETS * SAMPLES, images=images)
    print(f"\nreport for {CHALLENGES * TARGETS * SAMPLES:,} attempts / {images:,} images: first build "
          f"{figures['first_build_s']:.1f} s ({int(figures['thumbnails_made'])} thumbnails made), rebuild "
          f"{figures['rebuild_s']:.1f} s, Python heap peak {figures['peak_mib']:.0f} MiB, index.html "
          f"{figures['index_kib']:.0f} KiB; site {again.size.summary()}; first view "
          f"{figures['first_view_mb']:.1f} MB")
    assert images == CHALLENGES * TARGETS
    assert again.thumbnails_made == 0
    assert "data:image" not in html
    assert figures["rebuild_s"] < figures["first_build_s"]
    plotly = again.size.scripts
    assert again.size.first_view - plotly <= again.size.page + 8 * TARGETS * 40_000, \
        "the first view loads one gallery page of thumbnails, not all of them"
    unique = len(set(re.findall(r'src="assets/thumbs/([0-9a-f]+)\.webp"', html)))
    assert again.size.thumbnail_files == again.size.full_image_files == unique, "each image once"
