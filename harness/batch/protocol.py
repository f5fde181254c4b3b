"""What a protocol's batch mode does, and which protocols have one.

A batch mode wraps the protocol's interactive adapter (it builds each request's body and parses each
answer exactly as the interactive endpoint's), adding the job's life: :meth:`BatchProtocol.submit` sends the
requests as one job and returns the provider's job id, :meth:`BatchProtocol.poll` reads its state,
:meth:`BatchProtocol.collect` returns each request's outcome by its line key. HTTP calls go through the
``httpx.AsyncClient`` handed in (the run's pool for the target), with the key in the protocol's own header.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping, Sequence
from typing import ClassVar

import httpx

from harness.batch.model import JobStatus, LineOutcome
from harness.providers.base import ChallengeKind, GenerationRequest, Provider

BATCH_MODES: dict[str, str] = {
    "openai-images": "harness.batch.openai:OpenAIBatch",
    "gemini": "harness.batch.gemini:GeminiBatch",
}
"""Protocol -> its batch mode's class. A target with ``mode: batch`` on any other protocol is a config error."""


class BatchProtocol(abc.ABC):
    """One protocol's batch mode for one target (its adapter, hence its base URL, key and options)."""

    protocol: ClassVar[str]
    max_requests: ClassVar[int]
    """Most requests the provider takes in one job (the runner splits larger sets)."""
    kinds: ClassVar[tuple[ChallengeKind, ...]]
    """Challenge kinds this batch mode can send (others are skipped with the reason, never failed)."""
    discount: ClassVar[float]
    """Share of the interactive price the provider takes off for batch requests (0.5: half price)."""
    discount_url: ClassVar[str]
    """The provider's public page that states the discount."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @abc.abstractmethod
    async def submit(self, client: httpx.AsyncClient, lines: Mapping[str, GenerationRequest], name: str) -> str:
        """Send ``lines`` (line key -> request) as one job named ``name``; the provider's job id. Raises
        :class:`~harness.providers.base.ProviderError` when the provider refuses it (nothing was submitted)."""

    @abc.abstractmethod
    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        """The job's state now."""

    @abc.abstractmethod
    async def collect(self, client: httpx.AsyncClient, job_id: str, status: JobStatus,
                      keys: Sequence[str]) -> dict[str, LineOutcome]:
        """Each line's outcome once the job is terminal; a key the provider returned nothing for fails with
        the job's reason (an expired or failed job: every unfinished request is a recorded failure)."""


def batch_mode(protocol: str) -> type[BatchProtocol] | None:
    """The batch mode of ``protocol``, or None when it has none."""
    spec = BATCH_MODES.get(protocol)
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    cls: type[BatchProtocol] = getattr(importlib.import_module(module), name)
    return cls
