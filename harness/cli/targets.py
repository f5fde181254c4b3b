"""``harness targets list|check``: known targets, and whether their keys are set (never shown)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from harness.cli._common import EXIT_CHECK_FAILED, handle_errors, out_console, print_json
from harness.envfile import key_value
from harness.pricing import list_price
from harness.targets import load_targets, select

TARGETS_JSON_SCHEMA_VERSION = 1
"""Version of ``harness targets list --json``: each target's frozen form (as stored with a run) with ``schema_version`` added."""


@click.group()
def targets() -> None:
    """Targets: model@provider with protocol, endpoint, key variable, price and limits."""


@targets.command("list")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "patterns", multiple=True, help="Name or glob (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_cmd(targets_file: Path | None, patterns: tuple[str, ...], as_json: bool) -> None:
    """List catalog (and user-file) targets."""
    chosen = select(load_targets(targets_file), patterns)
    if as_json:
        print_json([{"schema_version": TARGETS_JSON_SCHEMA_VERSION, **t.frozen()} for t in chosen])
        return
    table = Table("name", "protocol", "key variable", "price (USD)", "unit", "price as of", "limits")
    for t in chosen:
        price = list_price(t)
        as_of = f"{price.as_of} ({price.as_of_kind})" if price.as_of else "—"
        limits = ", ".join(x for x in (f"{t.rpm:g} rpm" if t.rpm else "",
                                       f"{t.concurrency} concurrent" if t.concurrency else "") if x) or "—"
        table.add_row(t.name, t.protocol, " | ".join(t.api_key_env), price.text, price.unit or "—", as_of, limits)
    out_console().print(table)
    pages = sorted({t.price_url for t in chosen if t.price_url})
    if pages:
        out_console().print("Prices from: " + ", ".join(pages) + ". Unverified prices could not be checked "
                            "against the provider's page on that date; see docs/prices.md.")


@targets.command("check")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "patterns", multiple=True)
@handle_errors
def check_cmd(targets_file: Path | None, patterns: tuple[str, ...]) -> None:
    """Say which targets have their API key set (never any part of it); exit 1 when any is missing."""
    chosen = select(load_targets(targets_file), patterns)
    table = Table("target", "variable", "key")
    missing = 0
    for t in chosen:
        var = next((v for v in t.api_key_env if key_value(v)), None)
        if var is None:
            missing += 1
            table.add_row(t.name, " or ".join(t.api_key_env), "[red]missing[/]")
        else:
            table.add_row(t.name, var, "set")
    out_console().print(table)
    if missing:
        raise SystemExit(EXIT_CHECK_FAILED)
