"""One attempt: send it through a provider adapter under the total timeout, validate its images, classify
any failure, and summarise its clock.

The provider's clock runs from the attempt's first request (already built: body serialised, references
encoded) to the provider's last byte; validating the images happens after it and is the attempt's
``client_ms``. Every limit of :class:`~harness.timing.ResponseLimits` and a ``MemoryError`` fail this attempt
only, classified, so the other requests of the run go on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from harness.images import CheckedImage, SizeCheck, check_images_async, size_asked
from harness.outcomes import ErrorKind
from harness.pricing import Cost, failure_cost, success_cost
from harness.providers.base import GenerationRequest, GenerationResult, Provider, ProviderError
from harness.records import AttemptRecord, OutputRecord, RequestKey
from harness.targets import Target
from harness.timing import (
    DEFAULT_LIMITS,
    AttemptClock,
    CallTiming,
    ResponseLimits,
    TimedHttp,
    now_ns,
    provider_end,
    summarize,
)

NO_SIZE = SizeCheck(None, None)


@dataclass
class AttemptOutcome:
    """One attempt's result or classified error, its validated images and its clock."""

    result: GenerationResult | None
    images: list[CheckedImage]
    error: ProviderError | None
    clock: AttemptClock
    t_start: int
    """``perf_counter_ns`` of the attempt's first call being issued (before it when no call was made)."""
    calls: list[CallTiming]
    size: SizeCheck = NO_SIZE
    t_end: int = 0
    """``perf_counter_ns`` where the provider's part ended (its last byte, or when the harness gave up)."""
    t_latency_start: int = 0
    """``perf_counter_ns`` where ``latency_ms`` starts: the first request's headers going out on a connection
    in hand (``t_start`` + ``conn_ms``). Time to image over retries is ``final.t_end − first.t_latency_start``,
    which equals ``latency_ms`` when there was one attempt."""


def classify_exception(exc: BaseException) -> ProviderError:
    """The taxonomy class of an exception raised while performing an attempt."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ProviderError(ErrorKind.TIMEOUT, f"no complete answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, MemoryError):
        return ProviderError(ErrorKind.BAD_OUTPUT, "the answer did not fit in memory (MemoryError)",
                             provider_code="out_of_memory")
    return ProviderError(ErrorKind.BAD_OUTPUT, f"unexpected response shape ({type(exc).__name__}: {exc})",
                         provider_code="adapter_parse_error")


UNANSWERED = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION})
"""Failures that come without a complete answer: the attempt ends when the harness gave up."""


async def perform_attempt(provider: Provider, request: GenerationRequest, client: httpx.AsyncClient,
                          timeout_s: float, *, strict_size: bool = False,
                          limits: ResponseLimits = DEFAULT_LIMITS) -> AttemptOutcome:
    """Send one attempt through ``provider`` within ``timeout_s`` (total), validate its images, classify any
    failure. ``strict_size``: an image of another size than asked fails the attempt (``bad_output``,
    ``size_mismatch``) instead of being recorded as not as asked. ``limits`` bound what the answer may be."""
    http = TimedHttp(client, limits=limits)
    t_before = now_ns()
    result: GenerationResult | None = None
    checked: list[CheckedImage] = []
    size = NO_SIZE
    error: ProviderError | None = None
    try:
        async with asyncio.timeout(timeout_s):
            result = await provider.generate(request, http)
            asked = size_asked(request.size, request.aspect_ratio, result.expected_size)
            checked, size = await check_images_async(result.images, request.n, asked, strict=strict_size,
                                                     max_pixels=limits.max_image_pixels)
    except (ProviderError, TimeoutError, httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, MemoryError) as exc:
        error = classify_exception(exc)
    t_ready = now_ns()
    if error is not None:
        expected = result.expected_size if result is not None else None
        asked = size_asked(request.size, request.aspect_ratio, expected)
        size = SizeCheck(asked.label if asked else None, None)
        if result is not None and error.request_id is None:
            error.request_id = result.request_id
    answered = error is None or error.kind not in UNANSWERED
    clock = summarize(http.calls, http.marks, t_before, t_ready, http.poll_interval_s, answered=answered)
    t_start = http.calls[0].t_start if http.calls else t_before
    t_end = provider_end(http.calls, t_ready, answered)
    first_conn = http.calls[0].t_conn if http.calls else None
    t_latency_start = min(first_conn if first_conn is not None else t_start, t_end) if answered else t_before
    return AttemptOutcome(result, checked, error, clock, t_start, http.calls, size, t_end, t_latency_start)


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """Where an attempt stands in its run: the request it serves, its number, and its place in the schedule
    (``sched_ms``/``start_ms`` relative to the run's start; ``started_at`` Unix seconds)."""

    run_id: str
    key: RequestKey
    target: Target
    attempt: int
    started_at: float
    sched_ms: float
    start_ms: float
    retry_wait_ms: float | None = None
    region: str | None = None
    """The run's region label (``RunOptions.region``), recorded on the attempt."""


def attempt_record(outcome: AttemptOutcome, ctx: AttemptContext) -> AttemptRecord:
    """The record of one attempt as the store keeps it (``final`` is decided by the caller's retry policy)."""
    result, checked, error, clock = outcome.result, outcome.images, outcome.error, outcome.clock
    target = ctx.target
    if error is None and result is not None:
        cost: Cost = success_cost(target, usage=result.usage, provider_cost_usd=result.provider_cost_usd,
                                  billable_units=result.billable_units, provider_timings=result.provider_timings,
                                  image_sizes=[(c.width, c.height) for c in checked])
    else:
        billed = bool(error and error.billed)
        usage = error.usage if error else {}
        cost = failure_cost(target, billed=billed, usage=usage)
    last_status = outcome.calls[-1].status if outcome.calls else None
    return AttemptRecord(
        run_id=ctx.run_id, key=ctx.key, model=target.model_name, provider=target.provider,
        protocol=target.protocol, attempt=ctx.attempt, final=True, ok=error is None, started_at=ctx.started_at,
        sched_ms=ctx.sched_ms, start_ms=ctx.start_ms, clock=clock,
        error_kind=error.kind.value if error else None,
        http_status=(error.http_status if error and error.http_status is not None else last_status),
        provider_code=error.provider_code if error else None,
        error_message=error.message if error else None,
        request_id=(error.request_id if error else (result.request_id if result else None)),
        retry_wait_ms=ctx.retry_wait_ms,
        retry_after_ms=error.retry_after_s * 1000.0 if error and error.retry_after_s is not None else None,
        n_images=len(checked), width=checked[0].width if checked else None,
        height=checked[0].height if checked else None, cost_usd=cost.usd, cost_source=cost.source,
        billed=cost.billed, usage=(result.usage if result else (error.usage if error else {})),
        provider_timings=result.provider_timings if result else {},
        finish_reason=result.finish_reason if result else None,
        outputs=[OutputRecord(i, "", c.ext, c.width, c.height, len(c.data)) for i, c in enumerate(checked)],
        image_bytes=[c.data for c in checked],
        size_requested=outcome.size.requested, size_as_asked=outcome.size.as_asked, region=ctx.region,
    )
