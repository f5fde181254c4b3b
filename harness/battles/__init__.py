"""Battle files: the field's exchange format for pairwise votes (FastChat, LMArena, GenAI-Arena).

One row per vote: ``model_a`` (the left output), ``model_b`` (the right one), ``winner`` in ``model_a``,
``model_b``, ``tie``, ``tie (bothbad)``; optional ``judge`` (or ``voter``), ``anony``, ``tstamp``,
``category``, ``kind``, ``challenge`` and ``schema_version``. Files are CSV, JSON Lines or a JSON array,
recognised by content and name (:mod:`~harness.battles.detect`). This package is the only reader and
writer of them: ``harness ratings --votes`` and ``harness votes import|export`` both use it.

* :mod:`~harness.battles.table` – :class:`BattleTable`, the votes in columns (model and outcome codes);
* :mod:`~harness.battles.read` – :func:`read_battle_file`: columnar (pyarrow) when installed, else plain;
* :mod:`~harness.battles.validate` – the rules every reader's cells go through, with the error messages;
* :mod:`~harness.battles.write` – :func:`write_battles`, FastChat's columns first.
"""

from harness.battles.detect import FORMATS, Shape, detect_shape, format_for_writing
from harness.battles.read import Engine, read_battle_file
from harness.battles.table import (
    SCHEMA_VERSION,
    TEXT_FIELDS,
    WINNERS,
    BattleError,
    BattleFileError,
    BattleTable,
    TextColumn,
)
from harness.battles.validate import parse_tstamp
from harness.battles.write import EXPORT_COLUMNS, FASTCHAT_COLUMNS, export_rows, write_battles

__all__ = [
    "EXPORT_COLUMNS",
    "FASTCHAT_COLUMNS",
    "FORMATS",
    "SCHEMA_VERSION",
    "TEXT_FIELDS",
    "WINNERS",
    "BattleError",
    "BattleFileError",
    "BattleTable",
    "Engine",
    "Shape",
    "TextColumn",
    "detect_shape",
    "export_rows",
    "format_for_writing",
    "parse_tstamp",
    "read_battle_file",
    "write_battles",
]
