"""The strict gates run with the tests: ruff on everything, mypy --strict on the package."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "harness", "tests"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_package() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_file_cites_a_document_outside_the_repository() -> None:
    """Facts are stated where they are used, with a public source; research notes that are not in the
    repository (a design note, the reference notes on providers, latency, ratings, quality, style or peers, the
    seed files) are never cited by the package, the challenges, the docs or the README. A page of docs/ may link
    another page of docs/ by its bare name, which resolves inside the repository."""
    outside = re.compile(r"DESIGN\.md|(?<![\w-])(?:providers|latency|ratings|quality|style|peers)\.md"
                         r"|\bseeds/|shared/reference|\breference/\w+\.md")
    files = [ROOT / "README.md", ROOT / "SECURITY.md"]
    for top in ("harness", "challenges", "docs"):
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    cited = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for match in outside.finditer(line):
                ours = (ROOT / "docs" / match.group(0)).is_file()
                in_repo = ours and (line[:match.start()].endswith("docs/") or path.parent == ROOT / "docs")
                if not in_repo:
                    cited.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not cited, "documents outside the repository cited:\n" + "\n".join(cited)
