"""Static HTML reports: provider table, charts, leaderboard, CLIP scores, gallery, provenance, exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report.collect import ReportData, collect
from harness.report.site import SiteResult, write_site
from harness.store import Store

__all__ = ["ReportData", "SiteResult", "build_report", "collect", "write_site"]


def build_report(db: Path, run_ids: list[str], out: Path, *, title: str | None = None,
                 leaderboard: dict[str, Any] | None = None, simulated_votes: bool = False) -> SiteResult:
    """Collect ``run_ids`` from the store at ``db`` and write the site into ``out``."""
    with Store.open(db, readonly=True) as store:
        data = collect(store, run_ids, title=title, leaderboard=leaderboard, simulated_votes=simulated_votes)
        images_dir = store.images_dir
    return write_site(data, out, images_dir, db.parent / "thumbs")
