"""One version constant per persisted format: every integer version constant of the package is listed in
harness.formats, each listed constant is the one its module defines, and docs/formats.md shows the list."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import harness
from harness.formats import FORMATS, markdown_table

PACKAGE = Path(harness.__file__).parent
DOC = PACKAGE.parent / "docs" / "formats.md"
VERSION_NAME = re.compile(r"^[A-Z0-9_]*VERSION[A-Z0-9_]*$")



def _int_version_constants() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        module = "harness." + path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if (isinstance(target, ast.Name) and VERSION_NAME.match(target.id) and isinstance(value, ast.Constant)
                    and type(value.value) is int):
                found.add(f"{module}.{target.id}")
    return found


def _inline_schema_versions() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and key.value == "schema_version"
                            and isinstance(value, ast.Constant)):
                        found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_every_version_constant_of_the_package_is_a_listed_format() -> None:
    listed = {f.constant for f in FORMATS}
    assert _int_version_constants() == listed


def test_each_listed_version_is_the_constant_its_module_defines() -> None:
    for f in FORMATS:
        module, _, name = f.constant.rpartition(".")
        assert getattr(importlib.import_module(module), name) == f.version, f.name
    assert len({f.name for f in FORMATS}) == len(FORMATS)


def test_no_output_writes_its_version_as_a_bare_number() -> None:
    assert _inline_schema_versions() == set()


def test_the_formats_document_shows_the_current_list() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- formats table: generated from harness/formats.py -->\n", 1)[1]
    assert table.split("<!-- end of formats table -->", 1)[0] == markdown_table()
