"""The report's provider table: which :class:`~harness.stats.table.ProviderRow` figures it shows and how.

Each column names the row fields it reads; every name is checked against ``ProviderRow.model_fields`` when
this module is imported, so a renamed or removed field fails loudly instead of printing a dash. A heading's
tooltip is the field's own description from the row schema. Columns whose figures no row has (queue phases
without a queue API, sandbox fidelity outside the sandbox, a first-release run without time to image) are
left out of the page, and a withheld figure shows "withheld" with the stats module's reason.

Every other figure field of the row is listed below the table (:func:`all_figures`, collapsed): that list is
derived from ``ProviderRow.model_fields`` alone, so a figure the stats module adds shows up in the report
without a change here, and ``providers.json/.csv`` carry every field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.stats.goodput import format_slo
from harness.stats.table import ProviderRow

FIELDS = ProviderRow.model_fields


@dataclass(frozen=True)
class Cell:
    """One table cell: ``text`` (plain; the template escapes it), ``ci`` a muted interval after it, ``note``
    a muted remark, ``withheld`` the reason a figure is withheld, ``sort`` the value the column sorts by,
    ``warn`` marks a figure to read with care."""

    text: str
    sort: float | str | None = None
    ci: str | None = None
    note: str | None = None
    withheld: str | None = None
    warn: bool = False


@dataclass(frozen=True)
class Column:
    """A column of the page's table: heading, the row fields it reads (the first one describes it), how a
    row becomes a cell, whether it sorts numerically and whether its text may wrap (figures never do)."""

    header: str
    fields: tuple[str, ...]
    render: Callable[[ProviderRow], Cell]
    numeric: bool = True
    wrap: bool = False
    shown_when: Callable[[Sequence[ProviderRow]], bool] = lambda rows: True

    @property
    def description(self) -> str:
        info = FIELDS[self.fields[0]]
        return info.description or self.fields[0]


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def fmt_ms(value: float | None) -> str:
    v = _finite(value)
    return "—" if v is None else f"{v:,.0f}"


def fmt_pct(value: float | None) -> str:
    v = _finite(value)
    return "—" if v is None else f"{100 * v:.1f}%"


def fmt_usd(value: float | None) -> str:
    v = _finite(value)
    return "—" if v is None else f"${v:.4f}"


def _ms_cell(field: str, ci: bool = True) -> Callable[[ProviderRow], Cell]:
    base = field[:-3]

    def render(row: ProviderRow) -> Cell:
        value = getattr(row, field)
        low = getattr(row, f"{base}_ci_low_ms", None) if ci else None
        high = getattr(row, f"{base}_ci_high_ms", None) if ci else None
        interval = f"[{fmt_ms(low)}–{fmt_ms(high)}]" if low is not None and high is not None else None
        return Cell(fmt_ms(value), _finite(value), interval, withheld=row.withheld.get(field))

    return render


def _share_cell(field: str, low: str, high: str) -> Callable[[ProviderRow], Cell]:
    def render(row: ProviderRow) -> Cell:
        value, lo, hi = getattr(row, field), getattr(row, low), getattr(row, high)
        interval = f"[{fmt_pct(lo)}–{fmt_pct(hi)}]" if lo is not None and hi is not None else None
        return Cell(fmt_pct(value), _finite(value), interval, withheld=row.withheld.get(field))

    return render


def _n(row: ProviderRow) -> Cell:
    return Cell(str(row.n), row.n, note=f"{row.attempts} attempts" if row.attempts != row.n else None)


def _tail(row: ProviderRow) -> Cell:
    if row.p95_with_failures_censored:
        return Cell("> timeout", math.inf, note=f"timeout {fmt_ms(row.timeout_ms)} ms", warn=True)
    return Cell(fmt_ms(row.p95_with_failures_ms), _finite(row.p95_with_failures_ms),
                withheld=row.withheld.get("p95_with_failures_ms"))


def _size(row: ProviderRow) -> Cell:
    cell = _share_cell("size_as_asked", "size_as_asked_ci_low", "size_as_asked_ci_high")(row)
    note = f"of {row.size_as_asked_n}" if row.size_as_asked_n else None
    return Cell(cell.text, cell.sort, cell.ci, note, cell.withheld,
                warn=row.size_as_asked is not None and row.size_as_asked < 1)


def _cost(row: ProviderRow) -> Cell:
    note = f"total {fmt_usd(row.cost_total_usd)}" if row.cost_total_usd else None
    if row.billed_failures:
        note = f"{note}, {row.billed_failures} billed fail."
    return Cell(fmt_usd(row.cost_per_image_usd), _finite(row.cost_per_image_usd), note=note)


def _not_sent(row: ProviderRow) -> Cell:
    return Cell(str(row.not_sent) if row.not_sent else "—", row.not_sent, warn=row.not_sent > 0)


def _fidelity(row: ProviderRow) -> Cell:
    dev = _finite(row.fidelity_deviation_p50_ms)
    if dev is None:
        return Cell("—", None, withheld=row.withheld.get("fidelity_deviation_p50_ms"))
    pct = _finite(row.fidelity_deviation_pct)
    text = f"{dev:+,.0f} ms" + ("" if pct is None else f" ({pct:+.1f}%)")
    return Cell(text, pct if pct is not None else dev,
                ci=f"of {fmt_ms(row.fidelity_intended_p50_ms)} ms, n {row.fidelity_n}",
                note=None if row.fidelity_faithful else "beyond 5 %: measures this machine, not the profile",
                warn=row.fidelity_faithful is False)


def _errors(row: ProviderRow) -> Cell:
    parts = [f"{kind} {count}" for kind, count in row.errors.items() if count]
    return Cell(" · ".join(parts), sum(row.errors.values()))


def _phases(row: ProviderRow) -> Cell:
    if row.queue_p50_ms is None:
        return Cell("—", None)
    text = (f"submit {fmt_ms(row.submit_p50_ms)}, queue {fmt_ms(row.queue_p50_ms)}, run {fmt_ms(row.run_p50_ms)}, "
            f"fetch {fmt_ms(row.fetch_p50_ms)}, download {fmt_ms(row.download_p50_ms)}")
    note = f"±{fmt_ms(row.poll_interval_ms)} poll" if row.poll_interval_ms else None
    return Cell(text, _finite(row.queue_p50_ms), note=note)


def _batch(row: ProviderRow) -> Cell:
    """A batch target's median job turnaround, its jobs and the interactive target it mirrors."""
    if row.mode != "batch":
        return Cell("—", None, note="interactive" if row.mode == "interactive" else None)
    jobs = f"{row.batch_jobs} job{'s' if row.batch_jobs != 1 else ''}" if row.batch_jobs is not None else None
    twin = f"batch of {row.batch_of}" if row.batch_of else "batch"
    return Cell(fmt_ms(row.job_turnaround_p50_ms), _finite(row.job_turnaround_p50_ms),
                note=", ".join(x for x in (twin, jobs) if x))


def _any(field: str) -> Callable[[Sequence[ProviderRow]], bool]:
    def shown(rows: Sequence[ProviderRow]) -> bool:
        return any(getattr(r, field) not in (None, 0) or field in r.withheld for r in rows)

    return shown


def _measured(field: str, n_field: str) -> Callable[[Sequence[ProviderRow]], bool]:
    """Shown when some row measured it (a first-release run has no such figures at all)."""
    def shown(rows: Sequence[ProviderRow]) -> bool:
        return any(getattr(r, n_field) for r in rows)

    return shown


GOODPUT = "goodput (95 % CI)"
"""The goodput column's heading; the page names the objective in it (:func:`goodput_heading`)."""


def goodput_heading(rows: Sequence[ProviderRow]) -> str:
    """``goodput ≤ 10 s (95 % CI)``: the objective the rows' goodput was judged against."""
    judged = next((r.slo_ms for r in rows if r.slo_ms is not None), None)
    return GOODPUT if judged is None else f"goodput ≤ {format_slo(judged)} (95 % CI)"


COLUMNS: tuple[Column, ...] = (
    Column("n", ("n", "attempts"), _n),
    Column("success", ("success_rate", "success_ci_low", "success_ci_high"),
           _share_cell("success_rate", "success_ci_low", "success_ci_high")),
    Column(GOODPUT, ("goodput", "goodput_ci_low", "goodput_ci_high", "slo_ms", "goodput_measure", "goodput_n"),
           _share_cell("goodput", "goodput_ci_low", "goodput_ci_high"),
           shown_when=lambda rows: any(r.slo_ms is not None for r in rows)),
    Column("p50 ms", ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"), _ms_cell("p50_ms")),
    Column("p95 ms", ("p95_ms", "p95_ci_low_ms", "p95_ci_high_ms"), _ms_cell("p95_ms")),
    Column("p95 incl. failures", ("p95_with_failures_ms", "p95_with_failures_censored", "timeout_ms"), _tail),
    Column("TTFB p50 ms", ("ttfb_p50_ms", "ttfb_p50_ci_low_ms", "ttfb_p50_ci_high_ms"), _ms_cell("ttfb_p50_ms")),
    Column("time to image p50 ms", ("time_to_image_p50_ms", "time_to_image_p50_ci_low_ms",
                                    "time_to_image_p50_ci_high_ms", "time_to_image_n"),
           _ms_cell("time_to_image_p50_ms"), shown_when=_measured("time_to_image_p50_ms", "time_to_image_n")),
    Column("$ / image", ("cost_per_image_usd", "cost_total_usd", "billed_failures"), _cost),
    Column("size as asked", ("size_as_asked", "size_as_asked_ci_low", "size_as_asked_ci_high", "size_as_asked_n"),
           _size, shown_when=_measured("size_as_asked", "size_as_asked_n")),
    Column("not sent", ("not_sent",), _not_sent, shown_when=_any("not_sent")),
    Column("sandbox fidelity (measured − intended p50)",
           ("fidelity_deviation_p50_ms", "fidelity_deviation_pct", "fidelity_intended_p50_ms", "fidelity_n",
            "fidelity_faithful"), _fidelity, shown_when=_measured("fidelity_deviation_p50_ms", "fidelity_n")),
    Column("errors", ("errors",), _errors, wrap=True),
    Column("queue phases (p50 ms)", ("queue_p50_ms", "submit_p50_ms", "run_p50_ms", "fetch_p50_ms",
                                     "download_p50_ms", "poll_interval_ms"), _phases, wrap=True,
           shown_when=_any("queue_p50_ms")),
    Column("batch job turnaround (p50 ms)", ("job_turnaround_p50_ms", "job_turnaround_max_ms", "batch_jobs",
                                             "mode", "batch_of"), _batch, shown_when=_any("job_turnaround_p50_ms")),
)
"""The figures the page's table shows, in order (after target, model, provider)."""

KEY_COLUMNS = ("target", "model", "provider")


def _check(columns: Sequence[Column]) -> None:
    unknown = sorted({f for c in columns for f in c.fields} - set(FIELDS))
    if unknown:
        raise RuntimeError(f"report columns name fields ProviderRow lacks: {', '.join(unknown)}")


_check(COLUMNS)


@dataclass(frozen=True)
class Table:
    """The page's provider table: the columns shown and, per row, its label and cells."""

    columns: list[Column]
    rows: list[tuple[str, ProviderRow, list[Cell]]]


NOT_FIGURES = frozenset({"schema_version", "target", "model", "provider", "run_id", "challenge_id", "variant", "kind",
                         "category", "withheld"})
"""Row fields that are not figures of the target (its identity, the split, the withheld reasons)."""


def _plain(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "—"
    if isinstance(value, float):
        if name.endswith("_ms"):
            return fmt_ms(value)
        if name.endswith("_usd"):
            return fmt_usd(value)
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class FigureRow:
    """One field of :class:`ProviderRow` across the targets: its name, description and each row's value."""

    name: str
    description: str
    values: list[str]


def all_figures(rows: Sequence[ProviderRow], shown_columns: Sequence[Column]) -> list[FigureRow]:
    """Every figure field of ``ProviderRow.model_fields`` that no column in ``shown_columns`` leads with, in
    the row's own order, one value per row (a withheld value reads "withheld"). Derived from the schema: a
    field the stats module adds appears here without a change to the report."""
    shown = {c.fields[0] for c in shown_columns}
    out = []
    for name, info in FIELDS.items():
        if name in NOT_FIGURES or name in shown:
            continue
        values = ["withheld" if name in r.withheld else _plain(name, getattr(r, name)) for r in rows]
        out.append(FigureRow(name, info.description or name, values))
    return out


def provider_page_table(rows: Sequence[ProviderRow], labels: Sequence[str]) -> Table:
    """The table of ``rows`` (``labels``: the page's name of each row, same order)."""
    shown = [dataclasses.replace(c, header=goodput_heading(rows)) if c.header == GOODPUT else c
             for c in COLUMNS if c.shown_when(rows)]
    return Table(shown, [(label, row, [c.render(row) for c in shown]) for label, row in zip(labels, rows,
                                                                                              strict=True)])


def export_rows(rows: Sequence[ProviderRow], labels: Sequence[str]) -> list[dict[str, Any]]:
    """``providers.json/.csv`` rows: every ProviderRow field (its dict form) plus the page's ``label``."""
    return [{**row.to_dict(), "label": label} for row, label in zip(rows, labels, strict=True)]
