"""``harness store scrub``: remove API keys from a store, its exports and report folders.

Keys are never taken on the command line (where shell history and ``ps`` would keep them): name the
environment variables that hold them (``--key-env``), a file with one key (or ``NAME=key``) per line
(``--key-file``), or ``--known-keys`` for every key variable of the catalog and the targets file that is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

import click
from rich.table import Table

from harness.cli._common import (
    EXIT_CHECK_FAILED,
    db_option,
    err_console,
    handle_errors,
    out_console,
    print_json,
)
from harness.envfile import OPTION_PREFIX, catalog_key_variables, key_value, read_env_file
from harness.errors import ConfigError
from harness.redaction import Redactor
from harness.store.scrub import scrub

STORE_REPORT_SCHEMA_VERSION: Final = 1
"""Version of the JSON objects `harness store migrate --json` and `harness store scrub --json` print (their
first key, ``schema_version``); bumped when a key changes meaning or goes away."""


@click.group()
def store() -> None:
    """Maintain the store: copy it to another backend, remove API keys written by earlier versions."""


@store.command("migrate")
@click.option("--from", "source", required=True, metavar="URL",
              help="Store to copy: a file path, sqlite:///PATH or postgresql://... (opened read-only).")
@click.option("--to", "destination", required=True, metavar="URL",
              help="Empty store to fill: a file path, sqlite:///PATH or postgresql://...[?images=DIR].")
@click.option("--json", "as_json", is_flag=True, help="Per-table rows and hashes as JSON on stdout.")
@handle_errors
def migrate_cmd(source: str, destination: str, as_json: bool) -> None:
    """Copy a store whole (every table, and the image files when the destination's folder is another), in
    one transaction, committed only when every table's row count and content hash match the source's."""
    from harness.store import Store
    from harness.store.transfer import migrate

    with Store.open(source, readonly=True) as src, Store.open(destination) as dst:
        result = migrate(src, dst)
    if as_json:
        print_json({"schema_version": STORE_REPORT_SCHEMA_VERSION, "source": result.source, "destination": result.destination, "verified": True,
                    "tables": [{"table": t.table, "rows": t.rows, "sha256": t.sha256} for t in result.tables],
                    "images_copied": result.images_copied, "images_missing": result.images_missing})
        return
    table = Table("table", "rows", "sha256 (source = destination)")
    for t in result.tables:
        table.add_row(t.table, str(t.rows), t.sha256[:16])
    out_console().print(table)
    console = err_console()
    console.print(f"copied {result.source} to {result.destination}: {sum(t.rows for t in result.tables)} rows in "
                  f"{len(result.tables)} tables verified; {result.images_copied} image file(s) copied", markup=False)
    if result.images_missing:
        console.print(f"note: {len(result.images_missing)} image file(s) named by the source were not in its image "
                      f"folder (e.g. {result.images_missing[0]}); copy them by hand if you have them", markup=False)


_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")


def _keys_from_file(path: Path) -> list[str]:
    """One key per line, or ``NAME=key`` lines (a ``.env`` file works as it is: its ``HARNESS_*`` options are
    skipped); ``#`` lines are comments."""
    read_env_file(path)  # the same clear errors as a .env file: binary, not UTF-8, too large
    keys: list[str] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match and match.group(1).startswith(OPTION_PREFIX):
            continue
        value = match.group(2).strip() if match else line
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            keys.append(value)
    return keys


def _collect_keys(key_envs: tuple[str, ...], key_files: tuple[Path, ...], known: bool,
                  targets_file: Path | None) -> list[str]:
    keys: list[str] = []
    missing = [name for name in key_envs if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"--key-env: {', '.join(missing)} is not set (name variables that hold keys; never "
                         "put a key itself on the command line)")
    keys.extend(os.environ[name] for name in key_envs)
    for path in key_files:
        if not path.is_file():
            raise ConfigError(f"--key-file {path}: not found")
        found = _keys_from_file(path)
        if not found:
            raise ConfigError(f"--key-file {path}: holds no key")
        keys.extend(found)
    if known:
        names = set(catalog_key_variables())
        if targets_file is not None:
            from harness.targets import load_targets

            for target in load_targets(targets_file).values():
                names.update(target.api_key_env)
        keys.extend(k for k in (key_value(n) for n in sorted(names)) if k)
    if not keys:
        raise ConfigError("no key to scrub: give --key-env VAR, --key-file FILE or --known-keys")
    return keys


@store.command("scrub")
@db_option
@click.option("--key-env", "key_envs", multiple=True, metavar="VAR",
              help="Environment variable holding a key to remove (repeatable).")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File with one key or NAME=key per line (repeatable; a .env file works, its HARNESS_* lines skipped).")
@click.option("--known-keys", is_flag=True, help="Every key variable of the catalog (and --targets) that is set.")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Targets file whose key variables --known-keys also reads.")
@click.option("--report", "reports", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report (or any) folder to scrub as well (repeatable). Default: ./reports when present.")
@click.option("--exports", "exports", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Exports folder (default: exports/ beside the store).")
@click.option("--dry-run", is_flag=True, help="Only count; change nothing; exit 1 when any key is found.")
@click.option("--json", "as_json", is_flag=True, help="Counts as JSON on stdout.")
@handle_errors
def scrub_cmd(db: Path, key_envs: tuple[str, ...], key_files: tuple[Path, ...], known_keys: bool,
              targets_file: Path | None, reports: tuple[Path, ...], exports: tuple[Path, ...], dry_run: bool,
              as_json: bool) -> None:
    """Remove API keys (and their encodings) from a store, its exports and report folders; say how many were
    found per place."""
    from harness.store.url import PostgresLocation, parse_location

    location = parse_location(db)
    server = isinstance(location, PostgresLocation)
    redactor = Redactor.for_keys(_collect_keys(key_envs, key_files, known_keys, targets_file))
    if not server and not db.is_file():
        raise ConfigError(f"store {db} not found")
    folders = list(exports) or [p for p in [location.home / "exports"] if p.is_dir()]
    folders += list(reports) or [p for p in [Path("reports")] if p.is_dir()]
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: not a folder")
    if server:
        from harness.store import Store
        from harness.store.scrub import ScrubReport, scrub_folder, scrub_images, scrub_server_store

        result = ScrubReport()
        with Store.open(db) as opened:
            scrub_server_store(opened, redactor, result, dry_run=dry_run)
            scrub_images(opened.images_dir, redactor, result)
        for folder in folders:
            scrub_folder(folder, redactor, result, dry_run=dry_run)
    else:
        result = scrub(db, folders, redactor, dry_run=dry_run)
    if as_json:
        print_json({"schema_version": STORE_REPORT_SCHEMA_VERSION, "dry_run": dry_run, "keys": len(redactor.keys), "removed": result.removed,
                    "remaining": result.remaining, "places_searched": [location.display, *map(str, folders)],
                    "notes": result.notes})
    else:
        console = err_console()
        console.print(f"searched {location.display}" + "".join(f", {f}" for f in folders) + f" for {len(redactor.keys)} key(s)")
        if result.removed or result.remaining:
            table = Table("place", "found" if dry_run else "removed", "left (cannot be edited)")
            for place in sorted({*result.removed, *result.remaining}):
                table.add_row(place, str(result.removed.get(place, 0)), str(result.remaining.get(place, 0)))
            out_console().print(table)
        verb = "found" if dry_run else "removed"
        console.print(f"{result.total_removed} occurrence(s) {verb}; {result.total_remaining} left in files that "
                      "cannot be edited" + (" (delete them)" if result.total_remaining else ""))
        for note in result.notes:
            console.print(f"note: {note}")
    if result.total_remaining or (dry_run and result.total_removed):
        raise SystemExit(EXIT_CHECK_FAILED)
