"""What the arena can show: successful outputs grouped into matchups (one challenge variant, outputs from
two or more targets), read from the store at start and again every ``pool_refresh_s`` seconds
(:class:`PoolRefresher`), so runs finished since appear without a restart.

A matchup is keyed by challenge id, variant and the challenge's content hash, so outputs of the same
challenge from several runs are pooled (a provider benchmarked in another run can face this one), while a
changed challenge (other prompt or reference bytes) never meets its older self.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from math import gcd
from typing import Any

from harness.arena.blind import DEFAULT_RATIO, can_decode
from harness.arena.config import ArenaConfig
from harness.errors import ConfigError, HarnessError
from harness.globs import select_names
from harness.store import Store
from harness.store import runs as run_store

log = logging.getLogger("harness.arena")


@dataclass(frozen=True, slots=True)
class Entry:
    """One successful output image of a target."""

    attempt_id: int
    run_id: str
    target: str
    model: str
    provider: str
    sha256: str
    ext: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Picture:
    """A reference image (or mask) of a challenge; ``label`` is what the page calls it."""

    label: str
    sha256: str
    ext: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Matchup:
    """One challenge variant and, per target, its outputs."""

    key: str
    challenge_id: str
    variant: str
    title: str
    prompt: str
    kind: str
    category: str
    references: tuple[Picture, ...]
    entries: Mapping[str, tuple[Entry, ...]]
    ratio: tuple[int, int] = DEFAULT_RATIO
    """Aspect ratio (width, height) the challenge asked for; both sides of a pair are cropped to it."""

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(sorted(self.entries))


@dataclass(frozen=True, slots=True)
class ArenaPool:
    """Every matchup of the chosen runs and targets; ``skipped_missing`` counts outputs whose image file
    is gone from the image store, ``skipped_formats`` those this Pillow cannot decode (reason -> count):
    both are left out rather than failing when shown."""

    matchups: tuple[Matchup, ...]
    run_ids: tuple[str, ...]
    skipped_missing: int
    skipped_formats: Mapping[str, int] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(sorted({t for m in self.matchups for t in m.entries}))

    def by_key(self) -> dict[str, Matchup]:
        return {m.key: m for m in self.matchups}


def _pictures(challenge: Mapping[str, Any]) -> tuple[Picture, ...]:
    refs = [Picture(f"Reference {i}", r["sha256"], r["ext"], r["width"], r["height"])
            for i, r in enumerate(challenge["references"], 1)]
    mask = challenge.get("mask")
    if mask:
        refs.append(Picture("Mask", mask["sha256"], mask["ext"], mask["width"], mask["height"]))
    return tuple(refs)


def requested_ratio(params: Mapping[str, Any] | None) -> tuple[int, int]:
    """The aspect ratio a challenge's parameters ask for: ``aspect_ratio`` (``"16:9"``), else a
    ``WIDTHxHEIGHT`` size, else :data:`DEFAULT_RATIO`."""
    params = params or {}
    aspect, size = params.get("aspect_ratio"), params.get("size")
    for text, sep in ((aspect, ":"), (size, "x")):
        if isinstance(text, str) and sep in text:
            try:
                w, h = (int(v) for v in text.split(sep, 1))
            except ValueError:
                continue
            if w > 0 and h > 0:
                g = gcd(w, h)
                return w // g, h // g
    return DEFAULT_RATIO


def _selected_targets(present: set[str], patterns: Sequence[str]) -> set[str]:
    chosen, unmatched = select_names(sorted(present), patterns)
    if unmatched:
        raise ConfigError(f"arena target {unmatched[0]!r} matches no target with outputs in the chosen runs "
                          f"(they have: {', '.join(sorted(present)) or 'none'})")
    return set(chosen)


def load_pool(store: Store, run_ids: Sequence[str] = (), targets: Sequence[str] = ()) -> ArenaPool:
    """Matchups of ``run_ids`` (all runs when empty; ``latest`` names the newest) restricted to ``targets``
    (names or globs). Raises :class:`ConfigError` when nothing can be paired."""
    if run_ids:
        runs = list(dict.fromkeys(run_store.get_run(store, r).id for r in run_ids))
    else:
        runs = [r.id for r in run_store.list_runs(store)]
    if not runs:
        raise ConfigError(f"store {store.path} has no runs: run `harness run` (or `harness demo`) first")
    frame = run_store.outputs_frame(store, runs)
    present = set(frame["target"]) if len(frame) else set()
    chosen = _selected_targets(present, targets)
    challenges = {(r, c["id"]): c for r in runs for c in run_store.run_challenges(store, r)}
    grouped: dict[str, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, tuple[Mapping[str, Any], str]] = {}
    missing = 0
    formats: dict[str, int] = defaultdict(int)
    for row in frame.itertuples(index=False):
        if row.target not in chosen:
            continue
        decodable, reason = can_decode(str(row.ext))
        if not decodable:
            formats[reason] += 1
            continue
        challenge = challenges[(row.run_id, row.challenge_id)]
        if not store.image_path(row.sha256, row.ext).is_file():
            missing += 1
            continue
        key = f"{row.challenge_id}/{row.variant}/{challenge['content_hash'][:12]}"
        meta.setdefault(key, (challenge, row.variant))
        grouped[key][row.target].append(Entry(int(row.attempt_id), row.run_id, row.target, row.model,
                                              row.provider, row.sha256, row.ext, int(row.width),
                                              int(row.height)))
    matchups = []
    for key in sorted(grouped):
        by_target = grouped[key]
        if len(by_target) < 2:
            continue
        chosen_challenge, variant = meta[key]
        matchups.append(Matchup(
            key=key, challenge_id=chosen_challenge["id"], variant=variant, title=chosen_challenge["title"],
            prompt=chosen_challenge["prompts"][variant], kind=chosen_challenge["kind"],
            category=chosen_challenge["category"],
            references=_pictures(chosen_challenge), entries={t: tuple(e) for t, e in sorted(by_target.items())},
            ratio=requested_ratio(chosen_challenge.get("params")),
        ))
    if not matchups:
        raise ConfigError(
            f"nothing to pair in run(s) {', '.join(runs)}: the arena needs challenges with successful outputs "
            f"from at least two different targets (targets with outputs: {', '.join(sorted(chosen)) or 'none'})"
        )
    return ArenaPool(tuple(matchups), tuple(runs), missing, dict(formats))


class PoolRefresher:
    """Reloads the pool from the store at most every ``config.pool_refresh_s`` seconds, so a run finished
    while the arena is up (by any host writing to the same store) is on offer within one interval, on every
    app server, without a restart. Lives on the arena's store thread, like the store connection it reads."""

    def __init__(self, config: ArenaConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._due = clock() + (config.pool_refresh_s or 0.0)

    def poll(self, store: Store) -> ArenaPool | None:
        """A freshly loaded pool when an interval has passed since the last load, else None (also None when
        refreshing is off, or when the reload fails: the arena keeps serving its current pool, and says why
        in the log)."""
        interval = self.config.pool_refresh_s
        now = self._clock()
        if not interval or now < self._due:
            return None
        self._due = now + interval
        try:
            return load_pool(store, self.config.run_ids, self.config.targets)
        except HarnessError as exc:
            log.warning("arena: pool not refreshed, the current one is kept: %s", exc)
            return None
