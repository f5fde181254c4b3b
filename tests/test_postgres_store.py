"""PostgreSQL as a store backend, where it differs from SQLite: bad locations each give one clear error and
write nothing, URLs keep passwords out of messages, and `harness store migrate` copies a store whole between
backends with verified counts and hashes. Runs against a real throwaway cluster (tests/pg.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.store import Store, StoreError, StoreUrlError
from harness.store import runs as run_store
from harness.store.transfer import fingerprint, layouts
from harness.store.url import PostgresLocation, SqliteLocation, parse_location
from tests import pg

FIXTURE = Path(__file__).parent / "fixtures" / "store_schema1.db"


def test_locations_name_a_file_or_a_server_and_anything_else_is_refused(tmp_path: Path) -> None:
    assert parse_location(tmp_path / "h.db") == SqliteLocation(tmp_path / "h.db", None)
    assert parse_location("sqlite:///rel/h.db") == SqliteLocation(Path("rel/h.db"), None)
    assert parse_location("sqlite:////abs/h.db") == SqliteLocation(Path("/abs/h.db"), None)
    server = parse_location("postgresql://u:s3cret@db.example:5433/h?images=/mnt/img&sslmode=require")
    assert isinstance(server, PostgresLocation)
    assert server.images == Path("/mnt/img") and "images" not in server.conninfo and "sslmode=require" in server.conninfo
    assert "s3cret" not in server.display and "u:***@db.example:5433" in server.display
    # what a click Path option makes of a URL (it folds "//") still names the server
    folded = parse_location(Path("postgresql://u:s3cret@db.example:5433/h"))
    assert isinstance(folded, PostgresLocation) and folded.conninfo == "postgresql://u:s3cret@db.example:5433/h"
    with pytest.raises(StoreUrlError, match="name the database"):  # postgresql:///db?host=/sock, folded
        parse_location(Path("postgresql:///db?host=/run/postgresql"))
    for bad in ("mysql://u@h/db", "https://example.com/h.db", "sqlite://host/h.db"):
        with pytest.raises(StoreUrlError):
            Store.open(bad)
    assert not any(tmp_path.iterdir()) and not Path("mysql:").exists()


def test_cli_refuses_a_url_it_cannot_open_instead_of_creating_a_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["runs", "--db", "mysql://u:pw@localhost/harness"])
    assert result.exit_code != 0 and "cannot open a mysql: store" in result.output and "pw" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_cannot_be_reached_is_one_clear_error(pg_cluster: pg.Cluster) -> None:
    url = f"postgresql://postgres:pw@127.0.0.1:{pg._free_port()}/postgres"
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store") as err:
        Store.open(url)
    assert "pw" not in str(err.value).replace("postgres", "") and "***" in str(err.value)


def test_wrong_credentials_are_one_clear_error_that_hides_the_password(pg_cluster: pg.Cluster) -> None:
    with pytest.raises(StoreError, match="password authentication failed") as err:
        Store.open(pg_cluster.url(tcp=True, password="not-the-password"))
    assert "not-the-password" not in str(err.value) and "check the user and password" in str(err.value)
    with Store.open(pg_cluster.url(pg_cluster.new_database(), tcp=True, password=pg.SUPERUSER_PASSWORD)) as store:
        assert run_store.list_runs(store) == []


def test_a_database_of_another_application_is_refused_and_left_untouched(pg_cluster: pg.Cluster) -> None:
    database = pg_cluster.new_database()
    pg_cluster.admin("CREATE TABLE customers (id int PRIMARY KEY, name text)", database)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"another application \(customers\)"):
            Store.open(pg_cluster.url(database), readonly=readonly)
    tables = pg_cluster.admin("SELECT table_name FROM information_schema.tables WHERE table_schema='public'", database)
    assert tables == [("customers",)]


def test_a_missing_database_is_a_clear_error(pg_cluster: pg.Cluster) -> None:
    with pytest.raises(StoreError, match=r"does not exist.*create the database first"):
        Store.open(pg_cluster.url("no_such_db"))


def test_a_read_only_open_of_an_empty_database_writes_nothing(pg_cluster: pg.Cluster) -> None:
    database = pg_cluster.new_database()
    with pytest.raises(StoreError, match="holds no harness store yet"):
        Store.open(pg_cluster.url(database), readonly=True)
    assert pg_cluster.admin("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'",
                            database) == [(0,)]


def _hashes(store: Store) -> dict[str, tuple[int, str]]:
    return {t.name: (c.rows, c.sha256) for t in layouts() if store.has_table(t.name)
            for c in [fingerprint(store, t)]}


def test_migrate_copies_a_first_release_store_to_postgresql_and_back_identically(
        pg_url: str, tmp_path: Path) -> None:
    source = tmp_path / "old.db"
    shutil.copy(FIXTURE, source)
    raw = source.read_bytes()
    result = CliRunner().invoke(cli, ["store", "migrate", "--from", f"sqlite:///{source}", "--to", pg_url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] and "***" not in report["destination"]
    counts = {t["table"]: t["rows"] for t in report["tables"]}
    with sqlite3.connect(source) as conn:
        assert counts["attempts"] == conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] > 0
        assert counts["runs"] == conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert source.read_bytes() == raw  # the source was only read
    with Store.open(pg_url, readonly=True) as store:
        (info,) = run_store.list_runs(store)
        assert info.clock_version == 1 and info.attempts == counts["attempts"]
        server = _hashes(store)
        challenges = run_store.run_challenges(store, info.id)
    back = tmp_path / "back.db"
    result = CliRunner().invoke(cli, ["store", "migrate", "--from", pg_url, "--to", str(back)])
    assert result.exit_code == 0, result.output
    with Store.open(back, readonly=True) as store:
        assert _hashes(store) == server
        assert run_store.run_challenges(store, info.id) == challenges  # stored order survives both copies
    with Store.open(source) as store:  # migrated in place, the same content as the copies
        assert _hashes(store) == server


def test_migrate_keeps_ids_counting_and_refuses_a_destination_with_data(pg_url: str, tmp_path: Path) -> None:
    source = tmp_path / "old.db"
    shutil.copy(FIXTURE, source)
    assert CliRunner().invoke(cli, ["store", "migrate", "--from", str(source), "--to", pg_url]).exit_code == 0
    with Store.open(pg_url) as store:
        before = _hashes(store)
        (info,) = run_store.list_runs(store)
        last = store.conn.execute("SELECT MAX(id) FROM attempts").fetchone()[0]
        from harness.store import votes

        assert votes.insert_vote(store, votes.Vote("u", "a", "b", "a", "b", "left", 1.0, "import"))
        new_id = store.conn.execute("SELECT MAX(id) FROM votes").fetchone()[0]
        assert new_id >= 1 and last >= 1
    again = CliRunner().invoke(cli, ["store", "migrate", "--from", str(source), "--to", pg_url])
    assert again.exit_code != 0 and "already holds data" in again.output
    with Store.open(pg_url, readonly=True) as store:
        after = _hashes(store)
    assert {k: v for k, v in after.items() if k != "votes"} == {k: v for k, v in before.items() if k != "votes"}
    assert info.attempts > 0


def test_migrate_copies_image_files_into_the_servers_folder(tmp_path: Path, pg_cluster: pg.Cluster) -> None:
    source = tmp_path / "src" / "harness.db"
    with Store.open(source) as store:
        sha = store.put_image(b"not really a png", "png")
        run_store.record_images(store, [(sha, "png", 1, 1, 16)])
    images = tmp_path / "shared-images"
    schema_url = pg_cluster.url(pg_cluster.new_database(), images=str(images))
    result = CliRunner().invoke(cli, ["store", "migrate", "--from", str(source), "--to", schema_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images_copied"] == 1
    assert (images / f"{sha}.png").read_bytes() == b"not really a png"


def test_derived_files_go_beside_the_images(tmp_path: Path) -> None:
    server = parse_location(f"postgresql://u:pw@h/db?images={tmp_path}/shared/images")
    assert server.home == tmp_path / "shared"
    assert parse_location(tmp_path / "r" / "harness.db").home == tmp_path / "r"


def test_scrub_removes_a_key_from_a_postgresql_store(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from harness.store import votes

    key = "sk-live-" + "Q7" * 20
    monkeypatch.setenv("LEAKED_KEY", key)
    monkeypatch.chdir(tmp_path)
    with Store.open(pg_url) as store:
        votes.insert_vote(store, votes.Vote("u1", "a", "b", "a", "b", "left", 1.0, "import", voter=f"Bearer {key}"))
        votes.insert_vote(store, votes.Vote("u2", "a", "b", "a", "b", "tie", 2.0, "import", voter="clean"))
    dry = CliRunner().invoke(cli, ["store", "scrub", "--db", pg_url, "--key-env", "LEAKED_KEY", "--dry-run", "--json"])
    assert dry.exit_code == 1 and sum(json.loads(dry.stdout)["removed"].values()) == 1
    done = CliRunner().invoke(cli, ["store", "scrub", "--db", pg_url, "--key-env", "LEAKED_KEY", "--json"])
    assert done.exit_code == 0, done.output
    assert sum(json.loads(done.stdout)["removed"].values()) == 1 and key not in done.output
    with Store.open(pg_url, readonly=True) as store:
        voters = [r[0] for r in store.conn.execute("SELECT voter FROM votes ORDER BY id")]
    assert key not in voters[0] and voters[0].startswith("Bearer ") and voters[1] == "clean"


def _pytest_without_server(require: bool) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != pg.REQUIRE_ENV}
    env.update(PG_BINDIR="/nonexistent/postgresql/bin", PATH="/usr/bin:/bin")
    if require:
        env[pg.REQUIRE_ENV] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_postgres_store.py", "-k", "wrong_credentials",
                           "-p", "no:cacheprovider", "-rsE", "-q"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).parent.parent, timeout=120)
    return done.stdout + f"\nexit={done.returncode}"


def test_without_a_server_the_tests_skip_visibly_and_ci_turns_that_into_a_failure() -> None:
    skipped = _pytest_without_server(require=False)
    assert "1 skipped" in skipped and "PostgreSQL server binaries (initdb, pg_ctl) not found" in skipped
    assert "exit=0" in skipped
    failed = _pytest_without_server(require=True)
    assert "HARNESS_REQUIRE_POSTGRES=1 but PostgreSQL cannot be started" in failed and "exit=1" in failed
