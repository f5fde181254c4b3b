"""Rich tables shared by the commands that print provider statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from harness.cli._common import out_console


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def print_stats_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """The provider table: n, success, p50/p95 latency, TTFB p50, cost per successful image."""
    table = Table("target", "model", "provider", "n", "success", "p50 ms", "p95 ms", "TTFB p50 ms", "$/image",
                  title=title)
    for r in rows:
        table.add_row(str(r["target"]), str(r["model"]), str(r["provider"]), str(r["n"]),
                      fmt_pct(r["success_rate"]), fmt_ms(r["p50_ms"]), fmt_ms(r["p95_ms"]),
                      fmt_ms(r["ttfb_p50_ms"]), fmt_usd(r["cost_per_image_usd"]))
    out_console().print(table)
