"""``harness challenges validate|list``: check a suite before spending money on it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from harness.challenges import validate
from harness.cli._common import EXIT_CHECK_FAILED, err_console, out_console, print_json

CHALLENGES_JSON_SCHEMA_VERSION = 1
"""Version of ``harness challenges validate/list --json``: the validation summary, and each listed challenge (its frozen form, as stored with a run) with ``schema_version`` added."""


@click.group()
def challenges() -> None:
    """Validate and list challenge suites."""


SUITE = click.Path(exists=True, path_type=Path)
"""A suite folder or one challenge file; a path that does not exist is a usage error (exit 2)."""
OUTSIDE_REFS = click.option(
    "--allow-outside-refs", is_flag=True,
    help="Accept reference images outside the suite folder (and the assets folder beside it). Without it a "
         "reference that resolves elsewhere, through '..', an absolute path or a symlink, is a problem: it "
         "would be sent to every provider and published in the report.")


@challenges.command("validate")
@click.argument("path", type=SUITE, default=Path("challenges/starter"))
@click.option("--json", "as_json", is_flag=True, help="Print problems as JSON.")
@OUTSIDE_REFS
def validate_cmd(path: Path, as_json: bool, allow_outside_refs: bool) -> None:
    """Report every problem in PATH (a suite folder or file) with file, field and reason; exit 1 if any."""
    found, problems = validate(path, allow_outside_refs=allow_outside_refs)
    if as_json:
        print_json({"schema_version": CHALLENGES_JSON_SCHEMA_VERSION, "challenges": len(found),
                    "problems": [{"file": p.file, "field": p.field, "reason": p.reason} for p in problems]})
    else:
        console = err_console()
        for p in problems:
            console.print(f"[red]✗[/] {escape(p.file)}: [bold]{escape(p.field)}[/]: {escape(p.reason)}", markup=True)
        status = "[green]ok[/]" if not problems else f"[red]{len(problems)} problem(s)[/]"
        console.print(f"{len(found)} valid challenge(s) in {escape(str(path))}; {status}", markup=True)
    if problems:
        raise SystemExit(EXIT_CHECK_FAILED)


@challenges.command("list")
@click.argument("path", type=SUITE, default=Path("challenges/starter"))
@click.option("--json", "as_json", is_flag=True, help="Print the challenges as JSON.")
@OUTSIDE_REFS
def list_cmd(path: Path, as_json: bool, allow_outside_refs: bool) -> None:
    """List the challenges of a suite with kind, category and variants."""
    found, problems = validate(path, allow_outside_refs=allow_outside_refs)
    if as_json:
        print_json([{"schema_version": CHALLENGES_JSON_SCHEMA_VERSION, **c.frozen()} for c in found])
    else:
        table = Table("id", "kind", "category", "variants", "refs", "title")
        for c in found:
            table.add_row(c.id, c.kind.value, c.category, ", ".join(c.prompts), str(len(c.references)),
                          escape(c.title))
        out_console().print(table)
    if problems:
        err_console().print(f"{len(problems)} problem(s); run `harness challenges validate {escape(str(path))}`")
        raise SystemExit(EXIT_CHECK_FAILED)
