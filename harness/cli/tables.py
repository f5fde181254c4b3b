"""Rich tables shared by the commands that print provider statistics."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from harness.cli._common import out_console

BY_KEYS = ("run_id", "challenge_id", "variant", "kind", "category")
WITHHELD = "n/a*"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _ms_cell(row: dict[str, Any], column: str, with_ci: bool = False) -> str:
    if column in row.get("withheld", {}):
        return WITHHELD
    value = row.get(column)
    if value is None:
        return "—"
    text = fmt_ms(value)
    stem = column[:-3]
    low, high = row.get(f"{stem}_ci_low_ms"), row.get(f"{stem}_ci_high_ms")
    if with_ci and low is not None and high is not None:
        text += f" ({fmt_ms(low)}–{fmt_ms(high)})"
    return text


def _success_cell(row: dict[str, Any]) -> str:
    low, high = row.get("success_ci_low"), row.get("success_ci_high")
    ci = f" ({fmt_pct(low)}–{fmt_pct(high)})" if low is not None and high is not None else ""
    return fmt_pct(row.get("success_rate")) + ci


def _tail_cell(row: dict[str, Any]) -> str:
    if "p95_with_failures_ms" in row.get("withheld", {}):
        return WITHHELD
    if row.get("p95_with_failures_censored"):
        return "> timeout"
    return fmt_ms(row.get("p95_with_failures_ms"))


def print_stats_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """The provider table: reliability, latency percentiles with 95 % intervals, TTFB, throughput, cost.

    Withheld percentiles print as ``n/a*`` with their reasons below; failures by class, queue phases and
    invariant violations follow when there are any.
    """
    keys = [k for k in BY_KEYS if any(k in r for r in rows)]
    table = Table("target", *keys, "n", "success (95% CI)", "1st try", "429s", "p50 ms (95% CI)", "p90 ms",
                  "p95 ms (95% CI)", "p99 ms", "p95 incl. failures", "TTFB p50", "TTFB p95", "img/min", "$/image",
                  title=title)
    for r in rows:
        per_min = r.get("images_per_min")
        table.add_row(
            str(r["target"]), *(str(r.get(k, "")) for k in keys), str(r["n"]), _success_cell(r),
            fmt_pct(r.get("first_attempt_success_rate")), fmt_pct(r.get("rate_limited_share")),
            _ms_cell(r, "p50_ms", True), _ms_cell(r, "p90_ms"), _ms_cell(r, "p95_ms", True), _ms_cell(r, "p99_ms"),
            _tail_cell(r), _ms_cell(r, "ttfb_p50_ms"), _ms_cell(r, "ttfb_p95_ms"),
            "—" if per_min is None else f"{per_min:.1f}", fmt_usd(r.get("cost_per_image_usd")),
        )
    console = out_console()
    console.print(table)
    _print_details(rows, keys)


def _row_label(row: dict[str, Any], keys: Sequence[str]) -> str:
    return " / ".join([str(row["target"]), *(str(row.get(k)) for k in keys)])


def _print_details(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    console = out_console()
    failures = [r for r in rows if r.get("errors")]
    if failures:
        kinds = sorted({k for r in failures for k in r["errors"]})
        errors = Table("target", *keys, *kinds, "billed failures", title="failed requests by class")
        for r in failures:
            errors.add_row(str(r["target"]), *(str(r.get(k, "")) for k in keys),
                           *(str(r["errors"].get(k, 0)) for k in kinds), str(r.get("billed_failures", 0)))
        console.print(errors)
    queued = [r for r in rows if r.get("queue_p50_ms") is not None or "queue_p50_ms" in r.get("withheld", {})]
    if queued:
        phases = Table("target", *keys, "submit p50", "queue p50", "queue p95", "run p50", "fetch p50",
                       "download p50", "poll interval", title="queue phases (ms)")
        for r in queued:
            phases.add_row(str(r["target"]), *(str(r.get(k, "")) for k in keys),
                           *(_ms_cell(r, c) for c in ("submit_p50_ms", "queue_p50_ms", "queue_p95_ms", "run_p50_ms",
                                                       "fetch_p50_ms", "download_p50_ms")),
                           fmt_ms(r.get("poll_interval_ms")))
        console.print(phases)
    for r in rows:
        if r.get("invariant_violations"):
            ids = ", ".join(map(str, r.get("invariant_attempt_ids", [])))
            console.print(f"[bold red]invariant violated[/] {_row_label(r, keys)}: {r['invariant_violations']} "
                          f"attempt(s) break 0 <= TTFB <= latency or queue + run <= latency (attempt ids {ids})")
    print_withheld(rows, keys)


_NEEDED = re.compile(r"< (\d+) needed")


def print_withheld(rows: Sequence[dict[str, Any]], keys: Sequence[str] = ()) -> None:
    """One line per withheld statistic: how many values it needs and which rows lack them (the exact
    reason of every cell is in ``--json``'s ``withheld``)."""
    notes: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for column, reason in r.get("withheld", {}).items():
            match = _NEEDED.search(reason)
            needs = f"needs at least {match.group(1)} values for a distribution-free 95 % interval" if match \
                else reason
            label = _row_label(r, keys)
            entry = notes.setdefault((column.removesuffix("_ms").replace("_", " "), needs), [])
            if label not in entry:
                entry.append(label)
    for (column, needs), labels in sorted(notes.items()):
        shown = ", ".join(labels) if len(labels) <= 4 else f"{len(labels)} rows"
        out_console().print(f"{WITHHELD} {column}: {needs} ({shown})", markup=False)


def fmt_score(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def print_scores_table(records: Sequence[dict[str, Any]], title: str) -> None:
    """CLIP score summary: one row per target (and split) and metric, mean with its 95 % interval."""
    by = [k for k in records[0] if k not in _SCORE_FIELDS] if records else []
    table = Table(*by, "metric", "better", "mean", "95 % interval", "images", "prompts", title=title)
    for r in records:
        table.add_row(*(str(r[k]) for k in by), str(r["metric"]), "higher" if r["higher_is_better"] else "lower",
                      fmt_score(r["mean"]), f"{fmt_score(r['low'])}–{fmt_score(r['high'])}", str(r["n_images"]),
                      str(r["n_prompts"]))
    out_console().print(table)


_SCORE_FIELDS = {"scorer", "metric", "higher_is_better", "n_images", "n_prompts", "mean", "low", "high",
                 "truncated_share"}
