"""The logical requests of a run: which (challenge, variant, target, sample) to perform, and the request
each becomes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from harness.challenges import Challenge, Params
from harness.errors import ConfigError
from harness.providers.base import GenerationRequest
from harness.records import RequestKey
from harness.run.options import RunOptions
from harness.targets import Target


@dataclass(frozen=True)
class WorkItem:
    """One logical request to perform.

    A resumed request continues where its process stopped: ``first_attempt`` is the next attempt number (the
    retry budget counts from attempt 1), ``first_started_at`` the Unix time its first attempt started (time to
    image spans the interruption), ``not_before`` the Unix time before which it must not be sent again (the
    last attempt's ``Retry-After`` or backoff, already time-scaled)."""

    key: RequestKey
    challenge: Challenge
    target: Target
    first_attempt: int = 1
    first_started_at: float | None = None
    not_before: float | None = None



def _shard_of(key: RequestKey, count: int) -> int:
    text = f"{key.challenge_id}\x00{key.variant}\x00{key.target}\x00{key.sample}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) % count


def unsupported_pairs(challenges: Sequence[Challenge], targets: Sequence[Target]) -> list[tuple[str, str]]:
    """(challenge id, target name) pairs skipped because the target cannot do the challenge's kind."""
    return [(c.id, t.name) for c in challenges for t in targets if not t.supports(c.kind)]


def plan_items(challenges: Sequence[Challenge], targets: Sequence[Target], options: RunOptions) -> list[WorkItem]:
    """Every (challenge, variant, target, sample) of the run, filtered by variants, shard and the kinds each
    target supports (see :func:`unsupported_pairs`)."""
    items: list[WorkItem] = []
    for challenge in challenges:
        variants = [v for v in challenge.prompts if not options.variants or v in options.variants]
        for variant in variants:
            for target in targets:
                if not target.supports(challenge.kind):
                    continue
                for sample in range(options.samples):
                    key = RequestKey(challenge.id, variant, target.name, sample)
                    if options.shard and _shard_of(key, options.shard[1]) != options.shard[0]:
                        continue
                    items.append(WorkItem(key, challenge, target))
    if options.variants and not items:
        raise ConfigError(f"no challenge has variant(s) {', '.join(options.variants)}")
    return items


def build_request(item: WorkItem, target: Target, options: RunOptions) -> GenerationRequest:
    """The protocol-neutral request for a work item."""
    ch = item.challenge
    params: Params = ch.params
    seed = None if params.seed is None else params.seed + item.key.sample
    stream = target.stream if options.stream is None else options.stream
    return GenerationRequest(
        model_id=target.model, prompt=ch.prompts[item.key.variant], kind=ch.kind, references=ch.references,
        mask=ch.mask, aspect_ratio=params.aspect_ratio, size=params.size, seed=seed, n=params.n, stream=stream,
    )


