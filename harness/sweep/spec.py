"""What a sweep is: its levels (concurrency or request rate), its bounds and stop rules, and how each level's
run names the sweep it belongs to.

A sweep has no table of its own: each level is an ordinary run whose ``label`` carries the whole sweep
definition (:meth:`SweepSpec.label`), so ``harness runs`` and ``harness stats`` show the levels as they show any
run, and ``harness sweep --resume`` rebuilds the sweep from the labels alone. The label format is versioned
(``v=1``); a label this code cannot read is reported, never guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from harness.errors import ConfigError

Mode = Literal["concurrency", "rpm"]
"""What a level sets: requests in flight (``concurrency``) or requests per minute sent (``rpm``)."""

LABEL_VERSION = 1
"""Version of the sweep label format (``v=`` in the label)."""

MAX_LEVELS = 12
"""Most levels one sweep may have (a sweep is a bounded probe, not a load test)."""
MAX_REQUESTS_PER_LEVEL = 500
"""Most requests one level may send."""
DEFAULT_REQUESTS_PER_LEVEL = 20
DEFAULT_MAX_429_SHARE = 0.1
"""The sweep stops climbing after a level in which more than this share of attempts were answered 429."""
DEFAULT_MIN_GAIN = 0.1
"""A level raises throughput only when it beats the best lower level by at least this fraction (10 %)."""

_KEY: dict[Mode, str] = {"concurrency": "c", "rpm": "rpm"}
_MODE: dict[str, Mode] = {"c": "concurrency", "rpm": "rpm"}
_OPTION: dict[Mode, str] = {"concurrency": "--concurrency", "rpm": "--rpm"}
_LABEL = re.compile(
    r"^sweep:(?P<id>[A-Za-z0-9_.-]+):(?P<key>c|rpm)=(?P<level>[0-9.eE+-]+)"
    r" v=(?P<v>\d+) levels=(?P<levels>[0-9.,eE+-]+) n=(?P<n>\d+) max429=(?P<max429>[0-9.eE+-]+)"
    r" gain=(?P<gain>[0-9.eE+-]+)(?: spend=(?P<spend>[0-9.eE+-]+))?$"
)


def number(value: float) -> str:
    """A level or share as written in labels and ids: whole numbers without a decimal point (``8``), others in
    their shortest exact form (``7.5``)."""
    return str(int(value)) if value == int(value) else repr(value)


def option_of(mode: Mode) -> str:
    """The command-line option that gives a sweep's levels in ``mode``."""
    return _OPTION[mode]


def parse_levels(text: str, mode: Mode) -> tuple[float, ...]:
    """Levels from a comma-separated list (``1,2,4,8``): positive, strictly increasing, at most
    :data:`MAX_LEVELS`; whole numbers for concurrency. Errors name the option and the offending value."""
    option = option_of(mode)
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ConfigError(f"{option}: no levels given; list them, e.g. {option} "
                          f"{'1,2,4,8,16' if mode == 'concurrency' else '30,60,120'}")
    levels: list[float] = []
    for part in parts:
        if not part:
            raise ConfigError(f"{option}: empty level in {text!r}")
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{option}: level {part} must be positive")
        if mode == "concurrency" and value != int(value):
            raise ConfigError(f"{option}: level {part} must be a whole number of requests in flight")
        if levels and value <= levels[-1]:
            raise ConfigError(f"{option}: levels must increase, but {part} follows {levels[-1]:g}")
        levels.append(value)
    if len(levels) > MAX_LEVELS:
        raise ConfigError(f"{option}: {len(levels)} levels; a sweep has at most {MAX_LEVELS}")
    return tuple(levels)


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: ``levels`` (ascending) of ``mode`` against one target, ``requests`` requests per level.

    ``max_429_share``: the sweep runs no higher level after one whose share of 429 attempts exceeds it.
    ``min_gain``: the relative throughput gain a level must show over the best lower level to count as still
    rising (the knee rule). ``max_spend_usd``: the cap over the whole sweep (USD); each level's run is capped
    at what is left of it."""

    sweep_id: str
    mode: Mode
    levels: tuple[float, ...]
    requests: int = DEFAULT_REQUESTS_PER_LEVEL
    max_429_share: float = DEFAULT_MAX_429_SHARE
    min_gain: float = DEFAULT_MIN_GAIN
    max_spend_usd: float | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.sweep_id):
            raise ConfigError(f"sweep id {self.sweep_id!r} may only hold letters, digits, '.', '_' and '-'")
        if not self.levels:
            raise ConfigError(f"{option_of(self.mode)}: no levels given")
        if not 1 <= self.requests <= MAX_REQUESTS_PER_LEVEL:
            raise ConfigError(f"--requests-per-level must be between 1 and {MAX_REQUESTS_PER_LEVEL}, "
                              f"not {self.requests}")
        if not 0 <= self.max_429_share < 1:
            raise ConfigError(f"--max-429-share must be at least 0 and below 1, not {self.max_429_share:g}")
        if not (self.min_gain >= 0 and math.isfinite(self.min_gain)):
            raise ConfigError(f"--min-gain must not be negative, not {self.min_gain:g}")
        if self.max_spend_usd is not None and not (self.max_spend_usd > 0 and math.isfinite(self.max_spend_usd)):
            raise ConfigError(f"--max-spend must be a positive amount in USD, not {self.max_spend_usd!r}")
        if self.mode == "concurrency" and self.levels[-1] > self.requests:
            raise ConfigError(f"--concurrency level {self.levels[-1]:g} exceeds --requests-per-level "
                              f"{self.requests}: that level could never have so many requests in flight")

    @property
    def key(self) -> str:
        """The level's short name in labels and run ids: ``c`` or ``rpm``."""
        return _KEY[self.mode]

    def level_name(self, level: float) -> str:
        """``c=8`` or ``rpm=30``."""
        return f"{self.key}={number(level)}"

    def run_id(self, level: float) -> str:
        """The id of the run of ``level``: the sweep id plus the level (``<sweep>-c8``)."""
        return f"{self.sweep_id}-{self.key}{number(level)}"

    def label(self, level: float) -> str:
        """The label of the run of ``level``; it carries the whole sweep (see :func:`parse_label`)."""
        text = (f"sweep:{self.sweep_id}:{self.level_name(level)} v={LABEL_VERSION} "
                f"levels={','.join(number(v) for v in self.levels)} n={self.requests} "
                f"max429={number(self.max_429_share)} gain={number(self.min_gain)}")
        if self.max_spend_usd is not None:
            text += f" spend={number(self.max_spend_usd)}"
        return text


ATTACHED_SUFFIX = ".sweep"


def attached_sweep_id(run_id: str) -> str:
    """The id of the sweep attached to run ``run_id`` (``<run id>.sweep``): a report of that run shows the
    sweep beside it (``harness sweep --attach RUN_ID``; the demo attaches its sweep to its run this way)."""
    return f"{run_id}{ATTACHED_SUFFIX}"


def is_sweep_label(label: str | None) -> bool:
    """Whether a run's label says the run is a sweep level."""
    return bool(label) and str(label).startswith("sweep:")


def parse_label(label: str, run_id: str = "?") -> tuple[SweepSpec, float]:
    """The sweep and the level a run's label names; :class:`ConfigError` naming the run when it is not a
    sweep label this harness can read."""
    match = _LABEL.match(label)
    if match is None:
        raise ConfigError(f"run {run_id}: label {label!r} is not a sweep label this harness understands")
    version = int(match["v"])
    if version > LABEL_VERSION:
        raise ConfigError(f"run {run_id}: sweep label version {version} is newer than this harness understands "
                          f"({LABEL_VERSION}); upgrade the harness")
    mode = _MODE[match["key"]]
    try:
        levels = tuple(float(v) for v in match["levels"].split(","))
        spec = SweepSpec(sweep_id=match["id"], mode=mode, levels=levels, requests=int(match["n"]),
                         max_429_share=float(match["max429"]), min_gain=float(match["gain"]),
                         max_spend_usd=float(match["spend"]) if match["spend"] else None)
        level = float(match["level"])
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"run {run_id}: unreadable sweep label {label!r}: {exc}") from None
    if level not in levels:
        raise ConfigError(f"run {run_id}: sweep label names level {level:g}, not one of its levels")
    return spec, level
