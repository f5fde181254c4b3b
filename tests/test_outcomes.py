"""One outcome vocabulary: the words a store, a table and a report use for how attempts and runs ended are
those of harness.outcomes, and every word the sandbox's faults produce is one of them."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import outcomes
from harness.outcomes import ERROR_KINDS, NOT_SENT, RETRYABLE, ErrorKind, RunStatus, tile_outcome
from harness.providers import base
from harness.records import NOT_SENT as RECORDS_NOT_SENT
from harness.sandbox.faults import EXPECTED_KIND

PACKAGE = Path(outcomes.__file__).parent


def test_every_error_kind_an_adapter_can_raise_is_a_stored_word_with_a_meaning() -> None:
    assert base.ErrorKind is ErrorKind, "adapters raise the one vocabulary's kinds"
    assert {*(k.value for k in ErrorKind), NOT_SENT} == ERROR_KINDS
    assert {k.value for k in EXPECTED_KIND.values() if k is not None} <= ERROR_KINDS
    doc = ast.get_docstring
    tree = ast.parse((PACKAGE / "outcomes.py").read_text(encoding="utf-8"))
    (enum_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ErrorKind"]
    documented = [a.targets[0].id for a, d in zip(enum_class.body, enum_class.body[1:], strict=False)  # type: ignore[attr-defined]
                  if isinstance(a, ast.Assign) and isinstance(d, ast.Expr) and isinstance(d.value, ast.Constant)]
    assert documented == [k.name for k in ErrorKind], "every error kind says what it means"
    assert doc(enum_class)


def test_only_failures_that_waiting_can_cure_are_retried() -> None:
    assert {k for k in ErrorKind if k.retryable} == RETRYABLE
    assert ErrorKind.RATE_LIMITED.retryable and not ErrorKind.AUTH.retryable
    assert base.ErrorKind("timeout").retryable


def test_not_sent_is_defined_once_and_records_re_export_it() -> None:
    assert RECORDS_NOT_SENT is NOT_SENT == "not_sent"
    definitions = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NOT_SENT"
                                                    for t in node.targets):
                definitions.append(path.relative_to(PACKAGE).as_posix())
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "NOT_SENT":
                definitions.append(path.relative_to(PACKAGE).as_posix())
    assert definitions == ["outcomes.py"]


def test_run_statuses_and_gallery_outcomes_read_as_plain_words() -> None:
    assert [s.value for s in RunStatus] == ["running", "finished", "interrupted", "failed"]
    assert RunStatus("finished") == "finished"
    assert tile_outcome(True, None) == "ok"
    assert tile_outcome(False, NOT_SENT) == "not sent"
    assert tile_outcome(False, ErrorKind.TIMEOUT) == "failed"
    assert set(outcomes.TILE_OUTCOMES) == set(outcomes.TileOutcome.__args__)  # type: ignore[attr-defined]
