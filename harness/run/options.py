"""How a run is configured (:class:`RunOptions`) and observed (:class:`RunObserver`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.errors import ConfigError
from harness.records import AttemptRecord
from harness.spend import SpendCaps
from harness.timing import DEFAULT_LIMITS, ResponseLimits

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_RETRY_WAIT_S = 120.0
DEFAULT_DEAD_TARGET_AFTER = 5
"""A target whose first this-many final attempts fail alike with a client error is stopped (0: never)."""

CONFIG_VERSION = 4
"""Version of the stored run configuration (``runs.config_json``). 1: the first release; 2: adds
``dead_target_after``, ``strict_size`` and ``limits``; 3: adds the spend caps ``max_spend_usd`` and
``max_spend_per_target_usd`` (an older harness must not resume a capped run and ignore its cap); 4: adds
``series`` (the trend series a run belongs to) and ``region`` (where the shard ran). Older configurations
read with today's defaults for what they lack (no series, no region)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run. Durations in seconds; in sandbox mode every simulated wait and timeout (total and read
    timeouts, pacing, retry waits) is multiplied by ``time_scale`` so a scaled run behaves like the real-time
    one, only faster. The connect timeout is not scaled: connecting to loopback is real, not simulated.

    ``dead_target_after``: stop sending to a target when its first this-many final attempts all fail with
    the same client error that no retry can fix (401, 403, 404, a 400 naming the model or a parameter);
    0 never stops. ``strict_size``: an image of another size than requested fails the attempt.
    """

    samples: int = 1
    concurrency: int = 4
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    retries: int = 0
    stream: bool | None = None
    rpm: float | None = None
    respect_limits: bool = True
    variants: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None
    sandbox: bool = False
    time_scale: float = 1.0
    sandbox_profile: str | None = None
    sandbox_faults: bool = True
    seed: int = 0
    label: str | None = None
    http2: bool = False
    dead_target_after: int = DEFAULT_DEAD_TARGET_AFTER
    strict_size: bool = False
    limits: ResponseLimits = DEFAULT_LIMITS
    """Bounds on what one attempt may receive (body bytes, compression ratio, stream size and length, image
    pixels); a hit fails that attempt, never the run."""
    max_spend_usd: float | None = None
    """The run never spends more than this (USD, as the harness computes cost); None: no cap."""
    max_spend_per_target_usd: float | None = None
    """No target spends more than this (USD) in the run; None: no cap."""
    series: str | None = None
    """The trend series the run belongs to (``harness trend SERIES`` compares a series' runs in order);
    None: the run is in no series."""
    region: str | None = None
    """A free label for where this run (or shard) ran, e.g. ``eu-west``; None: not said."""

    @property
    def spend_caps(self) -> SpendCaps:
        return SpendCaps(run_usd=self.max_spend_usd, per_target_usd=self.max_spend_per_target_usd)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale if self.sandbox else seconds

    def to_config(self) -> dict[str, Any]:
        """The options as JSON-able values, the form stored in a run's configuration."""
        data = asdict(self)
        data["variants"] = list(self.variants)
        data["shard"] = list(self.shard) if self.shard else None
        data["limits"] = asdict(self.limits)
        return data

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunOptions:
        """The options of a stored configuration (any :data:`CONFIG_VERSION` so far). Keys that are not
        options (paths, target names) are ignored; options the configuration lacks take today's defaults."""
        version = int(config.get("schema_version", 1))
        if version > CONFIG_VERSION:
            raise ConfigError(f"run configuration version {version} is newer than this harness understands "
                              f"({CONFIG_VERSION}); upgrade the harness")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in known}
        if "variants" in values:
            values["variants"] = tuple(values["variants"] or ())
        if values.get("shard"):
            values["shard"] = (int(values["shard"][0]), int(values["shard"][1]))
        if isinstance(values.get("limits"), Mapping):
            known_limits = {f.name for f in fields(ResponseLimits)}
            values["limits"] = ResponseLimits(**{k: v for k, v in values["limits"].items() if k in known_limits})
        return cls(**values)


class RunObserver:
    """Receives progress events; the CLI renders them (Rich bar or plain lines)."""

    def on_start(self, run_id: str, total: int, already_done: int) -> None:
        """The run starts with ``total`` requests, ``already_done`` of them finished earlier (resume)."""

    def on_attempt(self, record: AttemptRecord) -> None:
        """An attempt finished (final or about to be retried), or a request was recorded as not sent."""

    def on_target_stopped(self, target: str, reason: str) -> None:
        """``target`` gets no more requests (``reason`` says why); its remaining ones are recorded not sent."""

    def on_finish(self, run_id: str, status: str) -> None:
        """The run ended with ``status`` (finished, interrupted, failed)."""
