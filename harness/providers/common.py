"""Small helpers every adapter needs: retry hints, base64 and data URLs, safe JSON, message trimming."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import json
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import pybase64

from harness.errors import ConfigError
from harness.origins import OriginPolicy, RefusedURL
from harness.providers.base import REFUSED_URL, ErrorKind, InputImage, OutputImage, ProviderError, non_image
from harness.timing import TimedHttp

T = TypeVar("T")

MIN_POLL_INTERVAL_S = 0.02
"""Floor of a (time-scaled) status-poll interval in real seconds: polling faster only burns the CPU that the
client and an in-process sandbox share, and adds nothing to the precision of the phases it bounds."""

MAX_MESSAGE_CHARS = 500
_RETRY_IN = re.compile(r"(?:try again|retry) in ~?([0-9]+(?:\.[0-9]+)?)\s*(ms|s)\b", re.IGNORECASE)


def parse_retry_after(headers: Mapping[str, str], message: str | None = None, now: float | None = None) -> float | None:
    """The wait in seconds a response asks for.

    Order (as the OpenAI SDK reads them): ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date),
    then a "try again in 12s" / "retry in 27.37s" hint inside the message.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))
    if message:
        match = _RETRY_IN.search(message)
        if match:
            value = float(match.group(1))
            return value / 1000.0 if match.group(2).lower() == "ms" else value
    return None


def trim(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Keep provider messages short enough for tables and logs."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def json_or_none(content: bytes) -> Any:
    """Parsed JSON, or ``None`` when the body is not JSON (an HTML error page from a proxy, say)."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def decode_b64_image(data: str, mime: str | None = None, *, what: str = "image") -> OutputImage:
    """Decode standard base64 image data; corrupt data is a ``bad_output`` failure.

    ``pybase64`` (SIMD) with ``validate=True`` rejects what ``base64.b64decode(validate=True)`` rejects
    (characters outside the alphabet, bad padding, data after the padding) about 30 times faster; the standard
    library spends ~0.3 ms per 100 KB image on the event loop, the largest share of the harness's own time
    per response."""
    try:
        raw = pybase64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"{what} is not valid base64: {exc}") from exc
    if not raw:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"{what} is empty")
    return OutputImage(data=raw, mime=mime)


def decode_data_url(url: str, *, what: str = "image") -> OutputImage:
    """Decode a ``data:image/png;base64,...`` URL."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"{what} is not a base64 data URL")
    mime = header[5:].split(";")[0] or None
    return decode_b64_image(payload, mime, what=what)


def data_url(data: bytes, mime: str) -> str:
    """Encode bytes as a base64 data URL (for providers that take references inline)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_url(image: InputImage) -> str:
    """A reference image or mask as a base64 data URL of its own type."""
    return data_url(image.data, image.mime)


def parse_wxh(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` -> (1536, 1024); ``None`` for anything else (a tier such as ``1K``, ``auto``)."""
    w, sep, h = size.lower().partition("x")
    if sep and w.strip().isdigit() and h.strip().isdigit():
        return int(w), int(h)
    return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def status_kind(status: int) -> ErrorKind:
    """Default classification of an HTTP status when the body says nothing more specific."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 402:
        return ErrorKind.QUOTA_EXHAUSTED
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status == 408:
        return ErrorKind.TIMEOUT
    if status >= 500 or status == 409:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.INVALID_REQUEST


async def gather_all(jobs: Sequence[Awaitable[T]]) -> list[T]:
    """Run ``jobs`` concurrently; on the first failure cancel the rest and raise that failure unwrapped
    (``asyncio.TaskGroup`` would wrap it in an ``ExceptionGroup`` the runner does not classify)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def shielded_cancel(http: TimedHttp, method: str, url: str, headers: Mapping[str, str],
                          timeout_s: float) -> None:
    """Ask the provider to cancel a request even though the attempt that owns it is being cancelled.

    The call (label ``cancel``) runs in its own task, shielded from the caller's cancellation and bounded by
    ``timeout_s``; any failure of it is ignored, because the attempt has already failed for another reason.
    """
    task = asyncio.ensure_future(http.request(method, url, label="cancel", headers=dict(headers)))
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except (Exception, asyncio.CancelledError):
        task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 0.1)


def option_float(options: Mapping[str, Any], name: str, default: float | None, *,
                 minimum: float = 0.0) -> float | None:
    """A non-negative number option, with a :class:`ConfigError` naming it when it is not one."""
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"target option {name} must be a number of at least {minimum}, got {value!r}")
    return float(value)


def option_choice(options: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = options.get(name, choices[0])
    if value not in choices:
        raise ConfigError(f"target option {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def scaled_poll_interval(interval_s: float, time_scale: float) -> float:
    """The real seconds between status polls for a poll interval given in provider seconds."""
    return max(interval_s * time_scale, MIN_POLL_INTERVAL_S) if interval_s > 0 else 0.0


async def download_image(http: TimedHttp, url: str, policy: OriginPolicy, *, what: str) -> OutputImage:
    """Fetch an image the provider named (label ``download``), without credentials.

    ``data:`` URLs are decoded; any scheme but http(s) is refused, and the connection's address is checked by
    the client pool's network backend (:mod:`harness.origins`). An answer that is not an image is a
    ``bad_output`` failure recording only its type and size, never its bytes."""
    if url.startswith("data:"):
        return decode_data_url(url, what=what)
    try:
        policy.check_url(url, what)
    except RefusedURL as exc:
        raise ProviderError(ErrorKind.BAD_OUTPUT, exc.reason, provider_code=REFUSED_URL) from None
    response = await http.request("GET", url, label="download")
    content_type = response.headers.get("content-type")
    if response.status_code >= 400:
        kind = ErrorKind.SERVER_ERROR if response.status_code >= 500 else ErrorKind.BAD_OUTPUT
        raise ProviderError(kind, f"download of {what} failed with HTTP {response.status_code}",
                            http_status=response.status_code)
    problem = non_image(response.content)
    if problem is not None:
        raise ProviderError(ErrorKind.BAD_OUTPUT, f"download of {what} is not an image ({content_type or 'no type'}, "
                            f"{len(response.content)} bytes{problem})", http_status=response.status_code)
    return OutputImage(data=response.content, mime=content_type, source_url=url)
