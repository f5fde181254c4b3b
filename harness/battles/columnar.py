"""The columnar reader: pyarrow parses a battle file straight into columns (when pyarrow is installed).

CSV goes through ``pyarrow.csv.read_csv`` (text fields dictionary-encoded while parsing, ``tstamp`` as
doubles), JSON Lines through ``pyarrow.json.read_json`` with an explicit schema for the fields the harness
reads (others are skipped), and a JSON array through the same reader once its top-level separators are
removed: in JSON a line break cannot occur inside a string, so a ``}`` and ``,`` just before one are the end
of an item and its separator — and the item count must then match, or the file goes to the plain reader.

Without pyarrow, CSV goes through pandas' C parser (pandas is a core dependency) and JSON through the
plain reader. Anything unusual (a type the schema does not expect, a short row, bad UTF-8, an ISO-8601
time in JSON) makes :func:`read_columnar` return None, and the plain reader, the reference, reads the file
instead; so does any file in which a rule finds a bad row, so that the error names its line.
"""

from __future__ import annotations

import importlib.util
import io
from typing import Any

import numpy as np

from harness.battles.detect import _NON_SPACE, Content, Shape
from harness.battles.plain import FIELDS, csv_tstamp
from harness.battles.table import REQUIRED_FIELDS
from harness.battles.validate import NULL, Coded, Numbers, RawBattles, RawColumn

TEXT = ("model_a", "model_b", "winner", "category", "kind", "challenge", "voter", "judge")


def available() -> bool:
    """True when pyarrow can be imported (the ``dev`` and ``parquet`` extras install it)."""
    return importlib.util.find_spec("pyarrow") is not None


def _coded(column: Any) -> Coded:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.num_chunks == 0:
        return Coded(np.empty(0, dtype=np.int32), [])
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column.combine_chunks())
    else:
        column = pa.Table.from_arrays([column], names=["c"]).unify_dictionaries().column(0).combine_chunks()
    codes = pc.fill_null(column.indices, NULL).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return Coded(codes, column.dictionary.to_pylist())


def _column(name: str, column: Any) -> RawColumn:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        values = pc.fill_null(pc.cast(column, pa.float64()), 0.0).to_numpy()
        null = column.is_null().to_numpy(zero_copy_only=False)
        if name != "tstamp":
            distinct, inverse = np.unique(values, return_inverse=True)
            return Coded(np.where(null, NULL, inverse).astype(np.int32),
                         [int(v) if float(v).is_integer() else float(v) for v in distinct])
        return Numbers(np.asarray(values, dtype=np.float64), np.asarray(null, dtype=bool))
    if pa.types.is_boolean(column.type):
        flags = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        null = column.is_null().to_numpy(zero_copy_only=False)
        return Coded(np.where(null, NULL, flags.astype(np.int32)).astype(np.int32), [False, True])
    if pa.types.is_null(column.type):
        return Coded(np.full(len(column), NULL, dtype=np.int32), [])
    return _coded(column)


def _raw(table: Any, source: str, header: tuple[str, ...] | None, csv: bool, names: dict[str, str]) -> RawBattles:
    columns = {field: _column(field, table.column(raw_name)) for field, raw_name in names.items()}
    return RawBattles(table.num_rows, columns, lambda i: f"{source}: row {i}", source, header, csv)


def _csv(data: Content, source: str) -> RawBattles | None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    end = data.find(b"\n")
    first = data[:end if end >= 0 else len(data)]
    if b'"' in first:
        return None
    try:
        header = tuple(name.strip() for name in first.decode("utf-8").rstrip("\r").split(","))
    except UnicodeDecodeError:
        return None
    if len(set(header)) != len(header):
        return None
    names = {field: raw for raw, field in zip(first.decode().rstrip("\r").split(","), header, strict=True)
             if field in FIELDS}
    text_type = pa.dictionary(pa.int32(), pa.string())
    for tstamp_type in (pa.float64(), text_type):
        types = {raw: (tstamp_type if field == "tstamp" else text_type) for field, raw in names.items()}
        try:
            table = pcsv.read_csv(
                pa.py_buffer(data),
                parse_options=pcsv.ParseOptions(newlines_in_values=data.find(b'"') >= 0),
                convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(names.values()),
                                                    null_values=[""], strings_can_be_null=False,
                                                    quoted_strings_can_be_null=False),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
        return _raw(table, source, header, True, names)
    return None


def _schema() -> Any:
    import pyarrow as pa

    types = {"tstamp": pa.float64(), "anony": pa.bool_(), "schema_version": pa.int64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in FIELDS])


def _json(data: Content, source: str, multiline: bool) -> RawBattles | None:
    import pyarrow as pa
    import pyarrow.json as pjson

    try:
        table = pjson.read_json(pa.py_buffer(data), parse_options=pjson.ParseOptions(
            explicit_schema=_schema(), unexpected_field_behavior="ignore", newlines_in_values=multiline))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    fields = [name for name in FIELDS if name in REQUIRED_FIELDS or table.column(name).null_count < table.num_rows]
    return _raw(table, source, None, False, {name: name for name in fields})


def _array_as_lines(data: Content) -> tuple[bytes, int] | None:
    """The items of a JSON array as a stream of objects, and how many separators were removed."""
    body = bytes(data).strip()
    if not (body.startswith(b"[") and body.endswith(b"]")):
        return None
    body = body[1:-1]
    separators = body.count(b"},\n") + body.count(b"},\r\n")
    return body.replace(b"},\r\n", b"}\r\n").replace(b"},\n", b"}\n"), separators


def _csv_pandas(data: Content, source: str) -> RawBattles | None:
    """CSV through pandas' C parser (pandas is a core dependency): the fast path without pyarrow."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=object, keep_default_na=False, na_filter=False,
                            skip_blank_lines=True, encoding="utf-8", engine="c")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    header = tuple(str(name).strip() for name in frame.columns)
    if len(set(header)) != len(header):
        return None
    columns: dict[str, RawColumn] = {}
    for raw_name, name in zip(frame.columns, header, strict=True):
        if name in FIELDS:
            values = frame[raw_name].to_numpy(dtype=object)
            if name == "tstamp":
                columns[name] = csv_tstamp(values)
            else:
                codes, uniques = pd.factorize(values, use_na_sentinel=True)
                columns[name] = Coded(np.asarray(codes, dtype=np.int32), list(uniques))
    return RawBattles(len(frame), columns, lambda i: f"{source}: row {i}", source, header, csv=True)


def read_columnar(data: Content, shape: Shape, source: str) -> RawBattles | None:
    """The cells of ``data`` read in columns — by pyarrow, or for CSV without pyarrow by pandas' C parser —
    or None when the file is declined (and without pyarrow, for JSON)."""
    if _NON_SPACE.search(data) is None:
        return None
    if not available():
        return _csv_pandas(data, source) if shape == "csv" else None
    if shape == "csv":
        return _csv(data, source)
    if shape == "jsonl":
        return _json(data, source, multiline=False)
    lines = _array_as_lines(data)
    if lines is None:
        return None
    body, separators = lines
    if not body.strip():
        return None
    raw = _json(body, source, multiline=True)
    if raw is None or raw.rows != separators + 1:
        return None
    return raw
