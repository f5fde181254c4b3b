"""Tables shared by the commands that print provider statistics (``stats``, ``run``, ``demo``).

No table cuts a target name or a number. A :class:`Sheet` (key columns naming a row, value columns grouped in
sections) is laid out by the first of these that fits the console's width without wrapping a cell:

1. one table, full names;
2. the same with grouping keys that hold one value in every row moved into the title, then with long target
   names shortened to their unique part (:func:`short_names`; ``…`` marks what is left out, and every row
   keeps a label of its own);
3. a table per section (requests, latency, …), a section's columns spread over as few tables as fit, with
   full or shortened names, whichever needs fewer tables (full names when equal), at most
   :data:`MAX_TABLES_PER_SECTION` per section;
4. a block per row: the full name, then ``header value`` pairs packed into lines.

``--wide`` prints the single full table whatever the width; ``--json`` is unaffected by any of this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.cli._common import out_console
from harness.stats.bymodel import ModelProvider, ModelView
from harness.stats.goodput import format_slo
from harness.stats.source import RunStats
from harness.stats.table import NOT_RECORDED, ProviderRow

WITHHELD = "n/a*"
ELLIPSIS = "…"
SEPARATORS = "-_/: "
"""Characters before which a shortened model name may end: it is cut between words of the name, never inside
one (``.`` is no separator, so ``gemini-2.5`` is never cut to ``gemini-2``)."""
SHORTEN_FROM = 14
"""Model parts of at most this many characters are never shortened (shortening them saves too little)."""
KEEP_AT_LEAST = 6
"""A shortened model part keeps at least this many characters."""
MEASURE_WIDTH = 100_000
MAX_TABLES_PER_SECTION = 2
"""Beyond this many tables per section the columns are too scattered to compare rows: print blocks instead."""


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def fmt_score(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


# --- names --------------------------------------------------------------------------------------------------

def _split(name: str) -> tuple[str, str]:
    """``model@provider`` into ``("model", "@provider")``; a name without ``@`` is all model."""
    at = name.rfind("@")
    return (name, "") if at <= 0 else (name[:at], name[at:])


def _cut_points(model: str) -> Iterable[int]:
    """Lengths at which ``model`` may be cut: just before each separator, shortest first."""
    return (i for i in range(KEEP_AT_LEAST, len(model) - 1) if model[i] in SEPARATORS)


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Each name with its model part shortened to its unique part: the shortest prefix, ending at a word of
    the name, that no other model in ``names`` starts with, then ``…``; the ``@provider`` part stays whole.

    ``gemini-3.1-flash-image-preview@google`` becomes ``gemini-3.1…@google`` next to ``gemini-3-pro…@fal``.
    Labels are unique, and each is either the name itself or a prefix of its model, ``…`` and its provider
    part. Should that fail for unusual names, every name is returned whole.
    """
    unique = list(dict.fromkeys(names))
    models = sorted({_split(n)[0] for n in unique})
    short: dict[str, str] = {}
    for model in models:
        short[model] = model
        if len(model) <= SHORTEN_FROM:
            continue
        for cut in _cut_points(model):
            prefix = model[:cut]
            if not any(other != model and other.startswith(prefix) for other in models):
                short[model] = prefix + ELLIPSIS
                break
    labels = {n: short[_split(n)[0]] + _split(n)[1] for n in unique}
    if len(set(labels.values())) != len(labels) or any(
            label != name and label in labels for name, label in labels.items()):
        return {n: n for n in unique}
    return labels


# --- sheets and layout --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Column:
    """A value column: its header (a line break where a narrow table may break it) and the section it joins
    when one table is too wide."""

    header: str
    section: str = ""
    field: str = ""
    """The row field whose withheld reason explains an ``n/a*`` in this column."""


@dataclass
class Sheet:
    """What a table shows: ``keys`` (headers of the columns naming a row, the target first) and value columns;
    each row is ``(key cells, value cells)``."""

    title: str | None
    keys: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)

    def sections(self) -> list[str]:
        return list(dict.fromkeys(c.section for c in self.columns))

    def only(self, section: str) -> Sheet:
        keep = [i for i, c in enumerate(self.columns) if c.section == section]
        title = f"{self.title} — {section}" if self.title and section else (self.title or section or None)
        return Sheet(title, self.keys, tuple(self.columns[i] for i in keep),
                     [(k, tuple(v[i] for i in keep)) for k, v in self.rows])

    def pick(self, indices: Sequence[int]) -> Sheet:
        """The sheet with only the value columns at ``indices``."""
        return Sheet(self.title, self.keys, tuple(self.columns[i] for i in indices),
                     [(k, tuple(v[i] for i in indices)) for k, v in self.rows])

    def renamed(self, labels: Mapping[str, str]) -> Sheet:
        return Sheet(self.title, self.keys, self.columns,
                     [((labels.get(k[0], k[0]), *k[1:]), v) for k, v in self.rows])


def _table(sheet: Sheet) -> Table:
    table = Table(title=sheet.title)
    for key in sheet.keys:
        table.add_column(key, no_wrap=True)
    for column in sheet.columns:
        table.add_column(column.header, no_wrap=True)
    for keys, values in sheet.rows:
        table.add_row(*keys, *values)
    return table


def _natural_width(console: Console, table: Table) -> int:
    """Width ``table`` takes when no cell wraps."""
    return Measurement.get(console, console.options.update_width(MEASURE_WIDTH), table).maximum


def _blocks(sheet: Sheet, width: int) -> list[RenderableType]:
    """A block per row: the row's full label on a line, then ``header value`` pairs packed per section."""
    out: list[RenderableType] = []
    if sheet.title:
        out.append(Text(sheet.title, style="italic"))
    for keys, values in sheet.rows:
        out.append(Text(" / ".join(keys), style="bold", overflow="fold"))
        for section in sheet.sections():
            items = [f"{' '.join(c.header.split())} {v}"
                     for c, v in zip(sheet.columns, values, strict=True) if c.section == section]
            if section:
                items.insert(0, f"{section}:")
            line = ""
            for item in items:
                if line and len(line) + 3 + len(item) > width - 2:
                    out.append(Text("  " + line, overflow="fold"))
                    line = ""
                line = f"{line} · {item}" if line and not line.endswith(":") else f"{line} {item}".strip()
            if line:
                out.append(Text("  " + line, overflow="fold"))
    return out


def _fits(console: Console, sheet: Sheet) -> bool:
    return _natural_width(console, _table(sheet)) <= console.width


def _packed(sheet: Sheet, console: Console) -> list[Sheet] | None:
    """``sheet`` as consecutive tables, each section's columns packed greedily into as few tables as fit;
    ``None`` when a single column with the key columns is already too wide."""
    parts: list[Sheet] = []
    for section in sheet.sections():
        part = sheet.only(section)
        chunk: list[int] = []
        for i in range(len(part.columns)):
            if not _fits(console, part.pick([*chunk, i])):
                if not chunk:
                    return None
                parts.append(part.pick(chunk))
                chunk = []
                if not _fits(console, part.pick([i])):
                    return None
            chunk.append(i)
        parts.append(part.pick(chunk))
    return parts


def _constant_keys_to_title(sheet: Sheet) -> Sheet:
    """Key columns after the target that hold one value in every row move into the title (``kind:
    text-to-image``): they tell no row from another."""
    if len(sheet.rows) < 2:
        return sheet
    constant = [i for i in range(1, len(sheet.keys)) if len({k[i] for k, _ in sheet.rows}) == 1]
    if not constant:
        return sheet
    note = ", ".join(f"{sheet.keys[i]} {sheet.rows[0][0][i]}" for i in constant)
    keep = [i for i in range(len(sheet.keys)) if i not in constant]
    return Sheet(f"{sheet.title} ({note})" if sheet.title else note, tuple(sheet.keys[i] for i in keep),
                 sheet.columns, [(tuple(k[i] for i in keep), v) for k, v in sheet.rows])


def layout(sheet: Sheet, console: Console, *, wide: bool = False) -> list[RenderableType]:
    """What to print for ``sheet`` on ``console`` (see the module docstring for the order of layouts)."""
    if wide or _fits(console, sheet):
        return [_table(sheet)]
    compact = _constant_keys_to_title(sheet)
    shortened = compact.renamed(short_names([k[0] for k, _ in compact.rows]))
    names = [compact] if shortened.rows == compact.rows else [compact, shortened]
    for candidate in names[1:] if compact is sheet else names:
        if _fits(console, candidate):
            return [_table(candidate)]
    packings = [p for p in (_packed(c, console) for c in names) if p is not None]
    if packings:
        best = min(packings, key=len)
        if len(best) <= MAX_TABLES_PER_SECTION * len(sheet.sections()):
            return [_table(p) for p in best]
    return _blocks(sheet, console.width)


def print_sheet(sheet: Sheet, console: Console | None = None, *, wide: bool = False) -> None:
    """Print ``sheet`` (nothing when it has no rows) laid out for ``console`` (default: stdout)."""
    if not sheet.rows:
        return
    console = console or out_console()
    if wide:
        table = _table(sheet)
        console = Console(file=console.file, width=max(console.width, _natural_width(console, table)),
                          no_color=console.no_color, soft_wrap=True, highlight=False)
    for renderable in layout(sheet, console, wide=wide):
        console.print(renderable)


# --- the provider table -------------------------------------------------------------------------------------

def _ms_cell(row: ProviderRow, column: str, with_ci: bool = False) -> str:
    if column in row.withheld:
        return WITHHELD
    value = getattr(row, column)
    if value is None:
        return "—"
    text = fmt_ms(value)
    if with_ci:
        low, high = getattr(row, f"{column[:-3]}_ci_low_ms"), getattr(row, f"{column[:-3]}_ci_high_ms")
        if low is not None and high is not None:
            text += f" ({fmt_ms(low)}–{fmt_ms(high)})"
    return text


def _success_cell(row: ProviderRow) -> str:
    low, high = row.success_ci_low, row.success_ci_high
    ci = f" ({fmt_pct(low)}–{fmt_pct(high)})" if low is not None and high is not None else ""
    return fmt_pct(row.success_rate) + ci


def _goodput_cell(row: ProviderRow) -> str:
    if row.goodput is None:
        return WITHHELD if "goodput" in row.withheld else "—"
    low, high = row.goodput_ci_low, row.goodput_ci_high
    ci = f" ({fmt_pct(low)}–{fmt_pct(high)})" if low is not None and high is not None else ""
    return fmt_pct(row.goodput) + ci


def goodput_header(rows: Sequence[ProviderRow]) -> str:
    """The goodput column's header: the objective and the time measured (``goodput ≤ 10 s\n(time to
    image, 95% CI)``)."""
    judged = next((r for r in rows if r.slo_ms is not None), None)
    if judged is None or judged.slo_ms is None:
        return "goodput"
    measure = (judged.goodput_measure or "").replace("_", " ")
    return f"goodput ≤ {format_slo(judged.slo_ms)}\n({measure}, 95% CI)"


def _size_cell(row: ProviderRow) -> str:
    if row.size_as_asked is None:
        return WITHHELD if "size_as_asked" in row.withheld else "—"
    low, high = row.size_as_asked_ci_low, row.size_as_asked_ci_high
    ci = f" ({100 * low:.0f}–{100 * high:.0f}%)" if low is not None and high is not None else ""
    return f"{100 * row.size_as_asked:.0f}%{ci}"


def _tail_cell(row: ProviderRow) -> str:
    if "p95_with_failures_ms" in row.withheld:
        return WITHHELD
    if row.p95_with_failures_censored:
        return "> timeout"
    return fmt_ms(row.p95_with_failures_ms)


def _signed_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.0f}"


def _deviation_cell(row: ProviderRow) -> str:
    """Median deviation with its share of the intended median; ``!`` marks a target beyond 5 %."""
    if row.fidelity_deviation_p50_ms is None:
        return WITHHELD if "fidelity_deviation_p50_ms" in row.withheld else "—"
    pct = "" if row.fidelity_deviation_pct is None else f" ({row.fidelity_deviation_pct:+.1f}%)"
    return _signed_ms(row.fidelity_deviation_p50_ms) + pct + ("" if row.fidelity_faithful else " !")


Cell = Callable[[ProviderRow], str]
REQUESTS, LATENCY, TIME_TO_IMAGE = "requests and cost", "latency (ms)", "time to image and client time (ms)"
FIDELITY = "sandbox fidelity: measured − intended (ms)"
BATCH = ("batch jobs: a request's latency is its job's turnaround (ms); no latency intervals for batch rows, "
         "as a job's requests share its time")


def _ms_column(header: str, section: str, field: str, *, with_ci: bool = False) -> tuple[Column, Cell]:
    """A column showing the row's ``field`` in ms (with its interval when ``with_ci``)."""
    return Column(header, section, field), lambda r: _ms_cell(r, field, with_ci)


def _stat_columns(rows: Sequence[ProviderRow]) -> list[tuple[Column, Cell]]:
    """The provider table's value columns; a newer figure's column appears once any row has data for it."""
    def has(attr: str) -> bool:
        return any(getattr(r, attr) for r in rows)

    columns: list[tuple[Column, Cell]] = [
        (Column("n", REQUESTS), lambda r: str(r.n)),
        (Column("not sent", REQUESTS), lambda r: str(r.not_sent)),
        (Column("success\n(95% CI)", REQUESTS), _success_cell),
        (Column(goodput_header(rows), REQUESTS, "goodput"), _goodput_cell),
        (Column("1st try", REQUESTS), lambda r: fmt_pct(r.first_attempt_success_rate)),
        (Column("429s", REQUESTS), lambda r: fmt_pct(r.rate_limited_share)),
        (Column("size as\nasked", REQUESTS, "size_as_asked"), _size_cell),
        (Column("img/min", REQUESTS), lambda r: "—" if r.images_per_min is None else f"{r.images_per_min:.1f}"),
        (Column("$/image", REQUESTS), lambda r: fmt_usd(r.cost_per_image_usd)),
        _ms_column("p50\n(95% CI)", LATENCY, "p50_ms", with_ci=True),
        _ms_column("p90", LATENCY, "p90_ms"),
        _ms_column("p95\n(95% CI)", LATENCY, "p95_ms", with_ci=True),
        _ms_column("p99", LATENCY, "p99_ms"),
        (Column("p95 incl.\nfailures", LATENCY, "p95_with_failures_ms"), _tail_cell),
        _ms_column("TTFB\np50", LATENCY, "ttfb_p50_ms"),
        _ms_column("TTFB\np95", LATENCY, "ttfb_p95_ms"),
        _ms_column("time to image\np50 (95% CI)", TIME_TO_IMAGE, "time_to_image_p50_ms", with_ci=True),
        _ms_column("time to\nimage p95", TIME_TO_IMAGE, "time_to_image_p95_ms"),
        _ms_column("latency with\nconnect p50", TIME_TO_IMAGE, "latency_with_connect_p50_ms"),
        _ms_column("client\np50", TIME_TO_IMAGE, "client_p50_ms"),
        (Column("intended\np50", FIDELITY), lambda r: fmt_ms(r.fidelity_intended_p50_ms)),
        (Column("deviation p50\n(! beyond 5 %)", FIDELITY, "fidelity_deviation_p50_ms"), _deviation_cell),
        (Column("deviation\np95", FIDELITY), lambda r: _signed_ms(r.fidelity_deviation_p95_ms)),
        (Column("n", FIDELITY), lambda r: str(r.fidelity_n)),
        (Column("mode", BATCH), lambda r: _mode_cell(r, rows)),
        (Column("jobs", BATCH), lambda r: "—" if r.batch_jobs is None else str(r.batch_jobs)),
        _ms_column("job turnaround\np50", BATCH, "job_turnaround_p50_ms"),
        _ms_column("job turnaround\nmax", BATCH, "job_turnaround_max_ms"),
    ]
    shown = {"not sent": has("not_sent"), goodput_header(rows): any(r.slo_ms is not None for r in rows), "size as\nasked": has("size_as_asked_n"),
             "time to image\np50 (95% CI)": has("time_to_image_n"), "time to\nimage p95": has("time_to_image_n"),
             "latency with\nconnect p50": has("latency_with_connect_n"), "client\np50": has("client_n")}
    batch = any(r.mode == "batch" for r in rows)
    return [(c, cell) for c, cell in columns
            if shown.get(c.header, True) and (c.section != FIDELITY or has("fidelity_n"))
            and (c.section != BATCH or batch)]


def _mode_cell(row: ProviderRow, rows: Sequence[ProviderRow]) -> str:
    """``batch`` (``batch of <twin>`` when its twin is in the table, right above it) or ``interactive``."""
    if row.mode != "batch":
        return row.mode or "—"
    if row.batch_of and any(r.target == row.batch_of for r in rows):
        return f"batch of {short_names([row.batch_of, row.target]).get(row.batch_of, row.batch_of)}"
    return "batch"


def _as_rows(rows: Iterable[ProviderRow | Mapping[str, Any]]) -> list[ProviderRow]:
    return [r if isinstance(r, ProviderRow) else ProviderRow.from_dict(r) for r in rows]


def _key_headers(rows: Sequence[ProviderRow]) -> list[str]:
    return [k for k in ("run_id", "challenge_id", "variant", "kind", "category")
            if any(k in r.group_keys() for r in rows)]


def _keys(row: ProviderRow, keys: Sequence[str]) -> tuple[str, ...]:
    groups = row.group_keys()
    return (row.target, *(str(groups.get(k, "")) for k in keys))


def stats_sheet(rows: Sequence[ProviderRow], title: str | None = None) -> Sheet:
    """The provider table as a :class:`Sheet` (what :func:`print_stats_table` prints first)."""
    keys = _key_headers(rows)
    columns = _stat_columns(rows)
    sheet = Sheet(title, ("target", *keys), tuple(c for c, _ in columns))
    sheet.rows = [(_keys(r, keys), tuple(cell(r) for _, cell in columns)) for r in rows]
    return sheet


def print_stats_table(rows: Sequence[ProviderRow | Mapping[str, Any]], title: str | None = None, *,
                      console: Console | None = None, wide: bool = False) -> None:
    """The provider table: reliability, latency percentiles with 95 % intervals, TTFB, time to image, size
    as asked, throughput, cost; then failures by class, queue phases, invariant violations and the reasons
    for withheld figures. Rows may be :class:`ProviderRow` or their dict form (``provider_table``)."""
    typed = _as_rows(rows)
    console = console or out_console()
    sheet = stats_sheet(typed, title)
    print_sheet(sheet, console, wide=wide)
    _print_details(typed, _key_headers(typed), console, wide, {c.field for c in sheet.columns if c.field})


def print_run_stats(stats: RunStats, title: str | None = None, *, console: Console | None = None,
                    wide: bool = False) -> None:
    """A stored run's provider table (:func:`harness.stats.source.run_stats`) and, for a sandbox run that
    could not keep to its profiles, the fidelity warning: what ``harness stats`` and ``harness run`` print."""
    console = console or out_console()
    print_stats_table(stats.rows, title, console=console, wide=wide)
    if stats.fidelity_warning:
        console.print(f"[bold yellow]warning:[/] {stats.fidelity_warning}", soft_wrap=False)


def _row_label(row: ProviderRow, keys: Sequence[str]) -> str:
    return " / ".join(_keys(row, keys))


def _print_details(rows: Sequence[ProviderRow], keys: Sequence[str], console: Console, wide: bool,
                   shown: set[str]) -> None:
    failures = [r for r in rows if r.errors]
    if failures:
        kinds = sorted({k for r in failures for k in r.errors})
        errors = Sheet("failed requests by class", ("target", *keys),
                       tuple(Column(k) for k in (*kinds, "billed failures")))
        errors.rows = [(_keys(r, keys), (*(str(r.errors.get(k, 0)) for k in kinds), str(r.billed_failures)))
                       for r in failures]
        print_sheet(errors, console, wide=wide)
    queued = [r for r in rows if r.queue_p50_ms is not None or "queue_p50_ms" in r.withheld]
    if queued:
        names = ("submit_p50_ms", "queue_p50_ms", "queue_p95_ms", "run_p50_ms", "fetch_p50_ms", "download_p50_ms")
        phases = Sheet("queue phases (ms)", ("target", *keys),
                       (*(Column(h.replace("_", " ").removesuffix(" ms"), field=h) for h in names),
                        Column("poll interval")))
        phases.rows = [(_keys(r, keys), (*(_ms_cell(r, c) for c in names), fmt_ms(r.poll_interval_ms)))
                       for r in queued]
        print_sheet(phases, console, wide=wide)
        shown |= set(names)
    for r in rows:
        if r.not_sent:
            console.print(f"not sent {_row_label(r, keys)}: {r.not_sent} request(s) recorded as never sent "
                          "(left out of n, success and latency)", markup=False, soft_wrap=False)
    for r in rows:
        if r.invariant_violations:
            ids = ", ".join(map(str, r.invariant_attempt_ids))
            console.print(f"[bold red]invariant violated[/] {_row_label(r, keys)}: {r.invariant_violations} "
                          f"attempt(s) break 0 <= TTFB <= latency or queue + run <= latency (attempt ids {ids})",
                          soft_wrap=False)
    print_withheld(rows, keys, console, only=shown)


_NEEDED = re.compile(r"< (\d+) needed")
_FAMILIES = {"time_to_image": "time to image", "latency_with_connect": "latency with connect",
             "client": "client time", "size_as_asked": "size as asked", "fidelity_deviation": "sandbox fidelity"}


def _family(column: str) -> str:
    stem = re.sub(r"_p\d+(_ms)?$", "", column.removesuffix("_ms"))
    return _FAMILIES.get(stem, stem)


def print_withheld(rows: Sequence[ProviderRow | Mapping[str, Any]], keys: Sequence[str] = (),
                   console: Console | None = None, *, only: set[str] | None = None) -> None:
    """One line per reason a statistic is withheld (of those in ``only``, the fields of the columns printed):
    the statistics, how many values they need and which rows lack them (the exact reason of every cell is in
    ``--json``'s ``withheld``). Figures the run never recorded share one line."""
    console = console or out_console()
    notes: dict[tuple[str, str], list[str]] = {}
    unrecorded: list[str] = []
    for r in _as_rows(rows):
        for column, reason in r.withheld.items():
            if only is not None and column not in only and reason != NOT_RECORDED:
                continue
            if reason == NOT_RECORDED:
                unrecorded.append(_family(column))
                continue
            match = _NEEDED.search(reason)
            needs = f"needs at least {match.group(1)} values for a distribution-free 95 % interval" if match \
                else reason
            label = _row_label(r, keys)
            entry = notes.setdefault((column.removesuffix("_ms").replace("_", " "), needs), [])
            if label not in entry:
                entry.append(label)
    merged: dict[tuple[str, str], list[str]] = {}
    for (column, needs), labels in sorted(notes.items()):
        shown = ", ".join(labels) if len(labels) <= 4 else f"{len(labels)} rows"
        merged.setdefault((needs, shown), []).append(column)
    for (needs, shown), columns in sorted(merged.items(), key=lambda item: item[1]):
        console.print(f"{WITHHELD} {', '.join(columns)}: {needs} ({shown})", markup=False, soft_wrap=False)
    if unrecorded:
        console.print(f"{WITHHELD} {', '.join(dict.fromkeys(unrecorded))}: {NOT_RECORDED}", markup=False,
                      soft_wrap=False)


def print_scores_table(records: Sequence[dict[str, Any]], title: str, *, console: Console | None = None,
                       wide: bool = False) -> None:
    """CLIP score summary: one row per target (and split) and metric, mean with its 95 % interval."""
    by = [k for k in records[0] if k not in _SCORE_FIELDS] if records else []
    sheet = Sheet(title, (*by, "metric"),
                  tuple(Column(h) for h in ("better", "mean", "95 % interval", "images", "prompts")))
    sheet.rows = [((*(str(r[k]) for k in by), str(r["metric"])),
                   ("higher" if r["higher_is_better"] else "lower", fmt_score(r["mean"]),
                    f"{fmt_score(r['low'])}–{fmt_score(r['high'])}", str(r["n_images"]), str(r["n_prompts"])))
                  for r in records]
    print_sheet(sheet, console, wide=wide)


_SCORE_FIELDS = {"scorer", "metric", "higher_is_better", "n_images", "n_prompts", "mean", "low", "high",
                 "truncated_share"}


# --- one model, every provider ------------------------------------------------------------------------------

def _interval_ms(entry: ModelProvider, field: str) -> str:
    if field in entry.withheld:
        return WITHHELD
    value = getattr(entry, field)
    if value is None:
        return "—"
    stem = field.removesuffix("_ms")
    low, high = getattr(entry, f"{stem}_ci_low_ms"), getattr(entry, f"{stem}_ci_high_ms")
    return fmt_ms(value) + (f" ({fmt_ms(low)}–{fmt_ms(high)})" if low is not None and high is not None else "")


def _interval_pct(value: float | None, low: float | None, high: float | None, withheld: bool = False) -> str:
    if value is None:
        return WITHHELD if withheld else "—"
    return fmt_pct(value) + (f" ({fmt_pct(low)}–{fmt_pct(high)})" if low is not None and high is not None else "")


def cost_decimals(values: Iterable[float | None]) -> int:
    """Decimals (4 to 6) that show different costs differently: $0.03897 beside $0.03900, not $0.0390 twice."""
    known = sorted({v for v in values if v is not None and math.isfinite(v)})
    for decimals in range(4, 7):
        if len({f"{v:.{decimals}f}" for v in known}) == len(known):
            return decimals
    return 6


def _usd(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"${value:.{decimals}f}"


def _cost_cell(entry: ModelProvider, decimals: int = 4) -> str:
    low, high = entry.cost_per_image_ci_low_usd, entry.cost_per_image_ci_high_usd
    ci = (f" ({_usd(low, decimals)}–{_usd(high, decimals)})"
          if low is not None and high is not None and math.isfinite(high) else "")
    return _usd(entry.cost_per_image_usd, decimals) + ci


def model_sheet(view: ModelView, title: str | None = None) -> Sheet:
    """The providers of one model in rank order as a :class:`Sheet` (what :func:`print_model_views` prints)."""
    section, latency = "requests and cost", "latency (ms)"
    decimals = cost_decimals(e.cost_per_image_usd for e in view.providers)
    columns: list[tuple[Column, Callable[[ModelProvider], str]]] = [
        (Column("rank", section), lambda e: "—" if e.rank is None else str(e.rank)),
        (Column("n", section), lambda e: str(e.n)),
        (Column("success\n(95% CI)", section),
         lambda e: _interval_pct(e.success_rate, e.success_ci_low, e.success_ci_high)),
    ]
    judged = next((e for e in view.providers if e.slo_ms is not None), None)
    if judged is not None and judged.slo_ms is not None:
        columns.append((Column(f"goodput ≤ {format_slo(judged.slo_ms)}\n(95% CI)", section, "goodput"),
                        lambda e: _interval_pct(e.goodput, e.goodput_ci_low, e.goodput_ci_high,
                                                "goodput" in e.withheld)))
    columns += [
        (Column("$/image\n(95% CI)", section), lambda e: _cost_cell(e, decimals)),
        (Column("p50\n(95% CI)", latency, "p50_ms"), lambda e: _interval_ms(e, "p50_ms")),
        (Column("p95\n(95% CI)", latency, "p95_ms"), lambda e: _interval_ms(e, "p95_ms")),
        (Column("TTFB p50\n(95% CI)", latency, "ttfb_p50_ms"), lambda e: _interval_ms(e, "ttfb_p50_ms")),
    ]
    if any(e.time_to_image_p50_ms is not None for e in view.providers):
        columns.append((Column("time to image\np50 (95% CI)", latency, "time_to_image_p50_ms"),
                        lambda e: _interval_ms(e, "time_to_image_p50_ms")))
    sheet = Sheet(f"{title}: {view.model}" if title else view.model, ("provider",), tuple(c for c, _ in columns))
    sheet.rows = [((e.label,), tuple(cell(e) for _, cell in columns)) for e in view.providers]
    return sheet


_VIEW_FIELDS = ("p50_ms", "p95_ms", "ttfb_p50_ms", "time_to_image_p50_ms", "goodput")


def _print_view_withheld(view: ModelView, console: Console) -> None:
    """One line per reason a figure of the model's table is withheld, naming the providers it concerns."""
    notes: dict[tuple[str, str], list[str]] = {}
    for entry in view.providers:
        for column, reason in entry.withheld.items():
            if column not in _VIEW_FIELDS:
                continue
            match = _NEEDED.search(reason)
            needs = (f"needs at least {match.group(1)} values for a distribution-free 95 % interval" if match
                     else reason)
            notes.setdefault((column.removesuffix("_ms").replace("_", " "), needs), []).append(entry.label)
    for (column, needs), labels in notes.items():
        console.print(f"  {WITHHELD} {column}: {needs} ({', '.join(labels)})", markup=False, soft_wrap=False)


def print_model_views(views: Sequence[ModelView], title: str | None = None, *, console: Console | None = None,
                      wide: bool = False) -> None:
    """Per model served by two or more providers: its providers in rank order, then a line per difference the
    data support and how many pairs show none; then the models with one provider, a line each; then the
    methods."""
    console = console or out_console()
    ranked = [v for v in views if v.note is None]
    if ranked:
        console.print(f"{title + ': ' if title else ''}the providers of each model, ranked by {ranked[0].ranked_on}",
                      markup=False, soft_wrap=False)
    else:
        console.print("no model is served by two or more providers in this run: nothing to rank", markup=False,
                      soft_wrap=False)
    for view in ranked:
        print_sheet(model_sheet(view), console, wide=wide)
        for difference in view.supported:
            console.print(f"  {difference.statement}", markup=False, soft_wrap=False)
        for metric in dict.fromkeys(d.metric for d in view.differences):
            pairs = [d for d in view.differences if d.metric == metric]
            tested = [d for d in pairs if d.test is not None]
            quiet = len(tested) - sum(d.supported for d in tested)
            name = metric.replace("_", " ")
            if quiet:
                console.print(f"  {name}: {quiet} of {len(pairs)} pair(s) show no difference the data support",
                              markup=False, soft_wrap=False)
            for d in pairs:
                if d.test is None:
                    console.print(f"  {name}: not tested: {d.reason}", markup=False, soft_wrap=False)
        _print_view_withheld(view, console)
    for view in views:
        if view.note is not None:
            console.print(f"{view.model}: {view.note}", markup=False, soft_wrap=False)
    if ranked:
        for figure, method in ranked[0].methods.items():
            console.print(f"method, {figure.replace('_', ' ')}: {method}", markup=False, soft_wrap=False)
