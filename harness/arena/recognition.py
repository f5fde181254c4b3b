"""Blindness against recognition: what the arena may still show a voter once votes have revealed names.

A vote reveals who made both images. An output shown again is recognisable: its blind bytes are cached,
so identical (an exact hash knows it), and any re-encoding would still leave it perceptually the same (a
dHash knows it). The arena therefore keeps, per store:

* **what each identity has seen revealed**: the voter cookie and the client address (the address too,
  since a fresh cookie costs nothing). An output revealed to either is never shown to them again, nor is
  any output perceptually the same picture (its dHash within :data:`harness.arena.phash.NEAR_BITS`);
  a vote on a pair that shows one (fetched before the other vote revealed it) is refused;
* **how often each output was served**: at most ``max_servings`` times in all, which bounds how long a
  revealed output keeps being shown to others (a bot with many identities learns each output once);
* **broken outputs**: an image that fails to decode is left out of pairing, with the reason logged.

Lives on the arena's store thread: not thread-safe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from harness.arena.phash import NEAR_BITS, near


class Recognition:
    """Near-duplicate groups of outputs (by dHash), serving counts and broken outputs.

    ``max_servings`` None means no cap. Groups are a union-find over outputs whose hashes are known; an
    output whose hash is not known yet is its own group until its first rendering adds the hash.
    """

    def __init__(self, max_servings: int | None, servings: Mapping[str, int] | None = None,
                 hashes: Mapping[str, int] | None = None) -> None:
        self.max_servings = max_servings
        self.servings: Counter[str] = Counter(servings or {})
        self.broken: dict[str, str] = {}
        self._parent: dict[str, str] = {}
        self._shas: list[str] = []
        self._hashes = np.zeros(0, dtype=np.uint64)
        self.hash_of: dict[str, int] = {}
        for sha, h in (hashes or {}).items():
            self.add_hash(sha, h)

    def _root(self, sha: str) -> str:
        parent = self._parent.get(sha, sha)
        if parent == sha:
            return sha
        root = self._root(parent)
        self._parent[sha] = root
        return root

    def group(self, sha: str) -> str:
        """The group (a representative SHA-256) an output belongs to."""
        return self._root(sha)

    def add_hash(self, sha: str, h: int) -> None:
        """Record an output's dHash, joining it to every known output within ``NEAR_BITS``."""
        if sha in self.hash_of:
            return
        if len(self._shas):
            for i in np.flatnonzero(near(self._hashes, h, NEAR_BITS)):
                a, b = self._root(sha), self._root(self._shas[int(i)])
                if a != b:
                    self._parent[a] = b
        self.hash_of[sha] = h
        self._shas.append(sha)
        self._hashes = np.append(self._hashes, np.uint64(h))

    def groups(self, shas: Iterable[str]) -> set[str]:
        return {self._root(s) for s in shas}

    def servable(self, sha: str, seen_groups: set[str]) -> bool:
        """May this output be served to an identity that has seen ``seen_groups`` revealed?"""
        if sha in self.broken or self._root(sha) in seen_groups:
            return False
        return self.max_servings is None or self.servings[sha] < self.max_servings

    def servable_pair(self, left: str, right: str, seen_groups: set[str]) -> bool:
        """May these two outputs be served together (the cap counts an output shown on both sides twice)?"""
        if not (self.servable(left, seen_groups) and self.servable(right, seen_groups)):
            return False
        return left != right or self.max_servings is None or self.servings[left] + 2 <= self.max_servings

    def note_served(self, *shas: str) -> None:
        self.servings.update(shas)
