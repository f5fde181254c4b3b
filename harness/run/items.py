"""The logical requests of a run: which (challenge, variant, target, sample) to perform, and the request
each becomes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from harness.challenges import (
    MAX_INLINE_REQUEST_BYTES,
    Challenge,
    Params,
    conversation_load,
    estimated_answer_bytes,
)
from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, Exchange, GenerationRequest, multi_turn_refusal
from harness.providers.registry import get_protocol
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


def refusal(challenge: Challenge, target: Target) -> str | None:
    """Why ``target`` is not given ``challenge``, or ``None`` when it takes it: a kind the target does not
    take, or a multi-turn challenge on a protocol that keeps no conversation (see
    :func:`harness.providers.base.multi_turn_refusal`)."""
    if not target.supports(challenge.kind):
        return f"{target.name} does not take {challenge.kind.value} challenges"
    if target.mode == "batch":
        from harness.batch.protocol import batch_mode

        mode = batch_mode(target.protocol)
        if mode is not None and challenge.kind not in mode.kinds:
            return (f"{target.name}: the {target.protocol} batch mode sends only "
                    f"{', '.join(k.value for k in mode.kinds)} challenges")
    multi_turn = challenge.kind == ChallengeKind.MULTI_TURN
    if multi_turn and not get_protocol(target.protocol).keeps_conversation(target.options):
        return f"{target.name}: {multi_turn_refusal(target.protocol)}"
    if challenge.kind == ChallengeKind.MULTI_TURN and target.protocol == "gemini":
        return oversized_conversation(challenge, target)
    return None


def oversized_conversation(challenge: Challenge, target: Target) -> str | None:
    """Why ``challenge``'s conversation would outgrow Gemini's inline request limit on ``target``, whose own
    default size (target option ``image_size``) applies where the challenge names none; ``None`` if it fits."""
    params = challenge.params
    size = params.size or target.options.get("image_size")
    answer = estimated_answer_bytes(params.model_copy(update={"size": size}) if size else params)
    pictures = [t.references for t in challenge.turns]
    chars = [max((len(p) for p in t.prompts.values()), default=0) for t in challenge.turns]
    for load in conversation_load(pictures, chars, answer):
        if load.request_bytes > MAX_INLINE_REQUEST_BYTES:
            return (f"{target.name}: turn {load.turn} of {challenge.id} would send about "
                    f"{load.request_bytes / 1e6:.1f} MB with its history (answers of up to {answer / 1e6:.1f} MB "
                    f"at size {size or 'default'}), over Gemini's {MAX_INLINE_REQUEST_BYTES / 1e6:.0f} MB inline limit")
    return None


def unsupported_pairs(challenges: Sequence[Challenge], targets: Sequence[Target]) -> list[tuple[str, str]]:
    """(challenge id, target name) pairs skipped because the target cannot do the challenge (:func:`refusal`)."""
    return [(c.id, t.name) for c in challenges for t in targets if refusal(c, t) is not None]


def plan_items(challenges: Sequence[Challenge], targets: Sequence[Target], options: RunOptions) -> list[WorkItem]:
    """Every (challenge, variant, target, sample) of the run, filtered by variants, shard and the kinds each
    target supports (see :func:`unsupported_pairs`)."""
    items: list[WorkItem] = []
    refused: list[str] = []
    for challenge in challenges:
        variants = [v for v in challenge.prompts if not options.variants or v in options.variants]
        for variant in variants:
            for target in targets:
                reason = refusal(challenge, target)
                if reason is not None:
                    if challenge.kind == ChallengeKind.MULTI_TURN and target.supports(challenge.kind):
                        refused.append(reason)
                    continue
                for sample in range(options.samples):
                    key = RequestKey(challenge.id, variant, target.name, sample)
                    if options.shard and _shard_of(key, options.shard[1]) != options.shard[0]:
                        continue
                    items.append(WorkItem(key, challenge, target))
    if options.variants and not items:
        raise ConfigError(f"no challenge has variant(s) {', '.join(options.variants)}")
    if not items and refused:
        raise ConfigError("no request to send: " + "; ".join(dict.fromkeys(refused)))
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




def build_turn_request(item: WorkItem, target: Target, options: RunOptions, turn: int,
                       history: Sequence[Exchange]) -> GenerationRequest:
    """The request of turn ``turn`` (0-based) of a multi-turn work item: the turn's prompt for the item's
    variant and its images, after ``history`` (the earlier turns' exchanges). Every turn uses the item's seed."""
    ch = item.challenge
    step = ch.turns[turn]
    base = build_request(item, target, options)
    return GenerationRequest(
        model_id=base.model_id, prompt=step.prompts[item.key.variant], kind=ChallengeKind.MULTI_TURN,
        references=step.references, aspect_ratio=base.aspect_ratio, size=base.size, seed=base.seed, n=1,
        stream=base.stream, history=tuple(history),
    )
