"""``--a``/``--b`` selectors: which attempts form the baseline and the candidate.

A selector is comma-separated ``key=pattern`` pairs, e.g. ``target=gpt-image-1@openai``, ``variant=terse``,
``run=20261121T101500Z-3f2a,target=flux-*``. Patterns are shell globs matched against the attempt column;
``run`` names the run to read (overriding the positional run) and is matched exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.errors import ConfigError
from harness.globs import matching

SELECTOR_KEYS = {"run": "run_id", "target": "target", "variant": "variant", "challenge": "challenge_id",
                 "kind": "kind", "category": "category", "model": "model", "provider": "provider"}
"""Selector keys and the attempt column each filters."""


@dataclass(frozen=True)
class Selector:
    """A parsed selector: the run it names (if any) and ``(column, glob)`` filters."""

    text: str
    run: str | None = None
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> set[str]:
        return {c for c, _ in self.filters}

    def without_run(self) -> Selector:
        """The same filters with the run already resolved by the caller."""
        return Selector(self.text, None, self.filters)

    def apply(self, attempts: pd.DataFrame) -> pd.DataFrame:
        """The attempts matching every filter."""
        mask = pd.Series(True, index=attempts.index)
        for column, pattern in self.filters:
            values = attempts[column].astype(str)
            hits = matching(values.unique(), pattern)
            mask &= values.isin(hits)
        return attempts[mask]


def parse_selector(text: str | None, option: str) -> Selector:
    """Parse ``text`` given to ``option`` (``--a``/``--b``); a clear error names the bad part."""
    if not text:
        return Selector("")
    run: str | None = None
    filters: list[tuple[str, str]] = []
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"{option} {text!r}: {part!r} is not key=value (keys: {', '.join(SELECTOR_KEYS)})")
        if key not in SELECTOR_KEYS:
            raise ConfigError(f"{option} {text!r}: unknown key {key!r}; use one of {', '.join(SELECTOR_KEYS)}")
        if key == "run":
            run = value
        else:
            filters.append((SELECTOR_KEYS[key], value))
    return Selector(text, run, tuple(filters))
