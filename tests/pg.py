"""A throwaway PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` from the installed server binaries
(Debian's ``postgresql`` package puts them in ``/usr/lib/postgresql/<version>/bin``), in a temporary folder,
on a free loopback port, with its unix socket in that folder; stopped and removed at the end.

Connections over the socket are trusted (the tests' superuser ``postgres``); TCP connections on 127.0.0.1
need a password (``scram-sha-256``), so wrong credentials can be tested for real. When the current user is
root (``initdb`` refuses root) the cluster runs as the ``postgres`` system user; the folder sits directly in
the system's temporary folder, which that user can traverse.

Where the binaries (or the psycopg driver) are absent, :func:`unavailable` says why and the tests skip
with that reason; ``HARNESS_REQUIRE_POSTGRES=1`` (CI sets it) turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "harness-test-pw"
REQUIRE_ENV = "HARNESS_REQUIRE_POSTGRES"


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def find_bindir() -> Path | None:
    """The newest installed server's ``bin`` folder (``PG_BINDIR`` overrides), or None."""
    override = os.environ.get("PG_BINDIR")
    candidates = [Path(override)] if override else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def unavailable() -> str | None:
    """Why a throwaway cluster cannot be started here, or None when it can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return "running as root and there is no 'postgres' system user to run initdb as"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *args] if self.as_user else list(args)

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None,
            tcp: bool = False, **params: str) -> str:
        """A store URL: over the unix socket (trusted) or, with ``tcp``, 127.0.0.1 with a password."""
        auth = quote(user) + (f":{quote(password)}" if password is not None else "")
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
        if tcp:
            return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")
        base = f"postgresql://{auth}@localhost/{database}?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"
        return base + (f"&{query}" if query else "")

    def admin(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser (autocommit) and return its rows."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=database,
                             autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return name

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster:
    """Start a throwaway cluster (see the module docstring); the caller stops it."""
    bindir = find_bindir()
    assert bindir is not None, unavailable()
    as_user = SUPERUSER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    cluster = Cluster(bindir, root, _free_port(), as_user)
    pwfile = root / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n", encoding="utf-8")
    if as_user:
        entry = pwd.getpwnam(as_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o700)
    try:
        subprocess.run(cluster._cmd(str(bindir / "initdb"), "-D", str(cluster.data), "-U", SUPERUSER, "--pwfile",
                                    str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                    "--locale=C.UTF-8", "--no-sync"),
                       check=True, capture_output=True, timeout=120)
        options = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(cluster._cmd(str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(root / "log"), "-o",
                                    options, "-w", "-t", "60", "start"),
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        log = ""
        with contextlib.suppress(OSError):
            log = (root / "log").read_text(errors="replace")[-2000:]
        cluster.stop()
        raise RuntimeError(f"could not start a throwaway PostgreSQL cluster: {exc.stderr.decode(errors='replace')}"
                           f"{log}") from None
    except BaseException:
        cluster.stop()
        raise
    return cluster
