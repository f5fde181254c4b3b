"""Server-sent events, both directions: an incremental parser for adapters and an encoder for the sandbox.

Follows the WHATWG event-stream rules that matter for the five providers: LF, CRLF or CR line ends (Google
frames with CRLF), ``:`` comment lines (OpenRouter's ``: OPENROUTER PROCESSING`` keep-alives), multi-line
``data``, ``event`` and ``id`` fields, and a blank line that dispatches. A stream that ends without a final
blank line still dispatches its last event, as real servers sometimes close that way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` when the server named none."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feeds lines (without their line ending) and yields events as blank lines dispatch them."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self.comments = 0

    def feed_line(self, line: str) -> SSEEvent | None:
        """Consume one line; return the event it completes, if any."""
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

    def flush(self) -> SSEEvent | None:
        """Dispatch a pending event at end of stream."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        if not self._data and self._event is None:
            return None
        event = SSEEvent(data="\n".join(self._data), event=self._event or "message", id=self._id)
        self._data = []
        self._event = None
        return event


def split_lines(text: str) -> list[str]:
    """Split on LF, CRLF or a lone CR, as the event-stream format allows."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_events(text: str) -> list[SSEEvent]:
    """Parse a whole event stream held in memory."""
    decoder = SSEDecoder()
    events = [e for line in split_lines(text) if (e := decoder.feed_line(line)) is not None]
    tail = decoder.flush()
    if tail is not None:
        events.append(tail)
    return events


async def aparse_lines(lines: AsyncIterator[str], *, max_frames: int | None = None,
                       on_too_many: Callable[[], Exception] | None = None) -> AsyncIterator[SSEEvent]:
    """Parse events from an async iterator of lines (``httpx.Response.aiter_lines``).

    ``max_frames`` bounds events plus comment lines (an endless keep-alive stream is as endless as an endless
    event stream); past it the exception ``on_too_many()`` returns is raised (``ValueError`` by default)."""
    decoder = SSEDecoder()
    events = 0
    async for line in lines:
        event = decoder.feed_line(line)
        if event is not None:
            events += 1
            yield event
        if max_frames is not None and events + decoder.comments > max_frames:
            raise on_too_many() if on_too_many is not None else ValueError(
                f"event stream longer than {max_frames} events")
    tail = decoder.flush()
    if tail is not None:
        yield tail


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, crlf: bool = False
) -> bytes:
    """Encode one event for the wire; multi-line data becomes several ``data:`` lines."""
    nl = "\r\n" if crlf else "\n"
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {event}")
    if id is not None:
        parts.append(f"id: {id}")
    parts.extend(f"data: {line}" for line in data.split("\n"))
    return (nl.join(parts) + nl + nl).encode()


def encode_comment(text: str) -> bytes:
    """A keep-alive comment line followed by a blank line (OpenRouter style)."""
    return f": {text}\n\n".encode()


def iter_encoded(events: Iterable[tuple[str, str | None]], crlf: bool = False) -> Iterator[bytes]:
    """Encode ``(data, event)`` pairs in order."""
    for data, name in events:
        yield encode_event(data, event=name, crlf=crlf)
