"""How a run is configured (:class:`RunOptions`) and observed (:class:`RunObserver`)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.records import AttemptRecord

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_RETRY_WAIT_S = 120.0


@dataclass(frozen=True)
class RunOptions:
    """How to run. Durations in seconds; in sandbox mode every simulated wait and timeout (total and read
    timeouts, pacing, retry waits) is multiplied by ``time_scale`` so a scaled run behaves like the real-time
    one, only faster. The connect timeout is not scaled: connecting to loopback is real, not simulated."""

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

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale if self.sandbox else seconds



class RunObserver:
    """Receives progress events; the CLI renders them (Rich bar or plain lines)."""

    def on_start(self, run_id: str, total: int, already_done: int) -> None:
        """The run starts with ``total`` requests, ``already_done`` of them finished earlier (resume)."""

    def on_attempt(self, record: AttemptRecord) -> None:
        """An attempt finished (final or about to be retried)."""

    def on_finish(self, run_id: str, status: str) -> None:
        """The run ended with ``status`` (finished, interrupted, failed)."""


