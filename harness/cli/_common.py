"""Options and output helpers shared by the sub-commands.

Conventions: machine output (``--json``) goes to stdout, progress and human messages to stderr; Rich
styling only when stderr is a terminal and neither ``CI`` nor ``NO_COLOR`` is set. Exit codes come from
:class:`harness.errors.ExitCode` (documented in ``docs/exit-codes.md``); the ``EXIT_*`` names below are its
members under their older names.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from harness.errors import ExitCode, HarnessError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = ExitCode.OK
EXIT_CHECK_FAILED = ExitCode.CHECK_FAILED
EXIT_USAGE = ExitCode.USAGE


def plain_output() -> bool:
    """True when progress should be plain lines: not a terminal, ``CI=true`` or ``NO_COLOR`` set."""
    return (
        not sys.stderr.isatty()
        or os.environ.get("CI", "").lower() in ("1", "true", "yes")
        or "NO_COLOR" in os.environ
        or os.environ.get("TERM") == "dumb"
    )


def err_console() -> Console:
    """Console on stderr for progress and messages."""
    plain = plain_output()
    return Console(stderr=True, no_color=plain, force_terminal=False if plain else None, soft_wrap=True,
                   highlight=False)


def out_console() -> Console:
    """Console on stdout for tables meant to be read by people."""
    plain = not sys.stdout.isatty() or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return Console(no_color=plain, soft_wrap=True, highlight=False, width=200 if plain else None)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    click.echo(json.dumps(data, indent=2, default=_json_default, allow_nan=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def slo_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback: a latency objective such as ``10s`` or ``1500ms`` as milliseconds (a usage error naming
    the option when it is not a duration with a unit)."""
    from harness.stats.goodput import parse_slo

    if value is None:
        return None
    try:
        return parse_slo(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def db_option(f: F) -> F:
    """``--db PATH|URL``: the store (default the SQLite file ``results/harness.db``)."""
    return click.option(
        "--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=Path("results/harness.db"),
        show_default=True, envvar="HARNESS_DB",
        help="Store: a SQLite file path, or a postgresql://… URL (see docs/store.md).",
    )(f)


def handle_errors(f: F) -> F:
    """Turn a :class:`HarnessError` into a one-line message on stderr and its exit code (2 unless the error
    says otherwise, see :class:`~harness.errors.ExitCode`)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except HarnessError as exc:
            err_console().print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
            raise SystemExit(int(exc.exit_code)) from None

    return wrapper  # type: ignore[return-value]
