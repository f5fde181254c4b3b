"""One attempt: send it through a provider adapter under the total timeout, validate its images, classify
any failure, and summarise its clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from harness.images import CheckedImage, check_images_async
from harness.pricing import Cost, failure_cost, success_cost
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, Provider, ProviderError
from harness.records import AttemptRecord, OutputRecord, RequestKey
from harness.targets import Target
from harness.timing import AttemptClock, CallTiming, TimedHttp, now_ns, summarize


@dataclass
class AttemptOutcome:
    """One attempt's result or classified error, its validated images and its clock."""

    result: GenerationResult | None
    images: list[CheckedImage]
    error: ProviderError | None
    clock: AttemptClock
    t_start: int
    calls: list[CallTiming]


def classify_exception(exc: BaseException) -> ProviderError:
    """The taxonomy class of an exception raised while performing an attempt."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ProviderError(ErrorKind.TIMEOUT, f"no complete answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return ProviderError(ErrorKind.BAD_OUTPUT, f"unexpected response shape ({type(exc).__name__}: {exc})",
                         provider_code="adapter_parse_error")


async def perform_attempt(provider: Provider, request: GenerationRequest, client: httpx.AsyncClient,
                          timeout_s: float) -> AttemptOutcome:
    """Send one attempt through ``provider`` within ``timeout_s`` (total), validate its images, classify any
    failure. The timed region runs from just before the first byte is sent to the validated images."""
    http = TimedHttp(client)
    t_start = now_ns()
    result: GenerationResult | None = None
    checked: list[CheckedImage] = []
    error: ProviderError | None = None
    try:
        async with asyncio.timeout(timeout_s):
            result = await provider.generate(request, http)
            checked = await check_images_async(result.images, request.n, result.expected_size)
    except (ProviderError, TimeoutError, httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError,
            IndexError) as exc:
        error = classify_exception(exc)
    t_ready = now_ns()
    if error is not None and result is not None and error.request_id is None:
        error.request_id = result.request_id
    clock = summarize(http.calls, http.marks, t_start, t_ready, http.poll_interval_s)
    return AttemptOutcome(result, checked, error, clock, t_start, http.calls)




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
    )
