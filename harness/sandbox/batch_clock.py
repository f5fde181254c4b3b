"""When a simulated batch job is in which state: one timeline shared by the OpenAI and Gemini batch servers.

Real batch jobs take minutes to hours (both providers target 24 hours). The sandbox compresses a job to
simulated seconds so runs end: a short validation/pending phase, a queue wait plus the slowest of its
requests' drawn generation times, a short finalizing phase. The timeline is read whenever the job is
polled (nothing runs in the background), scaled by the sandbox's ``time_scale`` like every other delay.

Tests ask for a job's fate with a marker in any of its prompts (it works through every SDK unchanged):
``[sandbox-batch:expire]`` — the job's window ends before its work does: it expires with the first half of
its requests done; ``[sandbox-batch:fail]`` — the job fails validation (no request is run).
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

PENDING_S = 2.0
"""Simulated seconds a job spends validating (OpenAI) or pending (Gemini)."""
QUEUE_S = 30.0
"""Simulated seconds a job waits in the provider's queue before its requests run."""
FINALIZING_S = 2.0
"""Simulated seconds between the last request ending and the results being available."""

_MARKER = re.compile(r"\[sandbox-batch:(expire|fail)\]")


class Fate(enum.StrEnum):
    """How a simulated job ends."""

    COMPLETE = "complete"
    EXPIRE = "expire"
    FAIL = "fail"


class Phase(enum.StrEnum):
    """Where a job stands on its timeline (each server names it in its own words)."""

    PENDING = "pending"
    RUNNING = "running"
    FINALIZING = "finalizing"
    DONE = "done"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


def fate_of(prompts: Iterable[str]) -> Fate:
    """The fate a job's prompts ask for (the first marker found wins; none: it completes)."""
    for prompt in prompts:
        match = _MARKER.search(prompt)
        if match:
            return Fate.EXPIRE if match.group(1) == "expire" else Fate.FAIL
    return Fate.COMPLETE


@dataclass
class JobClock:
    """One job's timeline: ``created`` (monotonic seconds) and its work (simulated seconds)."""

    created: float
    work_s: float
    time_scale: float
    fate: Fate = Fate.COMPLETE
    cancelled_at: float | None = None

    @classmethod
    def start(cls, latencies_s: Iterable[float], time_scale: float, fate: Fate) -> JobClock:
        """A job created now whose requests take ``latencies_s`` (simulated seconds, run side by side)."""
        return cls(time.monotonic(), QUEUE_S + max(latencies_s, default=0.0), time_scale, fate)

    def elapsed_s(self, now: float | None = None) -> float:
        """Simulated seconds since the job was created."""
        return ((time.monotonic() if now is None else now) - self.created) / self.time_scale

    def phase(self, now: float | None = None) -> Phase:
        at = self.elapsed_s(now)
        if self.cancelled_at is not None:
            since = ((time.monotonic() if now is None else now) - self.cancelled_at) / self.time_scale
            return Phase.CANCELLED if since >= FINALIZING_S else Phase.CANCELLING
        if at < PENDING_S:
            return Phase.PENDING
        if self.fate is Fate.FAIL:
            return Phase.DONE
        if at < PENDING_S + self.work_s:
            return Phase.RUNNING
        if at < PENDING_S + self.work_s + FINALIZING_S:
            return Phase.FINALIZING
        return Phase.DONE

    def progress(self, now: float | None = None) -> float:
        """Share (0..1) of the job's work done so far."""
        return min(1.0, max(0.0, (self.elapsed_s(now) - PENDING_S) / self.work_s)) if self.work_s > 0 else 1.0

    def cancel(self) -> None:
        if self.cancelled_at is None and self.phase() not in (Phase.DONE,):
            self.cancelled_at = time.monotonic()
