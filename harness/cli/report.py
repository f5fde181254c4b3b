"""``harness report RUN_ID ... --out DIR``: a self-contained static site."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from harness.cli._common import db_option, err_console, handle_errors, slo_option
from harness.report import FULL_IMAGE_POLICIES, build_report, human_bytes


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default reports/<first run id>).")
@click.option("--title", help="Page title.")
@click.option("--rate-by", type=click.Choice(["model", "target"]), default="model", show_default=True,
              help="Rate models (pooled over providers) or targets (model@provider).")
@click.option("--full-images", type=click.Choice(FULL_IMAGE_POLICIES), default="view", show_default=True,
              help="What a gallery tile links to: 'view' = WebP copies of large PNG outputs at full resolution "
                   "(JPEG/WebP outputs as they are), 'original' = the providers' files, 'none' = thumbnails only.")
@click.option("--slo", "slo_ms", default=None, callback=slo_option, metavar="DURATION",
              help="Latency objective for the goodput column (10s, 1500ms): the share of requests that succeeded "
                   "within it, failures counting as misses.")
@db_option
@handle_errors
def report(run_ids: tuple[str, ...], out: Path | None, title: str | None, rate_by: str, full_images: str,
           slo_ms: float | None, db: Path) -> None:
    """Write a static site (index.html + assets, opens from file://) for one or more runs."""
    folder = out or Path("reports") / run_ids[0]
    result = build_report(db, list(run_ids), folder, title=title, rate_by=rate_by,
                          full_images="original" if full_images == "original" else
                          "none" if full_images == "none" else "view", slo_ms=slo_ms)
    err_console().print(f"report written ({result.thumbnails_made} new thumbnail(s), {result.thumbnails_reused} "
                        "reused)")
    if result.unavailable:
        first = next(iter(result.unavailable.values()))
        err_console().print(f"[yellow]warning:[/] {len(result.unavailable)} image(s) could not be shown (e.g. "
                            f"{escape(first)}); their tiles say so", highlight=False)
    if result.size is not None:
        err_console().print(f"site size: {result.size.summary()}; first view {human_bytes(result.size.first_view)}")
    click.echo(str(result.index.resolve()))
