"""Which runs form a series, in order, and which of them measured alike.

A run joins a series when it is started with ``harness run --series NAME`` (stored in its configuration as
``series``, :class:`harness.run.RunOptions`). A series' runs are ordered by when they were created (then by id).

Two runs *measured alike* when they share a :class:`Measurement`: the same clock version (what latency means,
:mod:`harness.gate.versions`), both against real providers or both in the sandbox, and in the sandbox the same
time scale (every simulated delay is multiplied by it). Runs measured otherwise are shown apart and never
compared: a change between them would be the definition's, not the provider's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.globs import suggestions
from harness.records import RunInfo
from harness.store import Store
from harness.store import runs as run_store


@dataclass(frozen=True, order=True)
class Measurement:
    """What a run's figures mean: ``clock_version``, ``sandbox`` and (sandbox only) ``time_scale``."""

    clock_version: int
    sandbox: bool
    time_scale: float | None

    @property
    def name(self) -> str:
        """``clock v2, real providers`` or ``clock v2, sandbox at scale 0.1``."""
        where = f"sandbox at scale {self.time_scale:g}" if self.sandbox and self.time_scale else (
            "sandbox" if self.sandbox else "real providers")
        return f"clock v{self.clock_version}, {where}"


@dataclass(frozen=True)
class SeriesRun:
    """One run of a series, with its place (``index``, 0 first) and how it measured."""

    index: int
    info: RunInfo
    measurement: Measurement


def series_of(info: RunInfo) -> str | None:
    """The series ``info`` belongs to, or ``None``."""
    value = info.config.get("series")
    return value if isinstance(value, str) and value else None


def measurement_of(info: RunInfo) -> Measurement:
    scale = float(info.time_scale) if info.sandbox and info.time_scale else None
    return Measurement(int(info.clock_version), bool(info.sandbox), scale)


def known_series(runs: Sequence[RunInfo]) -> dict[str, int]:
    """Every series among ``runs`` and how many runs it has, by name."""
    counts: dict[str, int] = {}
    for info in runs:
        name = series_of(info)
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def series_runs(store: Store, name: str) -> list[SeriesRun]:
    """The runs of series ``name`` in order; a :class:`ConfigError` listing the known series when it has none."""
    runs = run_store.list_runs(store)
    chosen = sorted((r for r in runs if series_of(r) == name), key=lambda r: (r.created_at, r.id))
    if not chosen:
        known = known_series(runs)
        if not known:
            raise ConfigError(f"no series {name!r} in {store.path}: no run there belongs to a series yet; start one "
                              "with `harness run --series NAME`")
        close = suggestions(name, known)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        listed = ", ".join(f"{k} ({n} run{'s' if n != 1 else ''})" for k, n in known.items())
        raise ConfigError(f"no series {name!r} in {store.path}{hint}; known series: {listed}")
    return [SeriesRun(i, info, measurement_of(info)) for i, info in enumerate(chosen)]
