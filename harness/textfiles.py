"""Reading small user-supplied text files (targets, ``.env``) with one clear error for each way they can be
wrong: unreadable, too large, binary, or not UTF-8."""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError


def read_text_file(path: Path, *, label: str, max_bytes: int, expected: str) -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped). Errors start with ``label`` (how the file is named
    to the user, e.g. ``targets file x.yaml``) and, for a binary file, say what was ``expected`` instead."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{label}: {len(data)} bytes is too large (at most {max_bytes})")
    if b"\0" in data:
        raise ConfigError(f"{label}: is a binary file, not {expected}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save it as UTF-8") from None
