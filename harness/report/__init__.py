"""Static HTML reports: provider table, charts, leaderboard, CLIP scores, gallery, provenance, exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report.collect import ReportData, collect
from harness.report.leaderboard import leaderboard_section
from harness.report.site import SiteResult, SiteSize, human_bytes, write_site
from harness.report.thumbs import FULL_IMAGE_POLICIES, FullImages
from harness.store import Store
from harness.store.url import parse_location

__all__ = ["FULL_IMAGE_POLICIES", "FullImages", "ReportData", "SiteResult", "SiteSize", "build_report", "collect",
           "human_bytes", "write_site"]


def build_report(db: Path, run_ids: list[str], out: Path, *, title: str | None = None,
                 leaderboard: dict[str, Any] | None = None, simulated_votes: bool = False,
                 rate_by: str = "model", full_images: FullImages = "view",
                 slo_ms: float | None = None) -> SiteResult:
    """Collect ``run_ids`` from the store at ``db`` and write the site into ``out``.

    The leaderboard comes from the store's votes on these runs' outputs unless one is given; the page says
    so when any of those votes came from simulated voters. ``full_images``: what the gallery links to as
    full-size images (:mod:`harness.report.thumbs`); ``slo_ms``: a latency objective (ms) for the provider
    table's goodput column (none without one).
    """
    with Store.open(db, readonly=True) as store:
        if leaderboard is None:
            leaderboard = leaderboard_section(store, run_ids, by=rate_by)
        simulated = simulated_votes or bool(leaderboard and leaderboard.get("simulated"))
        data = collect(store, run_ids, title=title, leaderboard=leaderboard, simulated_votes=simulated,
                       slo_ms=slo_ms)
        images_dir = store.images_dir
    return write_site(data, out, images_dir, parse_location(db).home / "thumbs", full_images=full_images)
