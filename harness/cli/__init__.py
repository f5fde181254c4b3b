"""The ``harness`` command: a click group whose sub-commands live one per module and load lazily.

The CLI only parses options and prints; the work lives in the library modules. Every option can also be
set through an environment variable ``HARNESS_<COMMAND>_<OPTION>`` (click's ``auto_envvar_prefix``), and a
``.env`` file in the working directory is read without overriding the environment.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from harness import __version__

COMMANDS: dict[str, str] = {
    "run": "harness.cli.run:run",
    "runs": "harness.cli.runs:runs",
    "stats": "harness.cli.stats:stats",
    "compare": "harness.cli.compare:compare",
    "plan": "harness.cli.plan:plan",
    "export": "harness.cli.export:export",
    "challenges": "harness.cli.challenges:challenges",
    "targets": "harness.cli.targets:targets",
    "sandbox": "harness.cli.sandbox:sandbox",
    "score": "harness.cli.score:score",
    "ratings": "harness.cli.ratings:ratings",
    "votes": "harness.cli.votes:votes",
    "arena": "harness.cli.arena:arena",
    "report": "harness.cli.report:report",
    "demo": "harness.cli.demo:demo",
    "store": "harness.cli.store:store",
    "sweep": "harness.cli.sweep:sweep",
    "trend": "harness.cli.trend:trend",
    "judge": "harness.cli.judge:judge",
}


class LazyGroup(click.Group):
    """Imports a sub-command's module only when that command runs (keeps ``harness --help`` fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        present = [name for name, spec in COMMANDS.items() if importlib.util.find_spec(spec.split(":")[0])]
        return sorted(present)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None or importlib.util.find_spec(spec.split(":")[0]) is None:
            return None
        module_name, _, attr = spec.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Benchmark image-generation APIs: runs, statistics, arena votes, ratings, CLIP scores, reports."""


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    from harness.envfile import load_dotenv_file

    load_dotenv_file()
    return cli.main(args=argv, prog_name="harness", auto_envvar_prefix="HARNESS")
