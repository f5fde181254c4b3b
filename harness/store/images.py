"""The images of a store: files named by the SHA-256 of their bytes in one folder.

Kept apart from the database so that the same folder serves a SQLite file beside it or a PostgreSQL store
whose app servers and run hosts all mount it. Writes are atomic (a temporary file renamed into place) and
idempotent (a name is its content), so concurrent writers on several hosts never tear or clash.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

IMAGES_FOLDER = "images"
"""The image folder's name beside a SQLite store (``results/images`` for ``results/harness.db``)."""


def image_name(sha256: str, ext: str) -> str:
    """A stored image's file name, ``<sha256>.<ext>``: the SHA-256 of its bytes (hex) and its format's
    extension (``png``, ``jpg``, ``webp`` ...). The one place the convention is written."""
    return f"{sha256}.{ext}"


def image_label(sha256: str, ext: str) -> str:
    """How messages name a stored image: ``images/<sha256>.<ext>``, relative to the store."""
    return f"{IMAGES_FOLDER}/{image_name(sha256, ext)}"


def default_images_dir(db: Path) -> Path:
    """The image folder of the SQLite store ``db``: ``images/`` beside the database file."""
    return db.parent / IMAGES_FOLDER


@dataclass(frozen=True)
class ImageFolder:
    """Content-addressed image files under ``root`` (created on the first write)."""

    root: Path

    def path(self, sha256: str, ext: str) -> Path:
        return self.root / image_name(sha256, ext)

    def has(self, sha256: str, ext: str) -> bool:
        return self.path(sha256, ext).is_file()

    def read(self, sha256: str, ext: str) -> bytes:
        return self.path(sha256, ext).read_bytes()

    def put(self, data: bytes, ext: str, sha256: str | None = None) -> str:
        """Write image bytes under their SHA-256 (once; the write is atomic). Returns the hash."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path(digest, ext)
        if not target.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return digest
