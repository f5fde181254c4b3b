"""Typed values of batch jobs: where a job stands and how each of its requests ended."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from harness.providers.base import GenerationResult, ProviderError


class JobState(enum.StrEnum):
    """A job's state in the harness's words (each protocol maps its provider's own names onto these)."""

    PENDING = "pending"
    """Accepted, not running yet (OpenAI ``validating``; Gemini ``JOB_STATE_PENDING``)."""
    RUNNING = "running"
    """Its requests are being processed (OpenAI ``in_progress``/``finalizing``/``cancelling``)."""
    SUCCEEDED = "succeeded"
    """Ended with results (each request may still have failed on its own)."""
    FAILED = "failed"
    """Ended without running its requests (validation failed)."""
    EXPIRED = "expired"
    """Its window ended first: finished requests have results, the rest failed."""
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


@dataclass(frozen=True)
class JobStatus:
    """One poll's answer: the state, the provider's own word for it, and where the results are."""

    state: JobState
    provider_state: str
    results_ref: str | None = None
    """Where successful results are (OpenAI's output file id; Gemini's responses file, when not inline)."""
    errors_ref: str | None = None
    """Where failed lines are (OpenAI's error file id)."""
    message: str | None = None
    """Why the job failed as a whole (the provider's first error), if it did."""
    inline: list[dict[str, object]] = field(default_factory=list)
    """Results carried in the status itself (Gemini's inlined responses)."""


@dataclass
class LineOutcome:
    """How one request of a job ended: a result or a classified error, with the bytes its line took."""

    result: GenerationResult | None = None
    error: ProviderError | None = None
    nbytes: int = 0
