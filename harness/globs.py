"""The one way a name is matched by a pattern: exact names or shell globs (``*@fal``, ``gpt-image-*``).

Targets, arena pools, gate selectors and plans all select names this way, so a pattern means the same
thing in every command: case-sensitive, ``*``/``?``/``[...]`` as in the shell (``fnmatch.fnmatchcase``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence


def matches(name: str, pattern: str) -> bool:
    """Whether ``name`` is ``pattern`` or matches it as a shell glob."""
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """The names ``pattern`` selects, in their given order."""
    return [n for n in names if matches(n, pattern)]


def select_names(names: Sequence[str], patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(selected, unmatched)``: the names any pattern selects (in the names' order; all when there are no
    patterns) and the patterns that select nothing, for the caller to report in its own words."""
    if not patterns:
        return list(names), []
    chosen: set[str] = set()
    unmatched: list[str] = []
    for pattern in patterns:
        hits = matching(names, pattern)
        if not hits:
            unmatched.append(pattern)
        chosen.update(hits)
    return [n for n in names if n in chosen], unmatched


def suggestions(pattern: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Names close to a pattern that matched nothing (for "did you mean" hints)."""
    return difflib.get_close_matches(pattern, list(names), n=n, cutoff=0.4)
