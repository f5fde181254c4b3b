"""Where a store lives: a SQLite file (a plain path or ``sqlite:///PATH``) or a PostgreSQL database
(``postgresql://user:pass@host:port/db``), with the folder its images live in.

Images stay files in both cases: content-addressed by SHA-256, written once, read by path. A SQLite store
keeps them in ``images/`` beside its file; a PostgreSQL store in the folder named by ``?images=DIR`` in its
URL (a folder every app server and run host mounts), else ``results/images``.

``sqlite:`` URLs follow the common convention: ``sqlite:///rel/h.db`` is relative to the working folder,
``sqlite:////abs/h.db`` absolute. Anything else that looks like a URL (``scheme:/...``) is refused with a
clear error rather than taken for a file name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from harness.errors import HarnessError
from harness.store.images import IMAGES_FOLDER

DEFAULT_DB = Path("results") / "harness.db"
DEFAULT_SERVER_IMAGES = Path("results") / IMAGES_FOLDER
"""Image folder of a PostgreSQL store whose URL names none (``?images=DIR``)."""

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
POSTGRES_SCHEMES = ("postgresql", "postgres")


class StoreUrlError(HarnessError):
    """A store location that names no store this harness can open."""


@dataclass(frozen=True)
class SqliteLocation:
    path: Path
    images: Path | None

    @property
    def display(self) -> str:
        return str(self.path)

    @property
    def home(self) -> Path:
        """The folder derived files of this store go in (exports, thumbnails, the arena's cache)."""
        return self.path.parent


@dataclass(frozen=True)
class PostgresLocation:
    conninfo: str
    """The URL handed to libpq (without our own ``images`` parameter)."""
    images: Path
    display: str
    """The URL with its password replaced by ``***``: what messages and logs show."""

    @property
    def home(self) -> Path:
        """The folder derived files of this store go in: the one holding its image folder."""
        return self.images.parent


StoreLocation = SqliteLocation | PostgresLocation

_SUPPORTED = "a file path, sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="/:", quote_via=quote)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _repair(text: str) -> str:
    """A URL that went through ``pathlib.Path`` lost a slash (``postgresql:/u@h/db``); put it back."""
    scheme, _, rest = text.partition(":/")
    return text if rest.startswith("/") else f"{scheme}://{rest}"


def parse_location(value: str | os.PathLike[str] | None, images_dir: Path | None = None) -> StoreLocation:
    """The store ``value`` names (``None``: the default file). ``images_dir`` overrides the image folder.

    A :class:`~pathlib.Path` is what a command-line option may have made of a URL (it folds ``//``); a
    PostgreSQL URL is repaired, a ``sqlite:`` one refused (its relative and absolute forms fold alike)."""
    if value is None:
        return SqliteLocation(DEFAULT_DB, images_dir)
    text = os.fspath(value)
    match = _URL.match(text)
    if match is None:
        return SqliteLocation(Path(text), images_dir)
    scheme = match.group(1).lower()
    if isinstance(value, os.PathLike):
        if scheme == "sqlite":
            raise StoreUrlError(f"store {text}: a sqlite: URL lost its slashes on the way here; pass the file's path "
                                "itself (e.g. --db results/harness.db)")
        text = _repair(text)
        if scheme in POSTGRES_SCHEMES and urlsplit(text).path in ("", "/"):
            raise StoreUrlError(f"store {redact_url(text)}: name the database in the URL with a host before it "
                                "(postgresql://localhost/DB?host=/run/postgresql for a unix socket): a URL without "
                                "a host (postgresql:///DB) loses a slash on the command line")
    if scheme == "sqlite":
        parts = urlsplit(text)
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise StoreUrlError(f"store {text}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        if parts.query:
            raise StoreUrlError(f"store {text}: a SQLite URL takes no parameters (images live beside the file)")
        return SqliteLocation(Path(parts.path[1:]), images_dir)
    if scheme in POSTGRES_SCHEMES:
        parts = urlsplit(text)
        params = parse_qsl(parts.query, keep_blank_values=True)
        images = next((v for k, v in params if k == "images"), None)
        if images == "":
            raise StoreUrlError(f"store {redact_url(text)}: ?images= names no folder")
        kept = urlencode([(k, v) for k, v in params if k != "images"], safe="/:", quote_via=quote)
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, kept, ""))
        folder = images_dir or (Path(images) if images else DEFAULT_SERVER_IMAGES)
        return PostgresLocation(conninfo, folder, redact_url(conninfo))
    raise StoreUrlError(f"store {redact_url(text)}: cannot open a {scheme}: store; a store is {_SUPPORTED}")
