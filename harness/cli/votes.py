"""``harness votes export|import``: votes as battle files (CSV, JSON Lines or a JSON array)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from harness.cli._common import db_option, err_console, handle_errors, print_json

IMPORT_SUMMARY_SCHEMA_VERSION = 1
"""Version of ``harness votes import``'s JSON summary (``read``, ``new``, ``already_present``)."""


@click.group()
def votes() -> None:
    """Pairwise votes in the battle format (model_a, model_b, winner; FastChat/LMArena compatible)."""


@votes.command("export")
@db_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "json"]), default=None,
              help="Default: from --out's extension (.csv, .jsonl, .json: a JSON array), else jsonl.")
@click.option("--by", type=click.Choice(["model", "target"]), default="model", show_default=True,
              help="Name contenders by model, or by target (model@provider).")
@click.option("--run", "runs", multiple=True, metavar="RUN_ID", help="Only votes on outputs of these runs.")
@click.option("--category", default=None, help="Only votes on challenges of this category.")
@click.option("--source", "sources", multiple=True, type=click.Choice(["arena", "simulated", "import"]),
              help="Only votes from these sources (repeatable).")
@handle_errors
def export(db: Path, out: Path | None, fmt: str | None, by: str, runs: tuple[str, ...], category: str | None,
           sources: tuple[str, ...]) -> None:
    """Write votes oldest first; model_a is the image shown on the left. Columns: FastChat's model_a,
    model_b, winner, judge, anony, tstamp, then category, kind, challenge, schema_version."""
    from harness.arena.battlefile import format_for, write_battles
    from harness.store import Store
    from harness.store import runs as run_store
    from harness.store.votes import battles_frame

    kind = format_for(out, fmt) if out is not None or fmt else "jsonl"
    with Store.open(db, readonly=True) as store:
        run_ids = [run_store.get_run(store, r).id for r in runs]
        frame = battles_frame(store, by=by, category=category, run_ids=run_ids or None, sources=sources or None)
    if out is None:
        count = write_battles(frame, sys.stdout, kind)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            count = write_battles(frame, handle, kind)
        tmp.replace(out)
    err_console().print(f"exported {count} vote(s){f' to {out}' if out else ''}")


@votes.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "json"]), default=None,
              help="Default: from the file's content ([ a JSON array, { JSON Lines) and extension.")
@handle_errors
def import_(file: Path, db: Path, fmt: str | None) -> None:
    """Add the votes of a battle file (rows already imported are skipped; nothing is replaced).

    Reads CSV, JSON Lines and JSON arrays, FastChat's clean_battle files included; each vote keeps the file's
    ``anony`` flag (a vote whose voter knew the models stays marked so). Prints
    {"schema_version", "read", "new", "already_present"} as JSON."""
    from harness.arena.battlefile import table_votes
    from harness.battles import read_battle_file
    from harness.store import Store
    from harness.store.votes import insert_votes

    table = read_battle_file(file, fmt)
    parsed = table_votes(table, now=time.time())
    named = int((table.anony == 0).sum())
    if named:
        err_console().print(f"note: {named} of {len(table)} vote(s) are marked anony=false (the voter knew the "
                            "models); the store keeps the flag and an export gives it back", markup=False)
    with Store.open(db) as store:
        added = insert_votes(store, parsed)
    print_json({"schema_version": IMPORT_SUMMARY_SCHEMA_VERSION, "read": len(parsed), "new": added,
                "already_present": len(parsed) - added})
    err_console().print(f"imported {added} new vote(s) from {file} ({len(parsed) - added} already present)")

