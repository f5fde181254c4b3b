"""One attempt: send it through a provider adapter under the total timeout, validate its images, classify
any failure, and summarise its clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from harness.images import CheckedImage, check_images_async
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, Provider, ProviderError
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


