"""A store that cannot be written (disk full, read-only media) or was written by a newer harness gives one
clear error, and leaves the store consistent and the run resumable. Real `harness` processes throughout."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from harness.errors import ExitCode
from harness.store import SCHEMA_VERSION

ENV = {**os.environ, "CI": "true"}
GPT = "gpt-image-1@openai"


def harness(*args: str, preexec: Callable[[], None] | None = None, timeout: float = 180,
            prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout, preexec_fn=preexec, cwd=Path(__file__).parent.parent)


def sandbox_run(db: Path, suite: Path, profile: Path, *extra: str, preexec: Callable[[], None] | None = None,
                prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return harness("run", "--challenges", str(suite), "--target", GPT, "--sandbox", "--time-scale", "0.002",
                   "--sandbox-profile", str(profile), "--db", str(db), *extra, preexec=preexec, prefix=prefix)


def one_clear_error(stderr: str, *words: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert all(w in errors[0] for w in words), errors[0]


def store_is_consistent(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute("SELECT COUNT(*) FROM outputs o LEFT JOIN attempts a ON a.id=o.attempt_id"
                               " WHERE a.id IS NULL").fetchone()[0]
    assert orphans == 0


def finals(db: Path) -> Counter[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT challenge_id, variant, sample FROM attempts WHERE final=1").fetchall()
    return Counter((r[0], r[1], r[2]) for r in rows)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text("openai: {faults: {}, rpm: null}", encoding="utf-8")
    return path


def file_size_limit(limit: int) -> Callable[[], None]:
    """Runs in the child: files it writes cannot grow past ``limit`` bytes, as on a disk that fills up."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_a_full_disk_stops_the_run_with_one_error_and_resume_finishes_it(tmp_path: Path, tiny_suite: Path,
                                                                        profile: Path) -> None:
    db = tmp_path / "s" / "harness.db"
    full = sandbox_run(db, tiny_suite, profile, "--samples", "40", preexec=file_size_limit(400_000))
    assert full.returncode == ExitCode.STORE_UNWRITABLE, full.stderr
    with sqlite3.connect(db) as conn:
        run_id, planned = conn.execute("SELECT id, planned FROM runs").fetchone()
    one_clear_error(full.stderr, "cannot write to the store", "Nothing committed was lost",
                    f"harness run --resume {run_id}")
    store_is_consistent(db)
    kept = finals(db)
    assert 0 < sum(kept.values()) < planned
    listed = harness("runs", "--db", str(db))
    assert listed.returncode == 0 and run_id in listed.stdout and "running" not in listed.stdout

    resumed = harness("run", "--resume", run_id, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    store_is_consistent(db)
    after = finals(db)
    assert sum(after.values()) == planned and set(after.values()) == {1}


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, list[str]]]:
    """A folder for a store that will be made read-only, and the command prefix that starts a child unable to
    write it: as root, permissions do not bind, so the child runs as the unprivileged user ``nobody``."""
    base = Path(tempfile.mkdtemp(prefix="harness-ro-"))
    base.chmod(0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            shutil.rmtree(base)
            pytest.skip("running as root without setpriv: no way to start a process that a read-only folder binds")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        yield base, prefix
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base)


def test_a_read_only_store_reads_and_refuses_a_run_with_one_error(
        read_only_dir: tuple[Path, list[str]], tiny_suite: Path, profile: Path) -> None:
    folder, as_reader = read_only_dir
    db = folder / "store" / "harness.db"
    suite = folder / "suite"
    shutil.copytree(tiny_suite, suite)
    shutil.copy(profile, folder / "profile.yaml")
    made = sandbox_run(db, suite, folder / "profile.yaml", "--variant", "default")
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.strip().splitlines()[-1]
    for path in [*sorted(folder.rglob("*"), reverse=True), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    probe = subprocess.run([*as_reader, sys.executable, "-c", f"open({str(db.parent / 'probe')!r}, 'w')"],
                           capture_output=True)
    assert probe.returncode != 0, "the reader could write the read-only folder"
    before = {p: p.read_bytes() for p in db.parent.rglob("*") if p.is_file()}

    listed = harness("runs", "--db", str(db), prefix=as_reader)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "finished" in listed.stdout
    stats = harness("stats", run_id, "--db", str(db), "--json", prefix=as_reader)
    assert stats.returncode == 0, stats.stderr

    resumed = harness("run", "--resume", run_id, "--db", str(db), prefix=as_reader)
    assert resumed.returncode == ExitCode.STORE_UNWRITABLE, resumed.stderr
    one_clear_error(resumed.stderr, "read-only")
    fresh = sandbox_run(db, suite, folder / "profile.yaml", prefix=as_reader)
    assert fresh.returncode == ExitCode.STORE_UNWRITABLE, fresh.stderr
    one_clear_error(fresh.stderr, "read-only")
    assert "Traceback" not in resumed.stderr + fresh.stderr
    assert {p: p.read_bytes() for p in db.parent.rglob("*") if p.is_file()} == before


def test_a_store_from_a_newer_harness_is_refused_by_every_command_with_one_error(
        tmp_path: Path, tiny_suite: Path, profile: Path) -> None:
    db = tmp_path / "s" / "harness.db"
    made = sandbox_run(db, tiny_suite, profile, "--variant", "default")
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.strip().splitlines()[-1]
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = db.read_bytes()
    for args in (["runs"], ["stats", run_id], ["run", "--resume", run_id]):
        proc = harness(*args, "--db", str(db))
        assert proc.returncode == ExitCode.USAGE, (args, proc.stderr)
        one_clear_error(proc.stderr, f"store schema {SCHEMA_VERSION + 1}, newer than this harness")
        assert "Traceback" not in proc.stderr
    assert db.read_bytes() == before
