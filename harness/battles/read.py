"""Reading a battle file: detect its shape, parse it in columns when pyarrow can, validate it once."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Literal

from harness.battles.columnar import read_columnar
from harness.battles.detect import BOM, Content, detect_shape
from harness.battles.plain import read_plain
from harness.battles.table import BattleFileError, BattleTable
from harness.battles.validate import build_table

Engine = Literal["auto", "plain"]
"""``auto``: the columnar reader when pyarrow is installed, else the plain one; ``plain``: the standard
library's csv/json modules only (the reference, and the fallback)."""


def _load(path: Path) -> Content:
    """The file's bytes, memory-mapped (the columnar reader parses them where they lie, without a copy),
    less a UTF-8 byte-order mark."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return b""
            data: Content = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise BattleFileError(f"{path}: cannot read the battle file: not found") from None
    except IsADirectoryError:
        raise BattleFileError(f"{path}: cannot read the battle file: it is a directory") from None
    except OSError as exc:
        raise BattleFileError(f"{path}: cannot read the battle file: {exc.strerror or exc}") from None
    return data[len(BOM):] if data[:len(BOM)] == BOM else data


def _text(data: Content, path: Path) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BattleFileError(f"{path}: not UTF-8 text (byte {exc.start + 1} cannot be decoded)") from None


def read_battle_file(path: Path, fmt: str | None = None, *, engine: Engine = "auto") -> BattleTable:
    """Every vote in the battle file at ``path`` (CSV, JSON Lines or a JSON array; ``fmt`` only to force
    CSV or JSON), validated. Raises :class:`BattleFileError` naming the file, the line (CSV, JSON Lines)
    or item (JSON array) and the field of up to ten bad rows."""
    data = _load(path)
    shape = detect_shape(path, data, fmt)
    if engine == "auto":
        raw = read_columnar(data, shape, str(path))
        if raw is not None:
            try:
                return build_table(raw)
            except BattleFileError:
                pass
    return build_table(read_plain(_text(data, path), shape, str(path)))
