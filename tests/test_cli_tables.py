"""CLI tables never cut a target name or a price: at 80, 120 and 200 columns every row keeps a label of its
own (the full name or its unique short form) and every price appears whole."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from harness.challenges import load
from harness.cli.tables import (
    ELLIPSIS,
    Column,
    Sheet,
    fmt_usd,
    print_sheet,
    print_stats_table,
    short_names,
    stats_sheet,
)
from harness.run import RunOptions, start_run
from harness.stats.source import effective_timeout_ms, stats_frame_columns
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from tests.test_compare_sandbox import write_suite

WIDTHS = (80, 120, 200)


@pytest.fixture(scope="module")
def catalog_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ProviderRow]]:
    """Rows of a real sandbox run of every catalog target (five Gemini targets among them), per target and
    per target and kind."""
    root = tmp_path_factory.mktemp("tables")
    chosen = select(load_targets(), ["*"])
    options = RunOptions(sandbox=True, time_scale=0.01, samples=1, concurrency=4, respect_limits=False, seed=3)
    db = root / "harness.db"
    run_id = start_run(db, load(write_suite(root / "suite")), chosen, resolve_keys(chosen, sandbox=True),
                       options).run_id
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [run_id], columns=stats_frame_columns(store, ("target",)))
    timeout = effective_timeout_ms(info)
    return {"target": provider_rows(frame, timeout_ms=timeout),
            "kind": provider_rows(frame, ("target", "kind"), timeout_ms=timeout),
            "goodput": provider_rows(frame, timeout_ms=timeout, slo_ms=1500.0)}


def render(width: int, print_to: object, *args: object, **kwargs: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, force_terminal=False, soft_wrap=True,
                      highlight=False)
    assert callable(print_to)
    print_to(*args, console=console, **kwargs)
    return buffer.getvalue()


def appears_whole(text: str, output: str) -> bool:
    """``text`` in ``output`` as a cell or line of its own, not cut and not inside a longer word."""
    return re.search(rf"(^|[│ ]){re.escape(text)}($|[│ ])", output, re.M) is not None


def is_short_form(label: str, name: str) -> bool:
    if label == name:
        return True
    head, _, tail = label.partition(ELLIPSIS)
    return bool(head) and name.startswith(head) and name.endswith(tail) and len(label) < len(name)


def assert_readable(output: str, names: Sequence[str], width: int, *, prices: Sequence[str] = ()) -> None:
    """Every name appears whole (itself or one unique short form), every price appears whole, no line is wider
    than the console and no ``…`` is left outside the names' short forms (nothing else was cut)."""
    short = short_names(names)
    assert len(set(short.values())) == len(short), "two rows share a label"
    shown: set[str] = set()
    for name in names:
        labels = {label for label in (name, short[name]) if appears_whole(label, output)}
        assert labels, f"{name!r} cut at width {width}:\n{output}"
        assert all(is_short_form(label, name) for label in labels)
        shown |= labels
    for price in prices:
        assert appears_whole(price, output), f"{price} cut at width {width}"
    assert max(len(line) for line in output.splitlines()) <= width
    rest = output
    for label in sorted(shown, key=len, reverse=True):
        rest = rest.replace(label, "")
    assert ELLIPSIS not in rest, f"something was truncated at width {width}:\n{output}"


@pytest.mark.parametrize("width", WIDTHS)
def test_every_target_and_price_appears_whole_at_common_terminal_widths(
        catalog_rows: dict[str, list[ProviderRow]], width: int) -> None:
    rows = catalog_rows["target"]
    assert sum(r.target.startswith("gemini") for r in rows) >= 5
    output = render(width, print_stats_table, rows, title="run")
    prices = [fmt_usd(r.cost_per_image_usd) for r in rows if r.cost_per_image_usd is not None]
    assert prices
    assert_readable(output, [r.target for r in rows], width, prices=prices)


@pytest.mark.parametrize("width", WIDTHS)
def test_rows_split_by_kind_stay_distinguishable(catalog_rows: dict[str, list[ProviderRow]], width: int) -> None:
    rows = catalog_rows["kind"]
    assert len({r.kind for r in rows}) == 1, "one kind: before, these rows all read 'gemin… │ text…'"
    output = render(width, print_stats_table, rows, title="run")
    assert_readable(output, [r.target for r in rows], width)
    assert "text-to-image" in output


def test_a_wide_terminal_shows_full_names(catalog_rows: dict[str, list[ProviderRow]]) -> None:
    rows = catalog_rows["target"]
    output = render(200, print_stats_table, rows, title="run")
    assert all(appears_whole(r.target, output) for r in rows)
    assert ELLIPSIS not in output
    assert all("time_to_image_p99_ms" in r.withheld for r in rows) and "time to image p99" not in output, \
        "notes explain the n/a* cells printed; --json keeps every reason"


def test_wide_prints_one_table_whatever_the_width(catalog_rows: dict[str, list[ProviderRow]]) -> None:
    rows = catalog_rows["target"]
    output = render(80, print_stats_table, rows, title="run", wide=True)
    first = output.split("┗")[0]
    assert all(appears_whole(r.target, first) for r in rows)
    assert "$/image" in first and "p50" in first


def test_a_very_narrow_terminal_gets_a_block_per_target(catalog_rows: dict[str, list[ProviderRow]]) -> None:
    rows = catalog_rows["target"]
    output = render(60, print_stats_table, rows, title="run")
    main = re.split(r"^(?:failed requests by class|queue phases)", output, flags=re.M)[0]
    assert "┏" not in main, "no table of a column or two per screen"
    for r in rows:
        assert re.search(rf"^{re.escape(r.target)}$", output, re.M), "each block opens with the full name"
    assert_readable(output, [r.target for r in rows], 60,
                    prices=[fmt_usd(r.cost_per_image_usd) for r in rows if r.cost_per_image_usd is not None])


names_strategy = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.@", min_size=1, max_size=48).filter(
        lambda s: s.strip("@") == s),
    min_size=1, max_size=25, unique=True)


@settings(max_examples=150, deadline=None)
@given(names_strategy)
def test_short_names_are_unique_and_each_a_form_of_its_own_name(names: list[str]) -> None:
    labels = short_names(names)
    assert set(labels) == set(names)
    assert len(set(labels.values())) == len(names)
    for name, label in labels.items():
        assert is_short_form(label, name)


@settings(max_examples=40, deadline=None)
@given(names_strategy, st.sampled_from(WIDTHS))
def test_any_target_names_print_whole_at_any_common_width(names: list[str], width: int) -> None:
    columns = tuple(Column(h, s) for h, s in (("n", "a"), ("success\n(95% CI)", "a"), ("$/image", "a"),
                                              ("p50\n(95% CI)", "b"), ("p95\n(95% CI)", "b"), ("TTFB\np50", "b")))
    sheet = Sheet("random", ("target",), columns)
    sheet.rows = [((n,), ("12", "100.0% (75.8%–100.0%)", f"${i / 7:.4f}", "1,689 (1,385–11,189)",
                          "n/a*", "18")) for i, n in enumerate(names)]
    output = render(width, print_sheet, sheet)
    assert_readable(output, names, width, prices=[f"${i / 7:.4f}" for i in range(len(names))])


def test_every_column_names_a_field_of_the_typed_row(catalog_rows: dict[str, list[ProviderRow]]) -> None:
    sheet = stats_sheet(catalog_rows["target"])
    assert {c.field for c in sheet.columns if c.field} <= set(ProviderRow.model_fields)
    assert len(sheet.columns) > 10


@pytest.mark.parametrize("width", WIDTHS)
def test_goodput_and_its_objective_print_whole_beside_every_target(
        catalog_rows: dict[str, list[ProviderRow]], width: int) -> None:
    rows = catalog_rows["goodput"]
    output = render(width, print_stats_table, rows, title="run")
    assert_readable(output, [r.target for r in rows], width,
                    prices=[fmt_usd(r.cost_per_image_usd) for r in rows if r.cost_per_image_usd is not None])
    flat = " ".join(output.split())
    assert "goodput ≤ 1.5 s" in flat
    for r in rows:
        assert r.goodput is not None and r.goodput_ci_low is not None and r.goodput_ci_high is not None
        cell = f"{100 * r.goodput:.1f}% ({100 * r.goodput_ci_low:.1f}%–{100 * r.goodput_ci_high:.1f}%)"
        assert cell in output, f"goodput cell {cell} cut at width {width}"
